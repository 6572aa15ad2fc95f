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
from ssm_jax.experiments.digits import network, recipes

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
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=10**6), "batch_size=1000000"),
    (dict(sampling="stratified"), "'stratified'"),
    (dict(reweight_from=-1.0), "reweight_from=-1.0"),
    (dict(reweight_until=math.nan), "reweight_until=nan"),
    (dict(ldam_margin=-0.5), "ldam_margin=-0.5"),
    (dict(ldam_scale=0.0), "ldam_scale=0.0"),
    # An option no listed recipe uses is refused (the recorded configuration is the run).
    (dict(weightings=("erm", "gamma=1"), reweight_from=1.0), "reweight_from=1.0 has no effect"),
    (dict(weightings=("drw",), reweight_until=1.0), "reweight_until=1.0 has no effect"),
    (dict(weightings=("drw",), ldam_scale=2.0), "ldam_scale=2.0 has no effect"),
    (dict(weightings=("resample",), sampling="sqrt"), "sampling='sqrt' has no effect"),
])
def test_bad_input_names_the_value(changes, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        digits.DigitsConfig(**changes)


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["digits", "--out", str(out), "--ratio", "0.5"]) == EXIT_BAD_INPUT
    assert main(["digits", "--out", str(out), "--minority", "2,11"]) == EXIT_BAD_INPUT
    assert "11" in capsys.readouterr().err
    for bad, named in ((["--batch-size", "0"], "batch_size=0"),
                       (["--sampling", "stratified"], "'stratified'"),
                       (["--reweight-from", "-1"], "reweight_from=-1.0"),
                       (["--ldam-scale", "0"], "ldam_scale=0.0"),
                       (["--weightings", "erm,ldam_drw", "--reweight-until", "2"],
                        "reweight_until=2.0 has no effect")):
        assert main(["digits", "--out", str(out), *bad]) == EXIT_BAD_INPUT, bad
        assert named in capsys.readouterr().err, bad
    with pytest.raises(SystemExit) as exit_info:  # argparse: finite numbers only
        main(["digits", "--out", str(out), "--reweight-until", "nan"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "--reweight-until" in capsys.readouterr().err
    assert not out.exists()


def test_cli_recipe_options_reach_the_config():
    from ssm_jax.cli import build_parser
    from ssm_jax.commands.digits import config_from_args

    args = build_parser().parse_args(
        ["digits", "--weightings", "erm,drw,reweight_then_erm,ldam", "--batch-size", "64",
         "--sampling", "sqrt", "--reweight-from", "0.5", "--reweight-until", "2",
         "--ldam-margin", "1.5", "--ldam-scale", "2"])
    cfg = config_from_args(args)
    assert (cfg.batch_size, cfg.sampling, cfg.reweight_from, cfg.reweight_until,
            cfg.ldam_margin, cfg.ldam_scale) == (64, "sqrt", 0.5, 2.0, 1.5, 2.0)
    assert cfg.switch_times() == (0.5, 2.0)
    defaults = config_from_args(build_parser().parse_args(["digits"]))
    assert defaults == digits.DigitsConfig()
    assert defaults.weightings == tuple(digits.RECIPES)
    # Unset switch times: half the training time.
    assert defaults.switch_times() == (0.5 * defaults.end_time(),) * 2


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



def test_recipe_json_keys(quick):
    cfg, data, _ = quick
    assert data["weightings"] == list(digits.RECIPES)
    assert data["recipes"] == {name: r.help for name, r in digits.RECIPES.items()}
    assert data["phases"] == ["erm", "weighting", "erm"]
    start, stop = cfg.switch_times()
    assert data["reweight_from"] == data["reweight_until"] == pytest.approx(start)
    assert start == pytest.approx(0.5 * data["time"][-1])  # default: half the training time
    assert data["batch_size"] == sum(data["train_counts"])  # default: n draws per step
    times = cfg.step_times()
    for name, recipe in digits.RECIPES.items():
        entry = data[name]
        phases = np.asarray(entry["phase_weights"])
        assert phases.shape == (3, 10), name
        np.testing.assert_allclose(phases[1], entry["class_weights"], err_msg=name)
        for erm_phase in (phases[0], phases[2]):  # the ERM phases have erm's weights
            np.testing.assert_array_equal(erm_phase, data["erm"]["class_weights"])
        assert entry["loss"] == ("ldam" if recipe.ldam else "ce"), name
        assert entry["sampling"] == ("class_balanced" if name == "resample" else None), name
        margins = np.asarray(entry["ldam_margins"])
        assert margins.max() == pytest.approx(cfg.ldam_margin if recipe.ldam else 0.0), name
        assert entry["ldam_scale"] == 1.0
        for key, when, kind in (("reweight_from", start, "from"),
                                ("reweight_until", stop, "until")):
            if recipe.schedule != kind:
                assert entry[key] is None and entry[f"{key}_step"] is None, (name, key)
                continue
            assert entry[key] == pytest.approx(when), (name, key)
            step = entry[f"{key}_step"]  # the first step whose time reaches the switch
            assert times[step - 1] < when <= times[step], (name, key)
    # The UFM switches at the network's switch time on its own clock.
    bridge = data["bridge"]
    for parametrization in ("sample", "class"):
        np.testing.assert_allclose(bridge["ufm_switch_times"][parametrization],
                                   np.array([start, stop])
                                   / bridge["time_scale"][parametrization], rtol=1e-9)


def test_recipes_against_each_other_and_the_ufm(quick):
    cfg, data, _ = quick
    early = data["early_checkpoint"]
    bal = lambda name, i: _mean(data, name, "balanced_test_accuracy", i)  # noqa: E731
    # Class-balanced resampling is gamma = 1 in expectation: close early and at the end.
    for i in (early, -1):
        assert abs(bal("resample", i) - bal("gamma=1", i)) < 0.03, i
    assert bal("resample", early) > bal("erm", early) + 0.2
    # Before its switch a run is the constant recipe it starts as (bitwise); then it is not.
    switch = data["drw"]["reweight_from_step"]
    assert switch == data["reweight_then_erm"]["reweight_until_step"]
    before = [i for i, step in enumerate(data["checkpoints"]) if step <= switch]
    assert early in before and len(before) < cfg.checkpoints
    for name, start in (("drw", "erm"), ("reweight_then_erm", "gamma=1"),
                        ("ldam_drw", "ldam")):
        ours = np.asarray(data[name]["test_per_class_accuracy"])
        theirs = np.asarray(data[start]["test_per_class_accuracy"])
        np.testing.assert_array_equal(ours[:, before], theirs[:, before], err_msg=name)
        assert not np.array_equal(ours[:, -1], theirs[:, -1]), name
    # After the switch each moves towards the recipe of its last phase.
    assert bal("drw", -1) > bal("erm", -1) + 0.01
    assert bal("reweight_then_erm", -1) < bal("gamma=1", -1) - 0.005
    # The UFM: resampling's delay is gamma = 1's; the switch (half the training time)
    # comes after every class is learned, so DRW's delay is ERM's and
    # reweight-then-ERM's gamma = 1's.
    bridge = data["bridge"]["weightings"]
    for p in ("sample", "class"):
        assert bridge["resample"]["ufm_delay"][p] == pytest.approx(
            bridge["gamma=1"]["ufm_delay"][p], rel=0.02)
        assert bridge["drw"]["ufm_delay"][p] == pytest.approx(
            bridge["erm"]["ufm_delay"][p], rel=1e-4)
        assert bridge["reweight_then_erm"]["ufm_delay"][p] == pytest.approx(
            bridge["gamma=1"]["ufm_delay"][p], rel=1e-4)
    assert bridge["resample"]["closed_form_delay"]["sample"] == pytest.approx(10 ** -0.5)
    for name in ("drw", "reweight_then_erm", "ldam", "ldam_drw"):
        assert bridge[name]["closed_form_delay"] == {"sample": None, "class": None}
    # On the network too: resampling removes the delay, DRW keeps ERM's.
    assert bridge["resample"]["network_delay"][0] == pytest.approx(1.0, abs=0.5)
    assert bridge["drw"]["network_delay"][0] > 3.0

# ------------------------------------------------------------------------ recipes
# A small float64 setting: every recipe compiles into one program in a few seconds.
TINY = dict(steps=30, warmup=10, checkpoints=4, seeds=2, hidden=(16, 8), x64=True)
# From the code before recipes existed (commit 8f2b891, TINY, the four weightings alone):
# the training objective and balanced test accuracy at the end, per seed.
BEFORE_RECIPES = {
    "erm": ([0.7677905467560444, 1.2329707551469855], [0.374, 0.402]),
    "gamma=1/2": ([1.0933322127399436, 1.5333212386986699], [0.370, 0.378]),
    "gamma=1": ([1.443027313820151, 1.68021554750721], [0.436, 0.386]),
    "logit_adjusted": ([0.8754171880039042, 1.1564848693581602], [0.424, 0.302]),
}


@pytest.fixture(scope="module")
def tiny():
    """Every recipe in TINY, trained once: (config, data, train_all output)."""
    cfg = digits.DigitsConfig(**TINY)
    data = digits.load_data(cfg)
    return cfg, data, digits.train_all(cfg, data)


def test_recipes_include_the_weightings():
    assert list(digits.RECIPES)[:4] == list(digits.WEIGHTINGS)
    for name, (gamma, adjusted) in digits.WEIGHTINGS.items():
        recipe = digits.RECIPES[name]
        assert (recipe.gamma, recipe.logit_adjusted) == (gamma, adjusted)
        assert recipe.schedule == "constant" and not recipe.ldam and recipe.sampling is None
    assert digits.DigitsConfig().weightings == tuple(digits.RECIPES)


def test_recipe_arrays_are_what_their_names_say():
    cfg = digits.DigitsConfig(steps=200, warmup=50, reweight_from=1.0, reweight_until=2.5,
                              ldam_margin=0.8, ldam_scale=3.0, tau=0.7)
    counts = np.asarray(cfg.train_counts(), dtype=float)
    times = cfg.step_times()
    with jax.enable_x64(True):
        arrays = recipes.recipe_arrays(cfg, cfg.train_counts(), times, cfg.switch_times(),
                                       jnp.float64)
    names = list(cfg.weightings)
    row = {name: jax.tree.map(lambda a, w=w: np.asarray(a[w]), arrays)
           for w, name in enumerate(names)}
    erm = np.asarray(row["erm"].phase_weights[1])
    np.testing.assert_allclose(erm, 1.0)
    never = cfg.steps + 1
    # The first step whose time reaches the switch time (time = summed lr, warm-up incl.).
    start, stop = int(np.argmax(times >= 1.0)), int(np.argmax(times >= 2.5))
    assert times[start - 1] < 1.0 <= times[start] and times[stop - 1] < 2.5 <= times[stop]
    expected = {  # name: (gamma, switch steps, tau, LDAM, sampler)
        "erm": (0.0, [0, never], 0.0, False, "full_batch"),
        "gamma=1/2": (0.5, [0, never], 0.0, False, "full_batch"),
        "gamma=1": (1.0, [0, never], 0.0, False, "full_batch"),
        "logit_adjusted": (0.0, [0, never], 0.7, False, "full_batch"),
        "resample": (0.0, [0, never], 0.0, False, "class_balanced"),
        "drw": (1.0, [start, never], 0.0, False, "full_batch"),
        "reweight_then_erm": (1.0, [0, stop], 0.0, False, "full_batch"),
        "ldam": (0.0, [0, never], 0.0, True, "full_batch"),
        "ldam_drw": (1.0, [start, never], 0.0, True, "full_batch"),
    }
    assert sorted(expected) == sorted(names)
    samplers = ("full_batch",) + recipes.program_samplers(cfg, int(counts.sum()))
    assert samplers == ("full_batch", "class_balanced")
    ldam = 0.8 * (counts.min() / counts) ** 0.25
    for name, (gamma, switch, tau, uses_ldam, sampler) in expected.items():
        r = row[name]
        weighted = counts ** -gamma * counts.sum() / np.sum(counts ** (1 - gamma))
        np.testing.assert_allclose(r.phase_weights[1], weighted, rtol=1e-12, err_msg=name)
        np.testing.assert_array_equal(r.phase_weights[0], erm)  # ERM phases: erm's weights
        np.testing.assert_array_equal(r.phase_weights[2], erm)
        assert r.switch_steps.tolist() == switch, name
        assert float(r.tau) == tau, name
        np.testing.assert_allclose(r.margins, ldam if uses_ldam else 0.0, rtol=1e-12)
        assert float(r.scale) == (3.0 if uses_ldam else 1.0), name
        assert samplers[int(r.sampler)] == sampler, name
    assert ldam.max() == pytest.approx(0.8) and ldam[5] > ldam[0]
    # The phase in effect at each step: ERM before the switch, the weighting from it on.
    with jax.enable_x64(True):
        drw = jax.tree.map(lambda a: a[names.index("drw")], arrays)
        for step, phase in ((0, 0), (start - 1, 0), (start, 1), (cfg.steps, 1)):
            np.testing.assert_array_equal(drw.weights_at(step), drw.phase_weights[phase])
        then_erm = jax.tree.map(lambda a: a[names.index("reweight_then_erm")], arrays)
        for step, phase in ((0, 1), (stop - 1, 1), (stop, 2)):
            np.testing.assert_array_equal(then_erm.weights_at(step),
                                          then_erm.phase_weights[phase])
    # A switch time that is a step's time exactly switches at that step; beyond the last
    # step's time, never; at 0, from the start.
    assert recipes.first_step(times, times[37]) == 37
    assert recipes.first_step(times, times[-1] + 1e-9) == never
    assert recipes.first_step(times, 0.0) == 0
    # A global sampler applies to every recipe but resample; a uniform batch of n is full.
    n = int(counts.sum())
    assert recipes.run_samplers(cfg.replace(batch_size=64, sampling="sqrt"), n) == (
        ("sqrt",) * 4 + ("class_balanced",) + ("sqrt",) * 4)
    assert set(recipes.run_samplers(cfg.replace(batch_size=n), n)) == {
        "full_batch", "class_balanced"}
    assert set(recipes.run_samplers(cfg.replace(batch_size=n - 1), n)) == {
        "uniform", "class_balanced"}


def test_default_recipes_numbers_unchanged(tiny):
    """The four weightings give the numbers of the code before recipes, in the program
    that also trains every new recipe (schedules, sampler, LDAM), to float64 rounding."""
    cfg, _, out = tiny
    for name, (loss, accuracy) in BEFORE_RECIPES.items():
        w = cfg.weightings.index(name)
        np.testing.assert_allclose(out["loss"][w, :, -1], loss, rtol=1e-10, err_msg=name)
        np.testing.assert_allclose(out["test_balanced_accuracy"][w, :, -1], accuracy,
                                   atol=1e-12, err_msg=name)


def test_every_recipe_trains(tiny):
    cfg, _, out = tiny
    for w, name in enumerate(cfg.weightings):
        assert np.all(out["diverged_step"][w] < 0), name
        loss = out["train_per_class_loss"][w]  # [seed, checkpoint, digit], unweighted CE
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(out["loss"][w])), name
        # The training objective falls and the balanced training accuracy rises.
        assert np.all(out["loss"][w][:, -1] < out["loss"][w][:, 0]), name
        accuracy = out["train_per_class_accuracy"][w].mean(-1)  # [seed, checkpoint]
        assert np.all(accuracy[:, -1] > accuracy[:, 0] + 0.2), name


def test_switches_at_the_ends_equal_the_constant_recipes(tiny):
    """DRW with T0 = 0 is gamma = 1, with T0 after the end ERM; reweight-then-ERM with T1
    after the end is gamma = 1 (all four in one program, bitwise)."""
    cfg, data, _ = tiny
    names = ("erm", "gamma=1", "drw", "reweight_then_erm")
    end = cfg.end_time()
    for start, stop, same in ((0.0, 2 * end, (("drw", "gamma=1"), ("reweight_then_erm",
                                                                   "gamma=1"))),
                              (2 * end, 0.0, (("drw", "erm"), ("reweight_then_erm", "erm")))):
        out = digits.train_all(cfg.replace(weightings=names, reweight_from=start,
                                           reweight_until=stop), data)
        for a, b in same:
            for key in ("loss", "test_balanced_accuracy", "train_per_class_loss",
                        "classifier"):
                np.testing.assert_array_equal(out[key][names.index(a)],
                                              out[key][names.index(b)], err_msg=(a, b, key))
        # and the switched run differs from the other constant recipe
        assert not np.array_equal(out["loss"][2], out["loss"][1 if same[0][1] == "erm" else 0])


def test_ldam_margin_zero_is_cross_entropy_and_margins_follow_the_definition():
    cfg = digits.DigitsConfig()
    data = digits.load_data(cfg)
    rows = np.concatenate([np.flatnonzero(data.y_train == c)[: 2 + 3 * (c < 5)]
                           for c in range(10)])
    with jax.enable_x64(True):
        x = jnp.asarray(data.x_train[rows], jnp.float64)
        problem = digits.problem_of_labels(jnp.asarray(data.y_train[rows]), jnp.float64)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), digits.init_mlp(
            jax.random.PRNGKey(2), cfg.hidden, 1.0, jnp.float64))
        omega = jnp.linspace(0.5, 1.5, 10)
        plain = digits.objective_fn(x, problem, omega, 0.0, 0.0)
        zero = digits.objective_fn(x, problem, omega, 0.0, 0.0, jnp.zeros(10), 1.0)
        assert float(zero(params)) == float(plain(params))
        g0, g1 = jax.grad(zero)(params), jax.grad(plain)(params)
        jax.tree.map(np.testing.assert_array_equal, g0, g1)
        # With margins m and scale s: CE(s (z - m_y e_y)) by hand.
        margins = 0.5 * (np.arange(10) + 1.0) / 10
        got = digits.objective_fn(x, problem, omega, 0.0, 0.0, jnp.asarray(margins), 2.0)
        z = np.asarray(params["W"] @ digits.penultimate(params, x) + params["b"][:, None])
        labels = np.asarray(problem.labels)
        cols = np.arange(z.shape[1])
        adjusted = z.copy()
        adjusted[labels, cols] -= margins[labels]
        adjusted *= 2.0
        ce = np.log(np.exp(adjusted).sum(0)) - adjusted[labels, cols]
        expected = np.mean(np.asarray(omega)[labels] * ce)
        np.testing.assert_allclose(float(got(params)), expected, rtol=1e-12)
        assert float(got(params)) > float(plain(params))


