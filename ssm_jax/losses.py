r"""Per-example losses on outputs, and the weighted training objective.

Per-example losses take outputs ``Z`` (k x n) and one-hot labels ``Y`` (k x n) and return
one value per example (n,), leaving the reduction to :func:`weighted_mean`:

* squared loss  :math:`\ell(z, y) = \tfrac12\lVert z - y\rVert^2`
* cross-entropy :math:`\ell(z, y) = \log\sum_j e^{z_j} - z_y`
* logit-adjusted (``la``) and vector-scaling (``vs``) cross-entropy, and the LDAM margin
  loss (``ldam``), which need the class counts (see :func:`per_example`); the focal loss
  (``focal``)

The objective (see :mod:`ssm_jax.weights` for the normalisation of omega) is

.. math:: L(\theta) = \frac{1}{n}\sum_i \omega_{y_i}\,\ell(z_i, y_i)
          + \frac{\lambda}{2}\left(\lVert W\rVert_F^2 + \lVert H\rVert_F^2\right).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .registry import LOSSES, ConfigError

# Reductions over the class axis (axis 0 of a k x n array) with at most this many classes
# are written as k - 1 elementwise operations on rows. XLA on a CPU emits a reduction over
# a leading axis of a batched (..., k, n) array, such as the outputs of a block of save
# points, as a slow strided loop (10-20x slower, measured on the save-point metrics), while
# row-wise operations fuse into one loop vectorised along n. The losses keep jnp's
# reductions: inside a training step they were as fast, and compile faster.
UNROLL_CLASSES = 64


def _over_classes(x: Array, combine, whole) -> Array:
    """``whole(x, axis=0)``, as ``combine`` folded over the rows when k is small."""
    if x.shape[0] > UNROLL_CLASSES:
        return whole(x, axis=0)
    return functools.reduce(combine, [x[c] for c in range(x.shape[0])])


def class_sum(x: Float[Array, "k ..."]) -> Float[Array, ...]:
    """``jnp.sum(x, axis=0)`` (see :data:`UNROLL_CLASSES`)."""
    return _over_classes(x, jnp.add, jnp.sum)


def class_max(x: Float[Array, "k ..."]) -> Float[Array, ...]:
    """``jnp.max(x, axis=0)`` (see :data:`UNROLL_CLASSES`; NaN propagates, as there)."""
    return _over_classes(x, jnp.maximum, jnp.max)


def squared(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"]) -> Float[Array, " n"]:
    """Per-example squared loss 1/2 ||z_i - y_i||^2."""
    return 0.5 * jnp.sum((outputs - onehot) ** 2, axis=0)


def cross_entropy(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"]) -> Float[Array, " n"]:
    """Per-example softmax cross-entropy logsumexp(z_i) - <y_i, z_i>."""
    return jax.nn.logsumexp(outputs, axis=0) - jnp.sum(onehot * outputs, axis=0)


def vector_scaling(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"],
                   multiplicative: Float[Array, " k"], additive: Float[Array, " k"]
                   ) -> Float[Array, " n"]:
    r"""Per-example vector-scaling (VS) loss (Kini et al. 2021): cross-entropy of the
    adjusted logits :math:`\Delta \odot z + \iota`,

    .. math:: \ell(z, y) = \log\sum_j e^{\Delta_j z_j + \iota_j} - (\Delta_y z_y + \iota_y).

    ``multiplicative`` is Δ (k,), ``additive`` is ι (k,). Δ = 1, ι = 0 is cross-entropy."""
    return cross_entropy(multiplicative[:, None] * outputs + additive[:, None], onehot)


def logit_adjusted(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"],
                   priors: Float[Array, " k"], tau) -> Float[Array, " n"]:
    r"""Per-example logit-adjusted loss (Menon et al. 2021): cross-entropy of
    :math:`z + \tau \log \pi`. For constant logits its minimiser is
    :math:`b = (1 - \tau)\log\pi` (+ const): with τ = 1 the learned bias carries no prior,
    and ``argmax z`` is the balanced (post-hoc adjusted) decision rule."""
    return cross_entropy(outputs + tau * jnp.log(priors)[:, None], onehot)


def focal(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"],
          focal_gamma) -> Float[Array, " n"]:
    r"""Per-example focal loss (Lin et al. 2017), cross-entropy down-weighted on examples
    already fitted:

    .. math:: \ell(z, y) = -(1 - p_y)^{\gamma_f} \log p_y, \qquad p = \mathrm{softmax}(z).

    :math:`\gamma_f = 0` is cross-entropy exactly (value and gradient). ``1 - p_y`` is
    formed as ``-expm1(-ce)`` (accurate as p_y -> 1) and kept above the smallest normal
    number, so the factor's derivative stays finite at any :math:`\gamma_f \ge 0`."""
    ce = cross_entropy(outputs, onehot)
    unfitted = jnp.maximum(-jnp.expm1(-ce), jnp.finfo(ce.dtype).tiny)
    return unfitted ** focal_gamma * ce


