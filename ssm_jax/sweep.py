"""Parameter sweeps: vmapped, chunked, sharded over devices, resumable, to labelled arrays.

A :class:`Sweep` is a base :class:`~ssm_jax.config.Config` plus *axes*: options with a list
of values. Its runs are the Cartesian product of the axes. They are executed as

* **groups**: runs with the same :class:`~ssm_jax.simulate.Spec` (static options such as
  loss, dim, method, parametrization, steps, saves) and the same number of classes share
  one compiled function, ``vmap`` of :func:`ssm_jax.simulate.trajectory` over stacked
  :class:`~ssm_jax.problem.Problem`, :class:`~ssm_jax.simulate.Numeric` and PRNG keys.
  Problems with different numbers of examples (different imbalance ratios) are padded to
  the largest ``n`` of the group with masked, zero-weight examples, which changes no
  result. Where a run's cost grows with ``n`` (the per-example path), runs of very
  different ``n`` are split into **buckets**, each padded to its own largest ``n`` and
  compiled once (see :func:`plan`'s ``buckets``). Run ``i`` uses the key
  ``PRNGKey(seed_i)``, exactly as :func:`~ssm_jax.simulate` does, so every entry equals
  the corresponding single run.
* **chunks**: a group is cut into chunks of at most ``chunk_size`` runs, chosen from a
  memory budget (:func:`estimate_run_bytes`), and every chunk of a group is padded to the
  same batch size, so each group compiles once. A chunk's batch is sharded over the local
  devices with :mod:`jax.sharding` (leading axis split over a 1-D mesh ``"runs"``).
* **parts**: each finished chunk is written atomically to ``<out>.parts/chunk-NNNNNN.npz``
  next to a ``manifest.json`` holding the hash of the sweep. Started again, the same sweep
  computes only the missing chunks; a different sweep is refused (:class:`ConfigError`).
  When every chunk exists they are streamed, one chunk at a time, into ``<out>`` (netCDF4,
  written to a temporary name and renamed), and the parts are removed.

The result is an :class:`xarray.Dataset` with one dimension per axis (named after the
option's Config field, except ``loss`` -> ``loss_fn`` because ``loss`` is a variable),
then ``save`` (save-point index) and ``class``. Times differ between learning rates
(``t = lr x step``), so ``t`` is a coordinate over every swept dimension and ``save``.
See :data:`VARIABLES` and the README section "Sweeps".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from .config import OPTIONS, Config, ConfigError
from .problem import class_counts_of, make_problem
from .registry import METHODS, SOLVERS
from .simulate import Spec, numeric_of, spec_of, trajectory

FORMAT_VERSION = 1

# Dimension names of axes whose field name is also a variable name.
DIM_NAMES = {"loss": "loss_fn"}

# Variables of a sweep Dataset: name -> (dims after the sweep dims, description). The same
# quantities as the JSON of ``ssm-jax simulate``.
VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "loss": (("save",), "training objective L at each save point"),
    "per_class_accuracy": (("save", "class"),
                           "fraction of class-c examples whose largest output is c"),
    "per_class_loss": (("save", "class"), "mean unweighted per-example loss over class c"),
    "own_output": (("save", "class"), "mean over class-c examples of output c"),
    "balanced_accuracy": (("save",), "mean of the per-class accuracies"),
    "learn_time": (("class",), "first time the class accuracy reaches 0.5 "
                               "(linearly interpolated); NaN if never reached"),
    "half_time": (("class",), "first time own_output reaches 0.5 (linearly interpolated); "
                              "NaN if never reached"),
    "weights": (("class",), "normalised class weights omega_c"),
    "class_counts": (("class",), "examples per class (0 for a class the run does not have)"),
    "diverged": ((), "whether the loss became non-finite"),
    "diverged_step": ((), "first step with a non-finite loss; -1 if the run did not diverge"),
}
FLOAT_FILL = float("nan")
# Sub-fields renamed to their name in simulate's JSON.
RENAMED = {"status": "solver_status"}


# --------------------------------------------------------------------------------------
# What a sweep is
# --------------------------------------------------------------------------------------


def _option_table() -> dict:
    """The run options a sweep or a TOML file may set (every shared, valued option)."""
    return {name: opt for name, opt in OPTIONS.items() if opt.shared and not opt.switch}


def sweepable_fields() -> list[str]:
    """Config fields a sweep may list several values for, in dimension order.

    Every option declared ``sweepable`` (all but the list-valued ``counts`` and
    ``weights``). Options that split compiled groups come first, then the batched ones
    (vmapped in one program), with ``seed`` last, so each compiled group is a contiguous
    block of the Cartesian product."""
    fields = [name for name, opt in OPTIONS.items() if opt.sweepable]
    static = [f for f in fields if not OPTIONS[f].is_batched]
    batched = [f for f in fields if OPTIONS[f].is_batched and f != "seed"]
    return static + batched + (["seed"] if "seed" in fields else [])


def dim_name(field: str) -> str:
    """The Dataset dimension of a swept Config field."""
    return DIM_NAMES.get(field, field)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class Sweep:
    """A base configuration and the axes swept over (Cartesian product, C order).

    Build one with :func:`make_sweep`; ``axes`` is a tuple of ``(field, values)`` in the
    order of :func:`sweepable_fields`."""

    base: Config
    axes: tuple[tuple[str, tuple], ...] = ()

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.axes]

    @property
    def dims(self) -> list[str]:
        return [dim_name(field) for field in self.fields]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def point(self, index: int) -> dict:
        """The swept values of run ``index`` (flat C-order index into :attr:`shape`)."""
        position = np.unravel_index(index, self.shape) if self.axes else ()
        return {field: values[i] for (field, values), i in zip(self.axes, position, strict=True)}

    def config(self, index: int) -> Config:
        """The (validated) configuration of run ``index``."""
        point = self.point(index)
        try:
            return self.base.replace(**point)
        except ConfigError as err:
            where = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ConfigError(f"{err} (in the sweep point {where})") from None

    def to_dict(self) -> dict:
        """JSON-ready description: the base configuration (swept fields removed) and axes."""
        base = self.base.to_dict()
        for field in self.fields:
            base.pop(field, None)
        return {"base": base, "axes": {f: [_jsonable(v) for v in vals] for f, vals in self.axes}}

    @property
    def config_hash(self) -> str:
        text = json.dumps({"format": FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_sweep(base: Config | Mapping[str, Any] | None = None,
               axes: Mapping[str, Sequence] | None = None, *, seeds: int | None = None) -> Sweep:
    """Build a :class:`Sweep`.

    Args:
        base: a Config (or a dict of Config fields) for everything not swept.
        axes: ``{field: [values, ...]}``; a list of one value just sets the field.
        seeds: ``N`` adds the axis ``seed = 0..N-1``.

    Raises :class:`ConfigError` for an unknown or list-valued field, an empty or repeated
    list, or a value that is out of range (the message names it)."""
    if base is None:
        base = Config()
    elif not isinstance(base, Config):
        base = Config(**dict(base))
    axes = dict(axes or {})
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ConfigError(f"seeds={seeds!r} must be an integer >= 1")
        if "seed" in axes:
            raise ConfigError("give either seeds=N or a list of seeds, not both")
        axes["seed"] = list(range(seeds))
    allowed = sweepable_fields()
    single: dict[str, Any] = {}
    listed: dict[str, tuple] = {}
    for field, values in axes.items():
        if field not in allowed:
            raise ConfigError(f"cannot sweep over {field!r}: sweepable options are "
                              f"{', '.join(allowed)}")
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values:
            raise ConfigError(f"{field}: the list of values is empty")
        if len(set(values)) != len(values):
            raise ConfigError(f"{field}={list(values)!r} lists a value twice")
        if len(values) == 1:
            single[field] = values[0]
        else:
            listed[field] = values
    if base.keep_params:
        raise ConfigError("keep_params=True is not supported in sweeps (memory grows with "
                          "steps x runs); run the configurations you need with simulate")
    base = base.replace(**single) if single else base
    ordered = tuple((field, listed[field]) for field in allowed if field in listed)
    return Sweep(base=base, axes=ordered)


def sweep_from_options(options: Mapping[str, Any], *, x64: bool = False) -> Sweep:
    """A :class:`Sweep` from option values as given on the command line or in TOML.

    ``options`` maps Config fields (or flag names such as ``init-scale``) to a value: text
    (comma-separated lists allowed for sweepable options), a typed value, or a list. The
    key ``seeds`` (an integer N) means seeds 0..N-1."""
    table = _option_table()
    sweepable = set(sweepable_fields())
    base: dict[str, Any] = {"x64": bool(x64)}
    axes: dict[str, list] = {}
    seeds = None
    for key, value in options.items():
        field = key.lstrip("-").replace("-", "_")
        if value is None:
            continue
        if field == "seeds":
            if isinstance(value, str):
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(f"seeds={value!r} must be an integer >= 1") from None
            seeds = value
            continue
        if field == "x64":
            base["x64"] = base["x64"] or bool(value)
            continue
        if field not in table:
            raise ConfigError(f"unknown option {key!r}; options are "
                              f"{', '.join(sorted(table))}, seeds, x64")
        opt = table[field]
        if field not in sweepable:
            base[field] = opt.convert(value)
            continue
        if isinstance(value, str):
            values = [v for v in value.split(",")]
        elif isinstance(value, (list, tuple)):
            values = list(value)
        else:
            values = [value]
        axes[field] = [opt.convert(v) for v in values]
    if base.get("counts") is not None and base.get("profile", "step") == "step":
        base["profile"] = "counts"
    try:
        return make_sweep(Config(**base), axes, seeds=seeds)
    except TypeError as err:  # a wrongly typed value in a file
        raise ConfigError(str(err)) from None


def read_config_file(path) -> dict:
    """Option values from a TOML file (top-level keys, or a ``[sweep]`` table)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {err}") from None
    return dict(data.get("sweep", data))


