"""Shared test helpers: float64 by default, per-dtype tolerances, one pytree comparison."""

from __future__ import annotations

import os

# Tests see one CPU device unless a test asks for more (multi-device tests run in a
# subprocess with their own XLA_FLAGS).
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Per-dtype default tolerances (rtol, atol).
TOLERANCES = {
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-10, 1e-12),
}


def tree_allclose(a, b, *, rtol: float | None = None, atol: float | None = None) -> None:
    """Assert two pytrees have the same structure and allclose leaves."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b, f"tree structures differ: {tree_a} vs {tree_b}"
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        default_rtol, default_atol = TOLERANCES.get(np.result_type(x, y), (1e-5, 1e-6))
        np.testing.assert_allclose(
            x, y,
            rtol=default_rtol if rtol is None else rtol,
            atol=default_atol if atol is None else atol,
            equal_nan=True,
        )


@pytest.fixture
def x64():
    """Run a test body in float64."""
    with jax.enable_x64(True):
        yield


def f64(x):
    return jnp.asarray(x, dtype=jnp.float64)
