"""Meta-gradients through training (ssm_jax.meta) and the ``grad`` / ``meta`` commands.

Every gradient route is checked against central finite differences of the same function
(float64, relative error 1e-4); the own output at T against the exact discrete recursion
and the closed-form logistic flow of the aligned squared-loss UFM.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import meta
from ssm_jax.cli import main
from ssm_jax.config import Config, ConfigError
from ssm_jax.problem import continuous_counts

SMALL = dict(k_major=2, k_minor=2, n_major=12, ratio=4.0, dim=6, saves=2, x64=True)

# (config, objective, wrt): together every loss, parametrisation, weighting, optimiser and
# objective, and every gradient name. The three aligned squared-loss GD cases also have an
# exact closed form (test_aligned_gd_runs_equal_the_exact_recursion).
CASES = {
    "mse-sample-gd-aligned": (
        Config(loss="mse", parametrization="sample", method="gd", weighting="power",
               gamma=0.3, weight_decay=0.01, init="aligned", init_scale=0.05, lr=1.5,
               steps=16, **SMALL),
        "balanced_loss", ("gamma", "ratio", "init_scale", "lr", "weight_decay", "t1"),
    ),
    "mse-class-gd-aligned": (
        Config(loss="mse", parametrization="class", method="gd", weighting="explicit",
               weights=(1.0, 0.8, 2.0, 1.5), init="aligned", init_scale=0.1, lr=0.2,
               steps=16, **SMALL),
        "minority_loss", ("weights", "ratio", "init_scale", "lr", "t1"),
    ),
    "mse-whitened-gd-aligned": (
        Config(loss="mse", parametrization="whitened", method="gd", weighting="effective",
               beta=0.9, init="aligned", init_scale=0.1, lr=1.5, steps=16, **SMALL),
        "own_output_gap", ("beta", "ratio", "init_scale", "lr", "t1"),
    ),
    "ce-sample-momentum-bias": (
        Config(loss="ce", parametrization="sample", method="momentum", momentum=0.5,
               weighting="power", gamma=0.5, weight_decay=0.02, bias=True, init_scale=0.1,
               lr=0.6, steps=16, **SMALL),
        "balanced_accuracy", ("gamma", "momentum", "ratio", "weight_decay", "lr", "t1"),
    ),
    "ce-class-adam": (
        Config(loss="ce", parametrization="class", method="adam", weighting="explicit",
               weights=(1.0, 0.8, 2.0, 1.5), init_scale=0.1, lr=0.05, steps=16, **SMALL),
        "balanced_loss", ("weights", "init_scale", "lr", "t1"),  # Adam: ratio only rescales
    ),
}
ALIGNED = [name for name in CASES if name.endswith("aligned")]

NUMERIC_STEP = 1e-5


def perturbations(cfg: Config, wrt, numeric, problem):
    """Central-difference points: a list of (label, numeric, counts, t_offset, step)."""
    points = []
    for name in wrt:
        if name == "t1":
            h = 1e-4 * meta.stop_time(cfg)
            points += [((name, None), numeric, problem.counts, s * h, h) for s in (1, -1)]
        elif name == "ratio":
            h = NUMERIC_STEP * cfg.ratio
            for s in (1, -1):
                counts = continuous_counts(cfg, cfg.ratio + s * h).astype(problem.counts.dtype)
                points.append(((name, None), numeric, counts, 0.0, h))
        elif name == "weights":
            for c in range(numeric.weights.shape[0]):
                h = NUMERIC_STEP
                for s in (1, -1):
                    moved = numeric._replace(weights=numeric.weights.at[c].add(s * h))
                    points.append(((name, c), moved, problem.counts, 0.0, h))
        else:
            value = getattr(numeric, name)
            h = NUMERIC_STEP * max(abs(float(value)), 1.0)
            for s in (1, -1):
                points.append(((name, None), numeric._replace(**{name: value + s * h}),
                               problem.counts, 0.0, h))
    return points


def batched_route(cfg, objective, wrt):
    """Gradient at cfg and values at all finite-difference points, in ONE vmapped call."""
    spec, problem, numeric, key, tangent = meta.inputs_of(cfg, wrt)
    points = perturbations(cfg, wrt, numeric, problem)
    # One step ahead along the update line (see test_time_derivative_...).
    points.append((("ahead", None), numeric, problem.counts, cfg.lr, 0.0))
    numerics = jax.tree.map(lambda *xs: jnp.stack(xs), numeric, *[p[1] for p in points])
    counts = jnp.stack([problem.counts] + [p[2] for p in points])
    offsets = jnp.asarray([0.0] + [p[3] for p in points])

    def one(num, cts, dt):
        return meta.value_and_grad(spec, problem._replace(counts=cts), num, key,
                                   objective=objective, wrt=wrt, ratio_tangent=tangent,
                                   t_offset=dt)

    out = jax.jit(jax.vmap(one))(numerics, counts, offsets)
    return out, points


def relative_error(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


@pytest.fixture(scope="module")
def routes():
    """name -> (cfg, objective, wrt, out, points), each computed once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cfg, objective, wrt = CASES[name]
            with jax.enable_x64(True):
                out, points = batched_route(cfg, objective, wrt)
                cache[name] = (cfg, objective, wrt, jax.tree.map(np.asarray, out), points)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_discrete_gradients_match_central_differences(routes, name):
    cfg, objective, wrt, out, points = routes(name)
    assert np.all(out.diverged_step == -1)
    values = out.value[1:]
    for target in wrt:
        grad = out.gradient[target][0]
        rows = [i for i, p in enumerate(points) if p[0][0] == target]
        fd = []
        for j in range(0, len(rows), 2):
            plus, minus = rows[j], rows[j + 1]
            fd.append((values[plus] - values[minus]) / (2 * points[plus][4]))
        fd = np.asarray(fd).reshape(np.shape(grad))
        assert np.max(np.abs(fd)) > 1e-8, f"{name}: d/d{target} is trivially zero"
        assert relative_error(grad, fd) < 1e-4, (name, target, grad, fd)


