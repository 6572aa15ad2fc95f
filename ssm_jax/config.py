"""Run configuration: one frozen dataclass, validated once at the boundary.

A :class:`Config` mixes two kinds of fields:

* *static* fields select code or fix array shapes (loss, parametrisation, dim, class
  counts, method, steps, saves). Changing one means compiling again.
* *numeric* fields (gamma, beta, explicit weights, lr, weight decay, init scale, seed)
  become traced arrays inside the simulator, so ``vmap`` (sweeps) and ``grad``
  (meta-gradients) can see them. See :func:`ssm_jax.simulate.numeric_of`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

LOSSES = ("mse", "ce", "la", "vs")
PROFILES = ("step", "longtail", "counts")
WEIGHTINGS = ("erm", "power", "effective", "explicit")
PARAMETRIZATIONS = ("sample", "class", "whitened")
INITS = ("gaussian", "aligned")
METHODS = ("gd", "momentum", "adam", "specgd", "muon", "flow")
# Gradient flow (method "flow", ssm_jax.dynamics.flow): solvers, adjoints, stop metrics.
SOLVERS = ("tsit5", "dopri5", "dopri8", "kvaerno5")
ADJOINTS = ("recursive", "backsolve")
STOP_METRICS = ("balanced_accuracy", "worst_class_accuracy", "loss")


class ConfigError(ValueError):
    """A configuration value is out of its allowed range (the message names both)."""


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _finite(name: str, value: float, *, low: float | None = None, strict: bool = False,
            high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r} must be a real number")
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be finite")
    if low is not None and (value <= low if strict else value < low):
        op = ">" if strict else ">="
        rng = f"{name} {op} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{name}={value!r} is out of range: need {rng}")
    if high is not None and value > high:
        raise ConfigError(f"{name}={value!r} is out of range: need {name} <= {high}")


def _positive_int(name: str, value: object, *, low: int = 1, high: int | None = None) -> None:
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value > high)):
        bounds = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{name}={value!r} must be an integer {bounds}")


@dataclass(frozen=True)
class Config:
    """Everything that defines one simulated training run.

    Imbalance
        ``profile='step'``: ``k_major`` classes of ``n_major`` examples then ``k_minor``
        classes of ``n_minor = max(1, round(n_major / ratio))``.
        ``profile='longtail'``: ``k_major + k_minor`` classes with counts decaying
        geometrically from ``n_major`` to ``n_major / ratio``.
        ``profile='counts'`` (or ``counts`` given): explicit class counts.
    Weighting (per class, normalised so the mean per-example weight is 1)
        ``erm`` (all 1), ``power`` (w_c ∝ n_c^-gamma), ``effective``
        (Cui et al. 2019: w_c ∝ (1 - beta) / (1 - beta^n_c)), ``explicit`` (``weights``).
    Model
        ``parametrization``: ``sample`` (one feature column per example, the UFM),
        ``class`` (one shared feature per class), ``whitened`` (train G = H Ω^{1/2}).
    Training
        ``method`` in gd / momentum / adam with learning rate ``lr`` for ``steps``
        steps; metrics are saved at ``saves`` evenly spaced steps (first and last
        included). Time is ``t = lr * step``.
    Gradient flow (``method='flow'``, :mod:`ssm_jax.dynamics.flow`)
        dθ/dt = -∇L solved by diffrax ``solver`` with PID step control (``rtol``,
        ``atol``, at most ``max_steps`` steps) up to ``t1`` (None: ``lr * steps``, so the
        save times equal those of a discrete run); ``adjoint`` for gradients through it;
        optional early stop when ``stop_metric`` crosses ``stop_at``.
    """

    # Config validates its own arguments, types included, with messages naming the bad
    # value; the test-time jaxtyping hook leaves its __init__ alone so those messages are
    # what tests see (methods are still checked).
    __no_type_check__ = True

    loss: str = "mse"
    profile: str = "step"
    k_major: int = 5
    k_minor: int = 5
    n_major: int = 100
    ratio: float = 10.0
    counts: tuple[int, ...] | None = None
    dim: int = 32
    weighting: str = "erm"
    gamma: float = 0.0
    beta: float = 0.999
    weights: tuple[float, ...] | None = None
    parametrization: str = "sample"
    bias: bool = False
    weight_decay: float = 0.0
    init: str = "gaussian"
    init_scale: float = 1e-3
    method: str = "gd"
    momentum: float = 0.9
    lr: float = 4.0
    steps: int = 300
    saves: int = 101
    seed: int = 0
    x64: bool = False
    keep_params: bool = False
    # Beyond the paper (docs/beyond.md): deep linear UFM, logit-adjusted losses, geometry.
    depth: int = 1
    tau: float = 1.0
    vs_gamma: float = 0.2
    geometry: bool = False
    # Gradient flow (method="flow"; docs/theory.md). t1=None means lr x steps.
    t1: float | None = None
    solver: str = "tsit5"
    rtol: float = 1e-5
    atol: float = 1e-8
    max_steps: int = 100_000
    adjoint: str = "recursive"
    stop_metric: str | None = None
    stop_at: float | None = None
    # Exact reduced simulator for squared loss (ssm_jax.reduced, docs/performance.md).
    reduced: str = "auto"

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("counts", "weights"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @property
    def num_classes(self) -> int:
        from .problem import class_counts_of

        return len(class_counts_of(self))


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` naming the first bad value and its allowed range."""
    _choice("loss", cfg.loss, LOSSES)
    _choice("profile", cfg.profile, PROFILES)
    _choice("weighting", cfg.weighting, WEIGHTINGS)
    _choice("parametrization", cfg.parametrization, PARAMETRIZATIONS)
    _choice("init", cfg.init, INITS)
    _choice("method", cfg.method, METHODS)
    if cfg.counts is not None:
        if len(cfg.counts) < 2:
            raise ConfigError(f"counts={list(cfg.counts)!r} must list at least 2 classes")
        for c in cfg.counts:
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise ConfigError(
                    f"counts={list(cfg.counts)!r}: every count must be a positive integer, "
                    f"got {c!r}"
                )
    elif cfg.profile == "counts":
        raise ConfigError("profile='counts' needs counts=(n_1, ..., n_k)")
    else:
        _positive_int("k_major", cfg.k_major, low=0)
        _positive_int("k_minor", cfg.k_minor, low=0)
        if cfg.k_major + cfg.k_minor < 2:
            raise ConfigError(
                f"k_major + k_minor = {cfg.k_major + cfg.k_minor} must be >= 2 classes"
            )
        _positive_int("n_major", cfg.n_major)
        _finite("ratio", cfg.ratio, low=1.0)
    _positive_int("dim", cfg.dim)
    _finite("gamma", cfg.gamma)
    _finite("beta", cfg.beta, low=0.0, high=1.0)
    if cfg.weighting == "effective" and not 0.0 <= cfg.beta < 1.0:
        raise ConfigError(f"beta={cfg.beta!r} is out of range: need 0 <= beta < 1")
    if cfg.weighting == "explicit":
        if cfg.weights is None:
            raise ConfigError("weighting='explicit' needs weights=(w_1, ..., w_k)")
    if cfg.weights is not None:
        for w in cfg.weights:
            _finite("weights", w, low=0.0)
        if sum(cfg.weights) <= 0:
            raise ConfigError(f"weights={list(cfg.weights)!r} must not all be zero")
    _finite("weight_decay", cfg.weight_decay, low=0.0)
    _finite("init_scale", cfg.init_scale, low=0.0)
    if cfg.init == "aligned" and not 0.0 < cfg.init_scale < 1.0:
        raise ConfigError(
            f"init_scale={cfg.init_scale!r} is out of range for init='aligned': "
            "the initial own output z0 needs 0 < z0 < 1"
        )
    _finite("momentum", cfg.momentum, low=0.0, high=1.0)
    _finite("lr", cfg.lr, low=0.0, strict=True)
    _positive_int("steps", cfg.steps)
    _positive_int("saves", cfg.saves, low=2)
    if cfg.saves > cfg.steps + 1:
        raise ConfigError(f"saves={cfg.saves} is out of range: need 2 <= saves <= steps + 1")
    _positive_int("seed", cfg.seed, low=0)
    _positive_int("depth", cfg.depth)
    _finite("tau", cfg.tau)
    _finite("vs_gamma", cfg.vs_gamma)
    if not isinstance(cfg.geometry, bool):
        raise ConfigError(f"geometry={cfg.geometry!r} must be true or false")
    validate_flow(cfg)
    validate_reduced(cfg)
    # Shape checks that need the class counts.
    from .problem import class_counts_of

    k = len(class_counts_of(cfg))
    if cfg.weights is not None and len(cfg.weights) != k:
        raise ConfigError(f"weights has {len(cfg.weights)} entries but there are {k} classes")
    if cfg.init == "aligned" and cfg.dim < k:
        raise ConfigError(f"dim={cfg.dim} is out of range for init='aligned': need dim >= k = {k}")
    if cfg.parametrization == "whitened" and cfg.loss != "mse":
        raise ConfigError(
            f"parametrization='whitened' is defined for loss='mse' only, got loss={cfg.loss!r}"
        )


