"""Learning the weighting: meta-optimising gamma or the class weights with optax so that a
meta-objective at the stopping time T is optimal, once or at several stopping times.

Each meta-iteration is one jitted step (:func:`learn_step`): the gradient of
:func:`meta_loss` through the whole run (:func:`ssm_jax.meta.differentiate.value`), then an
optax update of the learned parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import Config
from ..simulate import Numeric, omega_of
from .differentiate import inputs_of, meta_spec_of, value

# The request's names and checks are JAX-free (re-exported from here).
from .request import (  # noqa: F401
    DEFAULT_TEMPERATURE,
    LEARNABLE,
    META_OPTIMIZER_NAMES,
    check_config,
    check_learning,
    check_objective,
    learning_config,
    learning_configs,
    stop_time,
    with_t1,
)


def meta_sign(objective: str) -> float:
    """+1 for objectives meta-learning minimises, -1 for ``balanced_accuracy`` (maximised)."""
    return -1.0 if objective == "balanced_accuracy" else 1.0


def meta_loss(objective: str, val):
    """What :func:`learn` minimises: the objective, minus the balanced-accuracy surrogate,
    or the square of the own-output gap (equalise the classes' own outputs)."""
    if objective == "own_output_gap":
        return val**2
    return meta_sign(objective) * val


class LearnResult(NamedTuple):
    """Outcome of :func:`learn`: learned value, and per-iteration histories."""

    learned: np.ndarray  # gamma (scalar) or normalised weights (k,)
    objective: np.ndarray  # (iterations + 1,) objective at the current parameter
    parameter: np.ndarray  # (iterations + 1,) gamma or (iterations + 1, k) weights
    diverged: bool


META_OPTIMIZERS = {name: getattr(optax, name) for name in META_OPTIMIZER_NAMES}


def unpack_learned(learn: str, numeric: Numeric, theta) -> Numeric:
    """The run's numeric fields with the learned parameter in place: gamma, or the explicit
    weights ``exp(theta)`` (positive; normalised as usual by the weighting)."""
    if learn == "gamma":
        return numeric._replace(gamma=theta)
    return numeric._replace(weights=jnp.exp(theta))


@functools.partial(jax.jit, static_argnames=("spec", "objective", "learn", "optimizer",
                                              "temperature"))
def learn_step(theta, state, learning_rate, problem, numeric, key, *, spec, objective,
               learn, optimizer, temperature):
    """One meta-optimisation step: ``(new_theta, new_state, objective at theta, diverged)``."""
    opt = META_OPTIMIZERS[optimizer](learning_rate)

    def loss(theta):
        val, diverged = value(spec, problem, unpack_learned(learn, numeric, theta), key,
                              objective=objective, temperature=temperature)
        return meta_loss(objective, val), (val, diverged)

    (_, (val, diverged)), grad = jax.value_and_grad(loss, has_aux=True)(theta)
    updates, state = opt.update(grad, state, theta)
    return optax.apply_updates(theta, updates), state, val, diverged


def learn(cfg: Config, objective: str = "balanced_loss", learn: str = "gamma", *,
          t1: float | None = None, iterations: int = 100, learning_rate: float = 0.05,
          optimizer: str = "adam", temperature: float = DEFAULT_TEMPERATURE,
          callback=None) -> LearnResult:
    """Meta-optimise the weighting with optax so the objective at T is optimal.

    ``learn='gamma'``: the power-law exponent (weighting forced to ``power``), started at
    ``cfg.gamma``. ``learn='weights'``: per-class weights ``exp(theta_c)`` (normalised as
    usual; weighting forced to ``explicit``), started at ``cfg.weights`` or all ones.
    The loss minimised is :func:`meta_loss`; ``optimizer`` is optax ``adam`` or ``sgd``
    with ``learning_rate``. ``callback(i, objectives, parameters)`` is called after every
    iteration with the histories so far (e.g. to save progress). The objective of an
    iteration through a failed run is NaN, and the optimisation stops there
    (``diverged``).
    """
    check_learning(learn, iterations, learning_rate, optimizer, temperature)
    cfg = learning_config(cfg, objective, learn, t1)
    static = dict(spec=meta_spec_of(cfg), objective=objective, learn=learn,
                  optimizer=optimizer, temperature=float(temperature))
    with jax.enable_x64(cfg.x64):
        spec, problem, numeric, key, _ = inputs_of(cfg)
        theta = (numeric.gamma if learn == "gamma"
                 else jnp.log(numeric.weights / jnp.mean(numeric.weights)))
        rate = jnp.asarray(learning_rate, numeric.lr.dtype)
        state = META_OPTIMIZERS[optimizer](rate).init(theta)

        def shown(theta):
            if learn == "gamma":
                return np.asarray(theta)
            return np.asarray(omega_of(spec, problem, unpack_learned(learn, numeric, theta)))

        values, params, diverged = [], [], False
        for i in range(iterations + 1):
            new_theta, new_state, val, div = learn_step(theta, state, rate, problem, numeric,
                                                        key, **static)
            values.append(float(val))
            params.append(shown(theta))
            if int(div) >= 0 or not np.isfinite(float(val)):
                diverged = True
                break
            if callback is not None:
                callback(i, np.asarray(values), np.asarray(params))
            if i < iterations:
                theta, state = new_theta, new_state
        return LearnResult(np.asarray(params[-1]), np.asarray(values), np.asarray(params),
                           diverged)


def run_record(t1: float, learn: str, result: LearnResult) -> dict:
    """One meta-optimisation stopped at ``t1`` as a JSON-ready record (see
    :func:`learn_at_times`)."""
    return {
        "t1": t1,
        "learned": result.learned,
        "initial_value": result.objective[0],
        "final_value": result.objective[-1],
        "iterations": len(result.objective) - 1,
        "diverged": result.diverged,
        "history": {"objective": result.objective, learn: result.parameter},
    }


def learn_at_times(cfg: Config, objective: str, what: str, times: Sequence[float | None], *,
                   iterations: int = 100, learning_rate: float = 0.05, optimizer: str = "adam",
                   temperature: float = DEFAULT_TEMPERATURE, on_progress=None) -> dict:
    """:func:`learn` ``what`` (gamma or weights) once per stopping time (``None``: ``cfg``'s
    own T), every time checked before any run starts.

    Returns ``{"objective", "learn", "meta_optimizer", "meta_lr", "temperature", "config",
    "runs"}``, one :func:`run_record` per time plus ``"finished": True``.
    ``on_progress(record)`` receives the record so far every 10 iterations (the current
    run appended with ``"finished": False``) and after each time (e.g. to save it)."""
    configs = learning_configs(cfg, objective, what, times, iterations=iterations,
                               learning_rate=learning_rate, optimizer=optimizer,
                               temperature=temperature)
    record = {"objective": objective, "learn": what, "meta_optimizer": optimizer,
              "meta_lr": learning_rate, "temperature": temperature, "config": cfg.to_dict(),
              "runs": []}
    report = on_progress or (lambda _: None)
    for c in configs:
        t1 = stop_time(c)

        def progress(i, values, parameters, t1=t1):
            if i % 10 == 0:
                partial = LearnResult(parameters[-1], values, parameters, False)
                report({**record, "runs": [*record["runs"],
                                           {**run_record(t1, what, partial), "finished": False}]})

        result = learn(c, objective, what, iterations=iterations, learning_rate=learning_rate,
                       optimizer=optimizer, temperature=temperature, callback=progress)
        record["runs"].append({**run_record(t1, what, result), "finished": True})
        report(record)
    return record
