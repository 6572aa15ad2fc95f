"""Run options declared once: the metadata every :class:`~ssm_jax.config.Config` field
carries, and the checks that validate values at the boundary.

Each field of ``Config`` is declared with :func:`option`, which records

* ``kind``: what the value does to the compiled program.

  - ``"static"`` selects code or fixes array shapes (a ``jit`` static argument; it is a
    field of :class:`~ssm_jax.config.Spec`);
  - ``"traced"`` is an array inside the program (a field of
    :class:`~ssm_jax.config.Numeric`), so ``vmap`` (sweeps) and ``grad`` (meta-gradients)
    see it;
  - ``"problem"`` sets the class counts (the label arrays of
    :class:`~ssm_jax.problem.Problem`, padded to a common size in sweeps);
  - ``"host"`` stays on the host (the PRNG seed, the precision switch).

* ``help``, ``group`` (the section of the command-line help), ``choices`` (a tuple or a
  :class:`~ssm_jax.registry.Registry`), ``parse`` (command-line text to value),
* ``batched``: runs that differ only in this option share one compiled program (a sweep
  vmaps over it), and
* ``applies``: the setting under which the option has an effect, e.g. ``momentum`` applies
  only with ``method`` in ``("momentum", "muon")``; ``unless``: another option that, when
  given, makes this one ineffective (``steps`` once a flow's ``t1`` is given); ``inert``:
  the settings under which it has no effect (``reweight_from`` under ``weighting='erm'``);
  ``needs``: another option that must be given for this one to have an effect
  (``sampling`` needs ``batch_size``). A value that differs from the default where the
  option has no effect is refused
  (:func:`~ssm_jax.config.validate`), so a recorded configuration is the run that happened.
* ``low``, ``high``: the documented range of a numeric option (``strict``: ``low`` itself
  is excluded), checked generically by :func:`~ssm_jax.config.validate`. Every integer
  option has an upper bound, so sizes are bounded before anything is allocated.

The command-line parsers, the sweep's dimensions, the TOML keys, the static/traced split
and the command-line reference of the docs are all derived from this one table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("static", "traced", "problem", "host")


class ConfigError(ValueError):
    """A configuration value is out of its allowed range (the message names both)."""


# ---------------------------------------------------------------------------------- checks


def check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def check_real(name: str, value: object, *, low: float | None = None, strict: bool = False,
               high: float | None = None) -> None:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r} must be a real number")
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be finite")
    if low is not None and (value <= low if strict else value < low):
        op = ">" if strict else ">="
        rng = f"{name} {op} {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{name}={value!r} is out of range: need {rng}")
    if high is not None and value > high:
        raise ConfigError(f"{name}={value!r} is out of range: need {name} <= {high}")


def check_int(name: str, value: object, *, low: int = 1, high: int | None = None) -> None:
    """An integer in ``[low, high]`` (booleans are not integers here)."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value > high)):
        bounds = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ConfigError(f"{name}={value!r} must be an integer {bounds}")


# --------------------------------------------------------------------- command-line parsing


def parse_real(text: str) -> float:
    """A finite real number: ``nan`` and ``inf`` are refused here, the one place every
    numeric option of every subcommand is read from text."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def parse_floats(text: str) -> tuple[float, ...]:
    """``"1,2.5"`` -> ``(1.0, 2.5)`` (finite values; repeats allowed, e.g. weights)."""
    return tuple(parse_real(v) for v in text.split(","))


def parse_distinct_floats(text: str) -> tuple[float, ...]:
    """A non-empty list of distinct finite values (``meta --times``, ``geometry
    --weight-decays``): a repeated value would repeat a run, an empty one run nothing."""
    values = tuple(parse_real(v) for v in text.split(",") if v.strip())
    if not values:
        raise ValueError("the list is empty")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once")
    return values


def parse_ints(text: str) -> tuple[int, ...]:
    """``"100,10"`` -> ``(100, 10)``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError("every count must be a positive integer") from None


def parse_flag(text: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0``."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean (true/false)")


# ------------------------------------------------------------------------- the declaration


