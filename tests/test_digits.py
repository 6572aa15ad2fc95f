"""Real-data validation on the bundled digits (ssm_jax.experiments.digits, ``ssm-jax digits``).

One quick end-to-end run through the CLI (150 steps, 3 seeds, every weighting) is shared by
the claim tests; the rest check the pieces against exact results.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax.cli import EXIT_BAD_INPUT, main
from ssm_jax.config import ConfigError
from ssm_jax.experiments import digits
from ssm_jax.experiments.digits import network

QUICK = dict(steps=150, warmup=50, checkpoints=31, seeds=3, ufm_steps=1500)
QUICK_ARGS = ["--steps", "150", "--warmup", "50", "--checkpoints", "31", "--seeds", "3",
              "--ufm-steps", "1500"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick setting run once through the CLI: (config, digits.json, output folder)."""
    out = tmp_path_factory.mktemp("digits")
    assert main(["digits", "--out", str(out), *QUICK_ARGS]) == 0
    with open(out / "digits.json") as f:
        data = json.load(f)
    return digits.DigitsConfig(**QUICK), data, out


def _mean(data, name, key, index):
    return float(np.mean(np.asarray(data[name][key], dtype=float)[:, index]))


# ------------------------------------------------------------------------------- data
def test_imbalanced_counts_are_exact_and_test_set_balanced():
    cfg = digits.DigitsConfig(ratio=4.0, minority=(0, 3, 7), train_per_class=100,
                              test_per_class=40, split_seed=3)
    data = digits.load_data(cfg)
    expected = [25 if c in (0, 3, 7) else 100 for c in range(10)]
    assert list(data.train_counts) == expected
    assert list(np.bincount(data.y_train, minlength=10)) == expected
    assert list(data.test_counts) == [40] * 10
    assert list(np.bincount(data.y_test, minlength=10)) == [40] * 10
    assert data.x_train.shape == (sum(expected), 64) and data.x_test.shape == (400, 64)
    # Disjoint splits, labels match the source rows.
    assert not set(data.train_index) & set(data.test_index)
    from sklearn.datasets import load_digits

    target = load_digits().target
    np.testing.assert_array_equal(target[data.train_index], data.y_train)
    np.testing.assert_array_equal(target[data.test_index], data.y_test)
    # A minority digit keeps a subset of what it would keep as a majority digit; the test
    # set does not depend on the imbalance.
    balanced = digits.load_data(cfg.replace(ratio=1.0))
    assert set(data.train_index) <= set(balanced.train_index)
    np.testing.assert_array_equal(data.test_index, balanced.test_index)
    # Default: 5 + 5 digits, 120 vs 12.
    assert digits.DigitsConfig().train_counts() == (120,) * 5 + (12,) * 5


@pytest.mark.parametrize("changes, named", [
    (dict(ratio=0.5), "ratio=0.5"),
    (dict(minority=(3, 10)), "10"),
    (dict(minority=(4, 4)), "minority"),
    (dict(minority=()), "minority"),
    (dict(weightings=("erm", "focal")), "'focal'"),
    (dict(train_per_class=500), "train_per_class=500"),
    (dict(test_per_class=0), "test_per_class=0"),
    (dict(checkpoints=200, steps=100), "checkpoints=200"),
    (dict(lr=-1.0), "lr=-1.0"),
    (dict(method="lbfgs"), "'lbfgs'"),
    (dict(seeds=0), "seeds=0"),
    (dict(warmup_factor=0.5), "warmup_factor=0.5"),
])
def test_bad_input_names_the_value(changes, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        digits.DigitsConfig(**changes)


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["digits", "--out", str(out), "--ratio", "0.5"]) == EXIT_BAD_INPUT
    assert main(["digits", "--out", str(out), "--minority", "2,11"]) == EXIT_BAD_INPUT
    assert "11" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------- exact pieces