def test_vmapped_gradients_equal_single_calls_and_the_cli(routes, tmp_path):
    cfg, objective, wrt, out, _ = routes("mse-sample-gd-aligned")
    single = meta.gradient(cfg, objective, wrt)
    assert float(out.value[0]) == pytest.approx(float(single.value), rel=1e-12)
    for target in wrt:
        np.testing.assert_allclose(out.gradient[target][0], single.gradient[target],
                                   rtol=1e-10)
    path = tmp_path / "grad.json"
    argv = ["grad", "--x64", "--loss", "mse", "--k-major", "2", "--k-minor", "2",
            "--n-major", "12", "--ratio", "4", "--dim", "6", "--weighting", "power",
            "--gamma", "0.3", "--weight-decay", "0.01", "--init", "aligned",
            "--init-scale", "0.05", "--lr", "1.5",
            "--t1", "24", "--saves", "2", "--objective", objective, "--wrt", ",".join(wrt),
            "--json", str(path)]
    assert main(argv) == 0
    data = json.loads(path.read_text())
    assert data["value"] == pytest.approx(float(single.value), rel=1e-12)
    assert set(data["gradient"]) == set(wrt)
    for target in wrt:
        assert data["gradient"][target] == pytest.approx(float(single.gradient[target]),
                                                         rel=1e-10)
    assert data["finite"] is True and data["diverged"] is False and data["t1"] == 24.0


def test_time_derivative_is_the_interpolation_between_steps(routes):
    """The value at T + lr along the update line is exactly the run with one more step
    (momentum: the line follows the optimiser's next update, not -grad L)."""
    cfg, objective, wrt, out, points = routes("ce-sample-momentum-bias")
    ahead = [i for i, p in enumerate(points) if p[0][0] == "ahead"][0]
    with jax.enable_x64(True):
        spec, problem, numeric, key, _ = meta.inputs_of(cfg.replace(steps=cfg.steps + 1), wrt)
        one_more, _ = jax.jit(meta.value, static_argnums=0,
                              static_argnames="objective")(spec, problem, numeric, key,
                                                           objective=objective)
    np.testing.assert_allclose(out.value[1 + ahead], one_more, rtol=1e-12)


