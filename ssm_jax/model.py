r"""The unconstrained features model (UFM): parameters, parametrisations, initialisations.

Parameters are a dict pytree ``{"W": (k, d), "H": (d, m)}`` plus ``"b": (k,)`` when a bias
is trained. What the trained feature variable ``H`` means depends on the parametrisation:

* ``sample``: ``H`` is d x n, one free feature column per example (the standard UFM).
* ``class``: ``H`` is d x k, one feature shared by every example of a class (the collapsed
  model); example i uses column ``y_i``.
* ``whitened``: the trained variable is ``G = H Ω^{1/2}`` (d x n), with Ω the diagonal of
  per-example weights; the features are ``h_i = g_i / sqrt(omega_{y_i})``. The loss value is
  the same as for ``sample``; only the geometry of gradient flow changes.

Outputs are ``Z = W H + b 1^T`` (k x n).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .problem import Problem
from .registry import PARAMETRIZATIONS, ConfigError

# The UFM's parameters: arrays "W", "H" and optionally "b" and "V" (depth). Networks that
# reuse outputs() (the digits MLP) carry further entries, so the values are any pytree.
Params = dict[str, Any]


def example_weights(problem: Problem, omega: Float[Array, " k"]) -> Float[Array, " n"]:
    """Per-example weight omega_{y_i} (zero on padding)."""
    return omega[problem.labels] * problem.mask


def features(params: Params, problem: Problem, omega: Float[Array, " k"],
             parametrization: str) -> Float[Array, "d n"]:
    """Per-example features H (d x n_pad) for any registered parametrisation."""
    return PARAMETRIZATIONS[parametrization].features(params, problem, omega)


# The code of the registry's parametrisations (ssm_jax.registry.PARAMETRIZATIONS names
# each one): how the trained feature variable gives the per-example features H.


def sample_features(params: Params, problem: Problem, omega):
    """One free feature column per example: H itself."""
    return params["H"]


def class_features(params: Params, problem: Problem, omega):
    """One shared column per class, repeated for its examples."""
    return params["H"][:, problem.labels]


def whitened_features(params: Params, problem: Problem, omega):
    """H = G Omega^(-1/2) from the trained G."""
    root = jnp.sqrt(omega[problem.labels])
    # A class of weight zero has no loss, so its features are simply G.
    return params["H"] / jnp.where(root > 0, root, 1.0)


def penultimate(params: Params, feats: Float[Array, "d n"]) -> Float[Array, "d n"]:
    """The features the classifier sees: ``V_{L-1} ... V_1 H`` for a deep linear UFM (params
    ``"V"`` of shape (L-1, d, d), ``V[0]`` applied first), or ``H`` itself (depth 1)."""
    if "V" not in params:
        return feats
    return jax.lax.fori_loop(0, params["V"].shape[0], lambda l, x: params["V"][l] @ x, feats)


def outputs(params: Params, feats: Float[Array, "d n"]) -> Float[Array, "k n"]:
    """Classifier outputs Z = W H (+ b), or Z = W V_{L-1} ... V_1 H (+ b) with depth L > 1."""
    z = params["W"] @ penultimate(params, feats)
    if "b" in params:
        z = z + params["b"][:, None]
    return z


def feature_columns(parametrization: str, problem: Problem) -> int:
    """Number of columns of the trained feature variable."""
    per_class = PARAMETRIZATIONS[parametrization].per_class
    return problem.num_classes if per_class else problem.labels.shape[-1]


def init_gaussian(key: PRNGKeyArray, problem: Problem, dim: int, scale, parametrization: str,
                  bias: bool, dtype, depth: int = 1) -> Params:
    """Entries i.i.d. N(0, scale^2). Feature column i is drawn from ``fold_in(key_H, i)``, so
    a run's initial features do not depend on how far the problem is padded. With
    ``depth`` L > 1 the L-1 inner layers ``"V"`` (L-1, d, d) are drawn i.i.d. N(0, scale^2)
    too, from a key folded out of ``key`` (W and H are the same as at depth 1)."""
    k = problem.num_classes
    key_w, key_h = jax.random.split(key)
    W = scale * jax.random.normal(key_w, (k, dim), dtype)
    m = feature_columns(parametrization, problem)
    columns = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key_h, i), (dim,), dtype))(
        jnp.arange(m)
    )
    H = scale * columns.T
    if parametrization != "class":
        H = H * problem.mask
    params = {"W": W, "H": H}
    if depth > 1:
        key_v = jax.random.fold_in(key, 1_000_003)
        params["V"] = scale * jax.random.normal(key_v, (depth - 1, dim, dim), dtype)
    if bias:
        params["b"] = jnp.zeros((k,), dtype)
    return params


def aligned_amplitudes(z0, counts: Float[Array, " k"], omega: Float[Array, " k"],
                       parametrization: str, depth: int = 1) -> tuple[Array, Array]:
    r"""Balanced amplitudes (alpha_c, beta_c) of the spectrally aligned initialisation.

    Row c of W is alpha_c u_c and every class-c column of the trained feature variable is
    beta_c u_c. Balance: ||W_c|| = ||class-c block of H (or G)||, i.e. alpha_c = beta_c sqrt(m_c)
    with m_c = n_c (sample, whitened) or 1 (class). Own output z0: alpha_c beta_c = z0, or
    z0 sqrt(omega_c) for ``whitened`` (the output of h = g / sqrt(omega_c)).

    With ``depth`` L every factor of mode c (row c of W, u_c -> alpha_c u_c in each of the
    L-1 inner layers, the class-c block of H) has Frobenius norm alpha_c, so
    alpha_c^(L+1) / sqrt(m_c) = z0 (see :mod:`ssm_jax.deep`).
    """
    block = jnp.ones_like(counts) if parametrization == "class" else counts
    product = z0 * jnp.sqrt(omega) if parametrization == "whitened" else z0 * jnp.ones_like(counts)
    scale = product * jnp.sqrt(block)
    alpha = jnp.sqrt(scale) if depth == 1 else scale ** (1.0 / (depth + 1))
    beta = alpha / jnp.sqrt(block)
    return alpha, beta


def init_aligned(key: PRNGKeyArray, problem: Problem, dim: int, z0, omega: Float[Array, " k"],
                 parametrization: str, bias: bool, dtype, depth: int = 1) -> Params:
    """Spectrally aligned, balanced initialisation with own output z0 for every example.

    The directions u_c are the first k columns of a random orthogonal d x d matrix drawn
    from ``key`` (so d >= k is needed). With ``depth`` L > 1 each inner layer is
    ``V_l = sum_c alpha_c u_c u_c^T`` (zero on the complement of the u_c, which keeps every
    layer exactly balanced: V_{l+1}^T V_{l+1} = V_l V_l^T).
    """
    k = problem.num_classes
    if dim < k:
        raise ConfigError(f"dim={dim} is out of range for init='aligned': need dim >= k = {k}")
    basis, _ = jnp.linalg.qr(jax.random.normal(key, (dim, dim), dtype))
    U = basis[:, :k]  # d x k, orthonormal columns u_c
    alpha, beta = aligned_amplitudes(z0, problem.example_counts(), omega, parametrization, depth)
    W = alpha[:, None] * U.T
    if parametrization == "class":
        H = U * beta[None, :]
    else:
        H = (U * beta[None, :])[:, problem.labels] * problem.mask
    params = {"W": W, "H": H}
    if depth > 1:
        layer = (U * alpha[None, :]) @ U.T
        params["V"] = jnp.broadcast_to(layer, (depth - 1, dim, dim))
    if bias:
        params["b"] = jnp.zeros((k,), dtype)
    return params


def weight_decay_penalty(params: Params, weight_decay) -> Float[Array, ""]:
    """(lambda / 2) (||W||_F^2 + ||H||_F^2 + sum_l ||V_l||_F^2) on the trained variables (the
    bias is not decayed; the inner layers V of a deep UFM are).

    Padded feature columns are zero at initialisation and receive no loss gradient, so the
    penalty keeps them at zero and they never contribute."""
    total = jnp.sum(params["W"] ** 2) + jnp.sum(params["H"] ** 2)
    if "V" in params:
        total = total + jnp.sum(params["V"] ** 2)
    return 0.5 * weight_decay * total
