"""The multi-host sweep for real: processes joined by a ``jax.distributed`` coordinator on
127.0.0.1 (CPU backends, one device each) share a sweep's chunks and give the
single-process Dataset; a process killed mid-sweep leaves parts that one host finishes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import xarray as xr

from ssm_jax import sweep

import sweep_child

TIMEOUT_S = 300  # any wait on a child process: a hang fails the test, not the suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def logged(path) -> list[int]:
    return [int(i) for i in path.read_text().split()] if path.exists() else []


def wait_for_lines(path, count: int, child) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and child.poll() is None:
        if len(logged(path)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} lines in time "
                         f"(child exit status {child.poll()})")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax-cache"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return sweep.run(sweep_child.make(), tmp_path_factory.mktemp("ref") / "s.nc",
                     chunk_size=sweep_child.CHUNK_SIZE, progress=False)


def test_two_processes_give_the_single_process_dataset(tmp_path, reference, cache_dir):
    """``ssm-jax sweep --distributed`` in two processes with a real coordinator."""
    out, port = tmp_path / "s.nc", free_port()
    options = [f"--{k.replace('_', '-')}={v}" for k, v in sweep_child.BASE.items()]
    options += [f"--{k}={','.join(map(str, v))}" for k, v in sweep_child.AXES.items()]
    command = [sys.executable, "-m", "ssm_jax", "sweep", *options, "--seeds=2",
               f"--chunk-size={sweep_child.CHUNK_SIZE}", "--no-progress", "--out", str(out),
               "--distributed", f"--coordinator=127.0.0.1:{port}", "--num-processes=2"]
    env = sweep_child.child_env(cache_dir)
    children = [subprocess.Popen([*command, f"--process-id={i}"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(2)]
    try:
        results = [child.communicate(timeout=TIMEOUT_S) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (stdout, stderr) in zip(children, results, strict=True):
        assert child.returncode == 0, stdout + stderr
    assert "on 1 device(s)" in results[0][0] and f"wrote {out}" in results[0][0]
    assert "process 1: its chunks are done" in results[1][0]
    assert not (tmp_path / "s.nc.parts").exists()
    xr.testing.assert_identical(sweep.load(out), reference)


def test_a_process_killed_mid_sweep_then_one_host_finishes(tmp_path, reference, cache_dir):
    """Process 1 of 2 is killed after its first chunk; process 0 saves its own chunks and
    waits (it is then stopped too); rerun on one host, the sweep computes only the chunk
    nobody saved and gives the single-process Dataset."""
    out, port, env = tmp_path / "s.nc", free_port(), sweep_child.child_env(cache_dir)
    logs = [tmp_path / f"log{i}" for i in range(3)]
    total = len(sweep.plan(sweep_child.make(), chunk_size=sweep_child.CHUNK_SIZE).chunks)
    assert total == 4  # process 0: chunks 0, 2; process 1: chunks 1, 3
    children = [subprocess.Popen([sys.executable, sweep_child.__file__, str(out), str(logs[i]),
                                  pause, f"127.0.0.1:{port}", "2", str(i)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for i, pause in ((0, "0"), (1, str(TIMEOUT_S)))]
    try:
        wait_for_lines(logs[1], 1, children[1])
        children[1].send_signal(signal.SIGKILL)
        wait_for_lines(logs[0], 2, children[0])
    finally:
        for child in children:
            child.kill()
            child.wait(TIMEOUT_S)
    assert children[1].returncode == -signal.SIGKILL
    assert logged(logs[0]) == [0, 2] and logged(logs[1]) == [1]
    assert not out.exists()
    again = subprocess.run([sys.executable, sweep_child.__file__, str(out), str(logs[2]), "0"],
                           env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert again.returncode == 0, again.stderr
    assert logged(logs[2]) == [3]
    xr.testing.assert_identical(sweep.load(out), reference)
