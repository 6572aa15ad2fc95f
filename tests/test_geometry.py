"""Neural-collapse geometry: hand-built ETF / SELI configurations, minority collapse under
weight decay, and the terminal phase (ERM and reweighted CE both approach SELI)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, geometry, numeric_of, problem_of, spec_of
from ssm_jax.problem import make_problem
from ssm_jax.simulate import trajectory_jit

metrics_jit = jax.jit(geometry.metrics)


def etf_configuration(k, dim, scale=2.0):
    """Class means = a simplex ETF in R^dim, W = scale * means^T."""
    means = jnp.zeros((dim, k)).at[:k, :].set(jnp.eye(k) - 1.0 / k)
    return scale * means.T, means


def test_simplex_etf_has_zero_collapse_measures(x64):
    k, counts = 4, (3, 3, 3, 3)
    problem = make_problem(counts)
    W, means = etf_configuration(k, 6)
    g = metrics_jit(W, means[:, problem.labels], problem)
    for key in ("nc1", "nc2_etf_features", "nc2_etf_classifier", "nc3", "nc2_seli_features",
                "nc2_seli_classifier", "nc2_seli_outputs"):
        assert abs(float(g[key])) < 1e-7, (key, g[key])
    off = ~np.eye(k, dtype=bool)
    np.testing.assert_allclose(np.asarray(g["classifier_cosine"])[off], -1 / (k - 1), atol=1e-14)
    np.testing.assert_allclose(np.asarray(g["feature_cosine"])[off], -1 / (k - 1), atol=1e-14)
    np.testing.assert_allclose(g["classifier_norm"], 2 * np.sqrt((k - 1) / k), rtol=1e-14)
    assert np.isnan(g["minority_cosine"])  # balanced: no minority classes


def test_seli_configuration(x64):
    counts = (6, 6, 2, 2)
    W, H, labels = geometry.seli_configuration(counts, dim=7)
    problem = make_problem(counts)
    np.testing.assert_array_equal(labels, problem.labels)
    zhat = geometry.etf_gram(4) @ problem.onehot()
    np.testing.assert_allclose(W @ H, zhat, atol=1e-13)
    g = metrics_jit(W, H, problem)
    for key in ("nc1", "nc2_seli_features", "nc2_seli_classifier", "nc2_seli_outputs"):
        assert abs(float(g[key])) < 1e-6, (key, g[key])
    assert float(g["nc2_etf_classifier"]) > 0.05  # imbalanced SELI is not an ETF
    w_norms, h_norms = geometry.seli_norms(jnp.asarray(counts, float))
    np.testing.assert_allclose(g["classifier_norm"], w_norms, rtol=1e-12)
    np.testing.assert_allclose(jnp.linalg.norm(H, axis=0), h_norms[labels], rtol=1e-12)
    assert w_norms[0] > w_norms[2] and h_norms[0] < h_norms[2]  # SELI's norm asymmetry
    # Equal counts: SELI is the simplex ETF.
    W, H, _ = geometry.seli_configuration((3, 3, 3), dim=3)
    assert float(metrics_jit(W, H, make_problem((3, 3, 3)))["nc2_etf_classifier"]) < 1e-7


def test_known_values(x64):
    # An orthonormal classifier frame: distance to the ETF is sqrt(2 - 2 sqrt((k-1)/k)).
    k = 5
    problem = make_problem((2,) * k)
    g = metrics_jit(jnp.eye(k), jnp.eye(k)[:, problem.labels], problem)
    np.testing.assert_allclose(g["nc2_etf_classifier"], np.sqrt(2 - 2 * np.sqrt((k - 1) / k)),
                               rtol=1e-12)
    assert float(g["nc2_etf_features"]) < 1e-7  # centred orthonormal means are an ETF
    # NC1 = a^2 / 2 for means +-e1 and within-class spread +-a e1 (spread along e2 is in
    # the null space of Sigma_B and does not count).
    a = 0.3
    problem = make_problem((2, 2))
    feats = jnp.array([[1 + a, 1 - a, -1 + a, -1 - a], [0.5, -0.5, 0.2, -0.2]])
    g = metrics_jit(jnp.eye(2), feats, problem)
    np.testing.assert_allclose(g["nc1"], a ** 2 / 2, rtol=1e-12)
    # Minority cosine: identical minority rows give 1.
    W = jnp.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    assert float(geometry.minority_cosine(W, jnp.array([5.0, 5, 1, 1]))) == pytest.approx(1.0)


def run_ce(counts, weight_decays, gammas, steps, lr=2.0, dim=6):
    """CE, sample parametrisation, one vmapped call over (weight decay, gamma) pairs."""
    cfg = Config(loss="ce", counts=counts, profile="counts", dim=dim, weighting="power",
                 init_scale=0.1, lr=lr, steps=steps, saves=2, geometry=True)
    spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
    axes = jax.tree.map(lambda _: None, numeric)._replace(weight_decay=0, gamma=0)
    batch = numeric._replace(weight_decay=jnp.asarray(weight_decays, numeric.lr.dtype),
                             gamma=jnp.asarray(gammas, numeric.lr.dtype))
    run = jax.vmap(lambda n: trajectory_jit(spec, problem, n, jax.random.PRNGKey(0)),
                   in_axes=(axes,))
    return jax.tree.map(lambda a: np.asarray(a)[:, -1], run(batch).geometry)


def test_minority_collapse_grows_with_ratio():
    """Fang et al. (2021): under fixed weight decay the minority classifiers align as the
    ratio grows (3 + 3 classes, ratios 1.5, 5, 30; one vmapped call over padded problems)."""
    cfg = Config(loss="ce", counts=(30,) * 6, profile="counts", dim=6, init_scale=0.1, lr=2.0,
                 steps=1500, saves=2, geometry=True, weight_decay=1e-2)
    spec, numeric = spec_of(cfg), numeric_of(cfg)
    problems = [make_problem((30,) * 3 + (max(1, round(30 / r)),) * 3, 180) for r in (1.5, 5, 30)]
    batch = jax.tree.map(lambda *a: jnp.stack(a), *problems)
    run = jax.vmap(lambda p: trajectory_jit(spec, p, numeric, jax.random.PRNGKey(0)))
    cosines = np.asarray(run(batch).geometry["minority_cosine"])[:, -1]
    assert cosines[0] < cosines[1] < cosines[2], cosines
    assert cosines[0] < 0 and cosines[2] > 0.6, cosines


def test_terminal_phase_erm_and_reweighted_approach_seli():
    """Vanishing weight decay: ERM (gamma 0) and inverse-frequency weights (gamma 1) approach
    the same SELI geometry; at large decay they differ and the minorities collapse."""
    g = run_ce((20, 20, 2, 2), [1e-1, 1e-3, 1e-1, 1e-3], [0.0, 0.0, 1.0, 1.0], 2500)
    seli = g["nc2_seli_classifier"]
    assert seli[1] < seli[0] and seli[3] < seli[2], seli
    assert seli[1] < 0.15 and seli[3] < 0.15, seli
    assert np.all(g["nc2_etf_classifier"][[1, 3]] > 0.3)  # SELI, not the ETF
    gap_strong = np.abs(g["classifier_cosine"][0] - g["classifier_cosine"][2]).max()
    gap_weak = np.abs(g["classifier_cosine"][1] - g["classifier_cosine"][3]).max()
    assert gap_weak < 0.5 * gap_strong, (gap_weak, gap_strong)


def test_geometry_command(tmp_path):
    import json

    from ssm_jax.cli import main

    out = tmp_path / "geo"
    args = ["geometry", "--loss", "ce", "--counts", "6,6,2,2", "--dim", "5", "--init-scale",
            "0.1", "--lr", "1", "--steps", "20", "--saves", "3", "--out", str(out)]
    assert main(args + ["--weight-decays", "0.1,0.01"]) == 0
    for name in ("geometry.png", "geometry.json", "terminal.png", "terminal.json"):
        assert (out / name).exists(), name
    terminal = json.loads((out / "terminal.json").read_text())
    assert terminal["weight_decays"] == [0.1, 0.01] and terminal["loss"] == "ce"
    assert set(terminal["runs"]) == {"erm", "gamma=1"}
    assert len(terminal["runs"]["erm"]["nc2_seli_classifier"]) == 2
    recorded = json.loads((out / "geometry.json").read_text())["geometry"]
    assert set(recorded) == set(geometry.GEOMETRY_KEYS)
    assert np.shape(recorded["classifier_cosine"]) == (3, 4, 4) and len(recorded["nc1"]) == 3
    assert main(args + ["--out", str(tmp_path / "bad"), "--weight-decays", "0,0.1"]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("counts", [(6, 6, 2, 2), (10, 5, 3, 1, 1)])
def test_geometry_seli_agrees_with_theory_seli(x64, counts):
    """The jittable SELI targets used as training metrics (geometry) and the float64
    reference of the theory module are two computations of one geometry: they must agree."""
    from ssm_jax import theory

    reference = theory.seli(counts)
    w_norms, h_norms = geometry.seli_norms(jnp.asarray(counts, float))
    scale_w = reference.classifier_norms[0] / w_norms[0]
    scale_h = reference.feature_norms[0] / h_norms[0]
    np.testing.assert_allclose(np.asarray(w_norms) * scale_w, reference.classifier_norms,
                               rtol=1e-10)
    np.testing.assert_allclose(np.asarray(h_norms) * scale_h, reference.feature_norms,
                               rtol=1e-10)
    gram = np.asarray(geometry.seli_classifier_gram(jnp.asarray(counts, float)))
    np.testing.assert_allclose(gram * scale_w**2, reference.classifier_gram, atol=1e-10)
    # And the explicit configuration realises the theory's Gram matrices.
    W, H, labels = geometry.seli_configuration(counts, dim=len(counts) + 1)
    np.testing.assert_allclose(np.asarray(W @ W.T), reference.classifier_gram, atol=1e-10)
    first = np.searchsorted(np.asarray(labels), np.arange(len(counts)))
    class_features = np.asarray(H)[:, first]
    np.testing.assert_allclose(class_features.T @ class_features, reference.feature_gram,
                               atol=1e-10)


# An independent numpy reimplementation of every geometry key, written from the published
# definitions (docs/geometry.md) rather than from the library's k x k shortcuts: it forms
# the n x n per-example Grams, loops over class pairs and examples, and takes the SVD of Zhat.

def reference_metrics(W, F, labels, k, bias=None) -> dict:
    """Every key of ``geometry.GEOMETRY_KEYS`` for classifier W (k, d), per-example
    features F (d, n), labels (n,) and an optional bias (k,), in plain numpy."""
    W, F, labels = np.asarray(W, float), np.asarray(F, float), np.asarray(labels)
    n = F.shape[1]
    Y = np.eye(k)[:, labels]
    counts = Y.sum(axis=1)
    mu = np.stack([F[:, labels == c].mean(axis=1) for c in range(k)], axis=1)
    mu_G = mu.mean(axis=1, keepdims=True)  # unweighted mean of the class means
    M = mu - mu_G
    P = np.eye(k) - np.ones((k, k)) / k

    def dist(a, b):
        return np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))

    def cos(rows):
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit @ unit.T

    # NC1 (Papyan et al. 2020)
    sigma_w = sum(np.outer(F[:, i] - mu[:, labels[i]], F[:, i] - mu[:, labels[i]])
                  for i in range(n)) / n
    sigma_b = sum(np.outer(M[:, c], M[:, c]) for c in range(k)) / k
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / k
    # CDNV (Galanti et al. 2022)
    V = [np.mean(np.sum((F[:, labels == c] - mu[:, [c]]) ** 2, axis=0)) for c in range(k)]
    cdnv = np.mean([(V[c] + V[e]) / 2 / np.sum((mu[:, c] - mu[:, e]) ** 2)
                    for c in range(k) for e in range(c + 1, k)])
    # SELI (Thrampoulidis et al. 2022): SVD of the simplex-encoded labels.
    U, s, Vt = np.linalg.svd(P @ Y, full_matrices=False)
    U, s, Vt = U[:, : k - 1], s[: k - 1], Vt[: k - 1]  # P Y has rank k - 1
    logits = W @ F + (0.0 if bias is None else np.asarray(bias, float)[:, None])
    # NC4: linear (no bias) vs nearest-class-mean predictions.
    nearest = np.array([np.argmin(np.linalg.norm(mu - F[:, [i]], axis=0)) for i in range(n)])
    agreement = np.mean(np.argmax(W @ F, axis=0) == nearest)
    minor = np.flatnonzero(counts < counts.max())
    pairs = [(c, e) for c in minor for e in minor if c != e]
    minority = np.mean([cos(W)[c, e] for c, e in pairs]) if pairs else np.nan
    return {
        "nc1": nc1,
        "nc2_etf_features": dist(M.T @ M, P),
        "nc2_etf_classifier": dist(W @ W.T, P),
        "nc2_seli_features": dist(F.T @ F, Vt.T @ np.diag(s) @ Vt),
        "nc2_seli_classifier": dist(W @ W.T, U @ np.diag(s) @ U.T),
        "nc2_seli_outputs": dist(logits, P @ Y),
        "nc3": dist(W, M.T),
        "feature_norm": np.linalg.norm(mu, axis=0),
        "classifier_norm": np.linalg.norm(W, axis=1),
        "feature_cosine": cos(mu.T),
        "classifier_cosine": cos(W),
        "minority_cosine": minority,
        "feature_norm_centred": np.linalg.norm(M, axis=0),
        "feature_cosine_centred": cos(M.T),
        "nc3_self_duality": np.linalg.norm(W @ M / np.linalg.norm(W @ M) - P / np.sqrt(k - 1)),
        "nc1_cdnv": cdnv,
        "nc4_ncc_agreement": agreement,
    }


def assert_matches_reference(g, expected, atol=1e-10):
    assert set(g) == set(expected) == set(geometry.GEOMETRY_KEYS)
    for key in geometry.GEOMETRY_KEYS:
        np.testing.assert_allclose(np.asarray(g[key]), expected[key], rtol=0, atol=atol,
                                   equal_nan=True, err_msg=key)


def hand_built(name):
    """(W, F, counts): the four hand-built configurations of issue 20, with within-class
    spread so that NC1 and CDNV are not trivially 0."""
    rng = np.random.default_rng(0)
    if name == "seli":
        counts = (6, 6, 2, 2)
        W, F, _ = geometry.seli_configuration(counts, dim=7)
        return np.asarray(W), np.asarray(F), counts
    k, d, counts = 4, 7, (5, 5, 3, 3)
    labels = np.repeat(np.arange(k), counts)
    etf = np.zeros((d, k))
    etf[:k] = np.eye(k) - 1.0 / k
    if name == "rank_k_minus_2":
        # Centred means in a plane (rank k - 2 = 2): Sigma_B needs its pseudo-inverse.
        etf = np.zeros((d, k))
        etf[:2] = [[1.0, -0.5, 0.3, -0.8], [0.2, 0.9, -1.1, 0.0]]
    offset = 1.3 * np.eye(d)[5][:, None] if name == "shifted" else 0.0
    means = etf + offset
    F = means[:, labels] + 0.05 * rng.standard_normal((d, len(labels)))
    W = 2.0 * etf.T + (0.0 if name == "etf" else 0.1 * rng.standard_normal((k, d)))
    return W, F, counts


@pytest.mark.parametrize("name", ["etf", "seli", "shifted", "rank_k_minus_2"])
def test_metrics_match_numpy_reference_on_hand_built(x64, name):
    W, F, counts = hand_built(name)
    problem = make_problem(counts)
    g = metrics_jit(jnp.asarray(W), jnp.asarray(F), problem)
    assert_matches_reference(g, reference_metrics(W, F, problem.labels, len(counts)))


def test_shifted_etf_centred_and_uncentred_cosines(x64):
    """A simplex ETF shifted by a common offset: the centred cosines stay -1/(k-1), the
    uncentred ones (the SELI convention) move; Papyan's NC3 and Kothapalli's agree at 0."""
    k, counts = 4, (3, 3, 3, 3)
    problem = make_problem(counts)
    W, means = etf_configuration(k, 6)
    means = means.at[4].set(1.0)  # offset e_5, orthogonal to the ETF, of norm 1
    g = metrics_jit(W, means[:, problem.labels], problem)
    off = ~np.eye(k, dtype=bool)
    np.testing.assert_allclose(np.asarray(g["feature_cosine_centred"])[off], -1 / (k - 1),
                               atol=1e-14)
    # cos = (-1/k + 1) / ((k-1)/k + 1) = (k - 1) / (2k - 1) for the unit offset.
    np.testing.assert_allclose(np.asarray(g["feature_cosine"])[off], (k - 1) / (2 * k - 1),
                               atol=1e-14)
    np.testing.assert_allclose(g["feature_norm_centred"], np.sqrt((k - 1) / k), rtol=1e-14)
    assert float(g["nc3"]) < 1e-7 and float(g["nc3_self_duality"]) < 1e-7


def test_seli_is_self_dual_in_kothapalli_form_only(x64):
    """At SELI the centred logits of the class means are a simplex (NC3 self-duality 0);
    Papyan's NC3 is not 0 when the counts differ (W is not proportional to M^T)."""
    W, H, _ = geometry.seli_configuration((6, 6, 2, 2), dim=7)
    g = metrics_jit(W, H, make_problem((6, 6, 2, 2)))
    assert float(g["nc3_self_duality"]) < 1e-12
    assert float(g["nc3"]) > 0.1
    assert float(g["nc4_ncc_agreement"]) == 1.0 and float(g["nc1_cdnv"]) < 1e-12


