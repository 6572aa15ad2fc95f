r"""Resampling against reweighting under stochastic gradients (An et al., ICLR 2021).

With minibatches of B examples, ERM with class-balanced sampling and power weights
:math:`\omega_c \propto n_c^{-\gamma}` with uniform sampling have the same expected gradient
when :math:`\gamma` is the sampler's ``expected_gamma`` (1 for ``class_balanced``, 1/2 for
``sqrt``; :mod:`ssm_jax.sampling`): so in expectation, and in the small-learning-rate limit,
they follow the same flow, the reweighted full-batch run. They differ in their noise: a
reweighted uniform batch holds a minority example rarely and with a large factor
:math:`\omega_c n/B`, a resampled batch holds it often with factor :math:`n/B`. This module
measures where that matters, on the UFM: the minority/majority delay early in training, its
spread over seeds, and which learning rates diverge.

:func:`compare` runs, at each learning rate, a sweep over seeds of each arm (:data:`ARMS`)
for the same time ``T`` (``steps = T / lr``): ERM with uniform minibatches, reweighting
with uniform minibatches, ERM with resampling, and the reweighted full-batch run they all
approximate in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..config import Config, ConfigError
from ..registry import SAMPLINGS

#: label -> (weighting, sampling, minibatches): the arms compared at every learning rate.
ARMS = {
    "erm": ("erm", "uniform", True),
    "reweight": ("power", "uniform", True),
    "resample": ("erm", None, True),  # the resampling sampler (class_balanced by default)
    "reweight_full_batch": ("power", "uniform", False),
}


def arm_config(cfg: Config, arm: str, lr: float, t1: float, gamma: float,
               sampler: str) -> Config:
    """The configuration of one arm at learning rate ``lr``, run until ``t1``
    (``steps = round(t1 / lr)``; the saves are the base configuration's, at most one per
    step)."""
    weighting, sampling, minibatch = ARMS[arm]
    steps = max(1, int(round(t1 / lr)))
    changes = dict(lr=lr, steps=steps, saves=min(cfg.saves, steps + 1), weighting=weighting,
                   gamma=gamma if weighting == "power" else 0.0)
    if minibatch:
        changes.update(sampling=sampling or sampler)
    else:
        changes.update(batch_size=None, sampling="uniform")
    return cfg.replace(**changes)


def check_base(cfg: Config, sampler: str) -> None:
    """The base configuration sets everything but what the arms vary (the weighting and
    the sampler): ERM, a batch size, the default sampler; ``sampler`` must have an
    expected gamma > 0 (it resamples)."""
    if cfg.batch_size is None:
        raise ConfigError("the resampling comparison needs minibatches: give batch_size "
                          "(--batch-size B)")
    if cfg.weighting != "erm" or cfg.sampling != "uniform":
        raise ConfigError(f"the comparison sets each arm's weighting and sampler: leave "
                          f"weighting='erm' and sampling='uniform' (got {cfg.weighting!r}, "
                          f"{cfg.sampling!r})")
    if cfg.method == "flow":
        raise ConfigError("the comparison is about stochastic gradients: method='flow' has "
                          "no minibatches")
    if SAMPLINGS[sampler].expected_gamma <= 0:
        raise ConfigError(f"sampler={sampler!r} does not resample the classes (its expected "
                          "gamma is 0)")


def compare(cfg: Config, lrs: Sequence[float], t1: float, *, seeds: int = 8,
            sampler: str = "class_balanced", progress: bool = False) -> dict:
    """Run every arm at every learning rate for ``seeds`` seeds, until time ``t1``.

    The reweighting exponent is the sampler's ``expected_gamma``, so that the arms agree in
    expectation. Returns ``{"t1", "gamma", "sampler", "lrs", "class_counts", "arms": {arm:
    [one summary per lr]}}``, each summary (:func:`summarise`) over the seeds."""
    check_base(cfg, sampler)
    lrs = [float(lr) for lr in lrs]
    if not lrs or any(not math.isfinite(lr) or lr <= 0 for lr in lrs):
        raise ConfigError(f"lrs={lrs!r} must be finite learning rates > 0")
    if not math.isfinite(t1) or t1 <= 0:
        raise ConfigError(f"t1={t1!r} must be a finite time > 0")
    gamma = SAMPLINGS[sampler].expected_gamma
    configs = {arm: [arm_config(cfg, arm, lr, t1, gamma, sampler) for lr in lrs]
               for arm in ARMS}  # every configuration is checked before any run
    from ..sweep import make_sweep, run

    out = {"t1": t1, "gamma": gamma, "sampler": sampler, "lrs": lrs, "seeds": seeds,
           "batch_size": cfg.batch_size, "class_counts": list(cfg.class_counts), "arms": {}}
    for arm, by_lr in configs.items():
        out["arms"][arm] = [summarise(run(make_sweep(c, seeds=seeds), progress=progress),
                                      c.lr) for c in by_lr]
    return out


def summarise(ds, lr: float) -> dict:
    """Over the seeds of one sweep at learning rate ``lr`` (dims ``seed, save, class``):
    the half-time delay (:func:`ssm_jax.metrics.delay_ratio`), the fraction of seeds that
    diverged, the majority and minority half times, and the balanced accuracy at a quarter,
    half and all of the time. Each statistic is ``[mean, standard deviation]`` over the
    seeds that did not diverge and where it is defined (NaN when none)."""
    import numpy as np

    from ..metrics import delay_ratio, majority_mask, minority_mask

    counts = ds.class_counts.values[0]
    minor, major = minority_mask(counts), majority_mask(counts)
    half = ds.half_time.values  # (seed, class)
    diverged = ds.diverged.values.astype(bool)
    fine = ~diverged
    delays = delay_ratio(half[fine], minor)
    t = ds.t.values[0]
    balanced = ds.balanced_accuracy.values  # (seed, save)

    def stats(values) -> list[float]:
        values = np.asarray(values, float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return [float("nan"), float("nan")]
        return [float(values.mean()), float(values.std())]

    at = {}
    for label, fraction in (("quarter", 0.25), ("half", 0.5), ("end", 1.0)):
        index = int(np.argmin(np.abs(t - fraction * t[-1])))
        at[label] = stats(balanced[fine, index])
    return {
        "lr": float(lr),
        "delay": stats(delays),
        "diverged": float(diverged.mean()),
        # a seed where a class never reached its half time has no mean (NaN, left out)
        "majority_half_time": stats(half[fine][:, major].mean(axis=-1)),
        "minority_half_time": stats(half[fine][:, minor].mean(axis=-1)),
        "balanced_accuracy": at,
    }
