"""The digits experiment's configuration (:class:`DigitsConfig`) and its validation.

This module imports no JAX, numpy or scikit-learn when imported (the command line builds
its parser from :class:`DigitsConfig`'s fields). Validation reads the bundled dataset's
class sizes last, so every other bad value is refused before scikit-learn is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...config import ConfigError, _finite, _positive_int
from ...imbalance import step_counts
from ...registry import SAMPLINGS

NUM_CLASSES = 10
# The optimisers the MLP trainer supports: the spectral ones act on the UFM's two
# matrices and gradient flow has no optax transformation.
METHODS = ("gd", "momentum", "adam")
# Bounds (docs/cli.md): the MLP and its runs are refused beyond these before allocation.
MAX_WIDTH = 65_536
MAX_LAYERS = 16
MAX_STEPS = 10**7
MAX_SEEDS = 1_000
MAX_SEED = 2**32 - 1
MAX_BATCH = 100_000  # --batch-size: examples (class samplers: draws) per step
PIXELS = 64
# The constant weightings: name -> (power-law gamma, uses logit adjustment). Every one is
# also a recipe (RECIPES), the only ones without a schedule, sampler or margin of their own.
WEIGHTINGS: dict[str, tuple[float, bool]] = {
    "erm": (0.0, False),
    "gamma=1/2": (0.5, False),
    "gamma=1": (1.0, False),
    "logit_adjusted": (0.0, True),
}
# The part of the training time after which a recipe's switch happens by default
# (--reweight-from, --reweight-until unset): see DigitsConfig.switch_times.
SWITCH_FRACTION = 0.5
# What a recipe's weighting does over time (Recipe.schedule).
CONSTANT, FROM, UNTIL = "constant", "from", "until"


@dataclass(frozen=True)
class Recipe:
    r"""A training recipe: what one name of ``--weightings`` trains with.

    ``gamma``: the power-law class weights of its weighted phase (:math:`\omega_c \propto
    n_c^{-\gamma}`, 0 = ERM). ``schedule``: ``"constant"`` (the weighted phase throughout),
    ``"from"`` (ERM before ``reweight_from``, then the weighting: deferred re-weighting) or
    ``"until"`` (the weighting until ``reweight_until``, then ERM). ``logit_adjusted``: add
    ``tau log pi`` to the training logits. ``ldam``: the LDAM loss (margins
    :math:`m_c \propto n_c^{-1/4}`, the largest ``ldam_margin``, logits scaled by
    ``ldam_scale``) instead of cross-entropy. ``sampling``: its own minibatch sampler
    (:data:`ssm_jax.registry.SAMPLINGS`), or None for the run's ``--sampling``.
    Every part becomes a per-run array (:func:`~.recipes.recipe_arrays`), so all recipes
    train in one program."""

    help: str
    gamma: float = 0.0
    schedule: str = CONSTANT
    logit_adjusted: bool = False
    ldam: bool = False
    sampling: str | None = None

    @property
    def constant_weighting(self) -> bool:
        """A plain weighting: constant power-law weights of cross-entropy, no adjustment."""
        return self.schedule == CONSTANT and not (self.logit_adjusted or self.ldam)


# Every recipe of --weightings, in the order of the default comparison.
RECIPES: dict[str, Recipe] = {
    "erm": Recipe("empirical risk minimisation: every example weighs 1"),
    "gamma=1/2": Recipe("class weights n_c^-1/2", gamma=0.5),
    "gamma=1": Recipe("class weights n_c^-1 (inverse frequency)", gamma=1.0),
    "logit_adjusted": Recipe("ERM weights, tau log pi_c added to the training logits "
                             "(Menon et al. 2021)", logit_adjusted=True),
    "resample": Recipe("ERM weights, class-balanced sampling: each draw a uniform class, "
                       "then one of its examples", sampling="class_balanced"),
    "drw": Recipe("deferred re-weighting (Cao et al. 2019): ERM, then n_c^-1 from "
                  "reweight_from", gamma=1.0, schedule=FROM),
    "reweight_then_erm": Recipe("n_c^-1 until reweight_until, then ERM", gamma=1.0,
                                schedule=UNTIL),
    "ldam": Recipe("LDAM loss (Cao et al. 2019): margins m_c ∝ n_c^-1/4 on the own logit, "
                   "ERM weights", ldam=True),
    "ldam_drw": Recipe("LDAM loss with deferred re-weighting: ERM weights, then n_c^-1 "
                       "from reweight_from", gamma=1.0, schedule=FROM, ldam=True),
}


def _digit_counts():
    """Examples per digit in scikit-learn's bundled dataset (10,)."""
    import numpy as np
    from sklearn.datasets import load_digits

    return np.bincount(load_digits().target, minlength=NUM_CLASSES)


