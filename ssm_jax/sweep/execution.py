"""Executing a chunk of runs: ``vmap`` of :func:`ssm_jax.simulate.trajectory`, sharded.

A chunk's runs (all of one group, see :mod:`~ssm_jax.sweep.planning`) are stacked into
:class:`~ssm_jax.problem.Problem`, :class:`~ssm_jax.simulate.Numeric` and PRNG-key arrays
with a leading runs axis, padded to the group's batch size so that every chunk of a group
has one shape and compiles once, and split over the devices of a 1-D mesh ``"runs"``. Run
``i`` uses the key ``PRNGKey(seed_i)``, exactly as :func:`~ssm_jax.simulate.simulate`
does, so every entry equals the corresponding single run. The result is a dict of numpy
arrays named as in ``simulate``'s JSON, the contents of one chunk file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ..problem import class_counts_of, make_problem
from ..registry import METHODS, SOLVERS
from ..simulate import Spec, numeric_of, trajectory
from .definition import Sweep
from .planning import Group

# Sub-fields renamed to their name in simulate's JSON.
RENAMED = {"status": "solver_status"}


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


# PRNG keys of seeds already seen, per (PRNG implementation, x64): {seed: key}.
_KEYS: dict[tuple[str, bool], dict[int, np.ndarray]] = {}
_MAX_KEYS = 1 << 20  # a bound on the table (8 bytes a key with threefry)


@jax.jit
def _keys_of(seeds):
    return jax.vmap(jax.random.PRNGKey)(seeds)


def seed_keys(seeds) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` of each of ``seeds`` (stacked, numpy), as
    :func:`~ssm_jax.simulate.simulate` computes it for a single run. Each distinct seed is
    computed once per process (and PRNG implementation and precision mode, which the key
    depends on): a key is a device computation of about a millisecond, so a sweep of
    100,000 seeds computes its new ones in one batched call (padded to a power of two,
    which bounds the compilations) rather than one call per seed."""
    seeds = np.asarray(seeds, dtype=np.int64)
    impl, x64 = str(jax.config.jax_default_prng_impl), bool(jax.config.jax_enable_x64)
    table = _KEYS.setdefault((impl, x64), {})
    unique, inverse = np.unique(seeds, return_inverse=True)
    missing = [seed for seed in unique.tolist() if seed not in table]
    if len(table) + len(missing) > _MAX_KEYS:
        table.clear()
        missing = unique.tolist()
    if len(missing) <= 8:
        new = [np.asarray(jax.random.PRNGKey(seed)) for seed in missing]
    else:
        size = 1 << (len(missing) - 1).bit_length()
        padded = np.zeros(size, dtype=np.uint32)
        padded[:len(missing)] = missing
        new = list(np.asarray(_keys_of(padded))[:len(missing)])
    for seed, key in zip(missing, new, strict=True):
        key.setflags(write=False)
        table[seed] = key
    return np.stack([table[seed] for seed in unique.tolist()])[inverse.reshape(-1)]


def batch_inputs(sweep: Sweep, group: Group, runs: np.ndarray):
    """Stacked ``(problems, numerics, keys, class_counts)`` (numpy) for runs of one group,
    the problems padded to the group's ``n_pad``. Call inside ``jax.enable_x64(group.x64)``.

    Runs that differ only in their seed share their problem and numerics, so these are
    built once per point of the other axes (:attr:`Sweep.seed_count`) and repeated with
    numpy; the keys come from :func:`seed_keys`. Host time per run stays small for sweeps
    of many seeds."""
    runs = np.asarray(runs, dtype=np.int64)
    points, where = np.unique(runs // sweep.seed_count, return_inverse=True)
    problems, numerics, counts_list = [], [], []
    problem_cache: dict[tuple, Any] = {}
    for point in points.tolist():
        cfg = sweep.config(point * sweep.seed_count)
        counts = class_counts_of(cfg)
        if counts not in problem_cache:
            problem_cache[counts] = make_problem(counts, group.n_pad, host=True)
        problems.append(problem_cache[counts])
        numerics.append(numeric_of(cfg, host=True))
        counts_list.append(counts)
    where = where.reshape(-1)
    return (jax.tree.map(lambda a: a[where], _stack(problems)),
            jax.tree.map(lambda a: a[where], _stack(numerics)),
            seed_keys(sweep.seeds_of(runs)), np.array(counts_list, np.int32)[where])


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
    its own field names (``status`` -> ``solver_status``); ``params`` and ``schedule`` (a
    sweep's switch times are its ``reweight_from`` / ``reweight_until``) are left out."""
    out: dict[str, np.ndarray] = {}
    for field in traj._fields:
        value = getattr(traj, field)
        if field in ("params", "schedule") or value is None:
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
