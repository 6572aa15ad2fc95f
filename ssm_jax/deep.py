r"""Per-mode theory of the deep linear UFM and of spectral GD, with the aligned initialisation.

**Model.** Depth L: outputs ``Z = W V_{L-1} ... V_1 H`` (L = 1 is the UFM). The aligned
initialisation (:func:`ssm_jax.model.init_aligned`) puts mode c in direction u_c of every
factor: row c of W is ``x u_c^T``, each inner layer maps ``u_c -> x u_c`` (and is zero on the
complement of the u's, so the layers are exactly balanced), and the class-c block of the
trained feature variable is ``x u_c 1^T / sqrt(m_c)``: all L+1 factors of mode c have
Frobenius norm x = x_c, with own output z0 for every class.

**Per-mode gradient flow (squared loss, no bias, no weight decay).** The gradient keeps
this structure (other outputs stay 0), every factor of mode c obeys
``dx/dt = sigma_c (1 - z_c) x^L`` and balance is conserved, so with

=============  =====================  ====================  ==========================
parametrisation  strength sigma_c      q_c                    z_c
=============  =====================  ====================  ==========================
``sample``       omega_c sqrt(n_c) / n  n_c                   x^(L+1) / sqrt(q_c)
``class``        omega_c n_c / n        1                     x^(L+1)
``whitened``     sqrt(omega_c n_c) / n  omega_c n_c           x^(L+1) / sqrt(q_c)
=============  =====================  ====================  ==========================

the own output follows the generalised Saxe equation

.. math:: \frac{dz_c}{dt} = \rho_c\, z_c^{2L/(L+1)} (1 - z_c), \qquad
          \rho_c = (L+1)\,\sigma_c\, q_c^{(L-1)/(2(L+1))},

i.e. ``rho_c = (L+1) omega_c n_c^{L/(L+1)} / n`` (sample), ``(L+1) omega_c n_c / n``
(class), ``(L+1) (omega_c n_c)^{L/(L+1)} / n`` (whitened). L = 1 is the logistic
``dz/dt = 2 sigma_c z (1 - z)`` of the UFM. Every mode starts at the same z0 and follows the
same equation up to its rate, so ``t_c(z) = T_L(z0, z) / rho_c`` and **the ratio of any two
classes' learning times is rho_major / rho_minor, exactly, at any threshold**. With power
weights omega ∝ n^-gamma and imbalance ratio R, the minority/majority delay is

* ``sample``: ``R^(L/(L+1) - gamma)``: sqrt(R) for the UFM, growing with depth towards R;
  gamma = L/(L+1) equalises (1/2 for the UFM, 2/3 at L = 2);
* ``class``: ``R^(1 - gamma)`` at every depth;
* ``whitened``: ``R^((1 - gamma) L/(L+1))``.

Depth also slows everything from a small start: for L > 1,
``T_L(z0, 1/2) ≈ (L+1)/(L-1) z0^(-(L-1)/(L+1))`` instead of ``log(1/z0)``.

**Spectral GD** (:mod:`ssm_jax.spectral`). With the same initialisation the gradient of
every factor is diagonal in the mode basis, its polar factor has a unit entry per mode, and
every factor of every mode grows by exactly ``lr`` per step while ``z_c < 1``:
``x_c(t) = x_c(0) + t``, ``z_c(t) = (x_c(0) + t)^(L+1) / sqrt(q_c)``, with
``x_c(0) = (z0 sqrt(q_c))^(1/(L+1))``. The half time is
``q_c^(1/(2(L+1))) (2^(-1/(L+1)) - z0^(1/(L+1)))``: equal for every class in the ``class``
parametrisation (q = 1), whatever the class weights; in the ``sample`` parametrisation it
grows as ``n_c^(1/(2(L+1)))``, so *minorities are learned first* (delay ``R^(-1/(2(L+1)))``).
Class weights do not enter (only the sign of each mode's gradient does), except through
q_c in the ``whitened`` parametrisation.

**Weight decay** lambda (squared loss, no bias). With balanced factors every factor of mode
c obeys ``dx/dt = sigma_c (1 - z_c) x^L - lambda x``, so

.. math:: \frac{dz_c}{dt} = (L+1)\,\tilde\rho_c\, z_c\left((1 - z_c) z_c^{1-p} - \mu_c
          \right),\qquad p = \frac{2}{L+1},\quad \tilde\rho_c = \frac{\rho_c}{L+1},
          \quad \mu_c = \frac{\lambda}{\tilde\rho_c},

the gradient flow of :math:`\varphi_{\mu}(z) = \tfrac12 (z-1)^2 + \tfrac{\mu}{p} z^p`
(:func:`decay_objective`), the per-mode objective of the global minimiser
(:func:`ssm_jax.theory.weight_decay_minimiser`). Its nonzero stationary points solve
``(1 - z) z^(1-p) = mu`` (:func:`decay_stationary_outputs`). For L = 1 the own output is
``max(0, 1 - mu)``. For L >= 2 the origin is always a local minimum (the penalty's slope
``mu z^(p-1)`` is infinite there), the global minimiser jumps from ``(L-1)/L``
(:func:`jump_output`) to 0 at ``mu* = (1/L) ((L-1)/L)^((L-1)/(L+1))``
(:func:`critical_decay`), and a nonzero local minimum survives up to
:func:`spinodal_decay`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .config import PARAMETRIZATIONS, ConfigError

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


def mode_constants(counts: Float[ArrayLike, " k"], omega: Float[ArrayLike, " k"],
                   parametrization: str) -> tuple[Array, Array]:
    """Per-mode gradient strength sigma_c and block constant q_c (see the module table)."""
    counts = jnp.asarray(counts)
    omega = jnp.asarray(omega, counts.dtype)
    n = jnp.sum(counts)
    if parametrization == "sample":
        return omega * jnp.sqrt(counts) / n, counts
    if parametrization == "class":
        return omega * counts / n, jnp.ones_like(counts)
    if parametrization == "whitened":
        return jnp.sqrt(omega * counts) / n, omega * counts
    allowed = ", ".join(map(repr, PARAMETRIZATIONS))
    raise ConfigError(f"parametrization={parametrization!r} is not one of {allowed}")


def mode_rates(counts: Float[ArrayLike, " k"], omega: Float[ArrayLike, " k"], parametrization: str,
               depth: int = 1) -> Float[Array, " k"]:
    """rho_c = (L+1) sigma_c q_c^((L-1) / (2(L+1))) of ``dz/dt = rho z^(2L/(L+1)) (1 - z)``."""
    sigma, q = mode_constants(counts, omega, parametrization)
    return (depth + 1) * sigma * q ** ((depth - 1) / (2.0 * (depth + 1)))


def _antiderivative(w, depth: int):
    """Antiderivative of ``w^-L + 1/((L+1)(1 - w))``, the singular part of the integrand
    ``1/(w^L (1 - w^(L+1)))`` of :func:`unit_time`."""
    head = jnp.log(w) if depth == 1 else w ** (1 - depth) / (1 - depth)
    return head - jnp.log1p(-w) / (depth + 1)


def unit_time(z0, z, depth: int = 1):
    r"""T_L(z0, z) = ∫_{z0}^{z} du / (u^{2L/(L+1)} (1 - u)): the time to go from z0 to z at
    unit rate (0 < z0 <= z < 1). With ``u = w^(L+1)`` the integrand becomes
    ``(L+1) / (w^L (1 - w^(L+1)))``: its ``w^-L`` and ``1/((L+1)(1-w))`` parts are integrated
    exactly, the smooth (polynomial over polynomial) rest by 48-point Gauss-Legendre
    quadrature, exact to rounding. L = 1 gives
    ``log(z (1 - z0) / (z0 (1 - z)))``."""
    z0 = jnp.asarray(z0)
    z = jnp.asarray(z, z0.dtype)
    power = 1.0 / (depth + 1)
    w0, w1 = z0 ** power, z ** power
    exact = _antiderivative(w1, depth) - _antiderivative(w0, depth)
    nodes = jnp.asarray(_NODES, z0.dtype)
    weights = jnp.asarray(_WEIGHTS, z0.dtype)
    half = 0.5 * (w1 - w0)
    w = (w0 + w1)[..., None] * 0.5 + half[..., None] * nodes
    # w/(1 - w^(L+1)) - 1/((L+1)(1 - w)) with 1 - w^(L+1) = (1 - w) G, G = sum_{j<=L} w^j,
    # is [-1 + sum_{j=2}^{L} sum_{i=0}^{j-2} w^(i+1)] / ((L+1) G): no cancellation near 1.
    geometric = sum(w ** j for j in range(depth + 1))
    numerator = -1.0 + sum(w ** (i + 1) for j in range(2, depth + 1) for i in range(j - 1))
    smooth = numerator / ((depth + 1) * geometric)
    remainder = half * jnp.sum(weights * smooth, axis=-1)
    return (depth + 1) * (exact + remainder)


def mode_time(z, z0, rates: Float[Array, " k"], depth: int = 1):
    """Time at which each mode's own output reaches z: ``T_L(z0, z) / rho_c``."""
    return unit_time(z0, z, depth) / rates


