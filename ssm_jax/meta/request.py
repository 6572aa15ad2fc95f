"""What a gradient or meta-learning request may ask, checked before anything is computed.

The names of the objectives (:mod:`~ssm_jax.meta.objectives`), of the options a gradient is
taken with respect to (:mod:`~ssm_jax.meta.differentiate`), of what meta-learning learns
and with which optax optimiser (:mod:`~ssm_jax.meta.learning`); the stopping time T of a
configuration; and the checks that refuse a request (:class:`~ssm_jax.config.ConfigError`,
naming the bad value). This module imports no JAX (nor numpy), so the command line refuses
a bad request before the numerics are imported; the modules that compute import their
names from here and run the same checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..config import Config, ConfigError

OBJECTIVES = ("balanced_loss", "minority_loss", "balanced_accuracy", "own_output_gap")
DEFAULT_TEMPERATURE = 0.1
WRT = ("gamma", "beta", "weights", "ratio", "init_scale", "lr", "momentum", "weight_decay", "t1",
       "reweight_from", "reweight_until")
NUMERIC_WRT = ("gamma", "beta", "weights", "init_scale", "lr", "momentum", "weight_decay",
               "reweight_from", "reweight_until")
# Gradients in a switch time need the switch (the option given).
SWITCHES = ("reweight_from", "reweight_until")
LEARNABLE = ("gamma", "weights")
# The meta-optimisers, by the name of their optax function (ssm_jax.meta.META_OPTIMIZERS).
META_OPTIMIZER_NAMES = ("adam", "sgd")


def _finite_real(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def check_temperature(temperature) -> None:
    """Raise :class:`ConfigError` unless ``temperature`` (of the ``balanced_accuracy``
    surrogate) is a finite number > 0: at 0 the surrogate is a step function, whose
    gradient is 0 or NaN, so such a request is bad input rather than a failed run."""
    if not _finite_real(temperature) or temperature <= 0:
        raise ConfigError(f"temperature={temperature!r} is out of range: need a finite "
                          f"temperature > 0")


def check_objective(objective: str, cfg: Config | None = None) -> None:
    """Raise :class:`ConfigError` for an unknown objective, or a minority objective
    on a problem without minority classes."""
    if objective not in OBJECTIVES:
        raise ConfigError(
            f"objective={objective!r} is not one of {', '.join(map(repr, OBJECTIVES))}"
        )
    if cfg is not None and objective in ("minority_loss", "own_output_gap"):
        counts = [float(c) for c in cfg.class_counts]
        threshold = math.sqrt(max(counts) * min(counts))
        if not any(c < threshold for c in counts):
            raise ConfigError(
                f"objective={objective!r} needs minority classes, but the class counts "
                f"{list(cfg.class_counts)} are all equal (use ratio > 1)"
            )


def check_wrt(wrt: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for an unknown or repeated gradient name."""
    if not wrt:
        raise ConfigError(f"wrt is empty: give one or more of {', '.join(WRT)}")
    for name in wrt:
        if name not in WRT:
            raise ConfigError(f"wrt={name!r} is not one of {', '.join(map(repr, WRT))}")
    if len(set(wrt)) != len(wrt):
        raise ConfigError(f"wrt={list(wrt)!r} names an option twice")


def check_config(cfg: Config, objective: str, wrt: Sequence[str]) -> None:
    """Validate a gradient request against a configuration (ConfigError names the value)."""
    check_objective(objective, cfg)
    check_wrt(wrt)
    if getattr(cfg, "stop_metric", None) is not None:
        raise ConfigError(
            f"stop_metric={cfg.stop_metric!r}: meta-gradients are taken at a fixed stopping "
            "time T (--t1); drop the stop event"
        )
    for name in SWITCHES:
        if name in wrt and getattr(cfg, name) is None:
            raise ConfigError(f"wrt={name!r} needs the switch: give {name}=T (the time to "
                              "differentiate), with a weighting other than 'erm'")
    if "weights" in wrt and cfg.weighting != "explicit":
        raise ConfigError(
            f"wrt='weights' is the gradient in the explicit weight vector, but "
            f"weighting={cfg.weighting!r}: use weighting='explicit' with weights=(w_1, ..., w_k)"
        )