# --------------------------------------------------------------------------------------
# Groups, chunks and the memory budget
# --------------------------------------------------------------------------------------


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
    sweep: Sweep
    groups: list[Group]
    chunk_size: int
    chunks: list[Chunk]
    num_classes: int  # largest over groups: the length of the ``class`` dimension
    saves: int  # largest over groups: the length of the ``save`` dimension
    run_bytes: int
    buckets: int | str = 1  # as resolved by plan(): "cost" or a maximum per group

    def runs_of(self, chunk: Chunk) -> np.ndarray:
        """Flat run indices of a chunk."""
        return self.groups[chunk.group].runs[chunk.start:chunk.stop]


def estimate_run_bytes(spec: Spec, num_classes: int, n_pad: int, x64: bool = False) -> int:
    """Estimated device memory of one run inside a vmapped batch, in bytes (an upper guess).

    Counts the arrays that are live during a training step: parameters (``k d + d m (+ k)``
    with m = n or k) held about six times (params, gradients, updates, new params and the
    two scan carries) plus the optimiser slots (1 for momentum, 2 for adam), per-example
    arrays (outputs, labels, residuals: ``4 k n``; features ``2 d n``; masks ``4 n``), the
    saved snapshots ``saves (3 k + 2)``, doubled for temporaries XLA may keep."""
    k, d, n = num_classes, spec.dim, n_pad
    m = k if spec.parametrization == "class" else n
    params = k * d + d * m + (k if spec.bias else 0)
    slots = METHODS[spec.method].slots
    per_example = 4 * k * n + 2 * d * n + 4 * n
    saved = spec.saves * (3 * k + 2) + 3 * k + 2
    if spec.keep_params:
        saved += spec.saves * params
    itemsize = 8 if x64 else 4
    return int(2 * itemsize * ((6 + slots) * params + per_example + saved))


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


