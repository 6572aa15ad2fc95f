"""The terminal phase with weight decay: the closed-form global minimiser of the weight-decayed
squared-loss UFM (theory.weight_decay_minimiser, deep.decay_*), against independent numerical
minimisation and long float64 gradient flows; and minority collapse of cross-entropy against
the imbalance ratio (experiments.terminal.minority_collapse_ratios)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from ssm_jax import Config, deep, simulate, theory
from ssm_jax.config import ConfigError
from ssm_jax.weights import power_law

PARAMETRIZATIONS = ("sample", "class", "whitened")
COUNTS = (16, 4, 1)


def normalised_power(counts, gamma):
    counts = np.asarray(counts, float)
    return np.asarray(power_law(jnp.asarray(counts), gamma), float)


# ------------------------------------------------------------------ the scalar problem


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_scalar_problem_against_numerical_minimisation(x64, depth):
    """The global minimiser of phi(z) = (z-1)^2/2 + (mu/p) z^p over z >= 0, against a dense
    grid refined by scipy's bounded scalar minimiser, at relative decays on both sides of
    mu* (where the minimiser jumps from (L-1)/L to 0) and of the spinodal."""
    p = 2 / (depth + 1)
    critical, spinodal = deep.critical_decay(depth), deep.spinodal_decay(depth)
    mus = np.array([0.0, 1e-4, 0.05, 0.2, 0.98 * critical, 1.02 * critical,
                    0.5 * (critical + spinodal), 1.1 * spinodal, 3.0])
    own = np.asarray(deep.decay_own_output(mus, depth))
    grid = np.linspace(0.0, 1.0, 20001)
    for mu, z in zip(mus, own, strict=True):
        phi = lambda x, mu=mu: 0.5 * (x - 1) ** 2 + mu / p * np.abs(x) ** p  # noqa: E731
        best = grid[np.argmin(phi(grid))]
        if best > 0:
            best = scipy.optimize.minimize_scalar(
                phi, bounds=(max(best - 1e-4, 1e-12), best + 1e-4), method="bounded",
                options={"xatol": 1e-13}).x
            best = best if phi(best) < phi(0.0) else 0.0
        assert abs(z - best) < 1e-7, (mu, z, best)
        np.testing.assert_allclose(deep.decay_objective(z, mu, depth), min(phi(best), 0.5),
                                   rtol=1e-12)
    # The jump: at mu* the branch (L-1)/L is stationary and ties with the origin, phi = 1/2.
    jump = deep.jump_output(depth)
    np.testing.assert_allclose((1 - jump) * jump ** (1 - p), critical, rtol=1e-14)
    np.testing.assert_allclose(deep.decay_objective(jump, critical, depth), 0.5, rtol=1e-14)
    if depth == 1:
        assert critical == spinodal == 1.0 and jump == 0.0
        np.testing.assert_allclose(own, np.maximum(0.0, 1.0 - mus), atol=1e-15)
    else:
        assert jump == pytest.approx(own[4], abs=0.02) and own[5] == 0.0  # a jump, not a slope
        # The spinodal is the maximum of (1 - z) z^(1-p), at z = (L-1)/(2L).
        np.testing.assert_allclose(spinodal, np.max((1 - grid) * grid ** (1 - p)), rtol=1e-7)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_stationary_points_and_implicit_derivative(x64, depth):
    """Both nonzero roots solve (1 - z) z^(1-p) = mu to rounding; the stable one is the
    global minimiser below mu*; d z / d mu (autodiff through the Newton polish) is the
    implicit derivative 1 / g'(z), checked by central differences."""
    p = 2 / (depth + 1)
    mus = jnp.asarray([1e-3, 0.1, 0.9 * deep.critical_decay(depth)])
    stable, unstable = deep.decay_stationary_outputs(mus, depth)
    np.testing.assert_allclose((1 - stable) * stable ** (1 - p), mus, rtol=1e-13)
    if depth > 1:
        np.testing.assert_allclose((1 - unstable) * unstable ** (1 - p), mus, rtol=1e-10)
        assert np.all(unstable < (depth - 1) / (2 * depth)) and np.all(stable > unstable)
    np.testing.assert_array_equal(stable, deep.decay_own_output(mus, depth))
    beyond = deep.decay_stationary_outputs(1.01 * deep.spinodal_decay(depth), depth)
    assert np.all(np.isnan(np.asarray(beyond)))
    slope = jax.vmap(jax.grad(lambda m: deep.decay_own_output(m, depth)))(mus)
    h = 1e-6
    central = (deep.decay_own_output(mus + h, depth) - deep.decay_own_output(mus - h, depth)) / (
        2 * h)
    np.testing.assert_allclose(slope, central, rtol=1e-6)


