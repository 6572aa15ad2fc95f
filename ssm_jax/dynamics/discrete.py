"""Discrete training with an optax optimiser inside ``lax.scan``.

The run is a scan over save intervals, each an inner scan over steps, so only the
snapshots at the save points are kept (the parameter history only when asked). Save points
are the steps ``round(j * steps / (saves - 1))``, j = 0..saves-1; when the intervals differ
by one step, the inner scan has the longest length and masks the surplus step.
Time is ``t = lr * step`` so discrete runs line up with gradient flow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..registry import METHODS

# The code of the registry's discrete methods (ssm_jax.registry.METHODS names each one):
# ``make(lr, momentum)`` returns the optax transformation (lr and momentum may be traced).


def make_gd(lr, momentum):
    """Plain gradient descent."""
    return optax.sgd(lr)


def make_momentum(lr, momentum):
    """Heavy-ball momentum."""
    return optax.sgd(lr, momentum=momentum)


def make_adam(lr, momentum):
    """Adam."""
    return optax.adam(lr)


def make_specgd(lr, momentum):
    """Spectral gradient descent (:mod:`ssm_jax.spectral`, imported when first used)."""
    from .. import spectral

    return spectral.spectral_gd(lr)


def make_muon(lr, momentum):
    """Muon (:mod:`ssm_jax.spectral`, imported when first used)."""
    from .. import spectral

    return spectral.muon(lr, momentum)


def optimizer(method: str, lr, momentum=0.9) -> optax.GradientTransformation:
    """The optax optimiser of a discrete method name (``lr`` and ``momentum`` may be traced)."""
    entry = METHODS[method]
    if entry.is_flow:
        raise ValueError(f"method={method!r} is solved as a flow, not by an optimiser")
    return entry.make(lr, momentum)


def save_steps(steps: int, saves: int) -> np.ndarray:
    """The (static) steps at which snapshots are taken: evenly spaced, 0 and ``steps`` included."""
    return np.round(np.linspace(0, steps, saves)).astype(np.int64)


class Deferred(NamedTuple):
    """An observer in two parts: ``record(params)`` runs at each save point inside the
    training loop and keeps what the observations need (a pytree that includes the scalar
    ``"loss"``, checked for divergence there); ``expand(records)`` runs once after the loop
    on the records of every save point, stacked along a leading axis, and returns the
    observations with the same leading axis.

    The reduced simulator records a few small matrices per save and expands them into
    per-example outputs with one large matrix product per block of save points, instead
    of a small product per save inside the loop (``ssm_jax.reduced.observe_fn``).
    Calling a ``Deferred`` on one ``params`` observes it directly."""

    record: Callable
    expand: Callable

    def __call__(self, params, *args):
        records = jax.tree.map(lambda a: jnp.asarray(a)[None], self.record(params, *args))
        return jax.tree.map(lambda a: a[0], self.expand(records))


def split_observer(observe: Callable) -> tuple[Callable, Callable]:
    """``(record, expand)`` of an observer: its parts when it is :class:`Deferred`, else
    ``(observe, identity)``."""
    if isinstance(observe, Deferred):
        return observe.record, observe.expand
    return observe, lambda records: records


REMAT_BRANCHING = 8


def _plain_scan(step, carry, xs):
    return jax.lax.scan(step, carry, xs)[0]


def checkpointed_scan(step: Callable, carry, xs, branching: int = REMAT_BRANCHING):
    """``lax.scan(step, carry, xs)[0]`` (final carry only; ``step`` returns ``(carry, None)``)
    with memory logarithmic in ``len(xs)`` when differentiated.

    The sequence is split into at most ``branching`` chunks, each a checkpointed call of
    this function on its chunk (recursively, down to ``branching`` plain steps). The
    backward pass then stores about ``branching`` carries per level, ``log_B(len)`` levels,
    and recomputes each level's forward pass once: memory O(B log_B N) carries for
    compute O(N log_B N) steps (N = ``len(xs)``), instead of O(N) carries for a plain scan.
    """
    length = int(xs.shape[0])
    if length <= branching:
        return jax.lax.scan(jax.checkpoint(step), carry, xs)[0]
    chunk = -(-length // branching)  # ceil
    full = length // chunk

    def body(c, row):
        return checkpointed_scan(step, c, row, branching), None

    carry = jax.lax.scan(jax.checkpoint(body), carry,
                         xs[: full * chunk].reshape((full, chunk) + xs.shape[1:]))[0]
    if full * chunk < length:
        carry = checkpointed_scan(step, carry, xs[full * chunk:], branching)
    return carry


def run(
    objective: Callable,
    observe: Callable,
    params0,
    opt: optax.GradientTransformation,
    steps: int,
    saves: int,
    *,
    remat: bool = False,
    return_state: bool = False,
    has_aux: bool = False,
    timed: bool = False,
):
    """Train ``params0`` on ``objective`` and observe it at the save points.

    Args:
        objective: ``params -> scalar loss``.
        observe: ``params -> pytree`` of quantities to save (must include ``"loss"``), or a
            :class:`Deferred` observer (recorded in the loop, expanded after it).
        params0: initial parameters (pytree).
        opt: optax optimiser.
        steps, saves: number of steps and of (evenly spaced) save points.
        remat: rematerialise in the backward pass (``jax.checkpoint``) with nested scans
            (see :func:`checkpointed_scan`), so the memory of a gradient through training
            grows only logarithmically with the number of steps (at about
            ``log_B(steps)`` times the forward compute, B = :data:`REMAT_BRANCHING`).
        return_state: also return the final optimiser state (a fourth element), e.g. to
            take the direction of the next update (``ssm_jax.meta``'s derivative in time).
        has_aux: ``objective`` returns ``(loss, monitor)``, and each step checks the scalar
            ``monitor`` for finiteness instead of the loss. The monitor must be finite
            exactly when the loss is, and cheaper: e.g. the data term without the weight
            decay penalty, which is finite whenever the parameters are (and the data term
            is not once a parameter is not). The loss itself is then never evaluated inside
            the loop, so the compiler drops its extra pass over the parameters.
        timed: the objective changes with the step: ``objective(params, step)``, and the
            observer's ``record(params, step)`` (or ``observe(params, step)``), also get the
            number of steps taken so far (int32), e.g. to apply the class weights of a
            schedule at time ``lr * step`` or to draw step ``step``'s minibatch.

    Returns:
        ``(observations, final_params, diverged_step)``: observations stacked along a
        leading axis of length ``saves``; ``diverged_step`` is the first step whose loss was
        not finite, or -1. With ``return_state``, ``(..., final_state)``.
    """
    record, expand = split_observer(observe)
    points = save_steps(steps, saves)
    gaps = np.diff(points)
    width = int(gaps.max())
    uniform = bool(np.all(gaps == width))

    def step(carry, i):
        params, state, count, diverged, gap = carry
        at = (count,) if timed else ()
        if has_aux:
            (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(params, *at)
        else:
            loss, grads = jax.value_and_grad(objective)(params, *at)
        updates, new_state = opt.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        active = True if uniform else i < gap
        bad = jnp.logical_and(active, ~jnp.isfinite(loss))
        diverged = jnp.where(jnp.logical_and(bad, diverged < 0), count, diverged)
        if not uniform:
            keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
            new_params = jax.tree.map(keep, new_params, params)
            new_state = jax.tree.map(keep, new_state, state)
        count = count + jnp.asarray(active, count.dtype)
        return (new_params, new_state, count, diverged, gap), None

    def interval(carry, gap):
        params, state, count, diverged = carry
        scan = checkpointed_scan if remat else _plain_scan
        params, state, count, diverged, _ = scan(
            step, (params, state, count, diverged, gap), jnp.arange(width)
        )
        seen = record(params, count) if timed else record(params)
        bad = ~jnp.isfinite(seen["loss"])
        diverged = jnp.where(jnp.logical_and(bad, diverged < 0), count, diverged)
        return (params, state, count, diverged), seen

    if remat:
        interval = jax.checkpoint(interval)

    count0 = jnp.asarray(0, jnp.int32)
    first = record(params0, count0) if timed else record(params0)
    diverged0 = jnp.where(jnp.isfinite(first["loss"]), -1, 0).astype(jnp.int32)
    carry = (params0, opt.init(params0), count0, diverged0)
    (params, state, _, diverged), rest = jax.lax.scan(interval, carry,
                                                      jnp.asarray(gaps, jnp.int32))
    observations = expand(jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first,
                                       rest))
    if return_state:
        return observations, params, diverged, state
    return observations, params, diverged
