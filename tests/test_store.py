"""Fault injection into a sweep's store: damaged, swapped, foreign and deleted chunk and
manifest files, files that are not sweeps, concurrent writers, and a kill mid-sweep. In
every case the sweep either finishes with exactly the uninterrupted Dataset or is refused
with a ConfigError; nothing foreign is assembled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from filelock import FileLock

from ssm_jax import Config, ConfigError, sweep
from ssm_jax.cli import main
from ssm_jax.sweep import store

import sweep_child

CHILD = sweep_child.__file__
TIMEOUT_S = 300  # any wait on a child process; a hang fails the test instead of the suite


class Stop(Exception):
    """Raised from on_chunk to leave a sweep's parts behind unassembled."""




def wait_for_lines(path, count: int, child=None) -> None:
    """Wait until the log ``path`` has ``count`` lines (or ``child`` ends, or time runs out)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and (child is None or child.poll() is None):
        if path.exists() and len(path.read_text().split()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} lines in time")


def unfinished(sw, out) -> list[int]:
    """Run ``sw`` into ``out`` but stop before assembling; returns the saved chunk ids."""
    saved: list[int] = []
    total = len(sweep.plan(sw, chunk_size=sweep_child.CHUNK_SIZE).chunks)

    def on_chunk(chunk_id: int) -> None:
        saved.append(chunk_id)
        if len(saved) == total:
            raise Stop

    with pytest.raises(Stop):
        sweep.run(sw, out, chunk_size=sweep_child.CHUNK_SIZE, progress=False, on_chunk=on_chunk)
    return saved


def resume(sw, out) -> tuple[xr.Dataset, list[int]]:
    recomputed: list[int] = []
    ds = sweep.run(sw, out, chunk_size=sweep_child.CHUNK_SIZE, progress=False,
                   on_chunk=recomputed.append)
    return ds, recomputed


@pytest.fixture(scope="module")
def swept():
    return sweep_child.make()


@pytest.fixture(scope="module")
def other():
    """A sweep of the same shape and chunks with another gamma: its files fit every slot."""
    return sweep.make_sweep(Config(**sweep_child.BASE), {**sweep_child.AXES, "gamma": [0.0, 2.0]},
                            seeds=2)


@pytest.fixture(scope="module")
def reference(swept, tmp_path_factory):
    return sweep.run(swept, tmp_path_factory.mktemp("ref") / "s.nc",
                     chunk_size=sweep_child.CHUNK_SIZE, progress=False)


@pytest.fixture(scope="module")
def other_parts(other, tmp_path_factory):
    """The chunk files of ``other``, unassembled."""
    out = tmp_path_factory.mktemp("other") / "s.nc"
    unfinished(other, out)
    return out.parent / "s.nc.parts"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax-cache"))


def _truncate(path, _):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path, _):
    path.write_bytes(b"")


def _flip(path, _):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside an array's bytes: the zip itself still reads
    path.write_bytes(bytes(data))


def _swap(path, _):
    shutil.copyfile(path.parent / "chunk-000001.npz", path)


def _foreign(path, other_parts):
    shutil.copyfile(other_parts / path.name, path)


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "unreadable"), (_empty, "unreadable"), (_flip, "checksum|unreadable"),
    (_swap, "runs other than those of chunk 0"), (_foreign, "belongs to another sweep")])
def test_a_bad_chunk_is_reported_and_computed_again(swept, reference, other_parts, tmp_path,
                                                    damage, reason):
    out = tmp_path / "s.nc"
    unfinished(swept, out)
    damage(tmp_path / "s.nc.parts" / "chunk-000000.npz", other_parts)
    with pytest.warns(store.StoreWarning, match=reason):
        ds, recomputed = resume(swept, out)
    assert recomputed == [0]
    xr.testing.assert_identical(ds, reference)


def test_deleted_manifest_mixes_nothing_foreign(swept, other, reference, other_parts,
                                                tmp_path):
    """The parts of ``other`` without their manifest, resumed as ``swept``: every chunk is
    foreign, so every chunk is computed again and the file is ``swept``'s alone."""
    out = tmp_path / "s.nc"
    shutil.copytree(other_parts, tmp_path / "s.nc.parts")
    os.remove(tmp_path / "s.nc.parts" / "manifest.json")
    with pytest.warns(store.StoreWarning, match="belongs to another sweep"):
        ds, recomputed = resume(swept, out)
    assert sorted(recomputed) == list(range(4))
    xr.testing.assert_identical(ds, reference)


