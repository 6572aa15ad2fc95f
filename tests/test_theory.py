"""ssm_jax.theory: label spectra, rates, SELI geometry, against independent computations.

(The flow-vs-closed-form checks live in tests/test_flow.py.)
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ssm_jax import model, theory
from ssm_jax.config import ConfigError
from ssm_jax.problem import make_problem

PARAMETRIZATIONS = ("sample", "class", "whitened")
COUNTS = np.array([30.0, 12.0, 5.0, 5.0])
WEIGHTINGS = {
    "erm": np.ones(4),
    "sqrt": COUNTS**-0.5 * COUNTS.sum() / (COUNTS * COUNTS**-0.5).sum(),
    "explicit": np.array([0.5, 2.0, 1.0, 3.0]) * COUNTS.sum() / (COUNTS @ [0.5, 2, 1, 3]),
}


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_spectrum_closed_form_matches_svd(x64, parametrization, weighting):
    omega = WEIGHTINGS[weighting]
    matrix = np.asarray(theory.label_matrix(COUNTS, omega, parametrization))
    values = np.linalg.svd(matrix, compute_uv=False)
    closed = np.asarray(theory.singular_values(COUNTS, omega, parametrization))
    np.testing.assert_allclose(np.sort(values), np.sort(closed), rtol=1e-12)
    spectrum = theory.label_spectrum(COUNTS, omega, parametrization)
    np.testing.assert_allclose(spectrum.values, np.sort(closed)[::-1], rtol=1e-12)
    # Left vectors are the classes' unit vectors; right vectors the class indicators.
    np.testing.assert_allclose(np.sort(np.abs(spectrum.left), axis=0)[-1], 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(spectrum.left) @ np.diag(spectrum.values) @ np.asarray(spectrum.right).T,
        matrix, atol=1e-12)
    if parametrization != "class":
        # Each right vector is the normalised indicator of its class's examples.
        labels = np.repeat(np.arange(4), COUNTS.astype(int))
        for j in range(len(spectrum.values)):
            c = int(np.argmax(np.abs(np.asarray(spectrum.left[:, j]))))
            indicator = (labels == c) / np.sqrt(COUNTS[c])
            np.testing.assert_allclose(np.abs(np.asarray(spectrum.right[:, j])), indicator,
                                       atol=1e-12)


def test_spectrum_shapes_and_scalings(x64):
    assert theory.label_matrix(COUNTS, None, "sample").shape == (4, 52)
    assert theory.label_matrix(COUNTS, None, "class").shape == (4, 4)
    # The mode of class c of Y Omega is omega_c sqrt(n_c); of Y Omega^1/2, sqrt(omega_c n_c).
    np.testing.assert_allclose(theory.singular_values([4.0, 9.0], [2.0, 0.5], "sample"),
                               [4.0, 1.5])
    np.testing.assert_allclose(theory.singular_values([4.0, 9.0], [2.0, 0.5], "whitened"),
                               [np.sqrt(8.0), np.sqrt(4.5)])
    np.testing.assert_allclose(theory.singular_values([4.0, 9.0], [2.0, 0.5], "class"),
                               [8.0, 4.5])
    with pytest.raises(ConfigError, match="parametrization='deep'"):
        theory.rate(COUNTS, None, None, "deep")


def test_centred_spectrum(x64):
    """Centred (simplex-encoded) label matrix: P Y Omega. Against eigenvalues of its Gram
    P D Omega^2 P, and for equal counts c (ERM): k - 1 singular values sqrt(c)."""
    omega = WEIGHTINGS["explicit"]
    spectrum = theory.label_spectrum(COUNTS, omega, "sample", centred=True)
    k = len(COUNTS)
    P = np.eye(k) - 1.0 / k
    gram = P @ np.diag(COUNTS * omega**2) @ P
    eig = np.sort(np.linalg.eigvalsh(gram))[::-1][: k - 1]
    np.testing.assert_allclose(np.asarray(spectrum.values) ** 2, eig, rtol=1e-10)
    assert len(spectrum.values) == k - 1  # the all-ones direction is removed
    equal = theory.label_spectrum([7.0] * 5, None, "sample", centred=True)
    np.testing.assert_allclose(equal.values, np.sqrt(7.0), rtol=1e-12)
    assert len(equal.values) == 4
    # Centred columns sum to zero (simplex encoding e_y - 1/k).
    Z = theory.simplex_encoded_labels([3, 2])
    np.testing.assert_allclose(np.asarray(Z).sum(axis=0), 0.0, atol=1e-15)
    np.testing.assert_allclose(Z[:, 0], [0.5, -0.5])


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_rate_is_two_over_n_times_the_singular_value(x64, parametrization):
    omega = WEIGHTINGS["sqrt"]
    r = theory.rate(COUNTS, omega, None, parametrization)
    np.testing.assert_allclose(r, 2.0 / COUNTS.sum() * np.asarray(
        theory.singular_values(COUNTS, omega, parametrization)), rtol=1e-14)
    np.testing.assert_allclose(theory.rate(COUNTS, omega, 10.0, parametrization),
                               np.asarray(r) * COUNTS.sum() / 10.0, rtol=1e-14)


def test_logistic_trajectory_and_half_time(x64):
    r, z0 = np.array([0.3, 0.05]), 0.02
    t = np.linspace(0, 200, 9)[:, None]
    z = np.asarray(theory.trajectory(t, r, z0))
    np.testing.assert_allclose(z[0], z0)
    np.testing.assert_allclose(z, np.exp(r * t) / (np.exp(r * t) - 1 + 1 / z0), rtol=1e-12)
    # It solves dz/dt = r z (1 - z): check with a central difference.
    dz = (np.asarray(theory.trajectory(t + 1e-5, r, z0))
          - np.asarray(theory.trajectory(t - 1e-5, r, z0))) / 2e-5
    np.testing.assert_allclose(dz, r * z * (1 - z), rtol=1e-7, atol=1e-10)
    for level in (0.5, 0.9):
        th = np.asarray(theory.half_time(r, z0, level))
        np.testing.assert_allclose(theory.trajectory(th, r, z0), level, rtol=1e-12)
    np.testing.assert_allclose(theory.half_time(r, z0), np.log(1 / z0 - 1) / r, rtol=1e-14)
    assert float(theory.half_time(0.1, 0.7)) == 0.0
    # Far in time the stable form neither overflows nor loses the limit 1.
    assert float(theory.trajectory(1e6, 1.0, 1e-3)) == 1.0


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_equalising_exponent(x64, parametrization):
    """With w_c ∝ n_c^-gamma, gamma = equalising_exponent gives equal rates; an independent
    bisection on gamma for the two-class rate ratio finds the same exponent."""
    gamma = theory.equalising_exponent(parametrization)
    rates = np.asarray(theory.rate(COUNTS, theory.equalising_weights(COUNTS, parametrization),
                                   None, parametrization))
    np.testing.assert_allclose(rates, rates[0], rtol=1e-12)
    counts = np.array([100.0, 10.0])

    def log_ratio(g):
        w = counts**-g
        r = np.asarray(theory.rate(counts, w, None, parametrization))
        return np.log(r[0] / r[1])

    low, high = -1.0, 3.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if log_ratio(mid) > 0 else (low, mid)
    assert abs(low - gamma) < 1e-9
    assert theory.EQUALISING_EXPONENT == {"sample": 0.5, "class": 1.0, "whitened": 1.0}


def test_random_init_prediction_ingredients(x64):
    """Effective z0 = d eps^2 / (2 m_c); the ratio of half times tends to the rate ratio as
    the init shrinks (the log correction vanishes relative to the log itself)."""
    eps, d = 1e-3, 16
    z = np.asarray(theory.effective_z0(COUNTS, None, "sample", eps, d))
    np.testing.assert_allclose(z, d * eps**2 / (2 * np.sqrt(COUNTS)))
    np.testing.assert_allclose(theory.effective_z0(COUNTS, None, "class", eps, d),
                               d * eps**2 / 2)
    omega = WEIGHTINGS["explicit"]
    np.testing.assert_allclose(theory.effective_z0(COUNTS, omega, "whitened", eps, d),
                               d * eps**2 / (2 * np.sqrt(omega * COUNTS)))
    r = np.asarray(theory.rate(COUNTS, None, None, "sample"))
    tiny = np.asarray(theory.learning_time_ratios(COUNTS, None, "sample", 1e-150, d))
    np.testing.assert_allclose(tiny, r[0] / r, rtol=0.01)
    ratios = np.asarray(theory.learning_time_ratios(COUNTS, None, "sample", eps, d, 0))
    assert ratios[0] == 1.0 and np.all(ratios[2:] < r[0] / r[2:])  # minorities start higher


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_aligned_init_definition(x64, parametrization, weighting):
    """Row c of W = alpha_c u_c, class-c features beta_c u_c (orthonormal u_c), balanced
    (||W_c|| = ||class-c block of H or G||) and every class-c own output equals z0."""
    problem = make_problem((30, 12, 5, 5), n_pad=60, dtype=jnp.float64)
    omega = jnp.asarray(WEIGHTINGS[weighting])
    z0 = 0.03
    params = model.init_aligned(jax.random.PRNGKey(1), problem, 6, z0, omega,
                                parametrization, False, jnp.float64)
    W = np.asarray(params["W"])
    directions = W / np.linalg.norm(W, axis=1, keepdims=True)
    np.testing.assert_allclose(directions @ directions.T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(theory.class_balance(params, problem.labels, 4, parametrization),
                               0.0, atol=1e-14)
    outputs = np.asarray(model.outputs(params, model.features(params, problem, omega,
                                                               parametrization)))
    onehot = np.asarray(problem.onehot())
    real = np.asarray(problem.mask) > 0
    np.testing.assert_allclose((outputs * onehot).sum(0)[real], z0, rtol=1e-12)
    np.testing.assert_allclose((outputs * (1 - onehot))[:, real], 0.0, atol=1e-15)
    if parametrization != "class":  # (class features are shared: padding is only masked)
        np.testing.assert_allclose(outputs[:, ~real], 0.0, atol=1e-15)  # padding stays empty


# ----------------------------------------------------------------------------- SELI


SELI_CASES = {
    "k2-ratio3": (6, 2),
    "k4-ratio10": (20, 20, 2, 2),
    "k6-ratio5": (10, 10, 10, 2, 2, 2),
    "longtail5": (16, 8, 4, 2, 1),
}


def sqrtm_psd(matrix):
    """Principal square root by scipy's Schur method (the SEL Grams are singular PSD)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(matrix)
    return np.real(root)


