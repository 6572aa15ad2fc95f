"""The label arrays of a problem, and the class counts of a configuration.

A configuration's integer class counts come from its imbalance profile
(:data:`ssm_jax.registry.PROFILES`, computed in :mod:`ssm_jax.imbalance`, which validation
also calls); the continuous counts (differentiable in ``ratio``) are here.

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

from .imbalance import longtail_counts, step_counts  # noqa: F401 - re-exported
from .registry import PROFILES, ConfigError

# The continuous counts of the registry's profiles (ssm_jax.registry.PROFILES names them;
# their integer counts and groups are in ssm_jax.imbalance, which validation calls).


def step_continuous(cfg, ratio):
    """The ``step`` profile's counts before rounding, differentiable in ``ratio``."""
    major = jnp.full((cfg.k_major,), float(cfg.n_major))
    minor = jnp.full((cfg.k_minor,), 1.0) * (cfg.n_major / jnp.asarray(ratio, dtype=float))
    return jnp.concatenate([major, minor])


def longtail_continuous(cfg, ratio):
    """The ``longtail`` profile's counts before rounding, differentiable in ``ratio``."""
    k = cfg.k_major + cfg.k_minor
    c = jnp.arange(k)
    return cfg.n_major * jnp.asarray(ratio, dtype=float) ** (-c / (k - 1))


def explicit_continuous(cfg, ratio):
    """Explicit counts, as floats (they do not move with ``ratio``)."""
    return jnp.asarray(cfg.counts, dtype=float)


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
