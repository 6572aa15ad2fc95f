"""Sweeps: equality to single runs, padding, the Dataset, CLI and TOML, resume after SIGKILL,
4 devices vs 1, several processes, bounded host memory, plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import jax
import numpy as np
import pytest
import xarray as xr

from ssm_jax import Config, ConfigError, class_counts_of, simulate, sweep
from ssm_jax.cli import main
from ssm_jax.simulate import numeric_of, problem_of, spec_of, trajectory_jit
from ssm_jax.sweep import runner, store

from helpers import tree_allclose

BASE = dict(k_major=2, k_minor=2, n_major=12, dim=4, steps=20, saves=6, lr=2.0,
            weighting="power")
AXES = {"ratio": [1.0, 3.0, 6.0], "gamma": [0.0, 1.0]}
JSON_ARRAYS = ["t", "loss", "per_class_accuracy", "per_class_loss", "own_output",
               "balanced_accuracy", "learn_time", "half_time", "weights"]

# The subprocess sweeps of the resume / device / process tests: same sweep, chunks of 2.
SCRIPT = """
import os, sys, time
from ssm_jax import Config, sweep
out, log, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
sw = sweep.make_sweep(Config(**{base!r}), {axes!r}, seeds=2)
def on_chunk(chunk_id):
    with open(log, "a") as f:
        f.write(f"{{chunk_id}}\\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(pause)
import jax
print("devices", jax.local_device_count(), flush=True)
sweep.run(sw, out, chunk_size=2, progress=False, on_chunk=on_chunk)
"""


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(JAX_PLATFORMS="cpu", **extra)
    if "XLA_FLAGS" not in extra:  # one device, as in this process, unless a test asks for more
        env.setdefault("JAX_NUM_CPU_DEVICES", "1")
    return env


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A persistent compilation cache shared by the subprocesses (they compile one program)."""
    return str(tmp_path_factory.mktemp("jax-cache"))


def cached_env(cache_dir, **extra) -> dict:
    return subprocess_env(JAX_COMPILATION_CACHE_DIR=cache_dir,
                          JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                          JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", **extra)


@pytest.fixture(scope="module")
def x64_sweep(tmp_path_factory):
    sw = sweep.make_sweep(Config(**BASE, x64=True), AXES, seeds=2)
    path = tmp_path_factory.mktemp("x64") / "sweep.nc"
    return sw, sweep.run(sw, path, chunk_size=4, progress=False), path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The subprocess tests' sweep, run here without interruption on one device."""
    sw = sweep.make_sweep(Config(**BASE), AXES, seeds=2)
    path = tmp_path_factory.mktemp("reference") / "sweep.nc"
    return sw, sweep.run(sw, path, chunk_size=2, progress=False)


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("script") / "run_sweep.py"
    path.write_text(SCRIPT.format(base=BASE, axes=AXES))
    return str(path)


# ------------------------------------------------------------------------------------------
# Entries equal single runs; padding changes nothing
# ------------------------------------------------------------------------------------------


def test_entries_equal_single_simulate_runs(x64_sweep):
    sw, ds, _ = x64_sweep
    plan = sweep.plan(sw, chunk_size=4)
    assert len(plan.groups) == 1 and plan.groups[0].n_pad == 48  # ratio 1: 4 x 12 examples
    checked = 0
    for index in range(sw.size):
        point = sw.point(index)
        if point["ratio"] == 3.0:  # one padded and one unpadded ratio are enough
            continue
        cfg = sw.config(index)
        single = simulate(cfg)
        entry = ds.sel(point)
        assert cfg.seed == point["seed"]
        for name in JSON_ARRAYS:
            np.testing.assert_allclose(entry[name].values, getattr(single.trajectory, name),
                                       rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=name)
        np.testing.assert_array_equal(entry["class_counts"].values, single.class_counts)
        assert bool(entry["diverged"]) == single.diverged
        checked += 1
    assert checked == 8
    # The ratio-6 runs (28 examples) were padded to 48 inside the sweep.
    assert sum(class_counts_of(sw.config(sw.size - 1))) == 28


def test_padding_changes_no_result(x64, x64_sweep):
    """A ratio-6 run (28 examples) padded to 48 examples gives the same trajectory (the
    shapes of the single runs above, so nothing new is compiled)."""
    sw, _, _ = x64_sweep
    cfg = sw.config(sw.size - 1)
    spec, numeric, key = spec_of(cfg), numeric_of(cfg), jax.random.PRNGKey(cfg.seed)
    plain = trajectory_jit(spec, problem_of(cfg), numeric, key)
    padded = trajectory_jit(spec, problem_of(cfg, n_pad=48), numeric, key)
    assert problem_of(cfg).labels.shape[0] == 28
    assert float(padded.loss[0]) != 0.0 and float(padded.per_class_accuracy[-1, -1]) > 0
    tree_allclose(plain, padded)


def test_buckets_of_is_optimal_by_brute_force():
    """The dynamic programme finds the cheapest split into stretches of chunks (checked
    against every set of cuts), covers every run once and pads each run enough."""
    import itertools

    rng = np.random.default_rng(0)
    cost = lambda n: float(n) ** 1.5  # noqa: E731
    for _ in range(30):
        ns = rng.choice([5, 9, 12, 20, 33], size=int(rng.integers(2, 13)))
        size = int(rng.integers(1, 4))
        compile_cost = float(rng.choice([0.0, 20.0, 400.0]))
        starts = np.sort(ns)[::-1][::size]
        for most in (None, 1, 2, 3):
            found = sweep.buckets_of(ns, size, cost, most, compile_cost)
            runs = np.concatenate([r for r, _ in found])
            assert sorted(runs.tolist()) == list(range(len(ns)))
            assert all(ns[r].max() == n_pad for r, n_pad in found)
            assert most is None or len(found) <= most
            got = sum(compile_cost + -(-len(r) // size) * size * cost(n_pad) for r, n_pad in found)
            best = float("inf")
            for k in range(len(starts)):
                if most is not None and k + 1 > most:
                    break
                for cuts in itertools.combinations(range(1, len(starts)), k):
                    edges = [0, *cuts, len(starts)]
                    best = min(best, sum(compile_cost + (b - a) * size * cost(int(starts[a]))
                                         for a, b in zip(edges[:-1], edges[1:], strict=True)))
            assert got == pytest.approx(best, rel=1e-12)


def test_buckets_split_by_n_and_change_no_result(tmp_path):
    """Cross-entropy runs (per example: cost grows with n) padded to their own n (48, 32
    and 28 examples) give the sweep padded to 48; squared-loss runs (reduced: cost
    independent of n) are not split."""
    assert len(sweep.plan(sweep.make_sweep(Config(**BASE), AXES), buckets=3).groups) == 1
    sw = sweep.make_sweep(Config(**BASE, loss="ce", x64=True), AXES, seeds=2)
    ds = sweep.run(sw, tmp_path / "padded.nc", chunk_size=4, buckets=1, progress=False)
    plan = sweep.plan(sw, chunk_size=4, buckets=3)
    assert plan.buckets == 3 and [g.n_pad for g in plan.groups] == [48, 32, 28]
    for group in plan.groups:
        assert {sum(class_counts_of(sw.config(int(i)))) for i in group.runs} == {group.n_pad}
    assert len(sweep.plan(sw, chunk_size=4, buckets=1).groups) == 1
    # the cost rule: these runs are far too small to pay for two more compilations
    assert len(sweep.plan(sw, chunk_size=4, buckets="cost").groups) == 1
    bucketed = sweep.run(sw, tmp_path / "bucketed.nc", chunk_size=4, buckets=3, progress=False)
    assert bucketed.attrs["buckets"] == "3"
    for name in JSON_ARRAYS:
        np.testing.assert_allclose(bucketed[name].values, ds[name].values, rtol=1e-10,
                                   atol=1e-12, equal_nan=True, err_msg=name)


def test_resume_keeps_the_recorded_buckets(tmp_path):
    sw = sweep.make_sweep(Config(**BASE, loss="ce"), AXES, seeds=2)
    out = str(tmp_path / "sweep.nc")
    store.open_parts(out, sweep.plan(sw, chunk_size=2, buckets=3))  # an unfinished sweep
    with open(os.path.join(sweep.parts_dir(out), "manifest.json")) as f:
        assert json.load(f)["buckets"] == 3
    _, resumed = store.open_parts(out, sweep.plan(sw, chunk_size=2, buckets=1))
    assert resumed.buckets == 3 and len(resumed.groups) == 3


def test_bad_buckets_are_refused():
    sw = sweep.make_sweep(Config(**BASE), AXES)
    for bad in (0, -1, "many", True, 1.5):
        with pytest.raises(ConfigError, match="buckets="):
            sweep.plan(sw, buckets=bad)


# ------------------------------------------------------------------------------------------
# The Dataset
# ------------------------------------------------------------------------------------------


def test_dataset_layout_and_attrs(x64_sweep):
    sw, ds, path = x64_sweep
    assert sw.dims == ["ratio", "gamma", "seed"]
    assert dict(ds.sizes) == {"ratio": 3, "gamma": 2, "seed": 2, "save": 6, "class": 4}
    np.testing.assert_array_equal(ds["ratio"].values, AXES["ratio"])
    np.testing.assert_array_equal(ds["seed"].values, [0, 1])
    assert ds["t"].dims == ("ratio", "gamma", "seed", "save") and "t" in ds.coords
    np.testing.assert_allclose(ds["t"].values[0, 0, 0], 2.0 * np.round(np.linspace(0, 20, 6)))
    assert ds["per_class_accuracy"].dims == ("ratio", "gamma", "seed", "save", "class")
    assert ds["learn_time"].dims == ("ratio", "gamma", "seed", "class")
    assert ds["diverged"].dtype == bool and not ds["diverged"].any()
    assert (ds["diverged_step"] == -1).all()
    assert ds["loss"].dtype == np.float64
    keys = set(simulate(sw.config(0)).to_dict()) - {"config"}
    assert keys <= set(ds.variables)
    # The configuration round-trips through the attributes.
    assert sweep.config_of(ds, ratio=3.0, gamma=1.0, seed=1) == sw.config(
        int(np.ravel_multi_index((1, 1, 1), sw.shape)))
    assert json.loads(ds.attrs["sweep"])["axes"]["gamma"] == [0.0, 1.0]
    assert ds.attrs["config_hash"] == sw.config_hash
    # One call loads it again, identical.
    xr.testing.assert_identical(sweep.load(path), ds)
    # Running the finished sweep again recomputes nothing and returns the same Dataset.
    xr.testing.assert_identical(sweep.run(sw, path, progress=False,
                                          on_chunk=lambda i: pytest.fail("recomputed")), ds)


def test_delay_ratio_by_hand(x64_sweep):
    _, ds, _ = x64_sweep
    delay = sweep.delay_ratio(ds)
    entry = ds.sel(ratio=6.0, gamma=1.0, seed=0)
    learn, counts = entry["learn_time"].values, entry["class_counts"].values
    expected = learn[counts < counts.max()].mean() / learn[counts == counts.max()].mean()
    if np.isfinite(learn).all():
        assert float(delay.sel(ratio=6.0, gamma=1.0, seed=0)) == pytest.approx(expected)
    assert delay.sel(ratio=1.0).isnull().all()  # balanced: no minority


def test_select_reads_values_as_the_coordinates_they_name(x64_sweep):
    _, ds, _ = x64_sweep
    xr.testing.assert_identical(sweep.select(ds, None), ds)
    xr.testing.assert_identical(sweep.select(ds, ["ratio=6", " gamma = 1.0 "]),
                                ds.sel(ratio=6.0, gamma=1.0))
    for bad, needle in (("ratio", "expected DIM=VALUE"), ("ratio=x", "need a number"),
                        ("ratio=4", "not one of"), ("lr=2", "'lr' is not a dimension")):
        with pytest.raises(ConfigError, match=needle):
            sweep.select(ds, [bad])


def assert_same_dataset(memory, loaded) -> None:
    """The in-memory Dataset of a sweep is the one its file loads as: identical values
    (NaN where NaN), dims, coordinates and attributes, and the same types and order."""
    xr.testing.assert_identical(memory, loaded)
    for name in loaded.variables:
        assert memory[name].dtype == loaded[name].dtype, name
    assert list(memory.data_vars) == list(loaded.data_vars)
    assert list(memory.coords) == list(loaded.coords)
    assert list(memory.attrs) == list(loaded.attrs)


def test_in_memory_dataset_equals_the_file(x64_sweep, tmp_path, monkeypatch):
    """``sweep.run(sw)`` (no ``out``) builds the Dataset in memory and writes nothing: the
    same Dataset as the file of the same sweep, loaded."""
    sw, loaded, _ = x64_sweep
    monkeypatch.setattr(runner, "save_chunk", lambda *a, **k: pytest.fail("wrote a chunk"))
    monkeypatch.setattr(runner, "assemble", lambda *a, **k: pytest.fail("wrote a file"))
    assert_same_dataset(sweep.run(sw, chunk_size=4, progress=False), loaded)


@pytest.mark.parametrize("base, axes, seeds", [
    # string coordinate, groups with different classes and saves (NaN and 0 fill), seeds
    (dict(k_minor=1, steps=8, saves=3), {"loss": ["mse", "ce"], "k_minor": [1, 2],
                                         "saves": [3, 5]}, 2),
    (dict(steps=8, saves=3), {"bias": [False, True]}, None),  # a boolean coordinate
    (dict(steps=8, saves=3), {}, None),  # no axes at all
    (dict(steps=8, saves=3, method="flow"), {"gamma": [0.0, 1.0]}, None),  # solver stats
])
def test_in_memory_dataset_equals_the_file_for_every_layout(tmp_path, base, axes, seeds):
    sw = sweep.make_sweep(Config(**{**BASE, **base}), axes, seeds=seeds)
    loaded = sweep.run(sw, tmp_path / "s.nc", chunk_size=3, progress=False)
    assert_same_dataset(sweep.run(sw, chunk_size=3, progress=False), loaded)


def test_cli_sweep_padded_momentum_bias_and_divergence(tmp_path, capsys):
    out = tmp_path / "momentum.nc"
    args = ["sweep", "--k-major", "2", "--k-minor", "2", "--n-major", "12", "--dim", "4",
            "--steps", "20", "--saves", "6", "--method", "momentum", "--bias", "true",
            "--weight-decay", "0.01", "--ratio", "2,6", "--lr", "0.5,1e4", "--out", str(out),
            "--no-progress"]
    assert main(args) == 3  # lr = 1e4 diverges: exit 3, results written and flagged
    captured = capsys.readouterr()
    assert "runs diverged" in captured.err and "1 compiled group(s)" in captured.out
    ds = sweep.load(out)
    assert dict(ds.sizes) == {"ratio": 2, "lr": 2, "save": 6, "class": 4}
    assert ds["diverged"].sel(lr=1e4).all() and not ds["diverged"].sel(lr=0.5).any()
    assert (ds["diverged_step"].sel(lr=1e4) >= 0).all()
    # t = lr x step differs between learning rates.
    np.testing.assert_allclose(ds["t"].sel(lr=1e4), 2e4 * ds["t"].sel(lr=0.5), rtol=1e-6)
    # The ratio-6 run was padded from 28 to 36 examples; it equals its single run.
    single = simulate(Config(**{**BASE, "weighting": "erm", "lr": 0.5}, method="momentum",
                             bias=True, weight_decay=0.01, ratio=6.0))
    entry = ds.sel(ratio=6.0, lr=0.5)
    for name in JSON_ARRAYS:
        np.testing.assert_allclose(entry[name].values, getattr(single.trajectory, name),
                                   rtol=2e-5, atol=1e-6, equal_nan=True, err_msg=name)


def test_static_options_become_compiled_groups():
    sw = sweep.make_sweep(Config(**BASE), {"loss": ["mse", "ce"], "dim": [4, 8],
                                           "gamma": [0.0, 1.0], "ratio": [2.0, 6.0]})
    assert sw.dims == ["loss_fn", "dim", "ratio", "gamma"]  # static first
    plan = sweep.plan(sw, chunk_size=3)
    assert len(plan.groups) == 4
    for group in plan.groups:  # each group is one contiguous block of 4 runs
        assert len(group.runs) == 4 and np.all(np.diff(group.runs) == 1)
        assert {sw.config(int(i)).loss for i in group.runs} == {group.spec.loss}
    assert [c.size for c in plan.chunks] == [3, 1] * 4


# ------------------------------------------------------------------------------------------
# Options: command line, TOML, errors
# ------------------------------------------------------------------------------------------


def test_command_line_and_toml_give_the_same_sweep(tmp_path):
    from ssm_jax.commands.sweep import options_of

    toml = tmp_path / "sweep.toml"
    toml.write_text('k-major = 2\nk_minor = 2\nn_major = 12\ndim = 4\nsteps = 20\n'
                    'saves = 6\nlr = 2\nweighting = "power"\nratio = [1, 3, 6]\n'
                    'gamma = [0, 1.0]\nseeds = 2\n')
    parser = __import__("ssm_jax.cli", fromlist=["build_parser"]).build_parser()
    from_file = sweep.sweep_from_options(options_of(parser.parse_args(
        ["sweep", "--config", str(toml)])))
    expected = sweep.make_sweep(Config(**BASE), AXES, seeds=2)
    assert from_file == expected and from_file.config_hash == expected.config_hash
    from_flags = sweep.sweep_from_options(options_of(parser.parse_args(
        ["sweep", "--k-major", "2", "--k-minor", "2", "--n-major", "12", "--dim", "4",
         "--steps", "20", "--saves", "6", "--lr", "2", "--weighting", "power",
         "--ratio", "1,3,6", "--gamma", "0,1", "--seed", "0,1"])))
    assert from_flags == expected
    # Command-line options win over the file.
    mixed = sweep.sweep_from_options(options_of(parser.parse_args(
        ["sweep", "--config", str(toml), "--gamma", "0.5", "--seed", "3"])))
    assert mixed.dims == ["ratio"] and mixed.base.gamma == 0.5 and mixed.base.seed == 3


@pytest.mark.parametrize("args, message", [
    (["--ratio", "0.5,2"], "ratio=0.5"),
    (["--gamma", "0,abc"], "gamma='abc'"),
    (["--loss", "mse,hinge"], "loss='hinge'"),
    (["--gamma", "1,1"], "lists a value twice"),
    (["--seed", "0,1", "--seeds", "3"], "not both"),
    (["--saves", "50", "--steps", "10,100"], "saves=50"),
    (["--memory-budget", "lots"], "memory budget"),
    (["--buckets", "many"], "--buckets='many'"),
    (["--buckets", "0"], "buckets=0"),
])
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "bad.nc"
    assert main(["sweep", *args, "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 3\n")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        sweep.sweep_from_options(sweep.read_config_file(bad))
    bad.write_text("ratio = [1, \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        sweep.read_config_file(bad)


def test_memory_budget_chooses_the_chunk():
    sw = sweep.make_sweep(Config(**BASE), AXES, seeds=2)
    run_bytes = sweep.plan(sw).run_bytes
    assert run_bytes == sweep.estimate_run_bytes(spec_of(sw.config(0)), 4, 48)
    # under the CPU's cap of runs per device (CPU_RUNS_PER_DEVICE = 2)
    assert sweep.plan(sw, memory_budget=2 * run_bytes - 1).chunk_size == 1
    assert sweep.plan(sw, memory_budget=2 * run_bytes, num_devices=2).chunk_size == 4
    assert sweep.plan(sw, memory_budget=1).chunk_size == 1  # at least one run per device
    # a large budget: the whole sweep, except that a CPU caps the runs per device
    cap = sweep.CPU_RUNS_PER_DEVICE if jax.devices()[0].platform == "cpu" else sw.size
    assert sweep.plan(sw, memory_budget="1T").chunk_size == min(sw.size, cap)
    assert sweep.parse_bytes("1.5G") == int(1.5 * 2**30) and sweep.parse_bytes("512M") == 2**29


class FakeAccelerator:
    """A device as the planner sees it: a platform and ``memory_stats()``."""

    def __init__(self, stats, platform="gpu"):
        self.platform, self.stats = platform, stats

    def memory_stats(self):
        if isinstance(self.stats, Exception):
            raise self.stats
        return self.stats


def test_accelerator_chunks_fill_the_free_memory():
    """On a GPU or TPU without a chunk size or budget, a chunk is as many runs as fit the
    free memory (bytes_limit - bytes_in_use, times the safety fraction, of the device with
    least), cut into equal chunks; a given budget, and a CPU, behave as before."""
    sw = sweep.make_sweep(Config(**BASE), AXES, seeds=100)  # 600 runs
    run_bytes = sweep.plan(sw).run_bytes
    fraction = sweep.ACCELERATOR_MEMORY_FRACTION

    def free_for(runs: int) -> int:  # free bytes that hold exactly `runs` runs
        return int(np.ceil(runs * run_bytes / fraction))

    one = [FakeAccelerator({"bytes_limit": free_for(250) + 10**6, "bytes_in_use": 10**6})]
    the_plan = sweep.plan(sw, devices=one)
    assert the_plan.buckets == 1  # padding is free on an accelerator
    assert the_plan.chunk_size == 200  # 250 fit: 600 runs as 3 equal chunks, not 250+250+100
    assert [c.size for c in the_plan.chunks] == [200, 200, 200]
    roomy = [FakeAccelerator({"bytes_limit": free_for(10_000), "bytes_in_use": 0})]
    assert sweep.plan(sw, devices=roomy).chunk_size == 600  # the whole sweep in one chunk
    # two devices: the one with less free memory decides; chunks split evenly over both
    two = [FakeAccelerator({"bytes_limit": free_for(100), "bytes_in_use": 0}),
           FakeAccelerator({"bytes_limit": free_for(900), "bytes_in_use": 0})]
    assert sweep.plan(sw, devices=two).chunk_size == 200  # at most 2 x 100: 3 chunks of 200
    assert sweep.device_memory_budget(two) == int(fraction * free_for(100))
    # an explicit budget or chunk size wins, and is not rebalanced
    assert sweep.plan(sw, devices=one, memory_budget=7 * run_bytes).chunk_size == 7
    assert sweep.plan(sw, devices=one, chunk_size=50).chunk_size == 50
    # devices that do not report their memory: the default budget per device
    fallback = sweep.parse_bytes(sweep.DEFAULT_MEMORY_BUDGET)
    for stats in (None, {}, {"bytes_in_use": 5}, NotImplementedError("no stats")):
        silent = [FakeAccelerator(stats)]
        assert sweep.device_memory_budget(silent) == fallback
        assert sweep.plan(sw, devices=silent).chunk_size == min(600, fallback // run_bytes)
    # a CPU keeps its budget and cap, whatever the host's memory
    cpu = [FakeAccelerator({"bytes_limit": 2**40, "bytes_in_use": 0}, platform="cpu")] * 2
    assert sweep.device_memory_budget(cpu) == fallback
    assert sweep.plan(sw, devices=cpu).chunk_size == 2 * sweep.CPU_RUNS_PER_DEVICE


def test_balanced_chunk():
    assert sweep.balanced_chunk(4400, 10_000, 1) == 3334
    assert sweep.balanced_chunk(4400, 4000, 1) == 4000  # one chunk
    assert sweep.balanced_chunk(8, 84, 2) == 8  # 11 chunks either way
    for largest, runs, devices in [(8, 12, 2), (96, 1000, 8), (5, 5, 1), (6, 25, 3)]:
        size = sweep.balanced_chunk(largest, runs, devices)
        assert size <= max(largest, runs) and (size % devices == 0 or size == runs)
        assert -(-runs // size) == -(-runs // largest)  # no more chunks than needed


def test_plan_and_inputs_are_built_per_point_of_the_other_axes():
    """Runs that differ only in their seed share their configuration: the plan and the
    chunk inputs built per point equal those built run by run, keys included."""
    sw = sweep.make_sweep(Config(**BASE), AXES, seeds=7)
    assert sw.seed_count == 7 and sweep.make_sweep(Config(**BASE), AXES).seed_count == 1
    the_plan = sweep.plan(sw, chunk_size=5, buckets=1)
    (group,) = the_plan.groups
    assert group.n_pad == max(sum(class_counts_of(sw.config(i))) for i in range(sw.size))
    runs = np.array([40, 3, 4, 5, 17, 41])
    problems, numerics, keys, counts = sweep.batch_inputs(sw, group, runs)
    for row, index in enumerate(runs):
        cfg = sw.config(int(index))
        tree_allclose(jax.tree.map(lambda a, r=row: a[r], problems),
                      problem_of(cfg, n_pad=group.n_pad))
        tree_allclose(jax.tree.map(lambda a, r=row: a[r], numerics), numeric_of(cfg))
        np.testing.assert_array_equal(keys[row], jax.random.PRNGKey(cfg.seed))
        np.testing.assert_array_equal(counts[row], class_counts_of(cfg))
    np.testing.assert_array_equal(sw.seeds_of(runs), runs % 7)
    # a bad seed in the list is refused by the plan, as a bad value of any axis
    with pytest.raises(ConfigError, match=r"seed=-1 must be an integer.*sweep point seed=-1"):
        sweep.plan(sweep.make_sweep(Config(**BASE), {"seed": [0, -1]}))


@pytest.mark.parametrize("x64_mode", [False, True])
def test_seed_keys_equal_single_keys(x64_mode):
    """Keys of many seeds (one batched call) and of a few (one call each) are the keys
    ``simulate`` uses, for seeds up to 2^32 - 1."""
    with jax.enable_x64(x64_mode):
        seeds = np.array([3, 0, 2**31 - 1, 2**31, 2**32 - 1, 3, *range(100, 120)])
        for chosen in (seeds[:3], seeds):
            want = np.stack([np.asarray(jax.random.PRNGKey(int(s))) for s in chosen])
            np.testing.assert_array_equal(sweep.seed_keys(chosen), want)


def test_matmul_precision_is_recorded_and_kept(tmp_path, capsys):
    """Sweeps compute float32 products at 'highest' precision unless told otherwise; the
    precision is in the file's attributes and the manifest, and a resumed sweep keeps it."""
    sw = sweep.make_sweep(Config(**BASE), AXES)
    assert sweep.plan(sw).matmul_precision == sweep.DEFAULT_MATMUL_PRECISION == "highest"
    out = str(tmp_path / "s.nc")
    store.open_parts(out, sweep.plan(sw, chunk_size=2, matmul_precision="default"))
    with open(os.path.join(sweep.parts_dir(out), "manifest.json")) as f:
        assert json.load(f)["matmul_precision"] == "default"
    _, resumed = store.open_parts(out, sweep.plan(sw, chunk_size=2))
    assert resumed.matmul_precision == "default"
    with pytest.raises(ConfigError, match="matmul_precision='tf32'"):
        sweep.plan(sw, matmul_precision="tf32")
    assert main(["sweep", "--matmul-precision", "tf32", "--out", str(tmp_path / "x.nc")]) == 2
    assert "matmul_precision='tf32' must be one of" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "s.nc.parts"]  # nothing more written


# ------------------------------------------------------------------------------------------
# Resume, refusal of a changed sweep, devices, processes
# ------------------------------------------------------------------------------------------


def test_sigkill_mid_sweep_then_resume(tmp_path, reference, script, cache_dir):
    sw, expected = reference
    out, log1, log2 = tmp_path / "s.nc", tmp_path / "log1", tmp_path / "log2"
    parts = tmp_path / "s.nc.parts"
    total = len(sweep.plan(sw, chunk_size=2).chunks)
    assert total == 6
    child = subprocess.Popen([sys.executable, script, str(out), str(log1), "0.5"],
                             env=cached_env(cache_dir), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if log1.exists() and len(log1.read_text().split()) >= 2:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    finished = {int(name[6:12]) for name in os.listdir(parts) if name.startswith("chunk-")}
    assert {int(i) for i in log1.read_text().split()} <= finished
    assert 2 <= len(finished) < total and not out.exists()
    again = subprocess.run([sys.executable, script, str(out), str(log2), "0"],
                           env=cached_env(cache_dir), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    recomputed = {int(i) for i in log2.read_text().split()}
    assert not recomputed & finished  # nothing finished was computed again
    assert recomputed | finished == set(range(total))
    assert not parts.exists()
    xr.testing.assert_identical(sweep.load(out), expected)


def test_changed_sweep_is_refused(tmp_path, reference, capsys):
    sw, _ = reference
    out = tmp_path / "s.nc"
    store.open_parts(str(out), sweep.plan(sw, chunk_size=2))  # an unfinished sweep
    changed = ["sweep", *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in BASE.items()),
                             []), "--ratio", "1,3,7", "--gamma", "0,1", "--seeds", "2",
               "--out", str(out), "--no-progress"]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "different sweep" in err and "ratio (swept): [1.0, 3.0, 6.0] there" in err
    assert sorted(os.listdir(tmp_path / "s.nc.parts")) == ["manifest.json"]
    # A finished file of another sweep is refused too.
    other = tmp_path / "other.nc"
    sweep.run(sweep.make_sweep(Config(**BASE), {"ratio": [1.0, 3.0]}), other, chunk_size=2,
              progress=False)
    with pytest.raises(ConfigError, match="already exists and holds a different sweep"):
        sweep.run(sw, other, progress=False)


def test_four_devices_give_the_same_dataset(tmp_path, reference, script, cache_dir):
    _, expected = reference
    out = tmp_path / "s.nc"
    env = cached_env(cache_dir, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    done = subprocess.run([sys.executable, script, str(out), str(tmp_path / "log"), "0"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "devices 4" in done.stdout
    ds = sweep.load(out)
    tree_allclose(dict(ds.data_vars), dict(expected.data_vars), rtol=1e-6, atol=1e-7)
    xr.testing.assert_identical(ds.drop_vars(list(ds.data_vars)),
                                expected.drop_vars(list(expected.data_vars)))


def test_cli_cpu_devices_splits_chunks_over_cores(tmp_path, reference, cache_dir, capsys):
    """``ssm-jax sweep --cpu-devices 2``: two host devices, the reference Dataset."""
    _, expected = reference
    out = tmp_path / "s.nc"
    args = ["sweep", "--k-major", "2", "--k-minor", "2", "--n-major", "12", "--dim", "4",
            "--steps", "20", "--saves", "6", "--lr", "2", "--weighting", "power",
            "--ratio", "1,3,6", "--gamma", "0,1", "--seeds", "2", "--chunk-size", "2",
            "--no-progress", "--out", str(out)]
    assert BASE == dict(k_major=2, k_minor=2, n_major=12, dim=4, steps=20, saves=6, lr=2.0,
                        weighting="power") and AXES == {"ratio": [1.0, 3.0, 6.0],
                                                        "gamma": [0.0, 1.0]}
    done = subprocess.run([sys.executable, "-m", "ssm_jax", *args, "--cpu-devices", "2"],
                          env=cached_env(cache_dir), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "on 2 device(s)" in done.stdout
    ds = sweep.load(out)
    tree_allclose(dict(ds.data_vars), dict(expected.data_vars), rtol=1e-6, atol=1e-7)
    # bad values, and a count this (already running, one-device) process cannot take
    assert main([*args[:-1], str(tmp_path / "x.nc"), "--cpu-devices", "zero"]) == 2
    assert ("--cpu-devices='zero' must be 'auto' or an integer from 1 to the number of cores"
            in capsys.readouterr().err)
    # (within the declared bound of the cores, which the 2-device run above needs)
    assert main([*args[:-1], str(tmp_path / "y.nc"), "--cpu-devices", "2"]) == 2
    assert "already runs with 1 device(s)" in capsys.readouterr().err


def test_processes_share_the_chunks(tmp_path, reference, capsys):
    """Process p of P computes chunks p, p + P, ...; process 0 assembles when all exist (the
    split ``--distributed`` uses with jax.distributed; here both run in this process)."""
    sw, expected = reference
    out = tmp_path / "s.nc"
    computed = {0: [], 1: []}
    for index in (1, 0):
        result = sweep.run(sw, out, chunk_size=2, progress=False, process_index=index,
                           process_count=2, on_chunk=computed[index].append)
        assert (result is None) == (index == 1) and out.exists() == (index == 0)
    assert computed == {0: [0, 2, 4], 1: [1, 3, 5]}
    xr.testing.assert_identical(sweep.load(out), expected)
    assert main(["sweep", "--coordinator", "localhost:1234", "--out", str(tmp_path / "x.nc")]) == 2
    assert "need --distributed" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Memory and plots
# ------------------------------------------------------------------------------------------


def test_host_memory_does_not_grow_with_the_results(tmp_path):
    """Peak Python/numpy allocations (tracemalloc) of a 10x larger sweep grow by far less
    than its results: chunks go to disk and the file is streamed one chunk at a time.
    (Peak RSS of 10x larger sweeps: benchmarks/sweep_memory.py.)"""
    base = Config(k_major=5, k_minor=5, n_major=8, dim=4, steps=100, saves=101, lr=2.0,
                  weighting="power")
    small = sweep.make_sweep(base, {"ratio": [2.0, 4.0]}, seeds=8)
    large = sweep.make_sweep(base, {"ratio": [2.0, 4.0]}, seeds=80)
    sweep.run(small, tmp_path / "warm.nc", chunk_size=8, progress=False)  # compile first
    peaks, sizes = {}, {}
    for name, sw in (("small", small), ("large", large)):
        tracemalloc.start()
        sweep.run(sw, tmp_path / f"{name}.nc", chunk_size=8, progress=False, lazy=True).close()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        sizes[name] = sweep.load(tmp_path / f"{name}.nc").nbytes
    assert sizes["large"] > 2_500_000  # 160 runs x ~18 kB of results
    assert peaks["large"] < 0.3 * sizes["large"], (peaks, sizes)
    assert peaks["large"] - peaks["small"] < 0.15 * (sizes["large"] - sizes["small"]), (
        peaks, sizes)


def test_plot_command(tmp_path, x64_sweep, capsys):
    _, _, path = x64_sweep
    assert main(["plot", str(path), "--out", str(tmp_path)]) == 0
    written = sorted(os.listdir(tmp_path))
    assert written == ["sweep_accuracy.png", "sweep_delay.png"]
    assert all((tmp_path / name).stat().st_size > 5000 for name in written)
    assert main(["plot", str(path), "--out", str(tmp_path), "--select", "lr=2"]) == 2
    assert "'lr' is not a dimension" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing.nc")]) == 2


def test_interrupted_launch_saves_the_chunk_in_flight(tmp_path, x64_sweep, monkeypatch):
    """Chunks are launched one ahead of the one being saved; an interruption while the
    next chunk is launched still saves the previous, finished one, and a resume computes
    only what is missing and gives the uninterrupted Dataset."""
    sw, expected, _ = x64_sweep
    out = tmp_path / "sweep.nc"
    launch, calls, saved = sweep.launch_chunk, [], []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return launch(*args, **kwargs)

    monkeypatch.setattr(runner, "launch_chunk", interrupting)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(sw, out, chunk_size=4, progress=False, on_chunk=saved.append)
    assert saved == [0, 1]  # chunk 1 was in flight when launching chunk 2 failed
    monkeypatch.setattr(runner, "launch_chunk", launch)
    resumed = []
    ds = sweep.run(sw, out, chunk_size=4, progress=False, on_chunk=resumed.append)
    assert len(sweep.plan(sw, chunk_size=4).chunks) == 3 and resumed == [2]
    xr.testing.assert_identical(ds.drop_attrs(), expected.drop_attrs())


def test_geometry_sweep_variables_and_conventions(tmp_path, x64):
    """A sweep with geometry (and a bias) records every geometry key as ``geometry_<key>``,
    equal to single runs, with each key's formula, centring, weighting and reference."""
    from ssm_jax import geometry

    sw = sweep.make_sweep(Config(**BASE, loss="ce", bias=True, geometry=True, x64=True),
                          {"gamma": [0.0, 1.0]})
    ds = sweep.run(sw, tmp_path / "geo.nc", chunk_size=2, progress=False)
    for key, definition in geometry.DEFINITIONS.items():
        var = ds[f"geometry_{key}"]
        assert var.attrs["formula"] == definition.formula, key
        assert var.attrs["centring"] == definition.centring, key
        assert var.attrs["reference"] == definition.reference, key
        assert var.attrs["weighting"] == definition.weighting, key
    assert ds["geometry_feature_cosine_centred"].dims == ("gamma", "save", "class", "class2")
    assert ds["geometry_nc3_self_duality"].dims == ("gamma", "save")
    single = simulate(sw.config(1)).trajectory.geometry
    for key in ("nc1_cdnv", "nc4_ncc_agreement", "feature_norm_centred", "nc2_seli_outputs"):
        np.testing.assert_allclose(ds[f"geometry_{key}"].values[1], single[key], rtol=1e-10,
                                   err_msg=key)
    # the Dataset built in memory (no file) is the file's, extra dims and attrs included
    assert_same_dataset(sweep.run(sw, chunk_size=2, progress=False), ds)
