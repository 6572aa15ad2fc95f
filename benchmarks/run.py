"""ssm-jax performance suite: workloads W1-W4 against baselines measured in the same run,
the machine's roofline (peak matmul FLOP/s and streaming bandwidth), and scaling.

    .venv/bin/python benchmarks/run.py            # full suite (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # smaller workloads, 1 rep: a smoke test
    .venv/bin/python benchmarks/run.py --only roofline,w1,scaling

Writes ``benchmarks/results/results.json`` (``results_<label>.json`` with ``--label``),
``results.md`` (the Markdown table; a GPU column appears when ``results_gpu.json`` from
``benchmarks/gpu.sh`` exists) and ``scaling.png``.

Workloads (the paper sweep: step imbalance 5 + 5 classes, n_major 200, ratio in {1, 2, 5,
10, 20, 50, 100}, gamma in {0, 0.5, 1} (power-law weights), 4 seeds = 84 runs, d = 64,
gaussian init 0.001, lr 4, 2,000 steps, metrics every 20 steps = 101 save points):

* W1 squared loss, gradient descent;  W2 the same with cross-entropy;
* W3 d(balanced loss at the end)/d(gamma) for all 84 runs (reverse mode through the whole
  run, no rematerialisation);
* W4 gradient flow of W1 to the same final time t = lr x 2,000.

Every time is the median of ``--reps`` repetitions. "cold" includes compilation (JAX's
caches are cleared first), "warm" is a second call; compile = cold - warm. Baseline (a) is
eager PyTorch (no compilation), (b) a per-configuration Python loop over a jitted JAX step.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from baselines import JaxLoop, Run, scipy_flow, torch_run  # noqa: E402

# Compilation is part of every ratio here, measured with a cold cache: no persistent
# compilation cache (benchmarks/cache.py measures what it saves).
os.environ["SSM_JAX_CACHE_DIR"] = ""

from ssm_jax import reduced, sweep  # noqa: E402
from ssm_jax.config import Config  # noqa: E402
from ssm_jax.problem import class_counts_of  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
WORKLOADS = ("w1", "w2", "w3", "w4")


# ----------------------------------------------------------------------------- timing


def median_time(fn, reps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def cold_warm(fn, reps: int) -> dict:
    """Median over reps of (cold = caches cleared, then fn; warm = fn again)."""
    cold, warm = [], []
    for _ in range(reps):
        jax.clear_caches()
        start = time.perf_counter()
        fn()
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    c, w = statistics.median(cold), statistics.median(warm)
    return {"cold_s": c, "warm_s": w, "compile_s": max(c - w, 0.0), "cold_all": cold,
            "warm_all": warm}


def block(tree):
    return jax.block_until_ready(tree)


# --------------------------------------------------------------------------- roofline


def peak_matmul(size: int):
    """A compiled, warmed-up float32 ``size`` x ``size`` matmul, called without arguments
    (``2 size^3`` flops per call)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    block(matmul(a, a))
    return lambda: block(matmul(a, a))


def roofline(quick: bool) -> dict:
    """Measured peak: a large float32 matmul (FLOP/s) and a large streaming update
    ``y = x + 1`` (bytes read + written per second), median of 5."""
    size = 2048 if quick else 4096
    t_mm, _ = median_time(peak_matmul(size), 5)
    length = (1 << 24) if quick else (1 << 26)
    x = jnp.ones((length,), jnp.float32)
    stream = jax.jit(lambda v: v + 1.0)
    block(stream(x))
    t_bw, _ = median_time(lambda: block(stream(x)), 5)
    return {"peak_flops": 2 * size ** 3 / t_mm, "peak_bytes_per_s": 2 * 4 * length / t_bw,
            "matmul_size": size, "stream_floats": length}


# -------------------------------------------------------------------------- workloads


