"""A finished digits experiment (:class:`DigitsResult`): running it, its JSON form and
its saved parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...io import atomic_write, to_json_value
from .config import FROM, RECIPES, UNTIL, DigitsConfig
from .data import DigitsData, load_data
from .recipes import FULL_BATCH, PHASES, batch_size_of, run_samplers
from .training import train_all
from .ufm import bridge, bridge_summary


@dataclass
class DigitsResult:
    """A finished experiment: configuration, data counts, recordings and the UFM bridge."""

    config: DigitsConfig
    data: DigitsData
    recorded: dict  # numpy arrays [weighting, seed, checkpoint, ...] (see train_all)
    bridge: dict

    @property
    def minority_mask(self) -> np.ndarray:
        return self.config.minority_mask()

    @property
    def diverged(self) -> bool:
        return bool(np.any(self.recorded["diverged_step"] >= 0))

    def group_accuracy(self, w: int) -> dict[str, np.ndarray]:
        """Balanced, majority and minority test accuracy ``[seed][checkpoint]`` of weighting w."""
        per_class = self.recorded["test_per_class_accuracy"][w]
        return {"balanced": self.recorded["test_balanced_accuracy"][w],
                "majority": per_class[..., ~self.minority_mask].mean(-1),
                "minority": per_class[..., self.minority_mask].mean(-1)}

    def summary(self) -> dict:
        """Mean and std over seeds of the group accuracies at the early and final checkpoint."""
        early = self.config.early_index()
        out = {}
        for w, name in enumerate(self.config.weightings):
            groups = self.group_accuracy(w)
            out[name] = {when: {group: [float(np.mean(v[:, i])), float(np.std(v[:, i]))]
                                for group, v in groups.items()}
                         for when, i in (("early", early), ("final", -1))}
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict (keys documented in docs/digits.md and the README)."""
        rec, cfg = self.recorded, self.config
        n = sum(self.data.train_counts)
        switch_times = cfg.switch_times()
        data = {
            "checkpoints": cfg.checkpoint_steps(),
            "time": cfg.checkpoint_times(),
            "early_checkpoint": cfg.early_index(),
            "early_step": int(cfg.checkpoint_steps()[cfg.early_index()]),
            "train_counts": list(self.data.train_counts),
            "test_counts": list(self.data.test_counts),
            "minority_digits": sorted(cfg.minority),
            "majority_digits": list(cfg.majority),
            "weightings": list(cfg.weightings),
            "recipes": {name: RECIPES[name].help for name in cfg.weightings},
            "phases": list(PHASES),
            "reweight_from": switch_times[0],
            "reweight_until": switch_times[1],
            "batch_size": batch_size_of(cfg, n),
            "diverged": self.diverged,
            "config": cfg.to_dict(),
        }
        samplers = run_samplers(cfg, n)
        for w, name in enumerate(cfg.weightings):
            groups = self.group_accuracy(w)
            steps = rec["diverged_step"][w]
            links = self.bridge["weightings"][name]
            recipe = RECIPES[name]
            switch = [int(v) if v <= cfg.steps else None for v in rec["switch_steps"][w]]
            data[name] = {
                "balanced_test_accuracy": groups["balanced"],
                "majority_test_accuracy": groups["majority"],
                "minority_test_accuracy": groups["minority"],
                "class_weights": rec["weights"][w],
                "tau": float(rec["tau"][w]),
                "phase_weights": rec["phase_weights"][w],
                "reweight_from": switch_times[0] if recipe.schedule == FROM else None,
                "reweight_until": switch_times[1] if recipe.schedule == UNTIL else None,
                "reweight_from_step": switch[0] if recipe.schedule == FROM else None,
                "reweight_until_step": switch[1] if recipe.schedule == UNTIL else None,
                "loss": "ldam" if recipe.ldam else "ce",
                "ldam_margins": rec["margins"][w],
                "ldam_scale": float(rec["ldam_scale"][w]),
                "sampling": None if samplers[w] == FULL_BATCH else samplers[w],
                "train_loss": rec["loss"][w],
                **{key: rec[key][w] for key in RECORDED_PER_CLASS},
                "nc1": rec["nc1"][w],
                "loss_time": links["loss_time"],
                "delay_loss": links["delay_loss"],
                "learn_time_train": links["learn_time_train"],
                "learn_time_test": links["learn_time_test"],
                "delay_train": links["delay_train"],
                "delay_test": links["delay_test"],
                "diverged": bool(np.any(steps >= 0)),
                "diverged_step": [int(v) if v >= 0 else None for v in steps],
            }
        data["summary"] = self.summary()
        data["bridge"] = bridge_summary(self.bridge)
        return to_json_value(data)


RECORDED_PER_CLASS = ("test_per_class_accuracy", "train_per_class_accuracy",
                      "train_per_class_loss", "own_output", "mode_strength", "classifier_norm",
                      "feature_mode_norm", "nc1_per_class")


def run_digits(cfg: DigitsConfig | None = None) -> DigitsResult:
    """Load the data, train every recipe and seed, and build the UFM bridge."""
    cfg = cfg or DigitsConfig()
    data = load_data(cfg)
    recorded = train_all(cfg, data)
    return DigitsResult(cfg, data, recorded, bridge(cfg, data, recorded))


def save_params(result: DigitsResult, path) -> None:
    """Write the classifier, its bias and the class-mean features at every checkpoint
    (``[weighting, seed, checkpoint, ...]``) to an ``.npz`` file, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, weightings=np.array(result.config.weightings),
                     checkpoints=result.config.checkpoint_steps(),
                     **{k: result.recorded[k]
                        for k in ("classifier", "classifier_bias", "feature_means")})

    atomic_write(path, write)
