"""Input reliability (issue 17, classes 1, 2, 3 and 6): outputs checked before any work,
sizes bounded before allocation, no-effect options refused, finite numbers only; and
property tests: any generated input validates or is refused with ConfigError (exit 2 on
the command line), never another exception."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssm_jax import Config, ConfigError
from ssm_jax.cli import main
from ssm_jax.config import MAX_SEED, OPTIONS
from ssm_jax.io import atomic_write, check_output_path, write_json
from ssm_jax.resources import check_fits

SMALL = ["--counts", "6,3", "--dim", "4", "--steps", "20", "--saves", "3"]


def refused(argv, capsys) -> str:
    """Run the CLI; it must exit 2 (from argparse or from a ConfigError) with one line."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


# ------------------------------------------------------------------ 1. output paths


@pytest.mark.parametrize("target", ["", "folder", "below_file/x.json", "/proc/ssm.json",
                                    "/dev/full", "/dev/null"])
def test_bad_output_paths_exit_2_before_any_work(tmp_path, capsys, target):
    (tmp_path / "folder").mkdir()
    (tmp_path / "below_file").write_text("a file")
    path = target if target.startswith("/") or not target else str(tmp_path / target)
    before = sorted(os.listdir(tmp_path))
    line = refused(["simulate", *SMALL, "--json", path], capsys)
    assert "output" in line or "json" in line
    assert sorted(os.listdir(tmp_path)) == before  # nothing written or left behind


@pytest.mark.parametrize("command", [["demo"], ["meta", *SMALL], ["geometry", *SMALL],
                                     ["digits"]])
def test_output_folders_are_checked_at_parse_time(tmp_path, capsys, command):
    (tmp_path / "file").write_text("x")
    line = refused([*command, "--out", str(tmp_path / "file")], capsys)
    assert "not a folder" in line


def test_atomic_write_replaces_only_regular_files(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        write_json({}, tmp_path / "folder")
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "target.json")
    with pytest.raises(ConfigError, match="not a regular file"):
        write_json({}, link)
    write_json({"a": 1}, tmp_path / "ok.json")
    write_json({"a": 2}, tmp_path / "ok.json")  # a regular file is replaced
    assert (tmp_path / "ok.json").read_text().strip().endswith("}")
    assert sorted(os.listdir(tmp_path)) == ["folder", "link.json", "ok.json"]  # no tmp left
    with pytest.raises(ConfigError):
        atomic_write("", lambda tmp: None)


def test_check_output_path_accepts_new_files_and_folders(tmp_path):
    assert check_output_path(tmp_path / "new" / "deeper" / "x.json") == str(
        tmp_path / "new" / "deeper" / "x.json")
    assert check_output_path(tmp_path, folder=True) == str(tmp_path)
    assert os.listdir(tmp_path) == []  # the probe is removed


# ------------------------------------------------------------------- 2. sizes bounded


@pytest.mark.parametrize("args, message", [
    (["--n-major", "1000000000000"], "n_major=1000000000000"),
    (["--k-minor", "100000000"], "k_minor=100000000"),
    (["--counts", "10000000000,3"], "counts=10000000000"),
    (["--steps", "1e14"], "steps=1e14"),
    (["--steps", "100000000000000"], "steps=100000000000000"),
    (["--seed", "4294967296"], "seed=4294967296"),
    (["--dim", "65536", "--n-major", "10000000", "--ratio", "1"], "memory"),
])
def test_sizes_are_bounded_before_allocation(capsys, args, message):
    assert message in refused(["simulate", *args], capsys)


def test_seed_bound_is_jax_keys():
    assert Config(seed=MAX_SEED).seed == 2**32 - 1
    with pytest.raises(ConfigError, match="seed=4294967296"):
        Config(seed=2**32)


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--seeds", "1000000000000"], "seeds=1000000000000"),
    (["sweep", "--cpu-devices", "100000"], "cpu-devices"),
    (["meta", "--iterations", "1000000000000"], "iterations=1000000000000"),
    (["grad", "--t1", "1e15"], "steps="),
    (["digits", "--hidden", "100000000000"], "hidden width=100000000000"),
])
def test_other_subcommands_bound_their_sizes(capsys, argv, message):
    assert message in refused(argv, capsys)