# ------------------------------------------------------------------ the closed form


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_closed_form_matches_the_rates_and_the_depth_one_formula(x64, parametrization):
    """The strength is rho_c / (L+1) of deep.mode_rates; at L = 1 it is sigma_c = s_c / n and
    z_c = max(0, 1 - lambda / sigma_c) with minimal objective
    sum_c (omega_c n_c / n)((1 - z_c)^2 / 2 + (lambda / sigma_c) z_c)."""
    counts = np.array(COUNTS, float)
    omega = normalised_power(counts, 0.25)
    for depth in (1, 2, 3):
        rates = np.asarray(deep.mode_rates(jnp.asarray(counts), jnp.asarray(omega),
                                           parametrization, depth))
        np.testing.assert_allclose(theory.decay_strength(counts, omega, parametrization, depth),
                                   rates / (depth + 1), rtol=1e-14)
    sigma = np.asarray(theory.singular_values(counts, omega, parametrization)) / counts.sum()
    decays = np.array([0.0, 0.03, 0.1, 0.5])
    m = theory.weight_decay_minimiser(counts, omega, decays, parametrization)
    z = np.maximum(0.0, 1.0 - decays[:, None] / sigma)
    np.testing.assert_allclose(m.own_output, z, atol=1e-15)
    np.testing.assert_allclose(m.threshold, sigma, rtol=1e-14)
    np.testing.assert_allclose(theory.collapse_threshold(counts, omega, parametrization), sigma,
                               rtol=1e-14)
    objective = np.sum(omega * counts / counts.sum()
                       * (0.5 * (1 - z) ** 2 + decays[:, None] / sigma * z), axis=1)
    np.testing.assert_allclose(m.objective, objective, rtol=1e-14)
    assert m.own_output.shape == (4, 3) and m.objective.shape == (4,)
    single = theory.weight_decay_minimiser(counts, omega, 0.1, parametrization)
    assert single.own_output.shape == (3,) and single.objective.shape == ()
    # A class of weight 0 has no loss: its own output is 0 (its threshold 0).
    zero = theory.weight_decay_minimiser(counts, [1.0, 0.0, 2.0], 0.01, parametrization, 2)
    assert zero.own_output[1] == 0.0 and zero.threshold[1] == 0.0


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_reweighting_moves_thresholds_and_the_equalising_exponent_equalises_them(
        x64, parametrization, depth):
    """With omega ∝ n^-gamma the majority/minority threshold ratio is R^e with e the
    learning-time delay exponent of deep.delay_exponent: the exponent that equalises the
    early rates (gamma = 1/2, 1, 1 at L = 1; L/(L+1), 1, 1 at depth L) equalises the
    collapse thresholds."""
    ratio = 10.0
    counts = np.array([50.0, 50.0, 5.0])
    for gamma in (0.0, 0.5, 1.0):
        thresholds = theory.collapse_threshold(counts, normalised_power(counts, gamma),
                                               parametrization, depth)
        np.testing.assert_allclose(thresholds[0] / thresholds[2],
                                   ratio ** deep.delay_exponent(parametrization, depth, gamma),
                                   rtol=1e-12)
    equalising = {"sample": depth / (depth + 1), "class": 1.0, "whitened": 1.0}[parametrization]
    if depth == 1:
        assert equalising == theory.equalising_exponent(parametrization)
    thresholds = theory.collapse_threshold(counts, normalised_power(counts, equalising),
                                           parametrization, depth)
    np.testing.assert_allclose(thresholds, thresholds[0], rtol=1e-12)
    # ERM collapses the minority first; the equalising weights collapse every class at once.
    erm = theory.collapse_threshold(counts, None, parametrization, depth)
    assert erm[2] < thresholds[2] and erm[0] > thresholds[0]


