"""Training every (weighting, seed) run of the network in one jitted call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ...dynamics import discrete
from ...problem import Problem
from ...weights import class_weights
from .config import NUM_CLASSES, WEIGHTINGS, DigitsConfig
from .data import DigitsData
from .network import init_mlp, objective_fn, observe_fn
from .schedule import lr_multiplier


def weighting_arrays(names: Sequence[str], counts, tau: float, dtype) -> tuple[Array, Array]:
    """Class weights (w, k) and logit-adjustment tau (w,) of each weighting name."""
    counts = jnp.asarray(counts, dtype)
    omegas = [class_weights(counts, "power", WEIGHTINGS[n][0]) for n in names]
    taus = [tau if WEIGHTINGS[n][1] else 0.0 for n in names]
    return jnp.stack(omegas), jnp.asarray(taus, dtype)


def train_all(cfg: DigitsConfig, data: DigitsData) -> dict:
    """Train every (weighting, seed) run in one jitted call.

    The runs are batched with ``jax.lax.map(..., batch_size=vmap_size)``: ``vmap_size``
    runs at a time go through ``vmap`` (all of them by default on an accelerator, so the
    seeds and weightings are one vmapped computation; one at a time on a CPU, where XLA's
    batched matmuls are ~2x slower than a loop of plain ones). Every choice gives the same
    numbers up to float rounding. Returns numpy arrays with leading axes ``[weighting, seed,
    checkpoint]`` (see :func:`observe_fn`), plus ``diverged_step`` ``[weighting, seed]``
    (-1 if the loss stayed finite) and ``weights`` ``[weighting, k]`` / ``tau``
    ``[weighting]``.
    """
    num_weightings, runs = len(cfg.weightings), len(cfg.weightings) * cfg.seeds
    with jax.enable_x64(cfg.x64):
        dtype = jnp.asarray(0.0).dtype
        omegas, taus = weighting_arrays(cfg.weightings, data.train_counts, cfg.tau, dtype)
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(cfg.seed), s))(
            jnp.arange(cfg.seeds))
        # Flatten (weighting, seed) into runs; every weighting shares the seeds' inits.
        per_run = (jnp.repeat(omegas, cfg.seeds, axis=0), jnp.repeat(taus, cfg.seeds),
                   jnp.tile(keys, (num_weightings, 1)))
        arrays = tuple(jnp.asarray(a, dtype) for a in (data.x_train, data.x_test))
        labels = (jnp.asarray(data.y_train), jnp.asarray(data.y_test))
        scalars = tuple(jnp.asarray(v, dtype) for v in (cfg.lr, cfg.momentum, cfg.warmup_factor,
                                                         cfg.weight_decay, cfg.init_scale))
        static = _Static.of(cfg, min(resolve_vmap_size(cfg.vmap_size), runs))
        seen, diverged = _train_jit(static, arrays, labels, per_run, scalars)
        unflatten = lambda a: np.asarray(a).reshape(num_weightings, cfg.seeds, *a.shape[1:])  # noqa: E731
        out = {name: unflatten(value) for name, value in seen.items()}
        out["diverged_step"] = unflatten(diverged)
        out["weights"], out["tau"] = np.asarray(omegas), np.asarray(taus)
    return out


def resolve_vmap_size(vmap_size: int) -> int:
    """``vmap_size = 0`` means: every run at once on an accelerator, one at a time on CPU."""
    if vmap_size > 0:
        return vmap_size
    return 1 if jax.default_backend() == "cpu" else 1 << 30


@dataclass(frozen=True)
class _Static:
    hidden: tuple[int, ...]
    method: str
    warmup: int
    steps: int
    checkpoints: int
    vmap_size: int

    @classmethod
    def of(cls, cfg: DigitsConfig, vmap_size: int) -> _Static:
        return cls(tuple(cfg.hidden), cfg.method, cfg.warmup, cfg.steps, cfg.checkpoints,
                   vmap_size)


def _train(static: _Static, arrays, labels, per_run, scalars):
    x_train, x_test = arrays
    lr, momentum, warmup_factor, weight_decay, init_scale = scalars
    dtype = x_train.dtype
    train = problem_of_labels(labels[0], dtype)
    test = problem_of_labels(labels[1], dtype)

    def one(run):
        omega, tau, key = run
        params0 = init_mlp(key, static.hidden, init_scale, dtype)
        objective = objective_fn(x_train, train, omega, tau, weight_decay)
        observe = observe_fn(x_train, train, x_test, test, objective)
        schedule = lambda step: lr * lr_multiplier(step, static.warmup, warmup_factor)  # noqa: E731
        opt = discrete.optimizer(static.method, schedule, momentum)
        seen, _, diverged = discrete.run(objective, observe, params0, opt, static.steps,
                                         static.checkpoints)
        return seen, diverged

    return jax.lax.map(one, per_run, batch_size=static.vmap_size)


def problem_of_labels(labels, dtype) -> Problem:
    """A core :class:`Problem` (no padding) for a label vector (numpy or traced)."""
    counts = jnp.sum(jnp.arange(NUM_CLASSES)[:, None] == labels[None, :], axis=1)
    return Problem(labels=labels, mask=jnp.ones(labels.shape, dtype),
                   counts=counts.astype(dtype))


_train_jit = jax.jit(_train, static_argnums=0)