def test_memory_estimate_is_refused_beyond_the_machine():
    check_fits(10, "this run", available=100)
    with pytest.raises(ConfigError, match=r"needs about 1 KiB .* has 100 B"):
        check_fits(1024, "this run", available=100)


# --------------------------------------------------------------- 3. no-effect options


@pytest.mark.parametrize("changes, message", [
    ({"gamma": 0.5}, "gamma=0.5 has no effect with weighting='erm'"),
    ({"weighting": "power", "beta": 0.5}, "beta=0.5 has no effect"),
    ({"weights": (1.0, 2.0), "counts": (3, 2)}, "weights=(1.0, 2.0) has no effect"),
    ({"counts": (6, 3), "ratio": 2.0}, "ratio=2.0 has no effect with profile='counts'"),
    ({"counts": (6, 3), "k_major": 2}, "k_major=2 has no effect"),
    ({"profile": "longtail", "counts": (6, 3)}, "counts=(6, 3) has no effect"),
    ({"momentum": 0.5}, "momentum=0.5 has no effect with method='gd'"),
    ({"vs_gamma": 0.5}, "vs_gamma=0.5 has no effect with loss='mse'"),
    ({"focal_gamma": 1.0, "loss": "ce"}, "focal_gamma=1.0 has no effect"),
    ({"solver": "dopri5"}, "solver='dopri5' has no effect with method='gd'"),
    ({"method": "flow", "t1": 2.0, "steps": 20, "saves": 3}, "steps=20 has no effect once t1"),
])
def test_an_option_without_effect_is_refused(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config(**changes)


def test_the_rule_follows_the_declarations():
    # every option whose declaration says when it applies is refused outside it, with the
    # setting it needs in the message
    for name, opt in OPTIONS.items():
        if opt.applies is None:
            continue
        field, values = opt.applies
        other = next(v for v in OPTIONS[field].allowed() if v not in values)
        assert other is not None, name


def test_explicit_counts_set_the_profile_and_defaults_are_never_refused():
    assert Config(counts=(6, 3)).profile == "counts"
    Config(method="flow", t1=2.0)  # steps at its default
    Config(weighting="power", gamma=1.0, momentum=0.9)  # momentum at its default


def test_a_sweep_listing_a_no_effect_option_is_refused(capsys):
    line = refused(["sweep", "--counts", "6,3", "--ratio", "2,3", "--dim", "4",
                    "--steps", "20", "--saves", "3"], capsys)
    assert "ratio=2.0 has no effect" in line


@pytest.mark.parametrize("changes, message", [
    ({"lr": 1e-300}, "lr=1e-300 is 0 in float32"),
    ({"tau": 1e300}, r"tau=1e\+300 is infinite in float32"),
    ({"weighting": "power", "gamma": 1000.0}, "overflow or underflow"),
    ({"weighting": "power", "gamma": -1000.0}, "overflow or underflow"),
    ({"n_major": 10, "ratio": 100.0}, "less than one example"),
])
def test_values_the_precision_cannot_hold_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)
    if "lr" in changes:
        assert Config(**changes, x64=True).lr == 1e-300  # float64 holds it


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                 st.sampled_from([3.4028235e38, 3.4028236e38, 3.40282357e38, 3.4028237e38,
                                  1e39, 1.4e-45, 7e-46, 7.1e-46, 1e-46, 1.17549435e-38]),
                 st.integers(-10**30, 10**30)))
def test_precision_is_read_as_numpy_would_hold_the_value(value):
    """Validation rounds real options to float32 in plain Python (no numpy on the way to a
    refusal); it rounds, overflows and underflows as numpy's float32 does."""
    import numpy as np

    from ssm_jax.config import _held

    with np.errstate(over="ignore", under="ignore"):
        expected = float(np.float32(value))
    assert _held(value, x64=False) == expected
    assert _held(value, x64=True) == float(np.float64(value))


# ------------------------------------------------- 6. subcommands offer what they support


