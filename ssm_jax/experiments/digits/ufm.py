r"""The bridge to the UFM: the minority/majority delay measured on the network against
UFM runs with the same class counts and recipes, and against the closed forms
:math:`r^{1/2-\gamma}` (one feature per example) and :math:`r^{1-\gamma}` (per class).

Every recipe has a UFM counterpart, the core run of :func:`ufm_recipe_config`: the same
class weights and phases, tau, LDAM margins and scale, sampler and batch size. Only the
clock differs: a switch time T of the network is ``T / time_scale`` for the UFM, where
``time_scale`` maps UFM time onto network time by matching the majority learning times
of the reference recipe (:func:`bridge`), so that the UFM switches at the same point of
its learning as the network."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ... import losses, metrics, model, sampling
from ...config import Config
from ...dynamics import discrete
from ...metrics import delay_ratio
from ...registry import SAMPLINGS
from ...simulate import (
    Trajectory,
    finish,
    initial_params,
    numeric_of,
    problem_of,
    spec_of,
)
from ...simulate import observe_fn as ufm_observe_fn
from .config import CONSTANT, FROM, NUM_CLASSES, RECIPES, UNTIL, WEIGHTINGS, DigitsConfig
from .data import DigitsData
from .recipes import (
    FULL_BATCH,
    RecipeArrays,
    batch_size_of,
    minibatch_factors,
    program_samplers,
    recipe_arrays,
    sampler_of,
)

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


def ufm_recipe_config(cfg: DigitsConfig, counts: Sequence[int], name: str,
                      parametrization: str, time_scale: float = 1.0) -> Config:
    """The core configuration of recipe ``name``'s UFM counterpart (:func:`ufm_config`
    with the recipe's weighting, loss, sampler and switch times, the latter divided by
    ``time_scale``): :func:`ssm_jax.simulate.simulate` of it is the run that
    :func:`ufm_trajectories` computes for the recipe, up to float rounding."""
    recipe = RECIPES[name]
    n = int(sum(counts))
    sampler = sampler_of(cfg, name, n)
    start, stop = cfg.switch_times()
    changes: dict = {}
    if recipe.schedule == FROM:
        changes["reweight_from"] = start / time_scale
    if recipe.schedule == UNTIL:
        changes["reweight_until"] = stop / time_scale
    if recipe.logit_adjusted:
        changes.update(loss="la", tau=cfg.tau)
    if recipe.ldam:
        changes.update(loss="ldam", ldam_margin=cfg.ldam_margin, ldam_scale=cfg.ldam_scale)
    if sampler != FULL_BATCH:
        changes.update(batch_size=batch_size_of(cfg, n), sampling=sampler)
    return ufm_config(cfg, counts, recipe.gamma, parametrization).replace(**changes)


def ufm_trajectories(cfg: DigitsConfig, counts: Sequence[int],
                     parametrization: str, time_scale: float = 1.0) -> Trajectory:
    """UFM trajectories of every recipe of ``cfg`` (leading axis: recipe; numpy).

    Built from the core's pieces (:func:`ssm_jax.simulate.initial_params`, ``observe_fn``,
    ``finish``, :func:`ssm_jax.dynamics.discrete.run`) with the recipes' per-run arrays
    (:func:`~.recipes.recipe_arrays`, on the UFM's clock ``t = ufm_lr x step``, switch
    times divided by ``time_scale``): the core objective with each step's phase weights
    and minibatch factors, the logit-adjustment shift ``tau log pi`` and the LDAM margins
    on the training outputs, all recipes vmapped in one compiled call (compiled once per
    parametrisation and shapes). Every recipe starts from the same initialisation
    (``PRNGKey(seed)``) and draws the same batches from it; metrics use the plain outputs
    and cross-entropy.
    """
    ucfg = ufm_config(cfg, counts, 0.0, parametrization)
    with jax.enable_x64(ucfg.x64):
        spec, problem, numeric = spec_of(ucfg), problem_of(ucfg), numeric_of(ucfg)
        dtype = numeric.lr.dtype
        times = ucfg.lr * np.arange(ucfg.steps + 1, dtype=np.float64)
        start, stop = cfg.switch_times()
        recipes = recipe_arrays(cfg, counts, times, (start / time_scale, stop / time_scale),
                                dtype)
        n = int(sum(counts))
        traj = _ufm_runs(spec, program_samplers(cfg, n), batch_size_of(cfg, n), problem,
                         numeric, recipes, jax.random.PRNGKey(ucfg.seed))
        return jax.tree.map(np.asarray, traj)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _ufm_runs(spec, samplers: tuple[str, ...], batch_size: int, problem, numeric,
              recipes: RecipeArrays, key) -> Trajectory:
    onehot = problem.onehot()
    log_prior = jnp.log(problem.priors())[:, None]
    t = numeric.lr * jnp.asarray(discrete.save_steps(spec.steps, spec.saves),
                                 numeric.lr.dtype)
    key_batches = sampling.sampling_key(key)

    def one(recipe: RecipeArrays):
        omega = recipe.phase_weights[1]
        params0 = initial_params(spec, problem, numeric, omega, key)

        def objective(params, step):
            weights = model.example_weights(problem, recipe.weights_at(step))
            factors = minibatch_factors(samplers, recipe.sampler, key_batches, step, problem,
                                        batch_size)
            if factors is not None:
                weights = weights * factors
            feats = model.features(params, problem, omega, spec.parametrization)
            z = model.outputs(params, feats) + recipe.tau * log_prior
            values = losses.ldam(z, onehot, recipe.margins, recipe.scale)
            return losses.weighted_mean(values, weights, problem.mask)

        observe = ufm_observe_fn(spec, problem, numeric, omega)
        opt = discrete.optimizer(spec.method, numeric.lr, numeric.momentum)
        seen, _, diverged = discrete.run(
            objective, lambda params, step: observe(params, recipe.weights_at(step)),
            params0, opt, spec.steps, spec.saves, timed=True)
        return finish(spec, t, seen, omega, diverged)

    return jax.vmap(one)(recipes)


def loss_time(t, per_class_loss, threshold: float = math.log(NUM_CLASSES) / 2):
    """First time each class's training loss falls to ``threshold`` (default ``log(k) / 2``,
    half the loss of a zero output), interpolated; NaN if never. Time on axis 0."""
    return np.asarray(metrics.first_crossing(jnp.asarray(t), -jnp.asarray(per_class_loss),
                                             -threshold))


def fit_exponent(ratio: float, delays: dict[str, float],
                 gammas: dict[str, float] | None = None) -> float:
    r"""Least-squares fit of :math:`p` in :math:`\mathrm{delay}_\gamma = r^{p-\gamma}` over the
    power-law weightings present (:data:`WEIGHTINGS` without logit adjustment; ``erm`` is
    gamma 0; other names are ignored): :math:`p = \overline{\log_r \mathrm{delay}_\gamma +
    \gamma}`. ``gammas`` overrides a weighting's gamma (e.g. its effective gamma under a
    class sampler). The UFM predicts 1/2 (sample) or 1 (class). NaN if ``ratio == 1`` or
    no finite delay."""
    if ratio <= 1:
        return float("nan")
    gammas = {name: (gammas or {}).get(name, WEIGHTINGS[name][0]) for name in delays
              if name in WEIGHTINGS and not WEIGHTINGS[name][1]}
    values = [math.log(d) / math.log(ratio) + gammas[name]
              for name, d in delays.items()
              if name in gammas and d is not None and np.isfinite(d) and d > 0]
    return float(np.mean(values)) if values else float("nan")


def effective_gamma(cfg: DigitsConfig, name: str) -> float | None:
    r"""The power of a recipe's expected gradient weights, :math:`\omega_c \propto
    n_c^{-\gamma}` in expectation over its batches: its gamma plus its sampler's
    ``expected_gamma`` (class-balanced sampling: +1); None for a recipe with a schedule,
    logit adjustment or margins (no closed-form delay)."""
    recipe = RECIPES[name]
    if recipe.schedule != CONSTANT or recipe.logit_adjusted or recipe.ldam:
        return None
    sampler = recipe.sampling or cfg.sampling
    return recipe.gamma + SAMPLINGS[sampler].expected_gamma


def bridge(cfg: DigitsConfig, data: DigitsData, out: dict) -> dict:
    """Compare the minority/majority delay measured on the network with the UFM's.

    The learning time of a class is the first time its unweighted training cross-entropy
    falls to ``log(k) / 2`` (:func:`loss_time`; time = summed learning rate); the delay is
    mean minority / mean majority learning time. It is measured per seed on the network
    (``delay_loss``; ``delay_train`` / ``delay_test`` use the per-class accuracy reaching
    1/2 instead), on UFM runs with the same counts and recipe for both parametrisations
    (``ufm_delay``), and given in closed form (``closed_form_delay``, for the recipes
    whose expected weights are a power law, :func:`effective_gamma`; None for the
    others). ``exponent`` fits p in delay = r^(p - gamma) to the network's and the UFMs'
    delays over the power-law weightings. ``time_scale`` maps UFM time onto network time
    by matching the majority learning time of the ERM (else first) recipe, the
    ``reference``; the figure draws the UFM loss curves on that clock.

    With a recipe that switches its weights, the UFM runs twice: once with the network's
    switch times, which gives the clock, then with the switch times divided by
    ``time_scale`` (``ufm_switch_times``), so that the UFM switches at the same stage of
    its learning as the network (the same compiled program runs both times).
    """
    minority = cfg.minority_mask()
    delay = functools.partial(delay_ratio, minority=minority, dtype=np.float64)
    t = cfg.checkpoint_times()
    ratio = max(data.train_counts) / min(data.train_counts)
    by_class = lambda a: np.moveaxis(a, 0, 1)  # noqa: E731  [seed, ckpt, k] -> [ckpt, seed, k]
    reference = "erm" if "erm" in cfg.weightings else cfg.weightings[0]
    r = cfg.weightings.index(reference)
    network_major = np.mean(loss_time(t, by_class(out["train_per_class_loss"][r]))[:, ~minority])

    def clock(traj) -> float:  # network time per UFM time, from the reference's majorities
        ufm_major = np.mean(loss_time(traj.t[r], traj.per_class_loss[r])[~minority])
        return float(network_major / ufm_major)

    switches = any(recipe.schedule != CONSTANT for recipe in cfg.recipes())
    result: dict = {"ratio": ratio, "weightings": {}, "ufm": {}, "reference": reference,
                    "ufm_switch_times": {} if switches else None}
    ufm = {}
    for parametrization in UFM_PARAMETRIZATIONS:
        traj = ufm_trajectories(cfg, data.train_counts, parametrization)
        if switches:
            scale = clock(traj)
            scale = scale if np.isfinite(scale) and scale > 0 else 1.0  # no clock: unscaled
            traj = ufm_trajectories(cfg, data.train_counts, parametrization, scale)
            result["ufm_switch_times"][parametrization] = [v / scale
                                                           for v in cfg.switch_times()]
        ufm[parametrization] = traj
    gammas = {name: effective_gamma(cfg, name) for name in cfg.weightings}
    for w, name in enumerate(cfg.weightings):
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
                None if gammas[name] is None
                else closed_form_delay(ratio, gammas[name], parametrization))
        result["weightings"][name] = entry
    powers = {n: g for n, g in gammas.items() if g is not None}
    network = {n: float(np.mean(e["delay_loss"])) for n, e in result["weightings"].items()}
    result["exponent"] = {"network": fit_exponent(ratio, network, powers)}
    for parametrization in UFM_PARAMETRIZATIONS:
        result["exponent"][f"ufm_{parametrization}"] = fit_exponent(
            ratio, {n: e["ufm_delay"][parametrization] for n, e in result["weightings"].items()},
            powers)
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
           "time_scale": links["time_scale"], "exponent": links["exponent"],
           "ufm_switch_times": links["ufm_switch_times"], "weightings": {}}
    for name, entry in links["weightings"].items():
        out["weightings"][name] = {
            "network_delay": _mean_std(entry["delay_loss"]),
            "network_delay_train": _mean_std(entry["delay_train"]),
            "network_delay_test": _mean_std(entry["delay_test"]),
            "ufm_delay": entry["ufm_delay"],
            "closed_form_delay": entry["closed_form_delay"],
        }
    return out
