"""Registries: every loss, optimiser, flow solver, weighting, imbalance profile,
parametrisation and minibatch sampler is one small entry, declared once, in this module.

An entry holds everything the rest of the package needs to know about it without running
it: its name (the option value), a one-line help, and its properties (``reducible``,
``slots``, ``lapack``, ``uses``, ...). Its code is named, not imported: a field such as
``make="ssm_jax.losses:make_focal"`` is a :class:`Ref`, which imports ``ssm_jax.losses``
the first time it is called. So this module imports nothing beyond the standard library,
and the command line lists the choices, and configuration validation checks them, without
importing JAX; the numerics are imported when a run calls them.

The code an entry names lives next to the rest of its kind (a loss in ``losses.py``, an
optimiser in ``dynamics/discrete.py``, ...). What configuration validation itself calls (a
profile's ``counts`` and ``groups``, a weighting's ``weights``, evaluated in numpy) lives
in :mod:`ssm_jax.imbalance`, which imports neither JAX nor numpy when imported.

Adding a loss is one :class:`Loss` entry in :data:`LOSSES` below, its function in
``ssm_jax/losses.py``, and its tests; see the recipe in the docs ("Extending ssm-jax").
A new kind of entry is a subclass of :class:`Entry` naming its code fields in ``CODE``,
and a :class:`Registry` of its entries here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from .options import ConfigError

Code = Callable[..., Any] | str
"""A code field of an entry: a function, or where it lives as ``"module:name"`` (a
:class:`Ref`, imported when first called). The catalogue below uses names only."""


class Ref:
    """Code named by ``"module:attribute"`` (``"ssm_jax.losses:make_focal"``,
    ``"diffrax:Tsit5"``): calling it imports the module, the first time, and calls the
    attribute. Two references are equal when they name the same code."""

    __slots__ = ("path", "_target")

    def __init__(self, path: str) -> None:
        module, colon, attribute = path.partition(":")
        if not colon or not module or not attribute:
            raise ValueError(f"{path!r} does not name code as 'module:attribute'")
        self.path = path
        self._target = None

    def resolve(self) -> Any:
        """The named object (its module is imported the first time)."""
        if self._target is None:
            module, _, attribute = self.path.partition(":")
            target = importlib.import_module(module)
            for part in attribute.split("."):
                target = getattr(target, part)
            self._target = target
        return self._target

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"


@dataclass(frozen=True)
class Entry:
    """What every registry entry has: a name (the option value) and a one-line help.

    ``CODE`` names the fields that hold code; given as text (``"module:name"``) they
    become a :class:`Ref`."""

    CODE: ClassVar[tuple[str, ...]] = ()

    name: str
    help: str

    def __post_init__(self) -> None:
        for field in self.CODE:
            value = getattr(self, field)
            if isinstance(value, str):
                object.__setattr__(self, field, Ref(value))

    def code(self) -> dict[str, Any]:
        """``{field: code}`` of the entry's code fields, each imported (resolved)."""
        return {field: value.resolve() if isinstance(value, Ref) else value
                for field in self.CODE if (value := getattr(self, field)) is not None}


@dataclass(frozen=True)
class Loss(Entry):
    """A training loss ``l(z, y)`` per example.

    ``make(counts, **uses)`` returns ``(outputs (k, n), onehot (k, n)) -> (n,)``: it gets
    the class counts (k,) and, by keyword, the value of every option named in ``uses``
    (arrays, possibly traced).
    ``reducible``: the exact reduced simulator applies (only the squared loss, whose
    class-c feature columns all move by the same affine map). ``needs_priors``: the loss
    reads the class priors ``n_c / n`` (logit adjustment). ``uses``: the numeric options it
    reads besides the outputs."""

    CODE: ClassVar[tuple[str, ...]] = ("make",)

    make: Code = None  # type: ignore[assignment]
    reducible: bool = False
    needs_priors: bool = False
    uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method(Entry):
    """An optimiser. ``make(lr, momentum)`` returns an optax transformation; gradient flow
    has ``make=None`` (it is solved by :mod:`ssm_jax.dynamics.flow`).

    ``slots``: optimiser-state copies of the parameters (memory estimates). ``reducible``:
    the exact reduced simulator reproduces it. ``lapack``: a step calls jaxlib's LAPACK
    kernels (SVD, eigendecomposition). ``uses``: numeric options it reads besides ``lr``."""

    CODE: ClassVar[tuple[str, ...]] = ("make",)

    make: Code | None = None
    slots: int = 0
    reducible: bool = False
    lapack: bool = False
    uses: tuple[str, ...] = ()

    @property
    def is_flow(self) -> bool:
        return self.make is None


@dataclass(frozen=True)
class Solver(Entry):
    """A diffrax solver of the gradient flow. ``make()`` builds it; ``implicit`` solvers
    solve linear systems (LAPACK) and do not count vector-field evaluations."""

    CODE: ClassVar[tuple[str, ...]] = ("make",)

    make: Code = None  # type: ignore[assignment]
    implicit: bool = False


