"""``ssm-jax geometry``: neural-collapse geometry over training, and the terminal phase.

One run of the given configuration with ``geometry`` recorded (``geometry.png``,
``geometry.json``); with two or more minority classes, minority collapse over training for
ERM against power weights ``--reweight-gamma`` at the configured loss and weight decay
(``minority.png``, ``minority.json``; Fang et al. 2021); with ``--weight-decays``,
cross-entropy runs at each weight decay for ERM and for power weights ``--reweight-gamma``
(one vmapped call), trained for the given steps, and their final geometry against SELI
(``terminal.png``, ``terminal.json``).
"""

from __future__ import annotations

import math
import os
import sys

from ..config import ConfigError
from .arguments import (
    EXIT_DIVERGED,
    add_simulate_options,
    config_from_args,
    distinct_reals,
    output_folder,
    real,
)


def register(sub) -> None:
    parser = sub.add_parser(
        "geometry", help="neural-collapse geometry over training; terminal phase vs weight decay",
        description="Record NC1-NC4, distances to the simplex ETF and to SELI, norms and "
        "angles over one run (geometry.png/json); with two or more minority classes, the "
        "minority cosines over training for ERM and reweighting (minority.png/json); with "
        "--weight-decays also compare ERM and reweighted cross-entropy at decreasing weight "
        "decay (terminal.png/json).",
    )
    add_simulate_options(parser)
    parser.add_argument("--out", default="geometry_out", type=output_folder,
                        help="output folder")
    parser.add_argument("--weight-decays", type=distinct_reals("weight-decays"), default=None,
                        help="comma-separated weight decays for the terminal-phase comparison "
                        "(distinct, > 0)")
    parser.add_argument("--reweight-gamma", type=real("reweight-gamma"), default=1.0,
                        help="power-law gamma of the reweighted runs, in the minority-collapse "
                        "and terminal-phase comparisons (default: 1.0)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    cfg = config_from_args(args, geometry=True)
    if args.weight_decays is not None:
        for value in args.weight_decays:
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"weight-decays={value!r} is out of range: need > 0")
    # The input is checked: the numerics now.
    import numpy as np

    from ..experiments.terminal import minority_collapse, terminal_phase
    from ..geometry import seli_norm_ratio
    from ..metrics import minority_mask
    from ..plot import geometry_figure, minority_figure, terminal_figure
    from ..simulate import simulate, to_json_value, write_json
    from .simulate import print_summary

    result = simulate(cfg)
    print_summary(result)
    os.makedirs(args.out, exist_ok=True)
    geometry_figure(result, os.path.join(args.out, "geometry.png"))
    write_json(result.to_dict(), os.path.join(args.out, "geometry.json"))
    final = {key: result.trajectory.geometry[key][-1] for key in (
        "nc1", "nc1_cdnv", "nc2_etf_classifier", "nc2_seli_classifier", "nc3",
        "nc3_self_duality", "nc4_ncc_agreement")}
    print("final geometry: " + ", ".join(f"{k} {float(v):.4g}" for k, v in final.items()))
    if np.sum(minority_mask(result.class_counts)) >= 2:
        collapse = minority_collapse(cfg, args.reweight_gamma)
        minority_figure(collapse, len(result.class_counts),
                        os.path.join(args.out, "minority.png"))
        write_json(to_json_value({"weight_decay": cfg.weight_decay, "runs": collapse}),
                   os.path.join(args.out, "minority.json"))
        print("final mean minority cosine (classifier, centred class means): " + ", ".join(
            f"{label} {run['minority_cosine'][-1]:.3f}, "
            f"{run['minority_feature_cosine_centred'][-1]:.3f}"
            for label, run in collapse.items()))
    if args.weight_decays is not None:
        decays = sorted(args.weight_decays, reverse=True)
        labelled = terminal_phase(cfg, decays, args.reweight_gamma)
        seli_ratio = seli_norm_ratio(result.class_counts)
        terminal_figure(decays, labelled, seli_ratio, os.path.join(args.out, "terminal.png"))
        write_json(to_json_value({"weight_decays": decays, "seli_norm_ratio": seli_ratio,
                    "runs": {label: {k: np.asarray(v) for k, v in g.items()}
                             for label, g in labelled.items()}}),
                   os.path.join(args.out, "terminal.json"))
        print(f"{'weight decay':>12} " + " ".join(f"{label + ' SELI dist':>18}"
                                                    for label in labelled))
        for j, decay in enumerate(decays):
            print(f"{decay:>12.3g} " + " ".join(f"{g['nc2_seli_classifier'][j]:>18.4f}"
                                                for g in labelled.values()))
    print(f"wrote {args.out}")
    if result.diverged:
        print("ssm-jax geometry: the run diverged; try a smaller --lr", file=sys.stderr)
        return EXIT_DIVERGED
    return 0
