r"""Per-class loss weights and their normalisation.

Convention (used everywhere in ssm-jax): the training loss is

.. math::  L = \frac{1}{n}\sum_{i=1}^n \omega_{y_i}\,\ell(W h_i + b, y_i),
           \qquad \frac{1}{n}\sum_i \omega_{y_i} = \frac{\sum_c n_c\,\omega_c}{\sum_c n_c} = 1,

so the mean per-example weight is 1 and ERM is :math:`\omega_c = 1`. Every scheme gives
raw weights :math:`v_c` that are rescaled to :math:`\omega_c = v_c\, n / \sum_c n_c v_c`.

The schemes (:data:`ssm_jax.registry.WEIGHTINGS`) live in :mod:`ssm_jax.imbalance`, which
imports no JAX: given numpy counts they compute in numpy, in the counts' dtype, which is
how configuration checks test the weights in the run's precision without starting (or
importing) JAX. All of them are pure and differentiable in their numeric arguments (gamma,
beta, the explicit weights and the counts), so meta-gradients flow through
:func:`class_weights`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real

from .imbalance import effective_number, normalise, power_law  # noqa: F401 - re-exported
from .registry import WEIGHTINGS


def class_weights(
    counts: Real[ArrayLike, " k"],
    weighting: str,
    gamma=0.0,
    beta=0.999,
    explicit: Real[ArrayLike, " k"] | None = None,
) -> Float[Array, " k"]:
    """Normalised per-class weights omega_c for a weighting scheme (see module docstring)."""
    counts = jnp.asarray(counts)
    if not jnp.issubdtype(counts.dtype, jnp.floating):
        # Integer counts would cast gamma to an integer (n_c ** -0 for gamma = 1/2).
        counts = counts.astype(jnp.result_type(float))
    return WEIGHTINGS[weighting].weights(counts, gamma, beta, explicit)
