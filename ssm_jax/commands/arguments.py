"""Command-line arguments derived from the run options' declarations
(:data:`ssm_jax.config.OPTIONS`), shared by every subcommand, and the exit statuses.

Exit status 2 means bad input (nothing was written); 3 means a run diverged (its results
were written with ``diverged: true``). Nothing here imports JAX: a subcommand's handler
checks its input with these functions first and imports the numerics after.
"""

from __future__ import annotations

import argparse

from ..config import OPTIONS, Config, spec_of
from ..io import check_output_path
from ..options import ConfigError, Option, check_int, parse_distinct_floats, parse_real
from ..resources import check_fits, estimate_run_bytes

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

# The options every run command shares, in declaration order (ssm_jax.config.OPTIONS).
SIMULATE_OPTIONS: list[Option] = [opt for opt in OPTIONS.values() if opt.shared and not opt.switch]


def argparse_type(parse, name: str | None = None):
    """An argparse ``type`` from an option parser: its ValueError becomes the argparse
    error ``name=TEXT: why`` (argparse reports a plain ValueError without its text), so
    every subcommand refuses bad text (``nan``, ``inf``, ``1e12`` for an integer) in the
    same words, with exit status 2."""
    if parse is str:
        return parse

    def converted(text: str):
        try:
            return parse(text)
        except ValueError as err:
            shown = f"{name}={text}: " if name else f"{text!r}: "
            raise argparse.ArgumentTypeError(shown + str(err)) from None

    converted.__name__ = getattr(parse, "__name__", "value")
    return converted


def real(name: str):
    """The argparse ``type`` of a finite real option of one subcommand."""
    return argparse_type(parse_real, name)


def distinct_reals(name: str):
    """The argparse ``type`` of a non-empty list of distinct finite values."""
    return argparse_type(parse_distinct_floats, name)


def integer(name: str, low: int = 0, high: int | None = None):
    """The argparse ``type`` of an integer option of one subcommand, in ``[low, high]``."""

    def parse(text: str) -> int:
        value = int(text)
        check_int(name, value, low=low, high=high)
        return value

    def converted(text: str) -> int:
        try:
            return parse(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text}: not an integer") from None

    converted.__name__ = "integer"
    return converted


def output_file(text: str) -> str:
    """The argparse ``type`` of an output file (``--json PATH``): checked before any work
    (:func:`ssm_jax.io.check_output_path`), so a bad path exits 2 and nothing is written."""
    try:
        return check_output_path(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def output_folder(text: str) -> str:
    """The argparse ``type`` of an output folder (``--out DIR``)."""
    try:
        return check_output_path(text, folder=True)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def help_of(opt: Option, suffix: str = "") -> str:
    """The help line of an option: its help, where it applies, and its default."""
    default = opt.default
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    effect = opt.describe_effect()
    applies = f"; {effect}" if effect else ""
    return f"{opt.help}{suffix}{applies} (default: {shown})"


def add_option(parser, opt: Option) -> None:
    """Add one declared option to a parser (or argument group)."""
    if opt.switch:
        parser.add_argument(opt.flag, dest=opt.name, action="store_true", help=opt.help)
        return
    parser.add_argument(opt.flag, dest=opt.name, type=argparse_type(opt.parse, opt.name),
                        choices=opt.allowed(), default=opt.default, help=help_of(opt))


def add_simulate_options(parser: argparse.ArgumentParser) -> None:
    """Add every shared run option (and ``--x64``) to a parser."""
    group = parser.add_argument_group("run configuration")
    for opt in SIMULATE_OPTIONS:
        add_option(group, opt)
    add_option(group, OPTIONS["x64"])


# A gradient through a run keeps checkpoints of the training loop and the backward pass's
# cotangents beside the forward run: a rough, generous multiple of the run's own memory.
GRADIENT_MEMORY_FACTOR = 4


def config_from_args(args: argparse.Namespace, **overrides) -> Config:
    """Build (and validate) a :class:`Config` from parsed ``simulate`` options, and refuse
    it when its estimated memory exceeds the machine's (:func:`check_run_memory`)."""
    values = {name: getattr(args, name) for name in OPTIONS if hasattr(args, name)}
    values.update(overrides)
    cfg = Config(**values)
    check_run_memory(cfg, gradient=getattr(args, "command", None) in ("grad", "meta"))
    return cfg


def check_run_memory(cfg: Config, *, gradient: bool = False) -> None:
    """Estimate one run's memory from its shapes (the sweep planner's
    :func:`~ssm_jax.resources.estimate_run_bytes`) and refuse it beyond the machine's
    available memory, before anything is allocated (and before JAX is imported)."""
    counts = cfg.class_counts
    estimate = estimate_run_bytes(spec_of(cfg), len(counts), sum(counts), cfg.x64)
    check_fits(estimate * (GRADIENT_MEMORY_FACTOR if gradient else 1),
               "this gradient" if gradient else "this run")
