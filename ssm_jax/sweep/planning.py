"""Planning a sweep: its runs in groups that share a compiled program, and the groups in
chunks sized to a memory budget.

* **groups**: runs with the same :class:`~ssm_jax.simulate.Spec` (static options such as
  loss, dim, method, parametrization, steps, saves), number of classes and precision share
  one compiled program. Problems with different numbers of examples (different imbalance
  ratios) are padded to the largest ``n`` of the group with masked, zero-weight examples,
  which changes no result. Where a run's cost grows with ``n`` (the per-example path),
  runs of very different ``n`` are split into **buckets**, each padded to its own largest
  ``n`` and compiled once (:func:`buckets_of`).
* **chunks**: a group is cut into chunks of at most ``chunk_size`` runs, chosen from a
  memory budget (:func:`estimate_run_bytes`): on a CPU at most :data:`CPU_RUNS_PER_DEVICE`
  per device; on a GPU or TPU as many as fit the device's free memory
  (:func:`device_memory_budget`), so a sweep of small runs goes in as few chunks as fit.

Runs that differ only in their seed (the last axis) share their configuration but for the
PRNG key, so a plan is built from one configuration per point of the other axes
(:attr:`~ssm_jax.sweep.definition.Sweep.seed_count`), not one per run.
A :class:`Plan` holds two ints per run and nothing else that grows with the sweep.

This module imports neither JAX nor numpy when imported: :func:`plan` validates and groups
every run first, then imports numpy and asks JAX for its devices, so a sweep with a bad run
is refused before either is imported.
"""

from __future__ import annotations

import array
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import OPTIONS, ConfigError, Spec, spec_of
from ..resources import estimate_run_bytes
from .definition import Sweep

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Group:
    """Runs sharing one compiled function: same Spec, classes, padded size and dtype."""

    spec: Spec
    num_classes: int
    n_pad: int
    x64: bool
    runs: np.ndarray  # flat run indices (sorted)