@dataclass(frozen=True)
class Weighting(Entry):
    """A per-class weighting scheme: ``weights(counts, gamma, beta, explicit)`` returns the
    (k,) class weights normalised so the mean per-example weight is 1 (float ``counts``).
    It computes in numpy for numpy counts (configuration validation checks the weights
    that way, without JAX), so it lives in :mod:`ssm_jax.imbalance`.
    ``uses``: the numeric options it reads."""

    CODE: ClassVar[tuple[str, ...]] = ("weights",)

    weights: Code = None  # type: ignore[assignment]
    uses: tuple[str, ...] = ()


def no_groups(cfg) -> None:
    """A profile whose classes share no count at every ratio."""
    return None


@dataclass(frozen=True)
class Profile(Entry):
    """An imbalance profile: ``counts(cfg)`` gives the integer class counts of a
    configuration, ``continuous(cfg, ratio)`` the same counts before rounding
    (differentiable in ``ratio``, for meta-gradients), and ``groups(cfg)`` the classes that
    share their count at every ratio (a group id per class), or None. ``counts`` and
    ``groups`` are plain Python (configuration validation calls them: they live in
    :mod:`ssm_jax.imbalance`); ``continuous`` is JAX (:mod:`ssm_jax.problem`)."""

    CODE: ClassVar[tuple[str, ...]] = ("counts", "continuous", "groups")

    counts: Code = None  # type: ignore[assignment]
    continuous: Code = None  # type: ignore[assignment]
    groups: Code = no_groups


@dataclass(frozen=True)
class Parametrization(Entry):
    """How the trained feature variable maps to the per-example features H (d x n).

    ``features(params, problem, omega)`` returns H; ``per_class``: the variable has one
    column per class (else one per example); ``reducible``: the reduced simulator applies;
    ``mse_only``: defined for the squared loss only; ``uses_weights``: the trained variable
    is defined through the class weights (so they cannot change during a run)."""

    CODE: ClassVar[tuple[str, ...]] = ("features",)

    features: Code = None  # type: ignore[assignment]
    per_class: bool = False
    reducible: bool = False
    mse_only: bool = False
    uses_weights: bool = False


