"""``ssm-jax meta``: learn the weighting (gamma or per-class weights) that optimises a
metric at the stopping time T, by gradient descent through training."""

from __future__ import annotations

import os
import sys

import numpy as np

from .. import meta
from ..cli import EXIT_DIVERGED, add_simulate_options
from ..config import ConfigError
from ..simulate import to_json_value, write_json
from .grad import add_meta_options, config_and_t1


def _times(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


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
    parser.add_argument("--learn", choices=meta.LEARNABLE, default="gamma",
                        help="what to learn: the power-law exponent gamma or the per-class "
                        "weights (default: gamma)")
    parser.add_argument("--times", type=_times, default=None, metavar="T[,T]",
                        help="several stopping times, one optimisation each (overrides --t1)")
    parser.add_argument("--iterations", type=int, default=100,
                        help="meta-optimisation steps (default: 100)")
    parser.add_argument("--meta-lr", type=float, default=0.05,
                        help="learning rate of the meta-optimiser (default: 0.05)")
    parser.add_argument("--meta-optimizer", choices=("adam", "sgd"), default="adam",
                        help="optax meta-optimiser (default: adam)")
    parser.add_argument("--out", default="meta_out", metavar="DIR",
                        help="output folder (default: meta_out)")
    parser.set_defaults(handler=run)


def _run_record(t1, learn, result: meta.LearnResult) -> dict:
    return {
        "t1": t1,
        "learned": result.learned,
        "initial_value": result.objective[0],
        "final_value": result.objective[-1],
        "iterations": len(result.objective) - 1,
        "diverged": result.diverged,
        "history": {"objective": result.objective, learn: result.parameter},
    }


def meta_figure(record: dict, path) -> None:
    """Objective history per stopping time (left) and the learned value against T (right)."""
    from ..plots import plt  # selects the headless Agg backend

    runs = record["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, r in enumerate(runs):
        left.plot(r["history"]["objective"], color=f"C{i % 10}", label=f"T = {r['t1']:.4g}")
    left.set_xlabel("meta-iteration")
    left.set_ylabel(record["objective"])
    left.legend(fontsize=8)
    t = [r["t1"] for r in runs]
    learned = np.asarray([r["learned"] for r in runs], dtype=float)
    if record["learn"] == "gamma":
        right.plot(t, learned, "o-")
        right.set_ylabel("learned gamma")
    else:
        for c in range(learned.shape[1]):
            right.plot(t, learned[:, c], "o-", lw=1, label=f"class {c}")
        right.set_ylabel("learned weight")
        right.legend(fontsize=7, ncol=2)
    right.set_xlabel("stopping time T")
    if len(t) > 1 and min(t) > 0:
        right.set_xscale("log")
    fig.suptitle(f"meta-learning {record['learn']} for {record['objective']}", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    cfg = config_and_t1(args)
    times = args.times or (getattr(args, "t1", None),)
    if args.iterations < 0:
        raise ConfigError(f"iterations={args.iterations!r} must be an integer >= 0")
    if not (np.isfinite(args.meta_lr) and args.meta_lr > 0):
        raise ConfigError(f"meta_lr={args.meta_lr!r} is out of range: need meta_lr > 0")
    # Validate every stopping time before any work (exit 2 writes nothing).
    configs = [meta.with_t1(cfg, t1) for t1 in times]
    for c in configs:
        meta.check_objective(args.objective, c)
    path = os.path.join(args.out, "meta.json")
    record = {"objective": args.objective, "learn": args.learn,
              "meta_optimizer": args.meta_optimizer, "meta_lr": args.meta_lr,
              "temperature": args.temperature, "config": cfg.to_dict(), "runs": []}
    any_diverged = False
    for c in configs:
        t1 = meta.stop_time(c)

        def save_progress(i, objective, parameter, t1=t1):
            if i % 10 == 0:
                partial = meta.LearnResult(parameter[-1], objective, parameter, False)
                write_json(to_json_value({**record, "runs": record["runs"] + [
                    {**_run_record(t1, args.learn, partial), "finished": False}]}), path)

        result = meta.learn(c, args.objective, args.learn, iterations=args.iterations,
                            learning_rate=args.meta_lr, optimizer=args.meta_optimizer,
                            temperature=args.temperature, callback=save_progress)
        any_diverged |= result.diverged
        record["runs"].append({**_run_record(t1, args.learn, result), "finished": True})
        write_json(to_json_value(record), path)
        learned = (f"{float(result.learned):.4f}" if args.learn == "gamma"
                   else np.array2string(result.learned, precision=3))
        print(f"T = {t1:<8.4g} {args.objective}: {result.objective[0]:.6g} -> "
              f"{result.objective[-1]:.6g}   learned {args.learn} = {learned}")
    meta_figure(record, os.path.join(args.out, "meta.png"))
    print(f"wrote {path} and {os.path.join(args.out, 'meta.png')}")
    if any_diverged:
        print("ssm-jax meta: a run diverged during meta-optimisation (see 'diverged' in the "
              "JSON); try a smaller --lr or --meta-lr", file=sys.stderr)
        return EXIT_DIVERGED
    return 0