def check_learning(learn: str, iterations: int, learning_rate: float, optimizer: str,
                   temperature: float) -> None:
    """Raise :class:`ConfigError` for meta-optimisation options that make no sense: an
    unknown learned quantity or optimiser, a negative number of iterations, a learning
    rate or surrogate temperature that is not a finite number > 0."""
    if learn not in LEARNABLE:
        raise ConfigError(f"learn={learn!r} is not one of {', '.join(map(repr, LEARNABLE))}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"iterations={iterations!r} must be an integer >= 0")
    if not _finite_real(learning_rate) or learning_rate <= 0:
        raise ConfigError(f"learning_rate (--meta-lr)={learning_rate!r} is out of range: "
                          f"need a finite value > 0")
    if optimizer not in META_OPTIMIZER_NAMES:
        raise ConfigError(f"optimizer (--meta-optimizer)={optimizer!r} is not one of "
                          f"{', '.join(map(repr, META_OPTIMIZER_NAMES))}")
    check_temperature(temperature)


def learning_config(cfg: Config, objective: str, learn: str, t1: float | None = None
                    ) -> Config:
    """The configuration meta-learning ``learn`` runs, checked: weighting ``power``
    (learning gamma) or ``explicit`` (learning the weights, started at ``cfg.weights`` or all
    ones), stopped at ``t1``."""
    if learn == "gamma":
        cfg = cfg.adapted(weighting="power")
    else:
        cfg = cfg.adapted(weighting="explicit",
                          weights=cfg.weights or (1.0,) * len(cfg.class_counts))
    cfg = with_t1(cfg, t1)
    check_config(cfg, objective, (learn,))
    return cfg


def learning_configs(cfg: Config, objective: str, learn: str, times: Sequence[float | None],
                     *, iterations: int, learning_rate: float, optimizer: str,
                     temperature: float) -> list[Config]:
    """Check a request to learn ``learn`` once per stopping time (``None``: ``cfg``'s own
    T) before any run starts; returns ``cfg`` stopped at each time."""
    check_learning(learn, iterations, learning_rate, optimizer, temperature)
    configs = [with_t1(cfg, t1) for t1 in times]
    for c in configs:
        check_objective(objective, c)
    for c in configs:
        learning_config(c, objective, learn)
    return configs


def is_flow(cfg: Config) -> bool:
    """Whether a configuration runs gradient flow (diffrax) rather than discrete steps."""
    return cfg.method == "flow"


def stop_time(cfg: Config) -> float:
    """The stopping time T of a configuration: ``t1`` if set, else ``lr × steps``."""
    t1 = getattr(cfg, "t1", None)
    return float(t1) if t1 is not None else float(cfg.lr * cfg.steps)


def with_t1(cfg: Config, t1: float | None) -> Config:
    """``cfg`` stopped at time ``t1``. For a discrete run, steps = t1 / lr, which must be a
    whole number; for gradient flow, ``t1`` itself."""
    if t1 is None:
        return cfg
    if not _finite_real(t1) or t1 <= 0:
        raise ConfigError(f"t1={t1!r} is out of range: need a finite t1 > 0")
    if is_flow(cfg):
        return cfg.replace(t1=float(t1))
    steps = int(round(t1 / cfg.lr))
    if steps < 1 or abs(steps * cfg.lr - t1) > 1e-6 * t1:
        raise ConfigError(
            f"t1={t1!r} is not a whole number of steps of lr={cfg.lr!r}: need t1 = lr x steps "
            f"with steps a positive integer (e.g. t1={max(steps, 1) * cfg.lr!r})"
        )
    changes = {"steps": steps, "saves": min(cfg.saves, steps + 1)}
    if hasattr(cfg, "t1"):
        changes["t1"] = None
    return cfg.replace(**changes)


def failure_reason(cfg: Config, diverged_step: int) -> str | None:
    """Why a gradient of ``cfg``'s run is NaN (``diverged_step`` from
    :class:`~ssm_jax.meta.differentiate.MetaGradient`), or ``None`` if the run did not
    fail."""
    if diverged_step < 0:
        return None
    if is_flow(cfg):
        return (f"the gradient-flow solve stopped before T after {diverged_step} accepted "
                f"steps (max_steps={cfg.max_steps} reached, or the solver failed)")
    return f"the run diverged: the loss became non-finite at step {diverged_step}"