# On a CPU, a chunk's state should stay in cache: 84 W1 runs at once ran 2-3x slower than
# chunks of 8 (benchmarks/run.py), and the cross-entropy W2 sweep took 18.9 s in chunks of
# 4 runs per device against 30.1 s with 8 (2 devices, same process); a GPU wants the whole
# budget.
CPU_RUNS_PER_DEVICE = 4

# What one more compilation costs on a CPU, in flops of training it must save to pay for
# itself (buckets="cost"): about 3 s of compiling a W2 chunk against about 60 GFLOP/s of
# per-example training on the 2-core benchmark CPU (benchmarks/run.py).
CPU_COMPILE_FLOPS = 2e11


def run_flops(spec: Spec, num_classes: int, n: int) -> float:
    """Matrix-product flops of one run's training steps with ``n`` (padded) examples, on the
    path :func:`~ssm_jax.simulate.trajectory` takes (reduced or per example); ``spec.steps``
    stands for the number of steps (or vector-field evaluations of a flow)."""
    from . import reduced

    problem = make_problem((1,) * num_classes, n)
    use = reduced.use_reduced(spec, problem)
    groups = reduced.num_groups(spec, num_classes) if use else None
    per_step = reduced.flops_per_step(num_classes, spec.dim, n, use, groups)
    return float(spec.steps) * per_step * spec.depth


def buckets_of(ns: Sequence[int], chunk_size: int, cost: Callable[[int], float],
               max_buckets: int | None = None, compile_cost: float = 0.0) -> list[tuple]:
    """Split runs of ``ns`` examples into buckets, each padded to its largest ``n``.

    Runs are sorted by ``n`` (largest first, ties by position) and cut into chunks of
    ``chunk_size``; a bucket is a stretch of consecutive chunks, padded to the ``n`` of its
    first run, so each of its chunks costs ``chunk_size * cost(n_pad)``, and each bucket
    costs one more compilation (``compile_cost``, in the units of ``cost``). Returns an
    optimal split, the cheapest with at most ``max_buckets`` buckets (``None``: any
    number), as ``(runs, n_pad)`` pairs, ``runs`` being positions in ``ns``. Dynamic
    programming over the chunks where ``n`` drops (at most 256 of them)."""
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


def plan(sweep: Sweep, *, chunk_size: int | None = None, memory_budget="1G",
         num_devices: int | None = None, buckets="auto") -> Plan:
    """Validate every run of ``sweep``, group the runs and cut the groups into chunks.

    ``chunk_size`` (runs per chunk) wins over ``memory_budget`` (bytes per device, see
    :func:`estimate_run_bytes`); the budget gives ``devices x floor(budget / run_bytes)``
    runs (at least one per device), at most :data:`CPU_RUNS_PER_DEVICE` per device on a
    CPU.

    ``buckets`` splits a group whose runs have different numbers of examples into buckets
    padded to their own largest ``n`` (:func:`buckets_of`): an integer N allows at most
    N padded sizes per group, chosen to minimise the padded work (:func:`run_flops`); 1
    pads every run to the group's largest ``n``; ``"cost"`` adds a bucket only where the
    work it saves exceeds :data:`CPU_COMPILE_FLOPS`; ``"auto"`` (default) is ``"cost"``
    on a CPU and 1 elsewhere (:func:`resolve_buckets`). Memory: two ints per run."""
    num_devices = num_devices or jax.local_device_count()
    buckets = resolve_buckets(buckets, jax.devices()[0].platform)
    keys: dict[tuple, int] = {}
    specs: list[tuple[Spec, int, bool]] = []
    n_pads: list[int] = []
    group_of = np.empty(sweep.size, dtype=np.int32)
    sizes = np.empty(sweep.size, dtype=np.int64)  # examples per run, for the buckets
    saves = 0
    for index in range(sweep.size):
        cfg = sweep.config(index)
        counts = class_counts_of(cfg)
        spec = spec_of(cfg)
        key = (spec, len(counts), cfg.x64)
        if key not in keys:
            keys[key] = len(specs)
            specs.append(key)
            n_pads.append(0)
        g = keys[key]
        group_of[index] = g
        sizes[index] = sum(counts)
        n_pads[g] = max(n_pads[g], int(sizes[index]))
        saves = max(saves, spec.saves)
    groups = [Group(spec, k, n_pad, x64, np.flatnonzero(group_of == g))
              for g, ((spec, k, x64), n_pad) in enumerate(zip(specs, n_pads, strict=True))]
    run_bytes = max(estimate_run_bytes(g.spec, g.num_classes, g.n_pad, g.x64) for g in groups)
    if chunk_size is None:
        per_device = max(1, parse_bytes(memory_budget) // run_bytes)
        if jax.devices()[0].platform == "cpu":
            per_device = min(per_device, CPU_RUNS_PER_DEVICE)
        chunk_size = per_device * num_devices
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r} must be an integer >= 1")
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
                run_bytes, buckets)


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


# --------------------------------------------------------------------------------------
# Computing a chunk
# --------------------------------------------------------------------------------------


