"""``ssm-jax simulate``: one run, a printed summary and an optional JSON file."""

from __future__ import annotations

import math
import sys

from ..config import OPTIONS
from .arguments import (
    EXIT_DIVERGED,
    add_option,
    add_simulate_options,
    config_from_args,
    output_file,
)


def register(sub) -> None:
    parser = sub.add_parser(
        "simulate", help="simulate one training run",
        description="Simulate one training run of the imbalanced UFM and report per-class "
        "learning times. Time is t = lr x step.",
    )
    add_simulate_options(parser)
    add_option(parser, OPTIONS["keep_params"])
    parser.add_argument("--json", metavar="PATH", type=output_file,
                        help="write the full results as JSON")
    parser.set_defaults(handler=run)


def format_time(value) -> str:
    """A learning time (a float or numpy scalar; NaN when never reached)."""
    return "never" if not math.isfinite(value) else f"{value:.4g}"


def print_summary(result, file=None) -> None:
    file = file or sys.stdout
    tr = result.trajectory
    print(f"classes: {list(result.class_counts)}  (n = {sum(result.class_counts)})", file=file)
    print(f"{'class':>5} {'n_c':>6} {'weight':>8} {'learn_time':>11} {'half_time':>10} "
          f"{'final_acc':>9}", file=file)
    for c, n_c in enumerate(result.class_counts):
        print(f"{c:>5} {n_c:>6} {tr.weights[c]:>8.4g} {format_time(tr.learn_time[c]):>11} "
              f"{format_time(tr.half_time[c]):>10} {tr.per_class_accuracy[-1, c]:>9.3f}", file=file)
    print(f"final time {tr.t[-1]:.4g}: loss {tr.loss[-1]:.4g}, "
          f"balanced accuracy {tr.balanced_accuracy[-1]:.4f}", file=file)


def run(args) -> int:
    cfg = config_from_args(args)  # validated before the numerics are imported
    from ..simulate import flow_json, simulate, write_json

    result = simulate(cfg)
    print_summary(result)
    if args.json is not None:
        write_json(result.to_dict(), args.json)
        print(f"wrote {args.json}")
    flow_stats = result.trajectory.flow
    if flow_stats is not None:
        info = flow_json(flow_stats)
        evals = "n/a (implicit solver)" if info["num_vf_evals"] is None else info["num_vf_evals"]
        print(f"flow ({cfg.solver}): {info['solver_status']}, {info['num_steps']} steps "
              f"({info['num_rejected_steps']} rejected), {evals} vector-field evaluations"
              + (f", stopped at t = {info['stop_time']:.6g}"
                 if info["stop_time"] is not None else ""))
    if result.diverged and flow_stats is not None:
        print(f"ssm-jax simulate: the gradient flow failed "
              f"({flow_json(flow_stats)['solver_status']}) at t = "
              f"{float(flow_stats.end_time):.4g}; try --max-steps, --solver kvaerno5 or looser "
              "--rtol/--atol", file=sys.stderr)
        return EXIT_DIVERGED
    if result.diverged:
        step = int(result.trajectory.diverged_step)
        print(f"ssm-jax simulate: the run diverged: the loss became non-finite at step {step} "
              f"(t = {step * cfg.lr:.4g}); try a smaller --lr", file=sys.stderr)
        return EXIT_DIVERGED
    return 0
