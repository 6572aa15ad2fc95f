r"""Neural-collapse geometry of the UFM: NC1-NC4, the simplex ETF and the SELI geometry.

All functions work on the features the classifier sees, ``F = V_{L-1}...V_1 H`` (d x n,
:func:`ssm_jax.model.penultimate`; per-example, padded columns masked out), the classifier
W (k x d), the bias b (k,) when the model has one, and the class counts n_c of the real
examples. Notation:

* class means :math:`\mu_c = \frac1{n_c}\sum_{y_i=c} f_i` (per example within a class);
* the **global mean** :math:`\mu_G = \frac1k\sum_c \mu_c`, the *unweighted* mean of the class
  means (Papyan et al. 2020; with imbalance it is not the mean feature
  :math:`\frac1n\sum_i f_i`);
* centred means :math:`M = [\mu_c - \mu_G]_c` (d x k), :math:`P = I_k - \frac1k 1 1^\top`;
* the simplex-encoded labels :math:`\hat Z = P Y` (k x n), with SVD :math:`U\Lambda V^\top`.

Two conventions coexist, and every key says which it uses (:data:`DEFINITIONS`):
*centred* quantities (Papyan et al. 2020, and the neural-collapse literature's default) and
*uncentred* ones (the SELI geometry of Thrampoulidis et al. 2022, a statement about the UFM
without bias, where the origin is meaningful). On a simplex ETF shifted by a common offset
the centred cosines stay :math:`-1/(k-1)` while the uncentred ones do not.

* **NC1** (Papyan et al. 2020): :math:`\operatorname{tr}(\Sigma_W \Sigma_B^+)/k` with
  :math:`\Sigma_W = \frac1n\sum_i (f_i - \mu_{y_i})(f_i - \mu_{y_i})^\top` (per example) and
  :math:`\Sigma_B = \frac1k M M^\top` (per class). ``nc1_cdnv`` (Galanti et al. 2022) is the
  class-distance normalised variance, the mean over real class pairs :math:`c < c'` of
  :math:`\frac{(V_c + V_{c'})/2}{\lVert\mu_c - \mu_{c'}\rVert^2}` with
  :math:`V_c = \frac1{n_c}\sum_{y_i=c}\lVert f_i - \mu_c\rVert^2`.
* **NC2, simplex ETF**: :math:`\lVert G/\lVert G\rVert_F - P/\lVert P\rVert_F\rVert_F` for
  the centred-mean Gram :math:`G = M^\top M` (``nc2_etf_features``) and for
  :math:`G = W W^\top` (``nc2_etf_classifier``).
* **NC2, SELI** (Thrampoulidis et al. 2022, "Imbalance trouble"): the SELI geometry is
  :math:`W W^\top \propto U\Lambda U^\top`, :math:`F^\top F \propto V\Lambda V^\top`,
  :math:`Z \propto \hat Z` for the logits :math:`Z = W F + b 1^\top` (``b = 0`` without a
  bias: the logits the loss sees, see below). ``nc2_seli_classifier``,
  ``nc2_seli_features``, ``nc2_seli_outputs`` are the normalised Frobenius distances of
  those three matrices to their SELI targets; nothing is centred. With equal counts SELI is
  the simplex ETF. It is the limit, as weight decay vanishes, of cross-entropy training in
  the ``sample`` parametrisation, whatever the class weights (the max-margin solution).
* **NC3** (self-duality), two forms: Papyan's ``nc3``,
  :math:`\lVert W/\lVert W\rVert_F - M^\top/\lVert M\rVert_F\rVert_F`, which is 0 only when
  the classifier rows are the centred means up to one scale (the balanced ETF), and
  Kothapalli's ``nc3_self_duality``,
  :math:`\lVert W M/\lVert W M\rVert_F - P/\sqrt{k-1}\rVert_F`, which is 0 whenever the
  centred logits of the class means are a simplex, as at SELI and at every squared-loss
  interpolant.
* **NC4** (Papyan et al. 2020): ``nc4_ncc_agreement``, the fraction of real examples whose
  linear prediction :math:`\arg\max_c (W f_i)_c` (no bias) equals their nearest class mean
  :math:`\arg\min_c \lVert f_i - \mu_c\rVert`: per-class agreements averaged with weights
  :math:`n_c/n`.
* Norms and angles: ``feature_norm[c] = ||mu_c||`` and ``feature_cosine`` (uncentred, the
  SELI convention), ``feature_norm_centred[c] = ||mu_c - mu_G||`` and
  ``feature_cosine_centred`` (centred, Papyan's), ``classifier_norm[c] = ||w_c||`` and
  ``classifier_cosine``.
* ``minority_cosine``: mean cosine between distinct minority classifier rows (minority =
  count below the largest; NaN with fewer than two). Fang et al. (2021) "minority
  collapse": under fixed weight decay it tends to 1 as the imbalance ratio grows.

**The bias.** With ``bias=True`` the logits are :math:`W F + b 1^\top`, and SELI is a
statement about the logits (for cross-entropy the max-margin direction of the outputs the
loss sees), so ``nc2_seli_outputs`` measures them, bias included. Every other measure is a
property of W and F and leaves b out; NC4 compares the prediction *without* bias with the
nearest class mean, as Papyan et al. define it.

Every distance is computed through k x k, d x d, k x n or d x n matrices, never n x n.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import model
from .metrics import majority_mask, minority_mask
from .problem import Problem


def etf_gram(k: int, dtype=None) -> Float[Array, "k k"]:
    """Gram matrix of the simplex ETF up to scale: ``I - 1 1^T / k``."""
    return jnp.eye(k, dtype=dtype) - jnp.full((k, k), 1.0 / k, dtype=dtype)


def normalised_distance(a: Array, b: Array) -> Float[Array, ""]:
    """``|| a / ||a||_F - b / ||b||_F ||_F`` (in [0, 2])."""
    return jnp.linalg.norm(a / jnp.linalg.norm(a) - b / jnp.linalg.norm(b))


def _distance_from_inner(inner, norm_a, norm_b):
    """Normalised distance from <a, b>, ||a||, ||b||: sqrt(2 - 2 <a,b> / (||a|| ||b||))."""
    return jnp.sqrt(jnp.maximum(2.0 - 2.0 * inner / (norm_a * norm_b), 0.0))


def _sym_power(matrix, power):
    """``matrix^power`` of a symmetric PSD matrix on its range (pseudo-inverse for power < 0)."""
    values, vectors = jnp.linalg.eigh(matrix)
    tol = matrix.shape[0] * jnp.finfo(matrix.dtype).eps * jnp.max(jnp.abs(values))
    safe = jnp.where(values > tol, values, 1.0)
    scaled = jnp.where(values > tol, safe ** power, 0.0)
    return (vectors * scaled[None, :]) @ vectors.T


def sel_gram(counts: Float[Array, " k"]) -> Float[Array, "k k"]:
    """``Zhat Zhat^T = P diag(n) P`` of the simplex-encoded labels ``Zhat = P Y``."""
    k = counts.shape[-1]
    projector = etf_gram(k, counts.dtype)
    return projector @ jnp.diag(counts) @ projector


def seli_classifier_gram(counts: Float[Array, " k"]) -> Float[Array, "k k"]:
    """SELI classifier Gram ``U Lambda U^T = (P N P)^{1/2}`` (up to scale)."""
    return _sym_power(sel_gram(counts), 0.5)


def seli_norms(counts: Float[Array, " k"]) -> tuple[Array, Array]:
    """SELI classifier-row norms ``||w_c||`` and per-example feature norms ``||h_i||`` of class c
    (both up to one common scale each): sqrt of the diagonals of ``(PNP)^{1/2}`` and of
    ``P (PNP)^{+1/2} P``."""
    counts = jnp.asarray(counts)
    inverse_root = _sym_power(sel_gram(counts), -0.5)
    return jnp.sqrt(jnp.diag(seli_classifier_gram(counts))), jnp.sqrt(jnp.diag(inverse_root))


def seli_norm_ratio(counts) -> float:
    """Mean majority over mean minority SELI classifier norm, ``||w_maj|| / ||w_min||`` (1
    without a minority): the terminal-phase value the trained ratio is compared with."""
    w_norms = np.asarray(seli_norms(jnp.asarray(counts, float))[0])
    minor = minority_mask(np.asarray(counts))
    if not minor.any():
        return 1.0
    return float(w_norms[majority_mask(np.asarray(counts))].mean() / w_norms[minor].mean())


def seli_configuration(counts, dim: int | None = None, dtype=None) -> tuple[Array, Array, Array]:
    """A SELI configuration ``(W (k, d), H (d, n), labels (n,))``: ``W = U Lambda^{1/2}``,
    ``H = Lambda^{1/2} V^T`` embedded in the first k coordinates of R^d, so that
    ``W H = Zhat`` exactly. With equal counts it is a simplex ETF."""
    counts = tuple(int(c) for c in counts)
    k = len(counts)
    dim = k if dim is None else dim
    dtype = dtype or jnp.asarray(0.0).dtype
    labels = jnp.repeat(jnp.arange(k), jnp.asarray(counts), total_repeat_length=sum(counts))
    onehot = (jnp.arange(k)[:, None] == labels[None, :]).astype(dtype)
    zhat = etf_gram(k, dtype) @ onehot
    u, s, vt = jnp.linalg.svd(zhat, full_matrices=False)  # s has k entries, the last 0
    root = jnp.sqrt(s)
    W = jnp.zeros((k, dim), dtype).at[:, :k].set(u * root[None, :])
    H = jnp.zeros((dim, labels.shape[0]), dtype).at[:k, :].set(root[:, None] * vt)
    return W, H, labels


def class_means(feats: Float[Array, "d n"], problem: Problem) -> Float[Array, "d k"]:
    """Class means mu_c of the real examples' features (columns)."""
    onehot = problem.onehot()
    return (feats @ onehot.T) / jnp.maximum(onehot.sum(axis=1), 1.0)[None, :]


