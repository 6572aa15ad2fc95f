r"""Real-data validation: class-imbalanced handwritten digits with a small network.

The UFM predicts that under plain ERM the majority classes are learned first and the
minorities lag (mode c grows at a rate set by the label matrix's singular value
:math:`\sqrt{n_c}`), that reweighting removes the lag, and that the advantage is an early-
training one. This module checks that on a real network and real images:

* **Data.** scikit-learn's bundled digits (8 x 8 images, 10 classes, 1797 examples, no
  download). Per digit, ``test_per_class`` random examples form a balanced test set; of the
  rest, a majority digit keeps ``train_per_class`` and a minority digit keeps
  ``max(1, round(train_per_class / ratio))`` (a step imbalance, the core's
  :func:`ssm_jax.problem.step_counts`). Pixels are standardised with training statistics.
* **Model.** An MLP ``64 -> hidden... -> 10`` with ReLU; the last hidden layer is the
  feature matrix ``H`` (d x n, one column per example, as in the UFM) and the last layer is
  the classifier ``W`` (k x d) with bias ``b``: logits ``Z = W H + b``.
* **Training.** Full-batch optax (``gd``, ``momentum`` or ``adam``, the core's
  :func:`ssm_jax.dynamics.discrete.optimizer`) inside ``lax.scan``
  (:func:`ssm_jax.dynamics.discrete.run`) on the core's objective convention
  :math:`L = \frac1n\sum_i \omega_{y_i}\,\mathrm{CE}(z_i + \tau\log\pi, y_i)`
  (+ weight decay on the weight matrices), with class weights from
  :func:`ssm_jax.weights.class_weights`. Weightings (:data:`WEIGHTINGS`): ``erm``
  (:math:`\omega = 1, \tau = 0`), ``gamma=1/2`` and ``gamma=1`` (:math:`\omega_c \propto
  n_c^{-\gamma}`), ``logit_adjusted`` (:math:`\omega = 1`, additive :math:`\tau\log\pi_c` on
  the training logits, Menon et al. 2021; predictions use the plain logits). Every
  weighting and seed runs in one ``vmap``; a seed gives every weighting the same
  initialisation.
* **Recorded at each checkpoint** (see :func:`observe_fn`): per-class and balanced test
  and train accuracy, per-class train loss (unweighted CE), own output, the UFM mode
  strengths :math:`a_c = e_c^\top W H v_c` along the label matrix's singular vectors
  (:math:`Y = \sum_c \sqrt{n_c}\, e_c v_c^\top`, :math:`v_c = 1_c/\sqrt{n_c}`), the
  classifier rows and class-mean features, and neural collapse NC1.
* **Bridge.** :func:`bridge` runs the UFM (:func:`ssm_jax.simulate.simulate`, cross-entropy,
  the same class counts and weighting) and compares its minority/majority delay ratio, and
  the closed form :math:`(n_{maj}/n_{min})^{1/2-\gamma}` of the sample-parametrised UFM, with
  the delay measured on the network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import losses, metrics, model
from .config import METHODS, Config, ConfigError, _finite, _positive_int
from .dynamics import discrete
from .problem import Problem, step_counts
from .simulate import (
    Trajectory,
    finish,
    initial_params,
    numeric_of,
    problem_of,
    spec_of,
    to_json_value,
    write_json,
)
from .simulate import observe_fn as ufm_observe_fn
from .weights import class_weights

NUM_CLASSES = 10
PIXELS = 64
# weighting name -> (power-law gamma, uses logit adjustment)
WEIGHTINGS: dict[str, tuple[float, bool]] = {
    "erm": (0.0, False),
    "gamma=1/2": (0.5, False),
    "gamma=1": (1.0, False),
    "logit_adjusted": (0.0, True),
}


def _digit_counts() -> np.ndarray:
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

    def train_counts(self) -> tuple[int, ...]:
        """Training examples per digit (index = digit)."""
        _, n_minor = step_counts(1, 1, self.train_per_class, self.ratio)
        return tuple(n_minor if c in self.minority else self.train_per_class
                     for c in range(NUM_CLASSES))

    def checkpoint_steps(self) -> np.ndarray:
        """Steps of the checkpoints (evenly spaced, 0 and ``steps`` included)."""
        return discrete.save_steps(self.steps, self.checkpoints)

    def checkpoint_times(self) -> np.ndarray:
        """Time at each checkpoint: the summed learning rate of the steps before it."""
        return self.lr * elapsed_multiplier(self.checkpoint_steps(), self.warmup,
                                            self.warmup_factor)

    def early_index(self) -> int:
        """Index of the checkpoint nearest ``early_step`` (default: the end of the warm-up,
        or ``steps / 10`` without warm-up)."""
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
    available = int(_digit_counts().min()) - cfg.test_per_class
    if available < 1:
        raise ConfigError(f"test_per_class={cfg.test_per_class} is out of range: the smallest "
                          f"digit has {available + cfg.test_per_class} examples")
    _positive_int("train_per_class", cfg.train_per_class, low=1, high=available)
    _positive_int("split_seed", cfg.split_seed, low=0)
    if len(cfg.hidden) < 1:
        raise ConfigError("hidden=() needs at least one hidden layer (the features)")
    for width in cfg.hidden:
        _positive_int("hidden width", width, low=1)
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
        raise ConfigError(f"method={cfg.method!r} is not one of {', '.join(map(repr, METHODS))}")
    _finite("lr", cfg.lr, low=0.0, strict=True)
    _finite("momentum", cfg.momentum, low=0.0)
    if cfg.momentum > 1:
        raise ConfigError(f"momentum={cfg.momentum!r} is out of range: need 0 <= momentum <= 1")
    _positive_int("warmup", cfg.warmup, low=0)
    _finite("warmup_factor", cfg.warmup_factor, low=1.0)
    _finite("weight_decay", cfg.weight_decay, low=0.0)
    _positive_int("steps", cfg.steps, low=1)
    _positive_int("checkpoints", cfg.checkpoints, low=2, high=cfg.steps + 1)
    _positive_int("seeds", cfg.seeds, low=1)
    _positive_int("seed", cfg.seed, low=0)
    if cfg.early_step is not None:
        _positive_int("early_step", cfg.early_step, low=0, high=cfg.steps)
    _positive_int("ufm_steps", cfg.ufm_steps, low=2)
    _finite("ufm_lr", cfg.ufm_lr, low=0.0, strict=True)
    _finite("ufm_init_scale", cfg.ufm_init_scale, low=0.0, strict=True)
    _positive_int("vmap_size", cfg.vmap_size, low=0)


# ----------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DigitsData:
    """Standardised images (n, 64) and labels, laid out digit by digit, the counts per
    digit, and the rows of ``sklearn.datasets.load_digits()`` each split took."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    train_index: np.ndarray
    test_index: np.ndarray