def ldam(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"],
         margins: Float[Array, " k"], scale) -> Float[Array, " n"]:
    r"""Per-example label-distribution-aware margin (LDAM) loss (Cao et al. 2019):
    cross-entropy of the logits with the own class's margin subtracted, scaled by s,

    .. math:: \ell(z, y) = \log\Big(e^{s(z_y - m_y)} + \sum_{j \ne y} e^{s z_j}\Big)
              - s (z_y - m_y).

    ``margins`` is m (k,) (:func:`ldam_margins`), ``scale`` is s. m = 0, s = 1 is
    cross-entropy. Cao et al. normalise features and classifier rows, so that the logits
    are cosines and need a scale s of order 10; the UFM's outputs are unbounded (the
    norms of W and H grow freely), so s = 1 is the natural default there, and another s
    only rescales what the margins mean: without weight decay, (W, H, s, m) and
    (sqrt(s) W, sqrt(s) H, 1, s m) give the same loss, and their gradient flows coincide
    once time is multiplied by s."""
    adjusted = scale * (outputs - margins[:, None] * onehot)
    return cross_entropy(adjusted, onehot)


def ldam_margins(counts: Float[Array, " k"], ldam_margin) -> Float[Array, " k"]:
    """LDAM margins m_c ∝ n_c^(-1/4), the largest (the smallest class's) ``ldam_margin``."""
    counts = jnp.asarray(counts)
    return ldam_margin * (jnp.min(counts) / counts) ** 0.25


def vs_parameters(counts: Float[Array, " k"], tau, vs_gamma) -> tuple[Array, Array]:
    """VS-loss parameters from class counts: Δ_c = (n_c / n_max)^vs_gamma and
    ι_c = tau log π_c with π_c = n_c / n."""
    counts = jnp.asarray(counts)
    multiplicative = (counts / jnp.max(counts)) ** vs_gamma
    additive = tau * jnp.log(counts / jnp.sum(counts))
    return multiplicative, additive


# The code of the registry's losses (ssm_jax.registry.LOSSES names each one): ``make(counts,
# **uses)`` receives the class counts and the options the entry ``uses``, and returns the
# per-example loss ``(outputs, onehot) -> (n,)``.


def make_squared(counts):
    """The squared loss (``mse``)."""
    return squared


def make_cross_entropy(counts):
    """Softmax cross-entropy (``ce``)."""
    return cross_entropy


def make_logit_adjusted(counts, tau):
    """Logit-adjusted cross-entropy (``la``) with the priors of ``counts``."""
    priors = jnp.asarray(counts) / jnp.sum(counts)
    return lambda outputs, onehot: logit_adjusted(outputs, onehot, priors, tau)


def make_vector_scaling(counts, tau, vs_gamma):
    """Vector-scaling cross-entropy (``vs``) with the parameters of ``counts``."""
    multiplicative, additive = vs_parameters(counts, tau, vs_gamma)
    return lambda outputs, onehot: vector_scaling(outputs, onehot, multiplicative, additive)


def make_focal(counts, focal_gamma):
    """The focal loss (``focal``) with exponent ``focal_gamma``."""
    return functools.partial(focal, focal_gamma=focal_gamma)


def make_ldam(counts, ldam_margin, ldam_scale):
    """The LDAM loss (``ldam``) with the margins of ``counts`` (:func:`ldam_margins`)."""
    margins = ldam_margins(counts, ldam_margin)
    return lambda outputs, onehot: ldam(outputs, onehot, margins, ldam_scale)


def per_example(loss: str, counts: Float[Array, " k"] | None = None, tau=1.0, vs_gamma=0.0,
                **options):
    """The per-example loss ``(outputs, onehot) -> (n,)`` of a registered loss name.

    Losses that read the class priors (``needs_priors``: ``la``, ``vs``) need ``counts``
    (k,). Each loss receives the numeric options it declares in ``uses`` (``tau``,
    ``vs_gamma`` or others passed by keyword; they may be traced); the others are ignored."""
    entry = LOSSES[loss]
    if entry.needs_priors and counts is None:
        raise ConfigError(f"loss={loss!r} needs the class counts (its priors)")
    given = {"tau": tau, "vs_gamma": vs_gamma, **options}
    missing = [name for name in entry.uses if name not in given]
    if missing:
        raise ConfigError(f"loss={loss!r} needs the option(s) {', '.join(missing)}")
    return entry.make(counts, **{name: given[name] for name in entry.uses})


def weighted_mean(values: Float[Array, " n"], example_weights: Float[Array, " n"],
                  mask: Float[Array, " n"]) -> Float[Array, ""]:
    """(1/n) sum_i mask_i omega_i values_i with n = sum_i mask_i (padding excluded)."""
    return jnp.sum(mask * example_weights * values) / jnp.sum(mask)


def class_means(values: Float[Array, " n"], onehot: Float[Array, "k n"]) -> Float[Array, " k"]:
    """Mean of a per-example quantity over the real examples of each class (k,)."""
    return (onehot @ values) / jnp.maximum(onehot.sum(axis=1), 1.0)
