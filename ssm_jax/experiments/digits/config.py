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
PIXELS = 64
# weighting name -> (power-law gamma, uses logit adjustment)
WEIGHTINGS: dict[str, tuple[float, bool]] = {
    "erm": (0.0, False),
    "gamma=1/2": (0.5, False),
    "gamma=1": (1.0, False),
    "logit_adjusted": (0.0, True),
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
    """

    ratio: float = 10.0
    minority: tuple[int, ...] = (5, 6, 7, 8, 9)
    train_per_class: int = 120
    test_per_class: int = 50
    split_seed: int = 0
    hidden: tuple[int, ...] = (128, 64)
    init_scale: float = 1.0
    weightings: tuple[str, ...] = tuple(WEIGHTINGS)
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
        if name not in WEIGHTINGS:
            raise ConfigError(f"weighting {name!r} is not one of "
                              f"{', '.join(map(repr, WEIGHTINGS))}")
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
    _positive_int("vmap_size", cfg.vmap_size, low=0, high=MAX_SEEDS * len(WEIGHTINGS))
    # Last: the sizes of the bundled dataset (this imports scikit-learn).
    available = int(_digit_counts().min()) - cfg.test_per_class
    if available < 1:
        raise ConfigError(f"test_per_class={cfg.test_per_class} is out of range: the smallest "
                          f"digit has {available + cfg.test_per_class} examples")
    _positive_int("train_per_class", cfg.train_per_class, low=1, high=available)
