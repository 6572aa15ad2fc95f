"""The ``ssm-jax`` command line.

Each subcommand lives in a module with ``register(subparsers)``; a registered handler
returns the process exit status. Exit status 2 means bad input (nothing was written);
3 means a run diverged (its results were written with ``diverged: true``).
"""

from __future__ import annotations

import argparse
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
