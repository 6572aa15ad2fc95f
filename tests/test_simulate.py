"""The core simulator: the science of the imbalanced UFM, save points, divergence, output."""

import importlib
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, numeric_of, problem_of, simulate, spec_of, trajectory
from ssm_jax.dynamics.discrete import save_steps

from helpers import tree_allclose

GAMMAS = (0.0, 0.5, 1.0)
SEEDS = (0, 1, 2)


def batch(cfg, gammas=GAMMAS, seeds=SEEDS):
    """One compiled, vmapped call over (gamma, seed); returns arrays shaped (gamma, seed, ...)."""
    spec, problem, base = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
    g, s = np.meshgrid(gammas, seeds, indexing="ij")

    def one(gamma, seed):
        return trajectory(spec, problem, base._replace(gamma=gamma), jax.random.PRNGKey(seed))

    out = jax.jit(jax.vmap(one))(jnp.asarray(g.ravel(), base.gamma.dtype), jnp.asarray(s.ravel()))
    return jax.tree.map(lambda a: np.asarray(a).reshape(len(gammas), len(seeds), *a.shape[1:]),
                        out)


def science_config(loss, ratio):
    return Config(loss=loss, k_major=3, k_minor=3, n_major=64, ratio=ratio, dim=16,
                  weighting="power", init_scale=1e-4, lr=2.0, steps=1000, saves=201)


def minority_over_majority(times):
    """Ratio of mean minority to mean majority time, per (gamma, seed)."""
    return times[..., 3:].mean(-1) / times[..., :3].mean(-1)


@pytest.mark.parametrize("ratio", [4, 16])
def test_squared_loss_half_time_ratios_follow_sqrt_ratio(ratio):
    tr = batch(science_config("mse", ratio))
    assert not np.isnan(tr.half_time).any(), "every class must reach own output 1/2"
    measured = minority_over_majority(tr.half_time).mean(axis=1)  # mean over seeds
    predicted = np.array([np.sqrt(ratio), 1.0, 1.0 / np.sqrt(ratio)])
    np.testing.assert_allclose(measured, predicted, rtol=0.2)
    # ERM is clearly delayed at this ratio, and gamma = 1 clearly over-corrects.
    assert measured[0] > 1.5 and measured[2] < 0.6


@pytest.mark.parametrize("ratio", [4, 16])
def test_cross_entropy_erm_delays_minority_and_gamma_one_removes_it(ratio):
    tr = batch(science_config("ce", ratio))
    assert not np.isnan(tr.half_time).any()
    delay = minority_over_majority(tr.half_time)
    assert np.all(delay[0] > 1.3), f"ERM should delay the minority, got {delay[0]}"
    assert np.all(delay[2] <= 1.0), f"gamma = 1 should remove the delay, got {delay[2]}"
    assert np.all(delay[0] > delay[1]) and np.all(delay[1] > delay[2])
    # Training still reaches perfect balanced accuracy with every weighting.
    np.testing.assert_allclose(tr.balanced_accuracy[..., -1], 1.0)


