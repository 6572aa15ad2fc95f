r"""Differentiating a run: a meta-objective at the stopping time T and its gradient.

The objective (:mod:`ssm_jax.meta.objectives`) is evaluated as a pure function of the
run's arrays (a :class:`~ssm_jax.simulate.Spec`, a :class:`~ssm_jax.problem.Problem`, a
:class:`~ssm_jax.simulate.Numeric` and a PRNG key) and differentiated with
``jax.value_and_grad``, so a whole sweep of gradients is one ``vmap``-ed call
(:func:`value_and_grad`); :func:`gradient` does the same from a
:class:`~ssm_jax.config.Config`.

Gradients (the names of ``--wrt``) are taken at the configuration's values:

* ``gamma``, ``beta``, ``init_scale``, ``lr``, ``momentum``, ``weight_decay``: the numeric
  fields of the run. ``lr`` is varied **at a fixed number of steps** (so ``T = lr × steps``
  moves with it).
* ``weights``: the explicit (un-normalised) per-class weight vector (needs
  ``weighting='explicit'``); its gradient is a list, one entry per class.
* ``ratio``: the examples stay fixed (labels, number of examples per class) and only the
  class counts that enter the weights and their normalisation are moved, through the
  smooth counts of :func:`ssm_jax.problem.continuous_counts` (no rounding); for the
  logit-adjusted losses (``la``, ``vs``) the priors move with them too. Under ERM with
  ``mse``/``ce`` the run does not depend on these counts, so this gradient is 0.
* ``t1``, the stopping time T, at fixed ``lr``. For a discrete run (time ``t = lr × step``)
  we define the run at non-grid times by the straight line from each iterate along its
  next update, :math:`\theta(T + s) = \theta_N + (s/\mathrm{lr})\,u_N` for
  :math:`0 \le s \le \mathrm{lr}`, where :math:`u_N` is the optimiser's update at
  :math:`\theta_N` (for plain GD :math:`u_N = -\mathrm{lr}\,\nabla L(\theta_N)`). The
  derivative in T is the right derivative of the objective along this line at s = 0:
  :math:`\partial_T J = \langle \nabla_\theta J(\theta_N), u_N/\mathrm{lr}\rangle`, which
  for GD is :math:`\langle\nabla_\theta J, -\nabla L(\theta_N)\rangle`, the same formula
  as for gradient flow.

Memory: the discrete route runs with ``remat=True`` (nested checkpointed scans, see
:func:`ssm_jax.dynamics.discrete.checkpointed_scan`), so the memory of a gradient grows
only logarithmically with the number of steps (``benchmarks/meta_memory.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import model
from ..config import Config, ConfigError
from ..dynamics import discrete
from ..problem import Problem, continuous_counts
from ..simulate import (
    Numeric,
    Spec,
    flow_run,
    in_time,
    initial_params,
    numeric_of,
    objective_parts,
    omega_of,
    per_example_loss,
    problem_of,
    schedule_of,
    spec_of,
)
from .objectives import objective_value

# The request's names and checks are JAX-free (re-exported from here).
from .request import (  # noqa: F401
    DEFAULT_TEMPERATURE,
    NUMERIC_WRT,
    WRT,
    check_config,
    check_temperature,
    check_wrt,
    failure_reason,
    is_flow,
    stop_time,
    with_t1,
)


class MetaGradient(NamedTuple):
    """Value of a meta-objective at T, its gradient (name -> array), and divergence.

    Through a failed run (``diverged_step >= 0``: a non-finite loss, or a gradient-flow
    solve that stopped before T) the value and every gradient are NaN."""

    value: Array
    gradient: dict
    diverged_step: Array



def final_params(spec: Spec, problem: Problem, numeric: Numeric, key: PRNGKeyArray,
                 t_offset=0.0):
    """Parameters at ``T + t_offset``, the class weights and the divergence step (-1 if none).

    ``t_offset`` is a traced time offset along the continuous-time interpolation (module
    docstring); its derivative at 0 is the derivative in T at fixed lr.
    """
    omega = omega_of(spec, problem, numeric)
    schedule = schedule_of(spec, numeric, omega)
    params0 = initial_params(spec, problem, numeric, omega, key)
    parts = objective_parts(spec, problem, numeric, omega)
    observe = lambda p, *phase: {"loss": parts(p, *phase)[0]}  # noqa: E731
    if spec.method == "flow":
        t1 = numeric.lr * spec.steps if numeric.t1 is None else numeric.t1
        *_, diverged, _, params = flow_run(spec, numeric, parts, observe, params0, schedule,
                                           t1=t1 + t_offset)
        return params, omega, diverged
    opt = discrete.optimizer(spec.method, numeric.lr, numeric.momentum)
    objective, observe, timed = in_time(spec, problem, numeric, key, parts, observe, schedule)
    _, params, diverged, state = discrete.run(
        objective, observe, params0, opt, spec.steps, 2,
        remat=spec.remat, return_state=True, has_aux=True, timed=timed,
    )
    # The update the run would take next (at step `steps`, time T), for d/dT.
    at_end = (jnp.asarray(spec.steps, jnp.int32),) if timed else ()
    grads = jax.grad(lambda p: objective(p, *at_end)[0])(params)
    updates, _ = opt.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + (t_offset / numeric.lr) * u, params, updates)
    return params, omega, diverged


def value(spec: Spec, problem: Problem, numeric: Numeric, key: PRNGKeyArray, *,
          objective: str = "balanced_loss", temperature: float = DEFAULT_TEMPERATURE,
          t_offset=0.0) -> tuple[Array, Array]:
    """``(objective value at T + t_offset, diverged_step)``: pure, jit/vmap/grad-able.

    The value is NaN when the run failed (``diverged_step >= 0``): the parameters of a
    diverged run, or of a flow solve stopped early, give a number that is not the
    objective at T (often a plausible one, such as 0)."""
    params, omega, diverged = final_params(spec, problem, numeric, key, t_offset)
    feats = model.features(params, problem, omega, spec.parametrization)
    outputs = model.outputs(params, feats)
    per_example = per_example_loss(spec, problem, numeric)
    val = objective_value(objective, outputs, problem, per_example, temperature)
    return jnp.where(diverged >= 0, jnp.nan, val), diverged


def value_and_grad(spec: Spec, problem: Problem, numeric: Numeric, key: PRNGKeyArray, *,
                   objective: str = "balanced_loss", wrt: Sequence[str] = ("gamma",),
                   temperature: float = DEFAULT_TEMPERATURE,
                   ratio_tangent: Float[Array, " k"] | None = None,
                   t_offset=0.0) -> MetaGradient:
    """Value of ``objective`` at T and its gradient with respect to ``wrt``. Pure.

    Args:
        spec, problem, numeric, key: the run (as for :func:`ssm_jax.simulate.trajectory`).
        objective: one of :data:`OBJECTIVES`.
        wrt: names from :data:`WRT`. ``"ratio"`` needs ``ratio_tangent``.
        temperature: of the ``balanced_accuracy`` surrogate.
        ratio_tangent: ``d problem.counts / d ratio`` (k,), from :func:`ratio_tangent_of`;
            the ratio gradient is the counts gradient contracted with it.
        t_offset: evaluate at ``T + t_offset`` along the interpolation of the module
            docstring (traced; 0 by default, e.g. for finite differences in T).

    Returns:
        :class:`MetaGradient` with ``gradient[name]`` a scalar (or (k,) for ``weights``).

    ``objective``, ``wrt`` and ``temperature`` are static; vmap over ``problem``,
    ``numeric``, ``key`` (and ``ratio_tangent``) for a sweep of gradients in one call.
    Use :data:`value_and_grad_jit` (spec, objective, wrt, temperature static).
    """
    wrt = tuple(wrt)
    check_wrt(wrt)
    if "ratio" in wrt and ratio_tangent is None:
        raise ConfigError("wrt='ratio' needs ratio_tangent (see ratio_tangent_of)")
    dtype = numeric.lr.dtype
    inputs = {name: getattr(numeric, name) for name in wrt if name in NUMERIC_WRT}
    if "ratio" in wrt:
        inputs["counts"] = problem.counts
    if "t1" in wrt:
        inputs["t1"] = jnp.zeros((), dtype)

    def f(inputs):
        num = numeric._replace(**{n: v for n, v in inputs.items() if n in NUMERIC_WRT})
        prob = problem._replace(counts=inputs.get("counts", problem.counts))
        return value(spec, prob, num, key, objective=objective, temperature=temperature,
                     t_offset=inputs.get("t1", 0.0) + t_offset)

    (val, diverged), grads = jax.value_and_grad(f, has_aux=True)(inputs)
    if "ratio" in wrt:
        grads["ratio"] = jnp.dot(grads.pop("counts"), ratio_tangent)
    # value() is NaN through a failed run, but its gradient there is 0 (jnp.where passes
    # no cotangent to the branch not taken): the gradient is NaN there too.
    grads = jax.tree.map(lambda g: jnp.where(diverged >= 0, jnp.nan, g), grads)
    return MetaGradient(val, {name: grads[name] for name in wrt}, diverged)


value_and_grad_jit = jax.jit(value_and_grad, static_argnums=0,
                             static_argnames=("objective", "wrt", "temperature"))


def meta_spec_of(cfg: Config) -> Spec:
    """The static spec of the gradient route: ``remat`` on, parameters not kept."""
    return dataclasses.replace(spec_of(cfg), remat=True, keep_params=False, saves=2)


def ratio_tangent_of(cfg: Config) -> Float[Array, " k"]:
    """``d continuous_counts(cfg, ratio) / d ratio`` at ``cfg.ratio`` (k,)."""
    ratio = jnp.asarray(cfg.ratio, jnp.asarray(0.0).dtype)
    return jax.jvp(lambda r: continuous_counts(cfg, r), (ratio,), (jnp.ones_like(ratio),))[1]


def inputs_of(cfg: Config, wrt: Sequence[str] = ()):
    """``(spec, problem, numeric, key, ratio_tangent)`` of a configuration.

    With ``"ratio"`` in ``wrt`` the problem's counts are the smooth counts of
    :func:`~ssm_jax.problem.continuous_counts` and ``ratio_tangent`` their derivative;
    otherwise the integer counts and ``None``."""
    spec = meta_spec_of(cfg)
    problem = problem_of(cfg)
    tangent = None
    if "ratio" in wrt:
        problem = problem._replace(counts=continuous_counts(cfg).astype(problem.counts.dtype))
        tangent = ratio_tangent_of(cfg).astype(problem.counts.dtype)
    return spec, problem, numeric_of(cfg), jax.random.PRNGKey(cfg.seed), tangent


def gradient(cfg: Config, objective: str = "balanced_loss", wrt: Sequence[str] = ("gamma",),
             *, t1: float | None = None,
             temperature: float = DEFAULT_TEMPERATURE) -> MetaGradient:
    """Value and gradient of ``objective`` at ``T = t1`` (default ``lr × steps``) of a run.

    Computes in float64 when ``cfg.x64``. Returns numpy arrays.
    """
    cfg = with_t1(cfg, t1)
    wrt = tuple(wrt)
    check_config(cfg, objective, wrt)
    check_temperature(temperature)
    with jax.enable_x64(cfg.x64):
        spec, problem, numeric, key, tangent = inputs_of(cfg, wrt)
        out = value_and_grad_jit(spec, problem, numeric, key, objective=objective, wrt=wrt,
                                 temperature=float(temperature), ratio_tangent=tangent)
        return jax.tree.map(np.asarray, out)
