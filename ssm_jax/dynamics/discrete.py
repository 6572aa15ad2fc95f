"""Discrete training with an optax optimiser inside ``lax.scan``.

The run is a scan over save intervals, each an inner scan over steps, so only the
snapshots at the save points are kept (the parameter history only when asked). Save points
are the steps ``round(j * steps / (saves - 1))``, j = 0..saves-1; when the intervals differ
by one step, the inner scan has the longest length and masks the surplus step.
Time is ``t = lr * step`` so discrete runs line up with gradient flow.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import METHODS, ConfigError


def optimizer(method: str, lr, momentum=0.9) -> optax.GradientTransformation:
    """The optax optimiser of a method name (``lr`` and ``momentum`` may be traced)."""
    if method == "gd":
        return optax.sgd(lr)
    if method == "momentum":
        return optax.sgd(lr, momentum=momentum)
    if method == "adam":
        return optax.adam(lr)
    if method in ("specgd", "muon"):  # spectral optimisers, see ssm_jax/spectral.py
        from .. import spectral

        return spectral.spectral_gd(lr) if method == "specgd" else spectral.muon(lr, momentum)
    raise ConfigError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")


def save_steps(steps: int, saves: int) -> np.ndarray:
    """The (static) steps at which snapshots are taken: evenly spaced, 0 and ``steps`` included."""
    return np.round(np.linspace(0, steps, saves)).astype(np.int64)


def run(
    objective: Callable,
    observe: Callable,
    params0,
    opt: optax.GradientTransformation,
    steps: int,
    saves: int,
    *,
    remat: bool = False,
):
    """Train ``params0`` on ``objective`` and observe it at the save points.

    Args:
        objective: ``params -> scalar loss``.
        observe: ``params -> pytree`` of quantities to save (must include ``"loss"``).
        params0: initial parameters (pytree).
        opt: optax optimiser.
        steps, saves: number of steps and of (evenly spaced) save points.
        remat: rematerialise each step in the backward pass (``jax.checkpoint``), so the
            memory of a gradient through training does not grow with the number of steps.

    Returns:
        ``(observations, final_params, diverged_step)``: observations stacked along a
        leading axis of length ``saves``; ``diverged_step`` is the first step whose loss was
        not finite, or -1.
    """
    points = save_steps(steps, saves)
    gaps = np.diff(points)
    width = int(gaps.max())
    uniform = bool(np.all(gaps == width))

    def step(carry, i):
        params, state, count, diverged, gap = carry
        loss, grads = jax.value_and_grad(objective)(params)
        updates, new_state = opt.update(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        active = True if uniform else i < gap
        bad = jnp.logical_and(active, ~jnp.isfinite(loss))
        diverged = jnp.where(jnp.logical_and(bad, diverged < 0), count, diverged)
        if not uniform:
            keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
            new_params = jax.tree.map(keep, new_params, params)
            new_state = jax.tree.map(keep, new_state, state)
        return (new_params, new_state, count + jnp.asarray(active, count.dtype), diverged, gap), None

    if remat:
        step = jax.checkpoint(step)

    def interval(carry, gap):
        params, state, count, diverged = carry
        (params, state, count, diverged, _), _ = jax.lax.scan(
            step, (params, state, count, diverged, gap), jnp.arange(width)
        )
        seen = observe(params)
        bad = ~jnp.isfinite(seen["loss"])
        diverged = jnp.where(jnp.logical_and(bad, diverged < 0), count, diverged)
        return (params, state, count, diverged), seen

    first = observe(params0)
    count0 = jnp.asarray(0, jnp.int32)
    diverged0 = jnp.where(jnp.isfinite(first["loss"]), -1, 0).astype(jnp.int32)
    carry = (params0, opt.init(params0), count0, diverged0)
    (params, _, _, diverged), rest = jax.lax.scan(interval, carry, jnp.asarray(gaps, jnp.int32))
    observations = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return observations, params, diverged
