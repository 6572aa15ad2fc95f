"""Training dynamics: discrete optimisers in ``lax.scan`` and gradient flow with diffrax.

Importing the package registers every method (:data:`ssm_jax.registry.METHODS`).
"""

from . import discrete, flow

__all__ = ["discrete", "flow"]
