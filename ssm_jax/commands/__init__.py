"""Subcommands of ``ssm-jax``: each module has ``register(subparsers)``.

Add a subcommand by writing a module here and listing it in ``MODULES``.
"""

from . import demo, simulate
from . import grad, meta

MODULES = [simulate, demo]
MODULES += [grad, meta]
from . import plot, sweep  # noqa: E402

MODULES += [sweep, plot]
from . import geometry  # noqa: E402

MODULES += [geometry]
from . import digits  # noqa: E402

MODULES += [digits]