@pytest.mark.parametrize("options", [
    dict(loss="mse"),
    dict(loss="ce", weight_decay=1e-2),
    dict(loss="ce", bias=True),
    dict(loss="mse", bias=True, weight_decay=1e-3, depth=2),
    dict(loss="ce", depth=2, weight_decay=1e-2, weighting="power", gamma=1.0),
], ids=["mse", "ce-wd", "ce-bias", "mse-bias-depth2", "ce-depth2-reweighted"])
def test_metrics_match_numpy_reference_on_simulated_runs(x64, options):
    """Every save point of a short run, recomputed from its kept parameters."""
    from ssm_jax import simulate

    cfg = Config(counts=(8, 8, 3, 2), profile="counts", dim=6, init_scale=0.5, lr=0.5,
                 steps=60, saves=4, geometry=True, keep_params=True, x64=True, **options)
    result = simulate(cfg)
    params = result.trajectory.params
    labels = np.asarray(problem_of(cfg).labels)
    for s in range(cfg.saves):
        F = np.asarray(params["H"][s])
        for layer in np.asarray(params["V"][s]) if "V" in params else ():
            F = layer @ F
        bias = np.asarray(params["b"][s]) if "b" in params else None
        expected = reference_metrics(params["W"][s], F, labels, 4, bias)
        assert_matches_reference({key: v[s] for key, v in result.trajectory.geometry.items()},
                                 expected)


