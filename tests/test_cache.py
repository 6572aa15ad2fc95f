"""The persistent compilation cache (ssm_jax.cache) and the CPU device default
(ssm_jax.devices): where the folder goes, that it is shared safely, and that a corrupted or
unusable cache changes no result and only warns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

from ssm_jax import cache, devices

SETTINGS = ["jax_enable_compilation_cache", "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes", "jax_compilation_cache_max_size"]
# A short default run: one trajectory program, written to the cache (it compiles in > 0.1 s).
RUN = ["-m", "ssm_jax", "simulate", "--steps", "50", "--saves", "11"]


@pytest.fixture
def jax_settings(monkeypatch):
    """JAX's cache settings with no folder chosen yet, restored afterwards (the process's
    cache, already initialised, is not affected by changing them)."""
    saved = {name: getattr(jax.config, name) for name in SETTINGS}
    for name in (*SETTINGS, "SSM_JAX_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name.upper() if name.startswith("jax") else name, raising=False)
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_enable_compilation_cache", True)
    yield monkeypatch
    for name, value in saved.items():
        jax.config.update(name, value)


def test_folder_follows_xdg_and_ssm_jax_cache_dir(jax_settings, tmp_path):
    home = os.path.join(os.path.expanduser("~"), ".cache", "ssm-jax", "xla")
    assert cache.default_dir() == home
    jax_settings.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.configure() == str(tmp_path / "xdg" / "ssm-jax" / "xla")
    assert os.path.isdir(tmp_path / "xdg" / "ssm-jax" / "xla")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == cache.MIN_COMPILE_TIME_SECS
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
    assert jax.config.jax_compilation_cache_max_size == cache.MAX_SIZE_BYTES

    jax.config.update("jax_compilation_cache_dir", None)
    jax_settings.setenv("SSM_JAX_CACHE_DIR", str(tmp_path / "chosen"))
    assert cache.configure() == str(tmp_path / "chosen")


def test_empty_variable_turns_the_cache_off(jax_settings):
    jax_settings.setenv("SSM_JAX_CACHE_DIR", "")
    assert cache.configure() is None and cache.cache_dir() is None
    assert not jax.config.jax_enable_compilation_cache


def test_settings_given_to_jax_are_kept(jax_settings, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax"))
    jax_settings.setenv("SSM_JAX_CACHE_DIR", str(tmp_path / "ours"))
    jax_settings.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "3")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 3.0)
    assert cache.configure() == str(tmp_path / "jax")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 3.0
    assert not os.path.exists(tmp_path / "ours")


def test_unusable_folder_warns_and_leaves_the_cache_off(jax_settings, tmp_path):
    (tmp_path / "file").write_text("")
    jax_settings.setenv("SSM_JAX_CACHE_DIR", str(tmp_path / "file" / "xla"))
    with pytest.warns(cache.CacheWarning, match="compiling without a persistent cache"):
        assert cache.configure() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_devices_leave_a_given_count_alone():
    """The test process was given one device (conftest.py), and its backend runs."""
    assert devices.configure() is None and jax.local_device_count() == 1


def simulate_in_subprocesses(tmp_path, name, cache_dir, count=1):
    """``ssm-jax simulate`` in ``count`` processes started together; their JSON files and
    standard errors."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "JAX_NUM_CPU_DEVICES")}
    env.update(JAX_PLATFORMS="cpu", SSM_JAX_CACHE_DIR=cache_dir)
    paths = [tmp_path / f"{name}{i}.json" for i in range(count)]
    procs = [subprocess.Popen([sys.executable, *RUN, "--json", str(path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for path in paths]
    errors = [proc.communicate()[1] for proc in procs]
    for proc, err in zip(procs, errors, strict=True):
        assert proc.returncode == 0, err
    return [json.loads(path.read_text()) for path in paths], errors


def test_shared_corrupted_and_unusable_caches_give_identical_results(tmp_path):
    folder = tmp_path / "xla"
    # Two processes filling one empty folder at once, then a third reading it.
    (first, second), errors = simulate_in_subprocesses(tmp_path, "cold", str(folder), 2)
    assert first == second and not any("cache" in err.lower() for err in errors)
    entries = [p for p in folder.iterdir() if p.name.endswith("-cache")]
    assert any(p.name.startswith("jit_trajectory") for p in entries)
    (warm,), (err,) = simulate_in_subprocesses(tmp_path, "warm", str(folder))
    assert warm == first and "cache" not in err.lower()
    # Corrupted entries, of JAX's cache and of the program store (ssm_jax.programs): each
    # warns, and the trajectory is compiled again.
    stored = list((folder / "programs").iterdir())
    assert len(stored) == 1 and stored[0].name.startswith("trajectory-")
    for entry in [*entries, *stored]:
        entry.write_bytes(b"not a compiled program" + entry.read_bytes()[:-100])
    (corrupted,), (err,) = simulate_in_subprocesses(tmp_path, "corrupt", str(folder))
    assert corrupted == first
    assert "the stored program" in err and "could not be loaded" in err
    assert "Error reading persistent compilation cache entry for 'jit_trajectory'" in err
    # A folder that cannot be created: ssm-jax warns once and compiles without a cache.
    (tmp_path / "file").write_text("")
    (unusable,), (err,) = simulate_in_subprocesses(tmp_path, "unusable",
                                                   str(tmp_path / "file" / "xla"))
    assert unusable == first and "CacheWarning" in err