@pytest.mark.parametrize("counts", list(SELI_CASES.values()), ids=list(SELI_CASES))
def test_seli_matches_full_matrix_square_roots(x64, counts):
    """Independent computation: W W^T = (Z Z^T)^{1/2} and H^T H = (Z^T Z)^{1/2} of the full
    n x n SEL matrix by scipy's Schur square root (theory.seli uses k x k eigenvectors)."""
    k, n = len(counts), sum(counts)
    labels = np.repeat(np.arange(k), counts)
    Z = np.eye(k)[:, labels] - 1.0 / k
    np.testing.assert_allclose(theory.simplex_encoded_labels(counts), Z, atol=1e-15)
    classifier = sqrtm_psd(Z @ Z.T)
    features = sqrtm_psd(Z.T @ Z)
    first = np.searchsorted(labels, np.arange(k))  # one example of each class
    geometry = theory.seli(counts)
    np.testing.assert_allclose(geometry.classifier_gram, classifier, atol=1e-6)
    np.testing.assert_allclose(geometry.feature_gram, features[np.ix_(first, first)], atol=1e-6)
    # SELI features collapse: every example of a class has the same feature.
    np.testing.assert_allclose(features, features[np.ix_(first[labels], first[labels])],
                               atol=1e-6)
    np.testing.assert_allclose(np.sort(geometry.singular_values),
                               np.sort(np.linalg.svd(Z, compute_uv=False)[: k - 1]), rtol=1e-10)
    # Norms and angles are read off the Grams.
    np.testing.assert_allclose(geometry.classifier_norms, np.sqrt(np.diag(classifier)), rtol=1e-6)
    cos = classifier / np.outer(np.sqrt(np.diag(classifier)), np.sqrt(np.diag(classifier)))
    np.testing.assert_allclose(geometry.classifier_cosines, cos, atol=1e-6)
    assert n == len(labels)