def validate_flow(cfg: Config) -> None:
    """The gradient-flow options (they need ``method='flow'``, except the solver defaults)."""
    _choice("solver", cfg.solver, SOLVERS)
    _choice("adjoint", cfg.adjoint, ADJOINTS)
    _finite("rtol", cfg.rtol, low=0.0, strict=True)
    _finite("atol", cfg.atol, low=0.0, strict=True)
    _positive_int("max_steps", cfg.max_steps)
    if cfg.t1 is not None:
        _finite("t1", cfg.t1, low=0.0, strict=True)
        if cfg.method != "flow":
            raise ConfigError(f"t1={cfg.t1!r} is used by method='flow' only; a discrete run "
                              f"(method={cfg.method!r}) ends at t = lr x steps")
    if cfg.stop_metric is None:
        if cfg.stop_at is not None:
            raise ConfigError(f"stop_at={cfg.stop_at!r} needs a stop_metric "
                              f"({', '.join(map(repr, STOP_METRICS))})")
        return
    _choice("stop_metric", cfg.stop_metric, STOP_METRICS)
    if cfg.method != "flow":
        raise ConfigError(f"stop_metric={cfg.stop_metric!r} (early stopping) needs "
                          f"method='flow', got method={cfg.method!r}")
    if cfg.adjoint == "backsolve":
        raise ConfigError("stop_metric needs adjoint='recursive': diffrax's backsolve "
                          "adjoint does not support events")
    if cfg.stop_at is None:
        raise ConfigError(f"stop_metric={cfg.stop_metric!r} needs a threshold stop_at")
    if cfg.stop_metric == "loss":
        _finite("stop_at", cfg.stop_at, low=0.0, strict=True)
    else:
        _finite("stop_at", cfg.stop_at, low=0.0, strict=True, high=1.0)


REDUCED_MODES = ("auto", "on", "off")


def validate_reduced(cfg: Config) -> None:
    """``reduced``: 'auto' (use the exact reduced simulator where it applies and is cheaper),
    'on' (always; an error where it does not apply) or 'off'."""
    _choice("reduced", cfg.reduced, REDUCED_MODES)
    if cfg.reduced == "on":
        from .reduced import why_not

        reason = why_not(cfg)
        if reason is not None:
            raise ConfigError(f"reduced='on' does not apply to {reason}")
