"""A float64 reference set: 27 small runs that pin the package's numbers.

Each case is a name and a function of no arguments returning a flat ``{key: array}`` record.
The cases use only the public API that outlives internal reorganisations: ``Config``,
``simulate`` (:class:`~ssm_jax.simulate.Result` and its JSON dict), ``sweep.make_sweep`` +
``sweep.run`` (the Dataset's variables) and ``meta.gradient``. Between them they cover
every loss, method, flow solver, parametrisation, weighting and profile, bias, weight
decay, depth, aligned init, the reduced simulator on and off, geometry, kept parameters,
divergence, sweeps and meta-gradients.

``tests/test_reference.py`` recomputes every case and compares it with
``tests/data/reference.npz``; ``python tests/reference_cases.py`` rewrites that file
(do so only for an intended, explained numerical change).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from ssm_jax import Config, meta, simulate, sweep

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "reference.npz")

# Four classes (2 x 20 + 2 x 5 examples), d = 8, 40 steps saved 11 times: milliseconds a run
# (a case costs its compilation, 3-10 s), yet long enough for the classes to be learned at
# different times.
BASE = Config(k_major=2, k_minor=2, n_major=20, ratio=4.0, dim=8, steps=40, saves=11,
              x64=True)
CE = BASE.replace(loss="ce", lr=2.0, init_scale=0.1)
# Explicit counts replace the step profile: its shape options go back to their defaults
# (they had no effect beside counts, and setting them is refused).
STEP_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)
                 if f.name in ("k_major", "k_minor", "n_major", "ratio")}

Record = dict[str, np.ndarray]


def _flatten(prefix: str, value, record: Record) -> None:
    """``record[prefix] = array(value)``, recursing into dicts (``prefix.key``). JSON's
    ``None`` (a NaN, an infinity or an absent optional number) is stored as NaN."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, record)
    elif value is None:
        record[prefix] = np.asarray(np.nan)
    else:
        record[prefix] = np.asarray(value)


def simulated(cfg: Config) -> Record:
    """Every key of ``simulate(cfg).to_dict()`` except the configuration echo.

    A key that is also a trajectory field is read from the trajectory, which keeps NaN,
    infinities and -1 (no divergence) that JSON turns into ``None``."""
    result = simulate(cfg)
    record: Record = {}
    for key, value in result.to_dict().items():
        if key == "config":
            continue
        raw = getattr(result.trajectory, key, None)
        _flatten(key, value if raw is None else raw, record)
    return record


def swept(base: Config, axes: dict, seeds: int) -> Record:
    """Every variable (data and coordinates) of the Dataset of a sweep run in memory."""
    ds = sweep.run(sweep.make_sweep(base, axes, seeds=seeds), progress=False)
    return {name: np.asarray(ds[name].values) for name in ds.variables}


def gradient(cfg: Config, objective: str, wrt: tuple[str, ...], t1: float | None = None
             ) -> Record:
    """Value, divergence step and gradient of a meta-objective."""
    out = meta.gradient(cfg, objective, wrt=wrt, t1=t1)
    record: Record = {"value": np.asarray(out.value),
                      "diverged_step": np.asarray(out.diverged_step)}
    _flatten("gradient", dict(out.gradient), record)
    return record


def _run(cfg: Config) -> Callable[[], Record]:
    return lambda: simulated(cfg)


FLOW = BASE.replace(method="flow", lr=1.0, rtol=1e-7, atol=1e-10)
# With t1 given the flow ends at t1 and steps is refused (no effect): at its default, 300,
# the save grid t1 x save_steps(steps, 11) / steps is the one of steps=40.
FLOW_T1 = FLOW.replace(steps=300)

