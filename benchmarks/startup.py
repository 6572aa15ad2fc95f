"""Start-up of the command line against a bare Python, measured in one run.

``ssm-jax --help``, every subcommand's ``--help`` and a few refusals of bad input (exit
status 2) import no JAX (docs/performance.md, "Start-up"); the target is each under 10x the
start-up of ``python -c pass`` of the same interpreter. The cases run in fresh processes,
alternated, ``--reps`` times each, so the machine's load falls on all of them alike.
Reported: the fastest wall time of each, its ratio to the fastest bare Python, the spread
(median and slowest), and the least CPU time (user + system, of the child process), which a
busy machine inflates less than the wall time, with its ratio.

    python benchmarks/startup.py [--reps N]

writes ``benchmarks/results/startup.json`` (every run), prints a table and, unless
``--no-publish``, writes the section ``startup`` of the committed results file
(``docs/data/benchmarks.json``), from which the performance page's table is built.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

TARGET = 10.0  # times the bare interpreter's start-up

# (label, arguments of ssm-jax, expected exit status)
CASES = [
    ("--help", ["--help"], 0),
    *[(f"{name} --help", [name, "--help"], 0)
      for name in ("simulate", "demo", "sweep", "plot", "grad", "meta", "geometry",
                   "resampling", "digits")],
    ("bad choice (argparse)", ["simulate", "--loss", "hinge"], 2),
    ("out of range (Config)", ["simulate", "--ratio", "0.5"], 2),
    ("no effect", ["simulate", "--weighting", "power", "--gamma", "1", "--momentum", "0.5"], 2),
    ("class weights overflow (numpy)", ["simulate", "--weighting", "power", "--gamma", "1000"],
     2),
    ("bad run in a sweep", ["sweep", "--ratio", "2,1000"], 2),
    ("bad gradient request", ["grad", "--wrt", "foo"], 2),
    ("bad digits option", ["digits", "--tau", "-1"], 2),
]


def command() -> tuple[list[str], str]:
    """The ``ssm-jax`` console script next to this interpreter (``python -m ssm_jax`` if
    there is none), and how it was run."""
    script = shutil.which("ssm-jax", path=os.path.dirname(sys.executable))
    if script:
        return [script], "ssm-jax (console script)"
    return [sys.executable, "-m", "ssm_jax"], "python -m ssm_jax"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], status: int) -> tuple[float, float]:
    """(wall time, CPU time) of one run of ``args``, which must exit ``status``."""
    cpu = cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != status:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}, not {status}:\n"
                           f"{done.stderr}")
    return elapsed, cpu_of_children() - cpu


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="runs of each case (default: 20)")
    parser.add_argument("--publish", action=argparse.BooleanOptionalAction, default=True,
                        help="write the section 'startup' of docs/data/benchmarks.json")
    args = parser.parse_args(argv)
    ssm_jax, how = command()
    cases = [("python -c pass", [sys.executable, "-c", "pass"], 0)]
    cases += [(label, [*ssm_jax, *arguments], status) for label, arguments, status in CASES]
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _ in range(args.reps):
        for label, arguments, status in cases:
            wall, used = timed(arguments, status)
            times[label].append(wall)
            cpu[label].append(used)
    bare, bare_cpu = min(times["python -c pass"]), min(cpu["python -c pass"])
    rows = {label: {"fastest_s": min(ts), "median_s": statistics.median(ts),
                    "slowest_s": max(ts), "ratio": min(ts) / bare,
                    "least_cpu_s": min(cpu[label]), "cpu_ratio": min(cpu[label]) / bare_cpu}
            for label, ts in times.items()}
    results = {"command": " ".join(["python", "benchmarks/startup.py",
                                    *(argv if argv is not None else sys.argv[1:])]),
               "commit": commit(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
               "reps": args.reps, "ssm_jax": how, "target_ratio": TARGET, "cases": rows,
               "times_s": times, "cpu_s": cpu}
    print(f"{'case':<40} {'fastest (s)':>11} {'x bare':>7} {'median':>7} {'slowest':>7} "
          f"{'CPU (s)':>8} {'x bare':>7}")
    for label, row in rows.items():
        print(f"{label:<40} {row['fastest_s']:>11.3f} {row['ratio']:>7.1f} "
              f"{row['median_s']:>7.3f} {row['slowest_s']:>7.3f} {row['least_cpu_s']:>8.3f} "
              f"{row['cpu_ratio']:>7.1f}")
    others = [row for label, row in rows.items() if label != "python -c pass"]
    print(f"slowest case: {max(r['ratio'] for r in others):.1f}x the bare interpreter's wall "
          f"time, {max(r['cpu_ratio'] for r in others):.1f}x its CPU time (target: under "
          f"{TARGET:.0f}x)")
    import results_file

    print(f"wrote {results_file.save_raw('startup', results)}")
    if args.publish:
        publish(results)


def publish(results: dict) -> None:
    """The section ``startup`` of the results file: one row per case."""
    import results_file

    rows = [[f"`{label}`" if label == "python -c pass" else label, round(row["fastest_s"], 3),
             round(row["ratio"], 1), round(row["median_s"], 3), round(row["slowest_s"], 3),
             round(row["least_cpu_s"], 3), round(row["cpu_ratio"], 1)]
            for label, row in results["cases"].items()]
    others = [row for label, row in results["cases"].items() if label != "python -c pass"]
    section = {
        **results_file.provenance(results["command"],
                                  f"{results_file.cpu_name()}, {os.cpu_count()} cores; "
                                  f"Python {results['python']}", "Start-up of the command line"),
        "notes": [f"Each case in a fresh process ({results['ssm_jax']}), the cases alternated "
                  f"{results['reps']} times: the fastest run, its ratio to the fastest bare "
                  "`python -c pass`, the median and slowest runs, and the least CPU time (user "
                  "+ system, which a busy machine inflates less) with its ratio.",
                  f"Slowest case: {max(r['ratio'] for r in others):.1f} times the bare "
                  f"interpreter's wall time (target: under {TARGET:.0f})."],
        "tables": {"cases": {"columns": ["case", "fastest (s)", "x bare", "median (s)",
                                         "slowest (s)", "CPU (s)", "x bare (CPU)"],
                             "rows": rows}}}
    results_file.write_section("startup", section)
    print(f"wrote section 'startup' of {results_file.PATH}")


if __name__ == "__main__":
    main()