@pytest.mark.parametrize("counts", list(SELI_CASES.values()), ids=list(SELI_CASES))
def test_seli_realisation_solves_the_uf_svm(x64, counts):
    """W H = Z, every margin (w_y - w_c)^T h_i equals 1, and ||W||^2 = ||H||^2 = ||Z||_*."""
    k = len(counts)
    params = theory.seli_realisation(counts, dim=k + 2)
    W, H = np.asarray(params["W"]), np.asarray(params["H"])
    Z = np.asarray(theory.simplex_encoded_labels(counts))
    np.testing.assert_allclose(W @ H, Z, atol=1e-12)
    labels = np.repeat(np.arange(k), counts)
    logits = W @ H
    margins = logits[labels, np.arange(len(labels))][None, :] - logits
    mask = np.arange(k)[:, None] != labels[None, :]
    np.testing.assert_allclose(margins[mask], 1.0, rtol=1e-12)
    nuclear = np.linalg.svd(Z, compute_uv=False).sum()
    np.testing.assert_allclose([np.sum(W**2), np.sum(H**2)], nuclear, rtol=1e-12)
    geometry = theory.seli(counts)
    np.testing.assert_allclose(W @ W.T, geometry.classifier_gram, atol=1e-12)
    distance = theory.gram_distance(W, H[:, np.searchsorted(labels, np.arange(k))], counts)
    assert float(distance["classifier"]) < 1e-12 and float(distance["feature"]) < 1e-12
    if k > 2:
        with pytest.raises(ConfigError, match="dim=1"):
            theory.seli_realisation(counts, dim=1)