def load_data(cfg: DigitsConfig) -> DigitsData:
    """Balanced test split and step-imbalanced training set of the bundled digits.

    Per digit the examples are shuffled with ``split_seed``; the first ``test_per_class``
    go to the test set and the next ``train_counts[digit]`` to the training set (so a
    minority digit's training examples are a subset of what it would have as a majority).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, targets = bunch.data.astype(np.float64), bunch.target
    rng = np.random.default_rng(cfg.split_seed)
    counts = cfg.train_counts()
    train_index, test_index = [], []
    for digit in range(NUM_CLASSES):
        order = rng.permutation(np.flatnonzero(targets == digit))
        test_index.append(order[: cfg.test_per_class])
        train_index.append(order[cfg.test_per_class: cfg.test_per_class + counts[digit]])
    train_index, test_index = np.concatenate(train_index), np.concatenate(test_index)
    x_train, x_test = images[train_index], images[test_index]
    mean = x_train.mean(axis=0)
    std = np.maximum(x_train.std(axis=0), 1.0)  # constant border pixels stay ~0
    return DigitsData(
        x_train=(x_train - mean) / std, y_train=targets[train_index].astype(np.int32),
        x_test=(x_test - mean) / std, y_test=targets[test_index].astype(np.int32),
        train_counts=tuple(int(c) for c in np.bincount(targets[train_index], minlength=10)),
        test_counts=tuple(int(c) for c in np.bincount(targets[test_index], minlength=10)),
        train_index=train_index, test_index=test_index,
    )


# ---------------------------------------------------------------------------------- model
Params = dict[str, Any]


def init_mlp(key: PRNGKeyArray, hidden: Sequence[int], init_scale, dtype) -> Params:
    """He-normal weights (std ``init_scale * sqrt(2 / fan_in)``), zero biases.

    Returns ``{"layers": [{"w": (out, in), "b": (out,)}, ...], "W": (10, d), "b": (10,)}``:
    the hidden layers, then the classifier in the core's UFM layout (:mod:`ssm_jax.model`).
    """
    sizes = (PIXELS, *hidden, NUM_CLASSES)
    keys = jax.random.split(key, len(sizes) - 1)
    mats = [init_scale * jnp.sqrt(2.0 / fan_in) * jax.random.normal(k, (fan_out, fan_in), dtype)
            for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True)]
    layers = [{"w": w, "b": jnp.zeros((w.shape[0],), dtype)} for w in mats[:-1]]
    return {"layers": layers, "W": mats[-1], "b": jnp.zeros((NUM_CLASSES,), dtype)}


def penultimate(params: Params, x: Float[Array, "n 64"]) -> Float[Array, "d n"]:
    """Features H (d x n): the last hidden layer's ReLU activations, one column per example."""
    h = x.T
    for layer in params["layers"]:
        h = jax.nn.relu(layer["w"] @ h + layer["b"][:, None])
    return h


def weight_decay_penalty(params: Params, weight_decay) -> Float[Array, ""]:
    """(lambda / 2) x the squared norm of every weight matrix (biases are not decayed)."""
    squares = sum(jnp.sum(layer["w"] ** 2) for layer in params["layers"])
    return 0.5 * weight_decay * (squares + jnp.sum(params["W"] ** 2))