def per_example_objective(counts, omega, weight_decay, parametrization, depth, dim):
    """An independent numpy/jax implementation of the training objective over all factors
    (W, the inner layers, and H per example, per class or whitened G), flattened."""
    counts = np.asarray(counts)
    k, n = len(counts), int(counts.sum())
    labels = np.repeat(np.arange(k), counts)
    Y = np.eye(k)[:, labels]
    columns = k if parametrization == "class" else n
    shapes = [(k, dim)] + [(dim, dim)] * (depth - 1) + [(dim, columns)]
    sizes = [a * b for a, b in shapes]
    w = jnp.asarray(omega)[labels]

    def unpack(x):
        out, start = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            out.append(x[start:start + size].reshape(shape))
            start += size
        return out

    def outputs(x):
        factors = unpack(x)
        product = factors[0]
        for layer in factors[1:-1][::-1]:
            product = product @ layer
        feats = factors[-1]
        if parametrization == "class":
            feats = feats[:, labels]
        elif parametrization == "whitened":
            feats = feats / jnp.sqrt(w)
        return product @ feats

    def objective(x):
        loss = jnp.sum(w * 0.5 * jnp.sum((outputs(x) - Y) ** 2, axis=0)) / n
        return loss + weight_decay / 2 * jnp.sum(x ** 2)

    return jax.jit(jax.value_and_grad(objective)), jax.jit(outputs), sum(sizes), labels


@pytest.mark.parametrize("parametrization,gamma", [("sample", 1.0), ("class", 0.0)])
def test_global_minimiser_against_the_full_problem(x64, parametrization, gamma):
    """Depth 2 with a weighted loss in M (the cases not covered by von Neumann's trace
    inequality): no L-BFGS run from six random starts of the full per-example problem finds
    a lower objective than the closed form, and the best run reaches it and its outputs."""
    counts, depth, decay, dim = (6, 2, 1), 2, 0.05, 3
    omega = normalised_power(counts, gamma)
    closed = theory.weight_decay_minimiser(counts, omega, decay, parametrization, depth)
    value_and_grad, outputs, size, labels = per_example_objective(
        counts, omega, decay, parametrization, depth, dim)
    rng = np.random.default_rng(0)
    runs = []
    for scale in (0.5, 1.5):
        for _ in range(3):
            runs.append(scipy.optimize.minimize(
                lambda x: tuple(np.asarray(v) for v in value_and_grad(x)),
                scale * rng.standard_normal(size), jac=True, method="L-BFGS-B",
                options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-12, "maxcor": 30}))
    values = np.array([r.fun for r in runs])
    assert np.all(values > closed.objective - 1e-12), values - closed.objective
    best = runs[int(np.argmin(values))]
    assert best.fun - closed.objective < 1e-10
    Z = np.asarray(outputs(best.x))
    own = np.array([Z[c, labels == c].mean() for c in range(3)])
    np.testing.assert_allclose(own, closed.own_output, atol=1e-5)


def test_validation_names_the_bad_value():
    with pytest.raises(ConfigError, match="weight_decay=-0.1 is out of range"):
        theory.weight_decay_minimiser(COUNTS, None, -0.1)
    with pytest.raises(ConfigError, match="weight_decay=.*nan"):
        theory.weight_decay_minimiser(COUNTS, None, [0.1, np.nan])
    with pytest.raises(ConfigError, match=r"counts=\[16.0, 0.0\]"):
        theory.collapse_threshold((16, 0))
    with pytest.raises(ConfigError, match="omega has shape"):
        theory.collapse_threshold(COUNTS, [1.0, 2.0])
    with pytest.raises(ConfigError, match=r"omega=\[1.0, -1.0, 1.0\] is out of range"):
        theory.decay_strength(COUNTS, [1.0, -1.0, 1.0])
    with pytest.raises(ConfigError, match="depth=0 is out of range"):
        theory.weight_decay_minimiser(COUNTS, None, 0.1, depth=0)
    with pytest.raises(ConfigError, match="depth=0 is out of range"):
        deep.critical_decay(0)
    with pytest.raises(ConfigError, match="parametrization='deep'"):
        theory.collapse_threshold(COUNTS, None, "deep")


# ------------------------------------------------------------------ long gradient flows


