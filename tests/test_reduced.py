"""The exact reduced simulator (ssm_jax.reduced) against the per-example simulator.

Every saved variable must agree to 1e-6 in float64 (in practice ~1e-12), with padding,
bias, weight decay, class weighting, momentum, the whitened parametrisation, classes with
fewer examples than dimensions, gradient flow, and gradients through the whole run.
"""

from __future__ import annotations

import dataclasses
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import reduced
from ssm_jax.cli import main
from ssm_jax.config import Config, ConfigError
from ssm_jax.problem import make_problem

from helpers import tree_allclose

simulate = importlib.import_module("ssm_jax.simulate")

TOL = dict(rtol=1e-6, atol=1e-9)

CASES = {
    # padded problem, bias, weight decay, power weights, parameters kept at every save
    "sample_padded": dict(n_major=24, ratio=3, dim=6, weighting="power", gamma=1.0, bias=True,
                          weight_decay=1e-3, init_scale=0.1, lr=2.0, steps=60, saves=7,
                          keep_params=True),
    # whitened features, momentum, effective-number weights, and minority classes with
    # fewer examples than dimensions (singular class scatter)
    "whitened_momentum": dict(k_major=2, k_minor=3, n_major=30, ratio=10, dim=8,
                              parametrization="whitened", weighting="effective", beta=0.9,
                              method="momentum", momentum=0.8, lr=0.5, init_scale=0.1,
                              steps=60, saves=7, bias=True),
    # aligned initialisation: every class scatter is zero
    "aligned": dict(k_major=2, k_minor=2, n_major=20, ratio=4, dim=6, init="aligned",
                    init_scale=0.05, weighting="power", gamma=1.0, steps=60, saves=7),
}


def run(cfg: Config, mode: str, n_pad: int | None = None):
    spec = simulate.spec_of(cfg.replace(reduced=mode))
    problem = simulate.problem_of(cfg, n_pad)
    return simulate.trajectory_jit(spec, problem, simulate.numeric_of(cfg),
                                   jax.random.PRNGKey(cfg.seed))


@pytest.mark.parametrize("name", sorted(CASES))
def test_reduced_equals_per_example(name, x64):
    cfg = Config(x64=True, **CASES[name])
    n = sum(simulate.class_counts_of(cfg))
    n_pad = n + 7 if name == "sample_padded" else None
    fast = run(cfg, "on", n_pad)
    slow = run(cfg, "off")
    if n_pad is not None:  # padded columns of the kept features are zero; drop them
        fast = fast._replace(params={**fast.params, "H": fast.params["H"][:, :, :n]})
        np.testing.assert_array_equal(run(cfg, "on", n_pad).params["H"][:, :, n:], 0.0)
    tree_allclose(fast, slow, **TOL)
    assert int(slow.diverged_step) == -1
    # the run learns something, so the comparison is not between two constant trajectories
    assert float(slow.loss[-1]) < 0.9 * float(slow.loss[0])


def test_flow_equals_per_example(x64):
    cfg = Config(x64=True, n_major=16, ratio=4, dim=5, method="flow", lr=1.0, steps=40,
                 saves=5, rtol=1e-10, atol=1e-12, bias=True, init_scale=0.1)
    fast, slow = run(cfg, "on"), run(cfg, "off")
    assert fast.flow is not None
    tree_allclose(fast._replace(flow=None), slow._replace(flow=None), rtol=1e-6, atol=1e-8)


def test_float32_agrees_closely():
    cfg = Config(n_major=40, ratio=8, dim=16, steps=100, saves=5, weighting="power", gamma=0.5,
                 init_scale=0.1)
    fast, slow = run(cfg, "on"), run(cfg, "off")
    assert fast.loss.dtype == jnp.float32
    np.testing.assert_allclose(fast.own_output, slow.own_output, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-4)
    np.testing.assert_allclose(fast.per_class_accuracy, slow.per_class_accuracy, atol=1e-6)


