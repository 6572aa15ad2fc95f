r"""The network: an MLP ``64 -> hidden... -> 10`` whose last hidden layer is the UFM's
feature matrix ``H`` (d x n) and whose last layer is its classifier ``W`` (k x d) with bias
``b``; its training objective and what is recorded at each checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ... import losses, metrics, model
from ...problem import Problem
from .config import NUM_CLASSES, PIXELS

Params = dict[str, Any]


def init_mlp(key: PRNGKeyArray, hidden: Sequence[int], init_scale, dtype) -> Params:
    """He-normal weights (std ``init_scale * sqrt(2 / fan_in)``), zero biases.

    Returns ``{"layers": [{"w": (out, in), "b": (out,)}, ...], "W": (10, d), "b": (10,)}``:
    the hidden layers, then the classifier in the core's UFM layout (:mod:`ssm_jax.model`).
    """
    sizes = (PIXELS, *hidden, NUM_CLASSES)
    keys = jax.random.split(key, len(sizes) - 1)
    mats = [init_scale * jnp.sqrt(2.0 / fan_in) * jax.random.normal(k, (fan_out, fan_in), dtype)
            for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True)]
    layers = [{"w": w, "b": jnp.zeros((w.shape[0],), dtype)} for w in mats[:-1]]
    return {"layers": layers, "W": mats[-1], "b": jnp.zeros((NUM_CLASSES,), dtype)}


def penultimate(params: Params, x: Float[Array, "n 64"]) -> Float[Array, "d n"]:
    """Features H (d x n): the last hidden layer's ReLU activations, one column per example."""
    h = x.T
    for layer in params["layers"]:
        h = jax.nn.relu(layer["w"] @ h + layer["b"][:, None])
    return h


def weight_decay_penalty(params: Params, weight_decay) -> Float[Array, ""]:
    """(lambda / 2) x the squared norm of every weight matrix (biases are not decayed)."""
    squares = sum(jnp.sum(layer["w"] ** 2) for layer in params["layers"])
    return 0.5 * weight_decay * (squares + jnp.sum(params["W"] ** 2))


def objective_fn(x, problem: Problem, omega, tau, weight_decay, margins=None, ldam_scale=1.0):
    r"""``params -> L`` =
    :math:`\frac1n\sum_i\omega_{y_i}\ell(z_i+\tau\log\pi, y_i)` + weight decay, with
    :math:`\ell` the cross-entropy, or the LDAM loss with ``margins`` (k,) and
    ``ldam_scale`` (:func:`ssm_jax.losses.ldam`; margins 0 and scale 1 are cross-entropy).

    The objective also takes ``(params, omega_t, factors)``: the class weights in effect
    (a schedule's phase; default ``omega``) and the per-example minibatch factors
    (:mod:`ssm_jax.sampling`; default the full batch), as the core's
    :func:`ssm_jax.simulate.objective_fn`."""
    onehot = problem.onehot()
    example_weights = model.example_weights(problem, omega)
    log_prior = jnp.log(problem.priors())

    def objective(params, omega_t=None, factors=None):
        weights = (example_weights if omega_t is None
                   else model.example_weights(problem, omega_t))
        if factors is not None:
            weights = weights * factors
        z = model.outputs(params, penultimate(params, x)) + tau * log_prior[:, None]
        values = (losses.cross_entropy(z, onehot) if margins is None
                  else losses.ldam(z, onehot, margins, ldam_scale))
        return (losses.weighted_mean(values, weights, problem.mask)
                + weight_decay_penalty(params, weight_decay))

    return objective


def neural_collapse(feats: Float[Array, "d n"], problem: Problem) -> Float[Array, " k"]:
    r"""Per-class NC1 :math:`\mathrm{tr}(\Sigma_{W,c}\Sigma_B^+)/k`; their mean is Papyan's NC1.

    Class-balanced version (each class counts once, so the imbalance does not tilt it):
    :math:`\Sigma_{W,c}` is class c's feature covariance around its mean :math:`\mu_c`,
    :math:`\Sigma_B = \frac1k\sum_c(\mu_c-\bar\mu)(\mu_c-\bar\mu)^\top`, :math:`\bar\mu` the
    mean of the class means.
    """
    onehot = problem.onehot()
    k = problem.num_classes
    means = (feats @ onehot.T) / onehot.sum(axis=1)  # d x k
    centred = means - means.mean(axis=1, keepdims=True)
    pinv_between = jnp.linalg.pinv(centred @ centred.T / k, hermitian=True)
    within = feats - means[:, problem.labels]
    quadratic = jnp.sum(within * (pinv_between @ within), axis=0)
    return losses.class_means(quadratic, onehot) / k


def observe_fn(x_train, train: Problem, x_test, test: Problem, objective):
    """``params -> dict`` saved at each checkpoint (all over real examples; see module doc).
    ``(params, omega_t)`` records the full-batch objective with the class weights in
    effect (:func:`objective_fn`)."""
    onehot = train.onehot()
    counts = onehot.sum(axis=1)

    def observe(params, *phase):
        feats = penultimate(params, x_train)
        seen_train = metrics.snapshot(model.outputs(params, feats), train, losses.cross_entropy)
        seen_test = metrics.snapshot(model.outputs(params, penultimate(params, x_test)), test,
                                     losses.cross_entropy)
        product = params["W"] @ feats  # the UFM's Z = W H (no bias)
        feature_means = (feats @ onehot.T) / counts  # d x k
        nc1 = neural_collapse(feats, train)
        return {
            "loss": objective(params, *phase),
            "test_per_class_accuracy": seen_test["per_class_accuracy"],
            "test_balanced_accuracy": seen_test["balanced_accuracy"],
            "train_per_class_accuracy": seen_train["per_class_accuracy"],
            "train_per_class_loss": seen_train["per_class_loss"],
            "own_output": seen_train["own_output"],
            "mode_strength": jnp.sum(onehot * product, axis=1) / jnp.sqrt(counts),
            "classifier_norm": jnp.linalg.norm(params["W"], axis=1),
            "feature_mode_norm": jnp.linalg.norm(feature_means, axis=0) * jnp.sqrt(counts),
            "nc1": jnp.mean(nc1),
            "nc1_per_class": nc1,
            "classifier": params["W"],
            "classifier_bias": params["b"],
            "feature_means": feature_means.T,  # k x d
        }

    return observe
