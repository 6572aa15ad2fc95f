"""The ``ssm-jax`` command line.

Each subcommand lives in a module with ``register(subparsers)``; a registered handler
returns the process exit status. Exit status 2 means bad input (nothing was written);
3 means a run diverged (its results were written with ``diverged: true``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass

from .config import (
    ADJOINTS,
    INITS,
    LOSSES,
    METHODS,
    PARAMETRIZATIONS,
    PROFILES,
    SOLVERS,
    STOP_METRICS,
    WEIGHTINGS,
    Config,
    ConfigError,
)

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

_DEFAULTS = Config()


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"counts={text!r}: every count must be a positive integer"
        ) from None


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


@dataclass(frozen=True)
class Option:
    """One ``simulate`` option: the flag, the Config field it sets, its parser and help."""

    flag: str
    field: str
    type: object
    help: str
    choices: tuple[str, ...] | None = None
    numeric: bool = False  # a number a sweep may list and a meta-gradient may target

    @property
    def default(self):
        return getattr(_DEFAULTS, self.field)


# The options of `simulate`, shared by every subcommand that runs simulations.
SIMULATE_OPTIONS: list[Option] = [
    Option("--loss", "loss", str, "training loss: squared (mse), cross-entropy (ce), "
           "logit-adjusted (la) or VS (vs) cross-entropy", LOSSES),
    Option("--profile", "profile", str, "imbalance profile", PROFILES),
    Option("--k-major", "k_major", int, "number of majority classes (step profile)"),
    Option("--k-minor", "k_minor", int, "number of minority classes (step profile)"),
    Option("--n-major", "n_major", int, "examples per majority class (largest class)"),
    Option("--ratio", "ratio", float, "imbalance ratio n_major / n_minor (>= 1)", numeric=True),
    Option("--counts", "counts", _ints,
           "explicit class counts, comma separated (overrides the profile)"),
    Option("--dim", "dim", int, "feature dimension d"),
    Option("--weighting", "weighting", str, "per-class loss weights", WEIGHTINGS),
    Option("--gamma", "gamma", float, "power-law exponent: w_c ∝ n_c^-gamma", numeric=True),
    Option("--beta", "beta", float, "effective-number beta in [0, 1)", numeric=True),
    Option("--weights", "weights", _floats, "explicit per-class weights, comma separated"),
    Option("--parametrization", "parametrization", str, "feature parametrisation",
           PARAMETRIZATIONS),
    Option("--bias", "bias", _flag, "train a classifier bias b (true/false)"),
    Option("--weight-decay", "weight_decay", float, "weight decay lambda on W and H",
           numeric=True),
    Option("--init", "init", str, "initialisation", INITS),
    Option("--init-scale", "init_scale", float,
           "gaussian std (init gaussian) or initial own output z0 (init aligned)", numeric=True),
    Option("--method", "method", str, "optimiser", METHODS),
    Option("--momentum", "momentum", float, "momentum coefficient (method momentum)",
           numeric=True),
    Option("--lr", "lr", float, "learning rate (time t = lr x step)", numeric=True),
    Option("--steps", "steps", int, "number of optimisation steps"),
    Option("--saves", "saves", int, "number of evenly spaced save points (incl. 0 and the end)"),
    Option("--seed", "seed", int, "PRNG seed of the initialisation", numeric=True),
    # Beyond the paper (docs/beyond.md).
    Option("--depth", "depth", int, "depth L of the linear UFM: L-1 inner d x d layers between "
           "the features and the classifier (1 = the UFM)"),
    Option("--tau", "tau", float, "logit adjustment tau: loss la / vs add tau log(prior); "
           "also the post-hoc adjustment of the posthoc_* metrics", numeric=True),
    Option("--vs-gamma", "vs_gamma", float, "VS loss: multiplicative Delta_c = (n_c / n_max)"
           "^vs_gamma", numeric=True),
    Option("--geometry", "geometry", _flag, "record neural-collapse geometry (NC1-NC3, SELI, "
           "norms, angles) at every save point (true/false)"),
    # Gradient flow (--method flow; docs/theory.md).
    Option("--t1", "t1", float, "gradient-flow end time (default: lr x steps, the discrete "
           "run's end)", numeric=True),
    Option("--solver", "solver", str, "diffrax solver of the flow (kvaerno5: implicit, for "
           "stiff runs)", SOLVERS),
    Option("--rtol", "rtol", float, "relative tolerance of the flow's PID step control"),
    Option("--atol", "atol", float, "absolute tolerance of the flow's PID step control"),
    Option("--max-steps", "max_steps", int, "most solver steps before the flow reports failure"),
    Option("--adjoint", "adjoint", str, "how gradients pass through the flow", ADJOINTS),
    Option("--stop-metric", "stop_metric", str, "stop the flow when this metric crosses "
           "--stop-at (accuracies rising, loss falling)", STOP_METRICS),
    Option("--stop-at", "stop_at", float, "threshold of --stop-metric"),
    Option("--reduced", "reduced", str, "exact reduced simulator for squared loss (cost "
           "independent of n): auto (where cheaper), on, off", ("auto", "on", "off")),
]


def add_simulate_options(parser: argparse.ArgumentParser) -> None:
    """Add every ``simulate`` option (and ``--x64``) to a parser."""
    group = parser.add_argument_group("run configuration")
    for opt in SIMULATE_OPTIONS:
        default = opt.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            opt.flag, dest=opt.field, type=opt.type, choices=opt.choices, default=default,
            help=f"{opt.help} (default: {shown})",
        )
    group.add_argument("--x64", action="store_true", help="compute in float64")


def config_from_args(args: argparse.Namespace, **overrides) -> Config:
    """Build (and validate) a :class:`Config` from parsed ``simulate`` options."""
    names = {f.name for f in dataclasses.fields(Config)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if values.get("counts") is not None and values.get("profile") == "step":
        values["profile"] = "counts"
    values.update(overrides)
    return Config(**values)


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = argparse.ArgumentParser(
        prog="ssm-jax",
        description="Simulate and differentiate the training dynamics of classifiers on "
        "class-imbalanced data (unconstrained features model).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in commands.MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import matplotlib  # the command line only writes figures: headless, chosen before pyplot

    matplotlib.use("Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as err:
        print(f"ssm-jax {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
