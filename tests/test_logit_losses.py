"""Logit-adjusted (la) and VS losses, and the post-hoc logit-adjustment metric."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, ConfigError, losses, metrics, numeric_of, problem_of, spec_of
from ssm_jax.cli import build_parser, config_from_args
from ssm_jax.problem import make_problem
from ssm_jax.simulate import simulate, trajectory_jit

from helpers import tree_allclose

COUNTS = (30, 30, 6, 3)


@pytest.fixture
def problem(x64):
    return make_problem(COUNTS)


def random_outputs(problem, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (problem.num_classes,
                                                         problem.labels.shape[0]))


def test_vs_with_unit_scaling_and_no_offset_is_cross_entropy(problem):
    z, onehot = random_outputs(problem), problem.onehot()
    vs = losses.per_example("vs", problem.counts, tau=0.0, vs_gamma=0.0)
    tree_allclose(vs(z, onehot), losses.cross_entropy(z, onehot))
    la = losses.per_example("la", problem.counts, tau=0.0)
    tree_allclose(la(z, onehot), losses.cross_entropy(z, onehot))


def test_vs_and_la_definitions(problem):
    z, onehot = random_outputs(problem, 1), problem.onehot()
    counts = np.asarray(COUNTS, float)
    prior = counts / counts.sum()
    delta = (counts / counts.max()) ** 0.3
    iota = 1.5 * np.log(prior)
    logits = np.asarray(z) * delta[:, None] + iota[:, None]
    expected = (np.log(np.exp(logits).sum(axis=0))
                - logits[np.asarray(problem.labels), np.arange(logits.shape[1])])
    vs = losses.per_example("vs", problem.counts, tau=1.5, vs_gamma=0.3)
    np.testing.assert_allclose(vs(z, onehot), expected, rtol=1e-12)
    # With vs_gamma = 0 the VS loss is logit adjustment.
    tree_allclose(losses.per_example("vs", problem.counts, 1.5, 0.0)(z, onehot),
                  losses.per_example("la", problem.counts, 1.5)(z, onehot))


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_la_optimal_constant_logits_shift_by_tau_log_prior(problem, tau):
    """Documented decision rule: the best constant logits under LA are (1 - tau) log pi
    (+ const); tau = 0 (cross-entropy) gives log pi, tau = 1 a prior-free rule."""
    onehot, n = problem.onehot(), problem.labels.shape[0]
    prior = problem.counts / problem.counts.sum()
    la = losses.per_example("la", problem.counts, tau)

    def risk(b):
        return jnp.mean(la(jnp.broadcast_to(b[:, None], (len(COUNTS), n)), onehot))

    best = (1.0 - tau) * jnp.log(prior)
    np.testing.assert_allclose(jax.grad(risk)(best), 0.0, atol=1e-13)
    assert float(risk(best)) < float(risk(best + 0.1 * jnp.array([1.0, -1.0, 0.5, -0.5])))
    # VS: the adjusted logits Delta b + iota must equal log pi.
    vs = losses.per_example("vs", problem.counts, tau, 0.5)
    delta, iota = losses.vs_parameters(problem.counts, tau, 0.5)
    b_vs = (jnp.log(prior) - iota) / delta
    grad_vs = jax.grad(lambda b: jnp.mean(vs(jnp.broadcast_to(b[:, None], (4, n)), onehot)))
    np.testing.assert_allclose(grad_vs(b_vs), 0.0, atol=1e-13)


def test_posthoc_adjustment_recovers_minorities(problem):
    """Logits s e_y + log pi (a CE model dominated by the prior): with s < log(n_1/n_c) the
    plain argmax misses class c, the post-hoc rule argmax(z - log pi) gets everything."""
    prior = problem.counts / problem.counts.sum()
    z = 1.0 * problem.onehot() + jnp.log(prior)[:, None]
    plain = metrics.snapshot(z, problem, losses.cross_entropy)["per_class_accuracy"]
    np.testing.assert_array_equal(plain, [1.0, 1.0, 0.0, 0.0])  # log(30/6) = 1.6 > 1
    np.testing.assert_array_equal(metrics.posthoc_accuracy(z, problem, 1.0), [1, 1, 1, 1])
    np.testing.assert_array_equal(metrics.posthoc_accuracy(z, problem, 0.0), plain)


@pytest.fixture(scope="module")
def tau_sweep():
    """One vmapped call: loss la with tau = 0, 1, 2 (class parametrisation, ce-like run)."""
    cfg = Config(loss="la", counts=COUNTS, profile="counts", dim=8, parametrization="class",
                 lr=2.0, steps=150, saves=16)
    spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
    taus = jnp.array([0.0, 1.0, 2.0])
    axes = jax.tree.map(lambda _: None, numeric)._replace(tau=0)
    run = jax.vmap(lambda n: trajectory_jit(spec, problem, n, jax.random.PRNGKey(0)),
                   in_axes=(axes,))
    return cfg, jax.tree.map(np.asarray, run(numeric._replace(tau=taus)))


def test_la_training_tau_zero_is_ce_and_tau_helps_minorities(tau_sweep):
    cfg, tr = tau_sweep
    ce = simulate(cfg.replace(loss="ce")).trajectory
    np.testing.assert_allclose(tr.own_output[0], ce.own_output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.loss[0], ce.loss, rtol=1e-5)
    # Stronger adjustment raises the smallest class's own logit and lowers the largest's.
    final = tr.own_output[:, -1]
    assert final[0, 3] < final[1, 3] < final[2, 3], final
    assert final[0, 0] > final[1, 0] > final[2, 0], final
    assert np.all(np.isfinite(tr.posthoc_balanced_accuracy))


def test_vs_runs_in_gradient_flow():
    cfg = Config(loss="vs", tau=1.0, vs_gamma=0.3, counts=COUNTS, profile="counts", dim=8,
                 parametrization="class", method="flow", lr=1.0, steps=20, saves=5, x64=True)
    flow = simulate(cfg).trajectory
    gd = simulate(cfg.replace(method="gd", lr=0.01, steps=2000)).trajectory
    np.testing.assert_allclose(flow.loss, gd.loss, rtol=1e-2)  # GD is O(lr) off the flow
    assert np.all(np.diff(flow.loss) <= 0) and flow.loss[-1] < 0.5 * flow.loss[0]


def test_config_and_cli():
    with pytest.raises(ConfigError, match="tau"):
        Config(loss="la", tau=float("nan"))
    with pytest.raises(ConfigError, match="vs_gamma"):
        Config(loss="vs", vs_gamma=float("inf"))
    with pytest.raises(ConfigError, match="loss"):
        losses.per_example("la")  # needs the counts
    args = build_parser().parse_args(["simulate", "--loss", "vs", "--vs-gamma", "0.3",
                                      "--tau", "1.5"])
    cfg = config_from_args(args)
    assert (cfg.loss, cfg.vs_gamma, cfg.tau) == ("vs", 0.3, 1.5)
    assert float(numeric_of(cfg).tau) == 1.5
    keys = set(simulate(Config(loss="la", counts=COUNTS, dim=4, steps=2, saves=2)).to_dict())
    assert {"posthoc_per_class_accuracy", "posthoc_balanced_accuracy"} <= keys
    assert "geometry" not in keys  # geometry is recorded only with --geometry
