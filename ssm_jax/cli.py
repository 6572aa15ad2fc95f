"""The ``ssm-jax`` command line.

Each subcommand lives in a module with ``register(subparsers)``; a registered handler
returns the process exit status. Exit status 2 means bad input (nothing was written);
3 means a run diverged (its results were written with ``diverged: true``).

Start-up: building the parser, ``--help`` and every refusal of bad input import no JAX
(nor scikit-learn, matplotlib, xarray, optax or diffrax): the choices come from the
registries' declarations (:mod:`ssm_jax.registry`), and each handler checks its input
before it imports the numerics (docs/performance.md, "Start-up").
"""

from __future__ import annotations

import argparse
import os
import sys

from .commands.arguments import (  # noqa: F401 - re-exported for scripts and tests
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    SIMULATE_OPTIONS,
    add_option,
    add_simulate_options,
    config_from_args,
)
from .config import ConfigError


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


def use_headless_backend() -> None:
    """The command line only writes figures: matplotlib's Agg backend, chosen before pyplot
    is imported. Through matplotlib's own variable while matplotlib is not imported, so
    nothing is imported here."""
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None:
        os.environ["MPLBACKEND"] = "Agg"
    else:
        matplotlib.use("Agg")


def main(argv: list[str] | None = None) -> int:
    use_headless_backend()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as err:
        print(f"ssm-jax {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
