"""Registries: every loss, optimiser, flow solver, weighting, imbalance profile,
parametrisation and minibatch sampler is one small entry object declaring what the rest of
the package needs to know about it.

This module holds only the entry *types* and the (empty) registries; the entries live next
to their code and register themselves when that module is imported (``losses.py`` fills
:data:`LOSSES`, ``dynamics/discrete.py`` and ``dynamics/flow.py`` fill :data:`METHODS`, and
so on). A registry knows its home module and imports it the first time it is read, so
configuration validation (the lowest layer) can list the allowed names without importing
the numerics itself.

Adding a loss is one :class:`Loss` entry in ``ssm_jax/losses.py`` plus its tests; see the
recipe in the docs ("Extending ssm-jax").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .options import ConfigError


@dataclass(frozen=True)
class Entry:
    """What every registry entry has: a name (the option value) and a one-line help."""

    name: str
    help: str


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

    make: Callable[..., Callable] = None  # type: ignore[assignment]
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

    make: Callable[..., Any] | None = None
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

    make: Callable[[], Any] = None  # type: ignore[assignment]
    implicit: bool = False


@dataclass(frozen=True)
class Weighting(Entry):
    """A per-class weighting scheme: ``weights(counts, gamma, beta, explicit)`` returns the
    (k,) class weights normalised so the mean per-example weight is 1 (float ``counts``).
    ``uses``: the numeric options it reads."""

    weights: Callable[..., Any] = None  # type: ignore[assignment]
    uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile(Entry):
    """An imbalance profile: ``counts(cfg)`` gives the integer class counts of a
    configuration, ``continuous(cfg, ratio)`` the same counts before rounding
    (differentiable in ``ratio``, for meta-gradients), and ``groups(cfg)`` the classes that
    share their count at every ratio (a group id per class), or None."""

    counts: Callable[..., tuple[int, ...]] = None  # type: ignore[assignment]
    continuous: Callable[..., Any] = None  # type: ignore[assignment]
    groups: Callable[..., tuple[int, ...] | None] = lambda cfg: None


@dataclass(frozen=True)
class Parametrization(Entry):
    """How the trained feature variable maps to the per-example features H (d x n).

    ``features(params, problem, omega)`` returns H; ``per_class``: the variable has one
    column per class (else one per example); ``reducible``: the reduced simulator applies;
    ``mse_only``: defined for the squared loss only; ``uses_weights``: the trained variable
    is defined through the class weights (so they cannot change during a run)."""

    features: Callable[..., Any] = None  # type: ignore[assignment]
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
    expected gradient is that of power weights with this gamma."""

    scale: Callable[..., Any] = None  # type: ignore[assignment]
    expected_gamma: float = 0.0
    exhaustive: bool = False  # an epoch is every example once: a batch of n is the full one

    def full_batch(self, batch_size: int | None, n: int) -> bool:
        """Whether every step's batch is the whole training set of ``n`` examples: no batch
        size, or an exhaustive sampler with ``batch_size >= n``."""
        return batch_size is None or (self.exhaustive and batch_size >= n)


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Named entries of one kind, in registration order.

    ``home`` is the module that registers the entries; reading the registry imports it, so
    the names are complete wherever they are asked for."""

    def __init__(self, option: str, home: str) -> None:
        self.option = option
        self.home = home
        self._entries: dict[str, E] = {}

    def register(self, entry: E) -> E:
        if entry.name in self._entries:
            raise ValueError(f"{self.option} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry
        return entry

    def _loaded(self) -> dict[str, E]:
        importlib.import_module(self.home)
        return self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._loaded())

    def __getitem__(self, name: str) -> E:
        entries = self._loaded()
        if name not in entries:
            raise ConfigError(f"{self.option}={name!r} is not one of "
                              f"{', '.join(map(repr, entries))}")
        return entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaded())

    def __repr__(self) -> str:
        return f"Registry({self.option!r}: {', '.join(self._entries)})"


LOSSES: Registry[Loss] = Registry("loss", "ssm_jax.losses")
METHODS: Registry[Method] = Registry("method", "ssm_jax.dynamics")
SOLVERS: Registry[Solver] = Registry("solver", "ssm_jax.dynamics.flow")
WEIGHTINGS: Registry[Weighting] = Registry("weighting", "ssm_jax.weights")
PROFILES: Registry[Profile] = Registry("profile", "ssm_jax.problem")
PARAMETRIZATIONS: Registry[Parametrization] = Registry("parametrization", "ssm_jax.model")
SAMPLINGS: Registry[Sampling] = Registry("sampling", "ssm_jax.sampling")
