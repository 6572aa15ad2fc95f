"""``ssm-jax sweep``: the Cartesian product of listed option values, to a netCDF file."""

from __future__ import annotations

import os
import sys
import time

from .. import sweep as sweeping
from ..config import ConfigError
from ..resources import check_fits
from .arguments import EXIT_DIVERGED, SIMULATE_OPTIONS, help_of, integer, output_file


def register(sub) -> None:
    parser = sub.add_parser(
        "sweep", help="run the Cartesian product of option lists (vmapped, chunked, resumable)",
        description="Takes the options of `simulate`; every option except --counts and "
        "--weights may be a comma-separated list (--ratio 1,2,5,10 --gamma 0,0.5,1 --seeds 8) "
        "and the sweep runs the Cartesian product. Numeric options are vmapped in one "
        "compiled function; static ones (loss, dim, method, ...) become separate compiled "
        "groups. Results: an xarray Dataset written as netCDF (load it with "
        "ssm_jax.sweep.load). Started again with the same command, an interrupted sweep "
        "finishes only the missing chunks.",
    )
    sweepable = set(sweeping.sweepable_fields())
    group = parser.add_argument_group("run configuration (lists allowed where marked [list])")
    for opt in SIMULATE_OPTIONS:
        mark = " [list]" if opt.name in sweepable else ""
        group.add_argument(opt.flag, dest=opt.name, default=None, metavar="VALUE",
                           help=help_of(opt, mark))
    group.add_argument("--seeds", type=integer("seeds", 1, sweeping.MAX_SEEDS),
                       default=None, metavar="N",
                       help="sweep over seeds 0..N-1 (instead of --seed)")
    group.add_argument("--x64", action="store_true", default=None, help="compute in float64")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="read options from a TOML file (keys are option names, lists "
                        "are swept; command-line options win)")
    parser.add_argument("--out", metavar="PATH", type=output_file,
                        help="netCDF file to write (finished chunks go to PATH.parts/ until "
                        "the sweep is complete); without it the results are only summarised")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--chunk-size", type=int, default=None, metavar="N",
                           help="runs per chunk (default: chosen from --memory-budget)")
    run_group.add_argument("--memory-budget", default=None, metavar="SIZE",
                           help="device memory per device for one chunk, e.g. 512M, 4G "
                           "(default: on a GPU or TPU half of the device's free memory, so "
                           "that the sweep goes in as few chunks as fit; on a CPU 1G, and at "
                           f"most {sweeping.CPU_RUNS_PER_DEVICE} runs per device)")
    run_group.add_argument("--matmul-precision", default=sweeping.DEFAULT_MATMUL_PRECISION,
                           metavar="|".join(sweeping.MATMUL_PRECISIONS),
                           help="precision of float32 matrix products: 'highest' (default) "
                           "is float32; 'default' is JAX's (TF32 on NVIDIA GPUs, bfloat16 on "
                           "TPUs; faster, less exact); the same on a CPU")
    run_group.add_argument("--buckets", metavar="auto|cost|N", default="auto",
                           help="runs with different numbers of examples: pad each group to "
                           "at most N sizes (1: every run to the largest n), 'cost': add a "
                           "padded size where the work it saves pays for a compilation; "
                           "'auto' (default): 'cost' on a CPU, 1 on a GPU")
    run_group.add_argument("--cpu-devices", metavar="N|auto", default=None,
                           help="on a CPU, split each chunk over N host devices ('auto': one "
                           "per core); the runs are independent, so this uses every core. "
                           "Default: 'auto', unless JAX was given a count "
                           "(JAX_NUM_CPU_DEVICES, XLA_FLAGS); 1: JAX's single CPU device")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_group.add_argument("--distributed", action="store_true",
                           help="call jax.distributed.initialize() first and share the chunks "
                           "between the processes (hosts); needs a shared filesystem for PATH")
    run_group.add_argument("--coordinator", metavar="HOST:PORT",
                           help="jax.distributed coordinator address (with --distributed, when "
                           "not detected from SLURM/Open MPI/TPU)")
    run_group.add_argument("--num-processes", type=int, metavar="P",
                           help="jax.distributed number of processes")
    run_group.add_argument("--process-id", type=int, metavar="I",
                           help="jax.distributed id of this process")
    parser.set_defaults(handler=run)


def options_of(args) -> dict:
    """Option values from --config FILE, overridden by those given on the command line."""
    values = sweeping.read_config_file(args.config) if args.config else {}
    if args.seed is not None and args.seeds is not None:
        raise ConfigError("give either --seed (a value or a list) or --seeds N, not both")
    for opt in SIMULATE_OPTIONS:
        given = getattr(args, opt.name)
        if given is not None:
            values.pop(opt.flag.lstrip("-"), None)
            values[opt.name] = given
    if args.seed is not None:
        values.pop("seeds", None)
    if args.seeds is not None:
        values.pop("seed", None)
        values["seeds"] = args.seeds
    if args.x64:
        values["x64"] = True
    return values


