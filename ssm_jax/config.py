"""Run configuration: one frozen dataclass whose fields declare their own metadata.

Every field of :class:`Config` is declared once with :func:`~ssm_jax.options.option`: its
default, its kind (static, traced, problem or host), help text, command-line group,
allowed values and the setting it applies to. From that table this module derives

* :class:`Spec`, the static part of a run (a ``jit`` static argument), and
* :class:`Numeric`, the traced part (arrays ``vmap`` and ``grad`` see),

and the command line (:mod:`ssm_jax.cli`), sweeps (:mod:`ssm_jax.sweep`) and the docs derive
their parsers, dimensions and reference from :data:`OPTIONS`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import struct
from dataclasses import dataclass
from typing import NamedTuple

from .options import (
    ConfigError,
    Option,
    check_choice,
    check_int,
    check_real,
    option,
    options_of,
    parse_flag,
    parse_floats,
    parse_ints,
    parse_real,
)
from .registry import LOSSES, METHODS, PARAMETRIZATIONS, PROFILES, SAMPLINGS, SOLVERS, WEIGHTINGS

INITS = ("gaussian", "aligned")
ADJOINTS = ("recursive", "backsolve")
STOP_METRICS = ("balanced_accuracy", "worst_class_accuracy", "loss")
REDUCED_MODES = ("auto", "on", "off")

# Former private names of the checks (the digits experiment validates with them).
_choice, _finite, _positive_int = check_choice, check_real, check_int

# Upper bounds of the integer options (docs/cli.md, "Bounds"): sizes are refused before
# anything is allocated. A run's memory is estimated separately against the machine's.
MAX_CLASSES = 10_000  # classes: k_major, k_minor, entries of counts
MAX_CLASS_SIZE = 10**8  # examples in one class
MAX_DIM = 65_536  # feature dimension d
MAX_STEPS = 10**9  # optimisation steps, flow solver steps
MAX_SAVES = 10**6  # save points
MAX_DEPTH = 64  # layers of the deep linear UFM
MAX_SEED = 2**32 - 1  # JAX's PRNG keys hold 32 bits: 2**32 would silently be seed 0
MAX_BATCH = 10**9  # minibatch size (draws per step of the class samplers)

IMBALANCE, WEIGHTING, MODEL, LOSS, OPTIMISER, FLOW, OUTPUT = (
    "imbalance", "weighting", "model", "loss", "optimiser", "gradient flow", "output")


@dataclass(frozen=True)
class Config:
    """Everything that defines one simulated training run.

    Imbalance
        ``profile='step'``: ``k_major`` classes of ``n_major`` examples then ``k_minor``
        classes of ``n_minor = max(1, round(n_major / ratio))``.
        ``profile='longtail'``: ``k_major + k_minor`` classes with counts decaying
        geometrically from ``n_major`` to ``n_major / ratio``.
        ``profile='counts'`` (or ``counts`` given): explicit class counts.
    Weighting (per class, normalised so the mean per-example weight is 1)
        ``erm`` (all 1), ``power`` (w_c ∝ n_c^-gamma), ``effective``
        (Cui et al. 2019: w_c ∝ (1 - beta) / (1 - beta^n_c)), ``explicit`` (``weights``).
    Model
        ``parametrization``: ``sample`` (one feature column per example, the UFM),
        ``class`` (one shared feature per class), ``whitened`` (train G = H Ω^{1/2}).
    Training
        ``method`` in gd / momentum / adam / specgd / muon with learning rate ``lr`` for
        ``steps`` steps; metrics are saved at ``saves`` evenly spaced steps (first and last
        included). Time is ``t = lr * step``.
    Gradient flow (``method='flow'``, :mod:`ssm_jax.dynamics.flow`)
        dθ/dt = -∇L solved by diffrax ``solver`` with PID step control (``rtol``,
        ``atol``, at most ``max_steps`` steps) up to ``t1`` (None: ``lr * steps``, so the
        save times equal those of a discrete run); ``adjoint`` for gradients through it;
        optional early stop when ``stop_metric`` crosses ``stop_at``.

    Each field's metadata (:data:`OPTIONS`) holds its help text and allowed values.
    """

    # Config validates its own arguments, types included, with messages naming the bad
    # value; the test-time jaxtyping hook leaves its __init__ alone so those messages are
    # what tests see (methods are still checked).
    __no_type_check__ = True

    loss: str = option("mse", "static", "training loss: squared (mse), cross-entropy (ce), "
                       "logit-adjusted (la) or VS (vs) cross-entropy, focal loss (focal), or "
                       "LDAM (ldam)",
                       group=LOSS, choices=LOSSES)
    profile: str = option("step", "problem", "imbalance profile", group=IMBALANCE,
                          choices=PROFILES)
    k_major: int = option(5, "problem", "number of majority classes (step profile)",
                          group=IMBALANCE, parse=int, applies=("profile", ("step", "longtail")),
                          low=0, high=MAX_CLASSES)
    k_minor: int = option(5, "problem", "number of minority classes (step profile)",
                          group=IMBALANCE, parse=int, applies=("profile", ("step", "longtail")),
                          low=0, high=MAX_CLASSES)
    n_major: int = option(100, "problem", "examples per majority class (largest class)",
                          group=IMBALANCE, parse=int, applies=("profile", ("step", "longtail")),
                          low=1, high=MAX_CLASS_SIZE)
    ratio: float = option(10.0, "problem", "imbalance ratio n_major / n_minor (>= 1)",
                          group=IMBALANCE, parse=parse_real, batched=True,
                          applies=("profile", ("step", "longtail")), low=1.0)
    counts: tuple[int, ...] | None = option(
        None, "problem", "explicit class counts, comma separated (sets --profile counts)",
        group=IMBALANCE, parse=parse_ints, applies=("profile", ("counts",)), low=1,
        high=MAX_CLASS_SIZE)
    dim: int = option(32, "static", "feature dimension d", group=MODEL, parse=int, low=1,
                      high=MAX_DIM)
    weighting: str = option("erm", "static", "per-class loss weights", group=WEIGHTING,
                            choices=WEIGHTINGS)
    gamma: float = option(0.0, "traced", "power-law exponent: w_c ∝ n_c^-gamma",
                          group=WEIGHTING, parse=parse_real, applies=("weighting", ("power",)))
    beta: float = option(0.999, "traced", "effective-number beta in [0, 1)", group=WEIGHTING,
                         parse=parse_real, applies=("weighting", ("effective",)), low=0.0,
                         high=1.0)
    weights: tuple[float, ...] | None = option(
        None, "traced", "explicit per-class weights, comma separated", group=WEIGHTING,
        parse=parse_floats, applies=("weighting", ("explicit",)), low=0.0)
    reweight_from: float | None = option(
        None, "traced", "deferred re-weighting (DRW): ERM weights before this time, the "
        "chosen weighting from it on (t = lr x step)", group=WEIGHTING, parse=parse_real,
        low=0.0, inert=("weighting", ("erm",)))
    reweight_until: float | None = option(
        None, "traced", "the chosen weighting until this time, ERM weights from it on",
        group=WEIGHTING, parse=parse_real, low=0.0, inert=("weighting", ("erm",)))
    parametrization: str = option("sample", "static", "feature parametrisation", group=MODEL,
                                  choices=PARAMETRIZATIONS)
    bias: bool = option(False, "static", "train a classifier bias b (true/false)",
                        group=MODEL, parse=parse_flag)
    weight_decay: float = option(0.0, "traced", "weight decay lambda on W and H", group=LOSS,
                                 parse=parse_real, low=0.0)
    init: str = option("gaussian", "static", "initialisation", group=MODEL, choices=INITS)
    init_scale: float = option(
        1e-3, "traced", "gaussian std (init gaussian) or initial own output z0 (init aligned)",
        group=MODEL, parse=parse_real, low=0.0)
    method: str = option("gd", "static", "optimiser", group=OPTIMISER, choices=METHODS)
    momentum: float = option(0.9, "traced", "momentum coefficient (method momentum)",
                             group=OPTIMISER, parse=parse_real,
                             applies=("method", ("momentum", "muon")), low=0.0, high=1.0)
    lr: float = option(4.0, "traced", "learning rate (time t = lr x step)", group=OPTIMISER,
                       parse=parse_real, low=0.0, strict=True)
    batch_size: int | None = option(
        None, "static", "minibatch size of stochastic gradient descent (default: the full "
        "batch); batches are drawn by --sampling", group=OPTIMISER, parse=int, low=1,
        high=MAX_BATCH, inert=("method", ("flow",)))
    sampling: str = option("uniform", "static", "how minibatches are drawn", group=OPTIMISER,
                           choices=SAMPLINGS, needs="batch_size")
    steps: int = option(300, "static", "number of optimisation steps (with --method flow "
                        "and --t1: leave it, the flow ends at t1)", group=OPTIMISER,
                        parse=int, low=1, high=MAX_STEPS, unless="t1")
    saves: int = option(101, "static",
                        "number of evenly spaced save points (incl. 0 and the end)",
                        group=OPTIMISER, parse=int, low=2, high=MAX_SAVES)
    seed: int = option(0, "host", "PRNG seed of the initialisation (< 2^32: JAX's keys are "
                       "32-bit)", group=MODEL, parse=int, batched=True, low=0,
                       high=MAX_SEED)
    x64: bool = option(False, "host", "compute in float64", group=OUTPUT, switch=True)
    keep_params: bool = option(False, "static", "also save W, H (and b) at every save point",
                               group=OUTPUT, switch=True, shared=False)
    # Beyond the paper (docs/beyond.md): deep linear UFM, logit-adjusted losses, geometry.
    depth: int = option(1, "static", "depth L of the linear UFM: L-1 inner d x d layers "
                        "between the features and the classifier (1 = the UFM)", group=MODEL,
                        parse=int, low=1, high=MAX_DEPTH)
    tau: float = option(1.0, "traced", "logit adjustment tau: loss la / vs add tau "
                        "log(prior); also the post-hoc adjustment of the posthoc_* metrics",
                        group=LOSS, parse=parse_real)
    vs_gamma: float = option(0.2, "traced", "VS loss: multiplicative Delta_c = (n_c / n_max)"
                             "^vs_gamma", group=LOSS, parse=parse_real, applies=("loss", ("vs",)))
    ldam_margin: float = option(0.5, "traced", "LDAM: the largest class margin (the margins "
                                "are m_c ∝ n_c^-1/4)", group=LOSS, parse=parse_real,
                                applies=("loss", ("ldam",)), low=0.0)
    ldam_scale: float = option(1.0, "traced", "LDAM: the logits are scaled by this before "
                               "the softmax", group=LOSS, parse=parse_real,
                               applies=("loss", ("ldam",)), low=0.0, strict=True)
    focal_gamma: float = option(2.0, "traced", "focal loss exponent: (1 - p_y)^focal_gamma "
                                "multiplies the cross-entropy (0 = cross-entropy)", group=LOSS,
                                parse=parse_real, applies=("loss", ("focal",)), low=0.0)
    geometry: bool = option(False, "static", "record neural-collapse geometry (NC1-NC3, "
                            "SELI, norms, angles) at every save point (true/false)",
                            group=OUTPUT, parse=parse_flag)
    # Gradient flow (method="flow"; docs/theory.md). t1=None means lr x steps.
    t1: float | None = option(None, "traced", "gradient-flow end time (default: lr x steps, "
                              "the discrete run's end)", group=FLOW, parse=parse_real,
                              applies=("method", ("flow",)), low=0.0, strict=True)
    solver: str = option("tsit5", "static", "diffrax solver of the flow (kvaerno5: implicit, "
                         "for stiff runs)", group=FLOW, choices=SOLVERS,
                         applies=("method", ("flow",)))
    rtol: float = option(1e-5, "static", "relative tolerance of the flow's PID step control",
                         group=FLOW, parse=parse_real, applies=("method", ("flow",)),
                         low=0.0, strict=True)
    atol: float = option(1e-8, "static", "absolute tolerance of the flow's PID step control",
                         group=FLOW, parse=parse_real, applies=("method", ("flow",)),
                         low=0.0, strict=True)
    max_steps: int = option(100_000, "static", "most solver steps before the flow reports "
                            "failure", group=FLOW, parse=int, applies=("method", ("flow",)),
                            low=1, high=MAX_STEPS)
    adjoint: str = option("recursive", "static", "how gradients pass through the flow",
                          group=FLOW, choices=ADJOINTS, applies=("method", ("flow",)))
    stop_metric: str | None = option(None, "static", "stop the flow when this metric crosses "
                                     "--stop-at (accuracies rising, loss falling)", group=FLOW,
                                     choices=STOP_METRICS, applies=("method", ("flow",)))
    stop_at: float | None = option(None, "static", "threshold of --stop-metric", group=FLOW,
                                   parse=parse_real, applies=("method", ("flow",)))
    # Exact reduced simulator for squared loss (ssm_jax.reduced, docs/performance.md).
    reduced: str = option("auto", "static", "exact reduced simulator for squared loss (cost "
                          "independent of n): auto (where cheaper), on, off", group=OPTIMISER,
                          choices=REDUCED_MODES)

    def __post_init__(self) -> None:
        # Explicit counts set the profile: the recorded configuration says what ran (and
        # the no-effect rule then refuses ratio, k_major, ... beside counts).
        if self.counts is not None and self.profile == OPTIONS["profile"].default:
            object.__setattr__(self, "profile", "counts")
        validate(self)

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    def adapted(self, **changes) -> Config:
        """This configuration with ``changes``, and every other option that would have no
        effect under them back at its default (:meth:`~ssm_jax.options.Option.why_no_effect`):
        the configuration of a derived run (a comparison under another weighting or loss)
        keeps what still applies, so the no-effect rule never refuses it. Options named in
        ``changes`` are kept as given (and validated)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        if "counts" in changes and changes["counts"] is not None and "profile" not in changes:
            values["profile"] = "counts"
        view = _Values(values)
        for name, opt in OPTIONS.items():
            if name not in changes and opt.why_no_effect(view) is not None:
                values[name] = opt.default
        return Config(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("counts", "weights"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @property
    def class_counts(self) -> tuple[int, ...]:
        """Integer class counts (explicit ``counts`` win over the profile)."""
        return PROFILES["counts" if self.counts is not None else self.profile].counts(self)

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


OPTIONS: dict[str, Option] = options_of(Config)
"""Every run option, by Config field name, in declaration order."""


class _Values:
    """Attribute access to a dict of option values (what ``why_no_effect`` reads)."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(values)


def options_of_kind(kind: str) -> tuple[str, ...]:
    return tuple(name for name, opt in OPTIONS.items() if opt.kind == kind)


@dataclass(frozen=True)
class _SpecExtras:
    """Static fields of a :class:`Spec` that no option sets directly."""

    remat: bool = False  # rematerialise the training loop (gradients through long runs)
    # Classes that always share count and weight (same id), so the reduced simulator may
    # pool their within-class state; None: every class on its own (always exact).
    class_groups: tuple[int, ...] | None = None
    # The phases of the weight schedule of --reweight-from / --reweight-until, each "erm" or
    # "weighting" (ssm_jax.schedule.phases_of); one phase: no switch.
    weight_phases: tuple[str, ...] = ("weighting",)


Spec = dataclasses.make_dataclass(
    "Spec",
    [(name, Config.__annotations__[name], dataclasses.field(default=OPTIONS[name].default))
     for name in options_of_kind("static")]
    + [(f.name, f.type, dataclasses.field(default=f.default))
       for f in dataclasses.fields(_SpecExtras)],
    frozen=True,
)
Spec.__module__ = __name__
Spec.__doc__ = ("The static part of a run: it selects code and fixes array shapes (a jit "
                "static argument). One field per static option of Config, plus remat, "
                "class_groups and weight_phases.")

Numeric = NamedTuple("Numeric", [(name, object) for name in options_of_kind("traced")])
Numeric.__module__ = __name__
Numeric.__doc__ = ("The traced part of a run: one array per traced option of Config, which "
                   "vmap and grad can see (explicit weights are ones of shape (k,) unless "
                   "weighting is explicit; t1 is lr x steps unless given; reweight_from "
                   "and reweight_until are 0 unless given, and then unused).")


def class_groups_of(cfg) -> tuple[int, ...] | None:
    """Static partition of the classes of a configuration into groups that share their
    count, hence their weight, at every value of the numeric fields (ratio, gamma, beta):
    the two blocks of the step profile, equal explicit counts; None (each class alone) for
    the long tail and for explicit weights, which may differ between equal counts. The
    exact reduced simulator (:mod:`ssm_jax.reduced`) pools the classes of a group.

    Group ids are 0, 1, ... in order of first appearance (the profile's ``groups``)."""
    if cfg.weighting == "explicit":
        return None
    return PROFILES["counts" if cfg.counts is not None else cfg.profile].groups(cfg)


def weight_phases_of(reweight_from, reweight_until) -> tuple[str, ...]:
    """The phases of the weight schedule of ``--reweight-from`` / ``--reweight-until``
    (static; :mod:`ssm_jax.schedule`): ``("weighting",)`` without a switch, ``("erm",
    "weighting")`` with ``reweight_from``, ``("weighting", "erm")`` with
    ``reweight_until``, ``("erm", "weighting", "erm")`` with both."""
    return (("erm",) if reweight_from is not None else ()) + ("weighting",) + (
        ("erm",) if reweight_until is not None else ())


def spec_of(cfg: Config) -> Spec:
    """The static :class:`Spec` of a configuration: its static options, the classes the
    reduced simulator may pool (:func:`class_groups_of`) and the phases of its weight
    schedule (:func:`weight_phases_of`)."""
    static = {name: getattr(cfg, name) for name, opt in OPTIONS.items() if opt.kind == "static"}
    return Spec(**static, class_groups=class_groups_of(cfg),
                weight_phases=weight_phases_of(cfg.reweight_from, cfg.reweight_until))


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` naming the first bad value and its allowed range.

    In order: each option's allowed values and range (its declaration), the checks that
    relate options, values the working precision cannot hold (:func:`check_precision`),
    the no-effect rule (:func:`check_effect`), and last the class weights the precision
    cannot hold (also :func:`check_precision`): computed in numpy, the one check that
    imports it, so no other refusal does."""
    for name, opt in OPTIONS.items():
        value = getattr(cfg, name)
        if opt.choices is not None and (value is not None or opt.default is not None):
            check_choice(name, value, opt.allowed())
        if (opt.switch or opt.parse is parse_flag) and not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be true or false")
        opt.check_range(value)
    if cfg.counts is not None:
        if not 2 <= len(cfg.counts) <= MAX_CLASSES:
            raise ConfigError(f"counts={list(cfg.counts)!r} must list between 2 and "
                              f"{MAX_CLASSES} classes")
    elif cfg.profile == "counts":
        raise ConfigError("profile='counts' needs counts=(n_1, ..., n_k)")
    else:
        if cfg.k_major + cfg.k_minor < 2:
            raise ConfigError(
                f"k_major + k_minor = {cfg.k_major + cfg.k_minor} must be >= 2 classes"
            )
        if cfg.k_major + cfg.k_minor > MAX_CLASSES:
            raise ConfigError(f"k_major + k_minor = {cfg.k_major + cfg.k_minor} must be <= "
                              f"{MAX_CLASSES} classes")
        if cfg.k_minor > 0 and round(cfg.n_major / cfg.ratio) < 1:
            # The minority would be floored at 1 example: the ratio run is not the one asked.
            raise ConfigError(
                f"ratio={cfg.ratio!r} with n_major={cfg.n_major} leaves the minority "
                f"classes less than one example (the floor of 1 would make the actual ratio "
                f"{cfg.n_major}): need ratio < {2 * cfg.n_major} or a larger n_major")
    if cfg.weighting == "effective" and not 0.0 <= cfg.beta < 1.0:
        raise ConfigError(f"beta={cfg.beta!r} is out of range: need 0 <= beta < 1")
    if cfg.weighting == "explicit" and cfg.weights is None:
        raise ConfigError("weighting='explicit' needs weights=(w_1, ..., w_k)")
    validate_schedule(cfg)
    if cfg.weights is not None and sum(cfg.weights) <= 0:
        raise ConfigError(f"weights={list(cfg.weights)!r} must not all be zero")
    if cfg.init == "aligned" and not 0.0 < cfg.init_scale < 1.0:
        raise ConfigError(
            f"init_scale={cfg.init_scale!r} is out of range for init='aligned': "
            "the initial own output z0 needs 0 < z0 < 1"
        )
    if cfg.saves > cfg.steps + 1:
        raise ConfigError(f"saves={cfg.saves} is out of range: need 2 <= saves <= steps + 1")
    validate_flow(cfg)
    validate_reduced(cfg)
    # Shape checks that need the class counts.
    k = cfg.num_classes
    if cfg.weights is not None and len(cfg.weights) != k:
        raise ConfigError(f"weights has {len(cfg.weights)} entries but there are {k} classes")
    if cfg.init == "aligned" and cfg.dim < k:
        raise ConfigError(f"dim={cfg.dim} is out of range for init='aligned': need dim >= k = {k}")
    if PARAMETRIZATIONS[cfg.parametrization].mse_only and cfg.loss != "mse":
        raise ConfigError(
            f"parametrization='whitened' is defined for loss='mse' only, got loss={cfg.loss!r}"
        )
    _check_values_held(cfg)
    check_effect(cfg)
    _check_weights_held(cfg)


def check_effect(cfg: Config) -> None:
    """The no-effect rule: an option whose value differs from its default where it has no
    effect (its declared ``applies`` setting is not chosen, or its ``unless`` option is
    given) is refused, so the recorded configuration is the run that happened.

    One rule over the declarations (:meth:`~ssm_jax.options.Option.why_no_effect`), e.g.
    ``gamma`` needs ``weighting='power'``, ``momentum`` a method with momentum, ``ratio``
    a step or long-tail profile (explicit ``counts`` set ``profile='counts'``), ``steps``
    no ``t1``."""
    for name, opt in OPTIONS.items():
        reason = opt.why_no_effect(cfg)
        if reason is not None:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} has no effect {reason}")


def check_precision(cfg: Config) -> None:
    """Values the working precision (float32, or float64 with ``x64``) cannot hold are
    refused: a nonzero real option that rounds to 0 or overflows (``lr=1e-300`` is 0 in
    float32), and class weights that overflow or underflow to 0 (``gamma=1000``).

    The options are rounded in plain Python (as numpy would round them); the weights are
    computed in numpy by the weighting's own function, so neither imports JAX."""
    _check_values_held(cfg)
    _check_weights_held(cfg)


def _check_values_held(cfg: Config) -> None:
    """The real options' values, in the working precision (see :func:`check_precision`)."""
    dtype = "float64" if cfg.x64 else "float32"
    for name, opt in OPTIONS.items():
        value = getattr(cfg, name)
        if opt.parse not in (parse_real, parse_floats) or value is None:
            continue
        for entry in value if opt.list_valued else (value,):
            held = _held(entry, cfg.x64)
            if entry != 0 and (held == 0 or not math.isfinite(held)):
                raise ConfigError(f"{name}={entry!r} is {'0' if held == 0 else 'infinite'} "
                                  f"in {dtype}" +
                                  ("" if cfg.x64 else "; use --x64 or a value in range"))


def _check_weights_held(cfg: Config) -> None:
    """The class weights, in the working precision (see :func:`check_precision`)."""
    if cfg.weighting != "erm" and not _weights_held(cfg.class_counts, cfg.weighting, cfg.gamma,
                                                    cfg.beta, cfg.weights, cfg.x64):
        setting = ", ".join(f"{name}={getattr(cfg, name)!r}"
                            for name in WEIGHTINGS[cfg.weighting].uses)
        raise ConfigError(f"{setting} with weighting={cfg.weighting!r} gives class weights "
                          f"that overflow or underflow to 0 in "
                          f"{'float64' if cfg.x64 else 'float32'} for "
                          f"counts {list(cfg.class_counts)[:10]}")


def _held(value, x64: bool) -> float:
    """``value`` as the working precision holds it: a Python float is a float64; float32
    rounds to nearest (``struct``'s ``f`` is C's cast, as numpy's ``float32(value)``),
    an overflow giving infinity."""
    if x64:
        return float(value)
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.inf


@functools.lru_cache(maxsize=1024)
def _weights_held(counts: tuple[int, ...], weighting: str, gamma: float, beta: float,
                  weights: tuple[float, ...] | None, x64: bool) -> bool:
    """Whether the registered weighting gives finite, nonzero weights in the run's
    precision (computed by the registry's own function, in numpy so that validating a
    configuration never imports JAX; cached, as sweeps repeat it)."""
    import numpy as np

    dtype = np.float64 if x64 else np.float32
    with np.errstate(all="ignore"):
        values = WEIGHTINGS[weighting].weights(np.asarray(counts, dtype), gamma, beta, weights)
    return bool(np.all(np.isfinite(values)) and np.all(values[np.asarray(weights or counts)
                                                              != 0] > 0))


def validate_schedule(cfg: Config) -> None:
    """The weight schedule (``reweight_from``, ``reweight_until``): a weighted phase that
    is not empty, and a parametrisation that does not depend on the weights."""
    start, stop = cfg.reweight_from, cfg.reweight_until
    if start is not None and stop is not None and not start < stop:
        raise ConfigError(f"reweight_from={start!r} must be < reweight_until={stop!r}: the "
                          "chosen weighting acts between the two")
    if (start is not None or stop is not None) and \
            PARAMETRIZATIONS[cfg.parametrization].uses_weights:
        raise ConfigError(f"reweight_from / reweight_until do not apply to parametrization="
                          f"{cfg.parametrization!r}: its trained variable is defined by the "
                          "weights (G = H Omega^(1/2)), so switching them would change the "
                          "model, not the loss")


def validate_flow(cfg: Config) -> None:
    """The gradient-flow options that relate to each other (their ranges are declared)."""
    if cfg.t1 is not None and cfg.method != "flow":
        raise ConfigError(f"t1={cfg.t1!r} is used by method='flow' only; a discrete run "
                          f"(method={cfg.method!r}) ends at t = lr x steps")
    if cfg.stop_metric is None:
        if cfg.stop_at is not None:
            raise ConfigError(f"stop_at={cfg.stop_at!r} needs a stop_metric "
                              f"({', '.join(map(repr, STOP_METRICS))})")
        return
    if cfg.method != "flow":
        raise ConfigError(f"stop_metric={cfg.stop_metric!r} (early stopping) needs "
                          f"method='flow', got method={cfg.method!r}")
    if cfg.adjoint == "backsolve":
        raise ConfigError("stop_metric needs adjoint='recursive': diffrax's backsolve "
                          "adjoint does not support events")
    if cfg.stop_at is None:
        raise ConfigError(f"stop_metric={cfg.stop_metric!r} needs a threshold stop_at")
    if cfg.stop_metric == "loss":
        check_real("stop_at", cfg.stop_at, low=0.0, strict=True)
    else:
        check_real("stop_at", cfg.stop_at, low=0.0, strict=True, high=1.0)


def reduced_why_not(spec) -> str | None:
    """Why the exact reduced simulator (:mod:`ssm_jax.reduced`) does not apply to a run
    (a :class:`Config` or :class:`Spec`), None when it does. Read from the registries: the
    loss, the parametrisation and the method must each declare ``reducible``."""
    for registry, name in ((LOSSES, spec.loss), (PARAMETRIZATIONS, spec.parametrization),
                           (METHODS, spec.method)):
        if not registry[name].reducible:
            allowed = [n for n in registry.names() if registry[n].reducible]
            need = (f"{registry.option}={allowed[0]!r}" if len(allowed) == 1 else
                    f"one of {', '.join(map(repr, allowed))}")
            return f"{registry.option}={name!r} (it needs {need})"
    if spec.depth != 1:
        return f"depth={spec.depth} (it needs depth=1)"
    return None


def minibatch_why_not(batch_size: int | None, sampling: str, n: int) -> str | None:
    """Why the reduced simulator cannot be exact for minibatches of ``batch_size`` out of
    ``n`` examples (None for full batches): a minibatch moves only its own examples, so the
    features of a class no longer share one affine map."""
    if SAMPLINGS[sampling].full_batch(batch_size, n):
        return None
    return (f"batch_size={batch_size} with sampling={sampling!r} and n={n} examples (a "
            "minibatch moves only its own examples, so a class's features no longer share "
            "one update; the per-example simulator runs minibatches)")


def validate_reduced(cfg: Config) -> None:
    """``reduced``: 'auto' (use the exact reduced simulator where it applies and is cheaper),
    'on' (always; an error where it does not apply) or 'off'."""
    if cfg.reduced == "on":
        reason = reduced_why_not(cfg) or minibatch_why_not(cfg.batch_size, cfg.sampling,
                                                           sum(cfg.class_counts))
        if reason is not None:
            raise ConfigError(f"reduced='on' does not apply to {reason}")