def test_minibatches(tiny):
    """A uniform batch of n is the full batch; smaller batches train, differently."""
    cfg, data, full = tiny
    n = len(data.y_train)
    names = ("erm", "resample")
    same = digits.train_all(cfg.replace(weightings=names, batch_size=n), data)
    for w, name in enumerate(names):
        np.testing.assert_array_equal(same["loss"][w], full["loss"][cfg.weightings.index(name)])
    # The dynamic path too: the uniform sampler's factors for a batch of n are ones.
    problem = digits.problem_of_labels(jnp.asarray(data.y_train), jnp.float32)
    for step in (0, 1, 7):
        factors = recipes.minibatch_factors(("uniform",), 1, jax.random.PRNGKey(3), step,
                                            problem, n)
        np.testing.assert_array_equal(factors, 1.0)
    small = digits.train_all(cfg.replace(weightings=names, batch_size=64), data)
    for w, name in enumerate(names):
        loss = small["loss"][w]  # the full-batch objective at each checkpoint
        assert np.all(np.isfinite(loss)) and np.all(loss[:, -1] < loss[:, 0]), name
        assert not np.allclose(loss, full["loss"][cfg.weightings.index(name)]), name
    # A step's factors: |B| / n of the mass on each example drawn; in expectation over
    # class-balanced draws a class-c example has factor n / (k n_c).
    draw = jax.jit(lambda step: recipes.minibatch_factors(
        ("class_balanced",), 1, jax.random.PRNGKey(0), step, problem, n))
    factors = np.stack([draw(step) for step in range(60)])
    np.testing.assert_allclose(factors.sum(1), n, rtol=1e-5)
    counts = np.bincount(data.y_train)
    per_class = np.array([factors[:, data.y_train == c].mean() for c in range(10)])
    np.testing.assert_allclose(per_class, n / (10 * counts), rtol=0.15)