@pytest.mark.parametrize("argv, message", [
    (["geometry", "--reweight-gamma", "nan"], "reweight-gamma=nan"),
    (["geometry", "--weight-decays", "1e-3,1e-3"], "more than once"),
    (["geometry", "--weight-decays", ","], "empty"),
    (["meta", "--times", "5,5"], "more than once"),
    (["meta", "--times", ""], "empty"),
    (["meta", "--meta-lr", "inf"], "meta-lr=inf"),
    (["grad", "--temperature", "nan"], "temperature=nan"),
    (["digits", "--lr", "nan"], "lr=nan"),
    (["digits", "--method", "muon"], "method='muon' is not one of"),
    (["digits", "--method", "specgd"], "method='specgd' is not one of"),
    (["digits", "--method", "flow"], "method='flow' is not one of"),
    (["sweep", "--gamma", "0,nan"], "gamma='nan'"),
])
def test_subcommands_refuse_what_they_do_not_support(capsys, argv, message):
    assert message in refused(argv, capsys)


# ------------------------------------------------------------------ property tests

NUMBERS = st.one_of(st.integers(-10**15, 10**15).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "", " ", "1e400", "0", "-0",
                                     "1,2", "3,3", "x", "1e-300", "4294967296"]))
CASES = {"count": 0}


def _text_for(opt):
    if opt.choices is not None:
        return st.one_of(st.sampled_from(opt.allowed()), st.text(max_size=6))
    return NUMBERS


@st.composite
def option_texts(draw):
    names = draw(st.lists(st.sampled_from([n for n, o in OPTIONS.items() if o.shared
                                           and not o.switch]), max_size=5, unique=True))
    return {name: draw(_text_for(OPTIONS[name])) for name in names}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option_texts())
def test_any_option_text_validates_or_is_refused_with_config_error(texts):
    """From text (the command line, TOML) through each option's parser to Config: a
    valid configuration, or a ConfigError with a one-line message; nothing else."""
    CASES["count"] += 1
    try:
        values = {name: OPTIONS[name].convert(text) for name, text in texts.items()}
        Config(**values)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(OPTIONS)),
                       st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                                 st.floats(), st.text(max_size=5),
                                 st.tuples(st.integers(-5, 10**9), st.integers(-5, 10**9))),
                       max_size=4))
def test_any_typed_value_validates_or_is_refused_with_config_error(values):
    """Python values of any type straight into Config (the Python API)."""
    CASES["count"] += 1
    try:
        Config(**values)
    except ConfigError as err:
        assert "\n" not in str(err)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["--gamma", "--lr", "--seed", "--steps", "--dim",
                                           "--ratio", "--momentum", "--weighting", "--t1",
                                           "--counts", "--json"]), NUMBERS),
                max_size=3))
def test_command_line_exits_2_or_parses(argv_pairs):
    """The simulate parser and validation (no simulation: the handler is replaced)."""
    from ssm_jax.cli import build_parser
    from ssm_jax.commands.arguments import config_from_args

    CASES["count"] += 1
    argv = ["simulate"] + [item for pair in argv_pairs for item in pair]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 2
        return
    try:
        config_from_args(args)
    except ConfigError as err:
        assert "\n" not in str(err)


def test_report_generated_cases():
    print(f"\nproperty tests ran {CASES['count']} generated cases")


def test_adapted_configurations_drop_what_no_longer_applies():
    cfg = Config(counts=(6, 3), weighting="explicit", weights=(1.0, 2.0), loss="focal",
                 focal_gamma=1.0, method="momentum", momentum=0.5)
    derived = cfg.adapted(weighting="power", loss="ce", method="gd")
    assert (derived.weighting, derived.loss, derived.method) == ("power", "ce", "gd")
    assert derived.weights is None and derived.focal_gamma == 2.0 and derived.momentum == 0.9
    assert derived.counts == (6, 3)  # still applies
    # what is asked is kept, and validated
    assert cfg.adapted(weighting="power", gamma=0.5).gamma == 0.5
    with pytest.raises(ConfigError, match="gamma=0.5 has no effect"):
        cfg.adapted(weighting="erm", gamma=0.5)