@dataclass(frozen=True)
class DigitsConfig:
    """Everything that defines a digits experiment (validated on construction).

    Data: ``ratio`` (majority/minority training count, >= 1), ``minority`` digits,
    ``train_per_class`` (a majority digit's training count), ``test_per_class`` (balanced
    test set), ``split_seed`` (split and subsampling). Model: ``hidden`` layer widths (the
    last is the feature dimension d), ``init_scale`` (multiplies the He-normal init).
    Training: ``method``, ``lr``, ``momentum``, ``weight_decay``, ``steps``, ``checkpoints``
    (evenly spaced, step 0 and ``steps`` included), ``seeds`` runs per weighting with keys
    ``fold_in(PRNGKey(seed), s)``, ``tau`` of logit adjustment, ``weightings`` (names of
    :data:`WEIGHTINGS`), ``early_step`` (the "early" checkpoint reported; default the end
    of the warm-up, ``steps / 10`` without one), ``vmap_size`` (runs vmapped together, see
    :func:`train_all`). Bridge: the UFM is run for ``ufm_steps`` GD steps of
    learning rate ``ufm_lr`` from a gaussian init of std ``ufm_init_scale``.

    Recipes (:data:`RECIPES`; the weightings are recipes too): ``batch_size`` (None: the
    full batch, and n draws per step for a class sampler) and ``sampling`` (a registered
    sampler, :data:`ssm_jax.registry.SAMPLINGS`) apply to every recipe without a sampler
    of its own; ``reweight_from`` / ``reweight_until`` are the switch times of the
    recipes whose weighting starts / stops (None: :data:`SWITCH_FRACTION` of the training
    time, :meth:`switch_times`); ``ldam_margin`` and ``ldam_scale`` are the LDAM recipes'.
    """

    ratio: float = 10.0
    minority: tuple[int, ...] = (5, 6, 7, 8, 9)
    train_per_class: int = 120
    test_per_class: int = 50
    split_seed: int = 0
    hidden: tuple[int, ...] = (128, 64)
    init_scale: float = 1.0
    weightings: tuple[str, ...] = tuple(RECIPES)
    tau: float = 1.0
    method: str = "momentum"
    lr: float = 0.02
    momentum: float = 0.9
    warmup: int = 100
    warmup_factor: float = 100.0
    weight_decay: float = 0.0
    steps: int = 400
    checkpoints: int = 101
    seeds: int = 5
    seed: int = 0
    early_step: int | None = None
    ufm_steps: int = 2000
    ufm_lr: float = 2.0
    ufm_init_scale: float = 1e-3
    vmap_size: int = 0
    x64: bool = False
    batch_size: int | None = None
    sampling: str = "uniform"
    reweight_from: float | None = None
    reweight_until: float | None = None
    ldam_margin: float = 4.0
    ldam_scale: float = 1.0

    def __post_init__(self) -> None:
        validate_digits(self)

    def replace(self, **changes) -> DigitsConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @property
    def majority(self) -> tuple[int, ...]:
        return tuple(c for c in range(NUM_CLASSES) if c not in self.minority)

    def minority_mask(self):
        """Boolean mask (10,) of the minority digits (index = digit). The split is the
        configured one, so it holds at ``ratio = 1`` too, where no count tells them apart."""
        import numpy as np

        return np.isin(np.arange(NUM_CLASSES), self.minority)

    def train_counts(self) -> tuple[int, ...]:
        """Training examples per digit (index = digit)."""
        _, n_minor = step_counts(1, 1, self.train_per_class, self.ratio)
        return tuple(n_minor if c in self.minority else self.train_per_class
                     for c in range(NUM_CLASSES))

    def checkpoint_steps(self):
        """Steps of the checkpoints (evenly spaced, 0 and ``steps`` included)."""
        from ...dynamics import discrete

        return discrete.save_steps(self.steps, self.checkpoints)

    def checkpoint_times(self):
        """Time at each checkpoint: the summed learning rate of the steps before it."""
        from .schedule import elapsed_multiplier

        return self.lr * elapsed_multiplier(self.checkpoint_steps(), self.warmup,
                                            self.warmup_factor)

    def step_times(self):
        """Time at every step 0..steps (float64): step j's update starts at time
        ``step_times()[j]`` and lasts ``lr`` times its warm-up factor."""
        import numpy as np

        from .schedule import elapsed_multiplier

        return self.lr * elapsed_multiplier(np.arange(self.steps + 1), self.warmup,
                                            self.warmup_factor)

    def end_time(self) -> float:
        """The time at the end of training (the last checkpoint's)."""
        return float(self.checkpoint_times()[-1])

    def switch_times(self) -> tuple[float, float]:
        """``(reweight_from, reweight_until)``, each :data:`SWITCH_FRACTION` of the
        training time unless given."""
        default = SWITCH_FRACTION * self.end_time()
        return tuple(default if value is None else float(value)  # type: ignore[return-value]
                     for value in (self.reweight_from, self.reweight_until))

    def recipes(self) -> tuple[Recipe, ...]:
        """The :class:`Recipe` of each name of ``weightings``."""
        return tuple(RECIPES[name] for name in self.weightings)

    def samplers(self) -> tuple[str, ...]:
        """The sampler of each recipe: its own, else ``sampling``."""
        return tuple(recipe.sampling or self.sampling for recipe in self.recipes())

    def early_index(self) -> int:
        """Index of the checkpoint nearest ``early_step`` (default: the end of the warm-up,
        or ``steps / 10`` without warm-up)."""
        import numpy as np

        default = min(self.warmup, self.steps) if self.warmup > 0 else self.steps / 10
        target = default if self.early_step is None else self.early_step
        return int(np.argmin(np.abs(self.checkpoint_steps() - target)))


