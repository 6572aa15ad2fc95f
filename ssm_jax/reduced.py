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
``eps * rank`` of the within-class part of the W gradient (below 1e-12 in float64). One step
costs ``6 k^2 d^2`` flops instead of ``6 k d n``. Per-example outputs (hence exact accuracies)
are recovered at save points through ``R_i = L_c^{-1} (x_i(0) - mu_c(0))``:
``x_i = nu_c / sqrt(n_c) + Y_c R_i``. Everything is differentiable (Cholesky, matrix
products), so meta-gradients through the reduced run are exact too. The derivation is in
docs/performance.md.

Not used for adam (per-coordinate scaling breaks the shared affine map), cross-entropy and
the logit-adjusted losses, the ``class`` parametrisation (already O(k)) or deep UFMs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from . import losses, metrics
from .config import ConfigError
from .problem import Problem

MODES = ("auto", "on", "off")
METHODS = ("gd", "momentum", "flow")
PARAMETRIZATIONS = ("sample", "whitened")

# "auto" uses the reduced simulator when its estimated cost per step, times this margin
# (for its smaller matrix products and the per-save reconstruction), is below the
# per-example cost; measured with ``python -m benchmarks.run --only scaling``.
AUTO_MARGIN = 2.0


def why_not(spec) -> str | None:
    """Why the reduced simulator does not apply to ``spec`` (None when it does)."""
    if spec.loss != "mse":
        return f"loss={spec.loss!r} (it needs loss='mse')"
    if spec.parametrization not in PARAMETRIZATIONS:
        return (f"parametrization={spec.parametrization!r} (it needs one of "
                f"{', '.join(map(repr, PARAMETRIZATIONS))})")
    if spec.method not in METHODS:
        return f"method={spec.method!r} (it needs one of {', '.join(map(repr, METHODS))})"
    if getattr(spec, "depth", 1) != 1:
        return f"depth={spec.depth} (it needs depth=1)"
    return None


def flops_per_step(k: int, d: int, n: int, reduced: bool) -> int:
    """Matrix-product flops of one gradient step: ``6 k^2 d^2`` reduced (``W Y_c`` for every
    class and the two products of its backward pass), ``6 k d n`` per example (``W H`` and
    its backward)."""
    return 6 * k * k * d * d if reduced else 6 * k * d * n


def use_reduced(spec, problem: Problem) -> bool:
    """Whether :func:`ssm_jax.simulate.trajectory` takes the reduced path (static decision
    on ``spec.reduced`` and the shapes k, d, n_pad)."""
    mode = getattr(spec, "reduced", "auto")
    if mode == "off":
        return False
    reason = why_not(spec)
    if mode == "on":
        if reason is not None:
            raise ConfigError(f"reduced='on' does not apply to {reason}")
        return True
    if reason is not None:
        return False
    k, n = problem.num_classes, problem.labels.shape[-1]
    return AUTO_MARGIN * flops_per_step(k, spec.dim, n, True) < flops_per_step(
        k, spec.dim, n, False)


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
    tries = jax.vmap(lambda f: jnp.linalg.cholesky(
        fixed + (f * jax.lax.stop_gradient(base))[:, None, None] * eye))(ladder)
    ok = jnp.all(jnp.isfinite(tries), axis=(2, 3))  # (ladder, k)
    factor = ladder[jnp.argmax(ok, axis=0)]
    factor = jnp.where(jnp.any(ok, axis=0), factor, ladder[-1])
    return jnp.linalg.cholesky(scatter + (factor * base)[:, None, None] * eye)


def reduce_params(spec, problem: Problem, omega, params0):
    """The reduced state ``{"W", "Y" (d, k, d), "nu" (k, d), ["b"]}`` of full initial
    parameters, and the constants ``(counts (k,), R (n_pad, d))`` (module docstring).

    With ``C_c = L_c L_c^T - delta_c I`` (Cholesky of the class-c scatter of the trained
    features, shifted by ``delta_c = eps tr(C_c)`` so it is positive definite even when
    the class has fewer than d examples): ``Y_c(0) = L_c``, ``nu_c = sqrt(n_c) mu_c`` (class
    mean ``mu_c``) and ``R_i = L_c^{-1} (x_i(0) - mu_c)``, so ``x_i = nu_c / sqrt(n_c) +
    Y_c R_i`` holds exactly at t = 0 and, since ``Y_c`` evolves by the same linear map as
    the features, at every later time. Differentiable (no eigen- or QR decomposition)."""
    X0 = params0["H"]
    dtype = X0.dtype
    onehot = problem.onehot().astype(dtype)  # (k, n), zero on padding
    counts = onehot.sum(axis=1)
    safe = jnp.maximum(counts, 1.0)
    mean = (X0 @ onehot.T) / safe  # (d, k)
    centred = (X0 - mean[:, problem.labels]) * problem.mask  # (d, n)
    scatter = (onehot[:, None, :] * centred[None]) @ centred.T  # (k, d, d)
    L = shifted_cholesky(scatter)
    # R_i = L_{y_i}^{-1} (x_i - mu_{y_i}).
    R = jnp.sum((lower_inverse(L) @ centred) * onehot[:, None, :], axis=0).T
    # Y[:, c, :] = Y_c, stored feature-dimension first so that W @ Y is one plain GEMM.
    state = {"W": params0["W"], "Y": jnp.transpose(L, (1, 0, 2)),
             "nu": (mean * jnp.sqrt(counts)).T}
    if "b" in params0:
        state["b"] = params0["b"]
    return state, (counts, R)