# ----------------------------------------------------------------- closed-form own outputs


def rate(parametrization, omega, counts):
    """Logistic rate r_c of the own output under aligned squared-loss gradient flow."""
    n = jnp.sum(counts)
    if parametrization == "sample":
        return 2.0 / n * omega * jnp.sqrt(counts)
    if parametrization == "class":
        return 2.0 / n * omega * counts
    return 2.0 / n * jnp.sqrt(omega * counts)


def power_weights(counts, gamma):
    raw = counts ** (-gamma)
    return raw * jnp.sum(counts) / jnp.sum(counts * raw)


def raw_weights(cfg, inputs, counts):
    """Un-normalised class weights of the aligned cases, written out by hand."""
    if cfg.weighting == "power":
        return counts ** (-inputs["gamma"])
    if cfg.weighting == "explicit":
        return inputs["weights"]
    return (1 - inputs["beta"]) / (1 - inputs["beta"] ** counts)


def exact_objective(cfg, objective, inputs):
    """Aligned squared loss, plain GD with weight decay lambda: every class stays a balanced
    rank-one mode, and its own output follows exactly

        z_{t+1} = z_t (1 - lr lambda - (lr r_c / 2)(z_t - 1))^2,

    r_c the logistic rate of the parametrisation. The last (partial) step has size s = the
    time offset: the line from the last iterate along its update."""
    examples = jnp.asarray([12.0, 12.0, 3.0, 3.0])
    smooth = continuous_counts(cfg, inputs["ratio"])
    raw = raw_weights(cfg, inputs, smooth)
    omega = raw * jnp.sum(smooth) / jnp.sum(smooth * raw)
    r = rate(cfg.parametrization, omega, examples)
    z = jnp.full((4,), 1.0) * inputs["init_scale"]
    decay = inputs["weight_decay"]

    def step(z, size):
        return z * (1 - size * decay - 0.5 * size * r * (z - 1)) ** 2

    for _ in range(cfg.steps):
        z = step(z, inputs["lr"])
    z = step(z, inputs["t1"])
    if objective == "balanced_loss":
        return jnp.mean(0.5 * (1 - z) ** 2)
    if objective == "minority_loss":
        return jnp.mean(0.5 * (1 - z[2:]) ** 2)
    return jnp.mean(z[:2]) - jnp.mean(z[2:])


@pytest.mark.parametrize("name", ALIGNED)
def test_aligned_gd_runs_equal_the_exact_recursion(routes, name):
    """Value and every gradient of the aligned squared-loss runs (sample, class, whitened)
    equal those of the exact own-output recursion, differentiated by jax.grad."""
    cfg, objective, wrt, out, _ = routes(name)
    with jax.enable_x64(True):
        inputs = {"gamma": cfg.gamma, "beta": cfg.beta, "ratio": cfg.ratio,
                  "weights": jnp.asarray(cfg.weights or (1.0,) * 4),
                  "init_scale": cfg.init_scale, "lr": cfg.lr,
                  "weight_decay": cfg.weight_decay, "t1": 0.0}
        inputs = {k: jnp.asarray(v, jnp.float64) for k, v in inputs.items()}
        value, grads = jax.value_and_grad(
            lambda x: exact_objective(cfg, objective, x))(inputs)
    np.testing.assert_allclose(out.value[0], value, rtol=1e-10)
    for target in wrt:
        assert relative_error(out.gradient[target][0], grads[target]) < 1e-8, target


# ----------------------------------------------------------------------- gradient flow


FLOW = Config(loss="mse", parametrization="sample", method="flow", init="aligned",
              init_scale=0.05, weighting="power", gamma=0.4, lr=1.0, steps=60, rtol=1e-10,
              atol=1e-12, max_steps=4096, **SMALL)


