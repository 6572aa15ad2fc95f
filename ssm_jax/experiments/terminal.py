"""ERM against power-law reweighting in the terminal phase.

* Cross-entropy: final geometry over decreasing weight decay, against SELI (Thrampoulidis
  et al. 2022; as the decay vanishes ERM and reweighting approach the same SELI geometry):
  :func:`terminal_phase`.
* Squared loss: final own outputs over weight decay against the closed-form global
  minimiser and each class's collapse threshold (:func:`ssm_jax.theory.weight_decay_minimiser`):
  :func:`squared_loss_terminal`.
* Minority collapse (Fang et al. 2021) over training at one weight decay
  (:func:`minority_collapse`) and, at convergence, against the imbalance ratio
  (:func:`minority_collapse_ratios`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .. import model, theory
from ..config import Config
from ..geometry import class_means, minority_mean
from ..metrics import majority_mask, minority_mask
from ..problem import make_problem
from ..simulate import numeric_of, problem_of, spec_of, trajectory_jit
from .terminal_request import check_collapse_ratios, check_squared_loss_terminal


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
    cfg = cfg.adapted(loss="ce", parametrization="sample", weighting="power", geometry=True,
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
    cfg = cfg.adapted(weighting="power", geometry=True, keep_params=False)
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


def squared_loss_terminal(cfg: Config, weight_decays, gamma: float) -> dict:
    r"""Squared-loss runs (``cfg``'s counts, parametrisation, depth, init, method and length)
    at each weight decay, for ERM (gamma 0) and power weights ``gamma``, all in one vmapped
    call, against the closed-form global minimiser
    (:func:`ssm_jax.theory.weight_decay_minimiser`).

    Returns ``{label: {key: array}}`` with labels ``"erm"`` and ``"gamma=<gamma>"``; arrays
    over the weight decays (m,) or (m, k), or per class (k,):

    * the final geometry keys of :func:`ssm_jax.geometry.metrics` and ``norm_ratio``, as
      :func:`terminal_phase` (so the JSON keeps the cross-entropy keys);
    * ``own_output`` (m, k): simulated own output of each class at the end of the run;
      ``closed_form_own_output`` (m, k): at the global minimiser; ``own_output_gap`` (m,):
      the largest absolute difference over the classes;
    * ``objective`` (m,): the training objective at the end of the run;
      ``closed_form_objective`` (m,): its global minimum;
    * ``weights`` (k,): the normalised class weights omega_c; ``collapse_threshold`` (k,):
      the weight decay at which each class's own output reaches 0
      (:func:`ssm_jax.theory.collapse_threshold`); ``spinodal_threshold`` (k,): the decay
      beyond which a class has no nonzero stationary point (equal to the threshold at
      depth 1; above the threshold at depth >= 2, where a class can stay on a nonzero local
      minimum in between);
    * with ``cfg.init == "aligned"``: ``aligned_limit_own_output`` (m, k), where the
      gradient flow from the aligned initialisation with own output ``init_scale`` ends
      (:meth:`ssm_jax.theory.WeightDecayMinimiser.aligned_limit`): the global minimiser at
      depth 1; at depth >= 2 it keeps a class on its nonzero local minimum between the
      threshold and the spinodal, and sends a class that starts below its unstable root
      to 0.

    The runs reach the minimiser only when they are long enough: the own output of class c
    converges at rate about :math:`2|\sigma_c - \lambda|` at depth 1 (slowly near a
    threshold), and from a small gaussian init at depth >= 2 every class falls into the
    local minimum at 0 (the origin is a local minimum with weight decay)."""
    cfg = check_squared_loss_terminal(cfg)
    decays = np.asarray(weight_decays, dtype=np.float64)
    m = len(decays)
    runs, counts = _batched_runs(cfg, weight_decay=[*decays, *decays],
                                 gamma=[0.0] * m + [gamma] * m)
    major, minor = majority_mask(counts), minority_mask(counts)
    out = {}
    for i, label in enumerate(("erm", f"gamma={gamma:g}")):
        rows = slice(i * m, (i + 1) * m)
        g = {key: value[rows, -1] for key, value in runs.geometry.items()}
        norms = g["classifier_norm"]
        with np.errstate(divide="ignore", invalid="ignore"):
            g["norm_ratio"] = (norms[:, major].mean(axis=1) / norms[:, minor].mean(axis=1)
                               if minor.any() else np.ones(m))
        omega = np.asarray(runs.weights[i * m], dtype=np.float64)
        closed = theory.weight_decay_minimiser(counts, omega, decays, cfg.parametrization,
                                               cfg.depth)
        own = np.asarray(runs.own_output[rows, -1], dtype=np.float64)
        g.update(
            own_output=own,
            closed_form_own_output=closed.own_output,
            own_output_gap=np.max(np.abs(own - closed.own_output), axis=-1),
            objective=np.asarray(runs.loss[rows, -1], dtype=np.float64),
            closed_form_objective=closed.objective,
            weights=omega,
            collapse_threshold=closed.threshold,
            spinodal_threshold=closed.spinodal,
        )
        if cfg.init == "aligned":
            g["aligned_limit_own_output"] = closed.aligned_limit(cfg.init_scale)
        out[label] = g
    return out


def _structural_minority_mean(matrix, k_minor: int):
    """Mean of ``matrix[..., c, c']`` over distinct classes c != c' among the last
    ``k_minor`` (the minority block of the step profile, whatever the counts)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    k = matrix.shape[-1]
    minor = np.arange(k) >= k - k_minor
    pairs = minor[:, None] & minor[None, :] & ~np.eye(k, dtype=bool)
    return np.sum(np.where(pairs, matrix, 0.0), axis=(-2, -1)) / pairs.sum()


def minority_collapse_ratios(cfg: Config, ratios, gamma: float) -> dict:
    r"""Minority collapse against the imbalance ratio (Fang et al. 2021): ``cfg``'s run
    (step profile: ``k_major`` classes of ``n_major``, ``k_minor`` of
    ``round(n_major / R)``; its loss, weight decay, parametrisation, init, method and
    length) at every ratio R of ``ratios``, for ERM (gamma 0) and power weights ``gamma``,
    in one vmapped call over padded problems.

    The minority classes are the last ``k_minor`` classes at every ratio (at R = 1 they are
    the classes that become the minorities). Returns

    * ``ratios`` (r,) and ``k_minor``;
    * ``limit_minority_cosine`` (r,): the mean cosine between minority classifier rows in
      the vanishing-weight-decay limit of cross-entropy: SELI (:func:`ssm_jax.theory.seli`)
      in the ``sample`` parametrisation, the simplex ETF's -1/(k-1) in the ``class``
      parametrisation, where counts enter only as loss weights;
    * ``runs``: ``{label: {...}}`` with labels ``"erm"`` and ``"gamma=<gamma>"`` and, per
      ratio, ``class_counts`` (r, k), ``minority_cosine`` (r,) (the mean cosine between
      distinct minority classifier rows at the end of the run; the geometry key
      ``minority_cosine`` wherever R > 1), ``minority_feature_cosine_centred`` (r,) (the
      same mean over the centred class means, ``feature_cosine_centred``) and
      ``minority_cosine_midway`` (r,) (``minority_cosine`` at half the run: a convergence
      check).

    Needs ``cfg.profile == "step"`` without explicit counts and ``k_minor >= 2``
    (:func:`check_collapse_ratios`)."""
    configs = check_collapse_ratios(cfg, ratios)
    ratios = [c.ratio for c in configs]
    base = configs[0]
    counts = [c.class_counts for c in configs]
    n_pad = max(sum(c) for c in counts)
    labels = ("erm", f"gamma={gamma:g}")
    with jax.enable_x64(cfg.x64):
        spec, numeric = spec_of(base), numeric_of(base)
        dtype = numeric.lr.dtype
        problems = [make_problem(c, n_pad, dtype) for c in counts]
        batch_problem = jax.tree.map(lambda *a: jnp.stack(a), *(problems * 2))
        gammas = jnp.asarray([0.0] * len(ratios) + [gamma] * len(ratios), dtype)
        axes = jax.tree.map(lambda _: None, numeric)._replace(gamma=0)
        run = jax.vmap(lambda p, n: trajectory_jit(spec, p, n, jax.random.PRNGKey(cfg.seed)),
                       in_axes=(0, axes))
        runs = jax.tree.map(np.asarray, run(batch_problem, numeric._replace(gamma=gammas)))
    k = len(counts[0])
    if cfg.parametrization == "class":
        limit = np.full(len(ratios), -1.0 / (k - 1))
    else:
        limit = np.array([_structural_minority_mean(theory.seli(c).classifier_cosines,
                                                    cfg.k_minor) for c in counts])
    out = {"ratios": np.asarray(ratios), "k_minor": cfg.k_minor,
           "limit_minority_cosine": limit, "runs": {}}
    m = len(ratios)
    # Cosines of the kept parameters at half the run and at its end (the same definitions
    # as the geometry keys classifier_cosine and feature_cosine_centred).
    one = functools.partial(_final_cosines, parametrization=cfg.parametrization)
    cosines = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None, None))))
    with jax.enable_x64(cfg.x64):
        params = jax.tree.map(lambda a: jnp.asarray(a[:, 1:]), runs.params)
        classifier, features = map(np.asarray, cosines(params, batch_problem,
                                                       jnp.asarray(runs.weights)))
    for i, label in enumerate(labels):
        rows = slice(i * m, (i + 1) * m)
        out["runs"][label] = {
            "class_counts": np.asarray(counts),
            "minority_cosine": _structural_minority_mean(classifier[rows, -1], cfg.k_minor),
            "minority_feature_cosine_centred": _structural_minority_mean(
                features[rows, -1], cfg.k_minor),
            "minority_cosine_midway": _structural_minority_mean(classifier[rows, 0],
                                                                cfg.k_minor),
        }
    return out


def _final_cosines(params, problem, omega, parametrization: str):
    """Cosine matrices (k, k) of the classifier rows and of the class means of the
    penultimate features centred by their unweighted mean (``classifier_cosine``,
    ``feature_cosine_centred`` of :mod:`ssm_jax.geometry`)."""
    feats = model.penultimate(params, model.features(params, problem, omega, parametrization))
    means = class_means(feats, problem)
    centred = means - jnp.mean(means, axis=1, keepdims=True)

    def cosines(rows):
        norms = jnp.linalg.norm(rows, axis=1)
        unit = rows / jnp.where(norms > 0, norms, 1.0)[:, None]
        return unit @ unit.T

    return cosines(params["W"]), cosines(centred.T)
