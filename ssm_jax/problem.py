"""Imbalance profiles and the label arrays of a problem.

Examples are laid out class by class (all of class 0, then class 1, ...). A problem may
be padded to a larger number of examples ``n_pad`` with masked examples (``mask == 0``):
they carry zero weight and are excluded from every metric, which is what lets a sweep
over imbalance ratios share one compiled function.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .registry import PROFILES, ConfigError, Profile


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


def _step_continuous(cfg, ratio):
    major = jnp.full((cfg.k_major,), float(cfg.n_major))
    minor = jnp.full((cfg.k_minor,), 1.0) * (cfg.n_major / jnp.asarray(ratio, dtype=float))
    return jnp.concatenate([major, minor])


def _longtail_continuous(cfg, ratio):
    k = cfg.k_major + cfg.k_minor
    c = jnp.arange(k)
    return cfg.n_major * jnp.asarray(ratio, dtype=float) ** (-c / (k - 1))


def _groups_of_keys(keys) -> tuple[int, ...] | None:
    """Group ids (0, 1, ... in order of first appearance) of classes with equal keys; None
    when no two classes share a key."""
    first: dict = {}
    groups = tuple(first.setdefault(key, len(first)) for key in keys)
    return None if len(first) == len(groups) else groups


# The registry of imbalance profiles (ssm_jax.registry.PROFILES), in command-line order.
PROFILES.register(Profile(
    "step", "k_major classes of n_major examples, k_minor of n_major / ratio",
    counts=lambda cfg: step_counts(cfg.k_major, cfg.k_minor, cfg.n_major, cfg.ratio),
    continuous=_step_continuous,
    groups=lambda cfg: _groups_of_keys((0,) * cfg.k_major + (1,) * cfg.k_minor)))
PROFILES.register(Profile(
    "longtail", "counts decaying geometrically from n_major to n_major / ratio",
    counts=lambda cfg: longtail_counts(cfg.k_major + cfg.k_minor, cfg.n_major, cfg.ratio),
    continuous=_longtail_continuous))
PROFILES.register(Profile(
    "counts", "explicit class counts",
    counts=lambda cfg: tuple(int(c) for c in cfg.counts),
    continuous=lambda cfg, ratio: jnp.asarray(cfg.counts, dtype=float),
    groups=lambda cfg: _groups_of_keys(tuple(cfg.counts))))


def profile_of(cfg):
    """The profile entry of a configuration (explicit ``counts`` win over the profile)."""
    return PROFILES["counts" if cfg.counts is not None else cfg.profile]


def class_counts_of(cfg) -> tuple[int, ...]:
    """Integer class counts of a configuration (explicit ``counts`` win over the profile)."""
    return profile_of(cfg).counts(cfg)


def continuous_counts(cfg, ratio: Float[Array, ""] | float | None = None
                      ) -> Float[Array, " k"]:
    """Class counts as a smooth function of ``ratio`` (no rounding), for gradients in ratio.

    Equal to :func:`class_counts_of` up to rounding; explicit counts are returned as floats.
    """
    return profile_of(cfg).continuous(cfg, cfg.ratio if ratio is None else ratio)


class Problem(NamedTuple):
    """The label side of a problem, as arrays (a pytree: it can be stacked and vmapped).

    Attributes:
        labels: class of each example, shape (n_pad,).
        mask: 1.0 for real examples, 0.0 for padding, shape (n_pad,).
        counts: class counts used by the weighting scheme, shape (k,). Usually the integer
            counts as floats; a meta-gradient in ``ratio`` passes smooth counts instead.
    """

    labels: Int[Array, " n"]
    mask: Float[Array, " n"]
    counts: Float[Array, " k"]

    @property
    def num_classes(self) -> int:
        return self.counts.shape[-1]

    def onehot(self) -> Float[Array, "k n"]:
        """One-hot label matrix Y (k x n_pad); padded columns are zero."""
        return (jnp.arange(self.num_classes)[:, None] == self.labels[None, :]) * self.mask

    def example_counts(self) -> Float[Array, " k"]:
        """Number of real examples in each class (from the labels and the mask)."""
        return self.onehot().sum(axis=1)

    def priors(self) -> Float[Array, " k"]:
        """Class priors pi_c = n_c / n."""
        counts = self.example_counts()
        return counts / counts.sum()


def make_problem(counts: tuple[int, ...], n_pad: int | None = None, dtype=None, *,
                 host: bool = False) -> Problem:
    """Labels ``0...0 1...1 ...`` for the given class counts, padded to ``n_pad`` examples:
    JAX arrays, or numpy arrays with ``host`` (no device dispatch)."""
    counts = tuple(int(c) for c in counts)
    if any(c < 1 for c in counts):
        raise ConfigError(f"counts={list(counts)!r}: every count must be a positive integer")
    n = sum(counts)
    n_pad = n if n_pad is None else int(n_pad)
    if n_pad < n:
        raise ConfigError(f"n_pad={n_pad} is smaller than the number of examples n={n}")
    labels = np.zeros(n_pad, dtype=np.int32)
    labels[:n] = np.repeat(np.arange(len(counts)), counts)
    mask = np.zeros(n_pad)
    mask[:n] = 1.0
    dtype = dtype or jax.dtypes.canonicalize_dtype(np.float64)
    xp = np if host else jnp
    return Problem(
        labels=xp.asarray(labels),
        mask=xp.asarray(mask, dtype=dtype),
        counts=xp.asarray(counts, dtype=dtype),
    )
