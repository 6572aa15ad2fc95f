r"""The exact reduced simulator for the squared loss: a per-step cost independent of n.

For the squared loss every trained feature column of class c receives the same affine
update (gradient descent, heavy-ball momentum and gradient flow alike):

.. math:: x_i \leftarrow A_c x_i + a_c, \qquad
          A_c = (1 - \eta\lambda) I - \frac{\eta\,\omega_c}{n s_c^2} W^\top W, \quad
          a_c = \frac{\eta\,\omega_c}{n s_c} W^\top (e_c - b),

(``s_c = 1`` for ``sample``; ``s_c = sqrt(omega_c)`` for ``whitened``, whose features are
``h = x / s``). So ``x_i(t) = Phi_c(t) (x_i(0) - mu_c(0)) + mu_c(t)`` with one d x d matrix
``Phi_c`` per class and the class mean ``mu_c``. Factor the class-c scatter of the initial
features, ``C_c = sum_i (x_i - mu_c)(x_i - mu_c)^T = L_c L_c^T - delta_c I`` (Cholesky,
shifted by a rounding-level ``delta_c`` so that singular scatters, e.g. classes with fewer
than d examples, factor too), and track

* ``Y_c = Phi_c L_c`` (d x d), ``nu_c = sqrt(n_c) mu_c`` (d), and ``W``, ``b``.

The objective in these coordinates is

.. math:: L = \sum_c \frac{\omega_c}{2n}\Big(\frac{\lVert W Y_c\rVert_F^2}{s_c^2}
          + \Big\lVert \frac{W \nu_c}{s_c} + \sqrt{n_c}(b - e_c)\Big\rVert^2\Big)
          + \frac{\lambda}{2}\Big(\lVert W\rVert_F^2 + \sum_c \lVert Y_c\rVert_F^2
          + \lVert \nu_c\rVert^2\Big),

and plain gradient descent (momentum, gradient flow) on ``(W, b, Y, nu)`` with it is the
per-example run: ``Y_c`` moves by the same linear map as ``Phi_c``, ``nu_c`` as the
class mean. The only difference is ``delta_c``, a relative perturbation of order
``eps * rank`` of the within-class part of the W gradient (below 1e-12 in float64).

*Pooling.* Classes with the same count always have the same weight ``omega_c`` (and
``s_c``), hence the same map ``A_c`` and the same ``Phi_c``: their scatters can be pooled,
``C_g = sum_{c in g} C_c = L_g L_g^T - delta_g I``, with one ``Y_g = Phi_g L_g`` per group
g (``Spec.class_groups``, from :func:`~ssm_jax.config.class_groups_of`: two groups for the
step profile, whatever the ratio). The within-class terms above become ``sum_g omega_g ||W Y_g||^2 /
s_g^2`` and ``sum_g ||Y_g||^2``; the means stay per class. One step costs ``6 G k d^2``
flops (G groups, G <= k) instead of ``6 k d n``. Per-example outputs (hence exact accuracies)
are recovered at save points through ``R_i = L_c^{-1} (x_i(0) - mu_c(0))``:
``x_i = nu_c / sqrt(n_c) + Y_c R_i``. Everything is differentiable (Cholesky, matrix
products), so meta-gradients through the reduced run are exact too. The derivation is in
docs/performance.md.

*Layout.* The state is ``{"W", "V", ["b"]}`` with ``V = [Y_1 ... Y_G | nu_1 ... nu_k]``
(d x (G d + k)): every term of the objective is a column of the one product ``W V``, so a
step is three matrix products (``W V`` and the two of its gradient) and elementwise work
(docs/performance.md section 5). ``V`` is stored flat, ``(d (G d + k),)`` in row-major
order (:func:`matrix` reads it as the matrix): under ``vmap`` a Runge-Kutta solver stacks
its stages of each state leaf, and XLA's CPU code transposes a stack of flat leaves
several times faster than one of d x 138 matrices. :func:`blocks` splits ``V`` into ``Y``
(d, G, d) and ``nu`` (k, d); :func:`join` builds it.

Not used for adam (per-coordinate scaling breaks the shared affine map), cross-entropy and
the logit-adjusted losses, the ``class`` parametrisation (already O(k)) or deep UFMs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import losses, metrics
from .config import (
    REDUCED_MODES,
    ConfigError,
    class_groups_of,
    minibatch_why_not,
    reduced_why_not,
)
from .dynamics import discrete
from .problem import Problem

MODES = REDUCED_MODES

# "auto" uses the reduced simulator when its estimated cost per step, times this margin
# (for its smaller matrix products and the per-save reconstruction), is below the
# per-example cost; measured with ``python -m benchmarks.run --only scaling``.
AUTO_MARGIN = 2.0


why_not = reduced_why_not  # the loss, parametrisation and method declare ``reducible``


def groups_of(spec, k: int) -> np.ndarray:
    """Group id of each class (k,), static: ``spec.class_groups`` or one group per class."""
    groups = spec.class_groups
    if groups is None:
        return np.arange(k)
    if len(groups) != k:
        raise ConfigError(f"class_groups={list(groups)} has {len(groups)} entries for "
                          f"{k} classes")
    return np.asarray(groups)


def num_groups(spec, k: int) -> int:
    return int(groups_of(spec, k).max()) + 1


def flops_per_step(k: int, d: int, n: int, reduced: bool, groups: int | None = None) -> int:
    """Matrix-product flops of one gradient step: ``6 G k d^2`` reduced (``W Y_g`` for every
    group, default G = k, and the two products of its backward pass), ``6 k d n`` per
    example (``W H`` and its backward)."""
    groups = k if groups is None else groups
    return 6 * groups * k * d * d if reduced else 6 * k * d * n


def use_reduced(spec, problem: Problem) -> bool:
    """Whether :func:`ssm_jax.simulate.trajectory` takes the reduced path (static decision
    on ``spec.reduced`` and the shapes k, d, n_pad)."""
    mode = spec.reduced
    if mode == "off":
        return False
    reason = why_not(spec) or minibatch_why_not(spec.batch_size, spec.sampling,
                                                problem.labels.shape[-1])
    if mode == "on":
        if reason is not None:
            raise ConfigError(f"reduced='on' does not apply to {reason}")
        return True
    if reason is not None:
        return False
    k, n = problem.num_classes, problem.labels.shape[-1]
    return AUTO_MARGIN * flops_per_step(k, spec.dim, n, True, num_groups(spec, k)) < (
        flops_per_step(k, spec.dim, n, False))


def _first_classes(spec, k: int) -> np.ndarray:
    """The first class of each group (G,), static: weights and scales are read there."""
    groups = groups_of(spec, k)
    return np.array([int(np.argmax(groups == g)) for g in range(num_groups(spec, k))])


def _per_column(spec, of_group: Float[Array, " k"], of_class: Float[Array, " k"]):
    """A value per column of ``V = [Y_1 ... Y_G | nu_1 ... nu_k]``: ``of_group`` read at
    each group's first class (equal within a group) for its d columns, then ``of_class``."""
    first = _first_classes(spec, of_group.shape[0])
    return jnp.concatenate([jnp.repeat(of_group[first], spec.dim), of_class])


