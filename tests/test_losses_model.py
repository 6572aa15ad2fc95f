"""Loss values and gradients against hand-derived formulas; parametrisations; initialisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, ConfigError, losses, make_problem, model, numeric_of, spec_of
from ssm_jax.simulate import initial_params, objective_fn, observe_fn, omega_of

from helpers import tree_allclose

COUNTS = (4, 3, 1)


def setup(loss, parametrization="sample", bias=True, weight_decay=0.1, weighting="power"):
    cfg = Config(loss=loss, counts=COUNTS, dim=5, parametrization=parametrization, bias=bias,
                 weight_decay=weight_decay, weighting=weighting, gamma=0.7, init_scale=0.5)
    spec, numeric, problem = spec_of(cfg), numeric_of(cfg), make_problem(COUNTS)
    omega = omega_of(spec, problem, numeric)
    params = initial_params(spec, problem, numeric, omega, jax.random.PRNGKey(3))
    if bias:
        params["b"] = jnp.array([0.3, -0.2, 0.1])
    return spec, numeric, problem, omega, params


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_sample_gradients_match_hand_derived(x64, loss):
    spec, numeric, problem, omega, params = setup(loss)
    objective = objective_fn(spec, problem, numeric, omega)
    W, H, b = params["W"], params["H"], params["b"]
    Y = problem.onehot()
    Z = W @ H + b[:, None]
    n = sum(COUNTS)
    Omega = omega[problem.labels]
    if loss == "mse":
        value = jnp.sum(Omega * 0.5 * jnp.sum((Z - Y) ** 2, axis=0)) / n
        residual = Z - Y
    else:
        P = jax.nn.softmax(Z, axis=0)
        value = jnp.sum(Omega * -jnp.log(jnp.sum(P * Y, axis=0))) / n
        residual = P - Y
    lam = 0.1
    value = value + lam / 2 * (jnp.sum(W**2) + jnp.sum(H**2))
    R = residual * Omega / n  # (1/n) (dl/dZ) Ω
    expected = {"W": R @ H.T + lam * W, "H": W.T @ R + lam * H, "b": R.sum(axis=1)}
    np.testing.assert_allclose(objective(params), value, rtol=1e-12)
    tree_allclose(jax.grad(objective)(params), expected, rtol=1e-10, atol=1e-12)


def test_whitened_gradient_is_the_g_gradient(x64):
    spec, numeric, problem, omega, params = setup("mse", "whitened", bias=False, weight_decay=0.0)
    objective = objective_fn(spec, problem, numeric, omega)
    W, G = params["W"], params["H"]
    root = jnp.sqrt(omega[problem.labels])
    target = problem.onehot() * root  # Y Ω^{1/2}
    n = sum(COUNTS)
    np.testing.assert_allclose(objective(params), 0.5 * jnp.sum((W @ G - target) ** 2) / n,
                               rtol=1e-12)
    grads = jax.grad(objective)(params)
    tree_allclose(grads, {"W": (W @ G - target) @ G.T / n, "H": W.T @ (W @ G - target) / n})


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_class_parametrisation_equals_collapsed_sample(x64, loss):
    spec_c, numeric, problem, omega, params_c = setup(loss, "class")
    spec_s = spec_of(Config(loss=loss, counts=COUNTS, dim=5, bias=True, weight_decay=0.1,
                            weighting="power", gamma=0.7))
    collapsed = dict(params_c, H=params_c["H"][:, problem.labels])
    # Same loss (without weight decay, whose H norm counts a class feature once) and metrics.
    no_wd = numeric._replace(weight_decay=jnp.asarray(0.0))
    obj_c = objective_fn(spec_c, problem, no_wd, omega)
    obj_s = objective_fn(spec_s, problem, no_wd, omega)
    np.testing.assert_allclose(obj_c(params_c), obj_s(collapsed), rtol=1e-12)
    tree_allclose(observe_fn(spec_c, problem, no_wd, omega)(params_c),
                  observe_fn(spec_s, problem, no_wd, omega)(collapsed))
    # Chain rule: a class feature's gradient is the sum of its examples' column gradients.
    g_c, g_s = jax.grad(obj_c)(params_c), jax.grad(obj_s)(collapsed)
    summed = g_s["H"] @ problem.onehot().T
    tree_allclose(g_c["H"], summed)
    tree_allclose(g_c["W"], g_s["W"])


def test_gaussian_init_statistics_and_padding_invariance():
    problem = make_problem((300, 200))
    params = model.init_gaussian(jax.random.PRNGKey(0), problem, 40, 0.1, "sample", False,
                                 jnp.float32)
    chex.assert_shape(params["H"], (40, 500))
    chex.assert_shape(params["W"], (2, 40))
    np.testing.assert_allclose(jnp.std(params["H"]), 0.1, rtol=0.03)
    padded = model.init_gaussian(jax.random.PRNGKey(0), make_problem((300, 200), 530), 40, 0.1,
                                 "sample", False, jnp.float32)
    tree_allclose(padded["H"][:, :500], params["H"], rtol=0, atol=0)
    assert jnp.all(padded["H"][:, 500:] == 0)


@pytest.mark.parametrize("parametrization", ["sample", "class", "whitened"])
def test_aligned_init_is_balanced_with_own_output_z0(x64, parametrization):
    problem = make_problem((9, 4, 1))
    omega = jnp.array([0.5, 1.5, 2.0])
    z0 = 0.01
    params = model.init_aligned(jax.random.PRNGKey(1), problem, 6, z0, omega, parametrization,
                                False, jnp.float64)
    W, H = params["W"], params["H"]
    Z = model.outputs(params, model.features(params, problem, omega, parametrization))
    Y = problem.onehot()
    np.testing.assert_allclose(jnp.sum(Z * Y, axis=0), z0, rtol=1e-12)  # own output z0
    np.testing.assert_allclose(Z * (1 - Y), 0.0, atol=1e-15)  # no cross-talk
    block = H if parametrization == "class" else H @ Y.T / jnp.maximum(Y.sum(1), 1)
    block_norm = jnp.sqrt(jnp.sum(H**2, axis=0) @ (Y.T if parametrization != "class"
                                                    else jnp.eye(3)))
    np.testing.assert_allclose(jnp.linalg.norm(W, axis=1), block_norm, rtol=1e-12)
    # Classifier rows are orthogonal, and aligned with their class features.
    gram = W @ W.T
    np.testing.assert_allclose(gram - jnp.diag(jnp.diag(gram)), 0.0, atol=1e-14)
    cos = jnp.sum(W.T * block, axis=0) / (jnp.linalg.norm(W, axis=1)
                                          * jnp.linalg.norm(block, axis=0))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-12)


def test_cross_entropy_is_stable_for_large_logits():
    z = jnp.array([[1000.0], [0.0]])
    y = jnp.array([[0.0], [1.0]])
    np.testing.assert_allclose(losses.cross_entropy(z, y), [1000.0], rtol=1e-6)


@pytest.mark.parametrize("k", [3, losses.UNROLL_CLASSES + 2])  # unrolled rows, and jnp
def test_class_axis_reductions_equal_jnp(x64, k):
    """class_sum / class_max (row-wise over the class axis, for speed on a CPU) equal their
    jnp counterparts, NaN included."""
    z = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (k, 7))
    z = z.at[1, 2].set(-jnp.inf).at[0, 3].set(50.0)
    np.testing.assert_allclose(losses.class_sum(z), jnp.sum(z, axis=0), rtol=1e-14)
    np.testing.assert_array_equal(losses.class_max(z), jnp.max(z, axis=0))
    nan = z.at[2, 4].set(jnp.nan)
    assert np.isnan(losses.class_max(nan)[4]) and np.isnan(losses.class_sum(nan)[4])
    assert np.isfinite(np.delete(np.asarray(losses.class_max(nan)), 4)).all()


def test_focal_loss_matches_its_definition_and_is_cross_entropy_at_zero(x64):
    z = jnp.array([[2.0, -1.0, 0.3, 30.0], [0.5, 1.0, -0.2, 0.0], [-1.0, 0.2, 0.1, -5.0]])
    onehot = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3).T
    # The definition in numpy, accurate where p_y is within 1e-13 of 1 (the fourth example):
    # -log p_y = (m - z_y) + log1p(sum over j != argmax of e^(z_j - m)), and 1 - p_y as the
    # sum of the other probabilities.
    zn, labels = np.asarray(z), np.array([0, 1, 2, 0])
    top = zn.max(axis=0)
    rest = np.exp(zn - top).sum(axis=0) - 1.0 * (zn == top).sum(axis=0)
    neg_log_p = (top - zn[labels, np.arange(4)]) + np.log1p(rest)
    others = np.exp(zn - (top + np.log1p(rest)))
    others[labels, np.arange(4)] = 0.0
    for gamma in (0.0, 0.5, 2.0):
        expected = others.sum(axis=0) ** gamma * neg_log_p
        got = losses.per_example("focal", focal_gamma=gamma)(z, onehot)
        # atol: cross-entropy is logsumexp(z) - z_y, exact to a few ulps of max |z| = 30.
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=4 * np.spacing(30.0))
    np.testing.assert_array_equal(losses.per_example("focal", focal_gamma=0.0)(z, onehot),
                                  losses.cross_entropy(z, onehot))
    # Finite gradients, including at p_y = 1 (the fourth example) and focal_gamma = 0.
    for gamma in (0.0, 0.5, 2.0):
        grad = jax.grad(lambda z, g: jnp.sum(losses.focal(z, onehot, g)), argnums=(0, 1))(
            z, gamma)
        assert all(np.all(np.isfinite(g)) for g in grad)


def test_focal_run_at_zero_equals_the_cross_entropy_run(x64):
    from ssm_jax import simulate

    base = dict(counts=(6, 2), dim=4, steps=30, saves=4, lr=1.0, init_scale=0.1, x64=True,
                weighting="power", gamma=0.5)
    ce = simulate(Config(loss="ce", **base)).trajectory
    focal = simulate(Config(loss="focal", focal_gamma=0.0, **base)).trajectory
    tree_allclose(focal.loss, ce.loss, rtol=1e-12, atol=1e-14)
    tree_allclose(focal.own_output, ce.own_output, rtol=1e-12, atol=1e-14)
    # A positive exponent down-weights fitted examples: a slower decrease of the CE part.
    slower = simulate(Config(loss="focal", focal_gamma=2.0, **base)).trajectory
    assert slower.per_class_loss[-1, 0] > ce.per_class_loss[-1, 0]
    with pytest.raises(ConfigError, match="focal_gamma=-1"):
        Config(loss="focal", focal_gamma=-1.0)