def cpu_device_count(value: str | None) -> int | None:
    """The number of host devices ``--cpu-devices`` asks for (None without it): ``auto`` is
    one per core; anything but an integer from 1 to the number of cores is refused."""
    if value is None:
        return None
    cores = os.cpu_count() or 1
    if value == "auto":
        count = cores
    else:
        try:
            count = int(value)
        except ValueError:
            count = 0
    if not 1 <= count <= cores:
        raise ConfigError(f"--cpu-devices={value!r} must be 'auto' or an integer from 1 to "
                          f"the number of cores ({cores})")
    return count


def set_cpu_devices(value: str | None) -> None:
    """``jax_num_cpu_devices`` from ``--cpu-devices`` (before JAX starts its backend); without
    it, the default :mod:`ssm_jax.devices` sets when JAX is imported (one device per core)
    stands. While JAX is not imported, the count goes to JAX's own variable
    ``JAX_NUM_CPU_DEVICES`` (read when it is, and then kept), so nothing is imported here."""
    count = cpu_device_count(value)
    if count is None:
        return
    jax = sys.modules.get("jax")
    if jax is None:
        os.environ["JAX_NUM_CPU_DEVICES"] = str(count)
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as err:  # the backend is already running (e.g. inside Python)
        if jax.local_device_count() != count and jax.devices()[0].platform == "cpu":
            raise ConfigError(f"--cpu-devices={value}: JAX's backend already runs with "
                              f"{jax.local_device_count()} device(s) ({err})") from None


def parse_buckets(text: str) -> int | str:
    """``--buckets``: 'auto', 'cost' or an integer (its range is checked by the planner)."""
    if text in ("auto", "cost"):
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--buckets={text!r} must be 'auto', 'cost' or an integer "
                          ">= 1") from None


def run(args) -> int:
    # Everything the command line decides is checked before JAX is imported: the options,
    # the sweep, the execution settings and every run (sweeping.plan checks the runs before
    # it asks JAX for its devices). Only --distributed joins the processes first.
    cpu_device_count(args.cpu_devices)
    options = options_of(args)
    sweep = sweeping.sweep_from_options(options)
    if not args.distributed and any(v is not None for v in (args.coordinator,
                                                            args.num_processes,
                                                            args.process_id)):
        raise ConfigError("--coordinator, --num-processes and --process-id need --distributed")
    buckets = parse_buckets(args.buckets)
    sweeping.check_plan_options(args.chunk_size, args.memory_budget, buckets,
                                args.matmul_precision)
    set_cpu_devices(args.cpu_devices)
    if args.distributed:
        import jax

        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    plan = sweeping.plan(sweep, chunk_size=args.chunk_size, memory_budget=args.memory_budget,
                         buckets=buckets, matmul_precision=args.matmul_precision)
    import jax
    import numpy as np

    # The finished Dataset (a few arrays of saves x classes per run), and on a CPU the chunk
    # in flight (elsewhere it is in the accelerator's memory, which the plan sized it to).
    itemsize = 8 if sweep.base.x64 else 4
    result_bytes = sweep.size * itemsize * plan.saves * (4 * plan.num_classes + 4)
    on_host = jax.devices()[0].platform == "cpu"
    check_fits(plan.run_bytes * plan.chunk_size * on_host + result_bytes,
               f"the sweep of {sweep.size} runs")
    shape = " x ".join(f"{d} {n}" for d, n in zip(sweep.dims, sweep.shape, strict=True))
    print(f"sweep: {sweep.size} runs ({shape or 'one configuration'}); "
          f"{len(plan.groups)} compiled group(s) (padded n: "
          f"{', '.join(str(g.n_pad) for g in plan.groups)}); {len(plan.chunks)} chunk(s) of up to "
          f"{plan.chunk_size} runs (~{plan.run_bytes / 2**10:.0f} KiB per run estimated) on "
          f"{jax.local_device_count()} device(s)", flush=True)
    start = time.perf_counter()
    ds = sweeping.run(sweep, args.out, chunk_size=plan.chunk_size, buckets=plan.buckets,
                      progress=not args.no_progress, matmul_precision=plan.matmul_precision)
    if ds is None:  # a process other than 0 of a distributed sweep
        print(f"process {jax.process_index()}: its chunks are done; process 0 writes {args.out}")
        return 0
    elapsed = time.perf_counter() - start
    print(f"done in {elapsed:.1f} s ({sweep.size / elapsed:.1f} runs/s)")
    delay = sweeping.delay_ratio(ds)
    if delay.notnull().any():
        print(f"minority/majority learn-time ratio: min {float(delay.min()):.3g}, "
              f"median {float(delay.median()):.3g}, max {float(delay.max()):.3g}")
    if args.out:
        print(f"wrote {args.out}")
    diverged = int(ds["diverged"].sum())
    if diverged:
        first = np.argwhere(ds["diverged"].values)[0] if sweep.dims else []
        where = ", ".join(f"{d}={ds[d].values[i]}" for d, i in zip(sweep.dims, first,
                                                                     strict=True))
        print(f"ssm-jax sweep: {diverged} of {sweep.size} runs diverged (flagged in the "
              f"`diverged` variable; first: {where or 'the run'}); try a smaller --lr",
              file=sys.stderr)
        return EXIT_DIVERGED
    return 0
