r"""Minibatch sampling for stochastic gradient descent (``--batch-size B --sampling S``).

A step's minibatch is represented by a factor per example, :math:`s_i = m_i\,n/|B|`, with
:math:`m_i` the number of times example i is in the batch: the minibatch loss

.. math:: L_B = \frac{1}{|B|}\sum_{b\in B} \omega_{y_b}\,\ell_b
          + \frac\lambda2\left(\lVert W\rVert_F^2 + \lVert H\rVert_F^2\right)
          = \frac1n\sum_i s_i\,\omega_{y_i}\,\ell_i + \text{penalty}

is the full objective with every example weight multiplied by :math:`s_i` (weight decay
acts on the whole of W and H at every step, as an optimiser's weight decay does). Every
model, loss and optimiser therefore runs unchanged; the cost of a step stays that of a full
batch (the model has no per-example cost to save beyond the outputs), and the run is
exactly the stochastic one.

Samplers (:data:`ssm_jax.registry.SAMPLINGS`):

* ``uniform``: epochs of a random permutation, drawn without replacement: the epoch's
  batches are consecutive slices of B examples of the permutation (the last one smaller
  when B does not divide n). With ``B >= n`` every step is the full batch, exactly.
* ``class_balanced``: B independent draws, each a class chosen uniformly, then an example
  of it uniformly (Kang et al. 2020's class-balanced sampling; with replacement).
* ``sqrt``: the same with class probabilities proportional to :math:`\sqrt{n_c}`.

In expectation over the draws, :math:`\mathbb E[s_i] = n\,p_i` with :math:`p_i` the
probability that a draw is example i: :math:`1/n` (uniform), :math:`1/(k n_c)`
(class-balanced), :math:`\sqrt{n_c}/(n_c \sum_j \sqrt{n_j})` (sqrt). So ERM with
class-balanced sampling has, in expectation, the gradient of power weights with
:math:`\gamma = 1` under uniform sampling, and ``sqrt`` that of :math:`\gamma = 1/2`
(:attr:`~ssm_jax.registry.Sampling.expected_gamma`); they differ in the noise (docs,
"Schedules, sampling and margin losses").

Randomness: step j's batch is a pure function of ``(key, j)`` (``uniform``: of the key and
the epoch), with ``key`` derived from the run's key (:func:`sampling_key`), so the same
seed gives the same batches, and example i's draw uses ``fold_in(key, i)``, so padding a
problem (sweeps) does not change them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .problem import Problem
from .registry import SAMPLINGS

# Folded into a run's PRNG key to give its batches their own stream (the initialisation
# keeps the run's key, so a minibatch run starts where the full-batch run does).
SAMPLING_STREAM = 0x5A3D


def sampling_key(key: PRNGKeyArray) -> PRNGKeyArray:
    """The key of a run's minibatches, derived from the run's key."""
    return jax.random.fold_in(key, SAMPLING_STREAM)


def _per_example_uniform(key: PRNGKeyArray, n: int, dtype) -> Float[Array, " n"]:
    """Uniform numbers, example i's from ``fold_in(key, i)`` (independent of padding)."""
    return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (), dtype))(
        jnp.arange(n))


def uniform_scale(key: PRNGKeyArray, step, problem: Problem, batch_size: int
                  ) -> Float[Array, " n"]:
    """Epochs of a random permutation of the real examples, cut into batches of
    ``batch_size`` (the last of an epoch holds the rest): the factors of step ``step``."""
    dtype = problem.mask.dtype
    n_pad = problem.labels.shape[-1]
    n = jnp.sum(problem.mask)
    per_epoch = jnp.ceil(n / batch_size).astype(jnp.int32)
    epoch, position = jnp.divmod(jnp.asarray(step, jnp.int32), per_epoch)
    # Padding sorts last, so the real examples' order is a uniform random permutation.
    keys = jnp.where(problem.mask > 0, _per_example_uniform(jax.random.fold_in(key, epoch),
                                                            n_pad, dtype), 2.0)
    rank = jnp.argsort(jnp.argsort(keys))
    first = position * batch_size
    size = jnp.minimum(batch_size, n - first)
    chosen = (rank >= first) & (rank < first + batch_size) & (problem.mask > 0)
    return jnp.where(chosen, n / size, 0.0).astype(dtype)


def class_draw_scale(key: PRNGKeyArray, step, problem: Problem, batch_size: int,
                     class_logits: Float[Array, " k"]) -> Float[Array, " n"]:
    """``batch_size`` independent draws, each a class from ``softmax(class_logits)`` and
    then one of its examples uniformly: the factors of step ``step``. Examples are laid
    out class by class (:mod:`ssm_jax.problem`)."""
    dtype = problem.mask.dtype
    n_pad = problem.labels.shape[-1]
    counts = problem.example_counts()
    starts = jnp.cumsum(counts) - counts
    step_key = jax.random.fold_in(key, step)

    def draw(b):
        key_class, key_example = jax.random.split(jax.random.fold_in(step_key, b))
        c = jax.random.categorical(key_class, class_logits)
        offset = jnp.floor(jax.random.uniform(key_example, (), dtype) * counts[c])
        return (starts[c] + jnp.minimum(offset, counts[c] - 1)).astype(jnp.int32)

    picks = jax.vmap(draw)(jnp.arange(batch_size))
    hits = jnp.zeros((n_pad,), dtype).at[picks].add(1.0)
    return hits * jnp.sum(problem.mask) / batch_size


def class_power_scale(key: PRNGKeyArray, step, problem: Problem, batch_size: int,
                      power: float) -> Float[Array, " n"]:
    """:func:`class_draw_scale` with class probabilities proportional to ``n_c^power``."""
    counts = problem.example_counts()
    logits = jnp.where(counts > 0, power * jnp.log(jnp.maximum(counts, 1.0)), -jnp.inf)
    return class_draw_scale(key, step, problem, batch_size, logits)


def class_balanced_scale(key: PRNGKeyArray, step, problem: Problem, batch_size: int
                         ) -> Float[Array, " n"]:
    """The ``class_balanced`` sampler: every class equally likely per draw."""
    return class_power_scale(key, step, problem, batch_size, 0.0)


def sqrt_scale(key: PRNGKeyArray, step, problem: Problem, batch_size: int
               ) -> Float[Array, " n"]:
    """The ``sqrt`` sampler: class probabilities proportional to ``sqrt(n_c)``."""
    return class_power_scale(key, step, problem, batch_size, 0.5)


def batch_scale(sampling: str, key: PRNGKeyArray, step, problem: Problem, batch_size: int
                ) -> Float[Array, " n"]:
    """The per-example factors of step ``step``'s minibatch under a registered sampler."""
    return SAMPLINGS[sampling].scale(key, step, problem, batch_size)