def test_ufm_runs_are_the_core_runs_of_their_recipes():
    """The bridge's vmapped UFM run of a recipe is the core's simulate() of
    ufm_recipe_config: same weights and switch, loss, sampler and batches."""
    from ssm_jax.simulate import simulate

    cfg = digits.DigitsConfig(weightings=("erm", "resample", "ldam_drw", "reweight_then_erm",
                                          "logit_adjusted"),
                              ufm_steps=120, ufm_lr=4.0, ufm_init_scale=0.1, ldam_margin=1.0,
                              x64=True)
    counts = cfg.train_counts()
    # Network time per UFM time, so that the UFM switches at 0.4567 of its 480 time units.
    scale = cfg.switch_times()[0] / (0.4567 * cfg.ufm_lr * cfg.ufm_steps)
    traj = digits.ufm_trajectories(cfg, counts, "class", time_scale=scale)
    for w, name in enumerate(cfg.weightings):
        ucfg = digits.ufm_recipe_config(cfg, counts, name, "class", time_scale=scale)
        core = simulate(ucfg).trajectory
        np.testing.assert_allclose(traj.own_output[w], core.own_output, rtol=1e-9,
                                   atol=1e-12, err_msg=name)
        if ucfg.loss == "ce":  # the core records its training loss per class (LDAM: LDAM)
            np.testing.assert_allclose(traj.per_class_loss[w], core.per_class_loss,
                                       rtol=1e-9, err_msg=name)
    start, stop = cfg.switch_times()
    drw = digits.ufm_recipe_config(cfg, counts, "ldam_drw", "class", scale)
    assert (drw.loss, drw.ldam_margin, drw.gamma, drw.reweight_from) == (
        "ldam", 1.0, 1.0, start / scale)
    assert 0 < drw.reweight_from < drw.lr * drw.steps  # the switch happens within the run
    then_erm = digits.ufm_recipe_config(cfg, counts, "reweight_then_erm", "class", scale)
    assert then_erm.reweight_until == stop / scale and then_erm.reweight_from is None
    resample = digits.ufm_recipe_config(cfg, counts, "resample", "class", scale)
    assert (resample.sampling, resample.batch_size, resample.gamma) == (
        "class_balanced", sum(counts), 0.0)
    # The switching runs differ from the constant ones (the switch does happen).
    assert not np.allclose(traj.per_class_loss[2], traj.per_class_loss[0])