def _cosines(rows: Float[Array, "k d"]) -> Float[Array, "k k"]:
    norms = jnp.linalg.norm(rows, axis=1)
    unit = rows / jnp.where(norms > 0, norms, 1.0)[:, None]
    return unit @ unit.T


def minority_mean(matrix: Float[ArrayLike, "*batch k k"], counts
                  ) -> Float[ArrayLike, "*batch"]:
    """Mean of ``matrix[..., c, c']`` over distinct minority classes c != c' (NaN with fewer
    than two minorities): of the cosines of W, of the class means or of the centred means;
    leading axes (e.g. save points) are kept."""
    matrix = jnp.asarray(matrix)
    minor = minority_mask(counts).astype(matrix.dtype)
    pairs = minor[:, None] * minor[None, :] * (1.0 - jnp.eye(matrix.shape[-1], dtype=matrix.dtype))
    total = jnp.sum(pairs)
    mean = jnp.sum(pairs * matrix, axis=(-2, -1)) / jnp.maximum(total, 1.0)
    return jnp.where(total > 0, mean, jnp.nan)


def minority_cosine(W: Float[Array, "k d"], counts: Float[Array, " k"]) -> Float[Array, ""]:
    """Mean cosine between distinct minority classifier rows (NaN with fewer than two)."""
    return minority_mean(_cosines(W), counts)


