"""Per-class metrics of a snapshot, and learning times read off a trajectory.

Definitions (all over the real, unpadded examples):

* ``per_class_accuracy[c]``: fraction of class-c examples whose largest output is c
  (strictly: a tie with another output counts as wrong).
* ``per_class_loss[c]``: mean *unweighted* per-example loss over class c.
* ``own_output[c]``: mean over class-c examples of output c, ``z_{c,i}``.
* ``balanced_accuracy``: mean over classes of ``per_class_accuracy``.
* ``posthoc_per_class_accuracy[c]``: the same for the post-hoc logit-adjusted rule
  ``argmax_c (z_c - tau log pi_c)`` (:func:`posthoc_accuracy`).
* ``learn_time[c]``: first time ``per_class_accuracy[c]`` reaches 0.5, and ``half_time[c]``:
  first time ``own_output[c]`` reaches 0.5; linearly interpolated between saved points,
  NaN (``null`` in JSON) if never reached.

Majority and minority classes, and the minority/majority delay ratio read off learning
times, are defined once here (:func:`majority_mask`, :func:`minority_mask`,
:func:`delay_ratio`) for every experiment, figure and objective.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .losses import class_max, class_means, class_sum
from .problem import Problem


def correct(outputs: Float[Array, "k n"], problem: Problem) -> Bool[Array, " n"]:
    """Whether each example's own output is strictly larger than every other output."""
    k = problem.num_classes
    mine = jnp.arange(k)[:, None] == problem.labels[None, :]
    own = class_sum(jnp.where(mine, outputs, 0.0))
    others = jnp.where(mine, -jnp.inf, outputs)
    return own > class_max(others)


def snapshot(outputs: Float[Array, "k n"], problem: Problem, per_example_loss) -> dict:
    """Per-class metrics of one set of outputs; every value is an array (jit/vmap friendly)."""
    onehot = problem.onehot()
    losses = per_example_loss(outputs, onehot)
    per_class_accuracy = class_means(correct(outputs, problem).astype(outputs.dtype), onehot)
    return {
        "per_class_accuracy": per_class_accuracy,
        "per_class_loss": class_means(losses, onehot),
        "own_output": class_means(class_sum(onehot * outputs), onehot),
        "balanced_accuracy": jnp.mean(per_class_accuracy),
    }


def posthoc_accuracy(outputs: Float[Array, "k n"], problem: Problem, tau) -> Float[Array, " k"]:
    r"""Per-class accuracy of post-hoc logit adjustment (Menon et al. 2021): the decision
    rule :math:`\arg\max_c (z_c - \tau \log \pi_c)` with priors π_c = n_c / n from
    ``problem.counts`` (ties are wrong, as in :func:`correct`)."""
    priors = problem.counts / jnp.sum(problem.counts)
    adjusted = outputs - tau * jnp.log(priors).astype(outputs.dtype)[:, None]
    return class_means(correct(adjusted, problem).astype(outputs.dtype), problem.onehot())


def first_crossing(t: Float[ArrayLike, " s"], values: Float[ArrayLike, "s ..."],
                   threshold: float = 0.5) -> Float[Array, ...]:
    """First time ``values`` reaches ``threshold``, linearly interpolated; NaN if never.

    ``values`` has time on axis 0 and any trailing shape (e.g. classes)."""
    reached = values >= threshold
    index = jnp.argmax(reached, axis=0)
    ever = jnp.any(reached, axis=0)
    previous = jnp.maximum(index - 1, 0)
    v1 = jnp.take_along_axis(values, index[None], axis=0)[0]
    v0 = jnp.take_along_axis(values, previous[None], axis=0)[0]
    t1 = t[index]
    t0 = t[previous]
    fraction = jnp.where(v1 > v0, (threshold - v0) / jnp.where(v1 > v0, v1 - v0, 1.0), 1.0)
    crossing = jnp.where(index == 0, t[0], t0 + fraction * (t1 - t0))
    return jnp.where(ever, crossing, jnp.nan)


def _as_array(counts):
    # Traced and concrete JAX arrays stay JAX (jit/grad friendly); tuples become numpy.
    return counts if isinstance(counts, jax.Array) else np.asarray(counts)


def majority_mask(counts) -> Bool[ArrayLike, "... k"]:
    """The majority classes: those whose count is the largest over the last axis.

    ``counts`` (..., k), numpy, JAX or a sequence; the mask has the same shape."""
    counts = _as_array(counts)
    return counts == counts.max(axis=-1, keepdims=True)


def minority_mask(counts, threshold=None) -> Bool[ArrayLike, "... k"]:
    r"""The minority classes: real classes (``n_c > 0``) with ``n_c < threshold``.

    The default threshold is the largest count over the last axis, so the minorities are
    exactly the classes outside :func:`majority_mask`. The meta-objectives split a long
    tail at :math:`\sqrt{n_{\max} n_{\min}}` instead. ``counts`` (..., k); zero counts are
    the padded classes of a sweep over the number of classes."""
    counts = _as_array(counts)
    if threshold is None:
        threshold = counts.max(axis=-1, keepdims=True)
    return (counts < threshold) & (counts > 0)


def delay_ratio(times, minority, majority=None, *, dtype=None) -> np.ndarray | np.floating:
    r"""The delay ratio :math:`\bar t_{\mathrm{min}} / \bar t_{\mathrm{maj}}`: mean minority
    time over mean majority time.

    ``times`` (..., k), e.g. ``learn_time`` per class (of several seeds); ``minority`` a
    boolean mask (k,) over the last axis, ``majority`` its complement unless given (to
    leave padded classes out). The means are taken in ``dtype`` (default: that of
    ``times``). NaN where a class of either group never reached its time (NaN) or a group
    is empty. Returns shape ``times.shape[:-1]``."""
    times = np.asarray(times, dtype=dtype)
    minority = np.asarray(minority, dtype=bool)
    majority = ~minority if majority is None else np.asarray(majority, dtype=bool)
    return times[..., minority].mean(-1) / times[..., majority].mean(-1)
