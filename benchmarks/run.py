"""ssm-jax performance suite: workloads W1-W4 against baselines measured in the same run,
alternating, the machine's roofline (peak matmul FLOP/s and streaming bandwidth), the
measured cuts, and scaling.

    .venv/bin/python benchmarks/run.py            # full suite (about 30 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # smaller workloads, 1 rep: a smoke test
    .venv/bin/python benchmarks/run.py --only roofline,w1,w2 --reps 5

The workloads are defined in ``benchmarks/common.py`` (the paper sweep of 84 runs).

**How ratios are measured.** For each workload the baselines and ssm-jax alternate
``--reps`` times in one run (the order flips every repetition), and the report gives the
fastest of each and the spread (the slowest); a ratio is the fastest baseline over the
fastest ssm-jax. ssm-jax is timed as a user gets it: a fresh process per repetition
(``benchmarks/timed.py``), its defaults (one device per core on a CPU, the default chunks,
an in-memory Dataset), compilation included, with a cold persistent compilation cache (a
new empty ``SSM_JAX_CACHE_DIR`` per repetition; ``--cache off`` turns it off instead).
The same process calls the workload again ("warm": compiled), and a second fresh process
with the now filled cache gives "warm cache" (what a user's second invocation costs).
Baseline (a), eager PyTorch (or scipy for W4), runs in its own process too; baseline (b),
a per-configuration Python loop over a jitted JAX step, in this process (its compilation,
once per problem shape, is measured cold and not scaled). Per-configuration baselines cost
the sum of their configurations, so they are timed on every ``--stride``-th configuration
(default 12: one per ratio) and scaled.

**Outputs.** ``benchmarks/results/run.json`` (``run-<label>.json`` with ``--label``): every
repetition. Unless ``--quick``, the section ``run`` (``run-<label>``) of the committed
results file ``docs/data/benchmarks.json`` (``benchmarks/results_file.py``), from which the
docs' performance page is built, and the README's headline ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# Compilation is part of every in-process measurement here, with no persistent cache (the
# ssm-jax processes this script starts get their own cache folders, see above).
os.environ["SSM_JAX_CACHE_DIR"] = ""
# On a GPU this process shares the device with the ssm-jax processes it starts: it must not
# take most of its memory up front, as JAX does by default. They get the user's setting.
PREALLOCATE = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import results_file  # noqa: E402
from baselines import JaxLoop, scipy_flow, torch_run  # noqa: E402
from common import block, median_time, spread, timed  # noqa: E402

from ssm_jax import reduced, sweep  # noqa: E402

WORKLOADS = ("w1", "w2", "w3", "w4")
PARTS = ("roofline", *WORKLOADS, "cuts", "scaling")
NAMES = {"w1": "W1 squared loss, GD (reduced)", "w2": "W2 cross-entropy, GD",
         "w3": "W3 d(balanced loss)/d(gamma)", "w4": "W4 gradient flow (reduced)"}
TARGETS = {"w1": 10.0, "w2": 5.0}  # issue 19: ratios to eager PyTorch, compilation included


# ------------------------------------------------------------------------ the processes


def ssm_jax_process(workload: str, args, cache_dir: str, *extra: str) -> dict:
    """Run ``benchmarks/timed.py`` in a fresh process with ``SSM_JAX_CACHE_DIR=cache_dir``;
    its JSON, plus ``process_s`` (the whole process, start-up included)."""
    env = {**os.environ, "SSM_JAX_CACHE_DIR": cache_dir}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    if PREALLOCATE is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = PREALLOCATE
    command = [sys.executable, os.path.join(HERE, "timed.py"), workload, *extra]
    if args.quick:
        command.append("--quick")
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = elapsed
    return out


TORCH_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import baselines
runs = [baselines.Run(**{**r, "counts": tuple(r["counts"])}) for r in json.loads(sys.argv[3])]
fn = {"run": baselines.torch_run, "gamma_gradient": baselines.torch_gamma_gradient}[sys.argv[2]]
import torch  # noqa: F401
warm = runs[0].__class__(**{**runs[0].__dict__, "steps": 2})
fn(warm)  # PyTorch's one-time set-up (thread pool, kernels) is left out of its time
start = time.perf_counter()
for r in runs:
    fn(r)
print(json.dumps(time.perf_counter() - start))
"""


