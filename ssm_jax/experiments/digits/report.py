"""The printed report of a digits experiment: accuracies early and final, and delays."""

from __future__ import annotations

import sys

import numpy as np

from .config import CONSTANT
from .results import DigitsResult
from .ufm import bridge_summary

NAME = 19  # width of the recipe column


def _fmt(pair, digits: int = 3) -> str:
    mean, std = pair
    return "  nan" if not np.isfinite(mean) else f"{mean:.{digits}f}±{std:.{digits}f}"


def print_report(result: DigitsResult, file=None) -> None:
    """Print the accuracy table (early and final checkpoints) and the delay bridge."""
    file = file or sys.stdout
    cfg, summary = result.config, result.summary()
    steps = cfg.checkpoint_steps()
    early = cfg.early_index()
    batch = "full batch" if cfg.batch_size is None else f"batch {cfg.batch_size}"
    print(f"digits: train counts {list(result.data.train_counts)} (minority digits "
          f"{sorted(cfg.minority)}), balanced test set of {sum(result.data.test_counts)}; "
          f"{cfg.seeds} seeds, {cfg.method} lr {cfg.lr:g}, {cfg.steps} steps, {batch}",
          file=file)
    if any(recipe.schedule != CONSTANT for recipe in cfg.recipes()):
        start, stop = cfg.switch_times()
        print(f"switch times: reweight_from {start:.4g}, reweight_until {stop:.4g} (end of "
              f"training {cfg.end_time():.4g})", file=file)
    print(f"test accuracy, mean±std over seeds, early = step {steps[early]}, final = step "
          f"{steps[-1]}", file=file)
    header = (f"{'recipe':<{NAME}}{'early bal.':>13}{'final bal.':>13}{'early maj':>13}"
              f"{'early min':>13}{'final maj':>13}{'final min':>13}")
    print(header, file=file)
    print("-" * len(header), file=file)
    for name, s in summary.items():
        print(f"{name:<{NAME}}{_fmt(s['early']['balanced']):>13}{_fmt(s['final']['balanced']):>13}"
              f"{_fmt(s['early']['majority']):>13}{_fmt(s['early']['minority']):>13}"
              f"{_fmt(s['final']['majority']):>13}{_fmt(s['final']['minority']):>13}", file=file)
    links = bridge_summary(result.bridge)
    print(f"\ndelay = mean minority / mean majority time for the training loss to reach "
          f"log(k)/2 (r = n_maj/n_min = {links['ratio']:g}); 'acc' columns: time for the "
          f"train/test accuracy to reach 1/2", file=file)
    header = (f"{'recipe':<{NAME}}{'network':>13}{'net acc tr':>13}{'net acc te':>13}"
              f"{'UFM sample':>12}{'UFM class':>11}{'r^(1/2-g)':>11}{'r^(1-g)':>9}")
    print(header, file=file)
    print("-" * len(header), file=file)
    show = lambda v: "    -" if v is None or not np.isfinite(v) else f"{v:.3g}"  # noqa: E731
    for name, e in links["weightings"].items():
        print(f"{name:<{NAME}}{_fmt(e['network_delay'], 2):>13}"
              f"{_fmt(e['network_delay_train'], 2):>13}{_fmt(e['network_delay_test'], 2):>13}"
              f"{show(e['ufm_delay']['sample']):>12}{show(e['ufm_delay']['class']):>11}"
              f"{show(e['closed_form_delay']['sample']):>11}"
              f"{show(e['closed_form_delay']['class']):>9}", file=file)
    exponent = links["exponent"]
    print(f"fitted p in delay = r^(p - gamma): network {show(exponent['network'])}, UFM sample "
          f"{show(exponent['ufm_sample'])}, UFM class {show(exponent['ufm_class'])} "
          f"(closed forms: 1/2 and 1)", file=file)