def test_gradient_through_run_equals_per_example(x64):
    """d(balanced final loss)/d(gamma, init_scale, lr) through 40 steps, both simulators."""
    cfg = Config(x64=True, n_major=20, ratio=4, dim=5, weighting="power", gamma=0.5,
                 lr=2.0, steps=30, saves=3, init_scale=0.1)
    problem = simulate.problem_of(cfg)
    key = jax.random.PRNGKey(0)

    def balanced_loss(numeric, mode):
        traj = simulate.trajectory(simulate.spec_of(cfg.replace(reduced=mode)), problem,
                                   numeric, key)
        return jnp.mean(traj.per_class_loss[-1])

    numeric = simulate.numeric_of(cfg)
    grads = {mode: jax.jit(jax.grad(balanced_loss), static_argnums=1)(numeric, mode)
             for mode in ("on", "off")}
    for field in ("gamma", "init_scale", "lr"):
        a, b = getattr(grads["on"], field), getattr(grads["off"], field)
        assert abs(float(b)) > 1e-6, field  # a real dependence
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=field)


def test_class_groups_of_configurations():
    assert reduced.class_groups_of(Config(k_major=2, k_minor=3)) == (0, 0, 1, 1, 1)
    assert reduced.class_groups_of(Config(k_major=2, k_minor=3, ratio=1)) == (0, 0, 1, 1, 1)
    assert reduced.class_groups_of(Config(counts=(30, 12, 30, 5))) == (0, 1, 0, 2)
    assert reduced.class_groups_of(Config(counts=(30, 12, 5))) is None  # nothing to pool
    assert reduced.class_groups_of(Config(profile="longtail")) is None
    explicit = Config(k_major=2, k_minor=2, weighting="explicit", weights=(1, 2, 1, 1))
    assert reduced.class_groups_of(explicit) is None  # equal counts, different weights
    assert simulate.spec_of(Config(k_major=2, k_minor=3)).class_groups == (0, 0, 1, 1, 1)


@pytest.mark.parametrize("counts", [None, (30, 12, 30, 5, 12)])
def test_pooled_groups_equal_separate_classes(counts, x64):
    """Pooling classes of equal count (G = 2 or 3 scatters) gives the per-class reduced run
    and the per-example run; the state really is pooled."""
    # The step profile's shape, or explicit counts (which replace it).
    imbalance = (dict(k_major=2, k_minor=3, n_major=25, ratio=5) if counts is None
                 else dict(counts=counts))
    cfg = Config(x64=True, dim=6, weighting="power", gamma=0.7, parametrization="whitened",
                 init_scale=0.1, lr=1.0, steps=50, saves=6, bias=True, **imbalance)
    spec = simulate.spec_of(cfg.replace(reduced="on"))
    assert reduced.num_groups(spec, 5) == (2 if counts is None else 3)
    problem, numeric = simulate.problem_of(cfg), simulate.numeric_of(cfg)
    key = jax.random.PRNGKey(3)
    pooled = simulate.trajectory_jit(spec, problem, numeric, key)
    alone = simulate.trajectory_jit(dataclasses.replace(spec, class_groups=None), problem,
                                    numeric, key)
    slow = simulate.trajectory_jit(simulate.spec_of(cfg.replace(reduced="off")), problem,
                                   numeric, key)
    tree_allclose(pooled, alone, **TOL)
    tree_allclose(pooled, slow, **TOL)
    assert float(slow.loss[-1]) < 0.9 * float(slow.loss[0])
    omega = simulate.omega_of(spec, problem, numeric)
    params0 = simulate.initial_params(spec, problem, numeric, omega, key)
    state, _ = reduced.reduce_params(spec, problem, omega, params0)
    G = reduced.num_groups(spec, 5)
    chex.assert_shape(state["V"], (6 * (G * 6 + 5),))  # V = [Y_1 .. Y_G | nu_1 .. nu_k], flat
    chex.assert_shape(reduced.matrix(spec, state["V"]), (6, G * 6 + 5))
    Y, nu = reduced.blocks(spec, state["V"], 5)
    chex.assert_shape(Y, (6, G, 6))
    chex.assert_shape(nu, (5, 6))
    np.testing.assert_array_equal(reduced.join(spec, Y, nu), state["V"])


def test_divergence_reported_the_same(x64):
    cfg = Config(x64=True, n_major=20, ratio=2, dim=4, lr=60.0, steps=40, saves=5)
    fast, slow = run(cfg, "on"), run(cfg, "off")
    assert int(slow.diverged_step) >= 0
    assert int(fast.diverged_step) == int(slow.diverged_step)