def _seli_feature_distance(feats: Float[Array, "d n"], zhat: Float[Array, "k n"],
                           sel: Float[Array, "k k"]) -> Float[Array, ""]:
    r"""``|| F^T F / ||F^T F|| - Zhat^T S Zhat / ||Zhat^T S Zhat|| ||_F`` with
    :math:`S = (\hat Z \hat Z^\top)^{+1/2}` (so :math:`\hat Z^\top S \hat Z = V\Lambda V^\top`),
    without an n x n matrix. Both Grams are :math:`A^\top D A` for the stacked
    :math:`A = [F/\sqrt{a};\ S^{1/2}\hat Z/\sqrt{b}]` ((d + k) x n, a and b the two
    norms) and :math:`D = \mathrm{diag}(I_d, -I_k)`; with the thin QR :math:`A^\top = QR`
    the distance is :math:`\lVert R D R^\top\rVert_F`. QR, not the Gram :math:`A A^\top`,
    so that an exact SELI configuration reads ~eps rather than ~sqrt(eps)."""
    d = feats.shape[0]
    norm_features = jnp.linalg.norm(feats @ feats.T)  # ||F^T F||_F = ||F F^T||_F
    norm_target = jnp.sqrt(jnp.trace(sel))  # ||V Lambda V^T||_F^2 = tr(Lambda^2) = tr(sel)
    stacked = jnp.concatenate([feats / jnp.sqrt(norm_features),
                               _sym_power(sel, -0.25) @ zhat / jnp.sqrt(norm_target)])
    r = jnp.linalg.qr(stacked.T, mode="r")
    sign = jnp.concatenate([jnp.ones(d, feats.dtype), -jnp.ones(zhat.shape[0], feats.dtype)])
    return jnp.linalg.norm((r * sign[None, :]) @ r.T)