# ------------------------------------------------------------------------------- training
def lr_multiplier(step, warmup: int, factor: float):
    r"""Geometric warm-up: :math:`\eta_j = \eta\,f^{-(1 - j/w)}` for steps :math:`j < w`,
    then :math:`\eta`. The learning rate grows from :math:`\eta/f` to :math:`\eta` so that
    evenly spaced checkpoints are roughly log-spaced in time early on, where a network
    learns its majority classes within a few full-size steps. ``warmup = 0`` is constant."""
    if warmup == 0:
        return jnp.ones_like(jnp.asarray(step, float))
    progress = jnp.minimum(jnp.asarray(step) / warmup, 1.0)
    return jnp.asarray(factor) ** (progress - 1.0)


def elapsed_multiplier(steps, warmup: int, factor: float) -> np.ndarray:
    """Sum of :func:`lr_multiplier` over the steps before each of ``steps`` (numpy): the
    time of a checkpoint is ``lr`` times this (``lr * step`` without warm-up, the core's
    convention)."""
    steps = np.asarray(steps, dtype=np.int64)
    every = np.asarray(lr_multiplier(np.arange(int(steps.max(initial=0))), warmup, factor),
                       dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(every)])
    return cumulative[steps]


def objective_fn(x, problem: Problem, omega, tau, weight_decay):
    r"""``params -> L`` =
    :math:`\frac1n\sum_i\omega_{y_i}\mathrm{CE}(z_i+\tau\log\pi, y_i)` + weight decay."""
    onehot = problem.onehot()
    example_weights = model.example_weights(problem, omega)
    log_prior = jnp.log(problem.priors())

    def objective(params):
        z = model.outputs(params, penultimate(params, x)) + tau * log_prior[:, None]
        values = losses.cross_entropy(z, onehot)
        return (losses.weighted_mean(values, example_weights, problem.mask)
                + weight_decay_penalty(params, weight_decay))

    return objective


def neural_collapse(feats: Float[Array, "d n"], problem: Problem) -> Float[Array, " k"]:
    r"""Per-class NC1 :math:`\mathrm{tr}(\Sigma_{W,c}\Sigma_B^+)/k`; their mean is Papyan's NC1.

    Class-balanced version (each class counts once, so the imbalance does not tilt it):
    :math:`\Sigma_{W,c}` is class c's feature covariance around its mean :math:`\mu_c`,
    :math:`\Sigma_B = \frac1k\sum_c(\mu_c-\bar\mu)(\mu_c-\bar\mu)^\top`, :math:`\bar\mu` the
    mean of the class means.
    """
    onehot = problem.onehot()
    k = problem.num_classes
    means = (feats @ onehot.T) / onehot.sum(axis=1)  # d x k
    centred = means - means.mean(axis=1, keepdims=True)
    pinv_between = jnp.linalg.pinv(centred @ centred.T / k, hermitian=True)
    within = feats - means[:, problem.labels]
    quadratic = jnp.sum(within * (pinv_between @ within), axis=0)
    return losses.class_means(quadratic, onehot) / k


def observe_fn(x_train, train: Problem, x_test, test: Problem, objective):
    """``params -> dict`` saved at each checkpoint (all over real examples; see module doc)."""
    onehot = train.onehot()
    counts = onehot.sum(axis=1)

    def observe(params):
        feats = penultimate(params, x_train)
        seen_train = metrics.snapshot(model.outputs(params, feats), train, losses.cross_entropy)
        seen_test = metrics.snapshot(model.outputs(params, penultimate(params, x_test)), test,
                                     losses.cross_entropy)
        product = params["W"] @ feats  # the UFM's Z = W H (no bias)
        feature_means = (feats @ onehot.T) / counts  # d x k
        nc1 = neural_collapse(feats, train)
        return {
            "loss": objective(params),
            "test_per_class_accuracy": seen_test["per_class_accuracy"],
            "test_balanced_accuracy": seen_test["balanced_accuracy"],
            "train_per_class_accuracy": seen_train["per_class_accuracy"],
            "train_per_class_loss": seen_train["per_class_loss"],
            "own_output": seen_train["own_output"],
            "mode_strength": jnp.sum(onehot * product, axis=1) / jnp.sqrt(counts),
            "classifier_norm": jnp.linalg.norm(params["W"], axis=1),
            "feature_mode_norm": jnp.linalg.norm(feature_means, axis=0) * jnp.sqrt(counts),
            "nc1": jnp.mean(nc1),
            "nc1_per_class": nc1,
            "classifier": params["W"],
            "classifier_bias": params["b"],
            "feature_means": feature_means.T,  # k x d
        }

    return observe


def weighting_arrays(names: Sequence[str], counts, tau: float, dtype) -> tuple[Array, Array]:
    """Class weights (w, k) and logit-adjustment tau (w,) of each weighting name."""
    counts = jnp.asarray(counts, dtype)
    omegas = [class_weights(counts, "power", WEIGHTINGS[n][0]) for n in names]
    taus = [tau if WEIGHTINGS[n][1] else 0.0 for n in names]
    return jnp.stack(omegas), jnp.asarray(taus, dtype)


