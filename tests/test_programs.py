"""The program store (ssm_jax.programs): a single run's compiled trajectory is kept on disk
and loaded by later runs without tracing; every result is the same as without it, and a
damaged or unwritable store only warns."""

from __future__ import annotations

import importlib
import os
import warnings

import jax
import numpy as np
import pytest

from ssm_jax import Config, cache, programs, simulate

# The module (``ssm_jax.simulate`` the attribute is the function).
simulate_module = importlib.import_module("ssm_jax.simulate")

CFG = Config(steps=40, saves=5)


def fresh(dim: int, **changes) -> Config:
    """A configuration of its own: a program stored only when XLA has just compiled it
    (not read from JAX's cache, which this test session shares), so each test compiles
    programs no other test does (``dim`` 21 and above is used nowhere else)."""
    return Config(**{"steps": 37, "saves": 5, "dim": dim, **changes})


@pytest.fixture
def store(monkeypatch, tmp_path):
    """An empty store folder for this test."""
    folder = tmp_path / "programs"
    monkeypatch.setattr(programs, "folder", lambda: str(folder))
    return folder


def entries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def same(a, b) -> bool:
    return jax.tree.all(jax.tree.map(
        lambda x, y: np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True), a, b))


def test_a_second_run_loads_the_program_without_tracing(store, monkeypatch):
    cfg = fresh(21)
    first = simulate(cfg)
    (name,) = entries(store)
    assert name.startswith("trajectory-") and name.endswith(".xla")
    jax.clear_caches()
    with monkeypatch.context() as patch:
        patch.setattr(simulate_module, "trajectory_jit", _Untraceable())
        second = simulate(cfg)
        # A traced value (the learning rate, the seed) reuses the entry.
        other = simulate(cfg.adapted(lr=0.05, seed=3))
    assert same(first.trajectory, second.trajectory)
    assert not same(first.trajectory, other.trajectory)
    assert entries(store) == [name]
    simulate(cfg.adapted(steps=38))  # a static one does not
    assert len(entries(store)) == 2


