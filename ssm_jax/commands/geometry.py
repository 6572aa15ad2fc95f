"""``ssm-jax geometry``: neural-collapse geometry over training, and the terminal phase.

One run of the given configuration with ``geometry`` recorded (``geometry.png``,
``geometry.json``); with two or more minority classes, minority collapse over training for
ERM against power weights ``--reweight-gamma`` at the configured loss and weight decay
(``minority.png``, ``minority.json``; Fang et al. 2021); with ``--weight-decays``, runs at
each weight decay for ERM and for power weights ``--reweight-gamma`` (one vmapped call),
trained for the given steps (``terminal.png``, ``terminal.json``): with ``--loss mse`` the
final own outputs against the closed-form global minimiser and each class's collapse
threshold, otherwise cross-entropy runs and their final geometry against SELI; with
``--collapse-ratios``, the minority collapse at the end of training against the imbalance
ratio, ERM against reweighting (``collapse.png``, ``collapse.json``).
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
        "--weight-decays also compare ERM and reweighting at decreasing weight decay "
        "(terminal.png/json): cross-entropy against SELI, or with --loss mse the final own "
        "outputs against the closed-form minimiser and the per-class collapse thresholds; "
        "with --collapse-ratios the minority collapse against the imbalance ratio "
        "(collapse.png/json).",
    )
    add_simulate_options(parser)
    parser.add_argument("--out", default="geometry_out", type=output_folder,
                        help="output folder")
    parser.add_argument("--weight-decays", type=distinct_reals("weight-decays"), default=None,
                        help="comma-separated weight decays for the terminal-phase comparison "
                        "(distinct, > 0): cross-entropy against SELI, or with --loss mse the "
                        "configured squared-loss runs against the closed-form minimiser")
    parser.add_argument("--reweight-gamma", type=real("reweight-gamma"), default=1.0,
                        help="power-law gamma of the reweighted runs, in the minority-collapse "
                        "and terminal-phase comparisons (default: 1.0)")
    parser.add_argument("--collapse-ratios", type=distinct_reals("collapse-ratios"),
                        default=None,
                        help="comma-separated imbalance ratios (distinct, >= 1) at which to "
                        "train the configured run (step profile, its loss and weight decay) "
                        "for ERM and reweighting and compare the final minority cosines "
                        "(Fang et al. 2021)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..experiments.terminal_request import check_collapse_ratios, check_squared_loss_terminal

    cfg = config_from_args(args, geometry=True)
    if args.weight_decays is not None:
        for value in args.weight_decays:
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"weight-decays={value!r} is out of range: need > 0")
    if args.weight_decays is not None and cfg.loss == "mse":
        check_squared_loss_terminal(cfg)
    if args.collapse_ratios is not None:
        check_collapse_ratios(cfg, args.collapse_ratios)
    # The input is checked: the numerics now.
    import numpy as np

    from ..experiments.terminal import (
        minority_collapse,
        minority_collapse_ratios,
        squared_loss_terminal,
        terminal_phase,
    )
    from ..geometry import seli_norm_ratio
    from ..metrics import minority_mask
    from ..plot import (
        collapse_ratio_figure,
        decay_figure,
        geometry_figure,
        minority_figure,
        terminal_figure,
    )
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
        seli_ratio = seli_norm_ratio(result.class_counts)
        if cfg.loss == "mse":
            labelled = squared_loss_terminal(cfg, decays, args.reweight_gamma)
            decay_figure(decays, labelled, result.class_counts, cfg.parametrization, cfg.depth,
                         os.path.join(args.out, "terminal.png"))
            print_squared_loss_terminal(decays, labelled, result.class_counts)
        else:
            labelled = terminal_phase(cfg, decays, args.reweight_gamma)
            terminal_figure(decays, labelled, seli_ratio,
                            os.path.join(args.out, "terminal.png"))
            print(f"{'weight decay':>12} " + " ".join(f"{label + ' SELI dist':>18}"
                                                        for label in labelled))
            for j, decay in enumerate(decays):
                print(f"{decay:>12.3g} " + " ".join(f"{g['nc2_seli_classifier'][j]:>18.4f}"
                                                    for g in labelled.values()))
        write_json(to_json_value({
            "loss": "mse" if cfg.loss == "mse" else "ce",
            "parametrization": cfg.parametrization if cfg.loss == "mse" else "sample",
            "depth": cfg.depth, "weight_decays": decays, "seli_norm_ratio": seli_ratio,
            "runs": {label: {k: np.asarray(v) for k, v in g.items()}
                     for label, g in labelled.items()}}),
                   os.path.join(args.out, "terminal.json"))
    if args.collapse_ratios is not None:
        ratios = sorted(args.collapse_ratios)
        collapse = minority_collapse_ratios(cfg, ratios, args.reweight_gamma)
        collapse_ratio_figure(collapse, len(result.class_counts),
                              os.path.join(args.out, "collapse.png"))
        write_json(to_json_value({"loss": cfg.loss, "weight_decay": cfg.weight_decay,
                                  "parametrization": cfg.parametrization, **collapse}),
                   os.path.join(args.out, "collapse.json"))
        labels = list(collapse["runs"])
        print("final mean minority classifier cosine against the ratio:")
        print(f"{'ratio':>8} " + " ".join(f"{label:>12}" for label in labels)
              + f" {'limit':>8}")
        for j, ratio in enumerate(ratios):
            print(f"{ratio:>8.3g} " + " ".join(
                f"{collapse['runs'][label]['minority_cosine'][j]:>12.3f}" for label in labels)
                + f" {collapse['limit_minority_cosine'][j]:>8.3f}")
    print(f"wrote {args.out}")
    if result.diverged:
        print("ssm-jax geometry: the run diverged; try a smaller --lr", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def print_squared_loss_terminal(decays, labelled: dict, counts) -> None:
    """The per-class collapse thresholds of each run label, then per weight decay the
    simulated final own outputs against the closed-form minimiser (and, where it differs,
    where the flow from the aligned initialisation ends)."""
    import numpy as np

    k = len(counts)
    head = f"{'':>22}" + "".join(f"{'class ' + str(c):>10}" for c in range(k))
    print("squared loss with weight decay: collapse threshold of each class (the weight "
          "decay at which its own output reaches 0)")
    print(head)
    print(f"{'n_c':>22}" + "".join(f"{n:>10d}" for n in counts))
    for label, g in labelled.items():
        print(f"{label + ' threshold':>22}" + "".join(f"{v:>10.4g}"
                                                       for v in g["collapse_threshold"]))
    for j, decay in enumerate(decays):
        print(f"weight decay {decay:.4g}: own output simulated / closed form")
        for label, g in labelled.items():
            print(f"{label + ' simulated':>22}" + "".join(f"{v:>10.4f}"
                                                           for v in g["own_output"][j]))
            print(f"{'closed form':>22}" + "".join(
                f"{v:>10.4f}" for v in g["closed_form_own_output"][j])
                + f"   (largest gap {g['own_output_gap'][j]:.2e})")
            limit = g.get("aligned_limit_own_output")
            if limit is not None and np.any(limit[j] != g["closed_form_own_output"][j]):
                # Depth >= 2: the aligned flow can end on a nonzero local minimum, or at 0.
                print(f"{'aligned-flow limit':>22}" + "".join(f"{v:>10.4f}" for v in limit[j]))