def train_all(cfg: DigitsConfig, data: DigitsData) -> dict:
    """Train every (weighting, seed) run in one jitted call.

    The runs are batched with ``jax.lax.map(..., batch_size=vmap_size)``: ``vmap_size``
    runs at a time go through ``vmap`` (all of them by default on an accelerator, so the
    seeds and weightings are one vmapped computation; one at a time on a CPU, where XLA's
    batched matmuls are ~2x slower than a loop of plain ones). Every choice gives the same
    numbers up to float rounding. Returns numpy arrays with leading axes ``[weighting, seed,
    checkpoint]`` (see :func:`observe_fn`), plus ``diverged_step`` ``[weighting, seed]``
    (-1 if the loss stayed finite) and ``weights`` ``[weighting, k]`` / ``tau``
    ``[weighting]``.
    """
    num_weightings, runs = len(cfg.weightings), len(cfg.weightings) * cfg.seeds
    with jax.enable_x64(cfg.x64):
        dtype = jnp.asarray(0.0).dtype
        omegas, taus = weighting_arrays(cfg.weightings, data.train_counts, cfg.tau, dtype)
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(cfg.seed), s))(
            jnp.arange(cfg.seeds))
        # Flatten (weighting, seed) into runs; every weighting shares the seeds' inits.
        per_run = (jnp.repeat(omegas, cfg.seeds, axis=0), jnp.repeat(taus, cfg.seeds),
                   jnp.tile(keys, (num_weightings, 1)))
        arrays = tuple(jnp.asarray(a, dtype) for a in (data.x_train, data.x_test))
        labels = (jnp.asarray(data.y_train), jnp.asarray(data.y_test))
        scalars = tuple(jnp.asarray(v, dtype) for v in (cfg.lr, cfg.momentum, cfg.warmup_factor,
                                                         cfg.weight_decay, cfg.init_scale))
        static = _Static.of(cfg, min(resolve_vmap_size(cfg.vmap_size), runs))
        seen, diverged = _train_jit(static, arrays, labels, per_run, scalars)
        unflatten = lambda a: np.asarray(a).reshape(num_weightings, cfg.seeds, *a.shape[1:])  # noqa: E731
        out = {name: unflatten(value) for name, value in seen.items()}
        out["diverged_step"] = unflatten(diverged)
        out["weights"], out["tau"] = np.asarray(omegas), np.asarray(taus)
    return out


def resolve_vmap_size(vmap_size: int) -> int:
    """``vmap_size = 0`` means: every run at once on an accelerator, one at a time on CPU."""
    if vmap_size > 0:
        return vmap_size
    return 1 if jax.default_backend() == "cpu" else 1 << 30


@dataclass(frozen=True)
class _Static:
    hidden: tuple[int, ...]
    method: str
    warmup: int
    steps: int
    checkpoints: int
    vmap_size: int

    @classmethod
    def of(cls, cfg: DigitsConfig, vmap_size: int) -> _Static:
        return cls(tuple(cfg.hidden), cfg.method, cfg.warmup, cfg.steps, cfg.checkpoints,
                   vmap_size)


def _train(static: _Static, arrays, labels, per_run, scalars):
    x_train, x_test = arrays
    lr, momentum, warmup_factor, weight_decay, init_scale = scalars
    dtype = x_train.dtype
    train = problem_of_labels(labels[0], dtype)
    test = problem_of_labels(labels[1], dtype)

    def one(run):
        omega, tau, key = run
        params0 = init_mlp(key, static.hidden, init_scale, dtype)
        objective = objective_fn(x_train, train, omega, tau, weight_decay)
        observe = observe_fn(x_train, train, x_test, test, objective)
        schedule = lambda step: lr * lr_multiplier(step, static.warmup, warmup_factor)  # noqa: E731
        opt = discrete.optimizer(static.method, schedule, momentum)
        seen, _, diverged = discrete.run(objective, observe, params0, opt, static.steps,
                                         static.checkpoints)
        return seen, diverged

    return jax.lax.map(one, per_run, batch_size=static.vmap_size)


def problem_of_labels(labels, dtype) -> Problem:
    """A core :class:`Problem` (no padding) for a label vector (numpy or traced)."""
    counts = jnp.sum(jnp.arange(NUM_CLASSES)[:, None] == labels[None, :], axis=1)
    return Problem(labels=labels, mask=jnp.ones(labels.shape, dtype),
                   counts=counts.astype(dtype))


_train_jit = jax.jit(_train, static_argnums=0)


# ---------------------------------------------------------------------------- UFM bridge
UFM_PARAMETRIZATIONS = ("sample", "class")