def test_uneven_save_points_match_a_finer_run():
    assert save_steps(10, 4).tolist() == [0, 3, 7, 10]
    base = Config(counts=(5, 2), dim=4, steps=10, saves=11, lr=0.5, init_scale=0.3)
    coarse = simulate(base.replace(saves=4)).trajectory
    fine = simulate(base.replace(saves=11)).trajectory
    for name in ("loss", "per_class_accuracy", "own_output", "per_class_loss"):
        np.testing.assert_allclose(getattr(coarse, name), getattr(fine, name)[[0, 3, 7, 10]],
                                   rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(coarse.t, [0.0, 1.5, 3.5, 5.0])


@pytest.mark.parametrize("method", ["gd", "momentum", "adam"])
def test_methods_reduce_the_loss(method):
    lr = 0.05 if method == "adam" else 2.0
    tr = simulate(Config(counts=(20, 5), dim=8, method=method, lr=lr, steps=200, saves=5,
                         init_scale=0.1)).trajectory
    assert tr.loss[-1] < 0.1 * tr.loss[0]


def test_keep_params_matches_the_saved_outputs():
    res = simulate(Config(counts=(4, 2), dim=3, steps=20, saves=3, keep_params=True,
                          init_scale=0.2))
    params = res.trajectory.params
    chex.assert_shape(params["W"], (3, 2, 3))  # (saves, k, d)
    chex.assert_shape(params["H"], (3, 3, 6))  # (saves, d, n)
    z = params["W"][-1] @ params["H"][-1]
    np.testing.assert_allclose(res.trajectory.own_output[-1],
                               [z[0, :4].mean(), z[1, 4:].mean()], rtol=1e-5)


def test_divergence_is_reported_with_its_step():
    res = simulate(Config(counts=(10, 2), dim=4, lr=1e4, steps=50, saves=6, init_scale=0.5))
    assert res.diverged
    step = int(res.trajectory.diverged_step)
    assert 0 <= step < 50
    data = res.to_dict()
    assert data["diverged"] is True and data["diverged_step"] == step
    json.dumps(data, allow_nan=False)  # NaNs became null, nothing is silently written as NaN


def test_every_metric_from_the_divergence_on_is_nan():
    """Saves at or after the divergence step hold NaN in every observation (accuracies
    too: argmax of NaN outputs read as class 0, an accuracy of 0.0), and null in JSON;
    the saves before it keep their numbers."""
    res = simulate(Config(counts=(10, 2), dim=4, lr=30.0, steps=50, saves=11,
                          init_scale=0.5, geometry=True))
    tr, step = res.trajectory, int(res.trajectory.diverged_step)
    after = save_steps(50, 11) >= step
    assert res.diverged and after.any() and not after.all()
    series = {"loss": tr.loss, "per_class_accuracy": tr.per_class_accuracy,
              "per_class_loss": tr.per_class_loss, "own_output": tr.own_output,
              "balanced_accuracy": tr.balanced_accuracy,
              "posthoc_balanced_accuracy": tr.posthoc_balanced_accuracy,
              **{f"geometry_{k}": v for k, v in tr.geometry.items()
                 if np.issubdtype(np.asarray(v).dtype, np.floating)}}
    for name, values in series.items():
        assert np.isnan(values[after]).all(), name
    assert np.isfinite(tr.balanced_accuracy[~after]).all()
    data = res.to_dict()
    assert all(v is None for v in np.asarray(data["balanced_accuracy"], object)[after])
    assert all(row == [None, None] for row, a in zip(data["per_class_accuracy"], after,
                                                     strict=True) if a)


@pytest.mark.parametrize("lr", [1e4, 0.5])
def test_divergence_checked_on_the_data_term_finds_the_same_step(lr):
    """Steps check the data term without the weight-decay penalty (``has_aux``); the
    trajectory and the divergence step equal those of checking the full objective."""
    sim = importlib.import_module("ssm_jax.simulate")  # the package exports a function of that name
    from ssm_jax.dynamics import discrete

    cfg = Config(counts=(10, 2), dim=4, lr=lr, steps=50, saves=6, init_scale=0.5,
                 weight_decay=0.3, reduced="off", x64=True)
    with jax.enable_x64(True):
        spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
        omega = sim.omega_of(spec, problem, numeric)
        params0 = sim.initial_params(spec, problem, numeric, omega, jax.random.PRNGKey(0))
        observe = sim.observe_fn(spec, problem, numeric, omega)
        opt = discrete.optimizer("gd", numeric.lr)
        full = discrete.run(sim.objective_fn(spec, problem, numeric, omega), observe, params0,
                            opt, 50, 6)
        parts = discrete.run(sim.objective_parts(spec, problem, numeric, omega), observe,
                             params0, opt, 50, 6, has_aux=True)
        single = trajectory(spec, problem, numeric, jax.random.PRNGKey(0))
    assert int(parts[2]) == int(full[2]) == int(single.diverged_step)
    assert (int(full[2]) >= 0) == (lr > 1)
    tree_allclose(parts[0], full[0])


def test_stable_run_is_not_diverged_and_x64_switch():
    res = simulate(Config(counts=(6, 3), dim=4, steps=20, saves=3, x64=True))
    assert not res.diverged and res.to_dict()["diverged_step"] is None
    assert res.trajectory.loss.dtype == np.float64
    assert simulate(Config(counts=(6, 3), dim=4, steps=20, saves=3)).trajectory.loss.dtype == \
        np.float32


def test_vmapped_runs_equal_single_runs():
    cfg = Config(counts=(8, 2), dim=4, steps=40, saves=5, weighting="power", init_scale=0.1)
    tr = batch(cfg, gammas=(0.0, 1.0), seeds=(0, 5))
    single = simulate(cfg.replace(gamma=1.0, seed=5)).trajectory
    tree_allclose(jax.tree.map(lambda a: a[1, 1], tr), single, rtol=1e-5, atol=1e-6)


def test_json_has_the_documented_keys(tmp_path):
    res = simulate(Config(counts=(6, 3), dim=4, steps=20, saves=3))
    data = res.to_dict()
    for key in ("class_counts", "weights", "t", "per_class_accuracy", "per_class_loss",
                "own_output", "balanced_accuracy", "learn_time", "half_time", "diverged",
                "config", "loss"):
        assert key in data
    assert np.asarray(data["per_class_accuracy"]).shape == (3, 2)
    assert data["config"]["counts"] == [6, 3]