# Options that select code are combined, so that about 20 compilations cover them all; a
# case that only changes numeric fields (weight decay, lr, seed) reuses one of them.
CASES: dict[str, Callable[[], Record]] = {
    # the reduced simulator and the per-example path on one configuration
    "mse_reduced_on": _run(BASE.replace(reduced="on")),
    "mse_reduced_off": _run(BASE.replace(reduced="off")),
    "mse_reduced_weight_decay": _run(BASE.replace(reduced="on", weight_decay=1e-2, seed=1)),
    "mse_diverged": _run(BASE.replace(reduced="on", lr=30.0)),
    # losses and weightings
    "ce_gd": _run(CE),
    "ce_weight_decay": _run(CE.replace(weight_decay=1e-2, seed=3)),
    "la_power": _run(CE.replace(loss="la", tau=1.5, weighting="power", gamma=0.5)),
    "la_power_tau": _run(CE.replace(loss="la", tau=0.5, weighting="power", gamma=1.0)),
    "vs_effective": _run(CE.replace(loss="vs", tau=0.5, vs_gamma=0.3, weighting="effective",
                                    beta=0.9)),
    "ce_explicit_bias": _run(CE.replace(weighting="explicit", weights=(1.0, 0.5, 2.0, 3.0),
                                        bias=True)),
    # methods and parametrisations
    "mse_momentum_whitened": _run(BASE.replace(method="momentum", lr=0.5, momentum=0.8,
                                               parametrization="whitened",
                                               weighting="power", gamma=0.5)),
    "ce_adam": _run(CE.replace(method="adam", lr=0.02)),
    "ce_specgd": _run(CE.replace(method="specgd", lr=0.1)),
    "ce_muon_class": _run(CE.replace(method="muon", lr=0.05, parametrization="class")),
    "mse_flow_tsit5": _run(FLOW),
    "mse_flow_t1": _run(FLOW_T1.replace(t1=12.5, seed=2)),
    "ce_flow_dopri5_stop": _run(FLOW_T1.replace(loss="ce", init_scale=0.1, solver="dopri5",
                                             t1=200.0, stop_metric="balanced_accuracy",
                                             stop_at=0.9)),
    # profiles, init, depth
    "ce_longtail": _run(CE.replace(profile="longtail", ratio=6.0)),
    "mse_counts_aligned": _run(BASE.replace(**STEP_DEFAULTS, profile="counts",
                                            counts=(20, 12, 6, 3), weighting="power",
                                            gamma=1.0, init="aligned", init_scale=0.05)),
    "ce_depth2": _run(CE.replace(depth=2)),
    # recorded extras
    "ce_geometry_params": _run(CE.replace(geometry=True, keep_params=True)),
    # sweeps
    "sweep_mse_reduced": lambda: swept(BASE.replace(weighting="power", reduced="on"),
                                       {"ratio": [2.0, 4.0], "gamma": [0.0, 1.0]}, seeds=2),
    "sweep_ce": lambda: swept(CE.replace(weighting="power"),
                              {"lr": [1.0, 2.0], "gamma": [0.0, 0.5]}, seeds=2),
    # meta-gradients
    "grad_gamma_t1": lambda: gradient(BASE.replace(weighting="power", gamma=0.5),
                                      "balanced_loss", ("gamma", "t1"), t1=120.0),
    "grad_gamma_t1_flow": lambda: gradient(FLOW_T1.replace(loss="ce", init_scale=0.1,
                                                        weighting="power", gamma=0.5),
                                           "minority_loss", ("gamma", "t1"), t1=30.0),
    "grad_ratio": lambda: gradient(CE.replace(loss="la", weighting="power", gamma=0.5),
                                   "balanced_loss", ("ratio",)),
    "grad_weights_gap": lambda: gradient(CE.replace(weighting="explicit",
                                                    weights=(1.0, 1.0, 2.0, 2.0)),
                                         "own_output_gap", ("weights", "lr")),
}


def compute_all() -> dict[str, np.ndarray]:
    """Every case, flattened to ``case/key`` (the keys of ``reference.npz``)."""
    return {f"{case}/{key}": value for case, make in CASES.items()
            for key, value in make().items()}


if __name__ == "__main__":
    os.makedirs(os.path.dirname(DATA), exist_ok=True)
    np.savez_compressed(DATA, **compute_all())
    print(f"wrote {DATA} ({os.path.getsize(DATA)} bytes, {len(CASES)} cases)")
