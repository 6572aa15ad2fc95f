r"""Piecewise-constant schedules of class weights: deferred re-weighting and its reverse.

A :class:`WeightSchedule` has ``m`` phases: phase 0 from time 0, phase ``j`` from switch
time :math:`\tau_j` (``switch_times``, increasing), each with its own normalised class
weights (``phase_weights``, (m, k); the convention of :mod:`ssm_jax.weights`). The command
line builds the two schedules practitioners use from the run's weighting
(:func:`of_options`):

* ``--reweight-from T0`` (deferred re-weighting, DRW; Cao et al. 2019): ERM until
  :math:`T_0`, the chosen weighting after;
* ``--reweight-until T1``: the chosen weighting until :math:`T_1`, ERM after (reweight
  early, stop before the end: the schedule the paper's thesis suggests);
* both: ERM, the weighting from :math:`T_0` to :math:`T_1`, then ERM.

Any other schedule is built in Python with :func:`piecewise` and passed to
:func:`ssm_jax.simulate.simulate` or :func:`ssm_jax.simulate.trajectory`.

**Discrete runs** (time :math:`t_j = \mathrm{lr}\cdot j`) switch at the first step whose
time reaches the switch time: step j uses the weights of the last phase with
:math:`\tau \le t_j` (:func:`weights_at`). As a function of :math:`\tau` such a run is a
step function, so its derivative is *defined* through the run in which the step that
straddles the switch (:math:`t_j < \tau \le t_j + \mathrm{lr}`) applies the weights averaged
over its time interval :math:`[t_j, t_j + \mathrm{lr})`,

.. math:: \omega = \omega_{\text{before}}
          + \frac{t_j + \mathrm{lr} - \tau}{\mathrm{lr}}\,(\omega_{\text{after}}
          - \omega_{\text{before}}),

a run that is continuous in :math:`\tau` and equals the discrete run when :math:`\tau` is
on the step grid. The derivative reported is that run's derivative from the left at
:math:`\lceil \tau/\mathrm{lr}\rceil\,\mathrm{lr}`, the grid time at which the discrete run
switches; as lr -> 0 it tends to the gradient flow's derivative. (Implemented as a
straight-through term: its value is exactly zero, so the run's values are those of the
rule.)

**Gradient flow** stops and restarts exactly at each switch time
(:func:`ssm_jax.dynamics.flow.run` with ``phases``): each phase is its own solve, in its
own normalised time, so its length :math:`\tau_{j+1} - \tau_j` enters as a factor of the
vector field and the derivative in a switch time is exact (the jump term
:math:`\lambda(\tau)^\top (f_{\text{before}} - f_{\text{after}})(\theta(\tau))` of the
adjoint) with either adjoint.

The functions are pure and traceable; ``switch_times`` must be increasing (checked by
:func:`piecewise`; the configuration checks ``reweight_from < reweight_until``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .config import weight_phases_of
from .registry import WEIGHTINGS, ConfigError
from .weights import class_weights, normalise

#: The phases of the command line's schedules (``Spec.weight_phases``): each is ERM or the
#: run's weighting.
ERM, WEIGHTED = "erm", "weighting"


class WeightSchedule(NamedTuple):
    """Piecewise-constant class weights: ``phase_weights[j]`` (k,) from
    ``switch_times[j - 1]`` on (phase 0 from time 0). A pytree: vmap and grad see it."""

    switch_times: Float[Array, " switches"]
    phase_weights: Float[Array, "phases k"]

    @property
    def num_phases(self) -> int:
        return self.phase_weights.shape[-2]


phases_of = weight_phases_of  # the static phases of the command line's schedule


def of_options(phases: tuple[str, ...], omega: Float[Array, " k"], reweight_from,
               reweight_until) -> WeightSchedule | None:
    """The schedule of ``--reweight-from`` / ``--reweight-until`` (``phases`` from
    :func:`phases_of`): ERM phases have weights 1, the weighted phase ``omega``. None for
    a single phase (no switch)."""
    if len(phases) == 1:
        return None
    times = []
    if phases[0] == ERM:
        times.append(reweight_from)
    if phases[-1] == ERM:
        times.append(reweight_until)
    ones = jnp.ones_like(omega)
    weights = jnp.stack([ones if phase == ERM else omega for phase in phases])
    return WeightSchedule(jnp.stack([jnp.asarray(t, omega.dtype) for t in times]), weights)


def piecewise(counts, phases: Sequence[tuple], dtype=None) -> WeightSchedule:
    """A schedule from ``[(start_time, weighting, options), ...]`` (a general Python API).

    The first phase starts at 0 and the start times increase. ``weighting`` is a registered
    weighting name with its ``options`` (a mapping such as ``{"gamma": 1.0}``; optional),
    or a sequence of k raw class weights (normalised here). Example (ERM, then inverse
    frequency from t = 100, then square-root weights from t = 300)::

        piecewise(counts, [(0.0, "erm"), (100.0, "power", {"gamma": 1.0}),
                           (300.0, "power", {"gamma": 0.5})])
    """
    if not phases:
        raise ConfigError("a weight schedule needs at least one phase")
    counts = np.asarray(counts, dtype=float)
    dtype = dtype or jnp.asarray(0.0).dtype
    starts, weights = [], []
    for index, phase in enumerate(phases):
        if not isinstance(phase, (tuple, list)) or not 2 <= len(phase) <= 3:
            raise ConfigError(f"phase {index} = {phase!r}: give (start_time, weighting) or "
                              "(start_time, weighting, options)")
        start, weighting = phase[0], phase[1]
        options: Mapping[str, Any] = phase[2] if len(phase) == 3 else {}
        if isinstance(start, bool) or not isinstance(start, (int, float)) \
                or not np.isfinite(start) or start < 0:
            raise ConfigError(f"phase {index} starts at {start!r}: need a finite time >= 0")
        starts.append(float(start))
        weights.append(_phase_weights(counts, weighting, options, dtype, index))
    if starts[0] != 0.0:
        raise ConfigError(f"the first phase starts at {starts[0]!r}: it must start at 0")
    if any(b <= a for a, b in zip(starts, starts[1:], strict=False)):
        raise ConfigError(f"phase start times {starts!r} must increase")
    return WeightSchedule(jnp.asarray(starts[1:], dtype), jnp.stack(weights))


def _phase_weights(counts: np.ndarray, weighting, options, dtype, index: int):
    if isinstance(weighting, str):
        entry = WEIGHTINGS[weighting]
        unknown = set(options) - set(entry.uses) - {"gamma", "beta", "weights"}
        if unknown:
            raise ConfigError(f"phase {index}: weighting={weighting!r} takes "
                              f"{', '.join(entry.uses) or 'no options'}, not "
                              f"{', '.join(sorted(unknown))}")
        values = {"gamma": 0.0, "beta": 0.999, "weights": None, **options}
        return class_weights(jnp.asarray(counts, dtype), weighting, values["gamma"],
                             values["beta"], values["weights"]).astype(dtype)
    raw = np.asarray(weighting, dtype=float)
    if raw.shape != counts.shape or not np.all(np.isfinite(raw)) or np.any(raw < 0) \
            or not np.any(raw > 0):
        raise ConfigError(f"phase {index}: weights {list(raw)!r} must be {counts.size} finite "
                          "values >= 0, not all zero")
    return normalise(jnp.asarray(raw, dtype), jnp.asarray(counts, dtype))


def phase_at(schedule: WeightSchedule, t) -> Array:
    """The index of the phase in effect at time ``t``: the number of switch times
    ``<= t``."""
    return jnp.sum(jnp.asarray(t) >= schedule.switch_times).astype(jnp.int32)


def weights_at(schedule: WeightSchedule, t, lr) -> Float[Array, " k"]:
    """The class weights of a discrete step at time ``t`` with learning rate ``lr``.

    Value: the weights of the phase in effect at ``t`` (:func:`phase_at`). Derivative in a
    switch time: that of the run whose straddling step averages the weights over its
    interval (module docstring), a straight-through term whose value is exactly 0."""
    tau = schedule.switch_times
    weights = schedule.phase_weights
    value = weights[phase_at(schedule, t)]
    if tau.shape[-1] == 0:
        return value
    t = jnp.asarray(t, weights.dtype)
    straddle = jax.lax.stop_gradient((t < tau) & (tau <= t + lr))
    after = (t + lr - tau) / lr  # fraction of [t, t + lr) after the switch
    through = jnp.where(straddle, after - jax.lax.stop_gradient(after), 0.0)
    return value + through @ (weights[1:] - weights[:-1])


def to_json(schedule: WeightSchedule | None) -> dict | None:
    """``{"switch_times": [...], "phase_weights": [[...], ...]}`` (None without one)."""
    if schedule is None:
        return None
    return {"switch_times": np.asarray(schedule.switch_times).tolist(),
            "phase_weights": np.asarray(schedule.phase_weights).tolist()}