FLOW = dict(loss="mse", counts=COUNTS, dim=4, x64=True, method="flow", rtol=1e-11, atol=1e-13,
            saves=2, weighting="power", gamma=0.25)
# Weight decays that put the smallest class past its threshold and keep every class at
# least 15% away from its own threshold (convergence rate 2 |sigma_c - lambda| at L = 1).
DEPTH_ONE = {"sample": (0.1, 1000.0), "class": (0.12, 600.0), "whitened": (0.08, 1000.0)}


def check_reaches(result, parametrization, depth=1, tolerance=1e-8):
    tr = result.trajectory
    decay = result.config.weight_decay
    closed = theory.weight_decay_minimiser(result.class_counts, tr.weights, decay,
                                           parametrization, depth)
    np.testing.assert_allclose(tr.own_output[-1], closed.own_output, rtol=0, atol=tolerance)
    np.testing.assert_allclose(tr.loss[-1], closed.objective, rtol=1e-10)
    return closed


@pytest.mark.parametrize("parametrization,init", [("sample", "gaussian"), ("class", "aligned"),
                                                   ("whitened", "aligned")])
def test_long_flow_reaches_the_closed_form_minimiser(parametrization, init):
    """Depth 1, power weights gamma = 1/4: the own outputs at t1 equal the closed form to
    1e-8 (one class collapsed to 0), the objective its minimum, every other output is 0 and
    the features of a class are one vector. From the aligned init (own output 0.5) and, as
    depth 1 has no spurious local minimum, from a gaussian init (std 0.3) too."""
    decay, t1 = DEPTH_ONE[parametrization]
    result = simulate(Config(**FLOW, parametrization=parametrization, weight_decay=decay,
                             t1=t1, init=init, init_scale=0.5 if init == "aligned" else 0.3,
                             keep_params=True))
    closed = check_reaches(result, parametrization)
    assert closed.own_output[2] == 0.0 and np.all(closed.own_output[:2] > 0.1)
    assert closed.relative_decay[2] > 1.15  # past its threshold
    params = {key: value[-1] for key, value in result.trajectory.params.items()}
    labels = np.repeat(np.arange(3), COUNTS)
    H = params["H"][:, labels] if parametrization == "class" else params["H"]
    Z = params["W"] @ H
    if parametrization == "whitened":
        Z = Z / np.sqrt(result.trajectory.weights[labels])
    if parametrization != "class":
        for c in range(3):  # features collapse to one per class
            block = H[:, labels == c]
            np.testing.assert_allclose(block, np.broadcast_to(block[:, :1], block.shape),
                                       atol=1e-8)
    np.testing.assert_allclose(Z, np.diag(closed.own_output)[:, labels], atol=1e-8)


def test_depth_two_flows_and_their_basins():
    """Depth 2, sample, gamma = 1/4. At lambda = 0.05 (relative decays 0.19, 0.33 below
    mu* = 0.397 and 0.59 above the spinodal 0.472) the aligned flow from z0 = 0.6, above
    every unstable root, reaches the global minimiser to 1e-8. At lambda = 0.06 the middle
    class (mu = 0.398, between mu* and the spinodal) stays on its nonzero local minimum
    (aligned_limit), which is not the global minimiser. An aligned init below the unstable
    roots, and a small gaussian init, fall into the local minimum at the origin."""
    depth, z0 = 2, 0.6
    cfg = Config(**FLOW, weight_decay=0.05, t1=2000.0, init="aligned", init_scale=z0,
                 depth=depth)
    closed = check_reaches(simulate(cfg), "sample", depth)
    assert np.all(closed.unstable_output[:2] < z0) and closed.own_output[2] == 0.0
    assert np.all(closed.relative_decay[:2] < deep.critical_decay(depth))
    assert closed.relative_decay[2] > deep.spinodal_decay(depth)

    metastable = simulate(cfg.replace(weight_decay=0.06))
    tr = metastable.trajectory
    m = theory.weight_decay_minimiser(COUNTS, tr.weights, 0.06, "sample", depth)
    assert deep.critical_decay(depth) < m.relative_decay[1] < deep.spinodal_decay(depth)
    np.testing.assert_allclose(tr.own_output[-1], m.aligned_limit(z0), atol=1e-8)
    assert m.own_output[1] == 0.0 and tr.own_output[-1, 1] > 0.45
    assert tr.loss[-1] > m.objective + 1e-4  # a local, not the global, minimum

    # Below every unstable root (same compiled run, z0 = 1e-3) and from a small gaussian init
    # the flow falls into the local minimum at the origin, although the minimiser is not 0.
    assert np.all(closed.unstable_output[:2] > 1e-3) and np.all(closed.own_output[:2] > 0.5)
    below = simulate(cfg.replace(init_scale=1e-3))
    assert np.all(below.trajectory.own_output[-1] < 1e-12)
    small = simulate(cfg.replace(init="gaussian", init_scale=0.01, t1=500.0, rtol=1e-8,
                                 atol=1e-10))
    assert np.all(np.abs(small.trajectory.own_output[-1]) < 1e-8)


