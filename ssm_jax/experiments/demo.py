"""The headline experiment: ERM learns majorities first; reweighting removes the delay.

Step imbalance (5 + 5 classes, ratio 10), squared and cross-entropy losses, ERM vs
power-law weights with gamma = 1/2 and gamma = 1, same initialisation for every run.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..metrics import delay_ratio, majority_mask, minority_mask
from ..simulate import simulate

WEIGHTINGS = {"erm": 0.0, "gamma=1/2": 0.5, "gamma=1": 1.0}


def run_demo(base: Config | None = None, losses=("mse", "ce")) -> dict:
    """Run every (loss, weighting) pair; returns ``{loss: {name: Result}}``."""
    base = base or Config()
    results = {}
    for loss in losses:
        results[loss] = {}
        for name, gamma in WEIGHTINGS.items():
            # ERM is the power law with gamma = 0: one compiled function per loss.
            cfg = base.replace(loss=loss, weighting="power", gamma=gamma)
            results[loss][name] = simulate(cfg)
    return results


def summarise(results: dict) -> dict:
    """``{loss: {name: {...}}}``: learning times, their majority/minority means and delay
    ratios (:func:`ssm_jax.metrics.delay_ratio`), final balanced accuracy, divergence."""
    summary = {}
    for loss, by_name in results.items():
        summary[loss] = {}
        for name, res in by_name.items():
            tr = res.trajectory
            major = majority_mask(res.class_counts)
            minor = minority_mask(res.class_counts)
            summary[loss][name] = {
                "gamma": res.config.gamma,
                "weights": tr.weights,
                "learn_time": tr.learn_time,
                "half_time": tr.half_time,
                "majority_learn_time": float(np.mean(tr.learn_time[major])),
                "minority_learn_time": float(np.mean(tr.learn_time[minor])),
                "learn_delay_ratio": float(delay_ratio(tr.learn_time, minor)),
                "half_delay_ratio": float(delay_ratio(tr.half_time, minor)),
                "final_balanced_accuracy": float(tr.balanced_accuracy[-1]),
                "diverged": res.diverged,
            }
    return summary


def print_table(summary: dict, class_counts) -> None:
    """The summary as a table: one row per (loss, weighting)."""
    print(f"step imbalance, class counts {list(class_counts)}")
    print("learn_time: first time a class's accuracy reaches 0.5; half_time: its own output "
          "reaches 0.5")
    header = (f"{'loss':<5}{'weighting':<11}{'majority':>10}{'minority':>10}"
              f"{'delay':>8}{'half delay':>12}{'final bal.acc':>15}")
    print(header)
    print("-" * len(header))
    for loss, by_name in summary.items():
        for name, s in by_name.items():
            print(f"{loss:<5}{name:<11}{s['majority_learn_time']:>10.4g}"
                  f"{s['minority_learn_time']:>10.4g}{s['learn_delay_ratio']:>8.3g}"
                  f"{s['half_delay_ratio']:>12.3g}{s['final_balanced_accuracy']:>15.3f}")
    print("delay = mean minority learn_time / mean majority learn_time (1 = no delay)")
