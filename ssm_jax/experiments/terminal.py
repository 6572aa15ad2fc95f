"""The terminal phase of cross-entropy: final neural-collapse geometry over decreasing
weight decay, for ERM and for power-law reweighting, against SELI (Thrampoulidis et al.
2022: as the decay vanishes both approach the same SELI geometry)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..metrics import majority_mask, minority_mask
from ..simulate import numeric_of, problem_of, spec_of, trajectory_jit


def terminal_phase(cfg: Config, weight_decays, gamma: float) -> dict:
    """Final geometry of CE runs (``cfg``'s counts, dim, init, lr, steps) at each weight decay,
    for ERM (gamma 0) and power weights ``gamma``, all in one vmapped call.

    Returns ``{label: {key: array (len(weight_decays), ...)}}`` with labels ``"erm"`` and
    ``"gamma=<gamma>"``, the keys of :func:`ssm_jax.geometry.metrics` plus ``norm_ratio``
    (mean majority over mean minority classifier norm)."""
    cfg = cfg.replace(loss="ce", parametrization="sample", weighting="power", geometry=True,
                      saves=2, keep_params=False)
    with jax.enable_x64(cfg.x64):
        spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
        decays = jnp.asarray(weight_decays, numeric.lr.dtype)
        m = len(weight_decays)
        gammas = jnp.concatenate([jnp.zeros(m), jnp.full(m, gamma)]).astype(decays.dtype)
        # Only weight decay and gamma vary across the batch.
        axes = jax.tree.map(lambda _: None, numeric)._replace(weight_decay=0, gamma=0)
        batch = numeric._replace(weight_decay=jnp.concatenate([decays, decays]), gamma=gammas)
        run = jax.vmap(lambda n: trajectory_jit(spec, problem, n, jax.random.PRNGKey(cfg.seed)),
                       in_axes=(axes,))
        geometry = jax.tree.map(lambda a: np.asarray(a)[:, -1], run(batch).geometry)
        counts = np.asarray(problem.counts)
    major, minor = majority_mask(counts), minority_mask(counts)
    out = {}
    for i, label in enumerate(("erm", f"gamma={gamma:g}")):
        g = {key: value[i * m:(i + 1) * m] for key, value in geometry.items()}
        norms = g["classifier_norm"]
        g["norm_ratio"] = norms[:, major].mean(axis=1) / norms[:, minor].mean(axis=1)
        out[label] = g
    return out
