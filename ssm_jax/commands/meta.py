"""``ssm-jax meta``: learn the weighting (gamma or per-class weights) that optimises a
metric at the stopping time T, by gradient descent through training."""

from __future__ import annotations

import os
import sys

from ..io import to_json_value, write_json
from ..meta import request
from .arguments import (
    EXIT_DIVERGED,
    add_simulate_options,
    distinct_reals,
    integer,
    output_folder,
    real,
)
from .grad import add_meta_options, config_and_t1

MAX_ITERATIONS = 100_000  # each one is a gradient through a whole training run


def register(sub) -> None:
    parser = sub.add_parser(
        "meta", help="learn gamma or per-class weights that optimise a metric at time T",
        description="Meta-optimise the loss weighting with an optax optimiser, "
        "differentiating through training, so that the objective at the stopping time T is "
        "optimal (balanced_accuracy is maximised, own_output_gap squared is minimised, the "
        "losses are minimised). Several stopping times may be given (--times): one "
        "optimisation per T. Writes DIR/meta.json (learned values and objective histories, "
        "saved as it goes) and DIR/meta.png.",
    )
    add_simulate_options(parser)
    add_meta_options(parser)
    parser.add_argument("--learn", choices=request.LEARNABLE, default="gamma",
                        help="what to learn: the power-law exponent gamma or the per-class "
                        "weights (default: gamma)")
    parser.add_argument("--times", type=distinct_reals("times"), default=None, metavar="T[,T]",
                        help="several stopping times, one optimisation each (overrides --t1)")
    parser.add_argument("--iterations", type=integer("iterations", 0, MAX_ITERATIONS), default=100,
                        help=f"meta-optimisation steps, at most {MAX_ITERATIONS} (default: 100)")
    parser.add_argument("--meta-lr", type=real("meta-lr"), default=0.05,
                        help="learning rate of the meta-optimiser (default: 0.05)")
    parser.add_argument("--meta-optimizer", choices=request.META_OPTIMIZER_NAMES, default="adam",
                        help="optax meta-optimiser (default: adam)")
    parser.add_argument("--out", default="meta_out", metavar="DIR", type=output_folder,
                        help="output folder (default: meta_out)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    cfg = config_and_t1(args)
    times = args.times or (getattr(args, "t1", None),)
    request.learning_configs(cfg, args.objective, args.learn, times,
                             iterations=args.iterations, learning_rate=args.meta_lr,
                             optimizer=args.meta_optimizer, temperature=args.temperature)
    # The request is checked: the numerics now.
    import numpy as np

    from .. import meta
    from ..plot import meta_figure

    path = os.path.join(args.out, "meta.json")

    def save(record) -> None:
        write_json(to_json_value(record), path)
        last = record["runs"][-1]
        if last["finished"]:
            learned = (f"{float(last['learned']):.4f}" if args.learn == "gamma"
                       else np.array2string(last["learned"], precision=3))
            print(f"T = {last['t1']:<8.4g} {args.objective}: {last['initial_value']:.6g} -> "
                  f"{last['final_value']:.6g}   learned {args.learn} = {learned}")

    record = meta.learn_at_times(cfg, args.objective, args.learn, times,
                                 iterations=args.iterations, learning_rate=args.meta_lr,
                                 optimizer=args.meta_optimizer, temperature=args.temperature,
                                 on_progress=save)
    meta_figure(record, os.path.join(args.out, "meta.png"))
    print(f"wrote {path} and {os.path.join(args.out, 'meta.png')}")
    if any(r["diverged"] for r in record["runs"]):
        print("ssm-jax meta: a run diverged during meta-optimisation (see 'diverged' in the "
              "JSON); try a smaller --lr or --meta-lr", file=sys.stderr)
        return EXIT_DIVERGED
    return 0
