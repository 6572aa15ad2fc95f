r"""Continuous-time gradient flow :math:`\dot\theta = -\nabla L(\theta)`, solved with diffrax.

:func:`run` is the continuous counterpart of :func:`ssm_jax.dynamics.discrete.run`: it takes
the same ``objective`` and ``observe`` closures (so every loss, parametrisation and weighting
works unchanged) and returns observations stacked over the save times.

Time rescaling. The flow is solved in normalised time :math:`s = t / T \in [0, 1]`,

.. math:: \frac{d\theta}{ds} = -T\,\nabla L(\theta),

so the stopping time ``T`` enters as an argument of the vector field rather than as the
end of the integration interval. This makes ``T`` differentiable with *both* adjoints
(``BacksolveAdjoint`` cannot differentiate ``t1`` or ``ts``), and leaves the saved
trajectory unchanged.

Closures. ``BacksolveAdjoint`` only differentiates what is passed through ``args``, so the
objective is closure-converted (:func:`equinox.filter_closure_convert`): the arrays it
closes over (weights, counts, weight decay, ...) become leaves of ``args`` and gradients
with respect to them flow with either adjoint.

Stopping (an event). ``stop(params)`` is a scalar that is negative while training should
go on; the solve stops where it first crosses zero upwards, bracketed by bisection on the
solver's dense interpolant to within ``2 tol`` in normalised time (``tol = max(1e-3 rtol,
100 eps)``), and the state is then stepped just past the bracket, so that a
piecewise-constant metric (an accuracy) reads at least its threshold there. That state and
its time are the stopped model and ``stop_time``; observations saved after ``stop_time``
hold that state (training stopped: the model is frozen). If ``stop(params0) >= 0`` the run
stops at ``t = 0``. Like every diffrax event, the condition is checked at the end of each
accepted solver step: a metric that rises past the threshold and falls back within one step
is not seen (tighter ``rtol`` means shorter steps).

Failure. The solve never raises inside ``jit`` (``throw=False``): if it fails (maximum
number of steps reached, step size collapsed, non-finite values) the result code says so
(:data:`STATUS`), observations at save times that were not reached are NaN, and the final
parameters are those at the time reached (``end_time``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, Int

from ..config import ADJOINTS
from ..registry import SOLVERS, ConfigError
from . import discrete

# Solver status codes (``FlowStats.status``) and their names in JSON.
STATUS = ("success", "stopped", "max_steps_reached", "failed")
SUCCESS, STOPPED, MAX_STEPS_REACHED, FAILED = range(4)


class FlowStats(NamedTuple):
    """Run-level results of a gradient-flow solve (scalars; arrays under vmap).

    Attributes:
        num_steps: solver steps attempted (accepted + rejected).
        num_accepted_steps, num_rejected_steps: their split.
        num_vf_evals: evaluations of the vector field -grad L, exact for the explicit
            solvers (``1 + (stages - 1) * num_steps``: first-same-as-last Runge-Kutta with
            the initial evaluation); -1 for the implicit ``kvaerno5``, whose count depends
            on its Newton iterations and is not observable.
        status: index into :data:`STATUS`.
        end_time: time the solve reached (``t1``; the stop time; or where it failed).
        stop_time: time the stop event fired, NaN if it did not.
    """

    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]
    num_vf_evals: Int[Array, ""]
    status: Int[Array, ""]
    end_time: Float[Array, ""]
    stop_time: Float[Array, ""]

    @property
    def failed(self) -> Array:
        """Whether the solve failed (max steps reached or another solver failure)."""
        return self.status >= MAX_STEPS_REACHED


def solver_of(name: str) -> diffrax.AbstractSolver:
    """The diffrax solver of a registered name (:data:`ssm_jax.registry.SOLVERS`)."""
    return SOLVERS[name].make()


def controller_of(name: str, rtol: float, atol: float) -> diffrax.PIDController:
    """Adaptive step-size control. Explicit solvers use the standard integral controller;
    implicit solvers use the PI coefficients (0.3, 0.3) diffrax recommends for them."""
    if SOLVERS[name].implicit:
        return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.3)
    return diffrax.PIDController(rtol=rtol, atol=atol)


def adjoint_of(name: str) -> diffrax.AbstractAdjoint:
    """``recursive``: differentiate through the solver's steps with recursive checkpointing
    (exact gradients of the computed solution, memory O(log max_steps) checkpoints);
    ``backsolve``: solve the continuous adjoint ODE backwards (O(1) memory, gradients
    accurate to the solver tolerance; no stop events)."""
    if name == "recursive":
        return diffrax.RecursiveCheckpointAdjoint()
    if name == "backsolve":
        return diffrax.BacksolveAdjoint()
    raise ConfigError(f"adjoint={name!r} is not one of {', '.join(map(repr, ADJOINTS))}")


def vf_evals_per_step(solver: diffrax.AbstractSolver) -> int | None:
    """New vector-field evaluations per attempted step of an explicit FSAL Runge-Kutta
    solver (stages - 1); ``None`` for implicit solvers."""
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        return None
    stages = len(solver.tableau.c) + 1
    return stages - 1 if solver.tableau.fsal else stages


def save_grid(saves: int) -> np.ndarray:
    """Default save fractions of ``t1``: ``saves`` evenly spaced points, 0 and 1 included."""
    return np.linspace(0.0, 1.0, saves)


def run(
    objective: Callable,
    observe: Callable,
    params0,
    t1,
    saves: int,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-8,
    max_steps: int = 100_000,
    adjoint: str = "recursive",
    stop: Callable | None = None,
    grid: np.ndarray | None = None,
    phases=None,
    switch_times=None,
):
    """Solve the gradient flow of ``objective`` from ``params0`` up to time ``t1``.

    Args:
        objective: ``params -> scalar loss`` L; the flow is dθ/dt = -∇L(θ).
        observe: ``params -> pytree`` saved at each save time (must include ``"loss"``), or
            a :class:`~ssm_jax.dynamics.discrete.Deferred` observer.
        params0: initial parameters (pytree).
        t1: final time T > 0 (may be traced: vmap and grad see it).
        saves: number of save times.
        solver, rtol, atol, max_steps: diffrax solver name, PID tolerances, step budget
            (per phase, with ``phases``).
        adjoint: ``"recursive"`` or ``"backsolve"`` (see :func:`adjoint_of`).
        stop: optional ``params -> scalar``; the solve stops where it crosses 0 upwards.
        grid: optional static save fractions of ``t1`` (increasing, in [0, 1], last = 1),
            default :func:`save_grid`. ``simulate`` passes the discrete run's save steps
            divided by ``steps`` so that flow and discrete runs share their save times.
        phases, switch_times: a piecewise-constant vector field (a weight schedule,
            :mod:`ssm_jax.schedule`): ``phases`` is a pytree with a leading axis of m
            phases (e.g. their class weights, (m, k)) and ``switch_times`` (m - 1,) the
            increasing times at which phase j + 1 takes over. ``objective``, ``observe``
            (its ``record``) and ``stop`` then take the phase as a second argument. The
            solve stops and restarts exactly at each switch time: phase j is solved on
            ``[tau_j, tau_{j+1}]`` (switch times clipped to ``[0, t1]``) in its own
            normalised time, so switch times are differentiable like ``t1``.

    Returns:
        ``(observations, final_params, stats)``: observations stacked along a leading
        axis of length ``saves`` at times ``t1 * grid``; the parameters at ``end_time``;
        :class:`FlowStats` (summed over the phases).
    """
    record, expand = discrete.split_observer(observe)
    grid = save_grid(saves) if grid is None else np.asarray(grid, dtype=float)
    if grid.shape != (saves,) or grid[0] < 0 or grid[-1] != 1.0 or np.any(np.diff(grid) <= 0):
        raise ConfigError(f"grid must be {saves} increasing fractions in [0, 1] ending at 1")
    if adjoint == "backsolve" and stop is not None:
        raise ConfigError("adjoint='backsolve' cannot be combined with a stop event")
    if (phases is None) != (switch_times is None):
        raise ConfigError("phases and switch_times go together")
    the_solver = solver_of(solver)
    dtype = jnp.result_type(*jax.tree.leaves(params0))
    t1 = jnp.asarray(t1, dtype)
    phased = phases is not None
    first_phase = (jax.tree.map(lambda a: a[0], phases),) if phased else ()
    # Closure conversion makes everything `objective` closes over a leaf of `args`.
    loss = eqx.filter_closure_convert(objective, params0, *first_phase)

    def vector_field(s, params, args):
        loss_fn, horizon, *phase = args
        return jax.tree.map(lambda g: -horizon * g, jax.grad(loss_fn)(params, *phase))

    # Precision (in normalised time s) to which a stop event is located.
    tol = max(rtol * 1e-3, 100 * float(jnp.finfo(dtype).eps))
    ts = jnp.asarray(grid, dtype)

    def solve(y0, horizon, phase: tuple, local_ts):
        """One solve on normalised time [0, 1] with dθ/ds = -horizon ∇L: the records at
        ``local_ts`` (save times not reached have an infinite time), the final state, the
        normalised time reached, diffrax's result and its statistics."""
        kwargs = dict(
            terms=diffrax.ODETerm(vector_field), solver=the_solver, t0=0.0, t1=1.0,
            dt0=None, y0=y0, args=(loss, horizon, *phase),
            stepsize_controller=controller_of(solver, rtol, atol),
            adjoint=adjoint_of(adjoint), max_steps=max_steps, throw=False,
        )
        if adjoint == "backsolve":
            # BacksolveAdjoint saves whole states only (no SubSaveAt, no fn, no events).
            sol = diffrax.diffeqsolve(saveat=diffrax.SaveAt(ts=local_ts), **kwargs)
            saved_s = sol.ts
            # The last save time reached (the end, unless the solve failed).
            last = jnp.maximum(jnp.sum(jnp.isfinite(saved_s)) - 1, 0)
            final = jax.tree.map(lambda y: y[last], sol.ys)
            seen = jax.vmap(lambda y: record(y, *phase))(sol.ys)
            end_s = local_ts[last]
        else:
            event = None
            if stop is not None:
                event = diffrax.Event(
                    lambda t, y, args, **_: jnp.asarray(stop(y, *phase), dtype),
                    root_finder=IntervalBisection(rtol=tol, atol=tol),
                    direction=True,
                )
            saveat = diffrax.SaveAt(subs=[
                diffrax.SubSaveAt(ts=local_ts, fn=lambda s, y, args: record(y, *phase)),
                diffrax.SubSaveAt(t1=True),
            ])
            sol = diffrax.diffeqsolve(saveat=saveat, event=event, **kwargs)
            saved_s, seen = sol.ts[0], sol.ys[0]
            final = jax.tree.map(lambda y: y[0], sol.ys[1])
            end_s = sol.ts[1][0]
        return seen, saved_s, final, end_s, _status(sol.result), _counts(sol.stats)

    if not phased:
        seen, saved_s, final, end_s, status, counts = solve(params0, t1, (), ts)
        reached = jnp.isfinite(saved_s)
        end_t, horizon, phase = t1 * end_s, t1, ()
        per_step = vf_evals_per_step(the_solver)
        vf_evals = (1 + per_step * counts[0]) if per_step is not None else jnp.asarray(-1)
    else:
        inner = jnp.clip(jnp.asarray(switch_times, dtype), 0.0, t1)
        bounds = jax.lax.cummax(jnp.concatenate([jnp.zeros((1,), dtype), inner, t1[None]]))
        starts, lengths = bounds[:-1], bounds[1:] - bounds[:-1]
        t_save = t1 * ts
        per_step = vf_evals_per_step(the_solver)

        def segment(carry, xs):
            y, status = carry
            phase, start, length = xs
            # Once a phase stopped or failed, the later ones are frozen (no time passes).
            live = status == SUCCESS
            horizon = jnp.where(live, length, 0.0)
            safe = jnp.where(length > 0, length, 1.0)
            local = jnp.where(length > 0, jnp.clip((t_save - start) / safe, 0.0, 1.0), 0.0)
            if adjoint == "backsolve":
                # diffrax's backsolve adjoint cannot differentiate save times; the final
                # state (what meta-gradients read) does not depend on them.
                local = jax.lax.stop_gradient(local)
            seen, saved_s, final, end_s, result, counts = solve(y, horizon, (phase,), local)
            worked = jnp.logical_and(live, length > 0)  # a solve that counts
            new_status = jnp.where(worked, result, status)
            counts = jax.tree.map(lambda c: jnp.where(worked, c, 0), counts)
            evals = (jnp.where(worked, 1 + per_step * counts[0], 0) if per_step is not None
                     else jnp.asarray(-1))
            out = (seen, jnp.where(live, saved_s, jnp.inf), start + end_s * length,
                   jnp.where(worked, result, SUCCESS), counts, evals)
            return (final, new_status), out

        (final, status), (seen_all, saved_all, end_all, results, counts, evals) = \
            jax.lax.scan(segment, (params0, jnp.asarray(SUCCESS, jnp.int32)),
                         (phases, starts, lengths))
        # Save i belongs to the phase in effect at its time (the later one at a switch; a
        # switch after t1 leaves the last save in the phase before it).
        owner = jnp.sum(t_save[:, None] >= jnp.asarray(switch_times, dtype)[None, :], axis=1)
        pick = lambda a: a[owner, jnp.arange(saves)]  # noqa: E731
        seen = jax.tree.map(pick, seen_all)
        reached = jnp.isfinite(pick(saved_all))
        # The phase that stopped or failed (the last one otherwise) sets the end.
        ended = jnp.argmax(jnp.concatenate([results[:-1] != SUCCESS, jnp.array([True])]))
        end_t = end_all[ended]
        horizon, phase = lengths[ended], (jax.tree.map(lambda a: a[ended], phases),)
        counts = jax.tree.map(lambda c: jnp.sum(c, axis=0), counts)
        vf_evals = jnp.sum(evals) if per_step is not None else jnp.asarray(-1)

    # Expand the records of the save times reached; the others (inf from diffrax) are set
    # to zero first, so that no inf reaches a gradient, and to NaN below.
    seen = expand(jax.tree.map(
        lambda a: jnp.where(_expand(reached, a), a, 0)
        if jnp.issubdtype(a.dtype, jnp.floating) else a, seen))

    stop_t = jnp.where(status == STOPPED, end_t, jnp.nan)
    if stop is not None:
        # Stopped: the model is frozen after the stop; already past the threshold at t = 0:
        # stop there.
        # The event is bracketed to within 2 tol (in normalised time) of the crossing; step
        # the state past the bracket (one Euler step of 2 tol, error O(tol^2)) so that it
        # lies on the far side of the crossing, where a piecewise-constant metric (an
        # accuracy) already reads at least the threshold.
        stopped = status == STOPPED
        nudge = jnp.where(stopped, 2 * tol, 0.0)
        final = jax.tree.map(lambda y, v: y + nudge * v, final,
                             vector_field(0.0, final, (loss, horizon, *phase)))
        end_t = jnp.where(stopped, end_t + nudge * horizon, end_t)
        stop_t = jnp.where(stopped, end_t, stop_t)
        seen_final = observe(final, *phase)
        first = (jax.tree.map(lambda a: a[0], phases),) if phased else ()
        at_start = jnp.asarray(stop(params0, *first), dtype) >= 0
        initial = observe(params0, *first)
        frozen = jnp.logical_and(status == STOPPED, ~reached)
        seen = jax.tree.map(
            lambda a, b: jnp.where(_expand(frozen, a), b[None], a), seen, seen_final)
        seen = jax.tree.map(lambda a, b: jnp.where(at_start, b[None], a), seen, initial)
        final = jax.tree.map(lambda a, b: jnp.where(at_start, b, a), final, params0)
        stop_t = jnp.where(at_start, 0.0, stop_t)
        end_t = jnp.where(at_start, 0.0, end_t)
        status = jnp.where(at_start, STOPPED, status)
        reached = jnp.logical_or(reached, jnp.logical_or(frozen, at_start))
    # Save times never reached (the solve failed) hold NaN, never a silent number.
    seen = jax.tree.map(
        lambda a: jnp.where(_expand(reached, a), a, jnp.nan)
        if jnp.issubdtype(a.dtype, jnp.floating) else a, seen)
    status = jnp.where(jnp.logical_and(status == SUCCESS, ~jnp.all(
        jnp.isfinite(seen["loss"]))), FAILED, status)

    num_steps, accepted, rejected = counts
    stats = FlowStats(
        num_steps=num_steps,
        num_accepted_steps=accepted,
        num_rejected_steps=rejected,
        num_vf_evals=jnp.asarray(vf_evals, jnp.int32),
        status=jnp.asarray(status, jnp.int32),
        end_time=end_t,
        stop_time=stop_t,
    )
    return seen, final, stats


