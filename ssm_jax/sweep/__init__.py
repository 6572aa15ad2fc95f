"""Parameter sweeps: vmapped, chunked, sharded over devices, resumable, to labelled arrays.

A :class:`Sweep` is a base :class:`~ssm_jax.config.Config` plus *axes*: options with a list
of values. Its runs are the Cartesian product of the axes. :func:`run` executes them as

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
  memory budget (:func:`estimate_run_bytes`; on a GPU or TPU by default the device's free
  memory, so that small runs go in as few chunks as fit), and every chunk of a group is
  padded to the same batch size, so each group compiles once. A chunk's batch is sharded
  over the local devices with :mod:`jax.sharding` (leading axis split over a 1-D mesh
  ``"runs"``).
* **parts**: each finished chunk is written atomically to ``<out>.parts/chunk-NNNNNN.npz``
  next to a ``manifest.json`` holding the hash of the sweep; each chunk file carries the
  sweep's hash, its run ids and a checksum, checked before use (a bad one is reported and
  computed again). Started again, the same sweep computes only the missing chunks; a
  different sweep is refused (:class:`ConfigError`), and so is a second sweep writing the
  same ``out`` at once (``<out>.lock``).
  When every chunk exists they are streamed, one chunk at a time, into ``<out>`` (netCDF4,
  written to a temporary name and renamed), and the parts are removed. Without ``out``
  nothing is written: chunks go straight into the in-memory Dataset (the same Dataset).

The result is an :class:`xarray.Dataset` with one dimension per axis (named after the
option's Config field, except ``loss`` -> ``loss_fn`` because ``loss`` is a variable),
then ``save`` (save-point index) and ``class``. Times differ between learning rates
(``t = lr x step``), so ``t`` is a coordinate over every swept dimension and ``save``.
See :data:`VARIABLES` and the README section "Sweeps".

Modules, one idea each: :mod:`~ssm_jax.sweep.definition` (what a sweep is),
:mod:`~ssm_jax.sweep.planning` (groups, buckets, chunks, memory), :mod:`~ssm_jax.sweep.execution`
(computing a chunk on the devices), :mod:`~ssm_jax.sweep.store` (the parts of an unfinished
sweep), :mod:`~ssm_jax.sweep.netcdf` (the finished file), :mod:`~ssm_jax.sweep.runner`
(running a sweep, on one process or several) and :mod:`~ssm_jax.sweep.analysis` (reading
results). They are imported when first used (:mod:`ssm_jax.lazy`): defining and planning a
sweep imports no JAX, so the command line refuses a bad sweep before JAX is imported.
"""

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .analysis import config_of, delay_ratio, load, select
    from .definition import (
        MAX_RUNS,
        MAX_SEEDS,
        Sweep,
        dim_name,
        make_sweep,
        read_config_file,
        sweep_from_options,
        sweepable_fields,
    )
    from .execution import (
        CPU_COMPILER_OPTIONS,
        batch_inputs,
        batched_trajectory,
        compute_chunk,
        flatten_trajectory,
        launch_chunk,
        lower_group,
        per_device,
        run_sharding,
        seed_keys,
        uses_lapack,
    )
    from .netcdf import VARIABLES, DatasetBuilder
    from .planning import (
        ACCELERATOR_MEMORY_FRACTION,
        CPU_COMPILE_FLOPS,
        CPU_RUNS_PER_DEVICE,
        DEFAULT_MATMUL_PRECISION,
        DEFAULT_MEMORY_BUDGET,
        MATMUL_PRECISIONS,
        Chunk,
        Group,
        Plan,
        balanced_chunk,
        buckets_of,
        check_plan_options,
        device_memory_budget,
        estimate_run_bytes,
        parse_bytes,
        plan,
        resolve_buckets,
        resolve_precision,
        run_flops,
    )
    from .runner import run
    from .store import parts_dir

__getattr__, __dir__ = lazy.attach(__name__, __file__)

__all__ = [
    "ACCELERATOR_MEMORY_FRACTION",
    "CPU_COMPILER_OPTIONS",
    "CPU_COMPILE_FLOPS",
    "CPU_RUNS_PER_DEVICE",
    "DEFAULT_MATMUL_PRECISION",
    "DEFAULT_MEMORY_BUDGET",
    "MATMUL_PRECISIONS",
    "MAX_RUNS",
    "MAX_SEEDS",
    "VARIABLES",
    "Chunk",
    "DatasetBuilder",
    "Group",
    "Plan",
    "Sweep",
    "balanced_chunk",
    "batch_inputs",
    "batched_trajectory",
    "buckets_of",
    "check_plan_options",
    "compute_chunk",
    "config_of",
    "delay_ratio",
    "device_memory_budget",
    "dim_name",
    "estimate_run_bytes",
    "flatten_trajectory",
    "launch_chunk",
    "load",
    "lower_group",
    "make_sweep",
    "parse_bytes",
    "parts_dir",
    "per_device",
    "plan",
    "read_config_file",
    "resolve_buckets",
    "resolve_precision",
    "run",
    "run_flops",
    "run_sharding",
    "seed_keys",
    "select",
    "sweep_from_options",
    "sweepable_fields",
    "uses_lapack",
]