# ------------------------------------------------------------------ the command line


# ------------------------------------------------------------------ cross-entropy


def test_minority_collapse_against_the_ratio():
    """Cross-entropy, 2 + 2 classes, lambda = 1e-2, converged (the cosines at half the run
    agree to 1e-3): ERM's minority classifier cosine rises with the ratio, past the
    vanishing-decay (SELI) value at R = 20; power weights gamma = 1 keep it lower at every
    R > 1 (at R = 1 both runs are the same ETF, -1/3). In the class parametrisation gamma =
    1 makes the loss weights omega_c n_c equal: the problem is balanced and stays at the ETF
    at every ratio, while ERM's minority cosine rises there too."""
    from ssm_jax.experiments.terminal import minority_collapse_ratios

    cfg = Config(loss="ce", k_major=2, k_minor=2, n_major=20, dim=4, init_scale=0.1, lr=2.0,
                 steps=800, weight_decay=1e-2)
    ratios = [1.0, 4.0, 20.0]
    both = {par: minority_collapse_ratios(cfg.replace(parametrization=par), ratios, 1.0)
            for par in ("sample", "class")}
    for collapse in both.values():
        for run in collapse["runs"].values():
            np.testing.assert_allclose(run["minority_cosine"], run["minority_cosine_midway"],
                                       atol=1e-3)
    sample = both["sample"]
    erm, reweighted = (sample["runs"][k]["minority_cosine"] for k in ("erm", "gamma=1"))
    assert np.all(np.diff(erm) > 0.1), erm
    assert erm[-1] > sample["limit_minority_cosine"][-1] + 0.1, erm  # beyond SELI's 0.24
    assert np.all(reweighted[1:] < erm[1:] - 0.15), (reweighted, erm)
    np.testing.assert_allclose([erm[0], reweighted[0]], -1 / 3, atol=1e-5)
    np.testing.assert_allclose(sample["limit_minority_cosine"][0], -1 / 3, rtol=1e-12)
    assert sample["runs"]["erm"]["class_counts"].tolist() == [[20, 20, 20, 20], [20, 20, 5, 5],
                                                              [20, 20, 1, 1]]
    by_class = both["class"]["runs"]
    np.testing.assert_allclose(by_class["gamma=1"]["minority_cosine"], -1 / 3, atol=1e-5)
    assert np.all(np.diff(by_class["erm"]["minority_cosine"]) > 0.05)


