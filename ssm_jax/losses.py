r"""Per-example losses on outputs, and the weighted training objective.

Per-example losses take outputs ``Z`` (k x n) and one-hot labels ``Y`` (k x n) and return
one value per example (n,), leaving the reduction to :func:`weighted_mean`:

* squared loss  :math:`\ell(z, y) = \tfrac12\lVert z - y\rVert^2`
* cross-entropy :math:`\ell(z, y) = \log\sum_j e^{z_j} - z_y`

The objective (see :mod:`ssm_jax.weights` for the normalisation of omega) is

.. math:: L(\theta) = \frac{1}{n}\sum_i \omega_{y_i}\,\ell(z_i, y_i)
          + \frac{\lambda}{2}\left(\lVert W\rVert_F^2 + \lVert H\rVert_F^2\right).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .config import LOSSES, ConfigError


def squared(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"]) -> Float[Array, " n"]:
    """Per-example squared loss 1/2 ||z_i - y_i||^2."""
    return 0.5 * jnp.sum((outputs - onehot) ** 2, axis=0)


def cross_entropy(outputs: Float[Array, "k n"], onehot: Float[Array, "k n"]) -> Float[Array, " n"]:
    """Per-example softmax cross-entropy logsumexp(z_i) - <y_i, z_i>."""
    return jax.nn.logsumexp(outputs, axis=0) - jnp.sum(onehot * outputs, axis=0)


PER_EXAMPLE = {"mse": squared, "ce": cross_entropy}


def per_example(loss: str):
    """The per-example loss function of a loss name."""
    try:
        return PER_EXAMPLE[loss]
    except KeyError:
        raise ConfigError(
            f"loss={loss!r} is not one of {', '.join(map(repr, LOSSES))}"
        ) from None


def weighted_mean(values: Float[Array, " n"], example_weights: Float[Array, " n"],
                  mask: Float[Array, " n"]) -> Float[Array, ""]:
    """(1/n) sum_i mask_i omega_i values_i with n = sum_i mask_i (padding excluded)."""
    return jnp.sum(mask * example_weights * values) / jnp.sum(mask)


def class_means(values: Float[Array, " n"], onehot: Float[Array, "k n"]) -> Float[Array, " k"]:
    """Mean of a per-example quantity over the real examples of each class (k,)."""
    return (onehot @ values) / jnp.maximum(onehot.sum(axis=1), 1.0)