def torch_process(kind: str, runs: list) -> float:
    """Time of the PyTorch baseline over ``runs`` in a fresh process (JAX's CPU thread pool
    in this process would otherwise compete with PyTorch's threads), after a two-step run
    that leaves PyTorch's one-time set-up out of the time, as ssm-jax's import is."""
    payload = json.dumps([r.__dict__ for r in runs])
    out = subprocess.run([sys.executable, "-c", TORCH_CHILD, HERE, kind, payload],
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


# -------------------------------------------------------------------------- workloads


def alternate(contenders: dict, reps: int) -> dict[str, list[float]]:
    """Call every contender once per repetition, in order, the order reversed every other
    repetition; each returns a dict of named times. Returns every name's times."""
    times: dict[str, list[float]] = {}
    names = list(contenders)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            for key, value in contenders[name]().items():
                times.setdefault(key, []).append(value)
        print(f"  rep {rep + 1}/{reps}: " + ", ".join(
            f"{key} {values[-1]:.2f}" for key, values in times.items()), file=sys.stderr)
    return times


def ssm_jax_contenders(workload: str, args, state: dict) -> dict:
    """The two ssm-jax processes of a repetition: cold (and warm in the same process),
    then warm cache (a new process reading the cache the first one filled)."""
    def cold():
        state["tmp"] = tempfile.TemporaryDirectory(prefix="ssm-jax-bench-cache-")
        folder = "" if args.cache == "off" else os.path.join(state["tmp"].name, "xla")
        out = ssm_jax_process(workload, args, folder)
        state["cold"] = out
        return {"ssm_jax_cold": out["calls_s"][0], "ssm_jax_warm": out["calls_s"][1],
                "ssm_jax_process": out["process_s"], "ssm_jax_import": out["import_s"]}

    def warm_cache():
        if args.cache == "off":
            return {}
        out = ssm_jax_process(workload, args, os.path.join(state["tmp"].name, "xla"),
                              "--calls", "1")
        state["tmp"].cleanup()
        return {"ssm_jax_warm_cache": out["calls_s"][0]}

    return {"ssm_jax_cold": cold, "ssm_jax_warm_cache": warm_cache}


def jax_loop_contender(runs: list, kind: str):
    """Baseline (b) on ``runs``: cold (caches cleared: one compilation per problem shape)
    and warm, in this process."""
    loop = JaxLoop()
    work = (lambda: [loop.train(r) for r in runs]) if kind == "run" else (
        lambda: [loop.gamma_gradient(r) for r in runs])

    def call():
        jax.clear_caches()
        loop._steps.clear()
        return {"jax_loop_cold": timed(work), "jax_loop_warm": timed(work)}

    return call


def peak_contender(peak: dict):
    size = peak["matmul_size"]
    return lambda: {"peak_flops": common.peak_flops(size, 3)}


def workload(name: str, args, peak: dict) -> dict:
    sw = common.make_sweep(name, args.quick)
    runs = common.baseline_runs(sw)
    the_plan = sweep.plan(sw)
    group = the_plan.groups[0]
    use = reduced.use_reduced(group.spec, sweep_problem(group))
    sizes = common.executed_sizes(the_plan)
    out = {"runs": sw.size, "reduced": use, "chunk_size": the_plan.chunk_size,
           "buckets": the_plan.buckets, "n_pads": [g.n_pad for g in the_plan.groups],
           "commit": results_file.commit(), "date": time.strftime("%Y-%m-%d"),
           "cache": args.cache}
    subset = runs[:: args.stride]
    kind = "gamma_gradient" if name == "w3" else "run"
    state: dict = {}
    contenders = {}
    if name in ("w1", "w2", "w3") and have_torch(args):
        contenders["torch"] = lambda: {"torch": torch_process(kind, subset)}
    if name == "w4":
        cfg = sw.config(0)
        contenders["scipy"] = lambda: {"scipy": timed(lambda: [
            scipy_flow(r, cfg.lr * cfg.steps, cfg.rtol, cfg.atol) for r in subset])}
    contenders.update(ssm_jax_contenders(name, args, state))
    if name != "w4":
        contenders["jax_loop"] = jax_loop_contender(subset, kind)
    contenders["peak"] = peak_contender(peak)
    times = alternate(contenders, args.reps)
    # per-configuration baselines: time is additive; compilation (once per shape) is not
    factor = len(runs) / len(subset)
    for key in ("torch", "scipy"):
        if key in times:
            times[key] = [t * factor for t in times[key]]
    if "jax_loop_cold" in times:
        times["jax_loop"] = [warm * factor + max(cold - warm, 0.0) for cold, warm in
                             zip(times.pop("jax_loop_cold"), times.pop("jax_loop_warm"),
                                 strict=True)]
    peaks = times.pop("peak_flops")  # a rate: the best is the largest
    out["peak_flops_same_run"] = {"best": max(peaks), "worst": min(peaks), "all": peaks}
    out["times"] = {key: spread(values) for key, values in times.items()}
    out["configs_timed"] = {"baselines": len(subset), "of": len(runs)}
    out["devices"] = state["cold"]["devices"]
    fastest = {key: value["fastest"] for key, value in out["times"].items()}
    for base in ("torch", "scipy", "jax_loop"):
        if base in fastest:
            out[f"speedup_vs_{base}"] = fastest[base] / fastest["ssm_jax_cold"]
            if "ssm_jax_warm_cache" in fastest:
                out[f"speedup_vs_{base}_warm_cache"] = (
                    fastest[base] / fastest["ssm_jax_warm_cache"])
    same_run_peak = {**peak, "peak_flops": max(peaks)}
    evals = None
    if name == "w4":
        evals = flow_evals(sw)
        out["vector_field_evals_per_run"] = evals
    out["work"] = common.flops_bytes(name, sw, sizes, use, flow_evals=evals)
    out["roofline"] = roofline_of(out, same_run_peak, fastest["ssm_jax_warm"])
    if "ssm_jax_warm_cache" in fastest:
        out["warm_cache"] = warm_cache_analysis(out, fastest, same_run_peak)
    if name in ("w1", "w2"):
        out.update(agreement(sw, runs, args))
    if name == "w1" and use:
        cfg = sw.config(0)
        k, d = cfg.num_classes, cfg.dim
        groups = reduced.num_groups(group.spec, k)
        out["products_ceiling"] = products_ceiling(
            k, d, groups * d + k, reduced.flops_per_step(k, d, group.n_pad, True, groups),
            cfg.steps, the_plan.chunk_size, args.reps, peak)
        steps = out["work"]["step_flops"]
        ceiling = out["products_ceiling"]["fraction_of_peak"]
        t_best = (steps / ceiling + out["work"]["flops"] - steps) / same_run_peak["peak_flops"]
        out["roofline"]["best_fraction_of_bound"] = out["roofline"]["bound_time_s"] / t_best
    return out


def flow_evals(sw) -> int:
    """Vector-field evaluations per run of W4 (from one in-memory sweep in this process)."""
    ds = sweep.run(sw, progress=False)
    return int(np.asarray(ds["num_vf_evals"]).sum() / sw.size)


def warm_cache_analysis(out: dict, fastest: dict, peak: dict) -> dict:
    """Issue 19, section 1: with a warm cache only the training is left; how close does it
    get to 10x the baseline, and at what fraction of the matmul peak measured in the same
    run (training flops without any padding over the warm-cache time)?"""
    seconds = fastest["ssm_jax_warm_cache"]
    useful = out["work"]["useful_step_flops"]
    result = {"seconds": seconds, "train_flops": useful,
              "percent_of_peak": 100 * useful / (seconds * peak["peak_flops"])}
    base = fastest.get("torch", fastest.get("scipy"))
    if base is not None:
        result.update(speedup=base / seconds, seconds_for_10x=base / 10,
                      percent_of_peak_for_10x=100 * useful / (base / 10 * peak["peak_flops"]))
    return result


def agreement(sw, runs: list, args) -> dict:
    """Checks of the results (not timed): ssm-jax and baseline (b) start from the same
    initialisation, so their balanced accuracies agree at every save point; PyTorch draws
    its own, so final balanced accuracies agree only roughly."""
    ds = sweep.run(sw, progress=False)
    ours = sweep_order(ds, sw)
    loop = JaxLoop()
    theirs = np.stack([loop.train(r) for r in runs[:3]])
    out = {"max_abs_diff_balanced_accuracy_vs_jax_loop":
           float(np.max(np.abs(theirs - ours[:3]))),
           "final_balanced_accuracy_mean": float(np.nanmean(ours[:, -1])),
           "diverged_runs": int(np.asarray(ds["diverged"]).sum())}
    if have_torch(args):
        torch_acc = np.stack([torch_run(r)[0] for r in runs[:3]])
        out["max_abs_diff_final_balanced_accuracy_vs_torch"] = float(
            np.max(np.abs(torch_acc[:, -1] - ours[:3, -1])))
    return out


def sweep_problem(group):
    from ssm_jax.problem import make_problem

    return make_problem((1,) * group.num_classes, group.n_pad, host=True)


def sweep_order(ds, sw) -> np.ndarray:
    """Balanced accuracy (runs in sweep order, saves) from a sweep Dataset."""
    rows = []
    for i in range(sw.size):
        point = sw.point(i)
        sel = {sweep.dim_name(f): v for f, v in point.items() if sweep.dim_name(f) in ds.dims}
        rows.append(np.asarray(ds["balanced_accuracy"].sel(sel)))
    return np.stack(rows)


def roofline_of(out: dict, peak: dict, warm: float) -> dict:
    """Achieved FLOP/s and bytes/s (analytic work / warm time) against the measured peaks,
    and the fraction of the applicable bound (:func:`common.bound_of`)."""
    work = out["work"]
    bound = common.bound_of(work, peak, out["chunk_size"])
    return {"achieved_flops": work["flops"] / warm,
            "achieved_bytes_per_s": work["bytes"] / warm,
            "percent_of_peak_flops": 100 * bound["compute_time_s"] / warm,
            "percent_of_peak_bandwidth": 100 * bound["memory_time_s"] / warm,
            "fraction_of_bound": bound["bound_time_s"] / warm, **bound}


def products_ceiling(k: int, d: int, m: int, step_flops: float, steps: int, chunk: int,
                     reps: int, peak: dict) -> dict:
    """The most XLA's matrix products reach on the shapes of a training step: a loop of
    ``steps`` steps of only the three products of a ``(k x d) (d x m)`` bilinear step
    (``P = W V``, ``P V^T``, ``W^T P``) and the two updates, for one chunk of ``chunk``
    runs split over the local devices as the sweep runs it; no loss, no metrics, no host
    work. ``fraction_of_peak`` is the workload's analytic step flops (``step_flops`` per run
    and step) over this time, against the peak matmul measured next to it (median over
    repetitions): the steps of a workload whose step is these products cannot run closer
    to the compute bound with XLA's matrix products."""
    sharding = sweep.run_sharding()
    devices = len(sharding.mesh.devices.flat)
    runs = -(-chunk // devices) * devices  # as the sweep pads a chunk
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
    size = peak["matmul_size"]
    matmul = common.peak_matmul(size)
    flops = step_flops * runs * steps
    fractions, times = [], []
    for _ in range(max(reps, 5)):  # the peak is measured again next to each repetition
        t_peak = timed(matmul)
        t = timed(lambda: block(fn(W, V)))
        times.append(t)
        fractions.append((flops / t) / (2 * size ** 3 / t_peak))
    return {"shape_k_d_m": [k, d, m], "runs": runs, "steps": steps,
            "seconds": float(np.median(times)), "all_seconds": times,
            "fraction_of_peak": float(np.median(fractions)), "all_fractions": fractions}


# ------------------------------------------------------------------------------- cuts


def reference_plan(sw) -> list:
    """What planning did per run before it worked per point of the non-seed axes: every
    run's configuration, static part and class counts (the reference of the plan cut)."""
    from ssm_jax.simulate import spec_of

    out = []
    for i in range(sw.size):
        cfg = sw.config(i)
        out.append((spec_of(cfg), common.class_counts_of(cfg)))
    return out


def cuts(args) -> dict:
    """Each cut of W1's host time measured on its own, against the way it was done before,
    alternating in the same run (fastest of ``--reps``, the slowest too):

    * ``dataset_new_process``: W1 as a user runs it (fresh process, cold cache), its
      in-memory Dataset built directly, against via a temporary file (chunk files with
      fsync, the netCDF file, read back), which is what ``out=None`` did before;
    * ``dataset_warm``: the same two, compiled, alternating in one process;
    * ``plan_84`` / ``plan_10080``: ``sweep.plan`` (one configuration per point of the
      non-seed axes) against building every run's configuration, static part and counts,
      for W1's 84 runs and a W1 sweep of 480 seeds."""
    reps = args.reps
    out = {}

    def fresh(via_file: bool):
        def call():
            with tempfile.TemporaryDirectory(prefix="ssm-jax-bench-cache-") as tmp:
                folder = "" if args.cache == "off" else os.path.join(tmp, "xla")
                extra = ("--calls", "1", *(("--via-file",) if via_file else ()))
                result = ssm_jax_process("w1", args, folder, *extra)
            return {"via_file" if via_file else "in_memory": result["calls_s"][0]}
        return call

    times = alternate({"in_memory": fresh(False), "via_file": fresh(True)}, reps)
    out["dataset_new_process"] = {k: spread(v) for k, v in times.items()}
    warm = ssm_jax_process("w1", args, "", "--calls", "1", "--alternate", str(max(reps, 3)))
    out["dataset_warm"] = {"in_memory": spread(warm["memory_s"]),
                           "via_file": spread(warm["via_file_s"])}
    for label, seeds in (("plan_84", None), ("plan_10080", 480)):
        sw = common.make_sweep("w1", args.quick, seeds=seeds)
        times = alternate({"per_point": lambda sw=sw: {"per_point": timed(
                               lambda: sweep.plan(sw))},
                           "per_run": lambda sw=sw: {"per_run": timed(
                               lambda: reference_plan(sw))}}, reps)
        out[label] = {k: spread(v) for k, v in times.items()}
        out[label]["runs"] = sw.size
    for entry in out.values():  # before / now, of the fastest
        now, before = ("in_memory", "via_file") if "in_memory" in entry else (
            "per_point", "per_run")
        entry["ratio"] = entry[before]["fastest"] / entry[now]["fastest"]
    return out


# ---------------------------------------------------------------------------- scaling


def scaling(args) -> dict:
    """Marginal warm time per step of one (batched) run, reduced and per-example, against
    n, d, k and batch size: (time of 2S steps - time of S steps) / S, S = 500, squared
    loss, gd, 2 saves; the rest of the time is reported as the fixed (setup) cost."""
    simulate = common.simulate_module()
    from ssm_jax.config import Config

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


def s(times: dict | None, key: str) -> str:
    """``fastest [slowest]`` seconds of ``times[key]``, or empty."""
    if not times or key not in times:
        return ""
    entry = times[key]
    return f"{seconds(entry['fastest'])} [{seconds(entry['slowest'])}]"


def seconds(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def x(value) -> str:
    return "" if value is None else f"{value:.1f}x"


def workloads_table(results: dict) -> dict:
    rows = []
    for key in WORKLOADS:
        if key not in results:
            continue
        r, t = results[key], results[key]["times"]
        base = "torch" if "torch" in t else "scipy" if "scipy" in t else None
        label = {"torch": "PyTorch", "scipy": "scipy RK45"}.get(base, "")
        if key == "w3" and base:
            label += " (finite differences)"
        roof = r["roofline"]
        rows.append([
            NAMES[key], s(t, "ssm_jax_cold"), s(t, "ssm_jax_warm"), s(t, "ssm_jax_warm_cache"),
            f"{s(t, base)} {label}".strip() if base else "n/a", x(r.get(f"speedup_vs_{base}")),
            s(t, "jax_loop") or "n/a", x(r.get("speedup_vs_jax_loop")),
            f"{100 * roof['fraction_of_bound']:.0f}% ({roof['bound']})"])
    reps = results.get("reps", "?")
    return {"caption": f"Seconds: the fastest of {reps} alternating repetitions, the slowest "
                       "in brackets; ratios of the fastest, compilation included (cold "
                       "cache). % of bound: warm time against the roofline bound of the "
                       "workload's analytic work.",
            "columns": ["workload", "ssm-jax, new process, cold cache",
                        "same process, warm", "new process, warm cache",
                        "(a) baseline", "vs (a)", "(b) jitted JAX loop", "vs (b)",
                        "% of bound (warm)"],
            "rows": rows}


def warm_cache_table(results: dict) -> dict | None:
    rows = []
    for key in WORKLOADS:
        w = results.get(key, {}).get("warm_cache")
        if not w or "speedup" not in w:
            continue
        rows.append([NAMES[key], f"{w['seconds']:.2f}", x(w["speedup"]),
                     f"{w['train_flops'] / 1e12:.3f}", f"{w['percent_of_peak']:.0f}%",
                     f"{w['seconds_for_10x']:.2f}", f"{w['percent_of_peak_for_10x']:.0f}%"])
    if not rows:
        return None
    return {"caption": "With a warm compilation cache (a second invocation), against the "
                       "same run's baseline and matmul peak: training flops are each run's "
                       "steps at its own n, without padding, saves or setup.",
            "columns": ["workload", "warm cache (s)", "vs (a)", "training TFLOP",
                        "% of peak", "10x (a) needs (s)", "% of peak for 10x"],
            "rows": rows}


def cuts_table(results: dict) -> dict | None:
    c = results.get("cuts")
    if not c:
        return None
    names = {"dataset_new_process": ("W1 Dataset in memory, new process, cold cache",
                                     "in_memory", "via_file", "via a temporary file"),
             "dataset_warm": ("W1 Dataset in memory, warm, one process", "in_memory",
                              "via_file", "via a temporary file"),
             "plan_84": ("plan of W1 ({runs:,} runs)", "per_point", "per_run",
                         "every run's configuration"),
             "plan_10080": ("plan of a W1 sweep of {runs:,} runs", "per_point", "per_run",
                            "every run's configuration")}
    rows = []
    for key, (label, new, old, old_label) in names.items():
        if key in c:
            rows.append([label.format(runs=c[key].get("runs", 0)), s(c[key], new),
                         f"{s(c[key], old)} ({old_label})", f"{c[key]['ratio']:.2f}x"])
    return {"caption": "Each cut against the way it was done before, alternating in one "
                       "run (seconds: the fastest, the slowest in brackets).",
            "columns": ["cut", "now (s)", "before (s)", "before / now"], "rows": rows}


def notes(results: dict) -> list[str]:
    out = []
    peak = results.get("roofline")
    if peak:
        out.append(f"Peaks measured in the run: {peak['peak_flops'] / 1e9:.1f} GFLOP/s "
                   f"(float32 matmul {peak['matmul_size']}^2, JAX's default precision) and "
                   f"{peak['peak_bytes_per_s'] / 1e9:.1f} GB/s (streaming y = x + 1); each "
                   "workload's ratios use the fastest peak measured between its "
                   "repetitions.")
    for key, target in TARGETS.items():
        r = results.get(key, {})
        if "speedup_vs_torch" in r:
            met = "met" if r["speedup_vs_torch"] >= target else "not met"
            out.append(f"{key.upper()} is {r['speedup_vs_torch']:.1f}x eager PyTorch "
                       f"(target >= {target:.0f}x: {met}).")
    ceiling = results.get("w1", {}).get("products_ceiling")
    if ceiling and "best_fraction_of_bound" in results["w1"]["roofline"]:
        k, d, m = ceiling["shape_k_d_m"]
        out.append(
            f"Ceiling of W1: a loop of only its step's three matrix products ({k} x {d} "
            f"times {d} x {m}, and the two of the gradient; {ceiling['runs']} runs split over "
            f"the devices, {ceiling['steps']} steps) reaches "
            f"{100 * ceiling['fraction_of_peak']:.0f}% of the peak matmul measured next to "
            f"it; with its steps at that rate and everything else at the peak, W1 would run "
            f"at {100 * results['w1']['roofline']['best_fraction_of_bound']:.0f}% of its "
            "bound.")
    for key in ("w1", "w2"):
        r = results.get(key, {})
        if "max_abs_diff_balanced_accuracy_vs_jax_loop" in r:
            out.append(f"{key.upper()}: largest difference of the balanced accuracies from "
                       f"baseline (b) (same initialisation), over every save point: "
                       f"{r['max_abs_diff_balanced_accuracy_vs_jax_loop']:.2g}.")
    stale = sorted({results[k]["commit"] for k in WORKLOADS if k in results}
                   - {results_file.commit()})
    if stale:
        out.append(f"Some workloads were measured at earlier commits ({', '.join(stale)}); "
                   "see benchmarks/results/.")
    return out


def publish(results: dict, args, argv: list[str]) -> None:
    name = f"run-{args.label}" if args.label else "run"
    tables = {"workloads": workloads_table(results)}
    for table_id, table in (("warm_cache", warm_cache_table(results)),
                            ("cuts", cuts_table(results))):
        if table is not None:
            tables[table_id] = table
    if not tables["workloads"]["rows"]:
        del tables["workloads"]
    headline = []
    if not args.label:
        for key in ("w1", "w2"):
            r = results.get(key, {})
            if "speedup_vs_torch" in r:
                headline.append({"label": key.upper(),
                                 "text": f"{r['speedup_vs_torch']:.1f}x eager PyTorch"})
    section = {**results_file.provenance(
        " ".join(["python", "benchmarks/run.py", *argv]), common.machine_text(
            results["machine"]), "W1-W4 against eager PyTorch and a jitted JAX loop"
        + (f" ({args.label})" if args.label else "")),
        "notes": notes(results), "tables": tables}
    if headline:
        section["headline"] = headline
        section["headline_context"] = ("each timed as a user runs it, compilation included "
                                       "(cold cache)")
    results_file.write_section(name, section)
    if headline:
        results_file.update_readme(results_file.load())
    print(f"wrote section {name!r} of {results_file.PATH}", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small workloads, 1 rep, nothing published: a smoke test")
    parser.add_argument("--reps", type=int, default=None,
                        help="alternating repetitions (default 3; 1 with --quick)")
    parser.add_argument("--only", default="roofline,w1,w2,w3,w4,cuts,scaling",
                        help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--stride", type=int, default=None,
                        help="the per-configuration baselines time every stride-th "
                             "configuration and scale by stride (default 12: one per ratio, "
                             "gamma 0, seed 0; 3 with --quick)")
    parser.add_argument("--cache", choices=("cold", "off"), default="cold",
                        help="the ssm-jax processes' compilation cache: a new empty folder "
                             "per repetition (cold, default) or none (off)")
    parser.add_argument("--label", default="", help="run-<label>: e.g. gpu")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the PyTorch baseline (a) (e.g. on a GPU machine, where "
                             "(a) is still an eager CPU loop)")
    parser.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1,
                        help="host devices this process's CPU is split into (the in-process "
                             "baselines and ceilings; ssm-jax's processes use the default, "
                             "one per core)")
    parser.add_argument("--publish", action=argparse.BooleanOptionalAction, default=None,
                        help="write the results file docs/data/benchmarks.json and the "
                             "README's headline (default: yes, except with --quick)")
    args = parser.parse_args(argv)
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before the backend starts
    args.reps = args.reps or (1 if args.quick else 3)
    args.stride = args.stride or (3 if args.quick else 12)
    publish_it = (not args.quick) if args.publish is None else args.publish
    parts = args.only.split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; parts are {', '.join(PARTS)}")
    name = f"run-{args.label}" if args.label else "run"
    path = results_file.raw_path(name)
    results = {}
    if os.path.exists(path):  # keep parts measured earlier (e.g. --only w3)
        with open(path) as f:
            results = json.load(f)
        if results.get("quick") != args.quick:
            results = {}
    results.update({"machine": common.machine(), "reps": args.reps, "quick": args.quick,
                    "stride": args.stride, "cache": args.cache})
    peak = results.get("roofline")
    if "roofline" in parts or peak is None:
        print("roofline ...", file=sys.stderr)
        peak = results["roofline"] = common.roofline(args.quick)
    for key in WORKLOADS:
        if key in parts:
            print(f"{key} ...", file=sys.stderr)
            results[key] = workload(key, args, peak)
            results_file.save_raw(name, results)
    if "cuts" in parts:
        print("cuts ...", file=sys.stderr)
        results["cuts"] = cuts(args)
    if "scaling" in parts:
        print("scaling ...", file=sys.stderr)
        results["scaling"] = scaling(args)
        plot_scaling(results["scaling"], os.path.join(results_file.RAW, "scaling.png"))
    results_file.save_raw(name, results)
    for table in (workloads_table(results), warm_cache_table(results), cuts_table(results)):
        if table and table["rows"]:
            print(markdown_table(table), file=sys.stderr)
    for line in notes(results):
        print(f"* {line}", file=sys.stderr)
    if publish_it:
        publish(results, args, argv)
    return 0


def markdown_table(table: dict) -> str:
    lines = ["| " + " | ".join(table["columns"]) + " |", "|" + " --- |" * len(table["columns"])]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(["", table.get("caption", ""), "", *lines, ""])


if __name__ == "__main__":
    sys.exit(main())
