"""Sweep throughput: run-steps per second against the number of runs in one sweep, from 84
to 100,000, for the W1 (squared loss, the reduced simulator) and W2 (cross-entropy, per
example) shapes of ``benchmarks/common.py``, with the flop and byte bound of each point.

    python benchmarks/throughput.py                   # this CPU: 30-40 minutes on 2 cores
    python benchmarks/throughput.py --quick           # a smoke test; nothing published
    bash benchmarks/gpu.sh                            # the same on an NVIDIA GPU, and more

On a 2-core CPU most of the time goes to the two 100,002-run sweeps, where each run costs a
few milliseconds besides its steps (``--seeds 4,16,48,160,476`` stops at 9,996 runs, in
about 5 minutes).

A point is the paper sweep (7 ratios x 3 gammas) with as many seeds as give its number of
runs (84 = 4 seeds ... 100,002 = 4,762 seeds), run by ``sweep.run`` with its defaults (an
in-memory Dataset; chunks: on a CPU 2 runs per device, on a GPU as many as fit its memory)
except one padded n per sweep (``buckets=1``, so that a point compiles one program). Each
point is compiled first on a smaller sweep of the same shapes (chunk size included), then
timed warm (the fastest of ``--reps``; once above 10,080 runs), host work included:
planning, inputs, the Dataset. So that every point takes bounded time, a point of R runs
takes ``--run-steps / R`` steps (a multiple of 20, from 20 to 2,000; ``--steps N`` fixes
them), and run-steps/s counts ``R x steps / time``; with few steps the per-run set-up
(initial features, the reduced simulator's factorisation, save points, host work) weighs
more, so one sweep (``--marginal-seeds``) is also run at twice its steps, which separates
the steps' own throughput from what each run costs besides them.

Work is counted as ``benchmarks/run.py`` counts it (``common.flops_bytes``: matrix-product
flops executed, padding included; minimal memory traffic), the bound of a point is the
larger of flops / peak FLOP/s and bytes / peak bandwidth (or the compute time alone when a
chunk's working set fits the CPU's last-level cache), peaks measured in the same run (the
float32 matmul at the precision the sweep uses). "Saturates at" is the smallest sweep
whose run-steps/s is within 10% of the largest measured.

``--precisions highest,default`` measures every point at each matmul precision (on a CPU
they are the same); ``--compare-precision`` runs the 84-run sweeps of W1 and W2 in float32
at each precision and in float64 from the same initial parameters, and compares the half
times and learn times with the float64 reference (relative tolerance ``--tolerance``,
default the tests' float32 tolerance, 1e-5).

Writes ``benchmarks/results/throughput[-<label>].json`` and, unless ``--quick``, the section
``throughput[-<label>]`` of ``docs/data/benchmarks.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("SSM_JAX_CACHE_DIR", "")  # warm timings: a cache would change nothing

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import results_file  # noqa: E402
from common import POINTS, SAVE_EVERY, timed  # noqa: E402

from ssm_jax import reduced, sweep  # noqa: E402
from ssm_jax.problem import make_problem  # noqa: E402

SEEDS = [4, 16, 48, 160, 476, 1600, 4762]  # 84 ... 100,002 runs
QUICK_SEEDS = [4, 16]
LOSS = {"w1": "mse", "w2": "ce"}
NAMES = {"w1": "W1 (squared loss, reduced)", "w2": "W2 (cross-entropy, per example)"}
# issue 19, section 3: on an NVIDIA GPU, 10,000 W1 runs of 2,000 steps in under 5 s warm,
# and 10,000 W2 runs within 20% of the float32 matmul bound of their flops
W1_TARGET_S = 5.0
W2_TARGET_FRACTION = 1 / 1.2
TARGET_RUNS = 10_000
LARGE = 10_080  # points with more runs are timed once (--reps applies up to here)


def steps_for(runs: int, args) -> int:
    if args.steps:
        return args.steps
    steps = int(args.run_steps // runs) // SAVE_EVERY * SAVE_EVERY
    return int(min(max(steps, SAVE_EVERY), 2000))


def make(workload: str, seeds: int, steps: int, x64: bool = False, saves: int | None = None):
    base = common.base_config(LOSS[workload], steps, x64=x64)
    if saves is not None:
        base = base.replace(saves=saves)
    return sweep.make_sweep(base, common.axes(False), seeds=seeds)


def point(workload: str, seeds: int, precision: str, args, peaks: dict,
          steps: int | None = None, saves: int | None = None) -> dict:
    runs = seeds * POINTS
    steps = steps or steps_for(runs, args)
    reps = args.reps if runs <= LARGE else 1
    sw = make(workload, seeds, steps, saves=saves)
    plan_s = timed(lambda: sweep.plan(sw, buckets=1, matmul_precision=precision))
    the_plan = sweep.plan(sw, buckets=1, matmul_precision=precision)
    options = dict(chunk_size=the_plan.chunk_size, buckets=1, progress=False,
                   matmul_precision=precision)
    # compile on a smaller sweep with the same program (same shapes and chunk batch)
    warm_seeds = min(seeds, max(1, -(-the_plan.chunk_size // POINTS)))
    compile_s = timed(lambda: sweep.run(make(workload, warm_seeds, steps, saves=saves),
                                        **options))
    times = [timed(lambda: sweep.run(sw, **options)) for _ in range(reps)]
    seconds = min(times)
    group = the_plan.groups[0]
    use = reduced.use_reduced(group.spec, make_problem((1,) * group.num_classes, group.n_pad,
                                                       host=True))
    work = common.flops_bytes(workload, sw, common.executed_sizes(the_plan), use)
    peak = {"peak_flops": peaks[precision], "peak_bytes_per_s": peaks["bytes_per_s"]}
    bound = common.bound_of(work, peak, the_plan.chunk_size)
    row = {"workload": workload, "precision": precision, "runs": runs, "seeds": seeds,
           "steps": steps, "chunk_size": the_plan.chunk_size, "chunks": len(the_plan.chunks),
           "reduced": use, "seconds": seconds, "all_seconds": times, "plan_s": plan_s,
           "first_call_s": compile_s, "run_steps_per_s": runs * steps / seconds,
           "runs_per_s": runs / seconds,
           "flops_per_s": work["flops"] / seconds, "bytes_per_s": work["bytes"] / seconds,
           "work": work, **bound, "fraction_of_bound": bound["bound_time_s"] / seconds}
    print(f"  {workload} {precision} {runs} runs x {steps} steps: {seconds:.2f} s, "
          f"{row['run_steps_per_s']:.3g} run-steps/s, "
          f"{100 * row['fraction_of_bound']:.0f}% of its {bound['bound']} bound",
          file=sys.stderr)
    return row


def marginal(workload: str, seeds: int, precision: str, args, peaks: dict) -> dict:
    """One sweep at S and at 2S steps (same save points): the steps' own throughput,
    ``runs x S / (t(2S) - t(S))``, and what each run costs besides its steps (set-up:
    initial features, the reduced simulator's factorisation; save points; host work)."""
    runs = seeds * POINTS
    steps = steps_for(runs, args)
    saves = steps // SAVE_EVERY + 1
    short, long = (point(workload, seeds, precision, args, peaks, steps=length, saves=saves)
                   for length in (steps, 2 * steps))
    extra = max(long["seconds"] - short["seconds"], 1e-9)
    return {"workload": workload, "precision": precision, "runs": runs, "steps": steps,
            "seconds": [short["seconds"], long["seconds"]],
            "run_steps_per_s": runs * steps / extra,
            "fixed_s_per_run": max(short["seconds"] - extra, 0.0) / runs,
            "step_flops_per_s": (long["work"]["step_flops"] - short["work"]["step_flops"])
            / extra}


def saturation(rows: list[dict]) -> list[dict]:
    """Per workload and precision: the largest run-steps/s and the smallest sweep within
    10% of it."""
    out = []
    for key in sorted({(r["workload"], r["precision"]) for r in rows}):
        mine = sorted((r for r in rows if (r["workload"], r["precision"]) == key),
                      key=lambda r: r["runs"])
        best = max(r["run_steps_per_s"] for r in mine)
        at = next(r for r in mine if r["run_steps_per_s"] >= 0.9 * best)
        out.append({"workload": key[0], "precision": key[1], "best_run_steps_per_s": best,
                    "saturates_at_runs": at["runs"], "steps_there": at["steps"],
                    "largest_runs": mine[-1]["runs"]})
    return out


def targets(rows: list[dict]) -> list[str]:
    """The GPU targets of issue 19 against the points nearest 10,000 runs of 2,000 steps."""
    out = []
    for row in rows:
        if abs(row["runs"] - TARGET_RUNS) > POINTS or row["steps"] != 2000:
            continue
        if row["workload"] == "w1":
            met = "met" if row["seconds"] < W1_TARGET_S else "not met"
            out.append(f"{row['runs']:,} W1 runs of 2,000 steps ({row['precision']}): "
                       f"{row['seconds']:.2f} s warm (target < {W1_TARGET_S:.0f} s: {met}).")
        else:
            fraction = row["compute_time_s"] / row["seconds"]
            met = "met" if fraction >= W2_TARGET_FRACTION else "not met"
            out.append(f"{row['runs']:,} W2 runs of 2,000 steps ({row['precision']}): "
                       f"{row['seconds']:.2f} s warm, {100 * fraction:.0f}% of the float32 "
                       f"matmul bound of their flops (target: within 20%: {met}).")
    return out


@contextlib.contextmanager
def float32_initialisation():
    """Inside: runs draw their initial parameters in float32 and convert them to their
    own precision, so that a float64 run starts exactly where the float32 run of the same
    seed starts (JAX draws different numbers in float64), and the comparison measures the
    arithmetic, not two random draws. Only for the float64 reference of this script."""
    simulate = common.simulate_module()
    original = simulate.initial_params

    def single(a):
        return a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a

    def initial_params(spec, problem, numeric, omega, key):
        params = original(spec, *jax.tree.map(single, (problem, numeric, omega)), key)
        return jax.tree.map(lambda a: a.astype(numeric.lr.dtype), params)

    simulate.initial_params = initial_params
    jax.clear_caches()
    try:
        yield
    finally:
        simulate.initial_params = original
        jax.clear_caches()


def compare_precision(args) -> list[dict]:
    """Half and learn times of the 84-run W1 and W2 sweeps in float32 at each precision
    against the float64 reference (started from the same float32 initial parameters):
    the largest difference over runs and classes where both are reached, relative to the
    reference time (or one save interval where that is larger: a time of 0 has no relative
    error) and in save intervals, and the classes reached in one and not the other."""
    out = []
    seeds, steps = (1, 400) if args.quick else (4, 2000)
    for workload in ("w1", "w2"):
        with float32_initialisation():
            reference = sweep.run(make(workload, seeds, steps, x64=True), progress=False)
        for precision in args.precisions:
            ds = sweep.run(make(workload, seeds, steps), progress=False,
                           matmul_precision=precision)
            row = {"workload": workload, "precision": precision, "runs": seeds * POINTS,
                   "steps": steps, "tolerance": args.tolerance}
            interval = float(ds["t"].values.reshape(-1, ds.sizes["save"])[0, 1])
            for name in ("half_time", "learn_time"):
                ref = np.asarray(reference[name].values, float)
                got = np.asarray(ds[name].values, float)
                both = np.isfinite(ref) & np.isfinite(got)
                diff = np.abs(got - ref)[both]
                rel = diff / np.maximum(np.abs(ref[both]), interval)
                row[name] = {"max_rel": float(rel.max()) if rel.size else 0.0,
                             "max_save_intervals": float(diff.max() / interval)
                             if diff.size else 0.0,
                             "reached_differently": int((np.isfinite(ref)
                                                         != np.isfinite(got)).sum())}
            row["within_tolerance"] = all(
                row[n]["max_rel"] <= args.tolerance and row[n]["reached_differently"] == 0
                for n in ("half_time", "learn_time"))
            out.append(row)
            print(f"  precision {workload} {precision}: half_time max rel "
                  f"{row['half_time']['max_rel']:.2g}, learn_time max rel "
                  f"{row['learn_time']['max_rel']:.2g}", file=sys.stderr)
    return out


def points_table(rows: list[dict]) -> dict:
    return {"caption": "Warm sweeps (the fastest of the repetitions), host work included. "
                       "Bounds: the executed flops over the peak matmul, the minimal bytes "
                       "over the streaming bandwidth, both measured in the same run.",
            "columns": ["workload", "precision", "runs", "steps", "chunk", "time (s)",
                        "runs/s", "run-steps/s", "GFLOP/s", "GB/s", "flop bound (s)",
                        "byte bound (s)", "% of bound"],
            "rows": [[NAMES[r["workload"]], r["precision"], f"{r['runs']:,}", r["steps"],
                      r["chunk_size"], f"{r['seconds']:.2f}", f"{r['runs_per_s']:.3g}",
                      f"{r['run_steps_per_s']:.3g}",
                      f"{r['flops_per_s'] / 1e9:.1f}", f"{r['bytes_per_s'] / 1e9:.2f}",
                      f"{r['compute_time_s']:.3g}", f"{r['memory_time_s']:.3g}",
                      f"{100 * r['fraction_of_bound']:.0f}% ({r['bound']})"] for r in rows]}


def marginal_table(rows: list[dict]) -> dict:
    return {"caption": "The same sweep at S and 2S steps (same save points): the steps' own "
                       "throughput, and what each run costs besides its steps.",
            "columns": ["workload", "precision", "runs", "S", "time at S, 2S (s)",
                        "run-steps/s of the steps", "step GFLOP/s", "other cost per run (ms)"],
            "rows": [[NAMES[r["workload"]], r["precision"], f"{r['runs']:,}", r["steps"],
                      f"{r['seconds'][0]:.2f}, {r['seconds'][1]:.2f}",
                      f"{r['run_steps_per_s']:.3g}", f"{r['step_flops_per_s'] / 1e9:.1f}",
                      f"{1e3 * r['fixed_s_per_run']:.2f}"] for r in rows]}


def saturation_table(rows: list[dict]) -> dict:
    return {"columns": ["workload", "precision", "largest run-steps/s", "saturates at (runs)",
                        "steps there", "largest sweep (runs)"],
            "rows": [[NAMES[r["workload"]], r["precision"], f"{r['best_run_steps_per_s']:.3g}",
                      f"{r['saturates_at_runs']:,}", r["steps_there"],
                      f"{r['largest_runs']:,}"] for r in rows]}


def precision_table(rows: list[dict]) -> dict:
    return {"caption": "Float32 sweeps at each matmul precision against float64 (the 84-run "
                       "sweeps): the largest relative difference where both reach the "
                       "threshold, the same in save intervals, and the classes that reach "
                       "it in one and not the other.",
            "columns": ["workload", "precision", "half_time max rel", "(save intervals)",
                        "learn_time max rel", "(save intervals)", "reached differently",
                        "within tolerance"],
            "rows": [[NAMES[r["workload"]], r["precision"], f"{r['half_time']['max_rel']:.2g}",
                      f"{r['half_time']['max_save_intervals']:.2g}",
                      f"{r['learn_time']['max_rel']:.2g}",
                      f"{r['learn_time']['max_save_intervals']:.2g}",
                      r["half_time"]["reached_differently"]
                      + r["learn_time"]["reached_differently"],
                      f"{'yes' if r['within_tolerance'] else 'no'} (rtol {r['tolerance']:g})"]
                     for r in rows]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="two small sweeps per workload, few steps; nothing published")
    parser.add_argument("--workloads", default="w1,w2")
    parser.add_argument("--seeds", default=None,
                        help="seeds per point, comma-separated (runs = 21 x seeds; default "
                             f"{','.join(map(str, SEEDS))})")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of every point (default: from --run-steps)")
    parser.add_argument("--run-steps", type=float, default=None,
                        help="runs x steps of a point, which sets its steps (default "
                             "168,000 = W1's 84 x 2,000; 16,800 with --quick)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls per point of "
                        f"up to {LARGE:,} runs (larger ones: 1) (default 2; 1 with --quick)")
    parser.add_argument("--marginal-seeds", type=int, default=None,
                        help="seeds of the sweep also run at twice its steps, to separate "
                             "the steps' throughput from the rest (default 48: 1,008 runs; "
                             "4 with --quick; 0: none)")
    parser.add_argument("--precisions", default=sweep.DEFAULT_MATMUL_PRECISION,
                        help="matmul precisions to measure each point at, e.g. "
                             "highest,default")
    parser.add_argument("--compare-precision", action="store_true",
                        help="compare half/learn times at each precision with float64")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="relative tolerance of --compare-precision (default 1e-5, the "
                             "tests' float32 tolerance against float64)")
    parser.add_argument("--label", default="", help="throughput-<label>: e.g. gpu")
    parser.add_argument("--publish", action=argparse.BooleanOptionalAction, default=None,
                        help="write the section of docs/data/benchmarks.json (default: "
                             "yes, except with --quick)")
    args = parser.parse_args(argv)
    args.precisions = args.precisions.split(",")
    for precision in args.precisions:
        sweep.resolve_precision(precision)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else (
        QUICK_SEEDS if args.quick else SEEDS)
    args.run_steps = args.run_steps or (16_800 if args.quick else 168_000)
    args.reps = args.reps or (1 if args.quick else 2)
    if args.marginal_seeds is None:
        args.marginal_seeds = 4 if args.quick else 48
    publish = (not args.quick) if args.publish is None else args.publish
    info = common.machine()
    size = 2048 if args.quick else 4096
    roof = common.roofline(args.quick)
    peaks = {"bytes_per_s": roof["peak_bytes_per_s"], "matmul_size": size}
    for precision in dict.fromkeys([*args.precisions, "highest"]):
        peaks[precision] = common.peak_flops(size, 5, None if precision == "default"
                                             else precision)
    print(f"peaks: {', '.join(f'{k} {v:.3g}' for k, v in peaks.items())}", file=sys.stderr)
    rows, margins = [], []
    for workload in args.workloads.split(","):
        for precision in args.precisions:
            for n in seeds:
                rows.append(point(workload, n, precision, args, peaks))
            if args.marginal_seeds:
                margins.append(marginal(workload, args.marginal_seeds, precision, args, peaks))
    results = {"machine": info, "peaks": peaks, "points": rows, "marginal": margins,
               "saturation": saturation(rows), "commit": results_file.commit(),
               "date": time.strftime("%Y-%m-%d"), "args": vars(args)}
    if args.compare_precision:
        results["precision"] = compare_precision(args)
    name = f"throughput-{args.label}" if args.label else "throughput"
    results_file.save_raw(name, results)
    tables = {"points": points_table(rows), "saturation": saturation_table(
        results["saturation"])}
    if margins:
        tables["marginal"] = marginal_table(margins)
    if "precision" in results:
        tables["precision"] = precision_table(results["precision"])
    notes = [f"Peaks measured in the run: {peaks['highest'] / 1e9:.1f} GFLOP/s (float32 "
             f"matmul {size}^2, precision highest), "
             + (f"{peaks['default'] / 1e9:.1f} GFLOP/s at JAX's default precision, "
                if "default" in peaks else "")
             + f"{peaks['bytes_per_s'] / 1e9:.1f} GB/s (streaming)."]
    notes += [f"{NAMES[s['workload']]} ({s['precision']}): at most "
              f"{s['best_run_steps_per_s']:.3g} run-steps/s; within 10% of it from "
              f"{s['saturates_at_runs']:,} runs ({s['steps_there']} steps) on."
              for s in results["saturation"]]
    notes += [f"{NAMES[m['workload']]} ({m['precision']}), {m['runs']:,} runs: the steps "
              f"alone run at {m['run_steps_per_s']:.3g} run-steps/s; everything else costs "
              f"{1e3 * m['fixed_s_per_run']:.2f} ms per run." for m in margins]
    notes += targets(rows)
    for line in notes:
        print(f"* {line}", file=sys.stderr)
    if publish:
        title = "Sweep throughput against the number of runs" + (
            f" ({args.label})" if args.label else "")
        section = {**results_file.provenance(
            " ".join(["python", "benchmarks/throughput.py", *argv]), common.machine_text(info),
            title), "notes": notes, "tables": tables}
        results_file.write_section(name, section)
        print(f"wrote section {name!r} of {results_file.PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