def test_geometry_command_terminal_and_collapse_ratios(tmp_path):
    """One `ssm-jax geometry --loss mse` call with `--weight-decays` and `--collapse-ratios`
    (counts 4, 4, 1, 1 from the step profile). terminal.json: the final own outputs of ERM
    and the reweighted runs (gradient descent, lr 1, t = 600: its fixed points are the
    flow's) against the closed form, the per-class thresholds, and every cross-entropy key
    kept. collapse.json: the minority cosines per ratio and run. Bad input exits 2 and
    writes nothing."""
    from ssm_jax import geometry
    from ssm_jax.cli import main

    out = tmp_path / "geo"
    args = ["geometry", "--loss", "mse", "--k-major", "2", "--k-minor", "2", "--n-major", "4",
            "--ratio", "4", "--dim", "4", "--init", "aligned", "--init-scale", "0.5", "--lr",
            "1", "--steps", "600", "--x64", "--saves", "3"]
    assert main(args + ["--weight-decays", "0.05,0.16", "--collapse-ratios", "4,1",
                        "--out", str(out)]) == 0
    for name in ("terminal.png", "terminal.json", "collapse.png", "collapse.json"):
        assert (out / name).exists(), name
    terminal = json.loads((out / "terminal.json").read_text())
    assert terminal["loss"] == "mse" and terminal["weight_decays"] == [0.16, 0.05]
    assert terminal["parametrization"] == "sample" and terminal["depth"] == 1
    assert set(terminal["runs"]) == {"erm", "gamma=1"}
    counts = (4, 4, 1, 1)
    for run in terminal["runs"].values():
        assert set(geometry.GEOMETRY_KEYS) <= set(run) and "norm_ratio" in run
        closed = theory.weight_decay_minimiser(counts, np.asarray(run["weights"]), [0.16, 0.05])
        np.testing.assert_allclose(run["collapse_threshold"], closed.threshold, rtol=1e-12)
        np.testing.assert_allclose(run["spinodal_threshold"], closed.threshold, rtol=1e-12)
        np.testing.assert_allclose(run["closed_form_own_output"], closed.own_output,
                                   rtol=1e-12)
        np.testing.assert_allclose(run["own_output"], closed.own_output, atol=1e-8)
        np.testing.assert_allclose(run["aligned_limit_own_output"], closed.own_output,
                                   atol=1e-15)
        assert max(run["own_output_gap"]) < 1e-8
        np.testing.assert_allclose(run["objective"], run["closed_form_objective"], rtol=1e-10)
    erm, reweighted = (terminal["runs"][k] for k in ("erm", "gamma=1"))
    # Reweighting raises the minorities' thresholds and lowers the majorities': at 0.16 ERM
    # has lost the minorities, the reweighted run keeps them and loses the majorities.
    assert reweighted["collapse_threshold"][2] > erm["collapse_threshold"][2]
    assert reweighted["collapse_threshold"][0] < erm["collapse_threshold"][0]
    assert erm["closed_form_own_output"][0][2:] == [0.0, 0.0]
    assert reweighted["closed_form_own_output"][0][:2] == [0.0, 0.0]
    assert min(reweighted["closed_form_own_output"][0][2:]) > 0.3

    collapse = json.loads((out / "collapse.json").read_text())
    assert collapse["ratios"] == [1.0, 4.0] and collapse["loss"] == "mse"
    assert collapse["weight_decay"] == 0.0 and collapse["k_minor"] == 2
    assert set(collapse["runs"]) == {"erm", "gamma=1"}
    assert len(collapse["limit_minority_cosine"]) == 2
    for run in collapse["runs"].values():
        for key in ("minority_cosine", "minority_feature_cosine_centred",
                    "minority_cosine_midway"):
            assert len(run[key]) == 2, key
        assert run["class_counts"] == [[4, 4, 4, 4], [4, 4, 1, 1]]
    # Bad input is refused before anything is written (exit 2).
    bad = tmp_path / "bad"
    assert main(args + ["--collapse-ratios", "0.5", "--out", str(bad)]) == 2
    assert main(args + ["--collapse-ratios", "100", "--out", str(bad)]) == 2
    assert main(["geometry", "--counts", "6,6,2,2", "--collapse-ratios", "2",
                 "--out", str(bad)]) == 2
    assert main(args + ["--weight-decays", "0,0.1", "--out", str(bad)]) == 2
    assert main(args + ["--weight-decays", "0.1", "--bias", "true", "--out", str(bad)]) == 2
    assert not bad.exists()


def test_geometry_comparisons_accept_any_weighting_of_the_run(tmp_path):
    """The minority-collapse comparison reruns the configuration under power weights; the
    run's own explicit weights no longer apply there and are dropped (Config.adapted),
    instead of refusing the command after geometry.json was written."""
    from ssm_jax.cli import main

    out = tmp_path / "geo"
    assert main(["geometry", "--loss", "ce", "--counts", "12,12,2,2", "--dim", "6",
                 "--weighting", "explicit", "--weights", "1,1,3,3", "--steps", "20",
                 "--saves", "3", "--lr", "1", "--out", str(out)]) == 0
    assert (out / "geometry.json").exists() and (out / "minority.json").exists()
