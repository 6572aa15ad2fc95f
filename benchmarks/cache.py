"""The persistent compilation cache, as a user sees it: each command's second invocation
against its first with an empty cache folder, measured in one run.

Each repetition gives every command a new empty folder (``SSM_JAX_CACHE_DIR``), runs it
once (cold: every program compiled and written) and again (warm: read back). The commands
run in fresh processes, so the times include Python and JAX's start-up, as a user's do
(``ssm-jax --help`` alone, the floor no cache removes, is measured too). Reported: the
fastest of each and the spread, and warm / cold of the fastest.

    python benchmarks/cache.py [--reps N] [--only simulate,demo,sweep] [--no-publish]

writes ``benchmarks/results/cache.json``, prints a table and writes the section ``cache``
of the committed results file ``docs/data/benchmarks.json`` (``benchmarks/results_file.py``),
from which the docs' performance page is built.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SSM_JAX = [sys.executable, "-m", "ssm_jax"]
# A W1-shaped sweep (squared loss, 12 ratio x gamma points, 2 seeds), repeated to a new file.
SWEEP = ["sweep", "--ratio", "1,2,5,10", "--weighting", "power", "--gamma", "0,0.5,1",
         "--seeds", "2", "--no-progress"]
COMMANDS = {
    "simulate": lambda out: ["simulate"],
    "demo": lambda out: ["demo", "--out", out],
    "sweep": lambda out: [*SWEEP, "--out", os.path.join(out, "sweep.nc")],
}


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def measure(name: str, reps: int) -> dict:
    cold, warm = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="ssm-jax-cache-bench-") as tmp:
            env = {**os.environ, "SSM_JAX_CACHE_DIR": os.path.join(tmp, "xla")}
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            for times, run in ((cold, "cold"), (warm, "warm")):
                out = os.path.join(tmp, run)
                times.append(timed([*SSM_JAX, *COMMANDS[name](out)], env))
    return {"cold_s": cold, "warm_s": warm, "warm_over_cold": min(warm) / min(cold)}


TARGETS = {"simulate": "<= 0.40", "demo": "<= 0.50"}  # warm / cold
LABELS = {"simulate": "`ssm-jax simulate` (defaults)", "demo": "`ssm-jax demo`",
          "sweep": "`ssm-jax sweep` (12 points x 2 seeds, repeated to a new file)"}


def publish(results: dict, names: list[str]) -> None:
    """The section ``cache`` of the results file: one row per command."""
    import results_file

    def cell(xs):
        return f"{min(xs):.2f} [{max(xs):.2f}]"

    rows = [[LABELS[n], cell(results[n]["cold_s"]), cell(results[n]["warm_s"]),
             f"{results[n]['warm_over_cold']:.2f}", TARGETS.get(n, "-")] for n in names]
    section = {
        **results_file.provenance(results["command"], results["machine"],
                                  "The persistent compilation cache"),
        "notes": [f"Each command in a fresh process, once with an empty cache folder (cold) "
                  f"and once more (warm); the fastest of {results['reps']} pairs, the "
                  "slowest in brackets.",
                  f"In the same run `ssm-jax --help`, which compiles nothing, took "
                  f"{results['help_s']:.2f} s."],
        "tables": {"commands": {"columns": ["command", "cold (s)", "warm (s)", "warm / cold",
                                            "target"], "rows": rows}}}
    results_file.write_section("cache", section)
    print(f"wrote section 'cache' of {results_file.PATH}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="cold/warm pairs per command")
    parser.add_argument("--only", default=",".join(COMMANDS), help="commands to measure")
    parser.add_argument("--publish", action=argparse.BooleanOptionalAction, default=True,
                        help="write the section 'cache' of docs/data/benchmarks.json")
    args = parser.parse_args(argv)
    from results_file import commit, cpu_name

    results = {"command": " ".join(["python", "benchmarks/cache.py", *(argv or sys.argv[1:])]),
               "commit": commit(),
               "machine": f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} cores",
               "date": time.strftime("%Y-%m-%d"), "reps": args.reps}
    env = {**os.environ, "SSM_JAX_CACHE_DIR": ""}
    results["help_s"] = min(timed([*SSM_JAX, "--help"], env) for _ in range(args.reps))
    print(f"ssm-jax --help: {results['help_s']:.2f} s (start-up, no compilation)")
    print(f"{'command':>10} {'cold (s)':>16} {'warm (s)':>16} {'warm/cold':>10}")
    for name in args.only.split(","):
        row = results[name] = measure(name, args.reps)
        spread = lambda xs: f"{min(xs):.2f} [{max(xs):.2f}]"  # noqa: E731
        print(f"{name:>10} {spread(row['cold_s']):>16} {spread(row['warm_s']):>16} "
              f"{row['warm_over_cold']:>10.2f}", flush=True)
    import results_file

    print(f"wrote {results_file.save_raw('cache', results)}")
    if args.publish:
        publish(results, args.only.split(","))


if __name__ == "__main__":
    main()