def closed_form_delay(ratio: float, gamma: float, parametrization: str) -> float:
    r"""Minority/majority delay of the UFM's small-initialisation escape, in closed form.

    With balanced, small, spectrally aligned init, mode c grows like
    :math:`\dot z_c \approx 2\,\omega_c\,(m_c\,n_c)^{1/2}\,|\ell'(0)|\, z_c / n` where
    :math:`m_c = n_c` (``sample``: one free feature per example) or 1 (``class``: one
    shared feature per class). So its rate is :math:`\propto n_c^{1/2-\gamma}` (sample) or
    :math:`n_c^{1-\gamma}` (class) and the delay is :math:`r^{1/2-\gamma}` or
    :math:`r^{1-\gamma}` with :math:`r = n_{maj}/n_{min}`.
    """
    exponent = 0.5 - gamma if parametrization == "sample" else 1.0 - gamma
    return float(ratio ** exponent)


def delay(times: np.ndarray, minority_mask: np.ndarray) -> np.ndarray:
    """Mean minority time / mean majority time over the last axis (classes); NaN if a class
    never got there."""
    times = np.asarray(times, dtype=np.float64)
    return times[..., minority_mask].mean(-1) / times[..., ~minority_mask].mean(-1)


def ufm_config(cfg: DigitsConfig, counts: Sequence[int], gamma: float,
               parametrization: str) -> Config:
    """The core UFM configuration matching a digits run: same class counts (digit order),
    cross-entropy, feature dimension = last hidden width, small gaussian init, no bias (the
    setting of :func:`closed_form_delay`)."""
    return Config(loss="ce", profile="counts", counts=tuple(int(c) for c in counts),
                  dim=int(cfg.hidden[-1]), weighting="power", gamma=gamma,
                  parametrization=parametrization, bias=False, init="gaussian",
                  init_scale=cfg.ufm_init_scale, method="gd", lr=cfg.ufm_lr,
                  steps=cfg.ufm_steps, saves=min(cfg.ufm_steps + 1, 401), seed=cfg.seed,
                  x64=cfg.x64)


def ufm_trajectories(cfg: DigitsConfig, counts: Sequence[int],
                     parametrization: str) -> Trajectory:
    """UFM trajectories of every weighting of ``cfg`` (leading axis: weighting; numpy).

    Built from the core's pieces (:func:`ssm_jax.simulate.initial_params`, ``observe_fn``,
    ``finish``, :func:`ssm_jax.dynamics.discrete.run`) with the core objective plus the
    logit-adjustment shift ``tau log pi`` on the training outputs (zero except for
    ``logit_adjusted``), all weightings vmapped in one compiled call. Every weighting starts
    from the same initialisation (``PRNGKey(seed)``); metrics use the plain outputs.
    """
    ucfg = ufm_config(cfg, counts, 0.0, parametrization)
    with jax.enable_x64(ucfg.x64):
        spec, problem, numeric = spec_of(ucfg), problem_of(ucfg), numeric_of(ucfg)
        dtype = numeric.lr.dtype
        omegas, taus = weighting_arrays(cfg.weightings, counts, cfg.tau, dtype)
        onehot = problem.onehot()
        log_prior = jnp.log(problem.priors())[:, None]
        t = numeric.lr * jnp.asarray(discrete.save_steps(spec.steps, spec.saves), dtype)

        def one(omega, tau):
            params0 = initial_params(spec, problem, numeric, omega,
                                     jax.random.PRNGKey(ucfg.seed))
            example_weights = model.example_weights(problem, omega)

            def objective(params):
                feats = model.features(params, problem, omega, spec.parametrization)
                values = losses.cross_entropy(model.outputs(params, feats) + tau * log_prior,
                                              onehot)
                return losses.weighted_mean(values, example_weights, problem.mask)

            observe = ufm_observe_fn(spec, problem, numeric, omega)
            opt = discrete.optimizer(spec.method, numeric.lr, numeric.momentum)
            seen, _, diverged = discrete.run(objective, observe, params0, opt, spec.steps,
                                             spec.saves)
            return finish(spec, t, seen, omega, diverged)

        return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(omegas, taus))


def loss_time(t, per_class_loss, threshold: float = math.log(NUM_CLASSES) / 2):
    """First time each class's training loss falls to ``threshold`` (default ``log(k) / 2``,
    half the loss of a zero output), interpolated; NaN if never. Time on axis 0."""
    return np.asarray(metrics.first_crossing(jnp.asarray(t), -jnp.asarray(per_class_loss),
                                             -threshold))


def fit_exponent(ratio: float, delays: dict[str, float]) -> float:
    r"""Least-squares fit of :math:`p` in :math:`\mathrm{delay}_\gamma = r^{p-\gamma}` over the
    power-law weightings present (``erm`` is gamma 0): :math:`p = \overline{\log_r
    \mathrm{delay}_\gamma + \gamma}`. The UFM predicts 1/2 (sample) or 1 (class). NaN if
    ``ratio == 1`` or no finite delay."""
    if ratio <= 1:
        return float("nan")
    values = [math.log(d) / math.log(ratio) + WEIGHTINGS[name][0]
              for name, d in delays.items()
              if not WEIGHTINGS[name][1] and d is not None and np.isfinite(d) and d > 0]
    return float(np.mean(values)) if values else float("nan")