def test_bias_enters_the_seli_output_distance_only(x64):
    """With a bias, nc2_seli_outputs measures the logits W F + b 1^T; nothing else moves."""
    W, H, _ = geometry.seli_configuration((6, 6, 2, 2), dim=7)
    problem = make_problem((6, 6, 2, 2))
    bias = jnp.array([0.3, -0.1, 0.2, -0.4])
    plain, biased = metrics_jit(W, H, problem), metrics_jit(W, H, problem, bias)
    assert float(plain["nc2_seli_outputs"]) < 1e-12 < float(biased["nc2_seli_outputs"])
    for key in set(geometry.GEOMETRY_KEYS) - {"nc2_seli_outputs"}:
        np.testing.assert_array_equal(plain[key], biased[key], err_msg=key)


def test_every_key_is_documented():
    """The docs' table and the netCDF attributes come from one declaration per key."""
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "geometry.md").read_text()
    assert tuple(geometry.DEFINITIONS) == geometry.GEOMETRY_KEYS
    for key, definition in geometry.DEFINITIONS.items():
        assert f"`{key}`" in docs, key
        assert all(definition), key


def test_geometry_command_minority_collapse(tmp_path):
    """With two or more minority classes `ssm-jax geometry` also writes the minority
    collapse over training, ERM against reweighting (Fang et al. 2021)."""
    import json

    from ssm_jax.cli import main

    out = tmp_path / "geo"
    assert main(["geometry", "--loss", "ce", "--counts", "6,6,2,2", "--dim", "5", "--lr", "1",
                 "--steps", "20", "--saves", "3", "--weight-decay", "0.01",
                 "--out", str(out)]) == 0
    collapse = json.loads((out / "minority.json").read_text())
    assert (out / "minority.png").exists() and collapse["weight_decay"] == 0.01
    assert set(collapse["runs"]) == {"erm", "gamma=1"}
    run = collapse["runs"]["erm"]
    assert len(run["t"]) == len(run["minority_cosine"]) == 3
    assert np.shape(run["feature_cosine_centred"]) == (3, 4, 4)
    centred = np.asarray(run["feature_cosine_centred"])[:, 2, 3]  # the two minorities
    np.testing.assert_allclose(run["minority_feature_cosine_centred"], centred, rtol=1e-6)