def objective_fn(spec, problem: Problem, numeric, omega, constants):
    """``state -> L``: the training objective of the reduced state (exactly the
    per-example objective of the features it represents, up to the relative shift
    ``delta_c`` of :func:`reduce_params`, i.e. rounding; module docstring)."""
    counts, _ = constants
    s = scales(spec, omega)
    n = jnp.sum(problem.mask)
    k = problem.num_classes
    root = jnp.sqrt(counts)

    def objective(state):
        W, Y, nu = state["W"], state["Y"], state["nu"]
        b = state["b"] if "b" in state else jnp.zeros((k,), W.dtype)
        target = b[None, :] - jnp.eye(k, dtype=W.dtype)  # (c, k): b - e_c
        spread = jnp.sum(jnp.einsum("kd,dce->kce", W, Y) ** 2, axis=(0, 2)) / s ** 2
        mean = jnp.sum((nu @ W.T / s[:, None] + root[:, None] * target) ** 2, axis=1)
        data = jnp.sum(omega * (spread + mean)) / (2.0 * n)
        penalty = 0.5 * numeric.weight_decay * (
            jnp.sum(W ** 2) + jnp.sum(Y ** 2) + jnp.sum(nu ** 2))
        return data + penalty

    return objective


def trained_features(state, problem: Problem, constants) -> Float[Array, "d n"]:
    """The per-example trained feature variable ``H`` (d x n_pad) of a reduced state."""
    counts, R = constants
    means = state["nu"] / jnp.sqrt(jnp.maximum(counts, 1.0))[:, None]  # (k, d)
    H = jnp.einsum("dne,ne->dn", state["Y"][:, problem.labels], R) + means[problem.labels].T
    return H * problem.mask


def full_params(state, problem: Problem, constants) -> dict:
    """The per-example parameters ``{"W", "H", ["b"]}`` a reduced state stands for."""
    params = dict(state)
    params["H"] = trained_features(state, problem, constants)
    del params["Y"], params["nu"]
    return params


def outputs(spec, state, problem: Problem, omega, constants) -> Float[Array, "k n"]:
    """Per-example outputs ``z_i = (W Y_c R_i + W nu_c / sqrt(n_c)) / s_c + b`` (c = y_i),
    k x n_pad, without forming the features: one (k k x d) x (d x n) product, then each
    example keeps the block of its own class."""
    counts, R = constants
    s = scales(spec, omega)
    W = state["W"]
    WY = jnp.einsum("kd,dce->cke", W, state["Y"]) / s[:, None, None]  # (c, k, d)
    shift = (state["nu"] @ W.T) / (jnp.sqrt(jnp.maximum(counts, 1.0)) * s)[:, None]  # (c, k)
    every = jnp.einsum("cke,ne->ckn", WY, R) + shift[:, :, None]  # (c, k, n)
    z = jnp.einsum("ckn,cn->kn", every, problem.onehot().astype(W.dtype))
    if "b" in state:
        z = z + state["b"][:, None]
    return z


def observe_fn(spec, problem: Problem, numeric, omega, constants, full_observe):
    """``state -> dict``: the same observations as :func:`ssm_jax.simulate.observe_fn`.

    With ``keep_params`` or ``geometry`` the full parameters are rebuilt and passed to
    ``full_observe`` (the per-example observer); otherwise only the outputs are formed."""
    objective = objective_fn(spec, problem, numeric, omega, constants)
    per_example = losses.per_example(spec.loss)
    if spec.keep_params or getattr(spec, "geometry", False):
        return lambda state: full_observe(full_params(state, problem, constants))

    def observe(state):
        z = outputs(spec, state, problem, omega, constants)
        seen = metrics.snapshot(z, problem, per_example)
        seen["posthoc_per_class_accuracy"] = metrics.posthoc_accuracy(z, problem, numeric.tau)
        seen["loss"] = objective(state)
        return seen

    return observe


def reduce(spec, problem: Problem, numeric, omega, params0, full_observe):
    """``(state0, objective, observe)`` of the reduced simulator, drop-in replacements for
    the per-example ``(params0, objective, observe)`` in :func:`ssm_jax.simulate.trajectory`
    (any optimiser that is linear in the gradient, or gradient flow)."""
    state0, constants = reduce_params(spec, problem, omega, params0)
    objective = objective_fn(spec, problem, numeric, omega, constants)
    observe = observe_fn(spec, problem, numeric, omega, constants, full_observe)
    return state0, objective, observe


__all__ = ["MODES", "METHODS", "why_not", "flops_per_step", "use_reduced", "reduce",
           "reduce_params", "objective_fn", "observe_fn", "outputs", "full_params",
           "trained_features", "scales", "shifted_cholesky", "lower_inverse"]
