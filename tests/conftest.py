"""Test setup and fixtures; shared assertion helpers live in ``helpers.py``."""

from __future__ import annotations

import os

# Tests see one CPU device unless a test asks for more (multi-device tests run in a
# subprocess with their own XLA_FLAGS).
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test body in float64."""
    with jax.enable_x64(True):
        yield
