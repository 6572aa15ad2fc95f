"""``ssm-jax plot PATH``: figures of a sweep file written by ``ssm-jax sweep``."""

from __future__ import annotations

from .arguments import output_folder


def register(sub) -> None:
    parser = sub.add_parser(
        "plot", help="plot a sweep file: delay-ratio heat map and balanced accuracy",
        description="Draws the minority/majority delay ratio over (ratio, gamma) as a heat map "
        "(median over seeds) and balanced accuracy over time for each gamma (one panel per "
        "ratio). Writes STEM_delay.png and STEM_accuracy.png next to PATH or in --out.",
    )
    parser.add_argument("path", metavar="PATH", help="netCDF file written by `ssm-jax sweep`")
    parser.add_argument("--out", metavar="DIR", type=output_folder,
                        help="folder for the PNGs (default: PATH's)")
    parser.add_argument("--time", default="learn_time", choices=("learn_time", "half_time"),
                        help="which learning time the delay ratio uses (default: learn_time)")
    parser.add_argument("--select", action="append", metavar="DIM=VALUE",
                        help="plot one slice, e.g. --select loss_fn=ce (repeatable)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..plot import plot_sweep

    for path in plot_sweep(args.path, args.out, time=args.time, selections=args.select):
        print(f"wrote {path}")
    return 0