def test_mode_strengths_match_label_svd_and_nc1_exact():
    """a_c = u_c^T (W H) v_c for the singular vectors of Y, and NC1 on hand-made features."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [7, 3, 5, 2, 4, 6, 3, 2, 8, 5])
    problem = digits.problem_of_labels(jnp.asarray(labels), jnp.float32)
    feats = rng.normal(size=(6, labels.size))
    params = {"layers": [], "W": jnp.asarray(rng.normal(size=(10, 6)), jnp.float32),
              "b": jnp.zeros(10, jnp.float32)}
    observe = digits.observe_fn(None, problem, None, problem, lambda p: 0.0)
    # Drive observe with given features by monkeypatching the feature map.
    original = network.penultimate
    network.penultimate = lambda p, x: jnp.asarray(feats, jnp.float32)
    try:
        seen = jax.jit(observe)(params)
    finally:
        network.penultimate = original
    Y = np.asarray(problem.onehot(), dtype=np.float64)
    U, S, Vt = np.linalg.svd(Y, full_matrices=False)
    Z = np.asarray(params["W"], np.float64) @ feats
    projected = np.einsum("ck,cn,kn->k", U, Z, Vt)  # u_j^T Z v_j per singular pair
    classes = np.argmax(np.abs(U), axis=0)  # singular pair j belongs to class classes[j]
    np.testing.assert_allclose(np.asarray(seen["mode_strength"])[classes], projected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(S, np.sqrt(np.bincount(labels))[classes], rtol=1e-6)
    # NC1: features = class means + within-class noise along one direction.
    means = rng.normal(size=(6, 10))
    noise = np.zeros((6, labels.size))
    noise[0] = rng.normal(size=labels.size)
    for c in range(10):  # centre the noise within each class
        noise[0, labels == c] -= noise[0, labels == c].mean()
    H = means[:, labels] + noise
    centred = means - means.mean(axis=1, keepdims=True)
    pinv_b = np.linalg.pinv(centred @ centred.T / 10)
    per_class = [np.trace((noise[:, labels == c] @ noise[:, labels == c].T / np.sum(labels == c))
                          @ pinv_b) / 10 for c in range(10)]
    got = digits.neural_collapse(jnp.asarray(H, jnp.float32), problem)
    np.testing.assert_allclose(got, per_class, rtol=2e-3, atol=1e-5)
    collapsed = digits.neural_collapse(jnp.asarray(means[:, labels], jnp.float32), problem)
    np.testing.assert_allclose(collapsed, 0.0, atol=1e-5)


def test_weightings_follow_the_core_convention():
    counts = digits.DigitsConfig().train_counts()
    omegas, taus = digits.weighting_arrays(tuple(digits.WEIGHTINGS), counts, 0.7, jnp.float32)
    counts = np.asarray(counts, dtype=float)
    for w, name in enumerate(digits.WEIGHTINGS):
        omega = np.asarray(omegas[w])
        np.testing.assert_allclose(np.sum(counts * omega), counts.sum(), rtol=1e-5)
        gamma = digits.WEIGHTINGS[name][0]
        np.testing.assert_allclose(omega / omega[0], (counts / counts[0]) ** -gamma, rtol=1e-5)
    np.testing.assert_allclose(taus, [0.0, 0.0, 0.0, 0.7])


def test_logit_adjusted_objective_shifts_by_tau_log_prior():
    cfg = digits.DigitsConfig()
    data = digits.load_data(cfg)
    rows = np.concatenate([np.flatnonzero(data.y_train == c)[: 3 + 3 * (c < 4)]
                           for c in range(10)])  # every class, imbalanced priors
    x = jnp.asarray(data.x_train[rows], jnp.float32)
    problem = digits.problem_of_labels(jnp.asarray(data.y_train[rows]), jnp.float32)
    params = digits.init_mlp(jax.random.PRNGKey(1), cfg.hidden, 1.0, jnp.float32)
    ones = jnp.ones(10)
    z = np.asarray(params["W"] @ digits.penultimate(params, x) + params["b"][:, None], float)
    prior = np.bincount(np.asarray(problem.labels), minlength=10) / problem.labels.size
    shifted = z + 0.5 * np.log(prior)[:, None]
    expected = np.mean(np.log(np.exp(shifted).sum(0)) - shifted[problem.labels,
                                                                np.arange(z.shape[1])])
    got = jax.jit(digits.objective_fn(x, problem, ones, 0.5, 0.0))(params)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_warmup_time_axis():
    # Without warm-up, time is lr x step (the core's convention).
    cfg = digits.DigitsConfig(warmup=0, lr=0.3, steps=40, checkpoints=5)
    np.testing.assert_allclose(cfg.checkpoint_times(), 0.3 * cfg.checkpoint_steps())
    m = np.asarray(digits.lr_multiplier(np.arange(12), 10, 100.0))
    np.testing.assert_allclose(m[[0, 5, 10, 11]], [0.01, 0.1, 1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(digits.elapsed_multiplier([0, 3, 12], 10, 100.0),
                               [0.0, m[:3].sum(), m.sum()], rtol=1e-5)
    assert digits.DigitsConfig().early_index() == np.argmin(
        np.abs(digits.DigitsConfig().checkpoint_steps() - 100))


def test_fit_exponent_recovers_known_power():
    ratio = 10.0
    delays = {name: ratio ** (0.8 - digits.WEIGHTINGS[name][0]) for name in digits.WEIGHTINGS}
    delays["logit_adjusted"] = 123.0  # not a power law: ignored
    assert digits.fit_exponent(ratio, delays) == pytest.approx(0.8, abs=1e-12)
    assert math.isnan(digits.fit_exponent(1.0, delays))
    assert digits.closed_form_delay(9.0, 0.0, "sample") == pytest.approx(3.0)
    assert digits.closed_form_delay(9.0, 0.5, "class") == pytest.approx(3.0)


# ----------------------------------------------------------------------- training
def test_same_seed_same_result_and_vmap_matches_loop(quick):
    cfg, data, _ = quick
    dataset = digits.load_data(cfg)
    again = digits.train_all(cfg, dataset)  # same compiled function as the CLI run
    for w, name in enumerate(cfg.weightings):
        np.testing.assert_array_equal(again["test_balanced_accuracy"][w],
                                      np.asarray(data[name]["balanced_test_accuracy"]))
        np.testing.assert_array_equal(again["train_per_class_loss"][w],
                                      np.asarray(data[name]["train_per_class_loss"]))
    # Weightings share each seed's initialisation; seeds differ.
    first_classifier = again["classifier"][:, :, 0]  # [weighting, seed, k, d] at step 0
    np.testing.assert_array_equal(first_classifier[0], first_classifier[-1])
    assert not np.allclose(first_classifier[0, 0], first_classifier[0, 1])
    # All runs in one vmap give the same numbers as one run at a time.
    names = ("erm", "gamma=1")
    vmapped = digits.train_all(cfg.replace(weightings=names, vmap_size=6), dataset)
    for w, name in enumerate(names):
        for key, ours in (("balanced_test_accuracy", "test_balanced_accuracy"),
                          ("train_per_class_loss", "train_per_class_loss"),
                          ("nc1", "nc1")):
            np.testing.assert_allclose(vmapped[ours][w], np.asarray(data[name][key]),
                                       rtol=2e-3, atol=2e-3, err_msg=f"{name} {key}")


def test_json_keys_and_figure(quick):
    cfg, data, out = quick
    assert data["checkpoints"] == [int(s) for s in cfg.checkpoint_steps()]
    assert data["checkpoints"][0] == 0 and data["checkpoints"][-1] == cfg.steps
    assert data["train_counts"] == [120] * 5 + [12] * 5 and data["test_counts"] == [50] * 10
    for name in digits.WEIGHTINGS:
        for key in ("balanced_test_accuracy", "majority_test_accuracy",
                    "minority_test_accuracy"):
            values = np.asarray(data[name][key], dtype=float)
            assert values.shape == (cfg.seeds, cfg.checkpoints), (name, key)
            assert np.all((values >= 0) & (values <= 1))
        per_class = np.asarray(data[name]["test_per_class_accuracy"])
        np.testing.assert_allclose(per_class.mean(-1), data[name]["balanced_test_accuracy"],
                                   atol=1e-6)
        np.testing.assert_allclose(per_class[..., 5:].mean(-1),
                                   data[name]["minority_test_accuracy"], atol=1e-6)
        assert not data[name]["diverged"]
    assert not data["diverged"]
    assert (out / "digits.png").stat().st_size > 10_000


def test_early_reweighting_beats_erm_and_gap_closes(quick):
    cfg, data, _ = quick
    early = data["early_checkpoint"]
    erm_early = _mean(data, "erm", "balanced_test_accuracy", early)
    erm_final = _mean(data, "erm", "balanced_test_accuracy", -1)
    for name in ("gamma=1/2", "gamma=1", "logit_adjusted"):
        gap_early = _mean(data, name, "balanced_test_accuracy", early) - erm_early
        gap_final = _mean(data, name, "balanced_test_accuracy", -1) - erm_final
        assert gap_early > 0.05, (name, gap_early)
        assert abs(gap_final) < 0.5 * gap_early, (name, gap_early, gap_final)
        assert abs(gap_final) < 0.06, (name, gap_final)
    # Under ERM the minority digits lag early on, far more than at the end.
    lag_early = (_mean(data, "erm", "majority_test_accuracy", early)
                 - _mean(data, "erm", "minority_test_accuracy", early))
    lag_final = (_mean(data, "erm", "majority_test_accuracy", -1)
                 - _mean(data, "erm", "minority_test_accuracy", -1))
    assert lag_early > 0.25 and lag_final < 0.6 * lag_early, (lag_early, lag_final)


def test_bridge_ufm_matches_closed_forms_and_network_delays(quick):
    _, data, _ = quick
    bridge = data["bridge"]["weightings"]
    # The UFM's loss-based delays follow its closed-form rates.
    assert bridge["gamma=1"]["ufm_delay"]["class"] == pytest.approx(1.0, abs=0.05)
    assert bridge["gamma=1/2"]["ufm_delay"]["sample"] == pytest.approx(1.0, abs=0.15)
    assert bridge["gamma=1"]["ufm_delay"]["sample"] == pytest.approx(10 ** -0.5, rel=0.15)
    exponent = data["bridge"]["exponent"]
    assert exponent["ufm_sample"] == pytest.approx(0.5, abs=0.1)
    assert exponent["ufm_class"] == pytest.approx(1.0, abs=0.1)
    # On the network, ERM's minorities are learned much later and gamma = 1 removes the delay.
    assert bridge["erm"]["network_delay"][0] > 3.0
    assert bridge["gamma=1"]["network_delay"][0] == pytest.approx(1.0, abs=0.5)
    assert (bridge["erm"]["network_delay"][0] > bridge["gamma=1/2"]["network_delay"][0]
            > bridge["gamma=1"]["network_delay"][0])
