"""The learning-rate warm-up of the digits network and the clock it sets: time is the
summed learning rate, as the core's ``t = lr x step`` without warm-up."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array


def lr_multiplier(step, warmup: int, factor: float | Array):
    r"""Geometric warm-up: :math:`\eta_j = \eta\,f^{-(1 - j/w)}` for steps :math:`j < w`,
    then :math:`\eta`. The learning rate grows from :math:`\eta/f` to :math:`\eta` so that
    evenly spaced checkpoints are roughly log-spaced in time early on, where a network
    learns its majority classes within a few full-size steps. ``warmup = 0`` is constant."""
    if warmup == 0:
        return jnp.ones_like(jnp.asarray(step, float))
    progress = jnp.minimum(jnp.asarray(step) / warmup, 1.0)
    return jnp.asarray(factor) ** (progress - 1.0)


def elapsed_multiplier(steps, warmup: int, factor: float) -> np.ndarray:
    """Sum of :func:`lr_multiplier` over the steps before each of ``steps`` (numpy): the
    time of a checkpoint is ``lr`` times this (``lr * step`` without warm-up, the core's
    convention)."""
    steps = np.asarray(steps, dtype=np.int64)
    every = np.asarray(lr_multiplier(np.arange(int(steps.max(initial=0))), warmup, factor),
                       dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(every)])
    return cumulative[steps]
