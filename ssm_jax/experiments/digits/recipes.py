r"""Recipes as per-run arrays: every difference between two recipes (:data:`.RECIPES`) is
an array with a leading run axis, so that every (recipe, seed) run trains in one compiled
program, the network's (:mod:`.training`) as the UFM's (:mod:`.ufm`).

A run's objective at step j is the core's convention

.. math:: L_j = \frac1n\sum_i s_{i,j}\,\omega_{y_i}(j)\,\ell_i + \text{weight decay},
          \qquad \ell_i = \mathrm{CE}\big(s\,(z_i + \tau\log\pi - m\odot y_i), y_i\big),

with, per run (:class:`RecipeArrays`):

* :math:`\omega(j)`: a :class:`~ssm_jax.schedule.WeightSchedule` of three phases, ERM /
  the recipe's weighting / ERM (``phase_weights``; the ERM phases have the ``erm``
  recipe's weights, so a phase of ERM is the ``erm`` run's), entered at ``switch_steps``. A
  constant recipe is in phase 1 from step 0 to the end; ``drw`` enters phase 1 at the
  first step whose time reaches ``reweight_from``, ``reweight_until`` sends
  ``reweight_then_erm`` to phase 2 the same way (the core's rule for discrete runs,
  :func:`ssm_jax.schedule.weights_at`). The times are converted to steps on the host in
  float64 (:func:`first_step`), from the same clock as the checkpoints' ``time``, so a
  switch time equal to a checkpoint's time switches exactly there; in the program the
  schedule then runs on the step counter (:func:`ssm_jax.schedule.phase_at`).
* :math:`\tau` (logit adjustment), the LDAM margins :math:`m` (zeros: cross-entropy,
  :func:`ssm_jax.losses.ldam`) and scale :math:`s` (1: cross-entropy).
* :math:`s_{i,j}`: the minibatch factors of the run's sampler (:mod:`ssm_jax.sampling`;
  index 0 is the full batch, :math:`s = 1`). The program computes the factors of every
  sampler one of its runs uses (``samplers``, static) and selects the run's; a program
  whose runs are all full batch computes none.

The neutral values are exact (weights times 1, margins 0, scale 1, :math:`\tau = 0`), so
a recipe computes the same numbers as the code that had only weightings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ... import sampling
from ...losses import ldam_margins
from ...problem import Problem
from ...registry import SAMPLINGS
from ...schedule import WeightSchedule, phase_at
from ...weights import class_weights
from .config import FROM, RECIPES, UNTIL, DigitsConfig

#: The phases of every run's schedule.
PHASES = ("erm", "weighting", "erm")
#: Sampler index 0 of :class:`RecipeArrays`: every step is the full batch.
FULL_BATCH = "full_batch"


class RecipeArrays(NamedTuple):
    """What a recipe trains with, per run (leading axis: run; see the module doc)."""

    phase_weights: Float[Array, "*runs 3 k"]
    switch_steps: Float[Array, "*runs 2"]
    tau: Float[Array, "*runs"]
    margins: Float[Array, "*runs k"]
    scale: Float[Array, "*runs"]
    sampler: Int[Array, "*runs"]

    def schedule(self) -> WeightSchedule:
        """The run's :class:`~ssm_jax.schedule.WeightSchedule`, on the step clock."""
        return WeightSchedule(self.switch_steps, self.phase_weights)

    def weights_at(self, step) -> Float[Array, " k"]:
        """The class weights of step ``step`` (one run): those of the phase it is in."""
        return self.phase_weights[phase_at(self.schedule(), step)]


def weighting_arrays(names: Sequence[str], counts, tau: float, dtype) -> tuple[Array, Array]:
    r"""Class weights (w, k) of each recipe's weighted phase and its logit-adjustment tau
    (w,) (:math:`\omega_c \propto n_c^{-\gamma}`, the core's normalisation)."""
    counts = jnp.asarray(counts, dtype)
    omegas = [class_weights(counts, "power", RECIPES[n].gamma) for n in names]
    taus = [tau if RECIPES[n].logit_adjusted else 0.0 for n in names]
    return jnp.stack(omegas), jnp.asarray(taus, dtype)


