r"""The meta-objectives: scalar functions of a run's outputs ``Z(T)`` at its stopping time.

Per-class quantities are means over the real examples of a class; the loss is the run's
own training loss, *unweighted*:

* ``balanced_loss``: :math:`\frac1k\sum_c \bar\ell_c(T)`, the mean over classes of the
  per-class loss.
* ``minority_loss``: the mean of :math:`\bar\ell_c(T)` over the minority classes.
* ``balanced_accuracy``: a smooth surrogate of the balanced accuracy,
  :math:`\frac1k\sum_c \operatorname{mean}_{i\in c}\,\sigma\big((z_{c,i} - \max_{j\ne c}
  z_{j,i})/\tau\big)`, with σ the logistic function and temperature τ (default 0.1). As
  τ → 0 it tends to the balanced accuracy (a margin of 0 counts 1/2).
* ``own_output_gap``: mean own output of the majority classes minus that of the minority
  classes, :math:`\operatorname{mean}_{c\in\text{maj}} \bar z_c - \operatorname{mean}_{c\in
  \text{min}} \bar z_c`.

Minority classes are those with :math:`n_c < \sqrt{n_{\max} n_{\min}}` (the integer
counts), the majority classes the others; for a step profile these are exactly the
``k_minor`` small classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import losses, metrics
from ..config import ConfigError
from ..problem import Problem

# The objectives' names and the checks of a request are JAX-free (re-exported from here).
from .request import (  # noqa: F401
    DEFAULT_TEMPERATURE,
    OBJECTIVES,
    check_objective,
    check_temperature,
)


def _minority_weights(problem: Problem) -> Float[Array, " k"]:
    """1.0 for minority classes (n_c < sqrt(n_max n_min), integer counts), else 0.0."""
    counts = jax.lax.stop_gradient(problem.example_counts())
    threshold = jnp.sqrt(jnp.max(counts) * jnp.min(counts))
    return metrics.minority_mask(counts, threshold).astype(counts.dtype)


def _masked_mean(values, mask):
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def smooth_margin_score(outputs: Float[Array, "k n"], problem: Problem,
                        temperature: float) -> Float[Array, " n"]:
    """sigmoid((z_{y_i} - max_{j != y_i} z_j) / temperature) per example."""
    k = problem.num_classes
    own = jnp.take_along_axis(outputs, problem.labels[None, :], axis=0)[0]
    others = jnp.where(jnp.arange(k)[:, None] == problem.labels[None, :], -jnp.inf, outputs)
    return jax.nn.sigmoid((own - jnp.max(others, axis=0)) / temperature)


def objective_value(name: str, outputs: Float[Array, "k n"], problem: Problem, per_example,
                    temperature: float = DEFAULT_TEMPERATURE) -> Float[Array, ""]:
    """The meta-objective ``name`` (see the module docstring) of outputs at T.

    ``per_example``: ``(outputs, onehot) -> (n,)``, the run's per-example training loss
    (:func:`ssm_jax.simulate.per_example_loss`)."""
    onehot = problem.onehot()
    if name in ("balanced_loss", "minority_loss"):
        per_class = losses.class_means(per_example(outputs, onehot), onehot)
        if name == "balanced_loss":
            return jnp.mean(per_class)
        return _masked_mean(per_class, _minority_weights(problem))
    if name == "balanced_accuracy":
        score = smooth_margin_score(outputs, problem, temperature)
        return jnp.mean(losses.class_means(score, onehot))
    if name == "own_output_gap":
        own = losses.class_means(jnp.sum(onehot * outputs, axis=0), onehot)
        minority = _minority_weights(problem)
        return _masked_mean(own, 1.0 - minority) - _masked_mean(own, minority)
    raise ConfigError(f"objective={name!r} is not one of {', '.join(map(repr, OBJECTIVES))}")
