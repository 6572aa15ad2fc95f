"""``ssm-jax digits``: imbalanced handwritten digits with a small MLP, and the UFM bridge."""

from __future__ import annotations

import argparse
import dataclasses
import os

from ..experiments.digits.config import (
    METHODS,
    RECIPES,
    SWITCH_FRACTION,
    DigitsConfig,
)
from ..io import write_json
from ..registry import SAMPLINGS
from .arguments import EXIT_DIVERGED, output_folder, real

# The declared defaults (read without building, hence validating, a configuration: that
# loads the dataset).
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(DigitsConfig)}


def _digits_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated integers, e.g. 5,6,7,8,9") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# (flag, DigitsConfig field, parser, help)
OPTIONS = [
    ("--ratio", "ratio", float, "imbalance ratio: majority / minority training examples (>= 1)"),
    ("--minority", "minority", _digits_list, "minority digits, comma separated"),
    ("--train-per-class", "train_per_class", int, "training examples of a majority digit"),
    ("--test-per-class", "test_per_class", int, "test examples per digit (balanced test set)"),
    ("--split-seed", "split_seed", int, "seed of the train/test split and the subsampling"),
    ("--hidden", "hidden", _digits_list, "hidden layer widths; the last is the feature dim d"),
    ("--init-scale", "init_scale", float, "multiplier of the He-normal initialisation"),
    ("--weightings", "weightings", _names,
     f"recipes to compare, comma separated, from {', '.join(RECIPES)} (docs: Real "
     "data, Recipes)"),
    ("--tau", "tau", float, "logit-adjustment strength tau (>= 0)"),
    ("--reweight-from", "reweight_from", float,
     "time T0 (summed lr) from which drw and ldam_drw use their weighting (ERM before)"),
    ("--reweight-until", "reweight_until", float,
     "time T1 (summed lr) until which reweight_then_erm uses its weighting (ERM after)"),
    ("--ldam-margin", "ldam_margin", float,
     "LDAM: the largest class margin, the margins are m_c ∝ n_c^-1/4 (>= 0)"),
    ("--ldam-scale", "ldam_scale", float, "LDAM: the logits are scaled by this (> 0)"),
    ("--method", "method", str, "optimiser: " + ", ".join(METHODS)),
    ("--lr", "lr", float, "peak learning rate"),
    ("--momentum", "momentum", float, "momentum coefficient (method momentum)"),
    ("--warmup", "warmup", int, "steps of geometric learning-rate warm-up (0: constant lr)"),
    ("--warmup-factor", "warmup_factor", float, "the warm-up starts at lr / warmup_factor"),
    ("--weight-decay", "weight_decay", float, "weight decay on the weight matrices"),
    ("--steps", "steps", int, "training steps"),
    ("--batch-size", "batch_size", int,
     "minibatch SGD: examples per step (class samplers: draws per step) for every recipe"),
    ("--sampling", "sampling", str,
     f"how minibatches are drawn, for every recipe but resample: {', '.join(SAMPLINGS)}"),
    ("--checkpoints", "checkpoints", int, "evenly spaced checkpoints (step 0 and the end incl.)"),
    ("--seeds", "seeds", int, "initialisation seeds per recipe"),
    ("--seed", "seed", int, "base PRNG seed (run s uses fold_in(PRNGKey(seed), s))"),
    ("--early-step", "early_step", int, "step of the 'early' checkpoint in the report"),
    ("--ufm-steps", "ufm_steps", int, "GD steps of the UFM runs of the bridge"),
    ("--ufm-lr", "ufm_lr", float, "learning rate of the UFM runs"),
    ("--ufm-init-scale", "ufm_init_scale", float, "gaussian init std of the UFM runs"),
    ("--vmap-size", "vmap_size", int,
     "runs vmapped together (0: all on an accelerator, one at a time on CPU)"),
]


# Defaults that are rules rather than values.
_SHOWN = {
    "early_step": "end of warm-up",
    "weightings": "all of them",
    "batch_size": "the full batch; n draws per step for a class sampler",
    "reweight_from": f"{SWITCH_FRACTION:g} x the training time",
    "reweight_until": f"{SWITCH_FRACTION:g} x the training time",
}


def register(sub) -> None:
    parser = sub.add_parser(
        "digits", help="real-data check: imbalanced digits with a small MLP vs the UFM",
        description="scikit-learn's bundled 8x8 digits with a step imbalance on the training "
        "set (balanced test set); an MLP trained with each recipe (ERM, power-law weights "
        "gamma 1/2 and 1, logit adjustment, class-balanced resampling, deferred "
        "re-weighting, re-weighting then ERM, LDAM and LDAM with deferred re-weighting) "
        "over several seeds. Prints balanced test accuracy early and at the end, and the "
        "minority/majority delay measured on the network vs the UFM's; writes "
        "DIR/digits.json, DIR/digits.png and DIR/digits_recipes.png.",
    )
    parser.add_argument("--out", default="digits_out", metavar="DIR", type=output_folder,
                        help="output folder (default: digits_out)")
    group = parser.add_argument_group("experiment")
    for flag, field, parse, text in OPTIONS:
        default = _DEFAULTS[field]
        shown = _SHOWN.get(field) or _shown(default)
        kind = real(field) if parse is float else parse  # finite values only
        group.add_argument(flag, dest=field, type=kind, default=default,
                           help=f"{text} (default: {shown})")
    group.add_argument("--x64", action="store_true", help="compute in float64")
    parser.add_argument("--save-params", action="store_true",
                        help="also write DIR/digits_params.npz (classifier, bias and class-mean "
                        "features at every checkpoint)")
    parser.set_defaults(handler=run)


def config_from_args(args) -> DigitsConfig:
    """A validated :class:`~ssm_jax.experiments.digits.DigitsConfig` (raises ConfigError on
    bad input)."""
    values = {field: getattr(args, field) for _, field, _, _ in OPTIONS}
    return DigitsConfig(**values, x64=args.x64)


def run(args) -> int:
    cfg = config_from_args(args)  # validated before anything runs or is written
    from ..experiments import digits
    from ..plot import digits_figure, digits_recipes_figure

    result = digits.run_digits(cfg)
    digits.print_report(result)
    os.makedirs(args.out, exist_ok=True)
    write_json(result.to_dict(), os.path.join(args.out, "digits.json"))
    digits_figure(result, os.path.join(args.out, "digits.png"))
    digits_recipes_figure(result, os.path.join(args.out, "digits_recipes.png"))
    written = ["digits.json", "digits.png", "digits_recipes.png"]
    if args.save_params:
        digits.save_params(result, os.path.join(args.out, "digits_params.npz"))
        written.append("digits_params.npz")
    print(f"wrote {', '.join(os.path.join(args.out, w) for w in written)}")
    if result.diverged:
        print("ssm-jax digits: some runs diverged (see 'diverged' in digits.json)")
        return EXIT_DIVERGED
    return 0
