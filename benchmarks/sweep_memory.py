"""Sweep memory and throughput, as ratios against baselines measured in the same run.

1. Peak RSS (``ru_maxrss`` of a fresh subprocess) of a sweep and of a 10x larger one, same
   chunk size: memory must stay bounded (goal: ratio <= 1.5).
2. Runs per second of the vmapped, chunked sweep against a Python loop of ``simulate``
   calls over the same configurations (compilation excluded from both).

    .venv/bin/python benchmarks/sweep_memory.py [--runs 200] [--saves 201]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, resource, sys, time
from ssm_jax import Config, sweep
runs, saves, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = Config(k_major=5, k_minor=5, n_major=20, dim=8, steps=saves - 1, saves=saves,
              lr=2.0, weighting="power")
sw = sweep.make_sweep(base, {"ratio": [2.0, 5.0, 10.0, 20.0], "gamma": [0.0, 0.5, 1.0]},
                      seeds=max(1, runs // 12))
start = time.perf_counter()
ds = sweep.run(sw, out, chunk_size=48, progress=False, lazy=True)
elapsed = time.perf_counter() - start
print(json.dumps({"runs": sw.size, "seconds": elapsed, "result_bytes": int(ds.nbytes),
                  "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def child(runs: int, saves: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", CHILD, str(runs), str(saves),
                               os.path.join(tmp, "s.nc")], capture_output=True, text=True,
                              check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(saves: int, runs: int) -> dict:
    import jax

    from ssm_jax import Config, simulate, sweep

    base = Config(k_major=5, k_minor=5, n_major=20, dim=8, steps=saves - 1, saves=saves,
                  lr=2.0, weighting="power")
    sw = sweep.make_sweep(base, {"ratio": [2.0, 5.0, 10.0, 20.0], "gamma": [0.0, 0.5, 1.0]},
                          seeds=max(1, runs // 12))
    sweep.run(sw, chunk_size=48, progress=False)  # compile
    start = time.perf_counter()
    sweep.run(sw, chunk_size=48, progress=False)
    swept = time.perf_counter() - start
    for index in range(sw.size):  # compile every shape of the loop first
        simulate(sw.config(index))
    start = time.perf_counter()
    for index in range(sw.size):
        jax.block_until_ready(simulate(sw.config(index)).trajectory.loss)
    looped = time.perf_counter() - start
    return {"runs": sw.size, "sweep_runs_per_s": sw.size / swept,
            "loop_runs_per_s": sw.size / looped, "speedup": looped / swept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--saves", type=int, default=201)
    args = parser.parse_args()
    small = child(args.runs, args.saves)
    large = child(10 * args.runs, args.saves)
    print(f"peak RSS: {small['runs']} runs {small['max_rss_kib'] / 1024:.0f} MiB "
          f"(results {small['result_bytes'] / 2**20:.1f} MiB); {large['runs']} runs "
          f"{large['max_rss_kib'] / 1024:.0f} MiB (results {large['result_bytes'] / 2**20:.1f} "
          f"MiB); ratio {large['max_rss_kib'] / small['max_rss_kib']:.3f} (goal <= 1.5)")
    print(f"sweep speed incl. file writing: {small['runs'] / small['seconds']:.1f} and "
          f"{large['runs'] / large['seconds']:.1f} runs/s (first call, compilation included)")
    speed = throughput(args.saves, args.runs)
    print(f"vmapped sweep {speed['sweep_runs_per_s']:.1f} runs/s vs loop of simulate "
          f"{speed['loop_runs_per_s']:.1f} runs/s over {speed['runs']} runs: "
          f"{speed['speedup']:.1f}x")


if __name__ == "__main__":
    main()