def _in_group(spec, problem: Problem, dtype) -> Float[Array, "G n"]:
    """0/1 indicator of the group of each example (G, n_pad), zero on padding."""
    groups = groups_of(spec, problem.num_classes)
    member = groups[None, :] == np.arange(num_groups(spec, problem.num_classes))[:, None]
    return jnp.asarray(member, dtype) @ problem.onehot().astype(dtype)


def matrix(spec, V: Float[Array, " dm"]) -> Float[Array, "d m"]:
    """The state matrix ``V`` (d x (G d + k)) of its flat storage (module docstring,
    Layout)."""
    return V.reshape(spec.dim, -1)


def blocks(spec, V: Float[Array, " dm"], k: int):
    """``(Y (d, G, d), nu (k, d))`` of the (flat) state matrix ``V``."""
    V = matrix(spec, V)
    d = V.shape[0]
    G = num_groups(spec, k)
    return V[:, :G * d].reshape(d, G, d), V[:, G * d:G * d + k].T


def join(spec, Y: Float[Array, "d G d"], nu: Float[Array, "k d"]) -> Float[Array, " dm"]:
    """The flat state matrix ``V = [Y_1 ... Y_G | nu_1 ... nu_k]`` (d x (G d + k), stored
    row-major as a vector)."""
    d, G, _ = Y.shape
    return jnp.concatenate([Y.reshape(d, G * d), nu.T], axis=1).reshape(-1)