def mode_output(t, z0, rates: Float[Array, " k"], depth: int = 1, iterations: int = 100):
    """Own output z_c(t) of the per-mode gradient flow (broadcasts t against the rates), by
    bisection of the monotone ``unit_time`` in z on [z0, 1)."""
    z0 = jnp.asarray(z0)
    target = jnp.asarray(t, z0.dtype) * jnp.asarray(rates, z0.dtype)
    low = jnp.full_like(target, 0.0) + z0
    high = jnp.ones_like(target)

    def body(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        below = unit_time(z0, mid, depth) < target
        return jnp.where(below, mid, low), jnp.where(below, high, mid)

    low, high = jax.lax.fori_loop(0, iterations, body, (low, high))
    return 0.5 * (low + high)


def half_times(counts, omega, parametrization: str, depth: int = 1, z0=1e-3):
    """Gradient-flow half times (own output reaches 1/2) of every class, aligned init."""
    rates = mode_rates(counts, omega, parametrization, depth)
    return mode_time(0.5, z0, rates, depth)


def delay_exponent(parametrization: str, depth: int = 1, gamma: float = 0.0) -> float:
    """e in ``t_minor / t_major = R^e`` for power weights omega ∝ n^-gamma (gradient flow)."""
    if parametrization == "sample":
        return depth / (depth + 1) - gamma
    if parametrization == "class":
        return 1.0 - gamma
    if parametrization == "whitened":
        return (1.0 - gamma) * depth / (depth + 1)
    allowed = ", ".join(map(repr, PARAMETRIZATIONS))
    raise ConfigError(f"parametrization={parametrization!r} is not one of {allowed}")


def spectral_mode_output(t, z0, counts, omega, parametrization: str, depth: int = 1):
    """Own output of spectral GD with aligned init: ``(x_c(0) + t)^(L+1) / sqrt(q_c)``
    (valid while every ``z_c < 1``; t = lr x step)."""
    _, q = mode_constants(counts, omega, parametrization)
    start = (z0 * jnp.sqrt(q)) ** (1.0 / (depth + 1))
    return (start + jnp.asarray(t)[..., None]) ** (depth + 1) / jnp.sqrt(q)


def spectral_half_times(counts, omega, parametrization: str, depth: int = 1, z0=1e-3):
    """Spectral-GD half times ``q_c^(1/(2(L+1))) (2^(-1/(L+1)) - z0^(1/(L+1)))``."""
    _, q = mode_constants(counts, omega, parametrization)
    power = 1.0 / (depth + 1)
    return q ** (power / 2) * (0.5 ** power - z0 ** power)


# ------------------------------------------------------------ weight decay: the terminal phase
#
# Per aligned mode the weight-decayed squared-loss objective is, up to the class's loss
# weight, phi(z) = (z - 1)^2 / 2 + (mu / p) z^p with p = 2 / (L+1) and mu the relative weight
# decay lambda / rho~_c (:func:`ssm_jax.theory.weight_decay_minimiser`; docs/theory.md,
# section 8). These functions solve that scalar problem.


def _power(depth: int) -> float:
    if not (isinstance(depth, int | np.integer) and not isinstance(depth, bool)
            and depth >= 1):
        raise ConfigError(f"depth={depth!r} is out of range: need an integer >= 1")
    return 2.0 / (depth + 1)


def critical_decay(depth: int) -> float:
    r"""Relative weight decay :math:`\mu^\star_L` at which the global minimiser of
    :func:`decay_objective` leaves the nonzero branch:
    :math:`\mu^\star_L = \frac1L\left(\frac{L-1}{L}\right)^{(L-1)/(L+1)}` (1 for L = 1,
    :math:`2^{-4/3} = 0.397` for L = 2). For L >= 2 the own output jumps there from
    :func:`jump_output` to 0."""
    _power(depth)
    return (1.0 / depth) * ((depth - 1.0) / depth) ** ((depth - 1.0) / (depth + 1.0))


def jump_output(depth: int) -> float:
    r"""Own output :math:`(L-1)/L` just below :math:`\mu^\star_L` (0 for L = 1: the collapse
    of the UFM is continuous, that of a deeper model a jump)."""
    _power(depth)
    return (depth - 1.0) / depth


def spinodal_decay(depth: int) -> float:
    r"""Largest relative weight decay with a nonzero stationary point,
    :math:`\max_z (1 - z) z^{1-p} = \frac{L+1}{2L}\left(\frac{L-1}{2L}\right)^{(L-1)/(L+1)}`
    (at :math:`z = (L-1)/(2L)`; 1 for L = 1, 0.4725 for L = 2). Between
    :func:`critical_decay` and this value the nonzero branch is a local, not global,
    minimum: a flow started on it stays there."""
    _power(depth)
    peak = (depth - 1.0) / (2.0 * depth)
    return (1.0 - peak) * peak ** ((depth - 1.0) / (depth + 1.0))


def decay_objective(z, mu, depth: int):
    r""":math:`\varphi_\mu(z) = \tfrac12 (z - 1)^2 + \tfrac{\mu}{p} z^p`, :math:`p = 2/(L+1)`,
    for own outputs z >= 0 (broadcasts z against mu; :math:`\varphi(0) = 1/2` even for
    :math:`\mu = \infty`)."""
    p = _power(depth)
    z, mu = jnp.asarray(z), jnp.asarray(mu)
    positive = z > 0
    penalty = jnp.where(positive, mu / p * jnp.where(positive, z, 1.0) ** p, 0.0)
    return 0.5 * (z - 1.0) ** 2 + penalty


def _bisect(mu, low, high, increasing: bool, depth: int, iterations: int):
    """Root of g(z) = (1 - z) z^(1-p) = mu on [low, high] where g is monotone."""
    p = _power(depth)

    def body(_, bounds):
        a, b = bounds
        mid = 0.5 * (a + b)
        above = ((1.0 - mid) * mid ** (1.0 - p) > mu) == increasing
        return jnp.where(above, a, mid), jnp.where(above, mid, b)

    a, b = jax.lax.fori_loop(0, iterations, body, (low, high))
    return 0.5 * (a + b)


def _newton_polish(z, mu, depth: int):
    """One Newton step on g(z) = mu from the (gradient-stopped) bisection root: the value is
    unchanged to rounding and autodiff then gives the implicit derivative dz/dmu = 1/g'(z)."""
    p = _power(depth)
    z = jax.lax.stop_gradient(z)
    g = (1.0 - z) * z ** (1.0 - p)
    slope = z ** (-p) * ((1.0 - p) * (1.0 - z) - z)
    return z - (g - mu) / slope


def decay_stationary_outputs(mu, depth: int, iterations: int = 200):
    r"""Nonzero stationary points of :func:`decay_objective`: the roots of
    :math:`(1 - z) z^{1-p} = \mu` (``mu`` >= 0, any shape), as ``(stable, unstable)``.

    ``stable`` is the root above :math:`z_{\rm peak} = (L-1)/(2L)` (a local minimum), NaN for
    :math:`\mu` above :func:`spinodal_decay`; ``unstable`` the root below it (a local
    maximum: the boundary of the aligned flow's basins), NaN likewise. For L = 1,
    ``stable = 1 - mu`` (NaN for mu >= 1) and ``unstable = 0`` (the origin is a saddle).
    Bisection (``iterations`` halvings, enough for float64) and one Newton step, so the
    derivative in ``mu`` is the implicit one."""
    _power(depth)
    mu = jnp.asarray(mu)
    mu = mu.astype(jnp.result_type(mu.dtype, float))
    nan = jnp.full_like(mu, jnp.nan)
    if depth == 1:
        exists = mu < 1.0
        return jnp.where(exists, 1.0 - mu, nan), jnp.where(exists, jnp.zeros_like(mu), nan)
    peak = (depth - 1.0) / (2.0 * depth)
    exists = mu < spinodal_decay(depth)
    safe = jnp.where(exists, mu, 0.0)
    stable = _bisect(safe, jnp.full_like(mu, peak), jnp.ones_like(mu), False, depth, iterations)
    unstable = _bisect(safe, jnp.zeros_like(mu), jnp.full_like(mu, peak), True, depth,
                       iterations)
    stable = _newton_polish(stable, safe, depth)
    # mu = 0: the unstable root is the origin itself, where the Newton step is undefined.
    unstable = jnp.where(safe > 0, _newton_polish(jnp.where(safe > 0, unstable, peak), safe,
                                                  depth), 0.0)
    return jnp.where(exists, stable, nan), jnp.where(exists, unstable, nan)


def decay_own_output(mu, depth: int, iterations: int = 200):
    r"""Global minimiser of :func:`decay_objective` over z >= 0 (``mu`` >= 0, any shape):
    :math:`\max(0, 1 - \mu)` for L = 1; for L >= 2 the stable root of
    :math:`(1 - z) z^{1-p} = \mu` while :math:`\mu < \mu^\star_L` (:func:`critical_decay`),
    else 0 (at :math:`\mu = \mu^\star_L` both are optimal; 0 is returned)."""
    mu = jnp.asarray(mu)
    if depth == 1:
        _power(depth)
        return jnp.maximum(0.0, 1.0 - mu.astype(jnp.result_type(mu.dtype, float)))
    stable, _ = decay_stationary_outputs(mu, depth, iterations)
    return jnp.where(mu < critical_decay(depth), stable, 0.0)
