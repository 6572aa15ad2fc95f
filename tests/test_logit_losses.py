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


def _log_softmax(z):
    z = np.asarray(z, float)
    shifted = z - z.max(axis=0, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))


def test_balanced_softmax_is_logit_adjustment_with_tau_one(problem):
    """Balanced softmax (Ren et al. 2020): -log(n_y e^{z_y} / sum_j n_j e^{z_j})."""
    z, onehot = random_outputs(problem, 2), problem.onehot()
    counts, labels = np.asarray(COUNTS, float), np.asarray(problem.labels)
    balanced = -_log_softmax(np.asarray(z) + np.log(counts)[:, None])[labels,
                                                                       np.arange(len(labels))]
    la = losses.per_example("la", problem.counts, tau=1.0)
    np.testing.assert_allclose(la(z, onehot), balanced, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.3, 1.0])
def test_cdt_is_vs_with_tau_zero(problem, gamma):
    """Class-dependent temperatures (Ye et al. 2020): logits z_c / a_c with
    a_c = (n_max / n_c)^gamma."""
    z, onehot = random_outputs(problem, 3), problem.onehot()
    counts, labels = np.asarray(COUNTS, float), np.asarray(problem.labels)
    temperatures = (counts.max() / counts) ** gamma
    cdt = -_log_softmax(np.asarray(z) / temperatures[:, None])[labels, np.arange(len(labels))]
    vs = losses.per_example("vs", problem.counts, tau=0.0, vs_gamma=gamma)
    np.testing.assert_allclose(vs(z, onehot), cdt, rtol=1e-12)


@pytest.mark.parametrize("margin, scale", [(0.5, 1.0), (0.3, 4.0)])
def test_ldam_matches_its_definition(problem, margin, scale):
    """LDAM (Cao et al. 2019): -log softmax(s (z - m_y e_y))_y, m_c = C n_c^(-1/4) with the
    largest margin (the smallest class's) equal to ldam_margin."""
    z, onehot = random_outputs(problem, 4), problem.onehot()
    counts, labels = np.asarray(COUNTS, float), np.asarray(problem.labels)
    margins = margin * (counts.min() / counts) ** 0.25
    np.testing.assert_allclose(losses.ldam_margins(problem.counts, margin), margins,
                               rtol=1e-14)
    assert np.isclose(margins.max(), margin) and np.argmax(margins) == np.argmin(counts)
    shifted = np.asarray(z) - margins[:, None] * np.asarray(onehot)
    expected = -_log_softmax(scale * shifted)[labels, np.arange(len(labels))]
    ldam = losses.per_example("ldam", problem.counts, ldam_margin=margin, ldam_scale=scale)
    np.testing.assert_allclose(ldam(z, onehot), expected, rtol=1e-12)


def test_ldam_without_margin_is_cross_entropy_for_a_whole_run(x64):
    base = dict(counts=(12, 12, 3), dim=4, steps=25, saves=6, lr=1.0, init_scale=0.1,
                x64=True)
    ce = simulate(Config(loss="ce", **base)).trajectory
    ldam = simulate(Config(loss="ldam", ldam_margin=0.0, **base)).trajectory
    tree_allclose(ldam.own_output, ce.own_output)
    tree_allclose(ldam.loss, ce.loss)
    # the margins push the minority's own output up relative to cross-entropy
    margin = simulate(Config(loss="ldam", ldam_margin=1.0, **base)).trajectory
    assert margin.own_output[-1, 2] > ce.own_output[-1, 2]


def test_ldam_scale_is_a_time_and_margin_rescaling_in_the_flow(x64):
    """Without weight decay (W, H, s, m) and (sqrt(s) W, sqrt(s) H, 1, s m) have the same
    loss and their flows coincide with time multiplied by s (losses.ldam)."""
    s, m, z0 = 3.0, 0.2, 0.05
    base = dict(loss="ldam", counts=(10, 10, 3), dim=4, method="flow", x64=True,
                init="aligned", rtol=1e-10, atol=1e-12, saves=5)
    scaled = simulate(Config(**base, ldam_scale=s, ldam_margin=m, init_scale=z0,
                             t1=10.0)).trajectory
    plain = simulate(Config(**base, ldam_margin=s * m, init_scale=s * z0,
                            t1=s * 10.0)).trajectory
    # outputs of the scaled run, times s, are the plain run's at time s t
    np.testing.assert_allclose(s * scaled.own_output, plain.own_output, rtol=1e-7)
    np.testing.assert_allclose(scaled.per_class_loss, plain.per_class_loss, rtol=1e-7)


def test_ldam_config_and_cli(capsys):
    parser = build_parser()
    args = parser.parse_args(["simulate", "--loss", "ldam", "--ldam-margin", "0.3",
                              "--ldam-scale", "2"])
    cfg = config_from_args(args)
    assert (cfg.loss, cfg.ldam_margin, cfg.ldam_scale) == ("ldam", 0.3, 2.0)
    numeric = numeric_of(cfg)
    assert float(numeric.ldam_margin) == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="ldam_margin=0.3 has no effect"):
        Config(loss="ce", ldam_margin=0.3)
    with pytest.raises(ConfigError, match="ldam_scale=0.0"):
        Config(loss="ldam", ldam_scale=0.0)
    with pytest.raises(ConfigError, match="reduced='on' does not apply"):
        Config(loss="ldam", reduced="on")
