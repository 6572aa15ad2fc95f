"""Test setup and fixtures; shared assertion helpers live in ``helpers.py``."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
# The persistent compilation cache goes to a folder of this session, never the user's
# (subprocesses inherit it; those of test_sweep.py choose their own through JAX's variable).
_CACHE = tempfile.TemporaryDirectory(prefix="ssm-jax-test-cache-")
os.environ["SSM_JAX_CACHE_DIR"] = _CACHE.name

import jax  # noqa: E402
import pytest  # noqa: E402

# Tests see one CPU device unless a test asks for more (multi-device tests run in a
# subprocess, where ssm_jax's default of one device per core, or their XLA_FLAGS, applies).
jax.config.update("jax_num_cpu_devices", 1)


@pytest.fixture
def x64():
    """Run a test body in float64."""
    with jax.enable_x64(True):
        yield