class _Untraceable:
    """Stands in for the jitted trajectory: any use of it fails the test."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("the trajectory was traced")

    def lower(self, *args, **kwargs):
        raise AssertionError("the trajectory was traced")


@pytest.mark.parametrize("dim, changes", [(22, dict()), (23, dict(method="flow")),
                                          (24, dict(loss="ce", method="adam", x64=True))])
def test_results_equal_the_run_without_the_store(store, monkeypatch, dim, changes):
    cfg = fresh(dim, **changes)
    stored = simulate(cfg)
    jax.clear_caches()
    loaded = simulate(cfg)
    monkeypatch.setattr(programs, "folder", lambda: None)
    plain = simulate(cfg)
    assert same(stored.trajectory, plain.trajectory)
    assert same(loaded.trajectory, plain.trajectory)
    # A gradient flow's solver checks its errors with host callbacks, which XLA cannot
    # serialise: that program is compiled as before, and only warns if the store is
    # unusable.
    assert len(entries(store)) == (0 if cfg.method == "flow" else 1)


def test_a_program_read_from_jax_cache_is_not_stored(store, monkeypatch):
    cfg = fresh(25)
    with monkeypatch.context() as patch:
        patch.setattr(programs, "folder", lambda: None)
        plain = simulate(cfg)  # compiled, and written to JAX's cache of this session
    jax.clear_caches()
    read = simulate(cfg)
    assert programs._HITS.count >= 1 and entries(store) == []
    assert same(plain.trajectory, read.trajectory)


def test_the_key_covers_source_shapes_dtypes_and_settings(monkeypatch):
    from ssm_jax.simulate import numeric_of, problem_of, spec_of

    cfg = CFG
    args = (problem_of(cfg, host=True), numeric_of(cfg, host=True), jax.random.PRNGKey(0),
            None)
    key = programs.key_of("trajectory", spec_of(cfg), args)
    assert key == programs.key_of("trajectory", spec_of(cfg), args)
    other_values = (problem_of(cfg, host=True), numeric_of(cfg.adapted(lr=0.3), host=True),
                    jax.random.PRNGKey(5), None)
    assert programs.key_of("trajectory", spec_of(cfg), other_values) == key
    changed = [
        programs.key_of("trajectory", spec_of(cfg.adapted(dim=cfg.dim + 1)), args),
        programs.key_of("trajectory", spec_of(cfg),
                        (problem_of(cfg.adapted(ratio=4.0), host=True), *args[1:])),
        programs.key_of("other", spec_of(cfg), args),
    ]
    # float64 arrays are float32 arguments without x64 (as jit converts them)...
    assert programs.key_of("trajectory", spec_of(cfg),
                           (args[0], numeric_of(cfg, np.float64, host=True), *args[2:])) == key
    with jax.enable_x64(True):  # ... and float64 ones with it
        changed.append(programs.key_of(
            "trajectory", spec_of(cfg), (args[0], numeric_of(cfg, np.float64, host=True),
                                         *args[2:])))
    with jax.default_matmul_precision("bfloat16"):
        changed.append(programs.key_of("trajectory", spec_of(cfg), args))
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    changed.append(programs.key_of("trajectory", spec_of(cfg), args))
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(programs, "source_fingerprint", lambda: "edited")
    changed.append(programs.key_of("trajectory", spec_of(cfg), args))
    assert len({key, *changed}) == len(changed) + 1


def test_the_source_fingerprint_reads_the_package():
    fingerprint = programs.source_fingerprint()
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_a_damaged_entry_warns_and_is_replaced(store, damage):
    cfg = fresh(26 if damage == "truncated" else 27)
    first = simulate(cfg)
    (name,) = entries(store)
    path = store / name
    if damage == "truncated":
        path.write_bytes(b"damaged" + path.read_bytes()[:100])
    else:  # a readable entry of another program, under this one's name
        simulate(cfg.adapted(steps=36))
        (other,) = set(entries(store)) - {name}
        path.write_bytes((store / other).read_bytes())
    jax.clear_caches()
    with pytest.warns(cache.CacheWarning, match="could not be loaded or run.*removed"):
        again = simulate(cfg)
    assert same(first.trajectory, again.trajectory)
    assert name not in entries(store)  # removed (JAX's cache had the program: not stored)
    jax.clear_caches()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same(first.trajectory, simulate(cfg).trajectory)


def test_an_unwritable_store_warns_and_the_run_goes_on(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(programs, "folder", lambda: str(tmp_path / "file" / "programs"))
    with pytest.warns(cache.CacheWarning, match="could not be stored"):
        result = simulate(fresh(28))
    monkeypatch.setattr(programs, "folder", lambda: None)
    assert same(result.trajectory, simulate(fresh(28)).trajectory)


def test_the_least_recently_used_entries_go_beyond_the_bound(store, monkeypatch):
    monkeypatch.setattr(programs, "MAX_ENTRIES", 2)
    simulate(fresh(29, steps=31))
    (oldest,) = entries(store)
    os.utime(store / oldest, (1, 1))
    simulate(fresh(29, steps=32))
    simulate(fresh(29, steps=33))
    left = entries(store)
    assert len(left) == 2 and oldest not in left


def test_the_store_is_off_with_the_cache_and_under_debugging(store, monkeypatch):
    for debugging in (jax.debug_nans, jax.debug_infs, jax.disable_jit):
        with debugging(True):
            assert programs._bypassed()
    with jax.disable_jit():  # op by op, on the arrays simulate passes (host arrays)
        eager = simulate(fresh(30, steps=6))
    assert entries(store) == []
    jitted = simulate(fresh(30, steps=6))
    assert len(entries(store)) == 1
    np.testing.assert_allclose(eager.trajectory.loss, jitted.trajectory.loss, rtol=1e-5)
    monkeypatch.undo()  # programs.folder again
    monkeypatch.setattr(cache, "cache_dir", lambda: "/some/cache")
    assert programs.folder() == os.path.join("/some/cache", programs.SUBDIR)
    monkeypatch.setattr(cache, "cache_dir", lambda: None)
    assert programs.folder() is None