def bridge(cfg: DigitsConfig, data: DigitsData, out: dict) -> dict:
    """Compare the minority/majority delay measured on the network with the UFM's.

    The learning time of a class is the first time its unweighted training cross-entropy
    falls to ``log(k) / 2`` (:func:`loss_time`; time = summed learning rate); the delay is
    mean minority / mean majority learning time. It is measured per seed on the network
    (``delay_loss``; ``delay_train`` / ``delay_test`` use the per-class accuracy reaching
    1/2 instead), on UFM runs with the same counts and weighting for both parametrisations
    (``ufm_delay``), and given in closed form (``closed_form_delay``). ``exponent`` fits
    p in delay = r^(p - gamma) to the network's and the UFMs' delays. ``time_scale`` maps UFM
    time onto network time by matching the majority learning time of the ERM (else first)
    weighting; the figure draws the UFM loss curves on that clock.
    """
    minority = np.array([c in cfg.minority for c in range(NUM_CLASSES)])
    t = cfg.checkpoint_times()
    ratio = max(data.train_counts) / min(data.train_counts)
    by_class = lambda a: np.moveaxis(a, 0, 1)  # noqa: E731  [seed, ckpt, k] -> [ckpt, seed, k]
    result: dict = {"ratio": ratio, "weightings": {}, "ufm": {}}
    ufm = {p: ufm_trajectories(cfg, data.train_counts, p) for p in UFM_PARAMETRIZATIONS}
    for w, name in enumerate(cfg.weightings):
        gamma, adjusted = WEIGHTINGS[name]
        learn = {split: np.asarray(metrics.first_crossing(
                     t, by_class(out[f"{split}_per_class_accuracy"][w])))
                 for split in ("train", "test")}  # [seed][class]
        times = loss_time(t, by_class(out["train_per_class_loss"][w]))
        entry = {
            "loss_time": times, "learn_time_train": learn["train"],
            "learn_time_test": learn["test"], "delay_loss": delay(times, minority),
            "delay_train": delay(learn["train"], minority),
            "delay_test": delay(learn["test"], minority),
            "ufm_delay": {}, "closed_form_delay": {},
        }
        for parametrization in UFM_PARAMETRIZATIONS:
            traj = jax.tree.map(lambda a: a[w], ufm[parametrization])  # noqa: B023
            ufm_times = loss_time(traj.t, traj.per_class_loss)
            result["ufm"].setdefault(parametrization, {})[name] = {
                "t": traj.t, "per_class_loss": traj.per_class_loss, "loss_time": ufm_times,
                "diverged": int(traj.diverged_step) >= 0,
            }
            entry["ufm_delay"][parametrization] = float(delay(ufm_times, minority))
            entry["closed_form_delay"][parametrization] = (
                None if adjusted else closed_form_delay(ratio, gamma, parametrization))
        result["weightings"][name] = entry
    network = {n: float(np.mean(e["delay_loss"])) for n, e in result["weightings"].items()}
    result["exponent"] = {"network": fit_exponent(ratio, network)}
    for parametrization in UFM_PARAMETRIZATIONS:
        result["exponent"][f"ufm_{parametrization}"] = fit_exponent(
            ratio, {n: e["ufm_delay"][parametrization] for n, e in result["weightings"].items()})
    reference = "erm" if "erm" in cfg.weightings else cfg.weightings[0]
    network_major = np.mean(result["weightings"][reference]["loss_time"][:, ~minority])
    result["reference"] = reference
    result["time_scale"] = {
        p: float(network_major / np.mean(result["ufm"][p][reference]["loss_time"][~minority]))
        for p in UFM_PARAMETRIZATIONS}
    return result


