"""Subcommands of ``ssm-jax``: each module has ``register(subparsers)``.

Add a subcommand by writing a module here and listing it in ``MODULES`` (help order).
"""

from . import demo, digits, geometry, grad, meta, plot, resampling, simulate, sweep

MODULES = [simulate, demo, sweep, plot, grad, meta, geometry, resampling, digits]
