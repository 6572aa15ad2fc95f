"""Running a sweep: plan it, compute the chunks its parts lack, assemble the file; or,
without a file, compute every chunk into the Dataset in memory.

:func:`run` is resumable and can be shared by several processes (hosts) on one filesystem:
process ``p`` of ``P`` computes chunks ``p, p + P, ...`` into the parts folder
(:mod:`~ssm_jax.sweep.store`), and process 0 waits for every chunk and writes the file
(:mod:`~ssm_jax.sweep.netcdf`) from chunk files it has checked (a damaged or foreign one is
computed again, by process 0). Process 0 holds the output's lock while it runs, so a
second sweep into the same file is refused. Within a process, chunks are launched one ahead
of the one being saved, and the programs of several groups compile concurrently while the
first runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Sequence

import jax

from ..config import ConfigError
from .analysis import load
from .definition import Sweep
from .execution import launch_chunk, lower_group, run_sharding, uses_lapack
from .netcdf import DatasetBuilder, assemble, read_hash
from .planning import Chunk, Plan, plan
from .store import done_chunks, open_parts, parts_dir, save_chunk, writer_lock, written_chunks


def run(
    sweep: Sweep,
    out=None,
    *,
    chunk_size: int | None = None,
    memory_budget=None,
    progress: bool = True,
    devices: Sequence | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    wait_poll_s: float = 1.0,
    lazy: bool = False,
    buckets="auto",
    matmul_precision: str | None = None,
):
    """Run a sweep and return its :class:`xarray.Dataset` (see :mod:`ssm_jax.sweep`).

    Args:
        sweep: from :func:`make_sweep` or :func:`sweep_from_options`.
        out: netCDF path. Finished chunks go to ``<out>.parts/`` first, so a killed run
            started again finishes only the missing chunks. ``None``: nothing is written;
            each chunk goes straight into the Dataset, returned in memory (the same
            Dataset as the file's, see :class:`~ssm_jax.sweep.netcdf.DatasetBuilder`).
        chunk_size, memory_budget: runs per chunk, or bytes per device to choose it from
            (default: from the device's free memory on a GPU or TPU, 1G and at most
            :data:`~ssm_jax.sweep.planning.CPU_RUNS_PER_DEVICE` runs per device on a CPU;
            see :func:`~ssm_jax.sweep.planning.plan`).
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
        matmul_precision: precision of the programs' float32 matrix products,
            ``"highest"`` (default), ``"high"`` or ``"default"`` (JAX's: TF32 on NVIDIA
            GPUs); see :data:`~ssm_jax.sweep.planning.MATMUL_PRECISIONS`. A resumed sweep
            keeps the precision it started with.

    Returns the Dataset, or ``None`` on processes other than 0.
    Raises :class:`ConfigError` for a bad sweep, an ``out`` (or its parts) that holds a
    different sweep, or an ``out`` that another sweep is writing (its lock is held)."""
    devices = list(devices or jax.local_devices())
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ConfigError(f"process_index={process_index} is out of range 0..{process_count - 1}")
    the_plan = plan(sweep, chunk_size=chunk_size, memory_budget=memory_budget,
                    num_devices=len(devices), buckets=buckets, devices=devices,
                    matmul_precision=matmul_precision)
    if out is None:
        builder = DatasetBuilder(the_plan)
        _compute(the_plan, the_plan.chunks, set(), devices, progress, on_chunk, builder.add)
        return builder.dataset()
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # Processes other than 0 only add checked chunk files, so only the one that assembles
    # the file needs to exclude other sweeps.
    with writer_lock(out) if process_index == 0 else contextlib.nullcontext():
        if os.path.exists(out):
            existing = read_hash(out)
            if existing != sweep.config_hash:
                raise ConfigError(f"{out} already exists and holds a different sweep (or is "
                                  f"not a sweep file): choose another --out or remove it")
            if os.path.isdir(parts_dir(out)) and process_index == 0:
                shutil.rmtree(parts_dir(out))
            return load(out, lazy=lazy) if process_index == 0 else None
        parts, the_plan = open_parts(out, the_plan)
        _compute_missing(the_plan, parts, devices, process_index, process_count, progress,
                         on_chunk)
        if process_index != 0:
            return None
        _wait_for_chunks(the_plan, parts, progress, wait_poll_s)
        if process_count > 1:  # check the others' chunk files; compute here any that fail
            _compute_missing(the_plan, parts, devices, 0, 1, progress, on_chunk)
        assemble(the_plan, parts, out)
        shutil.rmtree(parts, ignore_errors=True)
    return load(out, lazy=lazy)


def _progress_bar(the_plan: Plan, done: set[int], enabled: bool, desc: str):
    from tqdm.auto import tqdm

    initial = sum(c.size for c in the_plan.chunks if c.id in done)
    return tqdm(total=the_plan.sweep.size, initial=initial, unit="run", desc=desc,
                disable=not enabled, smoothing=0.1, dynamic_ncols=True)


def _compute_missing(the_plan: Plan, parts: str, devices: list, process_index: int,
                     process_count: int, progress: bool, on_chunk) -> None:
    mine = [c for c in the_plan.chunks if c.id % process_count == process_index]
    done = done_chunks(the_plan, parts, mine)
    todo = [c for c in mine if c.id not in done]

    def save(chunk: Chunk, arrays: dict) -> None:
        save_chunk(parts, chunk.id, arrays, the_plan.sweep.config_hash)

    _compute(the_plan, todo, done, devices, progress, on_chunk, save)


def _compute(the_plan: Plan, todo: list[Chunk], done: set[int], devices: list, progress: bool,
             on_chunk, store: Callable[[Chunk, dict], None]) -> None:
    """Compute the chunks ``todo`` (in order) and hand each one's arrays to ``store``."""
    if not todo:
        return
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
    # The programs are traced (and so compiled) with the plan's matmul precision.
    with _progress_bar(the_plan, done, progress, "sweep") as bar, \
            jax.default_matmul_precision(the_plan.matmul_precision), \
            _compile_ahead(the_plan, layouts) as executables:
        def finish(chunk, collect):
            store(chunk, collect())
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
    """Wait until every chunk's file exists (written by the other processes)."""
    done = written_chunks(the_plan, parts)
    if len(done) == len(the_plan.chunks):
        return
    with _progress_bar(the_plan, done, progress, "waiting for other processes") as bar:
        while len(done) < len(the_plan.chunks):
            time.sleep(poll_s)
            now = written_chunks(the_plan, parts)
            bar.update(sum(c.size for c in the_plan.chunks if c.id in now - done))
            done = now