def cdnv(feats: Float[Array, "d n"], means: Float[Array, "d k"], problem: Problem
         ) -> Float[Array, ""]:
    r"""Class-distance normalised variance (Galanti, György & Hutter 2022): the mean over
    pairs of real classes :math:`c < c'` of
    :math:`\frac{(V_c + V_{c'})/2}{\lVert\mu_c - \mu_{c'}\rVert^2}`, with
    :math:`V_c = \frac1{n_c}\sum_{y_i = c}\lVert f_i - \mu_c\rVert^2`. ``feats`` has its
    padded columns zeroed; a class without examples (a padded class of a sweep over k)
    enters no pair. Infinite when two class means coincide."""
    onehot = problem.onehot().astype(feats.dtype)
    counts = onehot.sum(axis=1)
    spread = jnp.sum((feats - means @ onehot) ** 2, axis=0)  # ||f_i - mu_{y_i}||^2, 0 if padded
    variance = (onehot @ spread) / jnp.maximum(counts, 1.0)
    real = (counts > 0).astype(feats.dtype)
    pairs = jnp.triu(real[:, None] * real[None, :], k=1)
    # Differences, not ||mu_c||^2 + ||mu_c'||^2 - 2 mu_c^T mu_c', which loses digits when
    # the means are far from the origin relative to their separation (d x k x k is small).
    distance = jnp.sum((means[:, :, None] - means[:, None, :]) ** 2, axis=0)
    ratio = 0.5 * (variance[:, None] + variance[None, :]) / jnp.where(pairs > 0, distance, 1.0)
    return jnp.sum(pairs * ratio) / jnp.maximum(jnp.sum(pairs), 1.0)


def ncc_agreement(W: Float[Array, "k d"], feats: Float[Array, "d n"],
                  means: Float[Array, "d k"], problem: Problem) -> Float[Array, ""]:
    r"""NC4 (Papyan et al. 2020): the fraction of real examples whose linear prediction
    :math:`\arg\max_c (W f_i)_c` (no bias) equals the nearest class mean
    :math:`\arg\min_c \lVert f_i - \mu_c\rVert` (the per-class agreements averaged with
    weights n_c / n)."""
    linear = jnp.argmax(W @ feats, axis=0)
    # ||f - mu_c||^2 = ||f||^2 - 2 mu_c^T f + ||mu_c||^2; the first term is common to all c.
    nearest = jnp.argmin(jnp.sum(means**2, axis=0)[:, None] - 2.0 * means.T @ feats, axis=0)
    mask = problem.mask.astype(W.dtype)
    return jnp.sum(mask * (linear == nearest)) / jnp.sum(mask)


