r"""Per-class loss weights and their normalisation.

Convention (used everywhere in ssm-jax): the training loss is

.. math::  L = \frac{1}{n}\sum_{i=1}^n \omega_{y_i}\,\ell(W h_i + b, y_i),
           \qquad \frac{1}{n}\sum_i \omega_{y_i} = \frac{\sum_c n_c\,\omega_c}{\sum_c n_c} = 1,

so the mean per-example weight is 1 and ERM is :math:`\omega_c = 1`. Every scheme below
gives raw weights :math:`v_c` that are rescaled to :math:`\omega_c = v_c\, n / \sum_c n_c v_c`.

All functions are pure and differentiable in their numeric arguments (gamma, beta, the
explicit weights and the counts), so meta-gradients can flow through them. Given numpy
counts they compute in numpy, in the counts' dtype: configuration checks use this to test
the weights in the run's precision without starting a JAX backend.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from .registry import WEIGHTINGS, ConfigError, Weighting

# Weights computed in JAX (runs, meta-gradients) or in numpy (configuration checks).
Counts = Float[Array | np.ndarray, " k"]


def _namespace(counts):
    """numpy for numpy counts, jax.numpy for everything else (JAX arrays, tracers)."""
    return np if isinstance(counts, np.ndarray) else jnp


def normalise(raw: Float[ArrayLike, " k"], counts: Counts) -> Counts:
    """Rescale raw class weights so the count-weighted mean is 1: sum_c n_c w_c = sum_c n_c."""
    xp = _namespace(counts)
    return raw * xp.sum(counts) / xp.sum(counts * raw)


def power_law(counts: Counts, gamma) -> Counts:
    """w_c ∝ n_c^(-gamma): gamma = 1 is inverse frequency, 1/2 inverse square root, 0 ERM."""
    # Dividing by the largest count first keeps n_c^-gamma in range for large gamma.
    xp = _namespace(counts)
    scaled = counts / xp.max(counts)
    return normalise(scaled ** (-xp.asarray(gamma, dtype=counts.dtype)), counts)


def effective_number(counts: Counts, beta) -> Counts:
    """Cui et al. (2019): w_c ∝ (1 - beta) / (1 - beta^n_c), the inverse effective number."""
    xp = _namespace(counts)
    beta = xp.asarray(beta, dtype=counts.dtype)
    # 1 - beta^n through expm1, accurate as beta -> 1; the factor (1 - beta) cancels in
    # the normalisation. beta = 0 gives all ones (ERM).
    effective = -xp.expm1(counts * xp.log(beta))
    return normalise(1.0 / effective, counts)


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


def _explicit(counts, gamma, beta, explicit):
    if explicit is None:
        raise ConfigError("weighting='explicit' needs explicit weights")
    return normalise(_namespace(counts).asarray(explicit, dtype=counts.dtype), counts)


# The registry of weightings (ssm_jax.registry.WEIGHTINGS), in command-line order. Each
# returns normalised weights (normalising is idempotent, so ERM's ones need nothing).
WEIGHTINGS.register(Weighting(
    "erm", "every weight 1 (empirical risk minimisation)",
    weights=lambda counts, gamma, beta, explicit: _namespace(counts).ones_like(counts)))
WEIGHTINGS.register(Weighting(
    "power", "w_c ∝ n_c^-gamma",
    weights=lambda counts, gamma, beta, explicit: power_law(counts, gamma), uses=("gamma",)))
WEIGHTINGS.register(Weighting(
    "effective", "inverse effective number (Cui et al. 2019)",
    weights=lambda counts, gamma, beta, explicit: effective_number(counts, beta),
    uses=("beta",)))
WEIGHTINGS.register(Weighting("explicit", "given weights, normalised", weights=_explicit,
                              uses=("weights",)))
