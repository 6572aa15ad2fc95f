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

LOSSES = ("mse", "ce")
PROFILES = ("step", "longtail", "counts")
WEIGHTINGS = ("erm", "power", "effective", "explicit")
PARAMETRIZATIONS = ("sample", "class", "whitened")
INITS = ("gaussian", "aligned")
METHODS = ("gd", "momentum", "adam")


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


def _positive_int(name: str, value: object, *, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


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
    """

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
                    f"counts={list(cfg.counts)!r}: every count must be a positive integer, got {c!r}"
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