def test_step_cost_does_not_grow_with_n(x64):
    """The compiled reduced step's flop count is the same for n = 100 and n = 10,000."""
    cfg = Config(x64=True, dim=8)
    spec = simulate.spec_of(cfg)
    flops = {}
    for n_major in (10, 1000):
        problem = make_problem((n_major,) * 10)
        numeric = simulate.numeric_of(cfg)
        omega = simulate.omega_of(spec, problem, numeric)
        state = {"W": jnp.ones((10, 8)),
                 "V": reduced.join(spec, jnp.ones((8, 2, 8)), jnp.ones((10, 8)))}
        constants = (problem.example_counts(), None)  # the objective uses the counts only
        objective = reduced.objective_fn(spec, problem, numeric, omega, constants)
        compiled = jax.jit(jax.grad(objective)).lower(state).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops[n_major] = cost["flops"]
    assert flops[10] == flops[1000] > 0


def test_lower_inverse_and_shifted_cholesky(x64):
    A = jax.random.normal(jax.random.PRNGKey(1), (3, 7, 4))
    scatter = A @ A.transpose(0, 2, 1)  # rank 4 < 7: singular
    L = jax.jit(reduced.shifted_cholesky)(scatter)
    assert bool(jnp.all(jnp.isfinite(L)))
    np.testing.assert_allclose(L @ L.transpose(0, 2, 1), scatter, atol=1e-12)
    inverse = jax.jit(reduced.lower_inverse)(L)
    np.testing.assert_allclose(inverse @ L, np.broadcast_to(np.eye(7), (3, 7, 7)), atol=1e-6)
    full = jnp.linalg.cholesky(scatter[0] + jnp.eye(7))
    np.testing.assert_allclose(jax.jit(reduced.lower_inverse)(full), jnp.linalg.inv(full),
                               atol=1e-12)


def test_cholesky_matches_lapack_with_its_derivative(x64):
    A = jax.random.normal(jax.random.PRNGKey(2), (3, 9, 9))
    spd = A @ A.transpose(0, 2, 1) + 0.1 * jnp.eye(9)
    L = jax.jit(reduced.cholesky)(spd)
    np.testing.assert_allclose(L, jnp.linalg.cholesky(spd), rtol=1e-11, atol=1e-12)
    assert not bool(jnp.any(jnp.isfinite(reduced.cholesky(-spd)[:, :, 0])))  # not PD: NaN
    # derivatives against LAPACK's (both modes), through a non-symmetric direction
    direction = jax.random.normal(jax.random.PRNGKey(3), (3, 9, 9))
    ours = jax.jvp(reduced.cholesky, (spd,), (direction,))[1]
    lapack = jax.jvp(jnp.linalg.cholesky, (spd,), (direction,))[1]
    np.testing.assert_allclose(ours, lapack, rtol=1e-9, atol=1e-10)
    f = lambda chol: lambda a: jnp.sum(jnp.sin(chol(a)))  # noqa: E731
    np.testing.assert_allclose(jax.grad(f(reduced.cholesky))(spd),
                               jax.grad(f(jnp.linalg.cholesky))(spd), rtol=1e-9, atol=1e-10)


def test_auto_mode_and_errors():
    big, small = make_problem((500,) * 10), make_problem((6,) * 10)
    spec = simulate.spec_of(Config(dim=16))  # two groups of equal classes
    assert reduced.use_reduced(spec, big)  # margin 2: reduced when n > 2 G d = 64
    assert not reduced.use_reduced(spec, small)  # n = 60
    assert not reduced.use_reduced(dataclasses.replace(spec, class_groups=None),
                                   make_problem((20,) * 10))  # 2 k d = 320 > n = 200
    assert not reduced.use_reduced(simulate.spec_of(Config(dim=16, reduced="off")), big)
    for other in (dict(loss="ce"), dict(method="adam"), dict(parametrization="class")):
        assert not reduced.use_reduced(simulate.spec_of(Config(dim=16, **other)), big)
        with pytest.raises(ConfigError, match="reduced='on' does not apply"):
            Config(reduced="on", **other)
    with pytest.raises(ConfigError, match="reduced='maybe' is not one of"):
        Config(reduced="maybe")