def _batched_trajectory(spec: Spec, problems, numerics, keys, mesh=None):
    """``vmap`` of :func:`~ssm_jax.simulate.trajectory` over stacked problems, numerics, keys.

    With a ``mesh`` of several devices (axis ``"runs"``), each device runs the ``vmap`` of
    its own slice of the batch (``jax.shard_map``): runs are independent, so nothing is
    communicated. (Leaving the split to the compiler's automatic partitioner can insert
    collectives, which on a multi-device CPU can stall.)"""
    batched = jax.vmap(functools.partial(trajectory, spec))
    return per_device(batched, mesh)(problems, numerics, keys)


def per_device(batched, mesh=None):
    """``batched`` (a function of arrays with a leading runs axis, e.g. a ``vmap``) applied
    by each device of ``mesh`` (axis ``"runs"``) to its own slice, with ``jax.shard_map``;
    ``batched`` itself without a mesh or with one device. For independent runs: nothing
    is communicated."""
    if mesh is None or mesh.size == 1:
        return batched
    from jax.sharding import PartitionSpec

    runs = PartitionSpec("runs")
    # check_vma=False: loops whose carries start from constants (diffrax's solver state,
    # reverse-mode cotangents) need not be marked as varying over the runs axis; every
    # value is per device anyway.
    return jax.shard_map(batched, mesh=mesh, in_specs=runs, out_specs=runs, check_vma=False)


batched_trajectory = jax.jit(_batched_trajectory, static_argnums=(0, 4))
batched_trajectory.__doc__ = _batched_trajectory.__doc__
# The same for CPUs, whose LLVM back end at -O1 compiled the W1 sweep about 20% faster
# than at the default -O2, and ran it as fast (benchmarks/run.py).
# Region-based copy insertion removes the copy of the d x n feature carry that XLA makes at
# the top of every training step (seen in the optimised HLO of W2's loop), an extra read
# and write of the largest array (one copy at the end of the step remains; see
# docs/performance.md, section 3).
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1,
                        "xla_cpu_copy_insertion_use_region_analysis": True}
_batched_trajectory_cpu = jax.jit(_batched_trajectory, static_argnums=(0, 4),
                                  compiler_options=CPU_COMPILER_OPTIONS)


def _stack(trees: list):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


