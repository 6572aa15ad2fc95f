"""Peak memory of a meta-gradient through a long discrete run, against the forward run.

For the default problem (5 + 5 classes, n_major 100, ratio 10: n = 550 examples, d = 32,
squared loss, plain GD) and S steps, compile three functions of the same run and read
XLA's own memory accounting (``compiled.memory_analysis()``: arguments + outputs +
temporaries, i.e. the peak of live buffers that XLA plans):

* ``forward``: the balanced loss at T (``ssm_jax.meta.value``);
* ``grad_remat``: its value and gradient in gamma, lr and init_scale with the nested
  checkpointed scan (``remat=True``, what ``ssm_jax.meta`` uses);
* ``grad_plain``: the same gradient through a plain ``lax.scan`` (``remat=False``), which
  stores every step for the backward pass.

Also times each (after compilation, best of 3). Ratios are against ``forward`` measured in
the same run. Usage::

    python benchmarks/meta_memory.py [--steps 1000,10000] [--json meta_memory.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax

from ssm_jax import meta
from ssm_jax.config import Config

MAX_RUN_BYTES = 4 * 2**30


def peak_bytes(compiled) -> int:
    stats = compiled.memory_analysis()
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
               + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def best_time(fn, *args, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def measure(steps: int, lr: float) -> dict:
    cfg = Config(weighting="power", gamma=0.5, lr=lr, steps=steps, saves=2)
    spec, problem, numeric, key, _ = meta.inputs_of(cfg)
    wrt = ("gamma", "lr", "init_scale")
    functions = {
        "forward": (spec, lambda s, n: meta.value(s, problem, n, key)[0]),
        "grad_remat": (spec, lambda s, n: meta.value_and_grad(s, problem, n, key, wrt=wrt)),
        "grad_plain": (dataclasses.replace(spec, remat=False),
                       lambda s, n: meta.value_and_grad(s, problem, n, key, wrt=wrt)),
    }
    row = {"steps": steps, "t1": lr * steps, "examples": int(problem.mask.sum()),
           "dim": spec.dim, "classes": int(problem.num_classes)}
    values = {}
    for name, (s, fn) in functions.items():
        compiled = jax.jit(lambda n, fn=fn, s=s: fn(s, n)).lower(numeric).compile()
        row[f"{name}_bytes"] = peak_bytes(compiled)
        if row[f"{name}_bytes"] > MAX_RUN_BYTES:  # measured, but too big to run here
            row[f"{name}_seconds"] = None
            continue
        row[f"{name}_seconds"] = best_time(compiled, numeric)
        out = compiled(numeric)
        values[name] = float(out if name == "forward" else out.value)
    row["grad_remat_over_forward_memory"] = row["grad_remat_bytes"] / row["forward_bytes"]
    row["grad_plain_over_forward_memory"] = row["grad_plain_bytes"] / row["forward_bytes"]
    for name in ("grad_remat", "grad_plain"):
        seconds = row[f"{name}_seconds"]
        row[f"{name}_over_forward_time"] = (None if seconds is None
                                            else seconds / row["forward_seconds"])
    row["values_agree"] = max(values.values()) - min(values.values()) <= 1e-5 * abs(
        values["forward"])
    return row


def _fmt(ratio) -> str:
    return "n/a" if ratio is None else f"{ratio:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000,10000",
                        help="comma-separated step counts (default: 1000,10000)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    parser.add_argument("--json", default="meta_memory.json", help="output JSON path")
    args = parser.parse_args()
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        row = measure(steps, args.lr)
        rows.append(row)
        print(f"steps {steps:>6}: forward {row['forward_bytes'] / 2**20:8.2f} MiB, "
              f"grad (remat) {row['grad_remat_bytes'] / 2**20:8.2f} MiB "
              f"(x{row['grad_remat_over_forward_memory']:.2f}), "
              f"grad (plain scan) {row['grad_plain_bytes'] / 2**20:8.2f} MiB "
              f"(x{row['grad_plain_over_forward_memory']:.2f}); time "
              f"x{_fmt(row['grad_remat_over_forward_time'])} (remat) "
              f"x{_fmt(row['grad_plain_over_forward_time'])} (plain)", flush=True)
        with open(args.json, "w") as f:  # after every row: nothing finished is lost
            json.dump({"device": str(jax.devices()[0]), "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