# --------------------------------------------------------------------- results and output
@dataclass
class DigitsResult:
    """A finished experiment: configuration, data counts, recordings and the UFM bridge."""

    config: DigitsConfig
    data: DigitsData
    recorded: dict  # numpy arrays [weighting, seed, checkpoint, ...] (see train_all)
    bridge: dict

    @property
    def minority_mask(self) -> np.ndarray:
        return np.array([c in self.config.minority for c in range(NUM_CLASSES)])

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
            "diverged": self.diverged,
            "config": cfg.to_dict(),
        }
        for w, name in enumerate(cfg.weightings):
            groups = self.group_accuracy(w)
            steps = rec["diverged_step"][w]
            links = self.bridge["weightings"][name]
            data[name] = {
                "balanced_test_accuracy": groups["balanced"],
                "majority_test_accuracy": groups["majority"],
                "minority_test_accuracy": groups["minority"],
                "class_weights": rec["weights"][w],
                "tau": float(rec["tau"][w]),
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


def _mean_std(values) -> list:
    values = np.asarray(values, dtype=np.float64)
    return [float(np.mean(values)), float(np.std(values))]


def bridge_summary(links: dict) -> dict:
    """The JSON part of :func:`bridge`: delays per weighting (network mean/std over seeds)."""
    out = {"ratio": links["ratio"], "reference": links["reference"],
           "time_scale": links["time_scale"], "exponent": links["exponent"], "weightings": {}}
    for name, entry in links["weightings"].items():
        out["weightings"][name] = {
            "network_delay": _mean_std(entry["delay_loss"]),
            "network_delay_train": _mean_std(entry["delay_train"]),
            "network_delay_test": _mean_std(entry["delay_test"]),
            "ufm_delay": entry["ufm_delay"],
            "closed_form_delay": entry["closed_form_delay"],
        }
    return out


def run_digits(cfg: DigitsConfig | None = None) -> DigitsResult:
    """Load the data, train every weighting and seed, and build the UFM bridge."""
    cfg = cfg or DigitsConfig()
    data = load_data(cfg)
    recorded = train_all(cfg, data)
    return DigitsResult(cfg, data, recorded, bridge(cfg, data, recorded))


def _fmt(pair, digits: int = 3) -> str:
    mean, std = pair
    return "  nan" if not np.isfinite(mean) else f"{mean:.{digits}f}±{std:.{digits}f}"


def print_report(result: DigitsResult, file=None) -> None:
    """Print the accuracy table (early and final checkpoints) and the delay bridge."""
    import sys

    file = file or sys.stdout
    cfg, summary = result.config, result.summary()
    steps = cfg.checkpoint_steps()
    early = cfg.early_index()
    print(f"digits: train counts {list(result.data.train_counts)} (minority digits "
          f"{sorted(cfg.minority)}), balanced test set of {sum(result.data.test_counts)}; "
          f"{cfg.seeds} seeds, {cfg.method} lr {cfg.lr:g}, {cfg.steps} steps", file=file)
    print(f"test accuracy, mean±std over seeds, early = step {steps[early]}, final = step "
          f"{steps[-1]}", file=file)
    header = (f"{'weighting':<16}{'early bal.':>13}{'final bal.':>13}{'early maj':>13}"
              f"{'early min':>13}{'final maj':>13}{'final min':>13}")
    print(header, file=file)
    print("-" * len(header), file=file)
    for name, s in summary.items():
        print(f"{name:<16}{_fmt(s['early']['balanced']):>13}{_fmt(s['final']['balanced']):>13}"
              f"{_fmt(s['early']['majority']):>13}{_fmt(s['early']['minority']):>13}"
              f"{_fmt(s['final']['majority']):>13}{_fmt(s['final']['minority']):>13}", file=file)
    links = bridge_summary(result.bridge)
    print(f"\ndelay = mean minority / mean majority time for the training loss to reach "
          f"log(k)/2 (r = n_maj/n_min = {links['ratio']:g}); 'acc' columns: time for the "
          f"train/test accuracy to reach 1/2", file=file)
    header = (f"{'weighting':<16}{'network':>13}{'net acc tr':>13}{'net acc te':>13}"
              f"{'UFM sample':>12}{'UFM class':>11}{'r^(1/2-g)':>11}{'r^(1-g)':>9}")
    print(header, file=file)
    print("-" * len(header), file=file)
    show = lambda v: "    -" if v is None or not np.isfinite(v) else f"{v:.3g}"  # noqa: E731
    for name, e in links["weightings"].items():
        print(f"{name:<16}{_fmt(e['network_delay'], 2):>13}"
              f"{_fmt(e['network_delay_train'], 2):>13}{_fmt(e['network_delay_test'], 2):>13}"
              f"{show(e['ufm_delay']['sample']):>12}{show(e['ufm_delay']['class']):>11}"
              f"{show(e['closed_form_delay']['sample']):>11}"
              f"{show(e['closed_form_delay']['class']):>9}", file=file)
    exponent = links["exponent"]
    print(f"fitted p in delay = r^(p - gamma): network {show(exponent['network'])}, UFM sample "
          f"{show(exponent['ufm_sample'])}, UFM class {show(exponent['ufm_class'])} "
          f"(closed forms: 1/2 and 1)", file=file)


def save_params(result: DigitsResult, path) -> None:
    """Write the classifier, its bias and the class-mean features at every checkpoint
    (``[weighting, seed, checkpoint, ...]``) to an ``.npz`` file, atomically."""
    from .io import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, weightings=np.array(result.config.weightings),
                     checkpoints=result.config.checkpoint_steps(),
                     **{k: result.recorded[k]
                        for k in ("classifier", "classifier_bias", "feature_means")})

    atomic_write(path, write)


def _band(ax, t, values, color, label, **style) -> None:
    """Mean over seeds (axis 0) with a mean ± std band."""
    import warnings

    with warnings.catch_warnings():  # a checkpoint where every seed is NaN stays blank
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    ax.plot(t, mean, color=color, label=label, **style)
    ax.fill_between(t, mean - std, mean + std, color=color, alpha=0.18, lw=0)


