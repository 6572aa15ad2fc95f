"""Deep linear UFM: the model, the aligned initialisation and the per-mode theory."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, deep, model, numeric_of, problem_of, simulate, spec_of
from ssm_jax.cli import build_parser, config_from_args
from ssm_jax.problem import make_problem
from ssm_jax.simulate import initial_params, objective_fn, omega_of

from helpers import tree_allclose

COUNTS = (40, 40, 10, 10)  # ratio R = 4


def test_identity_inner_layers_reduce_to_the_ufm(x64):
    """Depth L with V_l = I has the UFM's outputs, loss and (W, H) gradients."""
    cfg = Config(loss="ce", counts=COUNTS, profile="counts", dim=6, init_scale=0.3)
    spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg, jnp.float64)
    omega = omega_of(spec, problem, numeric)
    params = initial_params(spec, problem, numeric, omega, jax.random.PRNGKey(1))
    assert "V" not in params  # depth 1 is the UFM exactly: no inner layers
    deep_params = dict(params, V=jnp.broadcast_to(jnp.eye(6), (2, 6, 6)))
    value_and_grad = jax.jit(jax.value_and_grad(objective_fn(spec, problem, numeric, omega)))
    (value, grads), (deep_value, deep_grads) = value_and_grad(params), value_and_grad(deep_params)
    np.testing.assert_allclose(deep_value, value, rtol=1e-14)
    tree_allclose({k: deep_grads[k] for k in ("W", "H")}, grads)


def test_aligned_depth_one_amplitudes_are_unchanged(x64):
    counts, omega = jnp.array([40.0, 10.0]), jnp.array([0.5, 2.0])
    for par in ("sample", "class", "whitened"):
        alpha, beta = model.aligned_amplitudes(0.01, counts, omega, par)
        block = jnp.ones(2) if par == "class" else counts
        product = 0.01 * (jnp.sqrt(omega) if par == "whitened" else 1.0)
        np.testing.assert_array_equal(alpha, jnp.sqrt(product * jnp.sqrt(block)))


@pytest.mark.parametrize("parametrization", ["sample", "class", "whitened"])
def test_aligned_init_is_balanced_with_own_output_z0(x64, parametrization):
    depth, z0 = 3, 0.02
    problem = make_problem(COUNTS)
    omega = jnp.array([0.5, 0.5, 2.0, 2.0])
    params = model.init_aligned(jax.random.PRNGKey(0), problem, 8, z0, omega, parametrization,
                                False, jnp.float64, depth=depth)
    chex.assert_shape(params["V"], (depth - 1, 8, 8))
    feats = model.features(params, problem, omega, parametrization)
    z = model.outputs(params, feats)
    np.testing.assert_allclose(z, z0 * problem.onehot(), atol=1e-15)
    # Exact balance of consecutive factors: W^T W = V_2 V_2^T, V_{l+1}^T V_{l+1} = V_l V_l^T,
    # V_1^T V_1 = H H^T.
    factors = [params["H"]] + [params["V"][i] for i in range(depth - 1)] + [params["W"]]
    for lower, upper in zip(factors[:-1], factors[1:], strict=True):
        np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, atol=1e-14)
    # Every factor of mode c has Frobenius norm x_c = (z0 sqrt(q_c))^(1/(L+1)).
    _, q = deep.mode_constants(jnp.asarray(COUNTS, float), omega, parametrization)
    x = (z0 * jnp.sqrt(q)) ** (1 / (depth + 1))
    np.testing.assert_allclose(jnp.linalg.norm(params["W"], axis=1), x, rtol=1e-13)


def test_gaussian_depth_shapes():
    params = model.init_gaussian(jax.random.PRNGKey(0), make_problem((3, 2)), 5, 0.1, "sample",
                                 True, jnp.float32, depth=4)
    chex.assert_shape(params["V"], (3, 5, 5))
    chex.assert_shape(params["W"], (2, 5))
    assert float(model.weight_decay_penalty(params, 2.0)) == pytest.approx(
        sum(float(jnp.sum(params[k] ** 2)) for k in ("W", "H", "V")), rel=1e-6)


def test_theory_reduces_to_the_logistic_ufm(x64):
    rates = deep.mode_rates(jnp.asarray(COUNTS, float), jnp.ones(4), "sample", 1)
    n = sum(COUNTS)
    np.testing.assert_allclose(rates, 2 * np.sqrt(COUNTS) / n, rtol=1e-14)
    t = jnp.linspace(0.0, 300.0, 7)[:, None]
    logistic = 1.0 / (1.0 + (1 / 0.01 - 1) * jnp.exp(-rates * t))
    np.testing.assert_allclose(deep.mode_output(t, 0.01, rates, 1), logistic, rtol=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_unit_time_solves_the_mode_equation(x64, depth):
    """dT/dz = 1 / (z^p (1 - z)), checked by automatic differentiation, and T(z0, z0) = 0."""
    p = 2 * depth / (depth + 1)
    z = jnp.array([0.05, 0.5, 0.9, 0.999])
    slope = jax.jit(jax.vmap(jax.grad(lambda s: deep.unit_time(0.01, s, depth))))(z)
    np.testing.assert_allclose(slope, 1 / (z ** p * (1 - z)), rtol=1e-11)
    assert abs(float(deep.unit_time(0.01, 0.01, depth))) < 1e-13


def test_delay_exponents_match_rates(x64):
    counts = jnp.array([100.0, 10.0])
    for par in ("sample", "class", "whitened"):
        for depth in (1, 2, 4):
            for gamma in (0.0, 0.5):
                omega = counts ** -gamma
                rates = deep.mode_rates(counts, omega, par, depth)
                np.testing.assert_allclose(rates[0] / rates[1],
                                           10.0 ** deep.delay_exponent(par, depth, gamma),
                                           rtol=1e-12)


@pytest.fixture(scope="module")
def flow_depth2():
    cfg = Config(loss="mse", counts=COUNTS, profile="counts", dim=6, init="aligned",
                 init_scale=0.01, depth=2, method="flow", lr=1.0, steps=150, saves=61, x64=True,
                 rtol=1e-9, atol=1e-12)
    return simulate(cfg)


def test_depth_two_flow_matches_per_mode_theory(flow_depth2):
    tr, depth = flow_depth2.trajectory, 2
    with jax.enable_x64(True):
        counts = jnp.asarray(COUNTS, float)
        rates = deep.mode_rates(counts, tr.weights, "sample", depth)
        theory = deep.mode_output(jnp.asarray(tr.t)[:, None], 0.01, rates, depth)
        half = deep.half_times(counts, tr.weights, "sample", depth, 0.01)
    np.testing.assert_allclose(tr.own_output, theory, atol=1e-7)
    np.testing.assert_allclose(tr.half_time, half, rtol=1e-2)  # saved-grid interpolation
    # Minority/majority delay R^(L/(L+1)) = 4^(2/3), against sqrt(4) = 2 for the UFM.
    np.testing.assert_allclose(half[2] / half[0], 4 ** (2 / 3), rtol=1e-12)
    assert tr.half_time[2] / tr.half_time[0] == pytest.approx(4 ** (2 / 3), rel=1e-2)


def test_cli_depth():
    cfg = config_from_args(build_parser().parse_args(["simulate", "--depth", "3"]))
    assert cfg.depth == 3 and spec_of(cfg).depth == 3
    with pytest.raises(Exception, match="depth"):
        Config(depth=0)
