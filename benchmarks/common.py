"""What the benchmark scripts share: the workloads, timing, the machine's measured peaks,
analytic work counts and the roofline rule.

Imports JAX and ssm_jax: a script sets ``SSM_JAX_CACHE_DIR`` (and JAX's device count)
before importing this module.

Workloads (the paper sweep: step imbalance 5 + 5 classes, n_major 200, ratio in {1, 2, 5,
10, 20, 50, 100}, gamma in {0, 0.5, 1} (power-law weights), 4 seeds = 84 runs, d = 64,
gaussian init 0.001, lr 4, 2,000 steps, metrics every 20 steps = 101 save points):

* W1 squared loss, gradient descent (the exact reduced simulator);
* W2 the same with cross-entropy (per example);
* W3 d(balanced loss at the end)/d(gamma) for all 84 runs (reverse mode through the whole
  run, no rematerialisation);
* W4 gradient flow of W1 to the same final time t = lr x 2,000.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from baselines import Run  # noqa: E402

from ssm_jax import reduced, sweep  # noqa: E402
from ssm_jax.config import Config  # noqa: E402
from ssm_jax.problem import class_counts_of  # noqa: E402

RATIOS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
GAMMAS = [0.0, 0.5, 1.0]
POINTS = len(RATIOS) * len(GAMMAS)  # runs per seed of the paper sweep
SAVE_EVERY = 20


# ----------------------------------------------------------------------------- timing


def block(tree):
    return jax.block_until_ready(tree)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn, reps: int) -> tuple[float, list[float]]:
    times = [timed(fn) for _ in range(reps)]
    return statistics.median(times), times


def spread(values: list[float]) -> dict:
    """The fastest, the slowest and every value of repeated timings."""
    return {"fastest": min(values), "slowest": max(values), "all": list(values)}


# ----------------------------------------------------------------------------- workloads


def base_config(loss: str, steps: int = 2000, **extra) -> Config:
    values = dict(loss=loss, k_major=5, k_minor=5, n_major=200, dim=64, weighting="power",
                  init="gaussian", init_scale=1e-3, method="gd", lr=4.0, steps=steps,
                  saves=steps // SAVE_EVERY + 1)
    return Config(**{**values, **extra})


def workload_config(name: str, quick: bool, steps: int | None = None) -> Config:
    steps = steps or (400 if quick else 2000)
    loss = "ce" if name == "w2" else "mse"
    extra = {"method": "flow"} if name == "w4" else {"saves": 2} if name == "w3" else {}
    return base_config(loss, steps, **extra)


def axes(quick: bool) -> dict:
    if quick:
        return {"ratio": [1.0, 10.0, 100.0], "gamma": [0.0, 1.0]}
    return {"ratio": RATIOS, "gamma": GAMMAS}


def make_sweep(name: str, quick: bool, seeds: int | None = None, steps: int | None = None):
    """The sweep of workload ``name`` (w1-w4); ``seeds`` (default 1 quick, 4 full)."""
    seeds = seeds or (1 if quick else 4)
    return sweep.make_sweep(workload_config(name, quick, steps), axes(quick), seeds=seeds)


def baseline_runs(sw) -> list[Run]:
    """The baseline description (:class:`baselines.Run`) of every run of ``sw``."""
    runs = []
    for i in range(sw.size):
        cfg = sw.config(i)
        runs.append(Run(counts=class_counts_of(cfg), gamma=cfg.gamma, seed=cfg.seed,
                        dim=cfg.dim, loss=cfg.loss, lr=cfg.lr, steps=cfg.steps,
                        save_every=SAVE_EVERY, init_scale=cfg.init_scale))
    return runs


def one_batch(sw):
    """The sweep's single group, all runs stacked: (group, (problems, numerics, keys))."""
    the_plan = sweep.plan(sw, chunk_size=sw.size, buckets=1)
    (group,) = the_plan.groups
    problems, numerics, keys = sweep.batch_inputs(sw, group, group.runs)[:3]
    return group, (problems, numerics, keys)


def balanced_final_loss(spec, problem, numeric, key):
    from ssm_jax.simulate import trajectory

    return jnp.mean(trajectory(spec, problem, numeric, key).per_class_loss[-1])


