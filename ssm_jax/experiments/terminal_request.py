"""The configurations of the terminal-phase comparisons of ``ssm-jax geometry``, checked
before any run: JAX-free, so a bad request is refused before the numerics are imported
(:mod:`ssm_jax.experiments.terminal` runs them)."""

from __future__ import annotations

import math

from ..config import Config, ConfigError


def check_squared_loss_terminal(cfg: Config) -> Config:
    """The configuration of :func:`squared_loss_terminal` (squared loss, power weighting,
    geometry recorded, two saves), validated before any run: a
    :class:`~ssm_jax.config.ConfigError` if the run has a bias, which the closed-form
    minimiser leaves out, or if the reweighting does not apply to it."""
    if cfg.bias:
        raise ConfigError("bias=True: the closed-form weight-decayed minimiser is for the "
                          "model without a bias (use --bias false)")
    return cfg.adapted(loss="mse", weighting="power", geometry=True, saves=2,
                       keep_params=False)


def check_collapse_ratios(cfg: Config, ratios) -> list[Config]:
    """The configurations of :func:`minority_collapse_ratios` (one per ratio, power
    weighting, parameters kept at three saves), validated before any run: a
    :class:`~ssm_jax.config.ConfigError` names the bad value (not the step profile,
    ``k_minor < 2``, a ratio below 1 or one that leaves the minorities no example)."""
    if cfg.counts is not None or cfg.profile != "step":
        raise ConfigError(f"profile={cfg.profile!r}: the minority collapse against the ratio "
                          "needs the step profile (--k-major, --k-minor, --n-major), not "
                          "explicit counts")
    if cfg.k_minor < 2:
        raise ConfigError(f"k_minor={cfg.k_minor} is out of range: the minority cosine needs "
                          "k_minor >= 2")
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise ConfigError("ratios=[] must list at least one imbalance ratio")
    for r in ratios:
        if not math.isfinite(r) or r < 1:
            raise ConfigError(f"ratios={r!r} is out of range: need finite ratios >= 1")
    base = cfg.adapted(weighting="power", geometry=False, saves=3, keep_params=True)
    return [base.replace(ratio=r) for r in ratios]  # each validates its ratio