def first_step(times: np.ndarray, t: float) -> int:
    """The first step whose time reaches ``t``: the index of the first entry of ``times``
    (the time at steps 0..steps) that is ``>= t``; ``len(times)`` if none (never)."""
    return int(np.searchsorted(np.asarray(times, np.float64), t, side="left"))


def batch_size_of(cfg: DigitsConfig, n: int) -> int:
    """Examples (class samplers: draws) per step: ``batch_size``, or the n training
    examples when it is not given."""
    return n if cfg.batch_size is None else cfg.batch_size


def sampler_of(cfg: DigitsConfig, name: str, n: int) -> str:
    """The sampler of recipe ``name`` (its own, else ``cfg.sampling``), or
    :data:`FULL_BATCH` where every step is the whole training set of n examples (no batch
    size, or uniform epochs of at least n)."""
    sampler = RECIPES[name].sampling or cfg.sampling
    return FULL_BATCH if SAMPLINGS[sampler].full_batch(batch_size_of(cfg, n), n) else sampler


def run_samplers(cfg: DigitsConfig, n: int) -> tuple[str, ...]:
    """:func:`sampler_of` each recipe of ``cfg``."""
    return tuple(sampler_of(cfg, name, n) for name in cfg.weightings)


def program_samplers(cfg: DigitsConfig, n: int) -> tuple[str, ...]:
    """The samplers whose factors a program computes (static): those of its runs, without
    the full batch, in registry order."""
    used = set(run_samplers(cfg, n))
    return tuple(name for name in SAMPLINGS if name in used)


def recipe_arrays(cfg: DigitsConfig, counts, times: np.ndarray,
                  switch_times: tuple[float, float], dtype) -> RecipeArrays:
    """Per-recipe arrays (leading axis: ``cfg.weightings``) on a clock: ``times`` (the
    time at steps 0..steps) and the switch times ``(reweight_from, reweight_until)`` on
    it. ``switch_steps`` beyond the last step (``len(times)``) mean never."""
    n = int(np.sum(counts))
    omegas, taus = weighting_arrays(cfg.weightings, counts, cfg.tau, dtype)
    erm = weighting_arrays(("erm",), counts, cfg.tau, dtype)[0][0]  # ERM phases: erm's weights
    never = len(times)
    samplers = program_samplers(cfg, n)
    rows = []
    for recipe, omega, sampler in zip(cfg.recipes(), omegas, run_samplers(cfg, n),
                                      strict=True):
        start = first_step(times, switch_times[0]) if recipe.schedule == FROM else 0
        stop = first_step(times, switch_times[1]) if recipe.schedule == UNTIL else never
        margins = (ldam_margins(jnp.asarray(counts, dtype), cfg.ldam_margin) if recipe.ldam
                   else jnp.zeros_like(omega))
        rows.append((jnp.stack([erm, omega, erm]), jnp.asarray([start, stop], dtype),
                     margins, cfg.ldam_scale if recipe.ldam else 1.0,
                     0 if sampler == FULL_BATCH else 1 + samplers.index(sampler)))
    weights, steps, margins, scales, index = zip(*rows, strict=True)
    return RecipeArrays(phase_weights=jnp.stack(weights), switch_steps=jnp.stack(steps),
                        tau=taus, margins=jnp.stack(margins).astype(dtype),
                        scale=jnp.asarray(scales, dtype),
                        sampler=jnp.asarray(index, jnp.int32))


def minibatch_factors(samplers: tuple[str, ...], index, key: PRNGKeyArray, step,
                      problem: Problem, batch_size: int) -> Float[Array, " n"] | None:
    """The per-example factors of step ``step`` under the run's sampler (``index`` into
    ``(full batch, *samplers)``; keys from ``key``, :func:`ssm_jax.sampling.sampling_key`
    of the run's key); None when no run of the program draws minibatches."""
    if not samplers:
        return None
    full = jnp.ones(problem.labels.shape, problem.mask.dtype)
    factors = [sampling.batch_scale(name, key, step, problem, batch_size) for name in samplers]
    return jnp.stack([full, *factors])[index]