@dataclass(frozen=True)
class Option:
    """The metadata of one run option (see the module docstring)."""

    default: Any
    kind: str
    help: str
    group: str
    choices: Any = None  # a tuple of names or a Registry
    parse: Callable[[str], Any] | None = None
    batched: bool | None = None
    applies: tuple[str, tuple[str, ...]] | None = None
    unless: str | None = None  # an option that, when given (not None), overrides this one
    inert: tuple[str, tuple[str, ...]] | None = None  # settings where it has no effect
    needs: str | None = None  # an option that must be given (not None) for it to act
    low: float | None = None
    high: float | None = None
    strict: bool = False  # low itself is excluded
    switch: bool = False  # a command-line switch (--x64) rather than --name VALUE
    shared: bool = True  # in every run command's parser (keep_params: simulate only)
    name: str = ""  # filled in by options_of

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_batched(self) -> bool:
        return self.kind == "traced" if self.batched is None else self.batched

    @property
    def list_valued(self) -> bool:
        """One value of the option is itself a list (``counts``, ``weights``)."""
        return self.parse in (parse_ints, parse_floats)

    @property
    def numeric(self) -> bool:
        """A real or integer option (list-valued ones included): it has a range."""
        return self.parse in (int, parse_real, parse_ints, parse_floats)

    @property
    def sweepable(self) -> bool:
        """A sweep may list several values of it."""
        return self.shared and not self.switch and not self.list_valued

    def allowed(self) -> tuple[str, ...] | None:
        """The allowed values of a choice option (a registry is read here)."""
        if self.choices is None:
            return None
        return tuple(self.choices.names() if hasattr(self.choices, "names") else self.choices)

    def convert(self, value: Any) -> Any:
        """A value from command-line text or a TOML file, as the field's type."""
        if isinstance(value, str):
            try:
                value = self.parse(value.strip())
            except (ValueError, TypeError) as err:
                raise ConfigError(f"{self.name}={value!r} is not a valid value: {err}") from None
        elif self.parse is parse_real and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(value, list):
            value = tuple(value)
        allowed = self.allowed()
        if allowed is not None and value is not None and value not in allowed:
            raise ConfigError(f"{self.name}={value!r} is not one of "
                              f"{', '.join(map(repr, allowed))}")
        return value

    def describe_applies(self) -> str:
        """``"--method momentum or muon"``, or "" when the option always applies."""
        if self.applies is None:
            return ""
        field, values = self.applies
        return f"--{field.replace('_', '-')} {' or '.join(values)}"

    def describe_effect(self) -> str:
        """Every condition of the option's effect, for its help: ``"used with --method
        momentum or muon"``, ``"not used with --weighting erm"``, ``"used with
        --batch-size"``; "" when it always has one."""
        parts = []
        if self.applies is not None:
            parts.append(f"used with {self.describe_applies()}")
        if self.inert is not None:
            field, values = self.inert
            parts.append(f"not used with --{field.replace('_', '-')} {' or '.join(values)}")
        if self.needs is not None:
            parts.append(f"used with --{self.needs.replace('_', '-')}")
        return "; ".join(parts)

    def check_range(self, value: Any) -> None:
        """``value`` (each entry of a list) is within ``[low, high]``."""
        if value is None and self.default is not None:
            raise ConfigError(f"{self.name}=None: give a value (default {self.default!r})")
        if value is None or not self.numeric:
            return
        check = check_int if self.parse in (int, parse_ints) else check_real
        bounds = ({"low": int(self.low) if self.low is not None else 1, "high": self.high}
                  if check is check_int else
                  {"low": self.low, "high": self.high, "strict": self.strict})
        if self.list_valued and not isinstance(value, (tuple, list)):
            raise ConfigError(f"{self.name}={value!r} must be a list of numbers")
        for entry in value if self.list_valued else (value,):
            check(self.name, entry, **bounds)

    def why_no_effect(self, cfg: Any) -> str | None:
        """Why this option has no effect in ``cfg`` (the setting it needs), or None where it
        has one (or keeps its default, which is never refused)."""
        value = getattr(cfg, self.name)
        if value == self.default:
            return None
        if self.applies is not None:
            field, values = self.applies
            if getattr(cfg, field) not in values:
                return (f"with {field}={getattr(cfg, field)!r}: it needs "
                        f"{self.describe_applies()}")
        if self.inert is not None:
            field, values = self.inert
            if getattr(cfg, field) in values:
                return f"with {field}={getattr(cfg, field)!r}"
        if self.needs is not None and getattr(cfg, self.needs) is None:
            return (f"without {self.needs} (it needs --{self.needs.replace('_', '-')}); "
                    f"leave {self.flag} at its default ({self.default!r})")
        if self.unless is not None and getattr(cfg, self.unless) is not None:
            return (f"once {self.unless}={getattr(cfg, self.unless)!r} is given: leave "
                    f"{self.flag} at its default ({self.default!r})")
        return None


def option(default: Any, kind: str, help: str, *, group: str, **meta) -> Any:
    """A dataclass field carrying its :class:`Option` metadata."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    if "parse" not in meta and "choices" in meta:
        meta["parse"] = str

    return dataclasses.field(
        default=default,
        metadata={"option": Option(default=default, kind=kind, help=help, group=group, **meta)},
    )


def options_of(cls) -> dict[str, Option]:
    """``{field name: Option}`` of a dataclass declared with :func:`option`, in field order."""
    return {f.name: dataclasses.replace(f.metadata["option"], name=f.name)
            for f in dataclasses.fields(cls) if "option" in f.metadata}
