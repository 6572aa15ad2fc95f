r"""The bridge to the UFM: the minority/majority delay measured on the network against
UFM runs with the same class counts and weightings, and against the closed forms
:math:`r^{1/2-\gamma}` (one feature per example) and :math:`r^{1-\gamma}` (per class)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ... import losses, metrics, model
from ...config import Config
from ...dynamics import discrete
from ...metrics import delay_ratio
from ...simulate import (
    Trajectory,
    finish,
    initial_params,
    numeric_of,
    problem_of,
    spec_of,
)
from ...simulate import observe_fn as ufm_observe_fn
from .config import NUM_CLASSES, WEIGHTINGS, DigitsConfig
from .data import DigitsData
from .training import weighting_arrays

UFM_PARAMETRIZATIONS = ("sample", "class")


def closed_form_delay(ratio: float, gamma: float, parametrization: str) -> float:
    r"""Minority/majority delay of the UFM's small-initialisation escape, in closed form.

    With balanced, small, spectrally aligned init, mode c grows like
    :math:`\dot z_c \approx 2\,\omega_c\,(m_c\,n_c)^{1/2}\,|\ell'(0)|\, z_c / n` where
    :math:`m_c = n_c` (``sample``: one free feature per example) or 1 (``class``: one
    shared feature per class). So its rate is :math:`\propto n_c^{1/2-\gamma}` (sample) or
    :math:`n_c^{1-\gamma}` (class) and the delay is :math:`r^{1/2-\gamma}` or
    :math:`r^{1-\gamma}` with :math:`r = n_{maj}/n_{min}`.
    """
    exponent = 0.5 - gamma if parametrization == "sample" else 1.0 - gamma
    return float(ratio ** exponent)


def ufm_config(cfg: DigitsConfig, counts: Sequence[int], gamma: float,
               parametrization: str) -> Config:
    """The core UFM configuration matching a digits run: same class counts (digit order),
    cross-entropy, feature dimension = last hidden width, small gaussian init, no bias (the
    setting of :func:`closed_form_delay`)."""
    return Config(loss="ce", profile="counts", counts=tuple(int(c) for c in counts),
                  dim=int(cfg.hidden[-1]), weighting="power", gamma=gamma,
                  parametrization=parametrization, bias=False, init="gaussian",
                  init_scale=cfg.ufm_init_scale, method="gd", lr=cfg.ufm_lr,
                  steps=cfg.ufm_steps, saves=min(cfg.ufm_steps + 1, 401), seed=cfg.seed,
                  x64=cfg.x64)


def ufm_trajectories(cfg: DigitsConfig, counts: Sequence[int],
                     parametrization: str) -> Trajectory:
    """UFM trajectories of every weighting of ``cfg`` (leading axis: weighting; numpy).

    Built from the core's pieces (:func:`ssm_jax.simulate.initial_params`, ``observe_fn``,
    ``finish``, :func:`ssm_jax.dynamics.discrete.run`) with the core objective plus the
    logit-adjustment shift ``tau log pi`` on the training outputs (zero except for
    ``logit_adjusted``), all weightings vmapped in one compiled call. Every weighting starts
    from the same initialisation (``PRNGKey(seed)``); metrics use the plain outputs.
    """
    ucfg = ufm_config(cfg, counts, 0.0, parametrization)
    with jax.enable_x64(ucfg.x64):
        spec, problem, numeric = spec_of(ucfg), problem_of(ucfg), numeric_of(ucfg)
        dtype = numeric.lr.dtype
        omegas, taus = weighting_arrays(cfg.weightings, counts, cfg.tau, dtype)
        onehot = problem.onehot()
        log_prior = jnp.log(problem.priors())[:, None]
        t = numeric.lr * jnp.asarray(discrete.save_steps(spec.steps, spec.saves), dtype)

        def one(omega, tau):
            params0 = initial_params(spec, problem, numeric, omega,
                                     jax.random.PRNGKey(ucfg.seed))
            example_weights = model.example_weights(problem, omega)

            def objective(params):
                feats = model.features(params, problem, omega, spec.parametrization)
                values = losses.cross_entropy(model.outputs(params, feats) + tau * log_prior,
                                              onehot)
                return losses.weighted_mean(values, example_weights, problem.mask)

            observe = ufm_observe_fn(spec, problem, numeric, omega)
            opt = discrete.optimizer(spec.method, numeric.lr, numeric.momentum)
            seen, _, diverged = discrete.run(objective, observe, params0, opt, spec.steps,
                                             spec.saves)
            return finish(spec, t, seen, omega, diverged)

        return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(omegas, taus))


def loss_time(t, per_class_loss, threshold: float = math.log(NUM_CLASSES) / 2):
    """First time each class's training loss falls to ``threshold`` (default ``log(k) / 2``,
    half the loss of a zero output), interpolated; NaN if never. Time on axis 0."""
    return np.asarray(metrics.first_crossing(jnp.asarray(t), -jnp.asarray(per_class_loss),
                                             -threshold))


def fit_exponent(ratio: float, delays: dict[str, float]) -> float:
    r"""Least-squares fit of :math:`p` in :math:`\mathrm{delay}_\gamma = r^{p-\gamma}` over the
    power-law weightings present (``erm`` is gamma 0): :math:`p = \overline{\log_r
    \mathrm{delay}_\gamma + \gamma}`. The UFM predicts 1/2 (sample) or 1 (class). NaN if
    ``ratio == 1`` or no finite delay."""
    if ratio <= 1:
        return float("nan")
    values = [math.log(d) / math.log(ratio) + WEIGHTINGS[name][0]
              for name, d in delays.items()
              if not WEIGHTINGS[name][1] and d is not None and np.isfinite(d) and d > 0]
    return float(np.mean(values)) if values else float("nan")


def bridge(cfg: DigitsConfig, data: DigitsData, out: dict) -> dict:
    """Compare the minority/majority delay measured on the network with the UFM's.

    The learning time of a class is the first time its unweighted training cross-entropy
    falls to ``log(k) / 2`` (:func:`loss_time`; time = summed learning rate); the delay is
    mean minority / mean majority learning time. It is measured per seed on the network
    (``delay_loss``; ``delay_train`` / ``delay_test`` use the per-class accuracy reaching
    1/2 instead), on UFM runs with the same counts and weighting for both parametrisations
    (``ufm_delay``), and given in closed form (``closed_form_delay``). ``exponent`` fits
    p in delay = r^(p - gamma) to the network's and the UFMs' delays. ``time_scale`` maps UFM
    time onto network time by matching the majority learning time of the ERM (else first)
    weighting; the figure draws the UFM loss curves on that clock.
    """
    minority = cfg.minority_mask()
    delay = functools.partial(delay_ratio, minority=minority, dtype=np.float64)
    t = cfg.checkpoint_times()
    ratio = max(data.train_counts) / min(data.train_counts)
    by_class = lambda a: np.moveaxis(a, 0, 1)  # noqa: E731  [seed, ckpt, k] -> [ckpt, seed, k]
    result: dict = {"ratio": ratio, "weightings": {}, "ufm": {}}
    ufm = {p: ufm_trajectories(cfg, data.train_counts, p) for p in UFM_PARAMETRIZATIONS}
    for w, name in enumerate(cfg.weightings):
        gamma, adjusted = WEIGHTINGS[name]
        learn = {split: np.asarray(metrics.first_crossing(
                     t, by_class(out[f"{split}_per_class_accuracy"][w])))
                 for split in ("train", "test")}  # [seed][class]
        times = loss_time(t, by_class(out["train_per_class_loss"][w]))
        entry = {
            "loss_time": times, "learn_time_train": learn["train"],
            "learn_time_test": learn["test"], "delay_loss": delay(times),
            "delay_train": delay(learn["train"]), "delay_test": delay(learn["test"]),
            "ufm_delay": {}, "closed_form_delay": {},
        }
        for parametrization in UFM_PARAMETRIZATIONS:
            traj = jax.tree.map(lambda a: a[w], ufm[parametrization])  # noqa: B023
            ufm_times = loss_time(traj.t, traj.per_class_loss)
            result["ufm"].setdefault(parametrization, {})[name] = {
                "t": traj.t, "per_class_loss": traj.per_class_loss, "loss_time": ufm_times,
                "diverged": int(traj.diverged_step) >= 0,
            }
            entry["ufm_delay"][parametrization] = float(delay(ufm_times))
            entry["closed_form_delay"][parametrization] = (
                None if adjusted else closed_form_delay(ratio, gamma, parametrization))
        result["weightings"][name] = entry
    network = {n: float(np.mean(e["delay_loss"])) for n, e in result["weightings"].items()}
    result["exponent"] = {"network": fit_exponent(ratio, network)}
    for parametrization in UFM_PARAMETRIZATIONS:
        result["exponent"][f"ufm_{parametrization}"] = fit_exponent(
            ratio, {n: e["ufm_delay"][parametrization] for n, e in result["weightings"].items()})
    reference = "erm" if "erm" in cfg.weightings else cfg.weightings[0]
    network_major = np.mean(result["weightings"][reference]["loss_time"][:, ~minority])
    result["reference"] = reference
    result["time_scale"] = {
        p: float(network_major / np.mean(result["ufm"][p][reference]["loss_time"][~minority]))
        for p in UFM_PARAMETRIZATIONS}
    return result




def _mean_std(values) -> list:
    values = np.asarray(values, dtype=np.float64)
    return [float(np.mean(values)), float(np.std(values))]


def bridge_summary(links: dict) -> dict:
    """The JSON part of :func:`bridge`: delays per weighting (network mean/std over seeds)."""
    out = {"ratio": links["ratio"], "reference": links["reference"],
           "time_scale": links["time_scale"], "exponent": links["exponent"], "weightings": {}}
    for name, entry in links["weightings"].items():
        out["weightings"][name] = {
            "network_delay": _mean_std(entry["delay_loss"]),
            "network_delay_train": _mean_std(entry["delay_train"]),
            "network_delay_test": _mean_std(entry["delay_test"]),
            "ufm_delay": entry["ufm_delay"],
            "closed_form_delay": entry["closed_form_delay"],
        }
    return out