def w3_gradients(sw):
    """W3's work as a function of no arguments: d(balanced loss at the end)/d(gamma) of
    every run, reverse mode, no rematerialisation (the pooled reduced state is small:
    ``2 d^2`` floats a step, so the stored history fits and recomputing it would cost
    time), in chunks of the sweep's default size split over the local devices
    (``shard_map``). Returns (function, chunk size)."""
    group, inputs = one_batch(sw)
    spec = dataclasses.replace(group.spec, remat=False)
    sharding = sweep.run_sharding()
    per_run = jax.vmap(jax.grad(balanced_final_loss, argnums=2), in_axes=(None, 0, 0, 0))
    cpu = jax.devices()[0].platform == "cpu"
    grad_fn = jax.jit(lambda spec, *a: sweep.per_device(
        functools.partial(per_run, spec), sharding.mesh)(*a),
        static_argnums=0, compiler_options=sweep.CPU_COMPILER_OPTIONS if cpu else None)
    devices = len(jax.devices())
    size = sweep.plan(sw).chunk_size
    size = -(-size // devices) * devices
    chunks = [jax.device_put(jax.tree.map(lambda a, s=start: a[s:s + size], inputs), sharding)
              for start in range(0, sw.size, size)]

    def gradients():
        return np.concatenate([np.asarray(block(grad_fn(spec, *c)).gamma) for c in chunks])

    return gradients, size


def simulate_module():
    return importlib.import_module("ssm_jax.simulate")


# --------------------------------------------------------------------------- roofline


def peak_matmul(size: int, precision: str | None = None):
    """A compiled, warmed-up float32 ``size`` x ``size`` matmul (at ``precision``, default
    JAX's), called without arguments (``2 size^3`` flops per call)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision=precision))
    block(matmul(a, a))
    return lambda: block(matmul(a, a))


def peak_flops(size: int, reps: int = 3, precision: str | None = None) -> float:
    """FLOP/s of the float32 matmul of :func:`peak_matmul`, median of ``reps``."""
    t, _ = median_time(peak_matmul(size, precision), reps)
    return 2 * size ** 3 / t


def roofline(quick: bool) -> dict:
    """Measured peak: a large float32 matmul (FLOP/s) and a large streaming update
    ``y = x + 1`` (bytes read + written per second), median of 5."""
    size = 2048 if quick else 4096
    flops = peak_flops(size, 5)
    length = (1 << 24) if quick else (1 << 26)
    x = jnp.ones((length,), jnp.float32)
    stream = jax.jit(lambda v: v + 1.0)
    block(stream(x))
    t_bw, _ = median_time(lambda: block(stream(x)), 5)
    return {"peak_flops": flops, "peak_bytes_per_s": 2 * 4 * length / t_bw,
            "matmul_size": size, "stream_floats": length}


def flops_bytes(workload: str, sw, sizes, reduced_path: bool, flow_evals=None) -> dict:
    """Analytic matrix-product flops and minimal memory traffic (parameters or reduced
    state read and written once per step, in float32) of what the workload executes:
    ``sizes`` lists ``(runs, n_pad)`` of the compiled groups (one per bucket of ``n``;
    ``runs`` counts padded runs where chunks are padded). ``state_floats`` is that of the
    largest ``n_pad`` (the cache-residency test). ``useful_step_flops`` counts each real
    run's training steps at its own ``n`` (no padding at all)."""
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
    per_point = sw.seed_count
    ns = [sum(class_counts_of(sw.config(i))) for i in range(0, sw.size, per_point)]
    useful = per_point * evals * sum(
        reduced.flops_per_step(k, d, n, reduced_path, groups if reduced_path else None)
        for n in ns)
    if workload == "w3":  # forward + backward (2x forward) of the training steps
        flops, traffic, all_steps, useful = 3 * flops, 3 * traffic, 3 * all_steps, 3 * useful
    return {"flops": float(flops), "step_flops": float(all_steps), "bytes": float(traffic),
            "useful_step_flops": float(useful), "state_floats": largest,
            "groups": [{"runs": int(r), "n_pad": int(n)} for r, n in sizes]}


def executed_sizes(the_plan) -> list[tuple[int, int]]:
    """``(runs, n_pad)`` per compiled group as the sweep executes it: each chunk padded to
    the group's batch (a multiple of the device count)."""
    devices = jax.local_device_count()
    out = []
    for g, group in enumerate(the_plan.groups):
        batch = min(the_plan.chunk_size, len(group.runs))
        batch = -(-batch // devices) * devices
        chunks = sum(1 for c in the_plan.chunks if c.group == g)
        out.append((chunks * batch, group.n_pad))
    return out


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache (Linux sysfs), or None."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        with open(path) as f:
            text = f.read().strip()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KM")) * scale)
    return max(sizes) if sizes else None


def bound_of(work: dict, peak: dict, chunk_size: int) -> dict:
    """The applicable bound of ``work``: if a chunk's working set (``chunk_size`` runs x
    state x 3: state, gradient, intermediates, float32) fits in the last-level cache, DRAM
    bandwidth does not limit the run and the compute peak applies; otherwise the larger of
    the compute time and the DRAM-traffic time (classical roofline). On an accelerator the
    larger of the two."""
    t_compute = work["flops"] / peak["peak_flops"]
    t_memory = work["bytes"] / peak["peak_bytes_per_s"]
    working_set = chunk_size * work["state_floats"] * 4 * 3
    cache = last_level_cache_bytes() if jax.devices()[0].platform == "cpu" else None
    in_cache = cache is not None and working_set <= cache
    bound = "compute" if in_cache or t_compute >= t_memory else "memory"
    return {"bound": bound, "bound_time_s": t_compute if bound == "compute" else t_memory,
            "compute_time_s": t_compute, "memory_time_s": t_memory,
            "working_set_bytes": working_set, "last_level_cache_bytes": cache}


def machine() -> dict:
    from results_file import cpu_name

    dev = jax.devices()[0]
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__,
            "device": getattr(dev, "device_kind", str(dev)), "platform": dev.platform,
            "devices": len(jax.devices()), "python": platform.python_version()}


def machine_text(info: dict) -> str:
    """One line for the results file: the device, the cores and the JAX version."""
    if info["platform"] == "cpu":
        where = f"{info['cpu']}, {info['cores']} cores ({info['devices']} JAX CPU devices)"
    else:
        where = f"{info['devices']} x {info['device']} (host: {info['cpu']})"
    return f"{where}; jax {info['jax']}"