def digits_figure(result: DigitsResult, path) -> None:
    """Top: balanced test accuracy per weighting; the ERM network vs the time-rescaled UFM
    (training accuracy, majority/minority); delay ratios network vs UFM vs closed forms.
    Bottom: majority/minority test accuracy per weighting. Bands: mean ± std over seeds;
    time (summed learning rate) on a log axis."""
    from .plots import plt  # pyplot with the Agg backend

    cfg, links = result.config, result.bridge
    t = cfg.checkpoint_times()
    shown = t > 0
    names = list(cfg.weightings)
    columns = max(3, len(names))
    fig, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 7.4), squeeze=False)
    ax = axes[0, 0]
    for w, name in enumerate(names):
        _band(ax, t[shown], result.group_accuracy(w)["balanced"][:, shown], f"C{w}", name)
    ax.axvline(t[cfg.early_index()], color="grey", ls=":", lw=1)
    ax.set(xscale="log", xlabel="time (summed lr)", ylabel="balanced test accuracy",
           title="balanced test accuracy (dotted: early checkpoint)", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[0, 1]
    minority, reference = result.minority_mask, links["reference"]
    w = names.index(reference)
    per_class = result.recorded["train_per_class_loss"][w]
    _band(ax, t[shown], per_class[:, shown][..., ~minority].mean(-1), "C0", "network majority")
    _band(ax, t[shown], per_class[:, shown][..., minority].mean(-1), "C3", "network minority")
    for parametrization, style in (("class", "--"), ("sample", ":")):
        ufm = links["ufm"][parametrization][reference]
        clock = links["time_scale"][parametrization] * ufm["t"]
        keep = clock > 0
        for mask, color, group in ((~minority, "C0", "maj"), (minority, "C3", "min")):
            ax.plot(clock[keep], ufm["per_class_loss"][keep][:, mask].mean(-1), color=color,
                    ls=style, lw=1.2, label=f"UFM {parametrization} {group}")
    ax.axhline(math.log(NUM_CLASSES) / 2, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="time (summed lr; UFM rescaled)", ylabel="training CE loss",
           title=f"{reference}: network vs UFM, same counts", xlim=(t[shown][0], t[-1]))
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[0, 2]
    summary = bridge_summary(links)["weightings"]
    x = np.arange(len(names))
    bars = [("network (loss)", lambda e: e["network_delay"]),
            ("network (test acc.)", lambda e: e["network_delay_test"]),
            ("UFM class", lambda e: [e["ufm_delay"]["class"], 0.0]),
            ("UFM sample", lambda e: [e["ufm_delay"]["sample"], 0.0])]
    width = 0.8 / (len(bars) + 2)
    for j, (label, get) in enumerate(bars):
        values = np.array([get(summary[n]) for n in names], dtype=np.float64)
        ax.bar(x + (j - 2) * width, values[:, 0], width, yerr=values[:, 1], label=label,
               color=f"C{j}")
    for j, (parametrization, marker) in enumerate((("class", "v"), ("sample", "^"))):
        closed = [summary[n]["closed_form_delay"][parametrization] for n in names]
        closed = np.array([np.nan if v is None else v for v in closed], dtype=np.float64)
        ax.scatter(x + (2 + j) * width, closed, marker=marker, color="k", zorder=3,
                   label=f"r^({'1' if parametrization == 'class' else '1/2'}-γ)")
    ax.axhline(1.0, color="grey", lw=0.8)
    fitted = links["exponent"]["network"]
    ax.set(yscale="log", xticks=x, ylabel="minority / majority learning time",
           title=f"delay (r = {links['ratio']:g}; network fit r^({fitted:.2f}-γ))")
    ax.set_xticklabels(names, fontsize=8)
    ax.legend(fontsize=7)
    for j in range(3, columns):
        axes[0, j].axis("off")

    for w, name in enumerate(names):
        ax = axes[1, w]
        groups = result.group_accuracy(w)
        _band(ax, t[shown], groups["majority"][:, shown], "C0", "majority")
        _band(ax, t[shown], groups["minority"][:, shown], "C3", "minority")
        _band(ax, t[shown], groups["balanced"][:, shown], "k", "balanced", ls="--", lw=1)
        ax.set(xscale="log", xlabel="time (summed lr)", ylabel="test accuracy", ylim=(0, 1.02),
               title=name)
        ax.legend(fontsize=8, loc="lower right")
    for j in range(len(names), columns):
        axes[1, j].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(out_dir: str = "digits_out", cfg: DigitsConfig | None = None,
         keep_params: bool = False) -> DigitsResult:
    """Run, print the report, write ``digits.json`` and ``digits.png`` (and optionally
    ``digits_params.npz``) to ``out_dir``."""
    import os

    cfg = cfg or DigitsConfig()
    result = run_digits(cfg)
    print_report(result)
    os.makedirs(out_dir, exist_ok=True)
    write_json(result.to_dict(), os.path.join(out_dir, "digits.json"))
    digits_figure(result, os.path.join(out_dir, "digits.png"))
    written = ["digits.json", "digits.png"]
    if keep_params:
        save_params(result, os.path.join(out_dir, "digits_params.npz"))
        written.append("digits_params.npz")
    print(f"wrote {', '.join(os.path.join(out_dir, w) for w in written)}")
    return result
