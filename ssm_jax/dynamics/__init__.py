"""Training dynamics: discrete optimisers in ``lax.scan`` and gradient flow with diffrax.

The methods and solvers are declared in :mod:`ssm_jax.registry`
(:data:`ssm_jax.registry.METHODS`, :data:`ssm_jax.registry.SOLVERS`); the code they name
is here.
"""

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from . import discrete, flow

__all__ = ["discrete", "flow"]

# Imported when first used: ``flow`` imports diffrax, equinox and optimistix (about 0.4 s),
# which a run of discrete steps never needs.
__getattr__, __dir__ = lazy.attach(__name__, __file__)
