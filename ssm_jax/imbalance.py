r"""The imbalance and its correction as plain numbers: the class counts of each imbalance
profile and the class weights of each weighting scheme.

This is the code the registries' entries name (:data:`ssm_jax.registry.PROFILES`'
``counts`` and ``groups``, :data:`ssm_jax.registry.WEIGHTINGS`' ``weights``) that
configuration validation itself calls, so it imports neither JAX nor numpy when imported:
validating a configuration (and every bad-input exit of the command line) starts no JAX
backend and imports no JAX. Counts are plain Python integers. A weighting computes in the
namespace of its ``counts``: numpy for numpy arrays (validation checks the weights in the
run's precision that way), :mod:`jax.numpy` for JAX arrays and tracers (runs and
meta-gradients, through :func:`ssm_jax.weights.class_weights`), so it stays differentiable
in its numeric arguments.

Weights (the convention used everywhere in ssm-jax) are normalised so the mean per-example
weight is 1: raw weights :math:`v_c` become :math:`\omega_c = v_c\, n / \sum_c n_c v_c`.
"""

from __future__ import annotations

import sys
from typing import Any

from .options import ConfigError

# ------------------------------------------------------------------------------- profiles


def step_counts(k_major: int, k_minor: int, n_major: int, ratio: float) -> tuple[int, ...]:
    """Step imbalance: ``k_major`` classes of ``n_major`` examples, then ``k_minor`` classes
    of ``max(1, round(n_major / ratio))``."""
    if ratio < 1:
        raise ConfigError(f"ratio={ratio!r} is out of range: need ratio >= 1")
    n_minor = max(1, round(n_major / ratio))
    return (n_major,) * k_major + (n_minor,) * k_minor


def longtail_counts(k: int, n_max: int, ratio: float) -> tuple[int, ...]:
    """Long-tail imbalance: counts ``n_max * ratio^(-c/(k-1))``, c = 0..k-1, rounded, at least 1."""
    if ratio < 1:
        raise ConfigError(f"ratio={ratio!r} is out of range: need ratio >= 1")
    if k < 2:
        raise ConfigError(f"k={k} must be >= 2 for a long-tail profile")
    return tuple(max(1, round(n_max * ratio ** (-c / (k - 1)))) for c in range(k))


def groups_of_keys(keys) -> tuple[int, ...] | None:
    """Group ids (0, 1, ... in order of first appearance) of classes with equal keys; None
    when no two classes share a key."""
    first: dict = {}
    groups = tuple(first.setdefault(key, len(first)) for key in keys)
    return None if len(first) == len(groups) else groups


def step_profile_counts(cfg) -> tuple[int, ...]:
    """The class counts of the ``step`` profile of a configuration."""
    return step_counts(cfg.k_major, cfg.k_minor, cfg.n_major, cfg.ratio)


def step_profile_groups(cfg) -> tuple[int, ...] | None:
    """The majority classes share one count at every ratio, the minority classes another."""
    return groups_of_keys((0,) * cfg.k_major + (1,) * cfg.k_minor)


def longtail_profile_counts(cfg) -> tuple[int, ...]:
    """The class counts of the ``longtail`` profile of a configuration."""
    return longtail_counts(cfg.k_major + cfg.k_minor, cfg.n_major, cfg.ratio)


def explicit_profile_counts(cfg) -> tuple[int, ...]:
    """The explicit ``counts`` of a configuration."""
    return tuple(int(c) for c in cfg.counts)


def explicit_profile_groups(cfg) -> tuple[int, ...] | None:
    """Classes given equal explicit counts."""
    return groups_of_keys(tuple(cfg.counts))


# ------------------------------------------------------------------------------ weightings


def namespace(counts: Any):
    """numpy for numpy counts, :mod:`jax.numpy` for everything else (JAX arrays, tracers).

    numpy is necessarily imported already when ``counts`` is a numpy array; JAX is imported
    here only for other counts."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(counts, numpy.ndarray):
        return numpy
    import jax.numpy

    return jax.numpy


def normalise(raw: Any, counts: Any) -> Any:
    """Rescale raw class weights so the count-weighted mean is 1: sum_c n_c w_c = sum_c n_c."""
    xp = namespace(counts)
    return raw * xp.sum(counts) / xp.sum(counts * raw)


def power_law(counts: Any, gamma) -> Any:
    """w_c ∝ n_c^(-gamma): gamma = 1 is inverse frequency, 1/2 inverse square root, 0 ERM."""
    # Dividing by the largest count first keeps n_c^-gamma in range for large gamma.
    xp = namespace(counts)
    scaled = counts / xp.max(counts)
    return normalise(scaled ** (-xp.asarray(gamma, dtype=counts.dtype)), counts)


def effective_number(counts: Any, beta) -> Any:
    """Cui et al. (2019): w_c ∝ (1 - beta) / (1 - beta^n_c), the inverse effective number."""
    xp = namespace(counts)
    beta = xp.asarray(beta, dtype=counts.dtype)
    # 1 - beta^n through expm1, accurate as beta -> 1; the factor (1 - beta) cancels in
    # the normalisation. beta = 0 gives all ones (ERM).
    effective = -xp.expm1(counts * xp.log(beta))
    return normalise(1.0 / effective, counts)


# Each weighting of WEIGHTINGS takes (counts, gamma, beta, explicit) and returns normalised
# weights (normalising is idempotent, so ERM's ones need nothing).


def erm_weights(counts: Any, gamma, beta, explicit) -> Any:
    """Every weight 1 (empirical risk minimisation)."""
    return namespace(counts).ones_like(counts)


def power_weights(counts: Any, gamma, beta, explicit) -> Any:
    """:func:`power_law` weights."""
    return power_law(counts, gamma)


def effective_weights(counts: Any, gamma, beta, explicit) -> Any:
    """:func:`effective_number` weights."""
    return effective_number(counts, beta)


def explicit_weights(counts: Any, gamma, beta, explicit) -> Any:
    """The given weights, normalised."""
    if explicit is None:
        raise ConfigError("weighting='explicit' needs explicit weights")
    return normalise(namespace(counts).asarray(explicit, dtype=counts.dtype), counts)
