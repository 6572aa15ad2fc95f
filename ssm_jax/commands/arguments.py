"""Command-line arguments derived from the run options' declarations
(:data:`ssm_jax.config.OPTIONS`), shared by every subcommand, and the exit statuses.

Exit status 2 means bad input (nothing was written); 3 means a run diverged (its results
were written with ``diverged: true``).
"""

from __future__ import annotations

import argparse

from ..config import OPTIONS, Config
from ..options import Option, parse_floats

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

# The options every run command shares, in declaration order (ssm_jax.config.OPTIONS).
SIMULATE_OPTIONS: list[Option] = [opt for opt in OPTIONS.values() if opt.shared and not opt.switch]


def argparse_type(parse):
    """An argparse ``type`` from an option parser: its ValueError message becomes the
    argparse error (argparse reports a plain ValueError without its text)."""
    if parse in (int, float, str):
        return parse

    def converted(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    converted.__name__ = parse.__name__
    return converted


_floats = argparse_type(parse_floats)


def help_of(opt: Option, suffix: str = "") -> str:
    """The help line of an option: its help, where it applies, and its default."""
    default = opt.default
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    applies = f"; used with {opt.describe_applies()}" if opt.applies else ""
    return f"{opt.help}{suffix}{applies} (default: {shown})"


def add_option(parser, opt: Option) -> None:
    """Add one declared option to a parser (or argument group)."""
    if opt.switch:
        parser.add_argument(opt.flag, dest=opt.name, action="store_true", help=opt.help)
        return
    parser.add_argument(opt.flag, dest=opt.name, type=argparse_type(opt.parse),
                        choices=opt.allowed(), default=opt.default, help=help_of(opt))


def add_simulate_options(parser: argparse.ArgumentParser) -> None:
    """Add every shared run option (and ``--x64``) to a parser."""
    group = parser.add_argument_group("run configuration")
    for opt in SIMULATE_OPTIONS:
        add_option(group, opt)
    add_option(group, OPTIONS["x64"])


def config_from_args(args: argparse.Namespace, **overrides) -> Config:
    """Build (and validate) a :class:`Config` from parsed ``simulate`` options."""
    values = {name: getattr(args, name) for name in OPTIONS if hasattr(args, name)}
    if values.get("counts") is not None and values.get("profile") == "step":
        values["profile"] = "counts"
    values.update(overrides)
    return Config(**values)
