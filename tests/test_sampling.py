"""Minibatch stochastic gradient descent (ssm_jax.sampling, --batch-size, --sampling)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, make_problem, simulate
from ssm_jax import sampling as smp
from ssm_jax.cli import main
from ssm_jax.config import ConfigError
from ssm_jax.sweep import make_sweep
from ssm_jax.sweep import run as run_sweep
from ssm_jax.weights import class_weights

from helpers import tree_allclose

COUNTS = (30, 30, 6, 6)


def scales(sampling, steps, batch, counts=COUNTS, n_pad=None, seed=0):
    problem = make_problem(counts, n_pad)
    key = smp.sampling_key(jax.random.PRNGKey(seed))
    draw = jax.jit(jax.vmap(lambda j: smp.batch_scale(sampling, key, j, problem, batch)))
    return np.asarray(draw(jnp.arange(steps))), problem


def test_uniform_epochs_visit_every_example_once():
    n, batch = sum(COUNTS), 16  # 72 examples: 4 batches of 16 and one of 8 per epoch
    s, _ = scales("uniform", 3 * 5, batch)
    in_batch = s > 0
    sizes = in_batch.sum(axis=1)
    np.testing.assert_array_equal(sizes, [16, 16, 16, 16, 8] * 3)
    for epoch in range(3):
        visits = in_batch[5 * epoch:5 * epoch + 5].sum(axis=0)
        np.testing.assert_array_equal(visits, 1)  # without replacement
    # each batch's factors are n / |batch|: the minibatch loss is a mean over its examples
    np.testing.assert_allclose(s[in_batch], np.repeat(n / sizes, sizes))
    # epochs are different permutations
    assert not np.array_equal(in_batch[:5], in_batch[5:10])


def test_uniform_batch_of_n_is_the_full_batch_even_through_padding():
    s, _ = scales("uniform", 4, sum(COUNTS), n_pad=90)
    np.testing.assert_array_equal(s[:, :72], 1.0)
    np.testing.assert_array_equal(s[:, 72:], 0.0)


@pytest.mark.parametrize("sampling, gamma", [("class_balanced", 1.0), ("sqrt", 0.5)])
def test_class_samplers_equal_power_weights_in_expectation(sampling, gamma):
    steps, batch = 4000, 32
    s, problem = scales(sampling, steps, batch)
    np.testing.assert_allclose(s.sum(axis=1) * batch / sum(COUNTS), batch)  # B draws a step
    mean = s.mean(axis=0)
    labels = np.asarray(problem.labels)
    per_class = np.array([mean[labels == c].mean() for c in range(4)])
    expected = np.asarray(class_weights(jnp.asarray(COUNTS, float), "power", gamma))
    # 128 000 draws: the per-class means are within a few percent of their expectation
    np.testing.assert_allclose(per_class, expected, rtol=0.04)
    assert smp.SAMPLINGS[sampling].expected_gamma == gamma


def full_batch_pair(**changes):
    base = dict(counts=(12, 12, 3, 3), dim=5, steps=30, saves=7, lr=1.0, loss="ce",
                init_scale=0.1, x64=True)
    return Config(**{**base, **changes})


@pytest.mark.parametrize("method", ["gd", "momentum", "adam"])
def test_batch_size_n_is_exactly_full_batch_gradient_descent(x64, method):
    lr = 0.05 if method == "adam" else 1.0
    full = simulate(full_batch_pair(method=method, lr=lr)).trajectory
    for batch in (30, 64):
        mini = simulate(full_batch_pair(method=method, lr=lr, batch_size=batch)).trajectory
        tree_allclose(mini.own_output, full.own_output, rtol=0, atol=0)
        tree_allclose(mini.loss, full.loss, rtol=0, atol=0)


def test_padded_full_batch_through_the_sampler_equals_full_batch(x64):
    # In a sweep over the ratio, runs are padded to the largest n: a batch of 30 is the full
    # batch of the 30-example run, drawn through the sampler (n_pad > 30).
    cfg = full_batch_pair(counts=None, k_major=2, k_minor=2, n_major=12, ratio=4.0,
                          batch_size=30)
    ds = run_sweep(make_sweep(cfg, {"ratio": [4.0, 1.0]}), progress=False, buckets=1)
    full = simulate(cfg.replace(batch_size=None)).trajectory
    np.testing.assert_allclose(ds.own_output.values[0], full.own_output, rtol=1e-12)


def test_same_seed_same_batches_other_seed_other_batches(x64):
    cfg = full_batch_pair(batch_size=8, sampling="class_balanced")
    a = simulate(cfg).trajectory
    b = simulate(cfg).trajectory
    np.testing.assert_array_equal(a.own_output, b.own_output)
    key = jax.random.PRNGKey(0)
    other = simulate(cfg, key=jax.random.fold_in(key, 1)).trajectory
    assert not np.array_equal(a.own_output, other.own_output)
    # the initialisation is the full-batch run's: only the batches differ
    full = simulate(cfg.replace(batch_size=None, sampling="uniform")).trajectory
    np.testing.assert_array_equal(a.own_output[0], full.own_output[0])


@pytest.mark.parametrize("sampling", ["uniform", "class_balanced", "sqrt"])
def test_a_sweep_of_minibatch_runs_equals_single_runs(x64, sampling):
    cfg = full_batch_pair(counts=None, k_major=2, k_minor=2, n_major=12, ratio=4.0,
                          batch_size=8, sampling=sampling)
    ds = run_sweep(make_sweep(cfg, {"ratio": [4.0, 2.0]}, seeds=2), progress=False)
    for i, ratio in enumerate((4.0, 2.0)):
        for seed in (0, 1):
            one = simulate(cfg.replace(ratio=ratio, seed=seed)).trajectory
            np.testing.assert_allclose(ds.own_output.values[i, seed], one.own_output,
                                       rtol=1e-10, atol=1e-12)


def test_reduced_simulator_falls_back_for_minibatches(x64):
    cfg = Config(loss="mse", counts=(40, 40, 8, 8), dim=4, steps=20, saves=5, lr=2.0,
                 batch_size=16, x64=True)
    auto = simulate(cfg).trajectory
    off = simulate(cfg.replace(reduced="off")).trajectory
    tree_allclose(auto.own_output, off.own_output, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="batch_size=16 with sampling='uniform'"):
        cfg.replace(reduced="on")
    # a full batch keeps the reduced simulator
    cfg.replace(batch_size=96, reduced="on")


@pytest.mark.parametrize("method", ["gd", "momentum", "adam", "specgd", "muon"])
def test_every_optimiser_trains_on_minibatches(method):
    lr = {"adam": 0.02, "specgd": 0.05, "muon": 0.05}.get(method, 0.5)
    cfg = Config(loss="ce", counts=(16, 16, 4, 4), dim=6, steps=60, saves=4, lr=lr,
                 method=method, batch_size=8, sampling="class_balanced", init_scale=0.1)
    tr = simulate(cfg).trajectory
    assert np.all(np.isfinite(tr.loss))
    assert tr.loss[-1] < tr.loss[0]


def test_meta_gradient_through_minibatches_matches_finite_differences(x64):
    from ssm_jax import meta

    cfg = full_batch_pair(batch_size=8, sampling="sqrt", weighting="power", gamma=0.5,
                          steps=12, saves=2)
    out = meta.gradient(cfg, "balanced_loss", wrt=("gamma", "lr"))
    spec, problem, numeric, key, _ = meta.inputs_of(cfg, ("gamma", "lr"))
    for name in ("gamma", "lr"):
        h = 1e-6
        values = [meta.value(spec, problem, numeric._replace(
            **{name: getattr(numeric, name) + s * h}), key)[0] for s in (1, -1)]
        np.testing.assert_allclose(out.gradient[name], (values[0] - values[1]) / (2 * h),
                                   rtol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--sampling", "sqrt"], "sampling='sqrt' has no effect without batch_size"),
    (["--batch-size", "8", "--method", "flow"], "batch_size=8 has no effect with method="),
    (["--batch-size", "0"], "batch_size=0"),
    (["--batch-size", "8", "--reduced", "on"], "reduced='on' does not apply to batch_size=8"),
])
def test_command_line_refuses_minibatches_where_they_do_not_apply(capsys, args, message):
    assert main(["simulate", "--steps", "5", "--saves", "2", *args]) == 2
    assert message in capsys.readouterr().err


def test_command_line_minibatch_run(tmp_path):
    out = tmp_path / "run.json"
    assert main(["simulate", "--loss", "ce", "--counts", "20,5", "--dim", "4", "--steps",
                 "30", "--saves", "4", "--lr", "1", "--batch-size", "5", "--sampling",
                 "class_balanced", "--json", str(out)]) == 0
    import json

    record = json.loads(out.read_text())
    assert record["config"]["batch_size"] == 5
    assert record["config"]["sampling"] == "class_balanced"
