"""ERM against power-law reweighting in the neural-collapse geometry: the terminal phase of
cross-entropy (final geometry over decreasing weight decay, against SELI: Thrampoulidis et
al. 2022, as the decay vanishes both approach the same SELI geometry), and minority
collapse over training at one weight decay (Fang et al. 2021)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..geometry import minority_mean
from ..metrics import majority_mask, minority_mask
from ..simulate import numeric_of, problem_of, spec_of, trajectory_jit


def _batched_runs(cfg: Config, **values):
    """``cfg``'s run in one vmapped call over equal-length sequences of numeric options
    (e.g. ``weight_decay=[...], gamma=[...]``): the batched Trajectory as numpy arrays, and
    the class counts."""
    with jax.enable_x64(cfg.x64):
        spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
        batch = numeric._replace(**{name: jnp.asarray(value, numeric.lr.dtype)
                                    for name, value in values.items()})
        # Only the given options vary across the batch.
        axes = jax.tree.map(lambda _: None, numeric)._replace(**dict.fromkeys(values, 0))
        run = jax.vmap(lambda n: trajectory_jit(spec, problem, n, jax.random.PRNGKey(cfg.seed)),
                       in_axes=(axes,))
        return jax.tree.map(np.asarray, run(batch)), np.asarray(problem.counts)


def terminal_phase(cfg: Config, weight_decays, gamma: float) -> dict:
    """Final geometry of CE runs (``cfg``'s counts, dim, init, lr, steps) at each weight decay,
    for ERM (gamma 0) and power weights ``gamma``, all in one vmapped call.

    Returns ``{label: {key: array (len(weight_decays), ...)}}`` with labels ``"erm"`` and
    ``"gamma=<gamma>"``, the keys of :func:`ssm_jax.geometry.metrics` plus ``norm_ratio``
    (mean majority over mean minority classifier norm)."""
    cfg = cfg.replace(loss="ce", parametrization="sample", weighting="power", geometry=True,
                      saves=2, keep_params=False)
    m = len(weight_decays)
    runs, counts = _batched_runs(cfg, weight_decay=[*weight_decays, *weight_decays],
                                 gamma=[0.0] * m + [gamma] * m)
    geometry = {key: value[:, -1] for key, value in runs.geometry.items()}
    major, minor = majority_mask(counts), minority_mask(counts)
    out = {}
    for i, label in enumerate(("erm", f"gamma={gamma:g}")):
        g = {key: value[i * m:(i + 1) * m] for key, value in geometry.items()}
        norms = g["classifier_norm"]
        g["norm_ratio"] = norms[:, major].mean(axis=1) / norms[:, minor].mean(axis=1)
        out[label] = g
    return out


def minority_collapse(cfg: Config, gamma: float) -> dict:
    """Minority collapse over training (Fang et al. 2021): ``cfg``'s run for ERM (gamma 0)
    and for power weights ``gamma`` (one vmapped call), at ``cfg``'s loss and weight decay.

    Returns ``{label: {"t", "minority_cosine", "minority_feature_cosine_centred",
    "feature_cosine_centred"}}`` with labels ``"erm"`` and ``"gamma=<gamma>"``, arrays over
    the save points: the mean cosine between distinct minority classifier rows, the same
    mean of the centred class-mean cosines, and the full centred cosine matrices (s, k, k).
    Under a fixed weight decay ERM's minority cosines head towards 1 as the imbalance grows;
    the simplex ETF has -1/(k-1)."""
    cfg = cfg.replace(weighting="power", geometry=True, keep_params=False)
    runs, counts = _batched_runs(cfg, gamma=[0.0, gamma])
    out = {}
    for i, label in enumerate(("erm", f"gamma={gamma:g}")):
        centred = runs.geometry["feature_cosine_centred"][i]
        out[label] = {
            "t": runs.t[i],
            "minority_cosine": runs.geometry["minority_cosine"][i],
            "minority_feature_cosine_centred": np.asarray(minority_mean(centred, counts)),
            "feature_cosine_centred": centred,
        }
    return out