@pytest.mark.parametrize("content", [b"", b'{"chunk_size": 2', b"[1, 2]", b"\xff\xfe"])
def test_damaged_manifest_is_rewritten_and_the_chunks_kept(swept, reference, tmp_path,
                                                           content):
    out = tmp_path / "s.nc"
    unfinished(swept, out)
    (tmp_path / "s.nc.parts" / "manifest.json").write_bytes(content)
    with pytest.warns(store.StoreWarning, match="manifest.json is"):
        ds, recomputed = resume(swept, out)
    assert recomputed == []
    xr.testing.assert_identical(ds, reference)


def test_a_swapped_manifest_refuses_and_names_the_options(swept, other_parts, tmp_path):
    out = tmp_path / "s.nc"
    unfinished(swept, out)
    shutil.copyfile(other_parts / "manifest.json", tmp_path / "s.nc.parts" / "manifest.json")
    with pytest.raises(ConfigError, match=r"gamma \(swept\): \[0.0, 2.0\] there, "
                                          r"\[0.0, 1.0\] now"):
        resume(swept, out)
    assert not out.exists()


def _netcdf_of_another_kind(path):
    xr.Dataset({"x": ("a", np.arange(3.0))}, attrs={"title": "not a sweep"}).to_netcdf(path)


@pytest.mark.parametrize("make", [
    lambda path: path.write_bytes(b""),
    lambda path: path.write_text(json.dumps({"loss": [1.0]})),
    _netcdf_of_another_kind,
    lambda path: (_netcdf_of_another_kind(path), _truncate(path, None)),
], ids=["empty", "json", "other-netcdf", "truncated"])
def test_a_file_that_is_not_a_sweep_is_refused(tmp_path, capsys, make):
    path = tmp_path / "x.nc"
    make(path)
    with pytest.raises(ConfigError, match="not a sweep file"):
        sweep.load(path)
    assert main(["plot", str(path), "--out", str(tmp_path)]) == 2
    assert "not a sweep file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["x.nc"]


def test_a_held_lock_refuses_a_second_writer(swept, tmp_path):
    out = tmp_path / "s.nc"
    with FileLock(store.lock_path(out), timeout=0):
        with pytest.raises(ConfigError, match="another sweep is writing"):
            sweep.run(swept, out, chunk_size=2, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["s.nc.lock"]  # no parts, no file


def test_concurrent_writers_and_a_kill_mid_sweep(reference, tmp_path, cache_dir):
    """A sweep is killed mid-way (its lock dies with it); a second writer started while a
    third runs exits 2 without touching anything; the third gives the reference Dataset."""
    out, env = tmp_path / "s.nc", sweep_child.child_env(cache_dir)
    logs = [tmp_path / f"log{i}" for i in range(3)]

    def start(i: int, pause: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, CHILD, str(out), str(logs[i]), str(pause)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    killed = start(0, 30.0)
    try:
        wait_for_lines(logs[0], 1, killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(TIMEOUT_S)
    first = start(1, float(TIMEOUT_S))  # pauses after each chunk until log1.go exists
    try:
        wait_for_lines(logs[1], 1, first)
        second = start(2, 0.0)
        _, err = second.communicate(timeout=TIMEOUT_S)
        assert second.returncode == 2, err
        assert "another sweep is writing" in err
        assert not logs[2].exists()
        (tmp_path / "log1.go").touch()
        _, err = first.communicate(timeout=TIMEOUT_S)
    finally:
        first.kill()
    assert first.returncode == 0, err
    done_before_kill = {int(i) for i in logs[0].read_text().split()}
    assert not done_before_kill & {int(i) for i in logs[1].read_text().split()}
    xr.testing.assert_identical(sweep.load(out), reference)