@dataclass(frozen=True)
class Sampling(Entry):
    """A minibatch sampler of stochastic gradient descent (``--batch-size``).

    ``scale(key, step, problem, batch_size)`` returns the (n_pad,) per-example factors of
    step ``step``'s minibatch: the number of times each example is in the batch, times
    ``n / |batch|``, so the minibatch loss is the full objective's weighted mean with the
    example weights multiplied by them (zero outside the batch). ``expected_gamma``: in
    expectation over the batches the factor of a class-c example is proportional to
    ``n_c^-expected_gamma`` (0 for uniform sampling: the full-batch gradient); with ERM the
    expected gradient is that of power weights with this gamma. ``exhaustive``: an epoch
    holds every example once, so a batch of ``n`` or more is the full batch."""

    CODE: ClassVar[tuple[str, ...]] = ("scale",)

    scale: Code = None  # type: ignore[assignment]
    expected_gamma: float = 0.0
    exhaustive: bool = False  # an epoch is every example once: a batch of n is the full one

    def full_batch(self, batch_size: int | None, n: int) -> bool:
        """Whether every step's batch is the whole training set of ``n`` examples: no batch
        size, or an exhaustive sampler with ``batch_size >= n``."""
        return batch_size is None or (self.exhaustive and batch_size >= n)


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """The entries of one kind, in declaration order (the command line's order).

    ``option`` is the run option whose values they are (``"loss"``); a name that is not
    declared raises :class:`~ssm_jax.options.ConfigError` naming the choices."""

    def __init__(self, option: str, entries: Iterable[E]) -> None:
        if isinstance(entries, str):
            raise TypeError(f"Registry({option!r}, {entries!r}): a registry is given its "
                            "entries, declared here, not a module that registers them")
        self.option = option
        self._entries: dict[str, E] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"{option} {entry.name!r} is declared twice")
            self._entries[entry.name] = entry

    def register(self, entry: E) -> E:
        """Refused: a registry is complete without importing anything, so an entry is
        declared in the catalogue below (its code named as ``"module:name"``), never added
        when a module is imported."""
        raise TypeError(f"{self.option} {entry.name!r}: declare the entry in "
                        "ssm_jax/registry.py, naming its code as 'module:name' "
                        "(docs/extending.md)")

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[E, ...]:
        return tuple(self._entries.values())

    def __getitem__(self, name: str) -> E:
        if name not in self._entries:
            raise ConfigError(f"{self.option}={name!r} is not one of "
                              f"{', '.join(map(repr, self._entries))}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.option!r}: {', '.join(self._entries)})"


# ------------------------------------------------------------------------------ catalogue
# Every entry, in command-line order. The code each names is imported when first called.

LOSSES: Registry[Loss] = Registry("loss", [
    Loss("mse", "squared loss 1/2 ||z - y||^2", make="ssm_jax.losses:make_squared",
         reducible=True),
    Loss("ce", "softmax cross-entropy", make="ssm_jax.losses:make_cross_entropy"),
    Loss("la", "logit-adjusted cross-entropy (Menon et al. 2021)",
         make="ssm_jax.losses:make_logit_adjusted", needs_priors=True, uses=("tau",)),
    Loss("vs", "vector-scaling cross-entropy (Kini et al. 2021)",
         make="ssm_jax.losses:make_vector_scaling", needs_priors=True,
         uses=("tau", "vs_gamma")),
    Loss("focal", "focal loss (Lin et al. 2017); focal_gamma 0 is cross-entropy",
         make="ssm_jax.losses:make_focal", uses=("focal_gamma",)),
    Loss("ldam", "label-distribution-aware margins (Cao et al. 2019): margins "
         "m_c ∝ n_c^-1/4 on the own logit", make="ssm_jax.losses:make_ldam",
         needs_priors=True, uses=("ldam_margin", "ldam_scale")),
])

METHODS: Registry[Method] = Registry("method", [
    Method("gd", "plain gradient descent", make="ssm_jax.dynamics.discrete:make_gd",
           reducible=True),
    Method("momentum", "heavy-ball momentum", make="ssm_jax.dynamics.discrete:make_momentum",
           slots=1, reducible=True, uses=("momentum",)),
    Method("adam", "Adam", make="ssm_jax.dynamics.discrete:make_adam", slots=2),
    Method("specgd", "spectral gradient descent (orthogonalised updates)",
           make="ssm_jax.dynamics.discrete:make_specgd", lapack=True),
    Method("muon", "Muon: momentum, then orthogonalised updates",
           make="ssm_jax.dynamics.discrete:make_muon", slots=1, lapack=True,
           uses=("momentum",)),
    # Solved by ssm_jax.dynamics.flow with a solver of SOLVERS, not by an optimiser.
    Method("flow", "gradient flow d(theta)/dt = -grad L, solved by diffrax", make=None,
           reducible=True),
])

SOLVERS: Registry[Solver] = Registry("solver", [
    Solver("tsit5", "Tsitouras 5(4) explicit Runge-Kutta", make="diffrax:Tsit5"),
    Solver("dopri5", "Dormand-Prince 5(4) explicit Runge-Kutta", make="diffrax:Dopri5"),
    Solver("dopri8", "Dormand-Prince 8(7) explicit Runge-Kutta", make="diffrax:Dopri8"),
    Solver("kvaerno5", "Kvaerno 5(4) implicit ESDIRK, for stiff runs",
           make="diffrax:Kvaerno5", implicit=True),
])

WEIGHTINGS: Registry[Weighting] = Registry("weighting", [
    Weighting("erm", "every weight 1 (empirical risk minimisation)",
              weights="ssm_jax.imbalance:erm_weights"),
    Weighting("power", "w_c ∝ n_c^-gamma", weights="ssm_jax.imbalance:power_weights",
              uses=("gamma",)),
    Weighting("effective", "inverse effective number (Cui et al. 2019)",
              weights="ssm_jax.imbalance:effective_weights", uses=("beta",)),
    Weighting("explicit", "given weights, normalised",
              weights="ssm_jax.imbalance:explicit_weights", uses=("weights",)),
])

PROFILES: Registry[Profile] = Registry("profile", [
    Profile("step", "k_major classes of n_major examples, k_minor of n_major / ratio",
            counts="ssm_jax.imbalance:step_profile_counts",
            continuous="ssm_jax.problem:step_continuous",
            groups="ssm_jax.imbalance:step_profile_groups"),
    Profile("longtail", "counts decaying geometrically from n_major to n_major / ratio",
            counts="ssm_jax.imbalance:longtail_profile_counts",
            continuous="ssm_jax.problem:longtail_continuous"),
    Profile("counts", "explicit class counts",
            counts="ssm_jax.imbalance:explicit_profile_counts",
            continuous="ssm_jax.problem:explicit_continuous",
            groups="ssm_jax.imbalance:explicit_profile_groups"),
])

PARAMETRIZATIONS: Registry[Parametrization] = Registry("parametrization", [
    Parametrization("sample", "one free feature column per example (the UFM)",
                    features="ssm_jax.model:sample_features", reducible=True),
    Parametrization("class", "one shared feature column per class",
                    features="ssm_jax.model:class_features", per_class=True),
    Parametrization("whitened", "train G = H Omega^(1/2) (a reparametrised target)",
                    features="ssm_jax.model:whitened_features", reducible=True,
                    mse_only=True, uses_weights=True),
])

SAMPLINGS: Registry[Sampling] = Registry("sampling", [
    Sampling("uniform", "epochs of a random permutation, without replacement (batch size "
             "n: full batch)", scale="ssm_jax.sampling:uniform_scale", expected_gamma=0.0,
             exhaustive=True),
    Sampling("class_balanced", "a uniformly drawn class, then one of its examples (with "
             "replacement)", scale="ssm_jax.sampling:class_balanced_scale",
             expected_gamma=1.0),
    Sampling("sqrt", "a class drawn with probability proportional to sqrt(n_c), then one "
             "of its examples", scale="ssm_jax.sampling:sqrt_scale", expected_gamma=0.5),
])