def validate_digits(cfg: DigitsConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad value and its allowed range."""
    _finite("ratio", cfg.ratio, low=1.0)
    minority = list(cfg.minority)
    for digit in minority:
        if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
            raise ConfigError(f"minority digit {digit!r} is not a digit 0..9 "
                              f"(minority={minority!r})")
    if len(set(minority)) != len(minority):
        raise ConfigError(f"minority={minority!r} lists a digit twice")
    if not 1 <= len(minority) <= NUM_CLASSES - 1:
        raise ConfigError(f"minority={minority!r}: need between 1 and 9 minority digits")
    _positive_int("test_per_class", cfg.test_per_class, low=1)
    _positive_int("split_seed", cfg.split_seed, low=0, high=MAX_SEED)
    if not 1 <= len(cfg.hidden) <= MAX_LAYERS:
        raise ConfigError(f"hidden={list(cfg.hidden)!r} needs between 1 and {MAX_LAYERS} "
                          "hidden layers (the last is the features)")
    for width in cfg.hidden:
        _positive_int("hidden width", width, low=1, high=MAX_WIDTH)
    _finite("init_scale", cfg.init_scale, low=0.0, strict=True)
    if len(cfg.weightings) < 1:
        raise ConfigError("weightings=() needs at least one weighting")
    for name in cfg.weightings:
        if name not in RECIPES:
            raise ConfigError(f"weighting {name!r} is not one of "
                              f"{', '.join(map(repr, RECIPES))}")
    if len(set(cfg.weightings)) != len(cfg.weightings):
        raise ConfigError(f"weightings={list(cfg.weightings)!r} lists a weighting twice")
    _finite("tau", cfg.tau, low=0.0)
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method!r} is not one of {', '.join(map(repr, METHODS))} "
                          "(the digits MLP is trained by an optax optimiser)")
    _finite("lr", cfg.lr, low=0.0, strict=True)
    _finite("momentum", cfg.momentum, low=0.0)
    if cfg.momentum > 1:
        raise ConfigError(f"momentum={cfg.momentum!r} is out of range: need 0 <= momentum <= 1")
    _positive_int("warmup", cfg.warmup, low=0, high=MAX_STEPS)
    _finite("warmup_factor", cfg.warmup_factor, low=1.0)
    _finite("weight_decay", cfg.weight_decay, low=0.0)
    _positive_int("steps", cfg.steps, low=1, high=MAX_STEPS)
    _positive_int("checkpoints", cfg.checkpoints, low=2, high=cfg.steps + 1)
    _positive_int("seeds", cfg.seeds, low=1, high=MAX_SEEDS)
    _positive_int("seed", cfg.seed, low=0, high=MAX_SEED)
    if cfg.early_step is not None:
        _positive_int("early_step", cfg.early_step, low=0, high=cfg.steps)
    _positive_int("ufm_steps", cfg.ufm_steps, low=2, high=MAX_STEPS)
    _finite("ufm_lr", cfg.ufm_lr, low=0.0, strict=True)
    _finite("ufm_init_scale", cfg.ufm_init_scale, low=0.0, strict=True)
    _positive_int("vmap_size", cfg.vmap_size, low=0, high=MAX_SEEDS * len(RECIPES))
    validate_recipe_options(cfg)
    # Last: the sizes of the bundled dataset (this imports scikit-learn).
    available = int(_digit_counts().min()) - cfg.test_per_class
    if available < 1:
        raise ConfigError(f"test_per_class={cfg.test_per_class} is out of range: the smallest "
                          f"digit has {available + cfg.test_per_class} examples")
    _positive_int("train_per_class", cfg.train_per_class, low=1, high=available)


def validate_recipe_options(cfg: DigitsConfig) -> None:
    """The options of the recipes: their ranges, and no option without an effect on any
    recipe of ``weightings`` (a value other than the default is refused there, so that
    the recorded configuration is the run that happened, as in the core)."""
    if cfg.batch_size is not None:
        _positive_int("batch_size", cfg.batch_size, low=1, high=MAX_BATCH)
    if cfg.sampling not in SAMPLINGS:
        raise ConfigError(f"sampling={cfg.sampling!r} is not one of "
                          f"{', '.join(map(repr, SAMPLINGS))}")
    for name in ("reweight_from", "reweight_until"):
        if getattr(cfg, name) is not None:
            _finite(name, getattr(cfg, name), low=0.0)
    _finite("ldam_margin", cfg.ldam_margin, low=0.0)
    _finite("ldam_scale", cfg.ldam_scale, low=0.0, strict=True)
    recipes = cfg.recipes()
    defaults = {field.name: field.default for field in dataclasses.fields(DigitsConfig)}
    for name, what in _RECIPE_OPTIONS.items():
        value = getattr(cfg, name)
        if value != defaults[name] and not any(_uses(r, name) for r in recipes):
            users = [n for n, r in RECIPES.items() if _uses(r, name)]
            raise ConfigError(f"{name}={value!r} has no effect: no recipe of weightings="
                              f"{list(cfg.weightings)!r} {what} (recipes that use it: "
                              f"{', '.join(users)})")


# option -> what a recipe that uses it does
_RECIPE_OPTIONS = {
    "reweight_from": "switches to its weighting at reweight_from",
    "reweight_until": "stops its weighting at reweight_until",
    "ldam_margin": "uses the LDAM loss",
    "ldam_scale": "uses the LDAM loss",
    "sampling": "takes the run's sampler",
}


def _uses(recipe: Recipe, option: str) -> bool:
    """Whether ``recipe`` reads ``option`` (for the message of an option without effect)."""
    return {"reweight_from": recipe.schedule == FROM,
            "reweight_until": recipe.schedule == UNTIL,
            "ldam_margin": recipe.ldam, "ldam_scale": recipe.ldam,
            "sampling": recipe.sampling is None}[option]
