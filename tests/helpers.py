"""Shared test helpers: per-dtype tolerances and one pytree comparison.

Test modules import these as ``from helpers import ...`` (``tests/`` is on pytest's
``pythonpath``); fixtures and process-wide setup stay in ``conftest.py``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

# Per-dtype default tolerances (rtol, atol), keyed by the promoted dtype of the two leaves
# compared, so one test body checks float32 and float64 runs each at its own precision.
TOLERANCES = {
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-10, 1e-12),
}


def tree_allclose(a, b, *, rtol: float | None = None, atol: float | None = None) -> None:
    """Assert two pytrees have the same structure and allclose leaves (NaNs compare equal).

    A leaf pair is compared at the ``TOLERANCES`` of its promoted dtype (float32's for any
    other dtype) unless ``rtol`` or ``atol`` is given. chex takes one tolerance per call,
    hence one call per leaf.
    """
    chex.assert_trees_all_equal_structs(a, b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        default_rtol, default_atol = TOLERANCES.get(
            np.result_type(x, y), TOLERANCES[np.dtype(np.float32)]
        )
        chex.assert_trees_all_close(
            x, y,
            rtol=default_rtol if rtol is None else rtol,
            atol=default_atol if atol is None else atol,
        )


def f64(x) -> jax.Array:
    """``x`` as a float64 array (inside ``jax.enable_x64``, else JAX truncates to float32)."""
    return jnp.asarray(x, dtype=jnp.float64)