def metrics(W: Float[Array, "k d"], feats: Float[Array, "d n"], problem: Problem,
            bias: Float[Array, " k"] | None = None) -> dict:
    """Every geometry measure of the module docstring (:data:`DEFINITIONS`) for classifier W,
    penultimate features ``feats`` (d x n_pad; padded columns ignored) and, for a model with
    one, the bias (which enters ``nc2_seli_outputs`` only). jit/vmap friendly."""
    k = problem.num_classes
    dtype = W.dtype
    onehot = problem.onehot().astype(dtype)
    counts = onehot.sum(axis=1)
    mask = problem.mask.astype(dtype)
    n = jnp.sum(mask)
    feats = feats * mask[None, :]
    means = class_means(feats, problem)  # d x k
    # Centred by the unweighted mean of the class means (Papyan et al.), not the mean feature.
    centred = means - jnp.mean(means, axis=1, keepdims=True)
    # NC1
    within = (feats - means @ onehot) * mask[None, :]
    sigma_w = within @ within.T / n
    sigma_b = centred @ centred.T / k
    nc1 = jnp.trace(sigma_w @ jnp.linalg.pinv(sigma_b, hermitian=True)) / k
    # NC2 (ETF)
    projector = etf_gram(k, dtype)
    nc2_etf_features = normalised_distance(centred.T @ centred, projector)
    classifier_gram = W @ W.T
    nc2_etf_classifier = normalised_distance(classifier_gram, projector)
    # NC2 (SELI), through k x k, k x n and d x n matrices.
    sel = sel_gram(counts)
    zhat = projector @ onehot  # padded columns zero
    nc2_seli_classifier = normalised_distance(classifier_gram, _sym_power(sel, 0.5))
    nc2_seli_features = _seli_feature_distance(feats, zhat, sel)
    logits = W @ feats if bias is None else W @ feats + bias[:, None]
    nc2_seli_outputs = normalised_distance(logits * mask[None, :], zhat)
    return {
        "nc1": nc1,
        "nc2_etf_features": nc2_etf_features,
        "nc2_etf_classifier": nc2_etf_classifier,
        "nc2_seli_features": nc2_seli_features,
        "nc2_seli_classifier": nc2_seli_classifier,
        "nc2_seli_outputs": nc2_seli_outputs,
        "nc3": normalised_distance(W, centred.T),
        "feature_norm": jnp.linalg.norm(means, axis=0),
        "classifier_norm": jnp.linalg.norm(W, axis=1),
        "feature_cosine": _cosines(means.T),
        "classifier_cosine": _cosines(W),
        "minority_cosine": minority_cosine(W, counts),
        "feature_norm_centred": jnp.linalg.norm(centred, axis=0),
        "feature_cosine_centred": _cosines(centred.T),
        "nc3_self_duality": normalised_distance(W @ centred, projector),
        "nc1_cdnv": cdnv(feats, means, problem),
        "nc4_ncc_agreement": ncc_agreement(W, feats, means, problem),
    }


def snapshot(params: model.Params, feats: Float[Array, "d n"], problem: Problem) -> dict:
    """:func:`metrics` of a parameter set, given its per-example trained features
    (``model.features``); a deep UFM's inner layers are applied first, and the bias, when
    the model has one, enters the logits of ``nc2_seli_outputs``."""
    return metrics(params["W"], model.penultimate(params, feats), problem, params.get("b"))


class Definition(NamedTuple):
    """What one geometry key measures: its shape per save point, its formula (in the
    module docstring's notation), its centring, its weighting and where it comes from. The
    docs' table and the netCDF variables' attributes are written from these."""

    shape: str
    formula: str
    centring: str
    weighting: str
    reference: str


_GLOBAL = "class means centred by mu_G, the unweighted mean of the class means"
_NONE = "none (uncentred, the SELI convention)"
PAPYAN = "Papyan, Han & Donoho (2020), PNAS 117(40)"
SELI = "Thrampoulidis, Kini, Vakilian & Behnia (2022), NeurIPS, 'Imbalance trouble'"