@dataclass(frozen=True)
class Chunk:
    """Runs ``groups[group].runs[start:stop]`` (kept as two ints: a plan of a large sweep
    stays small)."""

    id: int
    group: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class Plan:
    """The groups and chunks of a sweep, and the lengths of its file's class and save dims."""

    sweep: Sweep
    groups: list[Group]
    chunk_size: int
    chunks: list[Chunk]
    num_classes: int  # largest over groups: the length of the ``class`` dimension
    saves: int  # largest over groups: the length of the ``save`` dimension
    run_bytes: int
    buckets: int | str = 1  # as resolved by plan(): "cost" or a maximum per group
    matmul_precision: str = "highest"  # as resolved by plan(); see MATMUL_PRECISIONS

    def runs_of(self, chunk: Chunk) -> np.ndarray:
        """Flat run indices of a chunk."""
        return self.groups[chunk.group].runs[chunk.start:chunk.stop]


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str | int | float) -> int:
    """``"512M"``, ``"4G"``, ``"1.5GiB"`` or a number of bytes -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(i?[bB])?\s*", str(text))
        if not match:
            raise ConfigError(f"memory budget {text!r} is not a size such as 512M, 4G or 1e9")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1:
        raise ConfigError(f"memory budget {text!r} must be positive")
    return value


#: The matrix-product precisions a sweep may compile its programs with
#: (``jax.default_matmul_precision``): ``"highest"`` computes float32 products in float32
#: everywhere; ``"default"`` is JAX's default, which on NVIDIA GPUs rounds the inputs of
#: float32 products to TF32 (10-bit mantissa) and on TPUs to bfloat16; ``"high"`` is TF32
#: or 3-pass bfloat16. On a CPU all three give the same float32 products.
MATMUL_PRECISIONS = ("default", "high", "highest")

#: Sweeps use float32 products at full precision unless told otherwise: the simulator's
#: results (learn and half times, accuracies) are compared with float64 references and
#: with single runs, and TF32 / bfloat16 products would move them by far more than float32
#: rounding does, for a speed-up that matters only where products dominate (docs/sweeps.md,
#: "Precision"; benchmarks/throughput.py --precision measures both on a GPU).
DEFAULT_MATMUL_PRECISION = "highest"


def resolve_precision(precision: str | None) -> str:
    """``matmul_precision`` of :func:`plan` as used (``None``: the default)."""
    precision = DEFAULT_MATMUL_PRECISION if precision is None else precision
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"matmul_precision={precision!r} must be one of "
                          f"{', '.join(MATMUL_PRECISIONS)}")
    return precision


#: The memory budget per device when none is given, on a CPU (where chunks are capped at
#: CPU_RUNS_PER_DEVICE runs per device anyway) and on an accelerator that does not report
#: its memory.
DEFAULT_MEMORY_BUDGET = "1G"

#: The part of an accelerator's free memory a chunk is planned to fill when no budget is
#: given: estimate_run_bytes is an upper guess, but the compiled program, XLA's scratch
#: space and the next chunk's inputs (launched before the previous chunk is collected)
#: need room too.
ACCELERATOR_MEMORY_FRACTION = 0.5


def device_memory_budget(devices: Sequence) -> int:
    """Bytes per device a chunk may use when neither a chunk size nor a memory budget is
    given. On a CPU: :data:`DEFAULT_MEMORY_BUDGET`. On a GPU or TPU:
    :data:`ACCELERATOR_MEMORY_FRACTION` of the free memory (``bytes_limit - bytes_in_use``
    of ``memory_stats()``) of the device that has least; :data:`DEFAULT_MEMORY_BUDGET`
    where a device does not report it (``memory_stats()`` is ``None``, lacks
    ``bytes_limit`` or is not implemented)."""
    fallback = parse_bytes(DEFAULT_MEMORY_BUDGET)
    if not devices or devices[0].platform == "cpu":
        return fallback
    free = []
    for device in devices:
        try:
            stats = device.memory_stats()
        except (RuntimeError, NotImplementedError, AttributeError):
            stats = None
        if not stats or "bytes_limit" not in stats:
            return fallback
        free.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    return max(1, int(ACCELERATOR_MEMORY_FRACTION * min(free)))


def balanced_chunk(largest: int, runs: int, num_devices: int) -> int:
    """The chunk size, at most ``largest`` (a multiple of ``num_devices``), that cuts
    ``runs`` into as few chunks as ``largest`` allows, of equal size: every chunk of a group
    is padded to one batch, so 10,000 runs under a limit of 4,400 go as 3 chunks of 3,334
    rather than 4,400 + 4,400 + 1,200 padded to 4,400."""
    if runs <= largest:
        return runs
    chunks = -(-runs // largest)
    size = -(-runs // chunks)
    return min(largest, -(-size // num_devices) * num_devices)


# On a CPU, a chunk's state should stay in cache (a core's L2): 84 W1 runs at once ran 2-3x
# slower than chunks of 8 (benchmarks/run.py). On the 2-core benchmark CPU (2 MiB of L2 per
# core, 2 devices, one process, warm, no compilation cache; docs/performance.md section 3)
# 2 runs per device beat 4: W2 9.6-10.0 s against 13.7-13.8 s, W4 2.8 s against 6.2 s,
# W1 1.40-1.43 s against 1.51 s; 1 run per device was slower again (W2 32 s: a chunk's
# fixed cost, 42 chunks). A GPU wants the whole budget.
CPU_RUNS_PER_DEVICE = 2

# What one more compilation costs on a CPU, in flops of training it must save to pay for
# itself (buckets="cost"): about 3 s of compiling a W2 chunk against about 60 GFLOP/s of
# per-example training on the 2-core benchmark CPU (benchmarks/run.py).
CPU_COMPILE_FLOPS = 2e11


def run_flops(spec: Spec, num_classes: int, n: int) -> float:
    """Matrix-product flops of one run's training steps with ``n`` (padded) examples, on the
    path :func:`~ssm_jax.simulate.trajectory` takes (reduced or per example); ``spec.steps``
    stands for the number of steps (or vector-field evaluations of a flow)."""
    from .. import reduced
    from ..problem import make_problem

    problem = make_problem((1,) * num_classes, n, host=True)
    use = reduced.use_reduced(spec, problem)
    groups = reduced.num_groups(spec, num_classes) if use else None
    per_step = reduced.flops_per_step(num_classes, spec.dim, n, use, groups)
    return float(spec.steps) * per_step * spec.depth


def buckets_of(ns: Sequence[int] | np.ndarray, chunk_size: int, cost: Callable[[int], float],
               max_buckets: int | None = None, compile_cost: float = 0.0) -> list[tuple]:
    """Split runs of ``ns`` examples into buckets, each padded to its largest ``n``.

    Runs are sorted by ``n`` (largest first, ties by position) and cut into chunks of
    ``chunk_size``; a bucket is a stretch of consecutive chunks, padded to the ``n`` of its
    first run, so each of its chunks costs ``chunk_size * cost(n_pad)``, and each bucket
    costs one more compilation (``compile_cost``, in the units of ``cost``). Returns an
    optimal split, the cheapest with at most ``max_buckets`` buckets (``None``: any
    number), as ``(runs, n_pad)`` pairs, ``runs`` being positions in ``ns``. Dynamic
    programming over the chunks where ``n`` drops (at most 256 of them)."""
    import numpy as np

    ns = np.asarray(ns, dtype=np.int64)
    order = np.argsort(-ns, kind="stable")
    starts = ns[order][::chunk_size]  # n_pad of a bucket that starts at chunk m
    cuts = [0] + [m for m in range(1, len(starts)) if starts[m] < starts[m - 1]]
    if len(cuts) > 256:  # keep the programme small for huge, continuous sweeps
        cuts = sorted(set(cuts[:: -(-len(cuts) // 256)]) | {0})
    bounds = cuts + [len(starts)]
    limit = len(cuts) if max_buckets is None else min(max_buckets, len(cuts))
    inf = float("inf")
    # best[b][j]: cheapest split of chunks [0, bounds[j]) into b buckets; back-pointers.
    best = [[inf] * len(bounds) for _ in range(limit + 1)]
    back = [[-1] * len(bounds) for _ in range(limit + 1)]
    best[0][0] = 0.0
    for b in range(1, limit + 1):
        for j in range(1, len(bounds)):
            for i in range(j):
                if best[b - 1][i] < inf:
                    chunks = bounds[j] - bounds[i]
                    value = (best[b - 1][i] + compile_cost
                             + chunks * chunk_size * cost(int(starts[bounds[i]])))
                    if value < best[b][j]:
                        best[b][j], back[b][j] = value, i
    b = min(range(1, limit + 1), key=lambda c: (best[c][-1], c))
    out, j = [], len(bounds) - 1
    while j > 0:
        i = back[b][j]
        runs = order[bounds[i] * chunk_size: bounds[j] * chunk_size]
        out.append((np.sort(runs), int(starts[bounds[i]])))
        j, b = i, b - 1
    return out[::-1]


def resolve_buckets(buckets, platform: str) -> int | str:
    """``buckets`` of :func:`plan` as used: ``"auto"`` is ``"cost"`` on a CPU (whose time
    grows with the padded ``n``) and 1 elsewhere (a GPU step of these sizes is latency
    bound, so padding is free and compilations are not)."""
    if buckets == "auto":
        return "cost" if platform == "cpu" else 1
    if buckets == "cost":
        return buckets
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ConfigError(f"buckets={buckets!r} must be 'auto', 'cost' or an integer >= 1")
    return buckets


def check_plan_options(chunk_size: int | None = None, memory_budget=None,
                       buckets="auto", matmul_precision: str | None = None) -> None:
    """Refuse options of :func:`plan` that no machine makes valid (:class:`ConfigError`): a
    chunk size that is not an integer >= 1, a memory budget that is not a size (read only
    without a chunk size), buckets other than ``"auto"``, ``"cost"`` or an integer >= 1, an
    unknown matmul precision."""
    if chunk_size is None:
        if memory_budget is not None:
            parse_bytes(memory_budget)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    resolve_buckets(buckets, "cpu")
    resolve_precision(matmul_precision)


def plan(sweep: Sweep, *, chunk_size: int | None = None, memory_budget=None,
         num_devices: int | None = None, buckets="auto", devices: Sequence | None = None,
         matmul_precision: str | None = None) -> Plan:
    """Validate every run of ``sweep``, group the runs and cut the groups into chunks.

    ``chunk_size`` (runs per chunk) wins over ``memory_budget`` (bytes per device, see
    :func:`estimate_run_bytes`); the budget gives ``devices x floor(budget / run_bytes)``
    runs (at least one per device). Without either: on a CPU a budget of
    :data:`DEFAULT_MEMORY_BUDGET` and at most :data:`CPU_RUNS_PER_DEVICE` runs per device
    (a chunk's state stays in cache); on a GPU or TPU the devices' free memory
    (:func:`device_memory_budget`), with the sweep cut into as few chunks of equal size as
    fit (:func:`balanced_chunk`). A given budget is also capped per device on a CPU.

    ``buckets`` splits a group whose runs have different numbers of examples into buckets
    padded to their own largest ``n`` (:func:`buckets_of`): an integer N allows at most
    N padded sizes per group, chosen to minimise the padded work (:func:`run_flops`); 1
    pads every run to the group's largest ``n``; ``"cost"`` adds a bucket only where the
    work it saves exceeds :data:`CPU_COMPILE_FLOPS`; ``"auto"`` (default) is ``"cost"``
    on a CPU and 1 elsewhere (:func:`resolve_buckets`). ``devices`` (default: the local
    devices) are those the chunks will run on; ``num_devices`` overrides their count.
    ``matmul_precision``: see :data:`MATMUL_PRECISIONS` (default
    :data:`DEFAULT_MATMUL_PRECISION`). Memory: two ints per run.

    The options and every run are checked before JAX is imported (for its devices)."""
    check_plan_options(chunk_size, memory_budget, buckets, matmul_precision)
    matmul_precision = resolve_precision(matmul_precision)
    keys: dict[tuple, int] = {}
    specs: list[tuple[Spec, int, bool]] = []
    n_pads: list[int] = []
    group_of = array.array("i", [0]) * sweep.size
    sizes = array.array("q", [0]) * sweep.size  # examples per run, for the buckets
    saves = 0
    _check_seeds(sweep)
    per_point = sweep.seed_count  # runs that differ only in their seed: one configuration
    for start in range(0, sweep.size, per_point):
        cfg = sweep.config(start)
        counts = cfg.class_counts
        spec = spec_of(cfg)
        key = (spec, len(counts), cfg.x64)
        if key not in keys:
            keys[key] = len(specs)
            specs.append(key)
            n_pads.append(0)
        g = keys[key]
        group_of[start:start + per_point] = array.array("i", [g]) * per_point
        sizes[start:start + per_point] = array.array("q", [sum(counts)]) * per_point
        n_pads[g] = max(n_pads[g], int(sum(counts)))
        saves = max(saves, spec.saves)
    # Every run is valid: the arrays and the devices now.
    import jax
    import numpy as np

    group_of, sizes = np.frombuffer(group_of, np.int32), np.frombuffer(sizes, np.int64)
    devices = list(devices) if devices is not None else jax.local_devices()
    num_devices = num_devices or len(devices)
    platform = devices[0].platform
    buckets = resolve_buckets(buckets, platform)
    groups = [Group(spec, k, n_pad, x64, np.flatnonzero(group_of == g))
              for g, ((spec, k, x64), n_pad) in enumerate(zip(specs, n_pads, strict=True))]
    run_bytes = max(estimate_run_bytes(g.spec, g.num_classes, g.n_pad, g.x64) for g in groups)
    if chunk_size is None:
        given = memory_budget is not None
        budget = parse_bytes(memory_budget) if given else device_memory_budget(devices)
        per_device = max(1, budget // run_bytes)
        if platform == "cpu":
            chunk_size = min(per_device, CPU_RUNS_PER_DEVICE) * num_devices
        elif given:
            chunk_size = per_device * num_devices
        else:
            chunk_size = balanced_chunk(per_device * num_devices,
                                        max(len(g.runs) for g in groups), num_devices)
    chunk_size = min(chunk_size, sweep.size)
    if buckets != 1:
        groups = [bucket for g in groups
                  for bucket in _split(g, sizes[g.runs], chunk_size, buckets)]
    chunks: list[Chunk] = []
    for g, group in enumerate(groups):
        for start in range(0, len(group.runs), chunk_size):
            stop = min(start + chunk_size, len(group.runs))
            chunks.append(Chunk(len(chunks), g, start, stop))
    return Plan(sweep, groups, chunk_size, chunks, max(g.num_classes for g in groups), saves,
                run_bytes, buckets, matmul_precision)


def _check_seeds(sweep: Sweep) -> None:
    """Every value of a swept seed is a valid seed (the plan builds one configuration per
    point of the other axes, with the first seed; the others are checked here)."""
    if sweep.seed_count == 1:
        return
    option = OPTIONS["seed"]
    for value in dict.fromkeys(sweep.axes[-1][1]):
        try:
            option.check_range(value)
        except ConfigError as err:
            raise ConfigError(f"{err} (in the sweep point seed={value!r})") from None


def _split(group: Group, ns: np.ndarray, chunk_size: int, buckets: int | str) -> list[Group]:
    """The buckets of one group whose runs have ``ns`` examples (the group itself when they
    all have one ``n``)."""
    if ns.min() == ns.max():
        return [group]
    cost = functools.cache(functools.partial(run_flops, group.spec, group.num_classes))
    found = buckets_of(ns, min(chunk_size, len(ns)), cost,
                       None if buckets == "cost" else buckets,
                       CPU_COMPILE_FLOPS if buckets == "cost" else 0.0)
    return [Group(group.spec, group.num_classes, n_pad, group.x64, group.runs[runs])
            for runs, n_pad in found]
