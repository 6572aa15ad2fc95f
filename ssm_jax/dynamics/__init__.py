"""Training dynamics: discrete optimisers in ``lax.scan`` and gradient flow with diffrax.

The methods and solvers are declared in :mod:`ssm_jax.registry`
(:data:`ssm_jax.registry.METHODS`, :data:`ssm_jax.registry.SOLVERS`); the code they name
is here.
"""

from . import discrete, flow

__all__ = ["discrete", "flow"]
