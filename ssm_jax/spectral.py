r"""Spectral optimisers: spectral gradient descent and Muon, as optax transformations.

**Spectral GD** (``method="specgd"``) moves every weight matrix by the polar factor of its
gradient,

.. math:: \theta \leftarrow \theta - \eta\, U V^\top, \qquad \nabla_\theta L = U S V^\top
          \ \text{(reduced SVD)},

i.e. steepest descent in the spectral norm: every singular direction of the gradient moves
by exactly η, whatever its singular value. Directions whose singular value is below
``max(rows, cols) * eps * s_max`` (numerically zero; the gradient of H in the UFM has rank
at most k) are dropped, so a rank-deficient gradient is not padded with arbitrary
directions, and a zero gradient gives a zero step. A stack of layers (the inner layers
``V`` of a deep UFM, shape (L-1, d, d)) is treated as L-1 separate matrices.

*Bias.* A vector is treated as a one-column matrix, whose polar factor is ``g / ||g||``:
the bias moves by η along its normalised gradient (the same rule, not sign descent).

**Muon** (``method="muon"``) is :func:`optax.contrib.muon` (Jordan et al. 2024): Nesterov
momentum (coefficient ``--momentum``), then a 5-step Newton-Schulz approximation of the
polar factor, scaled by ``sqrt(max(1, cols / rows))``; W and H are Muon matrices (rows =
the reduction axis), each inner layer V_l too, and the bias goes to Adam.

With the spectrally aligned initialisation and the squared loss, every mode's factors then
grow at the same constant speed (see :mod:`ssm_jax.deep`, :func:`spectral_mode_output`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float


def polar_factor(gradient: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """``U V^T`` of the reduced SVD of a matrix (numerically zero directions dropped).

    A vector is treated as a one-column matrix (``g / ||g||``); a zero gradient gives zero."""
    if gradient.ndim == 1:
        return polar_factor(gradient[:, None])[:, 0]
    if gradient.ndim > 2:
        return jax.vmap(polar_factor)(gradient)
    u, s, vt = jnp.linalg.svd(gradient, full_matrices=False)
    rtol = max(gradient.shape) * jnp.finfo(gradient.dtype).eps
    keep = (s > rtol * s[0]).astype(gradient.dtype)
    return (u * keep[None, :]) @ vt


class SpectralState(NamedTuple):
    """Spectral GD keeps no state."""


def scale_by_polar() -> optax.GradientTransformation:
    """Replace every gradient leaf by its polar factor (:func:`polar_factor`)."""

    def init(params):
        del params
        return SpectralState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(polar_factor, updates), state

    return optax.GradientTransformation(init, update)


def spectral_gd(learning_rate) -> optax.GradientTransformation:
    """Spectral gradient descent: ``theta -= lr * polar(grad)`` on every leaf."""
    return optax.chain(scale_by_polar(), optax.scale(-1.0 * jnp.asarray(learning_rate)))


def muon_dimensions(params):
    """Muon dimension numbers of the UFM parameters: W (k, d) and H (d, m) are matrices,
    the stacked inner layers V (L-1, d, d) are a batch of matrices, the bias is not."""
    from optax.contrib import MuonDimensionNumbers

    dims = {}
    for name, value in params.items():
        if name == "b" or value.ndim < 2:
            dims[name] = None
        elif value.ndim == 2:
            dims[name] = MuonDimensionNumbers(reduction_axis=0, output_axis=1)
        else:
            dims[name] = MuonDimensionNumbers(reduction_axis=value.ndim - 2,
                                              output_axis=value.ndim - 1)
    return dims


def muon(learning_rate, momentum=0.95) -> optax.GradientTransformation:
    """:func:`optax.contrib.muon` with momentum ``momentum`` and the UFM's dimension numbers."""
    from optax.contrib import muon as optax_muon

    return optax_muon(learning_rate, beta=momentum, muon_weight_dimension_numbers=muon_dimensions)
