"""Training every (recipe, seed) run of the network in one jitted call."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ... import sampling
from ...dynamics import discrete
from ...problem import Problem
from .config import NUM_CLASSES, DigitsConfig
from .data import DigitsData
from .network import init_mlp, objective_fn, observe_fn
from .recipes import (
    batch_size_of,
    minibatch_factors,
    program_samplers,
    recipe_arrays,
    weighting_arrays,  # noqa: F401 - re-exported (ssm_jax.experiments.digits)
)
from .schedule import lr_multiplier


def train_all(cfg: DigitsConfig, data: DigitsData) -> dict:
    """Train every (recipe, seed) run in one jitted call.

    The runs are batched with ``jax.lax.map(..., batch_size=vmap_size)``: ``vmap_size``
    runs at a time go through ``vmap`` (all of them by default on an accelerator, so the
    seeds and recipes are one vmapped computation; one at a time on a CPU, where XLA's
    batched matmuls are ~2x slower than a loop of plain ones). Every choice gives the same
    numbers up to float rounding. A recipe is a set of per-run arrays
    (:func:`~.recipes.recipe_arrays`: phase weights and switch steps, tau, LDAM margins
    and scale, sampler), so every recipe is the same program. Returns numpy arrays with
    leading axes ``[weighting, seed, checkpoint]`` (see :func:`observe_fn`), plus
    ``diverged_step`` ``[weighting, seed]`` (-1 if the loss stayed finite), ``weights``
    ``[weighting, k]`` (the weighted phase's) / ``tau`` ``[weighting]``, and the recipes'
    arrays ``phase_weights`` ``[weighting, 3, k]``, ``switch_steps`` ``[weighting, 2]``,
    ``margins`` ``[weighting, k]``, ``ldam_scale`` and ``sampler`` ``[weighting]``.
    """
    num_weightings, runs = len(cfg.weightings), len(cfg.weightings) * cfg.seeds
    with jax.enable_x64(cfg.x64):
        dtype = jnp.asarray(0.0).dtype
        recipes = recipe_arrays(cfg, data.train_counts, cfg.step_times(), cfg.switch_times(),
                                dtype)
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(cfg.seed), s))(
            jnp.arange(cfg.seeds))
        # Flatten (weighting, seed) into runs; every weighting shares the seeds' inits.
        per_run = (jax.tree.map(lambda a: jnp.repeat(a, cfg.seeds, axis=0), recipes),
                   jnp.tile(keys, (num_weightings, 1)))
        arrays = tuple(jnp.asarray(a, dtype) for a in (data.x_train, data.x_test))
        labels = (jnp.asarray(data.y_train), jnp.asarray(data.y_test))
        scalars = tuple(jnp.asarray(v, dtype) for v in (cfg.lr, cfg.momentum, cfg.warmup_factor,
                                                         cfg.weight_decay, cfg.init_scale))
        n = len(data.y_train)
        static = _Static.of(cfg, min(resolve_vmap_size(cfg.vmap_size), runs),
                            program_samplers(cfg, n), batch_size_of(cfg, n))
        seen, diverged = _train_jit(static, arrays, labels, per_run, scalars)
        unflatten = lambda a: np.asarray(a).reshape(num_weightings, cfg.seeds, *a.shape[1:])  # noqa: E731
        out = {name: unflatten(value) for name, value in seen.items()}
        out["diverged_step"] = unflatten(diverged)
        out["weights"], out["tau"] = np.asarray(recipes.phase_weights[:, 1]), np.asarray(
            recipes.tau)
        out["phase_weights"] = np.asarray(recipes.phase_weights)
        out["switch_steps"] = np.asarray(recipes.switch_steps).astype(np.int64)
        out["margins"] = np.asarray(recipes.margins)
        out["ldam_scale"] = np.asarray(recipes.scale)
        out["sampler"] = np.asarray(recipes.sampler)
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
    samplers: tuple[str, ...] = ()  # the samplers some run uses (static; see recipes)
    batch_size: int = 0

    @classmethod
    def of(cls, cfg: DigitsConfig, vmap_size: int, samplers: tuple[str, ...] = (),
           batch_size: int = 0) -> _Static:
        return cls(tuple(cfg.hidden), cfg.method, cfg.warmup, cfg.steps, cfg.checkpoints,
                   vmap_size, samplers, batch_size)


def _train(static: _Static, arrays, labels, per_run, scalars):
    x_train, x_test = arrays
    lr, momentum, warmup_factor, weight_decay, init_scale = scalars
    dtype = x_train.dtype
    train = problem_of_labels(labels[0], dtype)
    test = problem_of_labels(labels[1], dtype)

    def one(run):
        recipe, key = run
        params0 = init_mlp(key, static.hidden, init_scale, dtype)
        objective = objective_fn(x_train, train, recipe.phase_weights[1], recipe.tau,
                                 weight_decay, recipe.margins, recipe.scale)
        observe = observe_fn(x_train, train, x_test, test, objective)
        key_batches = sampling.sampling_key(key)

        def objective_at(params, step):
            factors = minibatch_factors(static.samplers, recipe.sampler, key_batches, step,
                                        train, static.batch_size)
            return objective(params, recipe.weights_at(step), factors)

        def record(params, step):  # the full-batch objective with the weights in effect
            return observe(params, recipe.weights_at(step))

        schedule = lambda step: lr * lr_multiplier(step, static.warmup, warmup_factor)  # noqa: E731
        opt = discrete.optimizer(static.method, schedule, momentum)
        seen, _, diverged = discrete.run(objective_at, record, params0, opt, static.steps,
                                         static.checkpoints, timed=True)
        return seen, diverged

    return jax.lax.map(one, per_run, batch_size=static.vmap_size)


def problem_of_labels(labels, dtype) -> Problem:
    """A core :class:`Problem` (no padding) for a label vector (numpy or traced)."""
    counts = jnp.sum(jnp.arange(NUM_CLASSES)[:, None] == labels[None, :], axis=1)
    return Problem(labels=labels, mask=jnp.ones(labels.shape, dtype),
                   counts=counts.astype(dtype))


_train_jit = jax.jit(_train, static_argnums=0)