def test_seli_reduces_to_the_etf_and_the_two_class_closed_form(x64):
    k, c = 5, 8
    etf = theory.seli([c] * k)
    off = ~np.eye(k, dtype=bool)
    np.testing.assert_allclose(np.asarray(etf.classifier_cosines)[off], -1 / (k - 1), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(etf.feature_cosines)[off], -1 / (k - 1), rtol=1e-12)
    # P D P = c P for equal counts: W W^T = sqrt(c) P, class features (1/sqrt(c)) P.
    np.testing.assert_allclose(etf.classifier_norms ** 2, np.sqrt(c) * (1 - 1 / k), rtol=1e-12)
    np.testing.assert_allclose(etf.feature_norms ** 2, (1 - 1 / k) / np.sqrt(c), rtol=1e-12)
    # Two classes: W W^T = sqrt(n/2) v v^T with v = (1, -1)/sqrt 2, whatever the imbalance.
    n1, n2 = 30.0, 3.0
    two = theory.seli([n1, n2])
    s = np.sqrt((n1 + n2) / 2)
    np.testing.assert_allclose(two.classifier_gram, s / 2 * np.array([[1, -1], [-1, 1]]),
                               atol=1e-12)
    np.testing.assert_allclose(two.feature_gram, 1 / (2 * s) * np.array([[1, -1], [-1, 1]]),
                               atol=1e-12)


def test_step_summary(x64):
    balanced = theory.step_summary(3, 3, 1.0)
    assert balanced["classifier_norm_ratio"] == pytest.approx(1.0, rel=1e-10)
    assert balanced["feature_norm_ratio"] == pytest.approx(1.0, rel=1e-10)
    etf_angle = np.degrees(np.arccos(-1 / 5))
    for key in ("classifier_angle_major", "classifier_angle_minor", "classifier_angle_mixed",
                "feature_angle_major", "feature_angle_mixed"):
        assert balanced[key] == pytest.approx(etf_angle, rel=1e-10)
    imbalanced = theory.step_summary(3, 3, 10.0)
    geometry = theory.seli([10.0] * 3 + [1.0] * 3)
    assert imbalanced["classifier_norm_ratio"] == pytest.approx(
        float(geometry.classifier_norms[0] / geometry.classifier_norms[3]), rel=1e-12)
    assert imbalanced["classifier_norm_ratio"] > 1.0  # majority classifiers are longer
    assert imbalanced["feature_norm_ratio"] < 1.0  # and majority features shorter
    with pytest.raises(ConfigError, match="ratio=0.5"):
        theory.step_summary(3, 3, 0.5)
    # Scale invariance: only the ratio matters.
    assert theory.step_summary(3, 3, 10.0, n_minor=7) == pytest.approx(imbalanced, rel=1e-9)
