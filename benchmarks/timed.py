"""One ssm-jax workload timed as a user runs it, in a fresh process: ``benchmarks/run.py``
starts this script once per repetition (like its PyTorch baseline), so nothing compiled or
cached in memory carries over from one repetition to the next.

    python benchmarks/timed.py w1 [--quick] [--calls 2] [--via-file] [--alternate N]

The process uses the defaults a user gets: ``import ssm_jax`` splits a CPU into one device
per core, and the persistent compilation cache is whatever ``SSM_JAX_CACHE_DIR`` says (the
caller gives an empty folder for a cold cache, the same folder again for a warm one, or
nothing to turn it off). W1, W2 and W4 call ``sweep.run(sweep)`` with its defaults (an
in-memory Dataset); W3 computes its gradients (``common.w3_gradients``). The first call
includes tracing and compilation; later calls in the same process are warm.

``--via-file`` runs the sweep into a temporary netCDF file and loads it back (what an
in-memory sweep did before it built its Dataset directly). ``--alternate N`` (W1, W2, W4)
compiles once, then alternates N in-memory and N via-file calls in this process.

Prints one line of JSON: ``import_s`` (from the start of this script to ssm_jax and JAX
imported), ``calls_s``, ``devices``, ``platform``, ``cache_dir``, ``chunk_size`` and, with
``--alternate``, ``memory_s`` and ``via_file_s``.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import jax  # noqa: E402

from ssm_jax import cache, sweep  # noqa: E402


def via_file(sw):
    with tempfile.TemporaryDirectory(prefix="ssm-jax-timed-") as tmp:
        return sweep.run(sw, os.path.join(tmp, "sweep.nc"), progress=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=["w1", "w2", "w3", "w4"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--via-file", action="store_true")
    parser.add_argument("--alternate", type=int, default=0)
    args = parser.parse_args(argv)
    imported = time.perf_counter() - START
    sw = common.make_sweep(args.workload, args.quick)
    if args.workload == "w3":
        call, chunk = common.w3_gradients(sw)
    else:
        chunk = sweep.plan(sw).chunk_size
        call = ((lambda: via_file(sw)) if args.via_file
                else (lambda: sweep.run(sw, progress=False)))
    out = {"workload": args.workload, "import_s": imported,
           "calls_s": [common.timed(call) for _ in range(args.calls)],
           "devices": jax.local_device_count(), "platform": jax.devices()[0].platform,
           "cache_dir": cache.cache_dir(), "chunk_size": chunk, "via_file": args.via_file}
    if args.alternate and args.workload != "w3":
        memory, files = [], []
        for _ in range(args.alternate):
            memory.append(common.timed(lambda: sweep.run(sw, progress=False)))
            files.append(common.timed(lambda: via_file(sw)))
        out.update(memory_s=memory, via_file_s=files)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
