"""What a sweep is: a base configuration and the options swept over, and how to build one.

A :class:`Sweep` is a base :class:`~ssm_jax.config.Config` plus *axes*: options with a list
of values; its runs are the Cartesian product of the axes, in C order. Built from Python
(:func:`make_sweep`), from command-line text or TOML (:func:`sweep_from_options`,
:func:`read_config_file`). Its hash (:attr:`Sweep.config_hash`) identifies it in the parts
of an unfinished sweep and in the finished file.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import OPTIONS, Config, ConfigError

if TYPE_CHECKING:
    import numpy as np

# Version of the layout of parts and files; part of every sweep's hash.
FORMAT_VERSION = 1

# Bounds (docs/cli.md): a sweep's plan holds two ints per run and its file a few arrays
# per run, so its size is refused before anything is built.
MAX_SEEDS = 100_000
MAX_RUNS = 10_000_000

# Dimension names of axes whose field name is also a variable name.
DIM_NAMES = {"loss": "loss_fn"}


def _option_table() -> dict:
    """The run options a sweep or a TOML file may set (every shared, valued option)."""
    return {name: opt for name, opt in OPTIONS.items() if opt.shared and not opt.switch}


def sweepable_fields() -> list[str]:
    """Config fields a sweep may list several values for, in dimension order.

    Every option declared ``sweepable`` (all but the list-valued ``counts`` and
    ``weights``). Options that split compiled groups come first, then the batched ones
    (vmapped in one program), with ``seed`` last, so each compiled group is a contiguous
    block of the Cartesian product."""
    fields = [name for name, opt in OPTIONS.items() if opt.sweepable]
    static = [f for f in fields if not OPTIONS[f].is_batched]
    batched = [f for f in fields if OPTIONS[f].is_batched and f != "seed"]
    return static + batched + (["seed"] if "seed" in fields else [])


def dim_name(field: str) -> str:
    """The Dataset dimension of a swept Config field."""
    return DIM_NAMES.get(field, field)


def _unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The C-order position of the flat ``index`` in ``shape`` (numpy's ``unravel_index``,
    without numpy)."""
    if not 0 <= index < math.prod(shape):
        raise ValueError(f"index {index} is out of bounds for a sweep of shape {shape}")
    position = []
    for length in reversed(shape):
        index, i = divmod(index, length)
        position.append(i)
    return tuple(reversed(position))


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    numpy = sys.modules.get("numpy")  # a numpy scalar exists only once numpy is imported
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class Sweep:
    """A base configuration and the axes swept over (Cartesian product, C order).

    Build one with :func:`make_sweep`; ``axes`` is a tuple of ``(field, values)`` in the
    order of :func:`sweepable_fields`."""

    base: Config
    axes: tuple[tuple[str, tuple], ...] = ()

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.axes]

    @property
    def dims(self) -> list[str]:
        return [dim_name(field) for field in self.fields]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def point(self, index: int) -> dict:
        """The swept values of run ``index`` (flat C-order index into :attr:`shape`)."""
        position = _unravel(index, self.shape)
        return {field: values[i] for (field, values), i in zip(self.axes, position, strict=True)}

    @property
    def seed_count(self) -> int:
        """Length of the ``seed`` axis, 1 when the seed is not swept. The seed is the last
        axis (:func:`sweepable_fields`), so run ``i`` is point ``i // seed_count`` of the
        other axes with seed number ``i % seed_count``: runs that differ only in their seed
        share everything but their PRNG key, and planning and batching work per point."""
        return len(self.axes[-1][1]) if self._seed_swept else 1

    @property
    def _seed_swept(self) -> bool:
        return bool(self.axes) and self.axes[-1][0] == "seed"

    def seeds_of(self, runs) -> np.ndarray:
        """The seeds of runs ``runs`` (flat indices), as int64."""
        import numpy as np

        runs = np.asarray(runs, dtype=np.int64)
        if not self._seed_swept:
            return np.full(runs.shape, int(self.base.seed), dtype=np.int64)
        values = np.asarray(self.axes[-1][1], dtype=np.int64)
        return values[runs % self.seed_count]

    def config(self, index: int) -> Config:
        """The (validated) configuration of run ``index``."""
        point = self.point(index)
        try:
            return self.base.replace(**point)
        except ConfigError as err:
            where = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ConfigError(f"{err} (in the sweep point {where})") from None

    def to_dict(self) -> dict:
        """JSON-ready description: the base configuration (swept fields removed) and axes."""
        base = self.base.to_dict()
        for field in self.fields:
            base.pop(field, None)
        return {"base": base, "axes": {f: [_jsonable(v) for v in vals] for f, vals in self.axes}}

    @property
    def config_hash(self) -> str:
        import hashlib
        import json

        text = json.dumps({"format": FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_sweep(base: Config | Mapping[str, Any] | None = None,
               axes: Mapping[str, Sequence] | None = None, *, seeds: int | None = None) -> Sweep:
    """Build a :class:`Sweep`.

    Args:
        base: a Config (or a dict of Config fields) for everything not swept.
        axes: ``{field: [values, ...]}``; a list of one value just sets the field.
        seeds: ``N`` adds the axis ``seed = 0..N-1``.

    Raises :class:`ConfigError` for an unknown or list-valued field, an empty or repeated
    list, or a value that is out of range (the message names it)."""
    if base is None:
        base = Config()
    elif not isinstance(base, Config):
        base = Config(**dict(base))
    axes = dict(axes or {})
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"seeds={seeds!r} must be an integer >= 1 and <= {MAX_SEEDS}")
        if "seed" in axes:
            raise ConfigError("give either seeds=N or a list of seeds, not both")
        axes["seed"] = list(range(seeds))
    allowed = sweepable_fields()
    single: dict[str, Any] = {}
    listed: dict[str, tuple] = {}
    for field, values in axes.items():
        if field not in allowed:
            raise ConfigError(f"cannot sweep over {field!r}: sweepable options are "
                              f"{', '.join(allowed)}")
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values:
            raise ConfigError(f"{field}: the list of values is empty")
        if len(set(values)) != len(values):
            raise ConfigError(f"{field}={list(values)!r} lists a value twice")
        if len(values) == 1:
            single[field] = values[0]
        else:
            listed[field] = values
    size = math.prod(len(values) for values in listed.values())
    if size > MAX_RUNS:
        shape = " x ".join(str(len(values)) for values in listed.values())
        raise ConfigError(f"the sweep has {size} runs ({shape}); at most {MAX_RUNS} are "
                          "allowed")
    if base.keep_params:
        raise ConfigError("keep_params=True is not supported in sweeps (memory grows with "
                          "steps x runs); run the configurations you need with simulate")
    base = base.replace(**single) if single else base
    ordered = tuple((field, listed[field]) for field in allowed if field in listed)
    return Sweep(base=base, axes=ordered)


def sweep_from_options(options: Mapping[str, Any], *, x64: bool = False) -> Sweep:
    """A :class:`Sweep` from option values as given on the command line or in TOML.

    ``options`` maps Config fields (or flag names such as ``init-scale``) to a value: text
    (comma-separated lists allowed for sweepable options), a typed value, or a list. The
    key ``seeds`` (an integer N) means seeds 0..N-1."""
    table = _option_table()
    sweepable = set(sweepable_fields())
    base: dict[str, Any] = {"x64": bool(x64)}
    axes: dict[str, list] = {}
    seeds = None
    for key, value in options.items():
        field = key.lstrip("-").replace("-", "_")
        if value is None:
            continue
        if field == "seeds":
            if isinstance(value, str):
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(f"seeds={value!r} must be an integer >= 1") from None
            seeds = value
            continue
        if field == "x64":
            base["x64"] = base["x64"] or bool(value)
            continue
        if field not in table:
            raise ConfigError(f"unknown option {key!r}; options are "
                              f"{', '.join(sorted(table))}, seeds, x64")
        opt = table[field]
        if field not in sweepable:
            base[field] = opt.convert(value)
            continue
        if isinstance(value, str):
            values = [v for v in value.split(",")]
        elif isinstance(value, (list, tuple)):
            values = list(value)
        else:
            values = [value]
        axes[field] = [opt.convert(v) for v in values]
    try:
        return make_sweep(Config(**base), axes, seeds=seeds)
    except TypeError as err:  # a wrongly typed value in a file
        raise ConfigError(str(err)) from None


def read_config_file(path) -> dict:
    """Option values from a TOML file (top-level keys, or a ``[sweep]`` table)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {err}") from None
    return dict(data.get("sweep", data))