def test_cli_reduced_option(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["simulate", "--reduced", "on", "--loss", "ce", "--json", str(out)]) == 2
    assert not out.exists()
    assert "reduced='on' does not apply to loss='ce'" in capsys.readouterr().err


def test_save_points_expanded_in_blocks(x64, monkeypatch):
    """The reduced observer records small matrices at each save and forms the outputs after
    the run, a block of save points at a time: any block size (here 3 blocks of 4, the last
    one short, and all 11 at once) gives the per-example simulator's observations."""
    assert reduced.save_block(101, 10, 2000) == 13  # 1 MB of outputs per block and run
    assert reduced.save_block(11, 1, 1) == 11
    cfg = Config(x64=True, k_major=2, k_minor=3, n_major=30, ratio=5, dim=7,
                 weighting="power", gamma=0.5, init_scale=0.1, lr=2.0, steps=50, saves=11)
    spec, problem = simulate.spec_of(cfg.replace(reduced="on")), simulate.problem_of(cfg)
    numeric, key = simulate.numeric_of(cfg), jax.random.PRNGKey(cfg.seed)
    slow = run(cfg, "off")
    k, n = 5, problem.labels.shape[0]
    for floats, block in [(4 * k * n, 4), (1 << 30, 11)]:
        monkeypatch.setattr(reduced, "EXPAND_BLOCK_FLOATS", floats)
        assert reduced.save_block(11, k, n) == block
        fast = jax.jit(lambda p, q, r: simulate.trajectory(spec, p, q, r))(problem, numeric,
                                                                           key)
        tree_allclose(fast, slow, **TOL)
    observe = reduced.observe_fn(spec, problem, numeric, fast.weights,
                                 *_constants(spec, problem, numeric, key))
    state = reduced.reduce_params(spec, problem, fast.weights, simulate.initial_params(
        spec, problem, numeric, fast.weights, key))[0]
    direct = observe(state)  # a Deferred observer called on one state observes it
    tree_allclose({name: direct[name] for name in ("loss", "per_class_accuracy")},
                  {"loss": slow.loss[0], "per_class_accuracy": slow.per_class_accuracy[0]},
                  **TOL)


def _constants(spec, problem, numeric, key):
    omega = simulate.omega_of(spec, problem, numeric)
    params0 = simulate.initial_params(spec, problem, numeric, omega, key)
    return reduced.reduce_params(spec, problem, omega, params0)[1], None


def test_gradient_through_stopped_flow_equals_per_example(x64):
    """A reduced gradient flow stopped by an event leaves save points unreached (frozen at
    the stop); their records never reach the derivative: d(final balanced loss)/d(gamma)
    is finite and equals the per-example one."""
    cfg = Config(x64=True, n_major=16, ratio=4, dim=5, method="flow", lr=1.0, steps=40,
                 saves=9, rtol=1e-9, atol=1e-11, weighting="power", gamma=0.5,
                 init_scale=0.1, stop_metric="loss", stop_at=0.47)
    problem, key = simulate.problem_of(cfg), jax.random.PRNGKey(0)

    def balanced_loss(numeric, mode):
        traj = simulate.trajectory(simulate.spec_of(cfg.replace(reduced=mode)), problem,
                                   numeric, key)
        return jnp.mean(traj.per_class_loss[-1]), traj.flow.stop_time

    numeric = simulate.numeric_of(cfg)
    out = {mode: jax.jit(jax.value_and_grad(balanced_loss, has_aux=True),
                         static_argnums=1)(numeric, mode) for mode in ("on", "off")}
    (_, stop_on), grad_on = out["on"]
    (_, stop_off), grad_off = out["off"]
    assert 0 < float(stop_on) < float(numeric.t1)  # stopped early: save points unreached
    np.testing.assert_allclose(stop_on, stop_off, rtol=1e-6)
    assert np.isfinite(float(grad_on.gamma)) and abs(float(grad_off.gamma)) > 1e-8
    np.testing.assert_allclose(grad_on.gamma, grad_off.gamma, rtol=1e-5)