DEFINITIONS: dict[str, Definition] = {
    "nc1": Definition(
        "scalar", "tr(Sigma_W Sigma_B^+) / k; Sigma_W = (1/n) sum_i (f_i - mu_{y_i})"
        "(f_i - mu_{y_i})^T, Sigma_B = (1/k) sum_c (mu_c - mu_G)(mu_c - mu_G)^T",
        "Sigma_W around each class mean; Sigma_B " + _GLOBAL,
        "Sigma_W per example, Sigma_B per class", PAPYAN),
    "nc2_etf_features": Definition(
        "scalar", "|| G/||G||_F - P/||P||_F ||_F, G = M^T M, M = [mu_c - mu_G]_c, "
        "P = I - 1 1^T / k", _GLOBAL, "per class", PAPYAN),
    "nc2_etf_classifier": Definition(
        "scalar", "|| W W^T/||W W^T||_F - P/||P||_F ||_F", "none (classifier rows)",
        "per class", PAPYAN),
    "nc2_seli_features": Definition(
        "scalar", "|| F^T F/||F^T F||_F - V Lambda V^T/||V Lambda V^T||_F ||_F for the SVD "
        "Zhat = P Y = U Lambda V^T (computed without n x n matrices)", _NONE,
        "per example", SELI),
    "nc2_seli_classifier": Definition(
        "scalar", "|| W W^T/||W W^T||_F - U Lambda U^T/||U Lambda U^T||_F ||_F", _NONE,
        "per class", SELI),
    "nc2_seli_outputs": Definition(
        "scalar", "|| Z/||Z||_F - Zhat/||Zhat||_F ||_F, logits Z = W F + b 1^T (b = 0 "
        "without a bias)", _NONE, "per example", SELI),
    "nc3": Definition(
        "scalar", "|| W/||W||_F - M^T/||M||_F ||_F (Papyan's self-duality)", _GLOBAL,
        "per class", PAPYAN),
    "feature_norm": Definition("per class", "||mu_c||", _NONE, "per class", SELI),
    "classifier_norm": Definition("per class", "||w_c||", "none (classifier rows)",
                                  "per class", SELI),
    "feature_cosine": Definition(
        "class x class", "cos(mu_c, mu_c')", _NONE, "per class", SELI),
    "classifier_cosine": Definition(
        "class x class", "cos(w_c, w_c')", "none (classifier rows)", "per class", SELI),
    "minority_cosine": Definition(
        "scalar", "mean over distinct minority classes c != c' of cos(w_c, w_c'); minority: "
        "n_c below the largest count; NaN with fewer than two",
        "none (classifier rows)", "per class pair",
        "Fang, He, Long & Su (2021), PNAS 118(43), 'minority collapse'"),
    "feature_norm_centred": Definition(
        "per class", "||mu_c - mu_G||", _GLOBAL, "per class", PAPYAN),
    "feature_cosine_centred": Definition(
        "class x class", "cos(mu_c - mu_G, mu_c' - mu_G)", _GLOBAL, "per class", PAPYAN),
    "nc3_self_duality": Definition(
        "scalar", "|| W M/||W M||_F - P/sqrt(k - 1) ||_F (0 at SELI and at every "
        "squared-loss interpolant)", _GLOBAL, "per class",
        "Kothapalli (2023), TMLR, 'Neural collapse: a review on modelling principles and "
        "generalization'"),
    "nc1_cdnv": Definition(
        "scalar", "mean over real class pairs c < c' of ((V_c + V_c')/2) / ||mu_c - mu_c'||^2,"
        " V_c = (1/n_c) sum_{y_i = c} ||f_i - mu_c||^2",
        "none needed (differences of class means)",
        "per class pair; V_c per example within its class",
        "Galanti, Gyorgy & Hutter (2022), ICLR, 'On the role of neural collapse in transfer "
        "learning'"),
    "nc4_ncc_agreement": Definition(
        "scalar", "(1/n) sum_i [argmax_c (W f_i)_c = argmin_c ||f_i - mu_c||] (no bias)",
        "none (the prediction leaves the bias out)",
        "per example (per-class agreements weighted by n_c / n)", PAPYAN),
}
# The recorded keys, in the order metrics() returns them (the first twelve predate the rest).
GEOMETRY_KEYS = tuple(DEFINITIONS)