def test_flow_gradients_match_closed_form_differences_and_both_adjoints():
    """Aligned squared-loss flow: z_c(t) = e^{r t} / (e^{r t} - 1 + 1/z0) with
    r_c = (2/n) w_c sqrt(n_c); the own-output gap (majority - minority) at T and its
    derivatives in gamma, z0 and T are those of the closed form. Both adjoints agree."""
    wrt = ("gamma", "init_scale", "t1", "ratio")
    with jax.enable_x64(True):
        out, points = batched_route(FLOW, "own_output_gap", wrt)
        back = meta.gradient(FLOW.replace(adjoint="backsolve"), "own_output_gap", wrt)
        counts = jnp.asarray([12.0, 12.0, 3.0, 3.0])

        def closed_form(gamma, z0, t1):
            growth = jnp.exp(rate("sample", power_weights(counts, gamma), counts) * t1)
            z = growth / (growth - 1 + 1 / z0)
            return jnp.mean(z[:2]) - jnp.mean(z[2:])

        args = (jnp.asarray(0.4), jnp.asarray(0.05), jnp.asarray(60.0))
        exact = jax.grad(closed_form, argnums=(0, 1, 2))(*args)
        np.testing.assert_allclose(out.value[0], closed_form(*args), rtol=1e-7)
    for name, derivative in zip(wrt[:3], exact, strict=True):
        assert relative_error(out.gradient[name][0], derivative) < 1e-6, name
    values = np.asarray(out.value[1:])
    for i, name in enumerate(wrt):
        fd = (values[2 * i] - values[2 * i + 1]) / (2 * points[2 * i][4])
        grad = float(out.gradient[name][0])
        assert abs(fd) > 1e-8
        assert relative_error(grad, fd) < 1e-4, (name, grad, fd)
        assert relative_error(back.gradient[name], grad) < 1e-6, (name, back.gradient[name])


# ----------------------------------------------------------------------- meta-learning


def test_learned_gamma_is_a_stationary_minimum():
    """Aligned squared loss at an early T has an interior optimal gamma; plain SGD on gamma
    (update = -rate x gradient) must stop there with a vanishing gradient."""
    cfg, objective, _ = CASES["mse-sample-gd-aligned"]
    cfg = cfg.replace(init="aligned", weight_decay=0.0, gamma=0.0)
    kwargs = dict(learning_rate=2.0, optimizer="sgd")
    result = meta.learn(cfg, objective, "gamma", iterations=30, **kwargs)
    assert not result.diverged and result.objective.shape == (31,)
    assert result.objective[-1] < 0.2 * result.objective[0]
    first_gradient = -(result.parameter[1] - result.parameter[0]) / 2.0
    last_gradient = -(result.parameter[-1] - result.parameter[-2]) / 2.0
    assert abs(last_gradient) < 1e-6 * abs(first_gradient)
    gamma = float(result.learned)
    assert 0.3 < gamma < 0.9
    for moved in (gamma - 0.05, gamma + 0.05):  # a minimum, not a maximum
        around = meta.learn(cfg.replace(gamma=moved), objective, "gamma", iterations=0,
                            **kwargs)
        assert around.objective[0] > result.objective[-1]


def test_meta_command_writes_history_and_figure(tmp_path):
    out = tmp_path / "meta"
    argv = ["meta", "--x64", "--k-major", "2", "--k-minor", "2", "--n-major", "12",
            "--ratio", "4", "--dim", "6", "--init-scale", "0.05", "--lr", "1.5", "--saves", "2",
            "--learn", "weights", "--times", "15,24", "--iterations", "3", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "meta.json").read_text())
    assert [r["t1"] for r in data["runs"]] == [15.0, 24.0]
    for r in data["runs"]:
        assert r["finished"] and len(r["history"]["objective"]) == 4
        weights = np.asarray(r["learned"])
        assert weights.shape == (4,)
        assert np.sum(weights * np.array([12, 12, 3, 3])) == pytest.approx(30.0)
        assert r["final_value"] < r["initial_value"]
    assert (out / "meta.png").stat().st_size > 0


