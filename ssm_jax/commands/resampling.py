"""``ssm-jax resampling``: class-balanced resampling against reweighting under minibatch
SGD, over learning rates (:mod:`ssm_jax.experiments.resampling`)."""

from __future__ import annotations

import os

from .arguments import (
    EXIT_DIVERGED,
    add_simulate_options,
    config_from_args,
    distinct_reals,
    integer,
    output_folder,
    real,
)

DEFAULT_BATCH = 32


def register(sub) -> None:
    parser = sub.add_parser(
        "resampling", help="resampling vs reweighting under minibatch SGD, over learning rates",
        description="At each learning rate, sweeps of seeds of four arms trained until the "
        "same time: ERM with uniform minibatches, power weights with uniform minibatches, ERM "
        "with resampled (class-balanced or sqrt) minibatches, and the reweighted full batch "
        "they all follow in expectation (gamma = the sampler's expected gamma). Prints the "
        "minority/majority delay, its spread over seeds and the fraction of seeds that "
        "diverged; writes DIR/resampling.json and DIR/resampling.png. The run options set "
        "everything else (leave --weighting and --sampling at their defaults).",
    )
    add_simulate_options(parser)
    parser.add_argument("--lrs", type=distinct_reals("lrs"), default=(1.0, 2.0, 4.0, 8.0),
                        help="learning rates (default: 1,2,4,8)")
    parser.add_argument("--time", type=real("time"), default=1200.0,
                        help="training time T of every run: steps = T / lr (default: 1200)")
    parser.add_argument("--seeds", type=integer("seeds", low=1, high=10_000), default=8,
                        help="seeds per arm and learning rate (default: 8)")
    parser.add_argument("--sampler", default="class_balanced",
                        choices=("class_balanced", "sqrt"),
                        help="the resampling arm's sampler (default: class_balanced)")
    parser.add_argument("--out", default="resampling_out", metavar="DIR", type=output_folder,
                        help="output folder (default: resampling_out)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..experiments import resampling
    from ..io import to_json_value, write_json
    from ..plot import resampling_figure

    cfg = config_from_args(args, batch_size=args.batch_size or DEFAULT_BATCH)
    result = resampling.compare(cfg, args.lrs, args.time, seeds=args.seeds,
                                sampler=args.sampler, progress=True)
    print_table(result)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "resampling.json")
    write_json(to_json_value({**result, "config": cfg.to_dict()}), path)
    resampling_figure(result, os.path.join(args.out, "resampling.png"))
    print(f"wrote {path} and resampling.png")
    if any(row["diverged"] > 0 for rows in result["arms"].values() for row in rows):
        print("ssm-jax resampling: some runs diverged (the 'diverged' fractions)")
        return EXIT_DIVERGED
    return 0


def print_table(result: dict) -> None:
    """One row per (learning rate, arm): delay and balanced accuracy, mean ± std over seeds,
    and the fraction of seeds that diverged."""
    import numpy as np

    show = lambda pair: ("      -" if not np.isfinite(pair[0])  # noqa: E731
                         else f"{pair[0]:.3f}±{pair[1]:.3f}")
    print(f"class counts {result['class_counts']}; batch {result['batch_size']}; sampler "
          f"{result['sampler']} (expected gamma {result['gamma']:g}); T = {result['t1']:g}; "
          f"{result['seeds']} seeds")
    header = (f"{'lr':>7} {'arm':<20}{'delay':>14}{'bal.acc T/4':>14}{'bal.acc T':>14}"
              f"{'diverged':>10}")
    print(header)
    print("-" * len(header))
    for i, lr in enumerate(result["lrs"]):
        for arm, rows in result["arms"].items():
            row = rows[i]
            print(f"{lr:>7.3g} {arm:<20}{show(row['delay']):>14}"
                  f"{show(row['balanced_accuracy']['quarter']):>14}"
                  f"{show(row['balanced_accuracy']['end']):>14}{row['diverged']:>10.2f}")
    print("delay = mean minority / mean majority half time (own output 1/2); ± = std over "
          "the seeds that did not diverge")
