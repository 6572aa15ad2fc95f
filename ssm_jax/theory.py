r"""Closed-form theory of the imbalanced UFM: label spectra, mode rates, SELI geometry.

Everything here follows the conventions of :mod:`ssm_jax.weights` and the README: the loss
is :math:`L = \frac1n\sum_i \omega_{y_i}\,\tfrac12\lVert W h_i - y_i\rVert^2` with
:math:`n = \sum_c n_c` the total number of examples and :math:`\sum_c n_c\omega_c = n`.
The derivations are in ``docs/theory.md``; the tests check them against the gradient flow of
:mod:`ssm_jax.dynamics.flow` to relative error 1e-6 in float64.

Squared loss, aligned balanced initialisation (Saxe, McClelland & Ganguli 2014): each
class's own output follows the logistic

.. math:: z_c(t) = \frac{e^{r_c t}}{e^{r_c t} - 1 + 1/z_0},\qquad
          r_c = \frac{2}{n}\,s_c,

with :math:`s_c` the singular value of class c's mode of the label matrix of the
parametrisation: :math:`\omega_c\sqrt{n_c}` (``sample``, label matrix :math:`Y\Omega`),
:math:`\omega_c n_c` (``class``, :math:`\mathrm{diag}(\omega_c n_c)`),
:math:`\sqrt{\omega_c n_c}` (``whitened``, :math:`Y\Omega^{1/2}`).

Cross-entropy: the SELI geometry (Thrampoulidis, Kini, Vakilian & Behnia, NeurIPS 2022) of
the simplex-encoded label matrix :math:`\hat Z = (I_k - \tfrac1k 1 1^\top) Y = V\Lambda
U^\top`: :math:`WW^\top = V\Lambda V^\top`, :math:`H^\top H = U\Lambda U^\top`,
:math:`WH = \hat Z`.

Weight decay (squared loss, no bias): the closed-form global minimiser
(:func:`weight_decay_minimiser`): every class keeps output
:math:`z_c = \max(0, 1 - \lambda/\sigma_c)`, :math:`\sigma_c = s_c/n`, at depth 1, and
collapses to 0 at the threshold :math:`\lambda^\star_c` (:func:`collapse_threshold`), which
reweighting moves; deeper models collapse by a jump (:mod:`ssm_jax.deep`).

Rates, trajectories, half times and effective initial outputs are pure jax.numpy
(jit/vmap/grad-friendly in their numeric arguments). The spectra and the SELI geometry are
exact reference computations in numpy float64 (whatever jax's precision), returning numpy
arrays; their rank is data-dependent, so they are not jit-able anyway. So are the
weight-decay closed forms (float64 references for the tests and the command line; the
jit-able per-mode solvers they use are in :mod:`ssm_jax.deep`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import deep
from .config import PARAMETRIZATIONS, ConfigError
from .weights import power_law


def _check_parametrization(parametrization: str) -> None:
    if parametrization not in PARAMETRIZATIONS:
        raise ConfigError(f"parametrization={parametrization!r} is not one of "
                          f"{', '.join(map(repr, PARAMETRIZATIONS))}")


def _counts_omega(counts, omega):
    counts = jnp.asarray(counts, dtype=jnp.result_type(float))
    omega = jnp.ones_like(counts) if omega is None else jnp.asarray(omega, counts.dtype)
    return counts, omega


# --------------------------------------------------------------------------- spectrum


def label_matrix(counts, omega=None, parametrization: str = "sample",
                 centred: bool = False) -> np.ndarray:
    r"""The label matrix whose singular modes the gradient flow learns (k x m).

    ``sample``: :math:`Y\Omega` (k x n; column i is :math:`\omega_{y_i} e_{y_i}`),
    ``class``: :math:`\mathrm{diag}(\omega_c n_c)` (k x k), ``whitened``:
    :math:`Y\Omega^{1/2}` (k x n). ``centred=True`` multiplies by the centring projector
    :math:`P = I_k - \tfrac1k 1 1^\top` from the left: near the origin the cross-entropy
    gradient is :math:`\nabla_Z L = -\tfrac1n (Y - \tfrac1k 1 1^\top)\Omega = -\tfrac1n
    PY\Omega`, so these are the modes cross-entropy learns first. ``counts`` must be
    integers for the k x n matrices.
    """
    _check_parametrization(parametrization)
    counts = np.asarray(counts, dtype=np.float64)
    omega = np.ones_like(counts) if omega is None else np.asarray(omega, dtype=np.float64)
    k = counts.shape[0]
    if parametrization == "class":
        matrix = np.diag(omega * counts)
    else:
        labels = np.repeat(np.arange(k), np.round(counts).astype(int))
        column = omega if parametrization == "sample" else np.sqrt(omega)
        matrix = (np.arange(k)[:, None] == labels[None, :]) * column[labels][None, :]
    if centred:
        matrix = matrix - matrix.mean(axis=0, keepdims=True)
    return matrix


def singular_values(counts, omega=None, parametrization: str = "sample") -> Float[Array, " k"]:
    r"""Closed-form singular value of class c's mode of :func:`label_matrix` (uncentred):
    :math:`\omega_c\sqrt{n_c}` (sample), :math:`\omega_c n_c` (class),
    :math:`\sqrt{\omega_c n_c}` (whitened)."""
    _check_parametrization(parametrization)
    counts, omega = _counts_omega(counts, omega)
    if parametrization == "sample":
        return omega * jnp.sqrt(counts)
    if parametrization == "class":
        return omega * counts
    return jnp.sqrt(omega * counts)


class Spectrum(NamedTuple):
    """Singular value decomposition ``M = left @ diag(values) @ right.T`` of a label matrix,
    values in decreasing order (zero singular values dropped)."""

    values: np.ndarray  # (r,)
    left: np.ndarray  # (k, r)
    right: np.ndarray  # (m, r)


def label_spectrum(counts, omega=None, parametrization: str = "sample",
                   centred: bool = False, tol: float = 1e-9) -> Spectrum:
    """Singular values and vectors of :func:`label_matrix` (computed numerically; for the
    uncentred matrices they equal :func:`singular_values` with left vectors e_c and right
    vectors the normalised class indicators). numpy float64."""
    matrix = label_matrix(counts, omega, parametrization, centred)
    left, values, right_t = np.linalg.svd(matrix, full_matrices=False)
    keep = values > tol * values[0]
    return Spectrum(values[keep], left[:, keep], right_t[keep].T)


# ------------------------------------------------------------------ rates, trajectories


def rate(counts, omega=None, n=None, parametrization: str = "sample") -> Float[Array, " k"]:
    r"""Logistic rate :math:`r_c = \tfrac2n s_c` of each class's own output (squared loss,
    aligned balanced init): :math:`\tfrac2n\omega_c\sqrt{n_c}` (sample),
    :math:`\tfrac2n\omega_c n_c` (class), :math:`\tfrac2n\sqrt{\omega_c n_c}` (whitened).
    ``n`` defaults to :math:`\sum_c n_c` (the loss is a mean over all examples)."""
    counts, omega = _counts_omega(counts, omega)
    n = jnp.sum(counts) if n is None else n
    return 2.0 / n * singular_values(counts, omega, parametrization)


def trajectory(t, rate, z0):
    r"""Logistic own output :math:`z(t) = e^{rt} / (e^{rt} - 1 + 1/z_0)` (broadcasts),
    evaluated as :math:`1 / (1 + (1/z_0 - 1)e^{-rt})`, which cannot overflow."""
    t, rate = jnp.asarray(t), jnp.asarray(rate)
    return 1.0 / (1.0 + (1.0 / z0 - 1.0) * jnp.exp(-rate * t))


def half_time(rate, z0, level=0.5):
    r"""First time the logistic reaches ``level``:
    :math:`t = \frac1r \ln\frac{\ell(1 - z_0)}{z_0(1 - \ell)}`, i.e. :math:`\frac1r
    \ln(1/z_0 - 1)` at :math:`\ell = 1/2`. Zero if :math:`z_0 \ge \ell`."""
    rate = jnp.asarray(rate)
    t = jnp.log(level * (1.0 - z0) / (z0 * (1.0 - level))) / rate
    return jnp.maximum(t, 0.0)


def scheduled_trajectory(t, rates, switch_times, z0):
    r"""Own output under a weight schedule (:mod:`ssm_jax.schedule`): the logistic whose
    rate is ``rates[j]`` in phase j (from ``switch_times[j - 1]`` on). The logistic is
    linear in log-odds, so

    .. math:: z(t) = \sigma\Big(\log\frac{z_0}{1 - z_0} + \int_0^t r(s)\,ds\Big),
              \qquad \int_0^t r = \sum_j r_j\,\big|[\tau_j, \tau_{j+1}) \cap [0, t]\big|,

    with :math:`\tau_0 = 0`, :math:`\tau_m = \infty`: each phase continues the previous
    one's logistic from where it stopped (aligned balanced init stays aligned and balanced
    when the weights switch, since :math:`W^\top W - H H^\top` is conserved by the flow of
    any loss of :math:`WH`). ``t`` (s,), ``rates`` (m, k), ``switch_times`` (m - 1,);
    returns (s, k)."""
    t = jnp.asarray(t, dtype=jnp.result_type(float))[..., None]
    return 1.0 / (1.0 + (1.0 / z0 - 1.0) * jnp.exp(-_rate_integral(t, rates, switch_times)))


def _rate_integral(t, rates, switch_times):
    """``int_0^t r(s) ds`` (..., k) of the piecewise-constant rates."""
    rates = jnp.asarray(rates, dtype=jnp.result_type(float))
    taus = jnp.asarray(switch_times, dtype=rates.dtype)
    starts = jnp.concatenate([jnp.zeros((1,), rates.dtype), taus])
    ends = jnp.concatenate([taus, jnp.full((1,), jnp.inf, rates.dtype)])
    inside = jnp.clip(jnp.minimum(t[..., None, :], ends[:, None]) - starts[:, None], 0.0)
    return jnp.sum(rates * inside, axis=-2)


def scheduled_half_time(rates, switch_times, z0, level=0.5):
    r"""First time :func:`scheduled_trajectory` reaches ``level`` (k,): where the rate
    integral reaches :math:`\log\frac{\ell (1 - z_0)}{z_0 (1 - \ell)}`, found phase by
    phase (infinite if a last rate of 0 never gets there)."""
    rates = jnp.asarray(rates, dtype=jnp.result_type(float))
    taus = jnp.asarray(switch_times, dtype=rates.dtype)
    need = jnp.log(level * (1.0 - z0) / (z0 * (1.0 - level)))
    starts = jnp.concatenate([jnp.zeros((1,), rates.dtype), taus])
    lengths = jnp.concatenate([taus, jnp.full((1,), jnp.inf, rates.dtype)]) - starts
    # the rate integral at the start of each phase (the last phase's infinite length is
    # never summed)
    done = jnp.concatenate([jnp.zeros_like(rates[:1]),
                            jnp.cumsum(rates[:-1] * lengths[:-1, None], axis=0)])
    within = (need - done) / jnp.where(rates > 0, rates, 1.0)
    here = (done < need) & (within <= lengths[:, None]) & (rates > 0)
    times = jnp.where(here, starts[:, None] + within, jnp.inf)
    return jnp.maximum(jnp.min(times, axis=0), 0.0)


EQUALISING_EXPONENT = {"sample": 0.5, "class": 1.0, "whitened": 1.0}


def equalising_exponent(parametrization: str) -> float:
    r"""The power-law exponent :math:`\gamma` (:math:`\omega_c\propto n_c^{-\gamma}`) that
    gives every class the same rate: :math:`r_c \propto n_c^{1/2-\gamma}` (sample),
    :math:`n_c^{1-\gamma}` (class), :math:`n_c^{(1-\gamma)/2}` (whitened), so
    :math:`\gamma = 1/2, 1, 1`."""
    _check_parametrization(parametrization)
    return EQUALISING_EXPONENT[parametrization]


def equalising_weights(counts, parametrization: str = "sample") -> Float[Array, " k"]:
    """Normalised class weights n_c^-gamma with the equalising exponent (equal rates)."""
    counts, _ = _counts_omega(counts, None)
    return power_law(counts, equalising_exponent(parametrization))


# ------------------------------------------------------------------ random small init


def effective_z0(counts, omega=None, parametrization: str = "sample", init_scale=1e-3,
                 dim: int = 32) -> Float[Array, " k"]:
    r"""Effective initial own output of each mode from a small gaussian init.

    With entries i.i.d. :math:`N(0, \varepsilon^2)`, the flow linearised at the origin is,
    per feature coordinate j, :math:`\dot w = \sigma_c h`, :math:`\dot h = \sigma_c w` for
    :math:`w = W_{cj}`, :math:`h = (Hv_c)_j` (:math:`v_c` the right singular vector,
    :math:`\sigma_c = s_c/n`): :math:`a_j = (w + h)/2 \sim N(0, \varepsilon^2/2)` grows as
    :math:`e^{\sigma_c t}`, :math:`w - h` decays. The own output is then
    :math:`e^{r_c t}\lVert a\rVert^2 / m_c` (:math:`r_c = 2\sigma_c`) with
    :math:`E\lVert a\rVert^2 = d\varepsilon^2/2` and :math:`m_c = \sqrt{n_c}` (sample;
    :math:`h_i = Hv_c/\sqrt{n_c}`), 1 (class), :math:`\sqrt{\omega_c n_c}` (whitened;
    :math:`h_i = g_i/\sqrt{\omega_c}`):
    :math:`z_{0,c}^{\rm eff} = d\varepsilon^2 / (2 m_c)`.
    """
    _check_parametrization(parametrization)
    counts, omega = _counts_omega(counts, omega)
    if parametrization == "sample":
        m = jnp.sqrt(counts)
    elif parametrization == "class":
        m = jnp.ones_like(counts)
    else:
        m = jnp.sqrt(omega * counts)
    return dim * jnp.asarray(init_scale) ** 2 / (2.0 * m)


def random_init_half_times(counts, omega=None, parametrization: str = "sample",
                           init_scale=1e-3, dim: int = 32, n=None) -> Float[Array, " k"]:
    r"""Predicted half times (own output reaches 1/2) from a small gaussian init:
    :math:`t_c = \frac1{r_c}\ln(1/z^{\rm eff}_{0,c} - 1)` (see :func:`effective_z0`).
    To leading order the ratio of two classes' times is :math:`r_{c'}/r_c`; the logarithm
    corrects it by the (n_c-dependent) effective initial outputs."""
    z0 = effective_z0(counts, omega, parametrization, init_scale, dim)
    return half_time(rate(counts, omega, n, parametrization), z0)


def learning_time_ratios(counts, omega=None, parametrization: str = "sample",
                         init_scale=1e-3, dim: int = 32, reference: int = 0) -> Float[Array, " k"]:
    """Predicted half-time of each class divided by that of class ``reference``
    (random small init; see :func:`random_init_half_times`)."""
    times = random_init_half_times(counts, omega, parametrization, init_scale, dim)
    return times / times[reference]


# ------------------------------------------------------------------ conserved quantities


def class_balance(params, labels, num_classes: int, parametrization: str) -> Float[Array, " k"]:
    r"""Per-class :math:`\lVert W_{c\cdot}\rVert^2 - \lVert H_c\rVert_F^2` with :math:`H_c` the
    class-c block of the trained feature variable (H, or G for ``whitened``; column c for
    ``class``). Conserved by the gradient flow from an aligned init (the classes never mix);
    in general only :math:`W^\top W - HH^\top` is conserved (no weight decay, depth 1)."""
    _check_parametrization(parametrization)
    W, H = params["W"], params["H"]
    if parametrization == "class":
        block = jnp.sum(H**2, axis=0)
    else:
        onehot = jnp.arange(num_classes)[:, None] == jnp.asarray(labels)[None, :]
        block = onehot @ jnp.sum(H**2, axis=0)
    return jnp.sum(W**2, axis=1) - block


# --------------------------------------------------------------------------- SELI


def simplex_encoded_labels(counts) -> np.ndarray:
    r"""The SEL matrix :math:`\hat Z = (I_k - \tfrac1k 1 1^\top)Y` (k x n): column i is
    :math:`e_{y_i} - \tfrac1k 1` (Thrampoulidis et al. 2022, Definition 2)."""
    return label_matrix(counts, None, "sample", centred=True)


class SELI(NamedTuple):
    r"""The SELI geometry of class counts (unit scale: :math:`WH = \hat Z` exactly).

    Class-level quantities (every feature of class c equals :math:`h_c` in SELI):

    * ``classifier_gram`` :math:`WW^\top = V\Lambda V^\top` (k x k),
    * ``feature_gram`` :math:`[h_c^\top h_{c'}] = V\Lambda^{-1}V^\top` (k x k; the class
      blocks of :math:`H^\top H = U\Lambda U^\top`),
    * ``singular_values`` :math:`\Lambda` (k - 1 values of :math:`\hat Z`),
    * norms :math:`\lVert w_c\rVert`, :math:`\lVert h_c\rVert` and cosine matrices.
    """

    classifier_gram: np.ndarray  # (k, k)
    feature_gram: np.ndarray  # (k, k)
    singular_values: np.ndarray  # (k - 1,)
    classifier_norms: np.ndarray  # (k,)
    feature_norms: np.ndarray  # (k,)
    classifier_cosines: np.ndarray  # (k, k)
    feature_cosines: np.ndarray  # (k, k)


def _cosines(gram):
    norms = np.sqrt(np.diag(gram))
    return gram / (norms[:, None] * norms[None, :]), norms


def seli(counts) -> SELI:
    r"""SELI geometry from the class counts, using only k x k matrices.

    :math:`\hat Z\hat Z^\top = PDP` with :math:`D = \mathrm{diag}(n_c)`; its eigenvectors
    with non-zero eigenvalue are V and the eigenvalues :math:`\Lambda^2`. Since
    :math:`\hat Z = PY` has identical columns within a class, :math:`U = \hat Z^\top
    V\Lambda^{-1}` is constant on class blocks and :math:`H^\top H = U\Lambda U^\top`
    has class blocks :math:`(V\Lambda^{-1}V^\top)_{y_i y_j}`.
    """
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.shape[0]
    centring = np.eye(k) - 1.0 / k
    eigenvalues, vectors = np.linalg.eigh(centring @ np.diag(counts) @ centring)
    # P D P has rank k - 1 (its null space is the all-ones vector): drop the smallest.
    eigenvalues, vectors = eigenvalues[1:][::-1], vectors[:, 1:][:, ::-1]
    sigma = np.sqrt(eigenvalues)
    classifier_gram = (vectors * sigma) @ vectors.T
    feature_gram = (vectors / sigma) @ vectors.T
    classifier_cosines, classifier_norms = _cosines(classifier_gram)
    feature_cosines, feature_norms = _cosines(feature_gram)
    return SELI(classifier_gram, feature_gram, sigma, classifier_norms, feature_norms,
                classifier_cosines, feature_cosines)


def seli_realisation(counts, dim: int | None = None):
    r"""Explicit SELI parameters: :math:`W = V\Lambda^{1/2}` (k x (k-1)) and
    :math:`H = \Lambda^{1/2}U^\top` ((k-1) x n), zero-padded to ``dim`` rows/columns, so that
    :math:`WH = \hat Z`, :math:`WW^\top = V\Lambda V^\top`, :math:`H^\top H = U\Lambda U^\top`.
    They solve the UF-SVM :math:`\min \tfrac12(\lVert W\rVert_F^2 + \lVert H\rVert_F^2)` s.t.
    every margin :math:`(w_{y_i} - w_c)^\top h_i \ge 1`, with value :math:`\lVert\hat
    Z\rVert_*`."""
    spectrum = label_spectrum(counts, None, "sample", centred=True)
    root = np.sqrt(spectrum.values)
    W = spectrum.left * root
    H = (spectrum.right * root).T
    if dim is not None:
        if dim < W.shape[1]:
            raise ConfigError(f"dim={dim} is out of range: SELI needs dim >= k - 1 = {W.shape[1]}")
        W = np.pad(W, ((0, 0), (0, dim - W.shape[1])))
        H = np.pad(H, ((0, dim - H.shape[0]), (0, 0)))
    return {"W": W, "H": H}


def step_summary(k_major: int, k_minor: int, ratio: float, n_minor: int = 1) -> dict:
    r"""SELI norm ratios and angles for a step imbalance (``k_major`` classes of
    ``ratio * n_minor`` examples, ``k_minor`` of ``n_minor``). SELI is scale-invariant in
    the counts up to an overall factor, so only ``ratio`` matters for ratios and angles.

    Returns a dict of floats: ``classifier_norm_ratio`` :math:`\lVert w_{maj}\rVert /
    \lVert w_{min}\rVert`, ``feature_norm_ratio`` :math:`\lVert h_{maj}\rVert / \lVert
    h_{min}\rVert`, and angles in degrees between two majority classifiers / features
    (``*_angle_major``, needs k_major >= 2), two minority ones (``*_angle_minor``,
    needs k_minor >= 2) and a majority and a minority one (``*_angle_mixed``).
    """
    if k_major < 1 or k_minor < 1 or k_major + k_minor < 2:
        raise ConfigError(f"k_major={k_major}, k_minor={k_minor}: need at least one class of each")
    if not ratio >= 1:
        raise ConfigError(f"ratio={ratio!r} is out of range: need ratio >= 1")
    counts = (ratio * n_minor,) * k_major + (float(n_minor),) * k_minor
    geometry = seli(counts)
    major, minor = 0, k_major
    w_norms, h_norms = geometry.classifier_norms, geometry.feature_norms
    out = {
        "classifier_norm_ratio": w_norms[major] / w_norms[minor],
        "feature_norm_ratio": h_norms[major] / h_norms[minor],
    }
    pairs = {"mixed": (major, minor)}
    if k_major >= 2:
        pairs["major"] = (0, 1)
    if k_minor >= 2:
        pairs["minor"] = (minor, minor + 1)
    for name, (a, b) in pairs.items():
        for which, cos in (("classifier", geometry.classifier_cosines),
                           ("feature", geometry.feature_cosines)):
            out[f"{which}_angle_{name}"] = np.degrees(np.arccos(np.clip(cos[a, b], -1, 1)))
    return {key: float(value) for key, value in out.items()}


def gram_distance(W, class_features, counts) -> dict:
    r"""How far trained parameters are from SELI: Frobenius distance between the normalised
    Gram matrices, :math:`\lVert G/\lVert G\rVert_F - G^\star/\lVert G^\star\rVert_F\rVert_F`,
    for the classifier (``W W^T``) and the class-mean features (``class_features``: d x k,
    column c the mean feature of class c). 0 means exactly the SELI geometry (up to scale)."""
    target = seli(counts)
    W, class_features = np.asarray(W, np.float64), np.asarray(class_features, np.float64)
    normalise = lambda g: g / np.linalg.norm(g)  # noqa: E731
    return {
        "classifier": np.linalg.norm(normalise(W @ W.T) - normalise(target.classifier_gram)),
        "feature": np.linalg.norm(normalise(class_features.T @ class_features)
                                   - normalise(target.feature_gram)),
    }


# ------------------------------------------------------------ weight decay: the minimiser


def _decay_inputs(counts, omega, parametrization, depth, weight_decay=0.0):
    """Validated float64 numpy copies of the inputs of the weight-decay closed forms."""
    _check_parametrization(parametrization)
    if not (isinstance(depth, int | np.integer) and not isinstance(depth, bool) and depth >= 1):
        raise ConfigError(f"depth={depth!r} is out of range: need an integer >= 1")
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 1 or not np.all(np.isfinite(counts)) \
            or not np.all(counts > 0):
        raise ConfigError(f"counts={counts.tolist()!r} must be a list of finite class counts "
                          "> 0")
    if omega is None:
        omega = np.ones_like(counts)
    omega = np.asarray(omega, dtype=np.float64)
    if omega.shape != counts.shape:
        raise ConfigError(f"omega has shape {omega.shape} but there are {counts.size} classes")
    if not np.all(np.isfinite(omega)) or not np.all(omega >= 0):
        raise ConfigError(f"omega={omega.tolist()!r} is out of range: class weights must be "
                          "finite and >= 0")
    weight_decay = np.asarray(weight_decay, dtype=np.float64)
    if weight_decay.ndim > 1 or not np.all(np.isfinite(weight_decay)) \
            or not np.all(weight_decay >= 0):
        raise ConfigError(f"weight_decay={weight_decay.tolist()!r} is out of range: need a "
                          "finite value >= 0 (or a 1-D array of them)")
    return counts, omega, weight_decay


def _decay_strength(counts, omega, parametrization, depth):
    n = counts.sum()
    if parametrization == "sample":
        sigma, q = omega * np.sqrt(counts) / n, counts
    elif parametrization == "class":
        sigma, q = omega * counts / n, np.ones_like(counts)
    else:
        sigma, q = np.sqrt(omega * counts) / n, omega * counts
    return sigma * q ** ((depth - 1.0) / (2.0 * (depth + 1.0)))


def decay_strength(counts, omega=None, parametrization: str = "sample",
                   depth: int = 1) -> np.ndarray:
    r"""Per-class strength :math:`\tilde\rho_c = \sigma_c\, q_c^{(L-1)/(2(L+1))}` against which
    the weight decay is measured (k,), numpy float64.

    :math:`\sigma_c = s_c/n` is the mode strength of :func:`singular_values` and
    :math:`q_c = n_c, 1, \omega_c n_c` (sample, class, whitened; :mod:`ssm_jax.deep`), so
    :math:`\tilde\rho_c = \rho_c/(L+1)` with :math:`\rho_c` the depth-L mode rate
    (:func:`ssm_jax.deep.mode_rates`): :math:`\omega_c n_c^{L/(L+1)}/n` (sample),
    :math:`\omega_c n_c/n` (class), :math:`(\omega_c n_c)^{L/(L+1)}/n` (whitened). At L = 1
    it is :math:`\sigma_c`, half the logistic rate :func:`rate`."""
    counts, omega, _ = _decay_inputs(counts, omega, parametrization, depth)
    return _decay_strength(counts, omega, parametrization, depth)


def collapse_threshold(counts, omega=None, parametrization: str = "sample",
                       depth: int = 1) -> np.ndarray:
    r"""Weight decay :math:`\lambda^\star_c = \mu^\star_L\,\tilde\rho_c` at and beyond which
    class c's own output is 0 at the global minimiser (k,), numpy float64 (squared loss, no
    bias). :math:`\mu^\star_1 = 1`, so at depth 1 it is the mode strength
    :math:`\sigma_c = \omega_c\sqrt{n_c}/n` (sample), :math:`\omega_c n_c/n` (class),
    :math:`\sqrt{\omega_c n_c}/n` (whitened); :math:`\mu^\star_L` is
    :func:`ssm_jax.deep.critical_decay`. Reweighting moves each threshold in proportion to
    :math:`\omega_c` (sample, class) or :math:`\omega_c^{L/(L+1)}` (whitened), and the
    exponent that equalises the rates (:func:`equalising_exponent` at L = 1,
    :func:`ssm_jax.deep.delay_exponent` = 0 in general) equalises the thresholds."""
    strength = decay_strength(counts, omega, parametrization, depth)
    return deep.critical_decay(depth) * strength


class WeightDecayMinimiser(NamedTuple):
    r"""The global minimiser of the weight-decayed squared-loss UFM (no bias), per class;
    numpy float64. Shapes: (k,) for one weight decay, (m, k) for m of them (``objective``:
    () or (m,)).

    * ``own_output`` :math:`z_c`: output c of every class-c example (every other output is
      0); for H in the ``whitened`` parametrisation.
    * ``objective``: the minimal value of the training objective,
      :math:`\sum_c \frac{\omega_c n_c}{n}\varphi_{\mu_c}(z_c)`
      (:func:`ssm_jax.deep.decay_objective`).
    * ``relative_decay`` :math:`\mu_c = \lambda/\tilde\rho_c` (inf for a class of weight 0).
    * ``strength`` :math:`\tilde\rho_c` (:func:`decay_strength`), ``threshold``
      :math:`\lambda^\star_c` (:func:`collapse_threshold`) and ``spinodal``
      :math:`\mu_{\max}\tilde\rho_c` (:func:`ssm_jax.deep.spinodal_decay`), the decay beyond
      which class c has no nonzero stationary point (equal to ``threshold`` at L = 1);
    * ``stable_output`` and ``unstable_output``: the nonzero stationary points of class c's
      mode (:func:`ssm_jax.deep.decay_stationary_outputs`; NaN where there is none).
    """

    own_output: np.ndarray
    objective: np.ndarray
    relative_decay: np.ndarray
    strength: np.ndarray
    threshold: np.ndarray
    spinodal: np.ndarray
    stable_output: np.ndarray
    unstable_output: np.ndarray

    def aligned_limit(self, z0) -> np.ndarray:
        r"""Where the gradient flow from the aligned balanced initialisation with own output
        ``z0`` (every class) ends: per mode :math:`\dot z = (L+1)\tilde\rho\, z\,((1-z)
        z^{1-p} - \mu)`, so the stable root when it exists and ``z0`` lies above the
        unstable one, else 0. It is :attr:`own_output` at L = 1 (any z0 > 0), and at
        L >= 2 whenever every class with :math:`\mu_c < \mu^\star_L` starts above its
        unstable root and no class has :math:`\mu^\star_L \le \mu_c < \mu_{\max}`."""
        z0 = np.asarray(z0, dtype=np.float64)
        alive = np.isfinite(self.stable_output) & (z0 > self.unstable_output)
        return np.where(alive, np.nan_to_num(self.stable_output), 0.0)


def weight_decay_minimiser(counts, omega=None, weight_decay=0.0,
                           parametrization: str = "sample",
                           depth: int = 1) -> WeightDecayMinimiser:
    r"""Closed-form global minimiser of the weight-decayed squared-loss UFM with class
    weights (``docs/theory.md``, section 8), numpy float64 whatever jax's precision.

    The objective is :math:`\frac1n\sum_i\omega_{y_i}\tfrac12\lVert z_i - e_{y_i}\rVert^2 +
    \frac\lambda2(\lVert W\rVert^2 + \sum_l\lVert V_l\rVert^2 + \lVert H\rVert^2)` (G
    instead of H for ``whitened``) with outputs :math:`Z = W V_{L-1}\cdots V_1 H` and
    ``d >= k``. For fixed W (and V) each feature column solves a strictly convex problem, so
    the features collapse to one per class; with :math:`M` the k x k product, the minimum
    over factorisations of the penalty is :math:`\lambda\frac{L+1}2\sum_i
    \sigma_i(M)^{2/(L+1)}`, and M is diagonal at the minimum (proved for L = 1 by
    convexity, for L >= 2 when the loss in M is an unweighted Frobenius norm, checked
    numerically otherwise). Per class the own output minimises
    :math:`\varphi_\mu(z) = \tfrac12(z-1)^2 + \tfrac\mu p z^p`, :math:`p = 2/(L+1)`,
    :math:`\mu_c = \lambda/\tilde\rho_c` (:func:`decay_strength`):

    * L = 1: :math:`z_c = \max(0,\ 1 - \lambda/\sigma_c)`; class c collapses continuously
      at :math:`\lambda = \sigma_c`.
    * L >= 2: :math:`z_c` is the root above :math:`(L-1)/L` of :math:`(1-z)z^{1-p} = \mu_c`
      while :math:`\mu_c < \mu^\star_L`, then jumps to 0 (:func:`ssm_jax.deep.critical_decay`).

    Args:
        counts: class counts n_c (k,), > 0.
        omega: class weights as used in the loss (k,), >= 0; None for ERM. A class of weight
            0 has own output 0 (for weight decay 0 any output is optimal; 0 is returned).
        weight_decay: lambda >= 0, a scalar or a 1-D array (m,).
        parametrization: ``sample``, ``class`` or ``whitened``.
        depth: L >= 1 (``V`` has L - 1 inner layers).
    """
    counts, omega, weight_decay = _decay_inputs(counts, omega, parametrization, depth,
                                                weight_decay)
    strength = _decay_strength(counts, omega, parametrization, depth)
    lam = weight_decay[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(strength > 0, lam / np.where(strength > 0, strength, 1.0), np.inf)
    with jax.enable_x64(True):
        mu64 = jnp.asarray(mu, jnp.float64)
        own = np.asarray(deep.decay_own_output(mu64, depth))
        stable, unstable = map(np.asarray, deep.decay_stationary_outputs(mu64, depth))
        phi = np.asarray(deep.decay_objective(jnp.asarray(own), mu64, depth))
    loss_weight = omega * counts / counts.sum()
    return WeightDecayMinimiser(
        own_output=own,
        objective=np.sum(loss_weight * phi, axis=-1),
        relative_decay=mu,
        strength=strength,
        threshold=deep.critical_decay(depth) * strength,
        spinodal=deep.spinodal_decay(depth) * strength,
        stable_output=stable,
        unstable_output=unstable,
    )


__all__ = [
    "EQUALISING_EXPONENT",
    "SELI",
    "Spectrum",
    "WeightDecayMinimiser",
    "class_balance",
    "collapse_threshold",
    "decay_strength",
    "effective_z0",
    "equalising_exponent",
    "equalising_weights",
    "gram_distance",
    "half_time",
    "label_matrix",
    "label_spectrum",
    "learning_time_ratios",
    "random_init_half_times",
    "rate",
    "seli",
    "seli_realisation",
    "simplex_encoded_labels",
    "singular_values",
    "step_summary",
    "trajectory",
    "weight_decay_minimiser",
]
