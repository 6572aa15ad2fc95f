"""The pure core: ``trajectory(spec, problem, numeric, key)``, and the ``simulate`` wrapper.

``trajectory`` is one pure, jit-able function. ``spec`` (a hashable :class:`Spec`) selects
code and fixes shapes; ``problem`` (:class:`~ssm_jax.problem.Problem`) and ``numeric``
(:class:`Numeric`) are pytrees of arrays, so

* a sweep is ``vmap(trajectory, in_axes=(None, 0, 0, 0))`` over stacked problems/numerics,
* a meta-gradient is ``grad`` of a metric of ``trajectory`` with respect to ``numeric``,
* a continuous-time solve reuses :func:`objective_fn` as its vector field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from . import losses, metrics, model, programs, reduced, sampling
from . import schedule as weight_schedule
from .config import Config, ConfigError, Numeric, Spec, spec_of
from .dynamics import discrete
from .io import to_json_value, write_json  # noqa: F401 - write_json is re-exported
from .problem import Problem, class_counts_of, make_problem
from .registry import LOSSES, METHODS, PARAMETRIZATIONS, SAMPLINGS
from .schedule import WeightSchedule
from .weights import class_weights


class Trajectory(NamedTuple):
    """A run, saved at ``saves`` points (leading axis) plus run-level results."""

    t: Float[Array, " s"]
    loss: Float[Array, " s"]
    per_class_accuracy: Float[Array, "s k"]
    per_class_loss: Float[Array, "s k"]
    own_output: Float[Array, "s k"]
    balanced_accuracy: Float[Array, " s"]
    learn_time: Float[Array, " k"]
    half_time: Float[Array, " k"]
    weights: Float[Array, " k"]
    diverged_step: Array
    params: Any = None
    posthoc_per_class_accuracy: Any = None  # (s, k): argmax(z - tau log pi) per class
    posthoc_balanced_accuracy: Any = None  # (s,)
    geometry: Any = None  # dict of (s, ...) arrays when spec.geometry (ssm_jax.geometry)
    flow: Any = None  # FlowStats of a gradient-flow run (ssm_jax.dynamics.flow), else None
    schedule: Any = None  # the WeightSchedule of a run whose weights switch, else None


def traced_values(cfg: Config) -> dict:
    """The values of the traced options of a configuration, with the defaults that need the
    rest of it: explicit weights default to ones (k,), ``t1`` to ``lr x steps``."""
    values = {name: getattr(cfg, name) for name in Numeric._fields}
    if values["weights"] is None:
        values["weights"] = (1.0,) * cfg.num_classes
    if values["t1"] is None:
        values["t1"] = cfg.lr * cfg.steps
    for name in ("reweight_from", "reweight_until"):  # unused without a switch (Spec)
        if values[name] is None:
            values[name] = 0.0
    return values


def numeric_of(cfg: Config, dtype=None, *, host: bool = False) -> Numeric:
    """The numeric fields of a configuration as arrays (default float dtype unless given):
    JAX arrays, or numpy arrays with ``host`` (no device dispatch, for batching many runs
    on the host as sweeps do)."""
    dtype = dtype or jax.dtypes.canonicalize_dtype(np.float64)
    xp = np if host else jnp
    return Numeric(**{name: xp.asarray(value, dtype)
                      for name, value in traced_values(cfg).items()})


def problem_of(cfg: Config, n_pad: int | None = None, *, host: bool = False) -> Problem:
    """The label arrays of a configuration, optionally padded to ``n_pad`` examples (numpy
    arrays with ``host``)."""
    return make_problem(class_counts_of(cfg), n_pad, host=host)


def omega_of(spec: Spec, problem: Problem, numeric: Numeric) -> Float[Array, " k"]:
    """Normalised class weights of a run."""
    return class_weights(problem.counts, spec.weighting, numeric.gamma, numeric.beta,
                         numeric.weights)


def initial_params(spec: Spec, problem: Problem, numeric: Numeric, omega, key: PRNGKeyArray):
    """Initial parameters for ``spec.init`` (gaussian std or aligned z0 = ``init_scale``)."""
    dtype = numeric.lr.dtype
    if spec.init == "aligned":
        return model.init_aligned(key, problem, spec.dim, numeric.init_scale, omega,
                                  spec.parametrization, spec.bias, dtype, depth=spec.depth)
    return model.init_gaussian(key, problem, spec.dim, numeric.init_scale, spec.parametrization,
                               spec.bias, dtype, depth=spec.depth)


def per_example_loss(spec: Spec, problem: Problem, numeric: Numeric):
    """The per-example loss of a run: the loss gets the priors from ``problem.counts`` and
    the numeric options it declares it uses."""
    uses = LOSSES[spec.loss].uses
    return losses.per_example(spec.loss, problem.counts,
                              **{name: getattr(numeric, name) for name in uses})


def objective_parts(spec: Spec, problem: Problem, numeric: Numeric, omega):
    """``params -> (L(params), data term)``: the objective of :func:`objective_fn` and its
    weighted mean loss without the weight decay penalty. Training steps check the data term
    for divergence (``discrete.run(..., has_aux=True)``), so the penalty, a full pass over
    the features, is only evaluated at save points.

    The function also takes ``(params, omega_t, scale)``: the class weights in effect
    (a weight schedule's phase; default ``omega``) and the per-example factors of a
    minibatch (:mod:`ssm_jax.sampling`; default the full batch)."""
    per_example = per_example_loss(spec, problem, numeric)
    onehot = problem.onehot()
    example_weights = model.example_weights(problem, omega)

    def parts(params, omega_t=None, scale=None):
        weights = (example_weights if omega_t is None
                   else model.example_weights(problem, omega_t))
        if scale is not None:
            weights = weights * scale
        feats = model.features(params, problem, omega, spec.parametrization)
        values = per_example(model.outputs(params, feats), onehot)
        data = losses.weighted_mean(values, weights, problem.mask)
        return data + model.weight_decay_penalty(params, numeric.weight_decay), data

    return parts


def objective_fn(spec: Spec, problem: Problem, numeric: Numeric, omega):
    """``params -> L(params)``: weighted mean loss plus weight decay (see
    :mod:`ssm_jax.losses`); also ``(params, omega_t, scale)`` as :func:`objective_parts`."""
    parts = objective_parts(spec, problem, numeric, omega)
    return lambda params, *phase: parts(params, *phase)[0]


def observe_fn(spec: Spec, problem: Problem, numeric: Numeric, omega):
    """``params -> dict`` of what is saved at each save point; ``(params, omega_t)``
    computes the saved ``loss`` with the class weights in effect."""
    per_example = per_example_loss(spec, problem, numeric)
    objective = objective_fn(spec, problem, numeric, omega)

    def observe(params, omega_t=None):
        feats = model.features(params, problem, omega, spec.parametrization)
        outputs = model.outputs(params, feats)
        seen = metrics.snapshot(outputs, problem, per_example)
        seen["posthoc_per_class_accuracy"] = metrics.posthoc_accuracy(outputs, problem,
                                                                      numeric.tau)
        if spec.geometry:
            from . import geometry

            seen["geometry"] = geometry.snapshot(params, feats, problem)
        seen["loss"] = objective(params, omega_t)
        if spec.keep_params:
            seen["params"] = params
        return seen

    return observe


def schedule_of(spec: Spec, numeric: Numeric, omega,
                schedule: WeightSchedule | None = None) -> WeightSchedule | None:
    """The weight schedule of a run: ``schedule`` if given, else the one of
    ``--reweight-from`` / ``--reweight-until`` (``spec.weight_phases``), None without a
    switch. Refused for a parametrisation whose trained variable depends on the weights."""
    if schedule is None:
        schedule = weight_schedule.of_options(spec.weight_phases, omega, numeric.reweight_from,
                                              numeric.reweight_until)
    if schedule is not None and PARAMETRIZATIONS[spec.parametrization].uses_weights:
        raise ConfigError(f"a weight schedule needs a parametrisation that does not depend on "
                          f"the weights, not parametrization={spec.parametrization!r}")
    return schedule


def batches(spec: Spec, problem: Problem) -> bool:
    """Whether the run's steps use minibatches (not every step the full batch; static)."""
    return not SAMPLINGS[spec.sampling].full_batch(spec.batch_size, problem.labels.shape[-1])


def in_time(spec: Spec, problem: Problem, numeric: Numeric, key: PRNGKeyArray, objective,
            observe, schedule: WeightSchedule | None):
    """A discrete run's objective and observer as functions of the step:
    ``(objective(params, step), observe(params, step), True)`` applying the schedule's class
    weights at time ``lr * step`` (:func:`ssm_jax.schedule.weights_at`) and step ``step``'s
    minibatch (:mod:`ssm_jax.sampling`, keys from ``key``); ``(objective, observe, False)``
    unchanged when the run has neither."""
    minibatch = batches(spec, problem)
    if schedule is None and not minibatch:
        return objective, observe, False
    key_batches = sampling.sampling_key(key)

    def weights(step):
        if schedule is None:
            return None
        return weight_schedule.weights_at(schedule, numeric.lr * step, numeric.lr)

    def timed_objective(params, step):
        if not minibatch:
            return objective(params, weights(step))
        scale = sampling.batch_scale(spec.sampling, key_batches, step, problem,
                                     spec.batch_size)
        return objective(params, weights(step), scale)

    record, expand = discrete.split_observer(observe)

    def timed_record(params, step):
        return record(params, weights(step))

    if isinstance(observe, discrete.Deferred):
        return timed_objective, discrete.Deferred(timed_record, expand), True
    return timed_objective, timed_record, True


def finish(spec: Spec, t, seen: dict, omega, diverged_step, failed=None) -> Trajectory:
    """Assemble a :class:`Trajectory` from saved observations (adds learning times).

    ``failed``: (s,) booleans, the save points at or after a divergence. Every observation
    there becomes NaN, so that no metric of a diverged run is a number: accuracies of NaN
    outputs would otherwise read as 0 (argmax of NaN is class 0), and learning times come
    only from the saves before the divergence."""
    if failed is not None:
        seen = jax.tree.map(lambda a: _nan_where(failed, a), seen)
    return Trajectory(
        t=t,
        loss=seen["loss"],
        per_class_accuracy=seen["per_class_accuracy"],
        per_class_loss=seen["per_class_loss"],
        own_output=seen["own_output"],
        balanced_accuracy=seen["balanced_accuracy"],
        learn_time=metrics.first_crossing(t, seen["per_class_accuracy"]),
        half_time=metrics.first_crossing(t, seen["own_output"]),
        weights=omega,
        diverged_step=diverged_step,
        params=seen.get("params"),
        posthoc_per_class_accuracy=seen.get("posthoc_per_class_accuracy"),
        posthoc_balanced_accuracy=(None if "posthoc_per_class_accuracy" not in seen
                                   else jnp.mean(seen["posthoc_per_class_accuracy"], axis=-1)),
        geometry=seen.get("geometry"),
    )


def _nan_where(failed: Bool[Array, " s"], values: Array) -> Array:
    """``values`` (leading save axis) with the rows of ``failed`` save points set to NaN
    (integer observations, which have no NaN, are left as they are)."""
    if not jnp.issubdtype(values.dtype, jnp.floating):
        return values
    return jnp.where(failed.reshape(failed.shape + (1,) * (values.ndim - 1)), jnp.nan, values)


def trajectory(spec: Spec, problem: Problem, numeric: Numeric, key: PRNGKeyArray,
               schedule: WeightSchedule | None = None) -> Trajectory:
    """Simulate one training run. Pure: jit with ``spec`` static, vmap/grad over the rest.

    ``schedule``: a piecewise-constant schedule of class weights
    (:func:`ssm_jax.schedule.piecewise`) instead of the run's own (its weighting, switched
    by ``reweight_from`` / ``reweight_until``). With one, classes are not pooled by the
    reduced simulator (its phases may weight classes of equal count differently)."""
    omega = omega_of(spec, problem, numeric)
    if schedule is not None and spec.class_groups is not None:
        spec = dataclasses.replace(spec, class_groups=None)
    schedule = schedule_of(spec, numeric, omega, schedule)
    params0 = initial_params(spec, problem, numeric, omega, key)
    # (loss, data term): steps check the data term for divergence, see objective_parts
    objective = objective_parts(spec, problem, numeric, omega)
    observe = observe_fn(spec, problem, numeric, omega)
    if reduced.use_reduced(spec, problem):  # same run, O(G k d^2) per step (docs/performance.md)
        params0, objective, observe = reduced.reduce(spec, problem, numeric, omega, params0,
                                                     observe)
    if METHODS[spec.method].is_flow:
        seen, t, diverged_step, stats, _ = flow_run(spec, numeric, objective, observe,
                                                    params0, schedule)
        return finish(spec, t, seen, omega, diverged_step)._replace(flow=stats,
                                                                    schedule=schedule)
    opt = discrete.optimizer(spec.method, numeric.lr, numeric.momentum)
    objective, observe, timed = in_time(spec, problem, numeric, key, objective, observe,
                                        schedule)
    seen, _, diverged_step = discrete.run(objective, observe, params0, opt, spec.steps,
                                          spec.saves, remat=spec.remat, has_aux=True,
                                          timed=timed)
    points = discrete.save_steps(spec.steps, spec.saves)
    t = numeric.lr * jnp.asarray(points, numeric.lr.dtype)
    # A flow marks its own unreached saves NaN (dynamics/flow.py); steps mark them here.
    failed = jnp.logical_and(diverged_step >= 0, jnp.asarray(points) >= diverged_step)
    return finish(spec, t, seen, omega, diverged_step, failed)._replace(schedule=schedule)


def stop_fn(spec: Spec, observe):
    """``params -> scalar`` that crosses zero upwards when ``spec.stop_metric`` crosses
    ``spec.stop_at`` (accuracies rise to it, the loss falls to it); None without a stop.
    Extra arguments (a schedule's phase weights) are passed on to ``observe``."""
    if spec.stop_metric is None:
        return None
    if spec.stop_metric == "balanced_accuracy":
        return lambda params, *phase: observe(params, *phase)["balanced_accuracy"] - spec.stop_at
    if spec.stop_metric == "worst_class_accuracy":
        return lambda params, *phase: (jnp.min(observe(params, *phase)["per_class_accuracy"])
                                       - spec.stop_at)
    return lambda params, *phase: spec.stop_at - observe(params, *phase)["loss"]


def flow_run(spec: Spec, numeric: Numeric, objective, observe, params0,
             schedule: WeightSchedule | None = None, t1=None):
    """Gradient flow up to ``t1`` (default ``numeric.t1``, itself ``lr * steps`` unless
    given), saved at the discrete run's save times scaled to ``t1``: ``(observations, t,
    diverged_step, FlowStats, final parameters)``. ``objective`` returns ``(L, data
    term)`` (and takes the class weights in effect as a second argument); with a
    ``schedule`` the solve stops and restarts at each switch time. ``diverged_step`` is -1,
    or the number of accepted solver steps when the solve failed."""
    from .dynamics import flow  # diffrax (0.4 s to import) only for a run that needs it

    grid = discrete.save_steps(spec.steps, spec.saves) / spec.steps
    if t1 is None:
        t1 = numeric.lr * spec.steps if numeric.t1 is None else numeric.t1
    phased = {} if schedule is None else dict(phases=schedule.phase_weights,
                                             switch_times=schedule.switch_times)
    seen, final, stats = flow.run(
        lambda params, *phase: objective(params, *phase)[0], observe, params0, t1,
        spec.saves, solver=spec.solver, rtol=spec.rtol, atol=spec.atol,
        max_steps=spec.max_steps, adjoint=spec.adjoint, stop=stop_fn(spec, observe),
        grid=grid, **phased,
    )
    t = t1 * jnp.asarray(grid, numeric.lr.dtype)
    diverged_step = jnp.where(stats.failed, stats.num_accepted_steps, -1).astype(jnp.int32)
    return seen, t, diverged_step, stats, final


trajectory_jit = jax.jit(trajectory, static_argnums=0)


@dataclass
class Result:
    """A finished run: its configuration, class counts and trajectory (as numpy arrays)."""

    config: Config
    class_counts: tuple[int, ...]
    trajectory: Trajectory

    @property
    def diverged(self) -> bool:
        return int(self.trajectory.diverged_step) >= 0

    def to_dict(self) -> dict:
        """JSON-ready dict; non-finite numbers become ``null`` (see :func:`to_json_value`)."""
        tr = self.trajectory
        out = {
            "class_counts": list(self.class_counts),
            "weights": tr.weights,
            "t": tr.t,
            "loss": tr.loss,
            "per_class_accuracy": tr.per_class_accuracy,
            "per_class_loss": tr.per_class_loss,
            "own_output": tr.own_output,
            "balanced_accuracy": tr.balanced_accuracy,
            "learn_time": tr.learn_time,
            "half_time": tr.half_time,
            "diverged": self.diverged,
            "diverged_step": int(tr.diverged_step) if self.diverged else None,
            "config": self.config.to_dict(),
        }
        if tr.params is not None:
            out["params"] = {name: np.asarray(v) for name, v in tr.params.items()}
        if tr.posthoc_per_class_accuracy is not None:
            out["posthoc_per_class_accuracy"] = tr.posthoc_per_class_accuracy
            out["posthoc_balanced_accuracy"] = tr.posthoc_balanced_accuracy
        if tr.geometry is not None:
            out["geometry"] = {name: np.asarray(v) for name, v in tr.geometry.items()}
        if tr.flow is not None:
            out.update(flow_json(tr.flow))
        if tr.schedule is not None:
            out["weight_schedule"] = weight_schedule.to_json(tr.schedule)
        return to_json_value(out)


def flow_json(stats) -> dict:
    """JSON keys of a gradient-flow run's :class:`~ssm_jax.dynamics.flow.FlowStats`."""
    from .dynamics import flow

    evals = int(stats.num_vf_evals)
    return {
        "solver_status": flow.STATUS[int(stats.status)],
        "num_steps": int(stats.num_steps),
        "num_accepted_steps": int(stats.num_accepted_steps),
        "num_rejected_steps": int(stats.num_rejected_steps),
        "num_vf_evals": evals if evals >= 0 else None,
        "end_time": float(stats.end_time),
        "stop_time": float(stats.stop_time) if np.isfinite(stats.stop_time) else None,
    }


def simulate(cfg: Config, key: PRNGKeyArray | None = None,
             schedule: WeightSchedule | None = None) -> Result:
    """Run one configuration (in float64 when ``cfg.x64``).

    ``key`` defaults to ``PRNGKey(cfg.seed)``. ``schedule``: a piecewise-constant schedule
    of class weights (:func:`ssm_jax.schedule.piecewise`) that replaces the configuration's
    weighting (leave ``cfg.weighting`` at ``erm`` and the reweight options unset)."""
    if schedule is not None and (cfg.weighting != "erm" or cfg.reweight_from is not None
                                 or cfg.reweight_until is not None):
        raise ConfigError(f"a schedule replaces the weighting: leave weighting='erm' (got "
                          f"{cfg.weighting!r}) and reweight_from / reweight_until unset")
    if schedule is not None and np.shape(schedule.phase_weights)[-1] != cfg.num_classes:
        raise ConfigError(f"the schedule weights {np.shape(schedule.phase_weights)[-1]} "
                          f"classes but the configuration has {cfg.num_classes}")
    with jax.enable_x64(cfg.x64):
        key = jax.random.PRNGKey(cfg.seed) if key is None else key
        if schedule is not None:
            dtype = jnp.asarray(0.0).dtype
            schedule = jax.tree.map(lambda a: jnp.asarray(a, dtype), schedule)
        # Host (numpy) inputs: the jitted call transfers them, with no eager op to dispatch.
        # The compiled trajectory is loaded from the program store when this process or an
        # earlier one compiled it (ssm_jax.programs), without tracing it again.
        traj = programs.call("trajectory", trajectory_jit, spec_of(cfg),
                             problem_of(cfg, host=True), numeric_of(cfg, host=True), key,
                             schedule)
        traj = jax.tree.map(np.asarray, traj)
    return Result(config=cfg, class_counts=class_counts_of(cfg), trajectory=traj)
