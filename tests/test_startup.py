"""Start-up (issue 19 §2): ``import ssm_jax``, ``--help`` and every refusal of bad input
import no JAX (nor the other heavy libraries); the public API still resolves; JAX is
configured (compilation cache, CPU devices) whichever way it is imported.

Each case runs in a fresh interpreter, which reports the heavy modules it imported."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

import ssm_jax
from ssm_jax import lazy
from ssm_jax.cli import build_parser

HEAVY = ("jax", "jaxlib", "jaxtyping", "optax", "diffrax", "equinox", "sklearn", "matplotlib",
         "xarray", "netCDF4", "scipy")

# Runs the command line's main on argv; reports its exit status and the modules imported.
PROBE = """
import json, sys
from ssm_jax.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def probe(argv: list[str], code: str = PROBE) -> tuple[int, set[str], str, str]:
    """(exit status, top-level modules imported, stdout, stderr without the report)."""
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, timeout=120)
    *lines, report = done.stderr.strip().splitlines()
    data = json.loads(report)
    return data["status"], {m.split(".")[0] for m in data["modules"]}, done.stdout, \
        "\n".join(lines)


def subcommands() -> list[str]:
    (action,) = [a for a in build_parser()._actions if hasattr(a, "choices")
                 and isinstance(a.choices, dict)]
    return list(action.choices)


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in subcommands()])
def test_help_imports_neither_jax_nor_numpy(argv):
    status, modules, out, _ = probe(argv)
    assert status == 0 and "usage: ssm-jax" in out
    assert not modules & {*HEAVY, "numpy"}, modules & {*HEAVY, "numpy"}


def test_every_subcommand_is_probed():
    assert set(subcommands()) == {"simulate", "demo", "sweep", "plot", "grad", "meta",
                                  "geometry", "resampling", "digits"}


BAD_INPUT = [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["simulate", "--loss", "hinge"], "invalid choice: 'hinge'"),
    (["simulate", "--solver", "euler", "--method", "flow"], "invalid choice: 'euler'"),
    (["simulate", "--gamma", "nan"], "gamma=nan"),
    (["simulate", "--steps", "1e3"], "steps=1e3"),
    (["simulate", "--ratio", "0.5"], "ratio=0.5 is out of range"),
    (["simulate", "--gamma", "1"], "gamma=1.0 has no effect with weighting='erm'"),
    (["simulate", "--weighting", "power", "--gamma", "1", "--momentum", "0.5"],
     "momentum=0.5 has no effect"),
    (["simulate", "--weighting", "power", "--gamma", "1000"], "overflow or underflow"),
    (["simulate", "--lr", "1e-300"], "lr=1e-300 is 0 in float32"),
    (["simulate", "--loss", "ce", "--reduced", "on"], "reduced='on' does not apply"),
    (["simulate", "--json", "/proc/ssm.json"], "cannot be written"),
    (["simulate", "--dim", "65536", "--n-major", "10000000", "--ratio", "1"], "memory"),
    (["sweep", "--ratio", "2,1000"], "(in the sweep point ratio=1000.0)"),
    (["sweep", "--gamma", "0,1"], "gamma=1.0 has no effect"),
    (["sweep", "--seed", "1", "--seeds", "2"], "either --seed"),
    (["sweep", "--buckets", "0"], "buckets=0"),
    (["sweep", "--chunk-size", "0"], "chunk_size=0"),
    (["sweep", "--memory-budget", "lots"], "memory budget 'lots'"),
    (["sweep", "--cpu-devices", "0"], "--cpu-devices='0'"),
    (["sweep", "--coordinator", "localhost:1234"], "need --distributed"),
    (["sweep", "--config", "/nonexistent.toml"], "does not exist"),
    (["grad", "--wrt", "foo"], "wrt='foo' is not one of"),
    (["grad", "--t1", "3"], "is not a whole number of steps"),
    (["grad", "--temperature", "0"], "temperature=0.0"),
    (["grad", "--objective", "minority_loss", "--ratio", "1"], "needs minority classes"),
    (["meta", "--meta-lr", "0"], "--meta-lr)=0.0"),
    (["meta", "--learn", "weights", "--method", "flow", "--stop-metric", "loss",
      "--stop-at", "0.1"], "drop the stop event"),
    (["geometry", "--weight-decays", "0"], "weight-decays=0.0 is out of range"),
    (["geometry", "--collapse-ratios", "0.5"], "ratios=0.5 is out of range"),
    (["simulate", "--reweight-from", "10"], "reweight_from=10.0 has no effect"),
    (["simulate", "--weighting", "power", "--gamma", "1", "--reweight-from", "9",
      "--reweight-until", "3"], "must be < reweight_until"),
    (["simulate", "--sampling", "sqrt"], "sampling='sqrt' has no effect without batch_size"),
    (["simulate", "--batch-size", "8", "--method", "flow"], "batch_size=8 has no effect"),
    (["simulate", "--loss", "ldam", "--ldam-scale", "0"], "ldam_scale=0.0"),
    (["grad", "--wrt", "reweight_from"], "needs the switch"),
    (["resampling", "--weighting", "power", "--gamma", "1"], "leave weighting='erm'"),
    (["resampling", "--lrs", "1,-2"], "must be finite learning rates > 0"),
    (["digits", "--tau", "-1"], "tau=-1.0"),
    (["digits", "--method", "flow"], "method='flow' is not one of"),
    (["digits", "--minority", "1,1"], "lists a digit twice"),
    (["plot", "/nonexistent.nc"], "does not exist"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT)