@pytest.mark.parametrize("argv, needle", [
    (["--wrt", "gamma,foo"], "wrt='foo'"),
    (["--wrt", "weights"], "weighting='explicit'"),
    (["--t1", "2.5", "--lr", "2"], "t1=2.5"),
    (["--objective", "minority_loss", "--ratio", "1"], "minority"),
    (["--wrt", "gamma,gamma"], "twice"),
])
def test_grad_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, needle):
    path = tmp_path / "g.json"
    assert main(["grad", "--steps", "3", "--saves", "2", *argv, "--json", str(path)]) == 2
    assert needle in capsys.readouterr().err
    assert not path.exists()


def test_grad_of_a_diverging_run_exits_3_with_null_value(tmp_path):
    path = tmp_path / "g.json"
    cfg, objective, wrt = CASES["mse-sample-gd-aligned"]
    argv = ["grad", "--x64", "--loss", "mse", "--k-major", "2", "--k-minor", "2",
            "--n-major", "12", "--ratio", "4", "--dim", "6", "--weighting", "power",
            "--gamma", "0.3", "--weight-decay", "0.01", "--init", "aligned",
            "--init-scale", "0.05", "--lr", "400",
            "--steps", "16", "--saves", "2", "--objective", objective, "--wrt", ",".join(wrt),
            "--json", str(path)]
    assert main(argv) == 3
    data = json.loads(path.read_text())
    assert data["diverged"] is True and data["finite"] is False
    assert data["value"] is None
    # No gradient through a diverged run is a number (it read 0.0), and the JSON says why.
    assert data["gradient"] == {name: None for name in wrt}
    assert data["reason"].startswith("the run diverged: the loss became non-finite at step")


def test_grad_through_a_flow_stopped_at_max_steps_diverged_exits_3_with_nulls(tmp_path, capsys):
    """A solve that stops at max_steps before T has no value at T: null, with the reason."""
    path = tmp_path / "g.json"
    argv = ["grad", "--method", "flow", "--k-major", "2", "--k-minor", "2", "--n-major", "12",
            "--dim", "4", "--steps", "20", "--saves", "2", "--lr", "1", "--max-steps", "3",
            "--weighting", "power", "--gamma", "0.5", "--wrt", "gamma,t1", "--json", str(path)]
    assert main(argv) == 3
    assert "max_steps=3 reached" in capsys.readouterr().err
    data = json.loads(path.read_text())
    assert data["diverged"] is True and data["finite"] is False
    assert data["value"] is None and data["gradient"] == {"gamma": None, "t1": None}
    assert "stopped before T" in data["reason"]


def test_meta_learning_through_a_diverging_run_records_null_and_exits_3(tmp_path):
    argv = ["meta", "--k-major", "2", "--k-minor", "2", "--n-major", "12", "--dim", "4",
            "--steps", "16", "--saves", "2", "--lr", "400", "--weighting", "power",
            "--iterations", "2", "--out", str(tmp_path)]
    assert main(argv) == 3
    run = json.loads((tmp_path / "meta.json").read_text())["runs"][0]
    assert run["diverged"] is True and run["final_value"] is None
    assert run["history"]["objective"] == [None]


@pytest.mark.parametrize("argv, needle", [
    (["--temperature", "0"], "temperature=0.0"),
    (["--temperature", "-1"], "temperature=-1.0"),
    (["--meta-lr", "0"], "--meta-lr"),
    (["--iterations", "-1"], "iterations=-1"),
])
def test_meta_options_that_make_no_sense_are_bad_input_not_a_divergence(tmp_path, capsys,
                                                                         argv, needle):
    out = tmp_path / "m"
    try:
        code = main(["meta", "--steps", "3", "--saves", "2", "--objective",
                     "balanced_accuracy", *argv, "--out", str(out)])
    except SystemExit as exit_:  # declared bounds (--iterations) are refused by argparse
        code = exit_.code
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_errors_name_the_bad_value():
    cfg, objective, wrt = CASES["mse-sample-gd-aligned"]
    with pytest.raises(ConfigError, match="objective='nope'"):
        meta.gradient(cfg, "nope", wrt)
    with pytest.raises(ConfigError, match="learn='bias'"):
        meta.learn(cfg, objective, "bias")
    with pytest.raises(ConfigError, match="temperature=0"):
        meta.gradient(cfg, objective, wrt, temperature=0.0)