@functools.lru_cache(maxsize=4096)
def _seed_key(seed: int, impl: str, x64: bool) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` on the host, computed once per seed (and PRNG
    implementation and precision mode, which it depends on) rather than once per chunk:
    each call is a device dispatch of about a millisecond."""
    key = np.asarray(jax.random.PRNGKey(seed))
    key.setflags(write=False)
    return key


def batch_inputs(sweep: Sweep, group: Group, runs: np.ndarray):
    """Stacked ``(problems, numerics, keys, class_counts)`` (numpy) for runs of one group,
    the problems padded to the group's ``n_pad``. Call inside ``jax.enable_x64(group.x64)``.

    Problems, numerics and keys are built once per distinct value (numerics are shared by
    runs that differ only in their seed), which keeps host time per run small."""
    problems, numerics, keys, counts_list = [], [], [], []
    problem_cache: dict[tuple, Any] = {}
    numeric_cache: dict[tuple, Any] = {}
    impl, x64 = str(jax.config.jax_default_prng_impl), bool(jax.config.jax_enable_x64)
    for index in runs:
        cfg = sweep.config(int(index))
        counts = class_counts_of(cfg)
        if counts not in problem_cache:
            problem_cache[counts] = make_problem(counts, group.n_pad, host=True)
        not_seed = tuple(v for name, v in vars(cfg).items() if name != "seed")
        if not_seed not in numeric_cache:
            numeric_cache[not_seed] = numeric_of(cfg, host=True)
        problems.append(problem_cache[counts])
        numerics.append(numeric_cache[not_seed])
        keys.append(_seed_key(cfg.seed, impl, x64))
        counts_list.append(counts)
    return _stack(problems), _stack(numerics), np.stack(keys), np.array(counts_list, np.int32)


def uses_lapack(spec: Spec) -> bool:
    """Whether a run of ``spec`` calls jaxlib's LAPACK kernels: the QR of the aligned
    initialisation, the SVD / eigendecomposition of the geometry metrics and of the spectral
    optimisers, and the linear solves of the implicit flow solver. Batched, these kernels
    wait on the CPU thread pool that several host devices share, which can stall; sweeps
    run such groups on one CPU device (the reduced simulator has its own Cholesky)."""
    method = METHODS[spec.method]
    return (spec.init == "aligned" or bool(spec.geometry) or method.lapack
            or (method.is_flow and SOLVERS[spec.solver].implicit))


def run_sharding(devices: Sequence | None = None):
    """Sharding of a batch of runs: leading axis split over a 1-D mesh ``"runs"``."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = list(devices or jax.local_devices())
    return NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))


def _chunk_inputs(sweep: Sweep, group: Group, runs: np.ndarray, batch: int, sharding):
    """Device inputs of a chunk padded to ``batch`` runs (repeating the last), and counts."""
    padded = np.concatenate([runs, np.repeat(runs[-1:], batch - len(runs))])
    *inputs, counts = batch_inputs(sweep, group, padded)
    return jax.device_put(tuple(inputs), sharding), counts


def _program(sharding):
    cpu = sharding.mesh.devices.flat[0].platform == "cpu"
    return _batched_trajectory_cpu if cpu else batched_trajectory


def lower_group(sweep: Sweep, group: Group, batch: int, sharding):
    """The lowered (not yet compiled) program of a group's chunks of ``batch`` runs."""
    with jax.enable_x64(group.x64):
        inputs, _ = _chunk_inputs(sweep, group, group.runs[:batch], batch, sharding)
        return _program(sharding).lower(group.spec, *inputs, sharding.mesh)


def launch_chunk(sweep: Sweep, group: Group, runs: np.ndarray, batch: int,
                 sharding=None, executable=None) -> Callable[[], dict[str, np.ndarray]]:
    """Start simulating the runs of one chunk and return without waiting for the devices
    (JAX dispatches asynchronously): the returned function waits and gives
    :func:`compute_chunk`'s arrays. A sweep launches the next chunk before it collects and
    saves the previous one, so that the host's work overlaps the devices'."""
    sharding = sharding or run_sharding()
    with jax.enable_x64(group.x64):
        inputs, counts = _chunk_inputs(sweep, group, runs, batch, sharding)
        if executable is None:
            traj = _program(sharding)(group.spec, *inputs, sharding.mesh)
        else:
            traj = executable(*inputs)

    def collect() -> dict[str, np.ndarray]:
        out = flatten_trajectory(jax.tree.map(lambda a: np.asarray(a)[: len(runs)], traj))
        out["class_counts"] = counts[: len(runs)]
        out["diverged"] = (out["diverged_step"] >= 0).astype(np.int8)
        out["index"] = np.asarray(runs, np.int64)
        return out

    return collect


def compute_chunk(sweep: Sweep, group: Group, runs: np.ndarray, batch: int,
                  sharding=None, executable=None) -> dict[str, np.ndarray]:
    """Simulate the runs of one chunk; arrays with a leading run axis (padding removed).

    The batch is padded to ``batch`` runs (a multiple of the number of devices) by
    repeating the last run, so every chunk of a group has one shape and compiles once, and
    is sharded with ``sharding`` (default :func:`run_sharding` over the local devices).
    ``executable``: the group's program compiled ahead (:func:`lower_group`), else the
    jitted function compiles it on first use."""
    return launch_chunk(sweep, group, runs, batch, sharding, executable)()


def flatten_trajectory(traj) -> dict[str, np.ndarray]:
    """Named arrays of a (batched) Trajectory, named as in ``simulate``'s JSON: a dict field
    ``geometry`` gives ``geometry_<key>``, a NamedTuple field (the flow's statistics) gives
    its own field names (``status`` -> ``solver_status``); ``params`` is left out."""
    out: dict[str, np.ndarray] = {}
    for field in traj._fields:
        value = getattr(traj, field)
        if field == "params" or value is None:
            continue
        if isinstance(value, dict):
            out.update({f"{field}_{key}": np.asarray(v) for key, v in value.items()})
        elif hasattr(value, "_fields"):
            out.update({RENAMED.get(sub, sub): np.asarray(getattr(value, sub))
                        for sub in value._fields})
        else:
            out[field] = np.asarray(value)
    out["diverged_step"] = out["diverged_step"].astype(np.int32)
    return out


# --------------------------------------------------------------------------------------
# Parts directory: manifest and atomically written chunks
# --------------------------------------------------------------------------------------


def parts_dir(out) -> str:
    return os.fspath(out) + ".parts"


def _chunk_path(parts: str, chunk_id: int) -> str:
    return os.path.join(parts, f"chunk-{chunk_id:06d}.npz")


def _atomic_write(path: str, write: Callable, suffix: str = ".tmp") -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _describe_difference(old: dict, new: dict) -> str:
    old_flat = {**{f"{k}": v for k, v in old.get("base", {}).items()},
                **{f"{k} (swept)": v for k, v in old.get("axes", {}).items()}}
    new_flat = {**{f"{k}": v for k, v in new.get("base", {}).items()},
                **{f"{k} (swept)": v for k, v in new.get("axes", {}).items()}}
    diffs = [f"{k}: {old_flat.get(k, '-')!r} there, {new_flat.get(k, '-')!r} now"
             for k in sorted(set(old_flat) | set(new_flat)) if old_flat.get(k) != new_flat.get(k)]
    return "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "") or "format version"


def _open_parts(out: str, the_plan: Plan) -> tuple[str, Plan]:
    """Create ``<out>.parts`` with its manifest, or check an existing one matches the sweep.

    Resuming keeps the chunk size and buckets recorded in the manifest (so a different
    memory budget or device does not change the chunk layout)."""
    parts = parts_dir(out)
    manifest_path = os.path.join(parts, "manifest.json")
    sweep = the_plan.sweep
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("config_hash") != sweep.config_hash:
            raise ConfigError(
                f"{parts} holds the unfinished parts of a different sweep "
                f"({_describe_difference(manifest.get('sweep', {}), sweep.to_dict())}); "
                f"refusing to mix them: rerun the original command to finish it, or remove "
                f"{parts} (and choose another --out) to start this one")
        recorded = manifest.get("buckets", 1)  # older manifests: one padded size per group
        if manifest["chunk_size"] != the_plan.chunk_size or recorded != the_plan.buckets:
            the_plan = plan(sweep, chunk_size=manifest["chunk_size"], buckets=recorded)
        return parts, the_plan
    os.makedirs(parts, exist_ok=True)
    manifest = {"format": FORMAT_VERSION, "config_hash": sweep.config_hash,
                "chunk_size": the_plan.chunk_size, "buckets": the_plan.buckets,
                "num_chunks": len(the_plan.chunks),
                "num_runs": sweep.size, "sweep": sweep.to_dict()}
    _atomic_write(manifest_path, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return parts, the_plan


def _save_chunk(parts: str, chunk_id: int, arrays: dict[str, np.ndarray]) -> None:
    _atomic_write(_chunk_path(parts, chunk_id), lambda f: np.savez(f, **arrays))


# --------------------------------------------------------------------------------------
# Assembling the netCDF file, one chunk at a time
# --------------------------------------------------------------------------------------


def _coordinate_values(values: tuple) -> np.ndarray:
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int8)
    return np.array(values)


def _contiguous_segments(runs: np.ndarray, shape: tuple[int, ...]):
    """Split sorted flat indices into ``(start, stop)`` pieces contiguous along the last dim."""
    if not shape:
        yield 0, 1
        return
    last = shape[-1]
    start = 0
    for i in range(1, len(runs) + 1):
        if i == len(runs) or runs[i] != runs[i - 1] + 1 or runs[i] % last == 0:
            yield start, i
            start = i


def _file_attrs(the_plan: Plan) -> dict:
    sweep = the_plan.sweep
    return {
        "title": "ssm-jax sweep",
        "ssm_jax_format": FORMAT_VERSION,
        "config_hash": sweep.config_hash,
        "config": json.dumps(sweep.base.to_dict()),
        "sweep": json.dumps(sweep.to_dict()),
        "swept_fields": json.dumps(sweep.fields),
        "num_runs": sweep.size,
        "chunk_size": the_plan.chunk_size,
        "buckets": str(the_plan.buckets),
        "time_convention": "t = lr x step (a coordinate over every swept dimension and save)",
        "missing_values": "NaN: a learn_time/half_time never reached, a save or class index a "
                          "run does not have, or values after a divergence (see diverged)",
    }


@dataclass(frozen=True)
class _Variable:
    dims: tuple[str, ...]  # after the sweep dims
    dtype: str
    fill: Any


def _variable_dims(name: str, shape: tuple[int, ...], saves: int, k: int) -> tuple[str, ...]:
    """Dims of a per-run array: from :data:`VARIABLES`, else from its shape (a leading axis
    of length ``saves`` is ``save``, axes of length ``k`` are ``class``, ``class2``)."""
    if name in VARIABLES:
        return VARIABLES[name][0]
    if name == "t":
        return ("save",)
    dims: list[str] = []
    for axis, size in enumerate(shape):
        if axis == 0 and size == saves:
            dims.append("save")
        elif size == k and "class2" not in dims:
            dims.append("class2" if "class" in dims else "class")
        else:
            dims.append(f"{name}_dim{axis}")
    return tuple(dims)


def _layout(the_plan: Plan, parts: str) -> dict[str, _Variable]:
    """Every variable of the file, from the first chunk of each group (their union: a
    variable that only some groups have is filled elsewhere)."""
    layout: dict[str, _Variable] = {}
    firsts = {}
    for chunk in the_plan.chunks:
        firsts.setdefault(chunk.group, chunk.id)
    for group, chunk_id in firsts.items():
        spec, k = the_plan.groups[group].spec, the_plan.groups[group].num_classes
        with np.load(_chunk_path(parts, chunk_id)) as data:
            for name in data.files:
                if name == "index" or name in layout:
                    continue
                array = data[name]
                kind = array.dtype.kind
                if name == "class_counts":
                    dtype, fill = "i4", 0
                elif kind == "f":
                    dtype, fill = array.dtype.str[1:], FLOAT_FILL
                elif kind == "b" or name == "diverged":
                    dtype, fill = "i1", 0
                else:
                    dtype, fill = "i4", -1
                dims = _variable_dims(name, array.shape[1:], spec.saves, k)
                layout[name] = _Variable(dims, dtype, fill)
    order = ["t", *VARIABLES]
    return dict(sorted(layout.items(),
                       key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def _assemble(the_plan: Plan, parts: str, out: str) -> None:
    """Stream the chunk files, one at a time, into a netCDF4 file written atomically."""
    import netCDF4

    sweep = the_plan.sweep
    dims, shape = sweep.dims, sweep.shape
    layout = _layout(the_plan, parts)
    sizes = {"save": the_plan.saves, "class": the_plan.num_classes,
             "class2": the_plan.num_classes}
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".nc.tmp")
    os.close(fd)
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            for name, size in zip(dims, shape, strict=True):
                nc.createDimension(name, size)
            for (field, values), name in zip(sweep.axes, dims, strict=True):
                coord = _coordinate_values(values)
                var = nc.createVariable(name, str if coord.dtype == object else coord.dtype,
                                        (name,))
                var[:] = coord
                var.setncattr("long_name", f"swept option {field}")
            with np.load(_chunk_path(parts, the_plan.chunks[0].id)) as first:
                extra = {d: first[n].shape[1 + v.dims.index(d)] for n, v in layout.items()
                         for d in v.dims if d not in sizes and n in first.files}
            sizes.update(extra)
            used = {d for v in layout.values() for d in v.dims}
            for name in ("save", "class", "class2", *extra):
                if name in used:
                    nc.createDimension(name, sizes[name])
                    if name in ("save", "class"):
                        nc.createVariable(name, "i4", (name,))[:] = np.arange(sizes[name])
            for name, var_layout in layout.items():
                var = nc.createVariable(name, var_layout.dtype, (*dims, *var_layout.dims),
                                        fill_value=False)
                description = (VARIABLES[name][1] if name in VARIABLES else
                               "time t = lr x step of each save point (NaN past a run's saves)"
                               if name == "t" else f"trajectory field {name} (as in "
                               f"simulate's JSON)")
                var.setncattr("description", description)
                if "save" in var_layout.dims and name != "t":
                    var.setncattr("coordinates", "t")
            for key, value in _file_attrs(the_plan).items():
                nc.setncattr(key, value)
            for chunk in the_plan.chunks:
                with np.load(_chunk_path(parts, chunk.id)) as data:
                    _write_chunk(nc, layout, sizes, data, shape)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _padded(array: np.ndarray | None, runs: int, variable: _Variable, sizes: dict) -> np.ndarray:
    """A chunk's array padded to the file's extents (a missing variable is all fill)."""
    target = (runs, *(sizes[d] if d in sizes else None for d in variable.dims))
    if array is not None and array.shape == target:
        return array
    target = tuple(t if t is not None else a for t, a in
                   zip(target, array.shape if array is not None else target, strict=True))
    out = np.full(target, variable.fill, dtype=variable.dtype)
    if array is not None:
        out[tuple(slice(0, s) for s in array.shape)] = array
    return out


def _write_chunk(nc, layout: dict[str, _Variable], sizes: dict, data,
                 shape: tuple[int, ...]) -> None:
    runs = data["index"]
    arrays = {name: _padded(data[name] if name in data.files else None, len(runs), var, sizes)
              for name, var in layout.items()}
    for start, stop in _contiguous_segments(runs, shape):
        if shape:
            position = np.unravel_index(int(runs[start]), shape)
            where = (*position[:-1], slice(position[-1], position[-1] + stop - start))
        else:
            where = ()
        for name, array in arrays.items():
            piece = array[start:stop]
            nc.variables[name][where] = piece if shape else piece[0]


# --------------------------------------------------------------------------------------
# Running a sweep
# --------------------------------------------------------------------------------------


def _read_hash(path: str) -> str | None:
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            return str(nc.getncattr("config_hash"))
    except (OSError, AttributeError):
        return None


def run(
    sweep: Sweep,
    out=None,
    *,
    chunk_size: int | None = None,
    memory_budget="1G",
    progress: bool = True,
    devices: Sequence | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    wait_poll_s: float = 1.0,
    lazy: bool = False,
    buckets="auto",
):
    """Run a sweep and return its :class:`xarray.Dataset` (see the module docstring).

    Args:
        sweep: from :func:`make_sweep` or :func:`sweep_from_options`.
        out: netCDF path. Finished chunks go to ``<out>.parts/`` first, so a killed run
            started again finishes only the missing chunks. ``None``: a temporary folder,
            and the Dataset is returned in memory.
        chunk_size, memory_budget: runs per chunk, or bytes per device to choose it from.
        progress: show a progress bar (runs done, runs/s, time left) on stderr.
        devices: devices to shard each chunk over (default: all local devices).
        process_index, process_count: for several processes (hosts) sharing the work on a
            shared filesystem: process ``p`` computes chunks ``p, p + P, ...``; process 0
            waits for all chunks and writes ``out``. Default ``jax.process_index()`` and
            ``jax.process_count()`` (set by ``jax.distributed.initialize``).
        on_chunk: called with the chunk id after each chunk this call computed is saved.
        lazy: return the Dataset opened lazily from ``out`` (see :func:`load`) instead of
            loaded in memory, for sweeps whose results do not fit in memory.
        buckets: padded sizes per group, see :func:`plan` (``"auto"``: by cost on a CPU).

    Returns the Dataset, or ``None`` on processes other than 0.
    Raises :class:`ConfigError` for a bad sweep, or an ``out`` (or its parts) that holds a
    different sweep."""
    devices = list(devices or jax.local_devices())
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process_index={process_index} is out of range 0..{process_count - 1}")
    the_plan = plan(sweep, chunk_size=chunk_size, memory_budget=memory_budget,
                    num_devices=len(devices), buckets=buckets)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="ssm-jax-sweep-") as tmp:
            return run(sweep, os.path.join(tmp, "sweep.nc"), chunk_size=the_plan.chunk_size,
                       progress=progress, devices=devices, process_index=0, process_count=1,
                       on_chunk=on_chunk, buckets=the_plan.buckets)
    out = os.fspath(out)
    if os.path.exists(out):
        existing = _read_hash(out)
        if existing != sweep.config_hash:
            raise ConfigError(f"{out} already exists and holds a different sweep (or is not a "
                              f"sweep file): choose another --out or remove it")
        if os.path.isdir(parts_dir(out)) and process_index == 0:
            shutil.rmtree(parts_dir(out))
        return load(out, lazy=lazy) if process_index == 0 else None
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    parts, the_plan = _open_parts(out, the_plan)
    _compute_missing(the_plan, parts, devices, process_index, process_count, progress,
                     on_chunk)
    if process_index != 0:
        return None
    _wait_for_chunks(the_plan, parts, progress, wait_poll_s)
    _assemble(the_plan, parts, out)
    shutil.rmtree(parts, ignore_errors=True)
    return load(out, lazy=lazy)


def _done_chunks(the_plan: Plan, parts: str) -> set[int]:
    return {c.id for c in the_plan.chunks if os.path.exists(_chunk_path(parts, c.id))}


def _progress_bar(the_plan: Plan, done: set[int], enabled: bool, desc: str):
    from tqdm.auto import tqdm

    initial = sum(c.size for c in the_plan.chunks if c.id in done)
    return tqdm(total=the_plan.sweep.size, initial=initial, unit="run", desc=desc,
                disable=not enabled, smoothing=0.1, dynamic_ncols=True)


def _compute_missing(the_plan: Plan, parts: str, devices: list, process_index: int,
                     process_count: int, progress: bool, on_chunk) -> None:
    done = _done_chunks(the_plan, parts)
    todo = [c for c in the_plan.chunks
            if c.id not in done and c.id % process_count == process_index]
    shardings = {}  # one mesh for the whole sweep; one device for LAPACK groups on CPUs
    layouts = {}  # group -> (sharding, batch)
    for chunk in todo:
        if chunk.group in layouts:
            continue
        group = the_plan.groups[chunk.group]
        alone = len(devices) > 1 and devices[0].platform == "cpu" and uses_lapack(group.spec)
        used = devices[:1] if alone else devices
        if len(used) not in shardings:
            shardings[len(used)] = run_sharding(used)
        # One batch size per group (a multiple of the device count): one compilation.
        batch = min(the_plan.chunk_size, len(group.runs))
        layouts[chunk.group] = (shardings[len(used)], -(-batch // len(used)) * len(used))
    with _progress_bar(the_plan, done, progress, "sweep") as bar, \
            _compile_ahead(the_plan, layouts) as executables:
        def finish(chunk, collect):
            _save_chunk(parts, chunk.id, collect())
            bar.update(chunk.size)
            if on_chunk is not None:
                on_chunk(chunk.id)

        # The next chunk is launched before the previous one is collected and saved, so
        # the host's work (inputs, copies, the chunk file) overlaps the devices'. An
        # interruption while launching still saves the previous chunk.
        pending = None
        for chunk in todo:
            sharding, batch = layouts[chunk.group]
            try:
                executable = executables[chunk.group].result() if executables else None
                collect = launch_chunk(the_plan.sweep, the_plan.groups[chunk.group],
                                       the_plan.runs_of(chunk), batch, sharding, executable)
            except BaseException:
                if pending is not None:
                    finish(*pending)
                raise
            if pending is not None:
                finish(*pending)
            pending = (chunk, collect)
        if pending is not None:
            finish(*pending)


@contextlib.contextmanager
def _compile_ahead(the_plan: Plan, layouts: dict):
    """With several groups to run, lower their programs (in order, in this thread) and
    compile them concurrently, one thread per core, while the first groups' chunks run:
    XLA compiles one program on one core, so a sweep of G groups waits for about one
    compilation instead of G. Yields ``{group: Future of the compiled program}``, or
    ``{}`` for a single group (compiled on first use)."""
    if len(layouts) < 2:
        yield {}
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(len(layouts), os.cpu_count() or 1))
    try:
        futures = {}
        for g, (sharding, batch) in layouts.items():
            lowered = lower_group(the_plan.sweep, the_plan.groups[g], batch, sharding)
            futures[g] = pool.submit(lowered.compile)
        yield futures
    finally:  # interrupted: do not wait for compilations nobody will use
        pool.shutdown(wait=False, cancel_futures=True)


def _wait_for_chunks(the_plan: Plan, parts: str, progress: bool, poll_s: float) -> None:
    done = _done_chunks(the_plan, parts)
    if len(done) == len(the_plan.chunks):
        return
    with _progress_bar(the_plan, done, progress, "waiting for other processes") as bar:
        while len(done) < len(the_plan.chunks):
            time.sleep(poll_s)
            now = _done_chunks(the_plan, parts)
            bar.update(sum(c.size for c in the_plan.chunks if c.id in now - done))
            done = now


# --------------------------------------------------------------------------------------
# Reading results
# --------------------------------------------------------------------------------------


def load(path, *, lazy: bool = False):
    """Open a sweep file as an :class:`xarray.Dataset` (one call).

    Coordinates get back their Python types (strings, booleans), ``diverged`` is boolean,
    and ``attrs["config"]`` / ``attrs["sweep"]`` are JSON text of the base configuration
    and the axes. ``lazy=True`` leaves the data on disk (for sweeps larger than memory)."""
    import xarray as xr

    ds = xr.open_dataset(os.fspath(path), engine="netcdf4")
    if not lazy:
        loaded = ds.load()
        ds.close()
        ds = loaded
    sweep_info = json.loads(ds.attrs["sweep"])
    for field, values in sweep_info["axes"].items():
        if all(isinstance(v, bool) for v in values):
            ds = ds.assign_coords({dim_name(field): np.array(values, dtype=bool)})
    ds["diverged"] = ds["diverged"].astype(bool)
    return ds


def config_of(ds, **point) -> Config:
    """The Config of one run of a loaded sweep, e.g. ``config_of(ds, ratio=10, seed=0)``."""
    base = json.loads(ds.attrs["config"])
    for key in ("counts", "weights"):
        if base.get(key) is not None:
            base[key] = tuple(base[key])
    fields = json.loads(ds.attrs["swept_fields"])
    unknown = set(point) - set(fields) - {dim_name(f) for f in fields}
    if unknown:
        raise ConfigError(f"{sorted(unknown)} are not swept; swept fields are {fields}")
    for field in fields:
        value = point.get(field, point.get(dim_name(field)))
        if value is None:
            raise ConfigError(f"config_of needs a value for every swept field; missing {field!r}")
        base[field] = value.item() if isinstance(value, np.generic) else value
    return Config(**base)


def delay_ratio(ds, time: str = "learn_time"):
    """Minority/majority delay ratio of every run: mean ``time`` (learn_time or half_time)
    of the minority classes over that of the majority classes (those with the largest
    count). NaN when a class never reached the threshold or the run is balanced."""
    counts = ds["class_counts"]
    majority = counts == counts.max("class")
    minority = (~majority) & (counts > 0)
    values = ds[time]
    # A never-reached time (NaN) in any real class makes the ratio NaN.
    never = (values.isnull() & (counts > 0)).any("class")
    major = values.where(majority).mean("class")
    minor = values.where(minority).mean("class")
    ratio = (minor / major).where(~never & minority.any("class"))
    ratio.name = f"delay_ratio_{time}"
    ratio.attrs["description"] = (f"mean {time} of the minority classes / mean {time} of the "
                                  f"majority classes; NaN if a class never reached it")
    return ratio


__all__ = [
    "VARIABLES",
    "Sweep",
    "batched_trajectory",
    "compute_chunk",
    "launch_chunk",
    "run_sharding",
    "per_device",
    "config_of",
    "delay_ratio",
    "estimate_run_bytes",
    "load",
    "make_sweep",
    "parse_bytes",
    "plan",
    "read_config_file",
    "run",
    "sweep_from_options",
    "sweepable_fields",
]

