"""A sweep run in a child process by the store and multi-process tests.

    python sweep_child.py OUT LOG PAUSE [COORDINATOR NUM_PROCESSES PROCESS_ID]

Runs the sweep of :data:`BASE` x :data:`AXES` (two seeds, chunks of 2 runs) into ``OUT``,
appending each saved chunk's id to ``LOG`` and then pausing ``PAUSE`` seconds, or until a
file ``LOG.go`` exists, so that a test can kill it, or start another, between chunks. With
the last three arguments it first joins a ``jax.distributed`` group of processes. Exit
status 2 for a :class:`ConfigError`, as the command line.
"""

from __future__ import annotations

import os
import sys
import time


def child_env(cache_dir) -> dict:
    """The environment of a child sweep: CPU, one device (as the test process), a compilation
    cache shared by the children and kept for every program."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1", JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    return env


BASE = dict(k_major=2, k_minor=2, n_major=12, dim=4, steps=20, saves=6, lr=2.0,
            weighting="power")
AXES = {"ratio": [1.0, 3.0], "gamma": [0.0, 1.0]}
CHUNK_SIZE = 2


def make():
    from ssm_jax import Config, sweep

    return sweep.make_sweep(Config(**BASE), AXES, seeds=2)


def main(argv: list[str]) -> int:
    out, log, pause = argv[0], argv[1], float(argv[2])
    if len(argv) > 3:
        import jax

        jax.distributed.initialize(argv[3], int(argv[4]), int(argv[5]),
                                   initialization_timeout=120)
    from ssm_jax import ConfigError, sweep

    def on_chunk(chunk_id: int) -> None:
        with open(log, "a") as f:
            f.write(f"{chunk_id}\n")
            f.flush()
            os.fsync(f.fileno())
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline and not os.path.exists(log + ".go"):
            time.sleep(0.02)

    try:
        sweep.run(make(), out, chunk_size=CHUNK_SIZE, progress=False, on_chunk=on_chunk,
                  wait_poll_s=0.1)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