def base_config(loss: str, quick: bool, **extra) -> Config:
    steps = 400 if quick else 2000
    values = dict(loss=loss, k_major=5, k_minor=5, n_major=200, dim=64, weighting="power",
                  init="gaussian", init_scale=1e-3, method="gd", lr=4.0, steps=steps,
                  saves=steps // 20 + 1)
    return Config(**{**values, **extra})


def axes(quick: bool) -> tuple[dict, int]:
    if quick:
        return {"ratio": [1.0, 10.0, 100.0], "gamma": [0.0, 1.0]}, 1
    return {"ratio": [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0], "gamma": [0.0, 0.5, 1.0]}, 4


def make(loss: str, quick: bool, **extra):
    ax, seeds = axes(quick)
    sw = sweep.make_sweep(base_config(loss, quick, **extra), ax, seeds=seeds)
    runs = []
    for i in range(sw.size):
        cfg = sw.config(i)
        runs.append(Run(counts=class_counts_of(cfg), gamma=cfg.gamma, seed=cfg.seed,
                        dim=cfg.dim, loss=cfg.loss, lr=cfg.lr, steps=cfg.steps, save_every=20,
                        init_scale=cfg.init_scale))
    return sw, runs


def one_batch(sw):
    """The sweep's single group, all runs stacked: (spec, problems, numerics, keys)."""
    the_plan = sweep.plan(sw, chunk_size=sw.size)
    (group,) = the_plan.groups
    problems, numerics, keys = sweep.batch_inputs(sw, group, group.runs)[:3]
    return group, (problems, numerics, keys)


def flops_bytes(workload: str, sw, sizes, reduced_path: bool, flow_evals=None) -> dict:
    """Analytic matrix-product flops and minimal memory traffic (parameters or reduced
    state read and written once per step, in float32) of what the workload executes:
    ``sizes`` lists ``(runs, n_pad)`` of the compiled groups (one per bucket of ``n``).
    ``state_floats`` is that of the largest ``n_pad`` (the cache-residency test)."""
    cfg = sw.config(0)
    k, d, steps, saves = cfg.num_classes, cfg.dim, cfg.steps, cfg.saves
    evals = steps if flow_evals is None else flow_evals
    groups = reduced.num_groups(simulate_module().spec_of(cfg), k)  # pooled classes
    flops = traffic = all_steps = 0.0
    largest = 0  # state floats of the largest n_pad
    for runs, n_pad in sizes:
        if reduced_path:
            step_flops = reduced.flops_per_step(k, d, n_pad, True, groups)
            state = k * d + groups * d * d + k * d
            save_flops = 2 * groups * k * d * n_pad
            init_flops = 4 * groups * d * d * n_pad
        else:
            step_flops = reduced.flops_per_step(k, d, n_pad, False)
            state = k * d + d * n_pad
            save_flops = 2 * k * d * n_pad
            init_flops = 0
        flops += runs * (evals * step_flops + saves * save_flops + init_flops)
        all_steps += runs * evals * step_flops
        traffic += runs * evals * 2 * 4 * state
        largest = max(largest, state)
    if workload == "w3":  # forward + backward (2x forward) of the training steps
        flops, traffic, all_steps = 3 * flops, 3 * traffic, 3 * all_steps
    return {"flops": float(flops), "step_flops": float(all_steps), "bytes": float(traffic),
            "state_floats": largest,
            "groups": [{"runs": int(r), "n_pad": int(n)} for r, n in sizes]}


def simulate_module():
    return importlib.import_module("ssm_jax.simulate")


CHUNK_SIZE = 8


def ssm_jax_sweep(sw):
    """The user-facing sweep API, end to end (in-memory Dataset), each chunk split over the
    local devices (on a CPU, ``--cpu-devices``: one per core). On a CPU a small chunk keeps
    a chunk's state in cache: 84 runs at once is 2-3x slower than chunks of 8."""
    return lambda: sweep.run(sw, None, progress=False, chunk_size=CHUNK_SIZE)


def workload_discrete(name: str, loss: str, args, peak: dict) -> dict:
    sw, runs = make(loss, args.quick)
    group, _ = one_batch(sw)
    use = reduced.use_reduced(group.spec, sweep_problem(group))
    # as the sweep runs it: on a CPU, per-example runs are bucketed by n (sweep.plan)
    executed = sweep.plan(sw, chunk_size=CHUNK_SIZE)
    sizes = [(len(g.runs), g.n_pad) for g in executed.groups]
    out = {"runs": sw.size, "n_pad": group.n_pad, "reduced": use, "chunk_size": CHUNK_SIZE,
           "buckets": executed.buckets, "n_pads": [n for _, n in sizes]}
    out["ssm_jax"] = cold_warm(ssm_jax_sweep(sw), args.reps)
    ds = sweep.run(sw, None, progress=False, chunk_size=CHUNK_SIZE)
    ours_acc = np.asarray(ds["balanced_accuracy"]).reshape(sw.size, -1)
    loop = JaxLoop()
    out["jax_loop"] = cold_warm(lambda: [loop.train(r) for r in runs[:: args.stride]],
                                args.reps)
    out["jax_loop"]["configs_timed"] = len(runs[:: args.stride])
    theirs = np.stack([loop.train(r) for r in runs[:3]])
    # same initialisation as ssm-jax: the balanced accuracies agree at every save point
    out["max_abs_diff_balanced_accuracy_vs_jax_loop"] = float(
        np.max(np.abs(theirs - sweep_order(ds, sw)[:3])))
    if have_torch(args):
        subset = runs[:: args.heavy_stride]  # time depends on the ratio only
        t = torch_subprocess("run", subset, args.reps)
        out["torch"] = {"cold_s": t, "warm_s": t, "compile_s": 0.0,
                        "configs_timed": len(subset)}
        torch_acc = np.stack([torch_run(r)[0] for r in runs[:3]])
        # different random initialisation: final balanced accuracies agree only roughly
        out["max_abs_diff_final_balanced_accuracy_vs_torch"] = float(
            np.max(np.abs(torch_acc[:, -1] - sweep_order(ds, sw)[:3, -1])))
    out["final_balanced_accuracy_mean"] = float(np.nanmean(ours_acc[:, -1]))
    out["diverged_runs"] = int(np.asarray(ds["diverged"]).sum())
    out["work"] = flops_bytes(name, sw, sizes, use)
    if use:  # the reduced step is W V with V = [Y_1 .. Y_G | nu] (ssm_jax.reduced)
        cfg = sw.config(0)
        k, d = cfg.num_classes, cfg.dim
        groups = reduced.num_groups(group.spec, k)
        out["products_ceiling"] = products_ceiling(
            k, d, groups * d + k, reduced.flops_per_step(k, d, group.n_pad, True, groups),
            cfg.steps, args.reps, peak)
    return finish(out, peak, sw.size)


def products_ceiling(k: int, d: int, m: int, step_flops: float, steps: int, reps: int,
                     peak: dict) -> dict:
    """The most XLA's matrix products reach on the shapes of a training step: a loop of
    ``steps`` steps of only the three products of a ``(k x d) (d x m)`` bilinear step
    (``P = W V``, ``P V^T``, ``W^T P``) and the two updates, for one chunk of
    ``CHUNK_SIZE`` runs split over the local devices as the sweep runs it; no loss, no
    metrics, no host work. ``fraction_of_peak`` is the workload's analytic step flops
    (``step_flops`` per run and step) over this time, against the peak matmul measured
    next to it (median over repetitions): the steps of a workload whose step is these
    products cannot run closer to the compute bound with XLA's matrix products."""
    sharding = sweep.run_sharding()
    devices = len(sharding.mesh.devices.flat)
    runs = -(-CHUNK_SIZE // devices) * devices  # as the sweep pads a chunk
    W = jax.device_put(jnp.full((runs, k, d), 1e-3, jnp.float32), sharding)
    V = jax.device_put(jnp.full((runs, d, m), 1e-3, jnp.float32), sharding)

    def loop(W, V):
        def step(carry, _):
            W, V = carry
            P = jnp.einsum("rkd,rdm->rkm", W, V)
            return (W - 1e-3 * jnp.einsum("rkm,rdm->rkd", P, V),
                    V - 1e-3 * jnp.einsum("rkd,rkm->rdm", W, P)), None

        return jax.lax.scan(step, (W, V), None, length=steps)[0]

    fn = jax.jit(loop, out_shardings=(sharding, sharding),
                 compiler_options=sweep.CPU_COMPILER_OPTIONS
                 if jax.devices()[0].platform == "cpu" else None)
    block(fn(W, V))
    # the peak is measured again next to each repetition (this host's speed drifts)
    size = peak["matmul_size"]
    matmul = peak_matmul(size)
    flops = step_flops * runs * steps
    fractions, times = [], []
    for _ in range(max(reps, 5)):
        t_peak, _ = median_time(matmul, 1)
        t, _ = median_time(lambda: block(fn(W, V)), 1)
        times.append(t)
        fractions.append((flops / t) / (2 * size ** 3 / t_peak))
    return {"shape_k_d_m": [k, d, m], "runs": runs, "steps": steps,
            "seconds": statistics.median(times), "all_seconds": times,
            "fraction_of_peak": statistics.median(fractions), "all_fractions": fractions}


def sweep_problem(group):
    from ssm_jax.problem import make_problem

    return make_problem((1,) * group.num_classes, group.n_pad)


def sweep_order(ds, sw) -> np.ndarray:
    """Balanced accuracy (runs in sweep order, saves) from a sweep Dataset."""
    rows = []
    for i in range(sw.size):
        point = sw.point(i)
        sel = {sweep.dim_name(f): v for f, v in point.items() if sweep.dim_name(f) in ds.dims}
        rows.append(np.asarray(ds["balanced_accuracy"].sel(sel)))
    return np.stack(rows)


def balanced_final_loss(spec, problem, numeric, key):
    from ssm_jax.simulate import trajectory

    return jnp.mean(trajectory(spec, problem, numeric, key).per_class_loss[-1])


def workload_w3(args, peak: dict) -> dict:
    """Reverse mode through every run, chunks of CHUNK_SIZE split over the local devices
    (``shard_map``). No rematerialisation: the pooled reduced state is small (``2 d^2``
    floats per step), so the stored history fits and recomputing it would cost time."""
    sw, runs = make("mse", args.quick, saves=2)
    group, inputs = one_batch(sw)
    spec = dataclasses.replace(group.spec, remat=False)
    sharding = sweep.run_sharding()
    per_run = jax.vmap(jax.grad(balanced_final_loss, argnums=2), in_axes=(None, 0, 0, 0))
    grad_fn = jax.jit(lambda spec, *a: sweep.per_device(
        functools.partial(per_run, spec), sharding.mesh)(*a),
        static_argnums=0, compiler_options=sweep.CPU_COMPILER_OPTIONS
        if jax.devices()[0].platform == "cpu" else None)
    result = {}

    devices = len(jax.devices())
    size = -(-CHUNK_SIZE // devices) * devices
    chunks = [jax.device_put(jax.tree.map(lambda a, s=start: a[s:s + size], inputs), sharding)
              for start in range(0, sw.size, size)]  # 84 = 10 x 8 + 4: two shapes

    def ours():
        result["g"] = np.concatenate([block(grad_fn(spec, *c)).gamma for c in chunks])

    use = reduced.use_reduced(spec, sweep_problem(group))
    out = {"runs": sw.size, "n_pad": group.n_pad, "reduced": use, "remat": False,
           "chunk_size": size, "devices": devices}
    out["ssm_jax"] = cold_warm(ours, args.reps)
    loop = JaxLoop()
    out["jax_loop"] = cold_warm(lambda: [loop.gamma_gradient(r) for r in runs[:: args.stride]],
                                args.reps)
    out["jax_loop"]["configs_timed"] = len(runs[:: args.stride])
    theirs = np.asarray([loop.gamma_gradient(r) for r in runs[:4]])
    ours_g = np.asarray(result["g"])[:4]
    out["max_rel_diff_gradient_vs_jax_loop"] = float(np.max(np.abs(theirs - ours_g)
                                                 / np.maximum(np.abs(theirs), 1e-6)))
    if have_torch(args):
        subset = runs[:: args.heavy_stride]
        t = torch_subprocess("gamma_gradient", subset, args.reps)
        out["torch"] = {"cold_s": t, "warm_s": t, "compile_s": 0.0,
                        "configs_timed": len(subset),
                        "note": "central finite differences (two eager runs per gradient)"}
    out["work"] = flops_bytes("w3", sw, [(sw.size, group.n_pad)], use)
    return finish(out, peak, sw.size)


def workload_w4(args, peak: dict) -> dict:
    sw, runs = make("mse", args.quick, method="flow")
    group, inputs = one_batch(sw)
    use = reduced.use_reduced(group.spec, sweep_problem(group))
    out = {"runs": sw.size, "n_pad": group.n_pad, "reduced": use, "chunk_size": CHUNK_SIZE}
    out["ssm_jax"] = cold_warm(ssm_jax_sweep(sw), args.reps)
    traj = sweep.batched_trajectory(group.spec, *inputs)
    evals = int(np.sum(np.asarray(traj.flow.num_vf_evals)) / sw.size)
    out["vector_field_evals_per_run"] = evals
    simulate = simulate_module()

    def per_config():
        for i in range(0, sw.size, args.stride):
            cfg = sw.config(i).replace(reduced="off")
            block(simulate.trajectory_jit(simulate.spec_of(cfg), simulate.problem_of(cfg),
                                          simulate.numeric_of(cfg),
                                          jax.random.PRNGKey(cfg.seed)).balanced_accuracy)

    out["jax_loop"] = cold_warm(per_config, args.reps)
    out["jax_loop"]["configs_timed"] = len(range(0, sw.size, args.stride))
    out["jax_loop"]["note"] = "per-configuration jitted diffrax solve (ssm-jax, reduced off)"
    subset = runs[:: args.heavy_stride]
    cfg = sw.config(0)
    t, _ = median_time(lambda: [scipy_flow(r, cfg.lr * cfg.steps, cfg.rtol, cfg.atol)
                                for r in subset], args.reps)
    out["scipy"] = {"cold_s": t, "warm_s": t, "compile_s": 0.0, "configs_timed": len(subset),
                    "note": "scipy.integrate.solve_ivp RK45 with a NumPy vector field"}
    out["work"] = flops_bytes("w4", sw, [(sw.size, group.n_pad)], use, flow_evals=evals)
    return finish(out, peak, sw.size)


def finish(out: dict, peak: dict, runs: int) -> dict:
    """Scale baselines timed on a subset to all runs (per-configuration loops: time is
    additive; compilation, once per shape, is not scaled), speedups, and achieved rates
    against the roofline."""
    for name in ("jax_loop", "torch", "scipy"):
        entry = out.get(name)
        if entry is None or entry["configs_timed"] >= runs:
            continue
        factor = runs / entry["configs_timed"]
        entry["warm_s"] *= factor
        entry["cold_s"] = entry["warm_s"] + entry["compile_s"]
        entry["scaled"] = f"timed on {entry['configs_timed']} of {runs} configurations"
    ours = out["ssm_jax"]
    for name in ("jax_loop", "torch", "scipy"):
        if name in out:
            out[f"speedup_vs_{name}_cold"] = out[name]["cold_s"] / ours["cold_s"]
            out[f"speedup_vs_{name}_warm"] = out[name]["warm_s"] / ours["warm_s"]
    out["roofline"] = roofline_of(out, peak)
    return out


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache (Linux sysfs), or None."""
    import glob

    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        with open(path) as f:
            text = f.read().strip()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KM")) * scale)
    return max(sizes) if sizes else None


def roofline_of(out: dict, peak: dict) -> dict:
    """Achieved FLOP/s and bytes/s (analytic work / warm time) against the measured peaks.

    The applicable bound: if a chunk's working set (``chunk_size`` runs x state x 3:
    state, gradient, intermediates, float32) fits in the last-level cache, DRAM bandwidth
    does not limit the run and the compute peak applies; otherwise the larger of the
    compute time and the DRAM-traffic time (classical roofline)."""
    work, warm = out["work"], out["ssm_jax"]["warm_s"]
    t_compute = work["flops"] / peak["peak_flops"]
    t_memory = work["bytes"] / peak["peak_bytes_per_s"]
    working_set = out.get("chunk_size", CHUNK_SIZE) * work["state_floats"] * 4 * 3
    cache = last_level_cache_bytes()
    in_cache = cache is not None and working_set <= cache
    bound = "compute" if in_cache or t_compute >= t_memory else "memory"
    t_bound = t_compute if bound == "compute" else t_memory
    best = {}
    ceiling = out.get("products_ceiling")
    if ceiling is not None and bound == "compute":
        # at best: the steps at the products' ceiling, the rest (save points, setup) at
        # the peak, and no other cost
        steps = work["step_flops"]
        t_best = (steps / ceiling["fraction_of_peak"] + work["flops"] - steps) / peak[
            "peak_flops"]
        best = {"best_fraction_of_bound": t_bound / t_best}
    return {
        "achieved_flops": work["flops"] / warm,
        "achieved_bytes_per_s": work["bytes"] / warm,
        "percent_of_peak_flops": 100 * t_compute / warm,
        "percent_of_peak_bandwidth": 100 * t_memory / warm,
        "working_set_bytes": working_set, "last_level_cache_bytes": cache,
        "bound": bound, "bound_time_s": t_bound, "fraction_of_bound": t_bound / warm,
        **best,
    }


TORCH_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import baselines
runs = [baselines.Run(**{**r, "counts": tuple(r["counts"])}) for r in json.loads(sys.argv[3])]
fn = {"run": baselines.torch_run, "gamma_gradient": baselines.torch_gamma_gradient}[sys.argv[2]]
import torch  # noqa: F401
times = []
for _ in range(int(sys.argv[4])):
    start = time.perf_counter()
    for r in runs:
        fn(r)
    times.append(time.perf_counter() - start)
print(json.dumps(sorted(times)[len(times) // 2]))
"""


def torch_subprocess(kind: str, runs: list, reps: int) -> float:
    """Median time of the PyTorch baseline over ``runs``, in a fresh process: JAX's CPU
    thread pool in this process would otherwise compete with PyTorch's threads."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    payload = json.dumps([r.__dict__ for r in runs])
    out = subprocess.run([sys.executable, "-c", TORCH_CHILD, here, kind, payload, str(reps)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def have_torch(args) -> bool:
    if args.no_torch:
        return False
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not installed: baseline (a) skipped (pip install -e '.[bench]')",
              file=sys.stderr)
        return False
    return True


# ---------------------------------------------------------------------------- scaling


def scaling(args) -> dict:
    """Marginal warm time per step of one (batched) run, reduced and per-example, against
    n, d, k and batch size: (time of 2S steps - time of S steps) / S, S = 500, squared
    loss, gd, 2 saves; the rest of the time is reported as the fixed (setup) cost."""
    simulate = simulate_module()
    steps = 50 if args.quick else 500
    grids = {"n": [100, 1000, 10000, 100000], "d": [16, 32, 64, 128], "k": [2, 5, 10, 20],
             "batch": [1, 4, 16, 64]}
    if args.quick:
        grids = {key: values[:3] for key, values in grids.items()}
    default = {"n": 2000, "d": 64, "k": 10, "batch": 1}
    rows = []
    for axis, values in grids.items():
        for value in values:
            point = {**default, axis: value}
            k, n = point["k"], point["n"]
            per_class = max(1, n // k)
            cfg = Config(counts=(per_class,) * k, profile="counts", dim=point["d"],
                         steps=steps, saves=2, lr=1.0)
            problem = simulate.problem_of(cfg)
            numeric = simulate.numeric_of(cfg)
            batch = point["batch"]
            inputs = jax.tree.map(lambda a, b=batch: jnp.stack([a] * b), (problem, numeric))
            keys = jax.random.split(jax.random.PRNGKey(0), batch)
            fn = jax.jit(jax.vmap(simulate.trajectory, in_axes=(None, 0, 0, 0)),
                         static_argnums=0)
            for mode in ("on", "off"):
                timings = []
                for length in (steps, 2 * steps):  # marginal cost per step, fixed cost
                    spec = simulate.spec_of(cfg.replace(reduced=mode, steps=length))

                    def call(spec=spec, inputs=inputs, keys=keys, fn=fn):
                        return block(fn(spec, *inputs, keys).loss)

                    call()
                    timings.append(median_time(call, max(1, args.reps))[0])
                per_step = max(timings[1] - timings[0], 0.0) / steps
                t = per_step * steps
                rows.append({"axis": axis, **point, "n": per_class * k, "reduced": mode == "on",
                             "seconds_per_step": per_step,
                             "seconds_per_run_step": per_step / batch,
                             "fixed_seconds": max(timings[0] - t, 0.0)})
                print(f"  scaling {axis}={value} reduced={mode}: {t / steps * 1e6:.1f} us/step",
                      file=sys.stderr)
    return {"steps": steps, "rows": rows}


def plot_scaling(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, axis in zip(axs, ("n", "d", "k", "batch"), strict=True):
        for use, style in ((True, "o-"), (False, "s--")):
            rows = [r for r in data["rows"] if r["axis"] == axis and r["reduced"] == use]
            xs = [r[axis] for r in rows]
            ax.loglog(xs, [r["seconds_per_step"] * 1e6 for r in rows], style,
                      label="reduced" if use else "per-example")
        ax.set_xlabel(axis)
        ax.set_ylabel("marginal time per step (us)")
        ax.grid(True, which="both", alpha=0.3)
    axs[0].legend()
    fig.suptitle("ssm-jax, squared loss, GD: marginal time per step, reduced vs per-example")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------- report


def fmt_s(x):
    return "" if x is None else f"{x:.2f}"


def markdown(results: dict, gpu: dict | None) -> str:
    peak = results["roofline"]
    lines = [
        f"Machine: {results['machine']['cpu']} ({results['machine']['cores']} cores), "
        f"jax {results['machine']['jax']}, device {results['machine']['device']} "
        f"(x{results['machine'].get('devices', 1)}: ssm-jax splits each chunk over them). "
        f"Measured peak: {peak['peak_flops'] / 1e9:.1f} GFLOP/s (float32 matmul "
        f"{peak['matmul_size']}^2), {peak['peak_bytes_per_s'] / 1e9:.1f} GB/s (streaming "
        f"y = x + 1). Medians of "
        f"{sorted({results[w].get('reps', 3) for w in WORKLOADS if w in results})} reps.",
        "",
        "| workload | ssm-jax cold (compile) s | ssm-jax warm s | (b) JAX loop cold s | "
        "(a) PyTorch s | speedup vs (a), cold | speedup vs (b), cold | GFLOP/s (% peak) | "
        "GB/s (% peak) | % of applicable bound | GPU warm s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"w1": "W1 squared loss, GD", "w2": "W2 cross-entropy, GD",
             "w3": "W3 d(balanced loss)/d(gamma)", "w4": "W4 gradient flow"}
    for key in WORKLOADS:
        if key not in results:
            continue
        r = results[key]
        ours = r["ssm_jax"]
        base_a = r.get("torch") or r.get("scipy")
        roof = r["roofline"]
        gpu_s = ""
        if gpu and key in gpu:
            gpu_s = f"{gpu[key]['ssm_jax']['warm_s']:.2f} ({gpu['machine']['device']})"
        speed_a = r.get("speedup_vs_torch_cold", r.get("speedup_vs_scipy_cold"))
        lines.append(
            f"| {names[key]}{' (reduced)' if r['reduced'] else ''} | {ours['cold_s']:.2f} "
            f"({ours['compile_s']:.2f}) | {ours['warm_s']:.2f} | {r['jax_loop']['cold_s']:.2f} | "
            f"{fmt_s(base_a['cold_s']) if base_a else 'n/a'} | "
            f"{'' if speed_a is None else f'{speed_a:.1f}x'} | "
            f"{r['speedup_vs_jax_loop_cold']:.1f}x | {roof['achieved_flops'] / 1e9:.1f} "
            f"({roof['percent_of_peak_flops']:.0f}%) | {roof['achieved_bytes_per_s'] / 1e9:.2f} "
            f"({roof['percent_of_peak_bandwidth']:.0f}%) | "
            f"{100 * roof['fraction_of_bound']:.0f}% ({roof['bound']}) | {gpu_s} |")
    for key in WORKLOADS:
        ceiling = results.get(key, {}).get("products_ceiling")
        if ceiling is None or "best_fraction_of_bound" not in results[key]["roofline"]:
            continue
        k, d, m = ceiling["shape_k_d_m"]
        lines += ["", (
            f"Ceiling of {key.upper()}: a loop of only its step's three matrix products "
            f"({k} x {d} times {d} x {m}, and the two of the gradient; {ceiling['runs']} runs "
            f"split over the devices, {ceiling['steps']} steps) reaches "
            f"{100 * ceiling['fraction_of_peak']:.0f}% of the peak matmul measured next to "
            f"it. With its steps at that rate and everything else at the peak, "
            f"{key.upper()} would run at "
            f"{100 * results[key]['roofline']['best_fraction_of_bound']:.0f}% of its bound.")]
    return "\n".join(lines) + "\n"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
            "device": getattr(dev, "device_kind", str(dev)), "platform": dev.platform,
            "devices": len(jax.devices()),
            "python": platform.python_version()}


def main(argv=None) -> int:
    global CHUNK_SIZE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, 1 rep")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--only", default="roofline,w1,w2,w3,w4,scaling",
                        help="comma-separated parts: roofline,w1,w2,w3,w4,scaling")
    parser.add_argument("--stride", type=int, default=None,
                        help="baselines time every stride-th configuration (all ratios and "
                             "gammas, seed 0 at stride 4) and scale by stride; default 4")
    parser.add_argument("--heavy-stride", type=int, default=None,
                        help="the same for the PyTorch and scipy baselines (default 12: "
                             "one configuration per ratio, gamma 0, seed 0)")
    parser.add_argument("--label", default="", help="results_<label>.json (e.g. gpu)")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the PyTorch baseline (a) (e.g. on a GPU machine, where "
                             "(a) is still an eager CPU loop)")
    parser.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1,
                        help="host devices a CPU is split into, one per core (default: the "
                             "number of cores); ssm-jax's chunks are split over them")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                        help="runs per vmapped chunk of the ssm-jax workloads")
    args = parser.parse_args(argv)
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before the backend starts
    args.reps = args.reps or (1 if args.quick else 3)
    args.stride = args.stride or (1 if args.quick else 4)
    CHUNK_SIZE = args.chunk_size
    args.heavy_stride = args.heavy_stride or (3 if args.quick else 12)
    parts = args.only.split(",")
    os.makedirs(RESULTS, exist_ok=True)
    name = f"results_{args.label}.json" if args.label else "results.json"
    path = os.path.join(RESULTS, name)
    results = {"machine": machine(), "reps": args.reps, "quick": args.quick,
               "chunk_size": args.chunk_size, "stride": args.stride,
               "heavy_stride": args.heavy_stride}
    if os.path.exists(path):  # keep parts measured earlier (e.g. --only w3)
        with open(path) as f:
            old = json.load(f)
        results = {**old, **results}
    peak = results.get("roofline")
    if "roofline" in parts or peak is None:
        print("roofline ...", file=sys.stderr)
        peak = results["roofline"] = roofline(args.quick)
    jobs = {"w1": lambda: workload_discrete("w1", "mse", args, peak),
            "w2": lambda: workload_discrete("w2", "ce", args, peak),
            "w3": lambda: workload_w3(args, peak), "w4": lambda: workload_w4(args, peak)}
    for key in WORKLOADS:
        if key in parts:
            print(f"{key} ...", file=sys.stderr)
            results[key] = jobs[key]()
            results[key]["reps"] = args.reps
            save(results, path)
    if "scaling" in parts:
        print("scaling ...", file=sys.stderr)
        results["scaling"] = scaling(args)
        plot_scaling(results["scaling"], os.path.join(RESULTS, "scaling.png"))
    save(results, path)
    for key in WORKLOADS:  # older entries: same roofline rule everywhere
        if key in results:
            results[key]["roofline"] = roofline_of(results[key], results["roofline"])
    save(results, path)
    gpu_path = os.path.join(RESULTS, "results_gpu.json")
    gpu = None
    if os.path.exists(gpu_path) and args.label != "gpu":
        with open(gpu_path) as f:
            gpu = json.load(f)
    table = markdown(results, gpu)
    with open(os.path.join(RESULTS, "results.md" if not args.label
                           else f"results_{args.label}.md"), "w") as f:
        f.write(table)
    print(table)
    return 0


def save(results: dict, path: str) -> None:
    from ssm_jax.simulate import write_json

    write_json(json.loads(json.dumps(results, default=float)), path)


if __name__ == "__main__":
    sys.exit(main())
