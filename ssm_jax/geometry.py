r"""Neural-collapse geometry of the UFM: NC1-NC3, the simplex ETF and the SELI geometry.

All functions work on the features the classifier sees, ``F = V_{L-1}...V_1 H`` (d x n,
:func:`ssm_jax.model.penultimate`; per-example, padded columns masked out), the classifier
W (k x d) and the class counts n_c of the real examples. With class means
:math:`\mu_c = \frac1{n_c}\sum_{y_i=c} f_i`, their class-balanced mean
:math:`\mu_G = \frac1k\sum_c \mu_c` and :math:`M = [\mu_c - \mu_G]_c` (d x k):

* **NC1** (Papyan et al. 2020): :math:`\operatorname{tr}(\Sigma_W \Sigma_B^+)/k` with
  :math:`\Sigma_W = \frac1n\sum_i (f_i - \mu_{y_i})(f_i - \mu_{y_i})^\top` and
  :math:`\Sigma_B = \frac1k M M^\top`. Zero when every example sits on its class mean.
* **NC2, simplex ETF**: :math:`\lVert G/\lVert G\rVert_F - P/\lVert P\rVert_F\rVert_F` with
  :math:`P = I_k - \frac1k 1 1^\top`, for the centred-mean Gram :math:`G = M^\top M`
  (``nc2_etf_features``) and for :math:`G = W W^\top` (``nc2_etf_classifier``).
* **NC2, SELI** (Thrampoulidis et al. 2022, "Imbalance trouble"): the simplex-encoded
  label matrix :math:`\hat Z = P Y` (k x n) has SVD :math:`U\Lambda V^\top`; the SELI
  geometry is :math:`W W^\top \propto U\Lambda U^\top`, :math:`F^\top F \propto V\Lambda V^\top`,
  :math:`W F \propto \hat Z` (no centring: the UFM has no bias). ``nc2_seli_classifier``,
  ``nc2_seli_features``, ``nc2_seli_outputs`` are the normalised Frobenius distances of
  those three matrices to their SELI targets. With equal counts SELI is the simplex ETF.
  It is the limit, as weight decay vanishes, of cross-entropy training in the ``sample``
  parametrisation, whatever the class weights (the max-margin solution).
* **NC3** (self-duality): :math:`\lVert W/\lVert W\rVert_F - M^\top/\lVert M\rVert_F\rVert_F`.
* ``feature_norm[c] = ||mu_c||``, ``classifier_norm[c] = ||w_c||``, and the cosine matrices
  ``feature_cosine[c, c']`` (between uncentred class means) and ``classifier_cosine``.
* ``minority_cosine``: mean cosine between distinct minority classifier rows (minority =
  count below the largest; NaN with fewer than two). Fang et al. (2021) "minority
  collapse": under fixed weight decay it tends to 1 as the imbalance ratio grows.

Every distance is computed through k x k or d x d matrices, never n x n.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

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


def minority_cosine(W: Float[Array, "k d"], counts: Float[Array, " k"]) -> Float[Array, ""]:
    """Mean cosine between distinct minority classifier rows (NaN with fewer than two)."""
    minor = minority_mask(counts).astype(W.dtype)
    pairs = minor[:, None] * minor[None, :] * (1.0 - jnp.eye(W.shape[0], dtype=W.dtype))
    total = jnp.sum(pairs)
    return jnp.where(total > 0, jnp.sum(pairs * _cosines(W)) / jnp.maximum(total, 1.0), jnp.nan)


def metrics(W: Float[Array, "k d"], feats: Float[Array, "d n"], problem: Problem) -> dict:
    """Every geometry measure of the module docstring for classifier W and penultimate
    features ``feats`` (d x n_pad; padded columns ignored). jit/vmap friendly."""
    k = problem.num_classes
    dtype = W.dtype
    onehot = problem.onehot().astype(dtype)
    counts = onehot.sum(axis=1)
    mask = problem.mask.astype(dtype)
    n = jnp.sum(mask)
    feats = feats * mask[None, :]
    means = class_means(feats, problem)  # d x k
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
    # NC2 (SELI), through k x k and d x d matrices.
    sel = sel_gram(counts)
    inverse_root = _sym_power(sel, -0.5)
    nc2_seli_classifier = normalised_distance(classifier_gram, _sym_power(sel, 0.5))
    feats_sel = feats @ (projector @ onehot).T  # F Zhat^T, d x k
    nc2_seli_features = _distance_from_inner(
        jnp.sum((feats_sel @ inverse_root) * feats_sel),
        jnp.linalg.norm(feats @ feats.T),
        jnp.sqrt(jnp.trace(inverse_root @ sel @ inverse_root @ sel)),
    )
    logits = W @ feats  # k x n (padded columns zero)
    nc2_seli_outputs = _distance_from_inner(
        jnp.sum(logits * (projector @ onehot)), jnp.linalg.norm(logits), jnp.sqrt(jnp.trace(sel))
    )
    nc3 = normalised_distance(W, centred.T)
    return {
        "nc1": nc1,
        "nc2_etf_features": nc2_etf_features,
        "nc2_etf_classifier": nc2_etf_classifier,
        "nc2_seli_features": nc2_seli_features,
        "nc2_seli_classifier": nc2_seli_classifier,
        "nc2_seli_outputs": nc2_seli_outputs,
        "nc3": nc3,
        "feature_norm": jnp.linalg.norm(means, axis=0),
        "classifier_norm": jnp.linalg.norm(W, axis=1),
        "feature_cosine": _cosines(means.T),
        "classifier_cosine": _cosines(W),
        "minority_cosine": minority_cosine(W, counts),
    }


def snapshot(params: model.Params, feats: Float[Array, "d n"], problem: Problem) -> dict:
    """:func:`metrics` of a parameter set, given its per-example trained features
    (``model.features``); a deep UFM's inner layers are applied first."""
    return metrics(params["W"], model.penultimate(params, feats), problem)


GEOMETRY_KEYS = ("nc1", "nc2_etf_features", "nc2_etf_classifier", "nc2_seli_features",
                 "nc2_seli_classifier", "nc2_seli_outputs", "nc3", "feature_norm",
                 "classifier_norm", "feature_cosine", "classifier_cosine", "minority_cosine")
