"""The option table and the registries: everything derived from them stays in step."""

import dataclasses

import pytest

from ssm_jax import Config, ConfigError, numeric_of, spec_of
from ssm_jax.cli import SIMULATE_OPTIONS, build_parser
from ssm_jax.config import OPTIONS, Numeric, Spec, reduced_why_not
from ssm_jax.options import KINDS, Option, option, options_of
from ssm_jax.registry import (
    LOSSES,
    METHODS,
    PARAMETRIZATIONS,
    PROFILES,
    SOLVERS,
    WEIGHTINGS,
    Loss,
    Ref,
    Registry,
)
from ssm_jax.sweep import sweepable_fields

REGISTRIES = {"loss": LOSSES, "method": METHODS, "solver": SOLVERS, "weighting": WEIGHTINGS,
              "profile": PROFILES, "parametrization": PARAMETRIZATIONS}


def test_every_config_field_is_declared_once_with_its_metadata():
    fields = [f.name for f in dataclasses.fields(Config)]
    assert list(OPTIONS) == fields
    for name, opt in OPTIONS.items():
        assert opt.name == name and opt.kind in KINDS and opt.help and opt.group
        assert opt.default == getattr(Config(), name)
        assert opt.flag == "--" + name.replace("_", "-")


def test_spec_and_numeric_are_the_static_and_traced_options():
    static = [n for n, o in OPTIONS.items() if o.kind == "static"]
    traced = [n for n, o in OPTIONS.items() if o.kind == "traced"]
    assert [f.name for f in dataclasses.fields(Spec)] == static + ["remat", "class_groups",
                                                                   "weight_phases"]
    assert list(Numeric._fields) == traced
    cfg = Config(weighting="power", gamma=0.25, lr=0.5, steps=8, saves=3)
    spec, numeric = spec_of(cfg), numeric_of(cfg)
    assert all(getattr(spec, n) == getattr(cfg, n) for n in static)
    assert float(numeric.gamma) == 0.25 and float(numeric.t1) == 0.5 * 8
    assert numeric.weights.shape == (cfg.num_classes,)


def test_choices_come_from_the_registries_and_reach_the_parser():
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0]
               .choices["simulate"]._actions}
    for field, registry in REGISTRIES.items():
        assert OPTIONS[field].choices is registry
        assert tuple(actions[field].choices) == registry.names()
        assert len(registry) == len(set(registry.names())) >= 2
    assert {o.name for o in SIMULATE_OPTIONS} == {n for n, o in OPTIONS.items()
                                                   if o.shared and not o.switch}


def test_applies_names_a_choice_option_and_its_values():
    for opt in OPTIONS.values():
        if opt.applies is None:
            continue
        field, values = opt.applies
        assert set(values) <= set(OPTIONS[field].allowed()), opt.name
        assert opt.describe_applies() == f"--{field.replace('_', '-')} {' or '.join(values)}"


def test_the_entries_declare_what_others_read():
    # Each loss's `uses` are traced options, so vmap and grad see them.
    for name in LOSSES:
        assert all(OPTIONS[u].kind == "traced" for u in LOSSES[name].uses), name
    for name in METHODS:
        assert all(OPTIONS[u].kind == "traced" for u in METHODS[name].uses), name
    assert [m for m in METHODS if METHODS[m].is_flow] == ["flow"]
    assert {m: METHODS[m].slots for m in ("gd", "momentum", "adam")} == {
        "gd": 0, "momentum": 1, "adam": 2}
    assert [s for s in SOLVERS if SOLVERS[s].implicit] == ["kvaerno5"]


def test_every_entry_names_code_that_exists():
    """The catalogue names code as "module:attribute"; each one imports and is callable, and
    the options an entry ``uses`` are run options."""
    for registry in REGISTRIES.values():
        for entry in registry.entries():
            for field, code in entry.code().items():
                assert callable(code), (registry.option, entry.name, field)
            assert set(getattr(entry, "uses", ())) <= set(OPTIONS), entry.name
    assert METHODS["gd"].make == Ref("ssm_jax.dynamics.discrete:make_gd")
    with pytest.raises(ValueError, match="does not name code"):
        Ref("ssm_jax.losses.make_focal")


def test_sweep_fields_follow_the_declarations():
    fields = sweepable_fields()
    assert "counts" not in fields and "weights" not in fields and "x64" not in fields
    assert fields[-1] == "seed"
    batched = [f for f in fields if OPTIONS[f].is_batched]
    assert fields[-len(batched):] == batched  # batched options last: contiguous groups
    assert "ratio" in batched and "loss" not in batched


def test_reduced_applicability_is_read_from_the_registries():
    assert reduced_why_not(Config()) is None
    assert reduced_why_not(Config(loss="ce")) == "loss='ce' (it needs loss='mse')"
    assert reduced_why_not(Config(method="adam")) == (
        "method='adam' (it needs one of 'gd', 'momentum', 'flow')")
    assert reduced_why_not(Config(parametrization="class")) == (
        "parametrization='class' (it needs one of 'sample', 'whitened')")
    with pytest.raises(ConfigError, match="reduced='on' does not apply to loss='focal'"):
        Config(loss="focal", reduced="on")


def test_registry_errors_name_the_value_and_the_choices():
    with pytest.raises(ConfigError, match=r"loss='hinge' is not one of 'mse', 'ce'"):
        LOSSES["hinge"]
    with pytest.raises(ConfigError, match="method='sgd' is not one of"):
        Config(method="sgd")
    with pytest.raises(ValueError, match="loss 'a' is declared twice"):
        Registry("loss", [Loss("a", "first", make=lambda counts: None),
                          Loss("a", "again", make=lambda counts: None)])
    # Entries are declared in the catalogue, not registered by the module of their code.
    with pytest.raises(TypeError, match="declare the entry in ssm_jax/registry.py"):
        LOSSES.register(Loss("b", "late", make="ssm_jax.losses:make_squared"))
    with pytest.raises(TypeError):  # (the test-time type checker refuses it first)
        Registry("loss", "ssm_jax.losses")


def test_option_declaration_helper():
    @dataclasses.dataclass(frozen=True)
    class Small:
        rate: float = option(0.5, "traced", "a rate", group="g", parse=float)
        mode: str = option("a", "static", "a mode", group="g", choices=("a", "b"))

    table = options_of(Small)
    assert list(table) == ["rate", "mode"] and isinstance(table["rate"], Option)
    assert table["mode"].convert("b") == "b" and table["rate"].convert(2) == 2.0
    with pytest.raises(ConfigError, match="mode='c' is not one of 'a', 'b'"):
        table["mode"].convert("c")
    with pytest.raises(ConfigError, match="rate='x' is not a valid value"):
        table["rate"].convert("x")
    with pytest.raises(ValueError, match="kind="):
        option(1, "dynamic", "bad kind", group="g")
