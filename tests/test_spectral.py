"""Spectral GD and Muon: the polar factor, and per-class half times with aligned init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, deep, simulate, spectral
from ssm_jax.dynamics.discrete import optimizer

COUNTS = (40, 40, 10, 10)  # ratio R = 4
Z0 = 0.01


def test_polar_factor(x64):
    g = jax.random.normal(jax.random.PRNGKey(0), (4, 7))
    u, _, vt = np.linalg.svd(np.asarray(g), full_matrices=False)
    np.testing.assert_allclose(spectral.polar_factor(g), u @ vt, atol=1e-13)
    # Rank 2 (like the UFM's feature gradient): singular values of the polar factor are 1, 1, 0.
    low_rank = g[:, :2] @ jax.random.normal(jax.random.PRNGKey(1), (2, 9))
    values = np.linalg.svd(np.asarray(spectral.polar_factor(low_rank)), compute_uv=False)
    np.testing.assert_allclose(values, [1, 1, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(spectral.polar_factor(jnp.zeros((3, 5))), 0.0)
    v = jnp.array([3.0, -4.0])
    np.testing.assert_allclose(spectral.polar_factor(v), v / 5.0, rtol=1e-15)
    stack = jnp.stack([g, 2 * g])
    np.testing.assert_allclose(spectral.polar_factor(stack)[1], u @ vt, atol=1e-13)


def test_specgd_step_is_minus_lr_polar(x64):
    params = {"W": jnp.ones((3, 4)), "b": jnp.zeros(3)}
    grads = {"W": jax.random.normal(jax.random.PRNGKey(2), (3, 4)), "b": jnp.array([0.0, 3, 4])}
    opt = optimizer("specgd", 0.1)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates["W"], -0.1 * spectral.polar_factor(grads["W"]), atol=1e-15)
    np.testing.assert_allclose(updates["b"], [0.0, -0.06, -0.08], atol=1e-15)


def run(method, parametrization, lr, steps, weighting="erm", depth=1):
    power = {"gamma": 1.0} if weighting == "power" else {}  # gamma has no effect under ERM
    cfg = Config(loss="mse", counts=COUNTS, profile="counts", dim=6, init="aligned",
                 init_scale=Z0, parametrization=parametrization, method=method, lr=lr,
                 steps=steps, saves=min(steps + 1, 101), weighting=weighting, depth=depth,
                 x64=True, **power)
    return simulate(cfg).trajectory


@pytest.mark.parametrize("parametrization,weighting,depth", [
    ("class", "erm", 1), ("class", "power", 1), ("sample", "erm", 1), ("sample", "erm", 2),
])
def test_specgd_modes_grow_at_constant_speed(parametrization, weighting, depth):
    """z_c(t) = (x_c(0) + t)^(L+1) / sqrt(q_c) exactly, while z_c < 1."""
    tr = run("specgd", parametrization, 0.01, 200, weighting, depth)
    with jax.enable_x64(True):
        counts = jnp.asarray(COUNTS, float)
        theory = deep.spectral_mode_output(jnp.asarray(tr.t), Z0, counts, tr.weights,
                                           parametrization, depth)
        half = deep.spectral_half_times(counts, tr.weights, parametrization, depth, Z0)
    below = np.asarray(theory) < 1
    np.testing.assert_allclose(tr.own_output[below], np.asarray(theory)[below], rtol=1e-12)
    np.testing.assert_allclose(tr.half_time, half, rtol=2e-3)  # saved-grid interpolation
    if parametrization == "class":  # equal half times, whatever the weights
        np.testing.assert_allclose(half, half[0], rtol=1e-14)
    else:  # minorities first: t_c ∝ n_c^(1/(2(L+1)))
        np.testing.assert_allclose(half[2] / half[0], 4 ** (-1 / (2 * (depth + 1))), rtol=1e-12)


def test_plain_gd_and_muon_half_times_against_specgd():
    """Class parametrisation, ERM: GD's minority is R = 4 times slower; Muon (Newton-Schulz
    polar factor with momentum) is close to equal, like spectral GD."""
    gd = run("gd", "class", 0.5, 400).half_time
    assert gd[2] / gd[0] == pytest.approx(4.0, rel=0.1)
    muon = run("muon", "class", 0.01, 100).half_time
    assert np.all(np.isfinite(muon)) and 0.8 < muon[2] / muon[0] < 1.25
