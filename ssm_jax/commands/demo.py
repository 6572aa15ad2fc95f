"""``ssm-jax demo``: the headline experiment on its built-in defaults."""

from __future__ import annotations

import os

from ..io import to_json_value, write_json
from .arguments import output_folder


def register(sub) -> None:
    parser = sub.add_parser(
        "demo", help="ERM vs reweighting on a step imbalance (squared and cross-entropy)",
        description="Step imbalance, 5 + 5 classes, ratio 10; squared loss and cross-entropy; "
        "ERM vs power-law weights gamma = 1/2 and 1. Prints a table of learning times and "
        "writes DIR/demo.png and DIR/summary.json.",
    )
    parser.add_argument("--out", default="demo_out", metavar="DIR", type=output_folder,
                        help="output folder (default: demo_out)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..experiments import demo
    from ..plot import demo_figure

    results = demo.run_demo()
    first = next(iter(next(iter(results.values())).values()))
    summary = demo.summarise(results)
    demo.print_table(summary, first.class_counts)
    os.makedirs(args.out, exist_ok=True)
    figure, path = os.path.join(args.out, "demo.png"), os.path.join(args.out, "summary.json")
    demo_figure(results, figure)
    write_json(to_json_value({"class_counts": list(first.class_counts),
                              "config": first.config.to_dict(), "runs": summary}), path)
    print(f"wrote {figure} and {path}")
    diverged = [f"{loss}/{name}" for loss, runs in summary.items() for name, s in runs.items()
                if s["diverged"]]
    if diverged:
        print(f"ssm-jax demo: runs diverged: {', '.join(diverged)}")
        return 3
    return 0