def scales(spec, omega: Float[Array, " k"]) -> Float[Array, " k"]:
    """``s_c``: per-example features are ``x_i / s_{y_i}`` (see :func:`ssm_jax.model.features`)."""
    if spec.parametrization == "whitened":
        root = jnp.sqrt(omega)
        return jnp.where(root > 0, root, 1.0)
    return jnp.ones_like(omega)


def lower_inverse(L: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    """Inverse of lower-triangular matrices by forward substitution, one row per iteration
    of a ``fori_loop`` (LAPACK's batched triangular solve is very slow on CPU for small
    matrices, and an unrolled blocked inverse is slow to compile)."""
    d = L.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(d, dtype=L.dtype), L.shape)

    def row(j, X):
        # rows >= j of X are still zero, so L[j] @ X sums over the rows already solved
        value = (eye[..., j, :] - jnp.einsum("...i,...ie->...e", L[..., j, :], X))
        return X.at[..., j, :].set(value / L[..., j, j][..., None])

    return jax.lax.fori_loop(0, d, row, jnp.zeros_like(L))


@jax.custom_jvp
def cholesky(A: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    """Lower Cholesky factors of symmetric positive-definite matrices, column by column in a
    ``fori_loop`` (NaN where a matrix is not numerically positive definite, as LAPACK's).

    Pure JAX rather than ``jnp.linalg.cholesky``: jaxlib's batched LAPACK kernel waits on
    the CPU thread pool it shares with XLA, which stalls when several host devices run at
    once (``jax_num_cpu_devices > 1``, as sweeps use to occupy every core). The derivative
    is the analytic one, ``dL = L Phi(L^-1 dA L^-T)`` (``Phi``: lower triangle, halved
    diagonal), so reverse mode stores no loop history."""
    d = A.shape[-1]
    index = jnp.arange(d)

    def column(j, L):
        # Columns >= j of L are still zero, so L @ L[j] sums over the columns already done.
        rest = A[..., :, j] - jnp.einsum("...ie,...e->...i", L, L[..., j, :])
        value = rest / jnp.sqrt(rest[..., j])[..., None]
        return L.at[..., :, j].set(jnp.where(index >= j, value, 0.0))

    return jax.lax.fori_loop(0, d, column, jnp.zeros_like(A))


@cholesky.defjvp
def _cholesky_jvp(primals, tangents):
    (A,), (dA,) = primals, tangents
    L = cholesky(A)
    inverse = lower_inverse(L)
    dA = 0.5 * (dA + jnp.swapaxes(dA, -1, -2))
    inner = inverse @ dA @ jnp.swapaxes(inverse, -1, -2)
    phi = jnp.tril(inner) - 0.5 * jnp.eye(A.shape[-1], dtype=A.dtype) * inner
    return L, L @ phi


SHIFT_LADDER = (2.0, 32.0, 512.0, 8192.0, 131072.0)


def shifted_cholesky(scatter: Float[Array, "k d d"]) -> Float[Array, "k d d"]:
    """Cholesky factors of ``scatter_c + delta_c I`` with the smallest ``delta_c`` of
    ``f eps (tr scatter_c + mean_c tr scatter_c)``, f in :data:`SHIFT_LADDER`, that makes
    the (positive semi-definite, possibly singular) matrix numerically positive definite.
    The choice is made without gradient; the factor is differentiable."""
    d = scatter.shape[-1]
    dtype = scatter.dtype
    trace = jnp.trace(scatter, axis1=1, axis2=2)
    base = jnp.finfo(dtype).eps * (trace + jnp.mean(trace)) + jnp.finfo(dtype).tiny ** 0.5
    eye = jnp.eye(d, dtype=dtype)
    fixed = jax.lax.stop_gradient(scatter)
    ladder = jnp.asarray(SHIFT_LADDER, dtype)
    tries = jax.vmap(lambda f: cholesky(
        fixed + (f * jax.lax.stop_gradient(base))[:, None, None] * eye))(ladder)
    ok = jnp.all(jnp.isfinite(tries), axis=(2, 3))  # (ladder, k)
    factor = ladder[jnp.argmax(ok, axis=0)]
    factor = jnp.where(jnp.any(ok, axis=0), factor, ladder[-1])
    return cholesky(scatter + (factor * base)[:, None, None] * eye)


def reduce_params(spec, problem: Problem, omega, params0):
    """The reduced state ``{"W", "V", ["b"]}`` of full initial parameters (``V``, flat,
    holds ``Y`` (d, G, d) and ``nu`` (k, d), module docstring), and the constants
    ``(counts (k,), R (n_pad, d))``.

    With ``C_g = L_g L_g^T - delta_g I`` (Cholesky of the scatter of the trained features
    about their class means, pooled over the classes of group g, shifted by
    ``delta_g = eps tr(C_g)`` so it is positive definite even when the group has fewer
    than d examples): ``Y_g(0) = L_g``, ``nu_c = sqrt(n_c) mu_c`` (class mean ``mu_c``) and
    ``R_i = L_g^{-1} (x_i(0) - mu_c)``, so ``x_i = nu_c / sqrt(n_c) + Y_g R_i`` holds exactly
    at t = 0 and, since ``Y_g`` evolves by the same linear map as the features of its
    classes, at every later time. Differentiable (no eigen- or QR decomposition)."""
    X0 = params0["H"]
    dtype = X0.dtype
    onehot = problem.onehot().astype(dtype)  # (k, n), zero on padding
    in_group = _in_group(spec, problem, dtype)  # (G, n)
    counts = onehot.sum(axis=1)
    safe = jnp.maximum(counts, 1.0)
    mean = (X0 @ onehot.T) / safe  # (d, k)
    # (d, n); the class means spread by a product with the one-hot labels rather than a
    # gather, which XLA would fuse into (and repeat inside) the scatter's product
    centred = X0 * problem.mask - mean @ onehot
    scatter = (in_group[:, None, :] * centred[None]) @ centred.T  # (G, d, d)
    L = shifted_cholesky(scatter)
    # R_i = L_{g(y_i)}^{-1} (x_i - mu_{y_i}).
    # every group's map on every example (G, d, n); each example keeps its own group's
    R = losses.class_sum((lower_inverse(L) @ centred) * in_group[:, None, :]).T
    # Y[:, g, :] = Y_g, feature dimension first, inside V = [Y | nu] (Layout)
    state = {"W": params0["W"],
             "V": join(spec, jnp.transpose(L, (1, 0, 2)), (mean * jnp.sqrt(counts)).T)}
    if "b" in params0:
        state["b"] = params0["b"]
    return state, (counts, R)


def objective_fn(spec, problem: Problem, numeric, omega, constants):
    """``state -> L`` (:func:`objective_parts` without the data term)."""
    parts = objective_parts(spec, problem, numeric, omega, constants)
    return lambda state, *phase: parts(state, *phase)[0]


def objective_parts(spec, problem: Problem, numeric, omega, constants):
    """``state -> (L, data term)``: the training objective of the reduced state (exactly the
    per-example objective of the features it represents, up to the relative shift
    ``delta_c`` of :func:`reduce_params`, i.e. rounding; module docstring).

    Every term is a column of ``E = W V / s + offset`` (k x columns of ``V``): column j of
    ``Y_g`` gives ``W Y_g[:, j] / s_g``, column c of ``nu`` gives ``W nu_c / s_c + sqrt(n_c)
    (b - e_c)``; ``L = sum_j w_j ||E_j||^2 + penalty`` with ``w = omega_g / 2n`` and
    ``omega_c / 2n``. One product forms ``E``; reverse mode adds the two of its gradient,
    ``dE V^T`` and ``W^T dE``. The training steps check the data term for divergence
    (``discrete.run(..., has_aux=True)``), so the penalty's two passes over the state are
    not evaluated inside the loop.

    ``(state, omega_t)`` uses the class weights in effect (a weight schedule's phase) in the
    data term; the scales ``s_c`` stay those of ``omega`` (a schedule never applies to the
    whitened parametrisation, whose scales depend on the weights)."""
    counts, _ = constants
    s = scales(spec, omega)
    n = jnp.sum(problem.mask)
    k = problem.num_classes
    root = jnp.sqrt(counts)
    spread = num_groups(spec, k) * spec.dim  # columns of the Y_g
    # per column of V: omega / 2n and 1 / s of its group or class
    weight = _per_column(spec, omega, omega) / (2.0 * n)
    inverse_scale = 1.0 / _per_column(spec, s, s)

    def objective(state, omega_t=None):
        w = weight if omega_t is None else _per_column(spec, omega_t, omega_t) / (2.0 * n)
        W, V = state["W"], matrix(spec, state["V"])
        b = state["b"] if "b" in state else jnp.zeros((k,), W.dtype)
        # sqrt(n_c) (b - e_c) in the column of nu_c, zero in those of the Y_g
        target = (b[:, None] - jnp.eye(k, dtype=W.dtype)) * root[None, :]
        offset = jnp.concatenate([jnp.zeros((k, spread), W.dtype), target], axis=1)
        E = (W @ V) * inverse_scale + offset
        data = jnp.sum(w * (E * E))
        penalty = 0.5 * numeric.weight_decay * (jnp.sum(W ** 2) + jnp.sum(V ** 2))
        return data + penalty, data

    return objective


def trained_features(spec, state, problem: Problem, constants) -> Float[Array, "d n"]:
    """The per-example trained feature variable ``H`` (d x n_pad) of a reduced state."""
    counts, R = constants
    group = jnp.asarray(groups_of(spec, problem.num_classes))[problem.labels]  # (n,)
    Y, nu = blocks(spec, state["V"], problem.num_classes)
    means = nu / jnp.sqrt(jnp.maximum(counts, 1.0))[:, None]  # (k, d)
    H = jnp.einsum("dne,ne->dn", Y[:, group], R) + means[problem.labels].T
    return H * problem.mask


def full_params(spec, state, problem: Problem, constants) -> dict:
    """The per-example parameters ``{"W", "H", ["b"]}`` a reduced state stands for."""
    params = dict(state)
    params["H"] = trained_features(spec, state, problem, constants)
    del params["V"]
    return params


def output_parts(spec, state, problem: Problem, omega, constants) -> dict:
    """What the per-example outputs of a reduced state depend on, small and independent of
    n: ``"WV"`` (k, G d + k), the columns of ``W V`` scaled to outputs (``W Y_g / s_g``,
    then, column c, the output of the class-c mean ``W nu_c / (sqrt(n_c) s_c)``), and
    ``"b"`` with a bias. :func:`outputs_of` multiplies it by :func:`design`."""
    counts, _ = constants
    s = scales(spec, omega)
    scale = _per_column(spec, s, jnp.sqrt(jnp.maximum(counts, 1.0)) * s)
    parts = {"WV": (state["W"] @ matrix(spec, state["V"])) / scale}
    if "b" in state:
        parts["b"] = state["b"]
    return parts


def design(spec, problem: Problem, constants) -> Float[Array, "m n"]:
    """The constant (G d + k) x n_pad matrix that turns :func:`output_parts` into outputs:
    column i holds ``R_i`` in the rows of its group's block and a one in the row of its
    class, so that ``WV @ design`` is ``W Y_g R_i / s_g + W nu_c / (sqrt(n_c) s_c)``
    (zero on padding)."""
    _, R = constants
    in_group = _in_group(spec, problem, R.dtype)  # (G, n)
    spread = (in_group[:, None, :] * R.T[None]).reshape(-1, R.shape[0])  # (G d, n)
    return jnp.concatenate([spread, problem.onehot().astype(R.dtype)])


def outputs_of(spec, parts: dict, problem: Problem, constants,
               basis: Float[Array, "m n"] | None = None) -> Float[Array, "... k n"]:
    """Per-example outputs ``z_i = W Y_g R_i / s_g + W nu_c / (sqrt(n_c) s_c) + b`` (c = y_i
    in group g), k x n_pad, from :func:`output_parts`, which may carry leading save axes:
    one (... k x (G d + k)) x ((G d + k) x n) product with :func:`design` (``basis``, when
    already formed)."""
    basis = design(spec, problem, constants) if basis is None else basis
    z = parts["WV"] @ basis
    if "b" in parts:
        z = z + parts["b"][..., :, None]
    return z


def outputs(spec, state, problem: Problem, omega, constants) -> Float[Array, "k n"]:
    """Per-example outputs (k x n_pad) of a reduced state, without forming the features
    (:func:`outputs_of` of :func:`output_parts`)."""
    return outputs_of(spec, output_parts(spec, state, problem, omega, constants), problem,
                      constants)


# Outputs formed at once by the expansion of a block of save points, per run: the block's
# (saves x k x n) outputs are about 1 MB, large enough for a fast matrix product and small
# enough to stay in cache for the metrics that read them (docs/performance.md sections 4-5).
EXPAND_BLOCK_FLOATS = 1 << 18


def save_block(saves: int, k: int, n: int) -> int:
    """Save points expanded together (:data:`EXPAND_BLOCK_FLOATS`), in blocks of equal size."""
    most = max(1, min(saves, EXPAND_BLOCK_FLOATS // max(k * n, 1)))
    blocks = -(-saves // most)
    return -(-saves // blocks)


def observe_fn(spec, problem: Problem, numeric, omega, constants, full_observe):
    """The same observations as :func:`ssm_jax.simulate.observe_fn`, as a
    :class:`~ssm_jax.dynamics.discrete.Deferred` observer: each save point records
    :func:`output_parts` and the loss (O(G k d^2), independent of n); after the run the
    outputs of a block of save points are one matrix product with :func:`design`
    (:func:`outputs_of`) and the metrics are read off them.

    With ``keep_params`` or ``geometry`` the full parameters are rebuilt at each save point
    and passed to ``full_observe`` (the per-example observer)."""
    objective = objective_fn(spec, problem, numeric, omega, constants)
    per_example = losses.per_example(spec.loss)
    if spec.keep_params or spec.geometry:
        return lambda state, *phase: full_observe(full_params(spec, state, problem, constants),
                                                  *phase)

    def record(state, omega_t=None):
        parts = output_parts(spec, state, problem, omega, constants)
        parts["loss"] = objective(state, omega_t)
        return parts

    def metrics_of(parts, basis):
        z = outputs_of(spec, parts, problem, constants, basis)
        seen = metrics.snapshot(z, problem, per_example)
        seen["posthoc_per_class_accuracy"] = metrics.posthoc_accuracy(z, problem, numeric.tau)
        seen["loss"] = parts["loss"]
        return seen

    def expand(records):
        saves = records["loss"].shape[0]
        k, n = problem.num_classes, problem.labels.shape[-1]
        block = save_block(saves, k, n)
        num_blocks = -(-saves // block)
        # Pad with copies of the last record to whole blocks (one compiled body, no
        # remainder), expand block by block, drop the padding.
        padded = jax.tree.map(lambda a: jnp.concatenate(
            [a, jnp.repeat(a[-1:], num_blocks * block - saves, axis=0)]).reshape(
                (num_blocks, block) + a.shape[1:]), records)
        basis = design(spec, problem, constants)  # formed once for all blocks
        seen = jax.lax.map(jax.vmap(lambda parts: metrics_of(parts, basis)), padded)
        return jax.tree.map(lambda a: a.reshape((num_blocks * block,) + a.shape[2:])[:saves],
                            seen)

    return discrete.Deferred(record, expand)


def reduce(spec, problem: Problem, numeric, omega, params0, full_observe):
    """``(state0, objective_parts, observe)`` of the reduced simulator, drop-in replacements
    for the per-example ones in :func:`ssm_jax.simulate.trajectory` (any optimiser that is
    linear in the gradient, or gradient flow); ``objective_parts`` returns ``(L, data
    term)`` as :func:`ssm_jax.simulate.objective_parts` does."""
    state0, constants = reduce_params(spec, problem, omega, params0)
    objective = objective_parts(spec, problem, numeric, omega, constants)
    observe = observe_fn(spec, problem, numeric, omega, constants, full_observe)
    return state0, objective, observe


__all__ = ["MODES", "why_not", "class_groups_of", "groups_of", "num_groups",
           "flops_per_step", "use_reduced", "reduce", "reduce_params", "objective_fn",
           "objective_parts",
           "observe_fn", "outputs", "output_parts", "outputs_of", "design", "save_block",
           "matrix", "blocks", "join", "full_params", "trained_features", "scales", "cholesky",
           "shifted_cholesky", "lower_inverse"]
