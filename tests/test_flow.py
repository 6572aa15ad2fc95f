"""Gradient flow (ssm_jax.dynamics.flow) against exact results.

Compilation dominates the cost of a diffrax solve, so the closed-form, conservation,
no-mixing and random-init checks share ONE compiled solve: the three parametrisations are
independent variables of one summed objective (the gradient flow of a sum of objectives in
disjoint variables is the three flows side by side), vmapped over initialisations,
weightings and end times.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import Config, model, simulate, theory
from ssm_jax.cli import main
from ssm_jax.config import ConfigError
from ssm_jax.dynamics import discrete, flow
from ssm_jax.metrics import first_crossing
from ssm_jax.simulate import (
    flow_json,
    numeric_of,
    objective_fn,
    observe_fn,
    omega_of,
    problem_of,
    spec_of,
    trajectory,
)

PARAMETRIZATIONS = ("sample", "class", "whitened")
COUNTS = (40, 40, 4, 4)
DIM = 16
STEPS, SAVES = 200, 201  # save grid j / 200 of t1
Z0 = 0.01  # aligned init: initial own output
EPS = 1e-3  # gaussian init: std
T_ALIGNED, T_RANDOM = 100.0, 400.0
GAMMAS = (0.0, 0.5, 1.0)  # power-law weightings of the random-init runs
N = np.asarray(COUNTS, float)
ALIGNED_WEIGHTS = (np.ones(4), N**-0.5, np.array([0.5, 2.0, 1.0, 3.0]))  # raw, normalised later


def base_config(parametrization: str, **changes) -> Config:
    values = dict(loss="mse", counts=COUNTS, dim=DIM, parametrization=parametrization,
                  weighting="explicit", weights=(1.0,) * 4, method="flow", steps=STEPS,
                  saves=SAVES, lr=T_ALIGNED / STEPS, x64=True, keep_params=True)
    values.update(changes)
    if values["method"] == "flow":  # the solver's tolerances: a discrete run has none
        values = dict(rtol=1e-10, atol=1e-12) | values
    return Config(**values)


def relative_error(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.fixture(scope="module")
def batch():
    """One compiled flow: 3 aligned runs (3 weightings, t1 = 100) and 3 gaussian runs
    (gamma = 0, 1/2, 1, t1 = 400), each for all three parametrisations at once."""
    with jax.enable_x64(True):
        problem = problem_of(base_config("sample"))
        specs = [spec_of(base_config(p)) for p in PARAMETRIZATIONS]
        numerics = [numeric_of(base_config(p)) for p in PARAMETRIZATIONS]

        def parts(weights):
            out = []
            for spec, numeric in zip(specs, numerics, strict=True):
                numeric = numeric._replace(weights=weights)
                omega = omega_of(spec, problem, numeric)
                out.append((objective_fn(spec, problem, numeric, omega),
                            observe_fn(spec, problem, numeric, omega), omega))
            return out

        def solve(params0, weights, t1):
            pieces = parts(weights)

            def objective(params):
                return sum(obj(p) for (obj, _, _), p in zip(pieces, params, strict=True))

            def observe(params):
                seen = [obs(p) for (_, obs, _), p in zip(pieces, params, strict=True)]
                return {"loss": objective(params), "parts": seen}

            seen, _, stats = flow.run(objective, observe, params0, t1, SAVES, rtol=1e-10,
                                      atol=1e-12, grid=discrete.save_steps(STEPS, SAVES) / STEPS)
            return seen["parts"], stats, [omega for _, _, omega in pieces]

        runs = []  # (init, raw weights, t1)
        runs += [("aligned", w, T_ALIGNED) for w in ALIGNED_WEIGHTS]
        runs += [("gaussian", N**-gamma, T_RANDOM) for gamma in GAMMAS]
        key = jax.random.PRNGKey(3)
        params0, weights, ends = [], [], []
        for init, raw, t1 in runs:
            w = jnp.asarray(raw * N.sum() / (N * raw).sum())  # normalised like weights.py
            per_par = []
            for par in PARAMETRIZATIONS:
                if init == "aligned":
                    per_par.append(model.init_aligned(key, problem, DIM, Z0, w, par, False,
                                                      jnp.float64))
                else:
                    per_par.append(model.init_gaussian(key, problem, DIM, EPS, par, False,
                                                       jnp.float64))
            params0.append(tuple(per_par))
            weights.append(w)
            ends.append(t1)
        stack = lambda *xs: jnp.stack(xs)  # noqa: E731
        seen, stats, omegas = jax.jit(jax.vmap(solve))(
            jax.tree.map(stack, *params0), jnp.stack(weights), jnp.asarray(ends))
        grid = discrete.save_steps(STEPS, SAVES) / STEPS
        times = np.asarray(ends)[:, None] * grid[None, :]
        return dict(seen=jax.tree.map(np.asarray, seen), stats=stats, omegas=omegas,
                    times=times, problem=problem, n_aligned=len(ALIGNED_WEIGHTS))


# ----------------------------------------------------------------- aligned: closed form


@pytest.mark.parametrize("p", range(3), ids=PARAMETRIZATIONS)
def test_aligned_flow_matches_logistic_closed_form(batch, p, x64):
    """z_c(t) = e^{r t} / (e^{r t} - 1 + 1/z0) for every class, weighting and time."""
    par = PARAMETRIZATIONS[p]
    assert np.all(np.asarray(batch["stats"].status)[: batch["n_aligned"]] == flow.SUCCESS)
    for b in range(batch["n_aligned"]):
        omega = np.asarray(batch["omegas"][p][b])
        r = theory.rate(N, omega, None, par)
        expected = theory.trajectory(batch["times"][b][:, None], r[None, :], Z0)
        own = batch["seen"][p]["own_output"][b]
        assert relative_error(own, expected) < 1e-6, (par, b)
        # half_time (read off the saves) agrees with the closed-form half time
        t_half = first_crossing(jnp.asarray(batch["times"][b]), jnp.asarray(own))
        reached = np.isfinite(np.asarray(t_half))
        np.testing.assert_allclose(np.asarray(t_half)[reached],
                                   np.asarray(theory.half_time(r, Z0))[reached], rtol=1e-3)


@pytest.mark.parametrize("p", range(3), ids=PARAMETRIZATIONS)
def test_aligned_flow_conserves_balance_and_never_mixes(batch, p, x64):
    par = PARAMETRIZATIONS[p]
    problem = batch["problem"]
    for b in range(batch["n_aligned"]):
        params = jax.tree.map(lambda a, b=b: a[b], batch["seen"][p]["params"])
        balance = jax.vmap(lambda q: theory.class_balance(q, problem.labels, 4, par))(params)
        scale = float(np.max(np.sum(np.asarray(params["W"]) ** 2, axis=-1)))
        assert scale > 1.0  # the classes were learned: the norms grew by orders of magnitude
        assert np.max(np.abs(np.asarray(balance))) < 1e-9 * scale, par
        omega = batch["omegas"][p][b]
        outputs = jax.vmap(lambda q, omega=omega: model.outputs(
            q, model.features(q, problem, omega, par)))(params)
        off = np.asarray(outputs) * (1 - np.asarray(problem.onehot()))[None]
        assert np.max(np.abs(off)) < 1e-12, par


@pytest.mark.parametrize("p", range(3), ids=PARAMETRIZATIONS)
def test_gaussian_flow_conserves_the_gram_difference(batch, p):
    """W^T W - G G^T is conserved by gradient flow on any loss of W G (depth 1, no decay)."""
    params = batch["seen"][p]["params"]
    for b in range(batch["n_aligned"], len(batch["times"])):
        W, H = params["W"][b], params["H"][b]
        gram = np.einsum("ski,skj->sij", W, W) - np.einsum("sim,sjm->sij", H, H)
        size = np.max(np.abs(np.einsum("ski,skj->sij", W, W)))
        assert np.max(np.abs(gram - gram[0])) < 1e-9 * size


@pytest.mark.parametrize("p", range(3), ids=PARAMETRIZATIONS)
def test_random_small_init_learning_time_ratios_match_theory(batch, p, x64):
    """Half times from a small gaussian init: ratios (and the times) within 20% of
    theory.random_init_half_times, for ERM, gamma = 1/2 and gamma = 1."""
    par = PARAMETRIZATIONS[p]
    for j, b in enumerate(range(batch["n_aligned"], len(batch["times"]))):
        omega = np.asarray(batch["omegas"][p][b])
        own = batch["seen"][p]["own_output"][b]
        measured = np.asarray(first_crossing(jnp.asarray(batch["times"][b]), jnp.asarray(own)))
        assert np.all(np.isfinite(measured)), (par, GAMMAS[j], measured)
        predicted = np.asarray(theory.random_init_half_times(N, omega, par, EPS, DIM))
        ratios = np.asarray(theory.learning_time_ratios(N, omega, par, EPS, DIM, reference=0))
        np.testing.assert_allclose(measured / measured[0], ratios, rtol=0.2,
                                   err_msg=f"{par} gamma={GAMMAS[j]}")
        np.testing.assert_allclose(measured, predicted, rtol=0.2)
        # The minority/majority ratio differs from 1 wherever the theory says it does:
        # it is not a trivially satisfied comparison.
        if abs(ratios[2] - 1) > 0.5:
            assert abs(measured[2] / measured[0] - 1) > 0.5 * abs(ratios[2] - 1)


def test_solver_stats(batch):
    stats = batch["stats"]
    steps = np.asarray(stats.num_steps)
    assert np.all(steps > 10)
    np.testing.assert_array_equal(steps, np.asarray(stats.num_accepted_steps)
                                  + np.asarray(stats.num_rejected_steps))
    np.testing.assert_array_equal(np.asarray(stats.num_vf_evals), 1 + 6 * steps)  # tsit5
    np.testing.assert_allclose(np.asarray(stats.end_time), [T_ALIGNED] * 3 + [T_RANDOM] * 3)
    assert np.all(np.isnan(np.asarray(stats.stop_time)))


# ----------------------------------------------------------------- discrete -> flow


def test_discrete_gd_converges_to_the_flow_at_rate_eta(batch):
    """gap(eta) = max |z_gd - z_flow| over the saves is O(eta): it halves with eta."""
    flow_own = batch["seen"][0]["own_output"][0]  # sample, ERM, aligned, t1 = 100
    gaps = []
    for eta in (0.5, 0.25):
        steps = int(round(T_ALIGNED / eta))
        cfg = base_config("sample", method="gd", lr=eta, steps=steps, init="aligned",
                          init_scale=Z0, keep_params=False)
        result = simulate(cfg)
        np.testing.assert_allclose(result.trajectory.t, batch["times"][0], rtol=1e-12)
        gaps.append(np.max(np.abs(result.trajectory.own_output - flow_own)))
    assert gaps[0] > 1e-3  # a visible gap at eta = 0.5 ...
    assert 1.8 < gaps[0] / gaps[1] < 2.2, gaps  # ... that halves with eta


# ----------------------------------------------------------------- gradients, adjoints


@pytest.mark.parametrize("adjoint", ["recursive", "backsolve"])
def test_gradients_through_the_flow_match_closed_form(adjoint):
    """d z_c(T) / dT = r z (1 - z) and d z_c(T) / d z0 = e^{rT} / (z0 (e^{rT} - 1 + 1/z0))^2,
    through simulate.trajectory with either adjoint."""
    counts, z0, t1 = (6, 2), 0.05, 8.0
    cfg = Config(loss="mse", counts=counts, dim=2, method="flow", init="aligned",
                 init_scale=z0, t1=t1, saves=3, x64=True, rtol=1e-11, atol=1e-13,
                 adjoint=adjoint)
    with jax.enable_x64(True):
        spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)

        mix = jnp.array([1.0, 3.0])  # one reverse pass for a combination of both classes

        def final_own(end, scale):
            numbers = numeric._replace(t1=end, init_scale=scale)
            own = trajectory(spec, problem, numbers, jax.random.PRNGKey(0)).own_output[-1]
            return mix @ own

        d_t1, d_z0 = jax.jit(jax.grad(final_own, argnums=(0, 1)))(numeric.t1,
                                                                 numeric.init_scale)
        r = np.asarray(theory.rate(np.asarray(counts, float), None, None, "sample"))
        z = np.asarray(theory.trajectory(t1, r, z0))
        growth = np.exp(r * t1)
        assert relative_error(d_t1, mix @ (r * z * (1 - z))) < 1e-6
        assert relative_error(d_z0, mix @ (growth / (z0 * (growth - 1 + 1 / z0)) ** 2)) < 1e-6


# ----------------------------------------------------------------- events, solvers


def test_loss_stop_event_with_kvaerno5_matches_closed_form(x64):
    """Stop when L falls to 0.1: L(t) = (1/n) sum_c n_c (1 - z_c(t))^2 / 2 (ERM, aligned),
    solved by the implicit Kvaerno5; the saved outputs are frozen after the stop."""
    counts, threshold = (30, 12, 5), 0.1
    cfg = Config(loss="mse", counts=counts, dim=3, method="flow", init="aligned",
                 init_scale=Z0, t1=200.0, saves=101, x64=True, rtol=1e-10,
                 atol=1e-12, solver="kvaerno5", stop_metric="loss", stop_at=threshold)
    result = simulate(cfg)
    tr = result.trajectory
    n = np.asarray(counts, float)
    r = np.asarray(theory.rate(n, None, None, "sample"))

    def loss(t):
        return np.sum(n * (1 - np.asarray(theory.trajectory(t, r, Z0))) ** 2) / (2 * n.sum())

    low, high = 0.0, 200.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if loss(mid) > threshold else (low, mid)
    info = flow_json(tr.flow)
    assert info["solver_status"] == "stopped" and info["num_vf_evals"] is None
    assert abs(info["stop_time"] - low) < 1e-6 * low
    after = tr.t >= info["stop_time"]
    assert after.any() and (~after).any()
    np.testing.assert_allclose(tr.loss[after], threshold, rtol=1e-6)  # frozen at the stop
    assert np.all(tr.loss[~after] > threshold)
    np.testing.assert_allclose(tr.own_output[~after],
                               theory.trajectory(tr.t[~after, None], r[None], Z0), rtol=1e-6)
    assert not result.diverged


def test_vf_eval_count_is_exact():
    """num_vf_evals against a host-side counter of gradient evaluations."""
    calls = []

    def objective(p):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * jnp.sum((p * p[::-1] - jnp.arange(3.0)) ** 2)

    for solver in ("tsit5",):
        calls.clear()
        _, _, stats = jax.jit(lambda p, s=solver: flow.run(
            objective, lambda q: {"loss": jnp.sum(q)}, p, 3.0, 4, solver=s, rtol=1e-7))(
            jnp.array([0.3, 0.2, 0.1]))
        jax.block_until_ready(stats)
        assert int(stats.num_steps) > 3
        assert int(stats.num_vf_evals) == len(calls), solver
    # The same formula for the other explicit solvers: new evaluations per attempted step.
    assert flow.vf_evals_per_step(flow.solver_of("dopri5")) == 6
    assert flow.vf_evals_per_step(flow.solver_of("dopri8")) == 13
    assert flow.vf_evals_per_step(flow.solver_of("kvaerno5")) is None


# ----------------------------------------------------------------- CLI and config


def test_cli_flow_stops_on_balanced_accuracy_and_writes_solver_stats(tmp_path, capsys):
    path = tmp_path / "flow.json"
    # (cross-entropy here: its balanced accuracy rises monotonically, see the event's
    # documented limitation for metrics that go up and down within one solver step)
    args = ["simulate", "--method", "flow", "--loss", "ce", "--k-major", "2", "--k-minor", "2",
            "--n-major", "20", "--ratio", "5", "--dim", "8", "--lr", "4", "--steps", "100",
            "--saves", "31", "--stop-metric", "balanced_accuracy", "--stop-at", "0.75",
            "--json", str(path)]
    assert main(args) == 0
    assert "stopped at t =" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert data["solver_status"] == "stopped" and not data["diverged"]
    np.testing.assert_allclose(data["t"], 4 * discrete.save_steps(100, 31), rtol=1e-6)
    assert data["num_vf_evals"] == 1 + 6 * data["num_steps"]
    assert data["num_steps"] == data["num_accepted_steps"] + data["num_rejected_steps"]
    stop = data["stop_time"]
    assert 0 < stop < 400 and data["end_time"] == stop
    t, accuracy = np.asarray(data["t"]), np.asarray(data["balanced_accuracy"])
    assert np.all(accuracy[t < stop] < 0.75)
    assert np.all(accuracy[t >= stop] >= 0.75)
    assert np.all(accuracy[t >= stop] == accuracy[-1])  # frozen after the stop


def test_cli_failed_flow_exits_3_with_nulls(tmp_path, capsys):
    path = tmp_path / "fail.json"
    args = ["simulate", "--method", "flow", "--k-major", "2", "--k-minor", "2", "--n-major",
            "20", "--dim", "8", "--steps", "100", "--saves", "11", "--max-steps", "3",
            "--json", str(path)]
    assert main(args) == 3
    assert "max_steps_reached" in capsys.readouterr().err
    data = json.loads(path.read_text())
    assert data["diverged"] and data["solver_status"] == "max_steps_reached"
    assert data["loss"][0] is not None and data["loss"][-1] is None
    assert data["end_time"] < data["t"][-1] and data["stop_time"] is None


@pytest.mark.parametrize("extra, message", [
    (["--method", "flow", "--t1", "0"], "t1=0.0"),
    (["--t1", "5"], "method='flow' only"),
    (["--method", "flow", "--stop-metric", "loss"], "needs a threshold stop_at"),
    (["--method", "flow", "--stop-metric", "balanced_accuracy", "--stop-at", "1.5"], "stop_at=1.5"),
    (["--stop-metric", "loss", "--stop-at", "0.1"], "needs method='flow'"),
    (["--method", "flow", "--adjoint", "backsolve", "--stop-metric", "loss", "--stop-at", "0.1"],
     "backsolve"),
    (["--method", "flow", "--rtol", "-1"], "rtol=-1.0"),
    (["--method", "flow", "--max-steps", "0"], "max_steps=0"),
])
def test_bad_flow_options_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    path = tmp_path / "out.json"
    assert main(["simulate", *extra, "--json", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not path.exists()


def test_config_defaults_and_validation():
    cfg = Config(method="flow", lr=2.0, steps=100)
    assert float(numeric_of(cfg).t1) == 200.0  # t1 = lr x steps: the discrete run's end
    assert float(numeric_of(Config(method="flow", lr=2.0, t1=7.5)).t1) == 7.5
    with pytest.raises(ConfigError, match="solver='rk4'"):
        Config(method="flow", solver="rk4")
    with pytest.raises(ConfigError, match="stop_at=0.5 needs a stop_metric"):
        Config(method="flow", stop_at=0.5)