def _status(result) -> Int[Array, ""]:
    """:data:`STATUS` index of a diffrax result."""
    return jnp.where(
        result == diffrax.RESULTS.successful, SUCCESS,
        jnp.where(result == diffrax.RESULTS.event_occurred, STOPPED,
                  jnp.where(result == diffrax.RESULTS.max_steps_reached, MAX_STEPS_REACHED,
                            FAILED)),
    ).astype(jnp.int32)


def _counts(stats) -> tuple[Array, Array, Array]:
    """(steps, accepted, rejected) of diffrax's statistics, as int32."""
    return tuple(jnp.asarray(stats[name], jnp.int32)
                 for name in ("num_steps", "num_accepted_steps", "num_rejected_steps"))


class IntervalBisection(optx.Bisection):
    """Bisection that stops once the bracket is narrower than ``atol + rtol |s|``.

    ``optimistix.Bisection`` also waits for ``|f| < atol``, which never happens at the jump
    of a piecewise-constant metric such as an accuracy, and raises (through a host
    callback) when the end points of the bracket have the same sign, which rounding of the
    dense interpolant can produce at such a jump; this one then converges to an end."""

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        lower_value, _ = fn(jnp.asarray(options["lower"], f_struct.dtype), args)
        upper_value, _ = fn(jnp.asarray(options["upper"], f_struct.dtype), args)
        # A fixed orientation skips the bracket check; then set the detected one.
        state = optx.Bisection(self.rtol, self.atol, flip=False).init(
            fn, y, args, options, f_struct, aux_struct, tags)
        return eqx.tree_at(lambda st: st.flip, state, lower_value > upper_value)

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        scale = self.atol + self.rtol * jnp.abs(y)
        return jnp.abs(state.lower - state.upper) < scale, optx.RESULTS.successful


def _expand(mask: Array, like: Array) -> Array:
    """Broadcast a (saves,) mask against an observation with leading axis saves."""
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))
