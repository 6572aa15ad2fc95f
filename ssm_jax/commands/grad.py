"""``ssm-jax grad``: value and gradient of a meta-objective at the stopping time T."""

from __future__ import annotations

import sys

from ..io import to_json_value, write_json
from ..meta import request
from .arguments import EXIT_DIVERGED, add_simulate_options, config_from_args, output_file, real


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_meta_options(parser) -> None:
    """``--objective`` and ``--temperature`` (the stopping time is the run option --t1)."""
    parser.add_argument("--objective", default="balanced_loss", choices=request.OBJECTIVES,
                        help="scalar of the run at time T (default: balanced_loss)")
    parser.add_argument("--temperature", type=real("temperature"),
                        default=request.DEFAULT_TEMPERATURE,
                        help="temperature of the balanced_accuracy surrogate "
                        f"(default: {request.DEFAULT_TEMPERATURE})")


def register(sub) -> None:
    parser = sub.add_parser(
        "grad", help="gradient of a metric at time T with respect to run options",
        description="Differentiate a scalar of a training run at its stopping time T "
        "(balanced_loss, minority_loss, balanced_accuracy surrogate, own_output_gap) with "
        "respect to numeric options, each taken at its value on the command line. "
        "See docs/meta.md for the definitions (lr at fixed steps; d/dT along the update).",
    )
    add_simulate_options(parser)
    add_meta_options(parser)
    parser.add_argument("--wrt", type=_names, default=("gamma",), metavar="NAME[,NAME]",
                        help=f"options to differentiate by: {', '.join(request.WRT)} "
                        "(default: gamma)")
    parser.add_argument("--json", metavar="PATH", type=output_file,
                        help="write value and gradient as JSON")
    parser.set_defaults(handler=run)


def config_and_t1(args):
    """The validated Config of the parsed options, stopped at ``--t1``."""
    t1 = getattr(args, "t1", None)
    if getattr(args, "method", None) == "flow":
        return request.with_t1(config_from_args(args), t1)
    # A discrete run ends at lr x steps: --t1 sets the number of steps.
    return request.with_t1(config_from_args(args, t1=None), t1)


def run(args) -> int:
    cfg = config_and_t1(args)
    request.check_config(cfg, args.objective, args.wrt)
    request.check_temperature(args.temperature)
    # The request is checked: the numerics now.
    import numpy as np

    from .. import meta

    out = meta.gradient(cfg, args.objective, args.wrt, temperature=args.temperature)
    t1 = request.stop_time(cfg)
    diverged = int(out.diverged_step) >= 0
    finite = bool(np.isfinite(out.value)) and all(
        bool(np.all(np.isfinite(g))) for g in out.gradient.values())
    reason = request.failure_reason(cfg, int(out.diverged_step)) or (
        None if finite else "the value or a gradient is not finite")
    print(f"{args.objective} at T = {t1:.6g}: {float(out.value):.10g}")
    for name, g in out.gradient.items():
        shown = np.array2string(np.asarray(g), precision=8) if np.ndim(g) else f"{float(g):.10g}"
        print(f"  d/d{name} = {shown}")
    if args.json is not None:
        write_json(to_json_value({
            "objective": args.objective,
            "t1": t1,
            "value": out.value,
            "gradient": out.gradient,
            "finite": finite,
            "diverged": diverged,
            "diverged_step": int(out.diverged_step) if diverged else None,
            "reason": reason,
            "temperature": args.temperature,
            "config": cfg.to_dict(),
        }), args.json)
        print(f"wrote {args.json}")
    if reason is not None:
        hint = ("raise --max-steps or loosen --rtol" if request.is_flow(cfg)
                else "try a smaller --lr")
        print(f"ssm-jax grad: no value or gradient: {reason}; {hint}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0