def test_bad_input_exits_2_before_jax_is_imported(argv, message):
    status, modules, _, err = probe(argv)
    assert status == 2 and message in err, err
    assert not modules & set(HEAVY), modules & set(HEAVY)


@pytest.mark.parametrize("argv", [
    ["simulate", "--ratio", "0.5"],
    ["simulate", "--weighting", "power", "--gamma", "1", "--momentum", "0.5"],
    ["simulate", "--dim", "65536", "--n-major", "10000000", "--ratio", "1"],
    ["grad", "--wrt", "foo"],
    ["meta", "--meta-lr", "0"],
    ["digits", "--tau", "-1"],
    ["sweep", "--gamma", "0,1"],
    ["sweep", "--ratio", "2,1000"],
])
def test_most_refusals_import_no_numpy_either(argv):
    """Only the class-weight precision check (last in validation) needs numpy; a sweep's
    planner checks every run before it imports numpy."""
    status, modules, _, _ = probe(argv)
    assert status == 2 and "numpy" not in modules


def test_a_run_of_discrete_steps_imports_no_diffrax(tmp_path):
    """diffrax, equinox and optimistix (0.4 s) are imported by a gradient-flow run only."""
    status, modules, out, err = probe(["simulate", "--steps", "20", "--saves", "3"])
    assert status in (0, None), err
    assert "jax" in modules and "optax" in modules
    assert not modules & {"diffrax", "equinox", "optimistix"}, modules
    status, modules, out, err = probe(["simulate", "--method", "flow", "--steps", "20",
                                       "--saves", "3"])
    assert status in (0, None), err
    assert "diffrax" in modules


def test_bad_output_folder_exits_before_jax(tmp_path):
    (tmp_path / "file").write_text("")
    for command in ("demo", "meta", "geometry", "resampling", "digits"):
        status, modules, _, err = probe([command, "--out", str(tmp_path / "file")])
        assert status == 2 and "is not a folder" in err, err
        assert not modules & set(HEAVY)


def test_digits_reads_the_dataset_sizes_last():
    """The one check that needs scikit-learn (the bundled dataset's smallest class) comes
    after every other, and still before JAX."""
    status, modules, _, err = probe(["digits", "--test-per-class", "1000"])
    assert status == 2 and "the smallest digit has" in err
    assert "sklearn" in modules and not modules & {"jax", "optax", "matplotlib"}


def test_import_ssm_jax_imports_no_jax_and_the_api_resolves():
    code = """
import json, sys
import ssm_jax
before = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
names = {{n: type(getattr(ssm_jax, n)).__name__ for n in ssm_jax.__all__}}
print(json.dumps({{"before": before, "names": names, "simulate": callable(ssm_jax.simulate)}}))
""".format(heavy=repr(set(HEAVY) | {"numpy"}))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["before"] == []
    assert set(data["names"]) == set(ssm_jax.__all__) and data["simulate"]
    assert data["names"]["simulate"] == "function" and data["names"]["Config"] == "type"


@pytest.mark.parametrize("package", ["ssm_jax", "ssm_jax.sweep", "ssm_jax.meta",
                                     "ssm_jax.plot", "ssm_jax.experiments.digits",
                                     "ssm_jax.dynamics"])
def test_lazy_packages_declare_exactly_their_public_names(package):
    module = importlib.import_module(package)
    declared = lazy.declared(module.__file__)
    assert set(declared) == set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_the_simulate_function_wins_over_its_submodule(monkeypatch):
    module = importlib.import_module("ssm_jax.simulate")
    assert ssm_jax.simulate is module.simulate and callable(ssm_jax.simulate)
    from ssm_jax import simulate

    assert simulate is module.simulate
    monkeypatch.setattr(ssm_jax, "simulate", len)  # a patched value is kept, then undone
    assert ssm_jax.simulate is len
    monkeypatch.undo()
    assert ssm_jax.simulate is module.simulate


CONFIGURED = """
import json, os, sys
{imports}
import jax
print(json.dumps({{"dir": jax.config.jax_compilation_cache_dir,
                  "devices": jax.config.jax_num_cpu_devices,
                  "min_time": jax.config.jax_persistent_cache_min_compile_time_secs}}))
"""


@pytest.mark.parametrize("imports", [
    "import ssm_jax",  # JAX imported after ssm_jax (the command line's order)
    "import jax; import ssm_jax",  # JAX first (a notebook that imported it)
    "import ssm_jax.simulate",  # a submodule that imports JAX itself
    "from ssm_jax import Config; Config()",  # the API, validation only
])
def test_jax_is_configured_whichever_is_imported_first(tmp_path, imports):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "JAX_NUM_CPU_DEVICES")}
    env["SSM_JAX_CACHE_DIR"] = str(tmp_path / "xla")
    done = subprocess.run([sys.executable, "-c", CONFIGURED.format(imports=imports)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["dir"] == str(tmp_path / "xla") and os.path.isdir(tmp_path / "xla")
    assert data["devices"] == (os.cpu_count() or 1)
    assert data["min_time"] == ssm_jax.cache.MIN_COMPILE_TIME_SECS


def test_a_count_given_to_jax_is_kept_when_jax_comes_later(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_NUM_CPU_DEVICES="1", SSM_JAX_CACHE_DIR=str(tmp_path / "xla"))
    done = subprocess.run([sys.executable, "-c", CONFIGURED.format(imports="import ssm_jax")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["devices"] == 1
