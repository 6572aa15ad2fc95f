"""Weight schedules (ssm_jax.schedule): deferred re-weighting (--reweight-from), reweighting
until a time (--reweight-until) and general piecewise-constant schedules, in discrete runs
and gradient flow; their exact logistic trajectories, limits, timing and derivatives."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, meta, model, numeric_of, problem_of, simulate, spec_of, theory
from ssm_jax import schedule as ws
from ssm_jax.cli import main
from ssm_jax.config import ConfigError
from ssm_jax.simulate import initial_params, objective_parts, omega_of, per_example_loss
from ssm_jax.sweep import make_sweep
from ssm_jax.sweep import run as run_sweep

from helpers import tree_allclose

COUNTS = (24, 24, 6, 6)

# Aligned squared-loss gradient flow in float64: every mode is an exact logistic.
ALIGNED_FLOW = dict(loss="mse", counts=COUNTS, dim=6, init="aligned", init_scale=0.02,
                    method="flow", x64=True, rtol=1e-11, atol=1e-13, max_steps=200_000,
                    weighting="power", gamma=1.0, t1=300.0, saves=61)


def exact_own_outputs(t, rate_before, rate_after, z0, switch):
    """Own outputs (s, k) of a logistic with one rate until ``switch``, then the logistic
    with the other rate started from where the first one is at ``switch``."""
    t = np.asarray(t)[:, None]
    at_switch = theory.trajectory(switch, rate_before, z0)
    before = theory.trajectory(t, rate_before, z0)
    after = 1.0 / (1.0 + (1.0 / at_switch - 1.0) * np.exp(-rate_after * (t - switch)))
    return np.where(t < switch, before, after)


@pytest.mark.parametrize("parametrization", ["sample", "class"])
@pytest.mark.parametrize("which", ["reweight_from", "reweight_until"])
def test_aligned_flow_follows_the_logistic_with_the_rate_of_each_phase(
        x64, parametrization, which):
    switch = 97.3
    cfg = Config(**ALIGNED_FLOW, parametrization=parametrization, **{which: switch})
    tr = simulate(cfg).trajectory
    counts = np.asarray(COUNTS, float)
    weighted = theory.rate(counts, np.asarray(tr.weights), parametrization=parametrization)
    erm = theory.rate(counts, np.ones(4), parametrization=parametrization)
    before, after = (erm, weighted) if which == "reweight_from" else (weighted, erm)
    expected = exact_own_outputs(tr.t, np.asarray(before), np.asarray(after), 0.02, switch)
    np.testing.assert_allclose(tr.own_output, expected, rtol=1e-8, atol=1e-10)
    # the library's closed form (logistic in log-odds with the integrated rate)
    rates, taus = np.stack([before, after]), np.array([switch])
    np.testing.assert_allclose(theory.scheduled_trajectory(tr.t, rates, taus, 0.02), expected,
                               rtol=1e-12)
    half = np.asarray(theory.scheduled_half_time(rates, taus, 0.02))
    np.testing.assert_allclose(np.diagonal(theory.scheduled_trajectory(half, rates, taus,
                                                                       0.02)), 0.5, rtol=1e-12)
    # the run's half times are read off its saves by linear interpolation (5 time units
    # apart, so a few percent off where the logistic curves within an interval)
    reached = np.isfinite(tr.half_time)
    np.testing.assert_allclose(tr.half_time[reached], half[reached], rtol=0.03)
    # the two rates really differ, so the switch is visible
    assert np.max(np.abs(np.asarray(before) / np.asarray(after) - 1)) > 0.5


def test_a_flow_with_both_switches_has_three_logistic_phases(x64):
    cfg = Config(**ALIGNED_FLOW, reweight_from=40.0, reweight_until=150.0)
    tr = simulate(cfg).trajectory
    counts = np.asarray(COUNTS, float)
    weighted = np.asarray(theory.rate(counts, np.asarray(tr.weights)))
    erm = np.asarray(theory.rate(counts, np.ones(4)))
    middle = exact_own_outputs(tr.t, erm, weighted, 0.02, 40.0)
    z150 = exact_own_outputs(np.array([150.0]), erm, weighted, 0.02, 40.0)[0]
    t = np.asarray(tr.t)[:, None]
    last = 1.0 / (1.0 + (1.0 / z150 - 1.0) * np.exp(-erm * (t - 150.0)))
    np.testing.assert_allclose(tr.own_output, np.where(t < 150.0, middle, last),
                               rtol=1e-8, atol=1e-10)
    assert tr.schedule is not None and tr.schedule.num_phases == 3


def test_aligned_squared_loss_does_not_care_about_the_order_of_the_phases(x64):
    """In log-odds the aligned modes integrate their rate, so ERM for tau then the weighting
    (DRW) and the weighting for T - tau then ERM end at the same own outputs."""
    tau, end = 11.3, 30.0  # at t = 30 every own output is still between 0.3 and 0.8
    base = dict(ALIGNED_FLOW, t1=end)
    drw = simulate(Config(**base, reweight_from=tau)).trajectory
    until = simulate(Config(**base, reweight_until=end - tau)).trajectory
    assert np.all((drw.own_output[-1] > 0.3) & (drw.own_output[-1] < 0.8))
    np.testing.assert_allclose(drw.own_output[-1], until.own_output[-1], rtol=1e-8)
    assert np.max(np.abs(drw.own_output - until.own_output)) > 1e-2  # not on the way


def small(**changes):
    base = dict(counts=(12, 12, 3, 3), dim=5, steps=40, saves=11, lr=2.0, init_scale=0.05,
                weighting="power", gamma=1.0, x64=True)
    if "t1" in changes:  # a flow that ends at t1 (its save grid is that of the default steps)
        del base["steps"]
    return Config(**{**base, **changes})


@pytest.mark.parametrize("method", ["gd", "flow"])
def test_limits_switching_at_zero_or_after_the_end(x64, method):
    cfg = small(method=method, loss="ce")
    plain = simulate(cfg).trajectory
    erm = simulate(cfg.replace(weighting="erm", gamma=0.0)).trajectory
    end = 2.0 * 40
    fields = ("loss", "own_output", "per_class_accuracy", "per_class_loss")

    def same(a, b):
        tree_allclose({f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields})

    same(simulate(cfg.replace(reweight_from=0.0)).trajectory, plain)
    same(simulate(cfg.replace(reweight_until=end + 10.0)).trajectory, plain)
    # the weighting only after the end, or only before the start: ERM
    same(simulate(cfg.replace(reweight_from=end + 10.0)).trajectory, erm)
    same(simulate(cfg.replace(reweight_until=0.0)).trajectory, erm)


def test_a_discrete_run_switches_at_the_first_step_whose_time_reaches_the_switch(x64):
    cfg = small(loss="ce", lr=0.5)
    run = lambda t0: simulate(cfg.replace(reweight_from=t0)).trajectory.own_output  # noqa: E731
    # steps are at t = 0, 0.5, 1.0, 1.5, ...: 1.2 switches at step 3 (t = 1.5), as 1.5 does
    np.testing.assert_array_equal(run(1.2), run(1.5))
    assert not np.array_equal(run(1.2), run(1.0))
    assert not np.array_equal(run(1.5), run(2.0))


def test_weights_at_follows_the_rule_and_its_derivative_is_the_straddling_average(x64):
    schedule = ws.WeightSchedule(jnp.array([1.0, 2.5]),
                                 jnp.array([[1.0, 1.0], [2.0, 0.5], [1.0, 1.0]]))
    lr = 0.5
    for t, phase in [(0.0, 0), (0.5, 0), (1.0, 1), (2.0, 1), (2.5, 2), (9.0, 2)]:
        np.testing.assert_array_equal(ws.weights_at(schedule, t, lr),
                                      schedule.phase_weights[phase])
    # d/dtau_1 at t = 0.5 (the step [0.5, 1.0) straddles tau = 1): -(w_1 - w_0) / lr
    grad = jax.jacobian(lambda tau: ws.weights_at(schedule._replace(switch_times=tau), 0.5,
                                                  lr))(schedule.switch_times)
    np.testing.assert_allclose(grad[:, 0], -(np.array([2.0, 0.5]) - 1.0) / lr)
    np.testing.assert_allclose(grad[:, 1], 0.0)
    # no step straddles at t = 1.0: zero
    grad = jax.jacobian(lambda tau: ws.weights_at(schedule._replace(switch_times=tau), 1.0,
                                                  lr))(schedule.switch_times)
    np.testing.assert_allclose(grad, 0.0)


def test_discrete_switch_derivative_is_the_left_derivative_of_the_averaged_run(x64):
    """The defined derivative (ssm_jax.schedule): the run whose straddling step averages
    the weights over its interval is continuous in tau and equals the discrete run on the
    step grid; there the gradient is its derivative from the left (a one-sided finite
    difference: the run is smooth in the straddling step's weights)."""
    cfg = small(loss="ce", lr=0.5, steps=12, saves=2, reweight_from=2.0)
    out = meta.gradient(cfg, "balanced_loss", wrt=("reweight_from",))

    spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
    omega = np.asarray(omega_of(spec, problem, numeric))
    params0 = initial_params(spec, problem, numeric, jnp.asarray(omega),
                             jax.random.PRNGKey(cfg.seed))
    parts = objective_parts(spec, problem, numeric, jnp.asarray(omega))
    per_example = per_example_loss(spec, problem, numeric)

    def averaged_run(tau):
        """Plain GD whose step j uses the weights averaged over [t_j, t_j + lr)."""
        params = params0
        for j in range(cfg.steps):
            after = np.clip((cfg.lr * j + cfg.lr - tau) / cfg.lr, 0.0, 1.0)
            weights = jnp.asarray(1.0 + after * (omega - 1.0))
            grads = jax.grad(lambda p, w=weights: parts(p, w)[0])(params)
            params = jax.tree.map(lambda p, g: p - cfg.lr * g, params, grads)
        outputs = model.outputs(params, params["H"])
        return float(meta.objective_value("balanced_loss", outputs, problem, per_example))

    h = 1e-5
    np.testing.assert_allclose(averaged_run(2.0), out.value, rtol=1e-12)
    left = (averaged_run(2.0) - averaged_run(2.0 - h)) / h
    assert abs(left) > 1e-6
    np.testing.assert_allclose(out.gradient["reweight_from"], left, rtol=1e-4)


@pytest.mark.parametrize("adjoint, rtol", [("recursive", 1e-6), ("backsolve", 1e-4)])
def test_flow_switch_gradients_match_central_differences(x64, adjoint, rtol):
    cfg = small(loss="ce", method="flow", t1=30.0, saves=2, rtol=1e-10,
                atol=1e-12, adjoint=adjoint, reweight_from=7.0, reweight_until=21.0)
    wrt = ("reweight_from", "reweight_until", "gamma", "t1")
    out = meta.gradient(cfg, "balanced_loss", wrt=wrt)
    spec, problem, numeric, key, _ = meta.inputs_of(cfg, wrt)
    h = 1e-4
    for name in ("reweight_from", "reweight_until"):
        values = [meta.value(spec, problem, numeric._replace(
            **{name: getattr(numeric, name) + s * h}), key)[0] for s in (1, -1)]
        fd = (values[0] - values[1]) / (2 * h)
        assert abs(float(fd)) > 1e-5, name
        np.testing.assert_allclose(out.gradient[name], fd, rtol=rtol)


def test_a_piecewise_schedule_equals_the_command_line_schedule(x64):
    cfg = small(loss="ce", reweight_from=20.0, reweight_until=60.0)
    by_options = simulate(cfg)
    schedule = ws.piecewise(cfg.class_counts, [(0.0, "erm"), (20.0, "power", {"gamma": 1.0}),
                                               (60.0, "erm")])
    by_python = simulate(cfg.replace(weighting="erm", gamma=0.0, reweight_from=None,
                                     reweight_until=None), schedule=schedule)
    tree_allclose(by_python.trajectory.own_output, by_options.trajectory.own_output)
    tree_allclose(by_python.trajectory.loss, by_options.trajectory.loss)
    record = by_python.to_dict()["weight_schedule"]
    assert record["switch_times"] == [20.0, 60.0]
    np.testing.assert_allclose(record["phase_weights"][0], 1.0)


def test_a_general_schedule_runs_in_the_flow_and_pools_no_classes(x64):
    # four phases with explicit weights that differ between classes of equal count: the
    # reduced simulator must not pool them
    counts = (24, 24, 6, 6)
    schedule = ws.piecewise(counts, [(0.0, "erm"), (50.0, [1.0, 2.0, 3.0, 1.0]),
                                     (120.0, "power", {"gamma": 0.5}), (200.0, "erm")])
    base = dict(ALIGNED_FLOW, weighting="erm", gamma=0.0)
    tr = simulate(Config(**base), schedule=schedule).trajectory
    off = simulate(Config(**base, reduced="off"), schedule=schedule).trajectory
    tree_allclose(tr.own_output, off.own_output, rtol=1e-9, atol=1e-11)
    # classes 0 and 1 share their count but not their weights from t = 50 on
    assert np.max(np.abs(tr.own_output[:, 0] - tr.own_output[:, 1])) > 1e-3


@pytest.mark.parametrize("phases, message", [
    ([(1.0, "erm")], "must start at 0"),
    ([(0.0, "erm"), (0.0, "erm")], "must increase"),
    ([(0.0, "erm"), (5.0, [1.0, -1.0, 1.0, 1.0])], "finite values >= 0"),
    ([(0.0, "power", {"gama": 1.0})], "takes gamma"),
    ([(0.0, "nope")], "is not one of"),
])
def test_piecewise_refuses_bad_phases(phases, message):
    with pytest.raises(ConfigError, match=message):
        ws.piecewise(COUNTS, phases)


@pytest.mark.parametrize("changes, message", [
    ({"weighting": "power", "gamma": 1.0, "reweight_from": 5.0, "reweight_until": 5.0},
     "must be < reweight_until"),
    ({"reweight_from": 5.0}, "has no effect with weighting='erm'"),
    ({"weighting": "power", "gamma": 1.0, "reweight_until": 5.0,
      "parametrization": "whitened"}, "do not apply to parametrization='whitened'"),
    ({"weighting": "power", "gamma": 1.0, "reweight_from": -1.0}, "out of range"),
])
def test_bad_schedules_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


def test_meta_gradient_needs_the_switch():
    with pytest.raises(ConfigError, match="needs the switch"):
        meta.check_config(Config(weighting="power", gamma=1.0), "balanced_loss",
                          ("reweight_from",))


def test_a_sweep_over_switch_times_equals_single_runs(x64):
    cfg = small(loss="ce", steps=20, reweight_from=10.0)
    ds = run_sweep(make_sweep(cfg, {"reweight_from": [0.0, 10.0, 30.0]}, seeds=2),
                   progress=False)
    for i, t0 in enumerate((0.0, 10.0, 30.0)):
        for seed in (0, 1):
            one = simulate(cfg.replace(reweight_from=t0, seed=seed)).trajectory
            np.testing.assert_allclose(ds.own_output.values[i, seed], one.own_output,
                                       rtol=1e-10, atol=1e-12)


def test_command_line_schedules(tmp_path, capsys):
    out = tmp_path / "run.json"
    status = main(["simulate", "--counts", "12,3", "--dim", "4", "--steps", "20", "--saves",
                   "5", "--weighting", "power", "--gamma", "1", "--reweight-from", "10",
                   "--json", str(out)])
    assert status == 0
    record = json.loads(out.read_text())
    assert record["weight_schedule"]["switch_times"] == [10.0]
    assert record["config"]["reweight_from"] == 10.0
    grad = tmp_path / "grad.json"
    assert main(["grad", "--counts", "12,3", "--dim", "4", "--steps", "20", "--saves", "2",
                 "--weighting",
                 "power", "--gamma", "1", "--reweight-until", "30", "--wrt",
                 "reweight_until,gamma", "--json", str(grad)]) == 0
    gradient = json.loads(grad.read_text())["gradient"]
    assert set(gradient) == {"reweight_until", "gamma"}
    assert np.isfinite(gradient["reweight_until"])
    assert main(["simulate", "--reweight-from", "10"]) == 2
    assert "no effect with weighting='erm'" in capsys.readouterr().err


def test_a_phased_flow_stops_at_an_event_and_freezes_the_later_phases(x64):
    """Early stopping inside the second phase: the solve stops there, the later saves hold
    the stopped model, and the run reports the stop time."""
    cfg = small(loss="ce", method="flow", t1=60.0, saves=31, reweight_from=5.0,
                stop_metric="balanced_accuracy", stop_at=0.9)
    tr = simulate(cfg).trajectory
    stats = tr.flow
    assert int(stats.status) == 1  # stopped
    stop = float(stats.stop_time)
    assert 5.0 < stop < 60.0
    after = np.asarray(tr.t) > stop
    assert after.sum() >= 2
    np.testing.assert_array_equal(tr.own_output[after], np.broadcast_to(
        tr.own_output[after][0], tr.own_output[after].shape))
    assert tr.balanced_accuracy[after][0] >= 0.9


def test_a_phased_flow_that_runs_out_of_steps_fails_with_nan_saves(x64):
    cfg = small(loss="ce", method="flow", t1=60.0, saves=31, reweight_from=5.0,
                max_steps=8, rtol=1e-12, atol=1e-14)
    result = simulate(cfg)
    assert result.diverged
    assert result.to_dict()["solver_status"] == "max_steps_reached"
    tr = result.trajectory
    assert np.isnan(tr.loss[-1]) and np.isfinite(tr.loss[0])
