"""Which power-law gamma minimises the balanced loss at an early stopping time T?

The measurement behind the table in docs/meta.md and the README. Default problem
(5 + 5 classes, n_major 100, ratio 10, d = 32, gaussian init std 1e-3), squared loss,
plain GD (lr 4; lr 0.4 for the ``class`` parametrisation, whose rates are 10x faster), for
each parametrisation and several T:

* ``grid``: the balanced loss (mean over classes of the per-class loss) at every T for
  gamma on a grid (-1 to 3, step 0.05), from one vmapped ``trajectory`` call per
  parametrisation (its save points are the stopping times), and the grid's argmin;
* ``meta``: ``ssm_jax.meta.learn`` (what ``ssm-jax meta --learn gamma`` runs): Adam on
  gamma through training, from gamma = 0.5, ``--iterations`` steps.

Writes JSON (after every row) and prints a markdown table. Usage::

    python benchmarks/meta_gamma_optimum.py [--iterations 60] [--json meta_gamma.json]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from ssm_jax import meta
from ssm_jax.config import Config
from ssm_jax.simulate import numeric_of, problem_of, spec_of, trajectory

SETTINGS = {  # parametrisation -> (lr, stopping times)
    "sample": (4.0, (200, 300, 400, 800)),
    "class": (0.4, (20, 30, 40, 80)),
    "whitened": (4.0, (200, 300, 400, 800)),
}
GAMMAS = np.round(np.arange(-1.0, 3.0001, 0.05), 4)


def grid_losses(parametrization: str, lr: float, times) -> np.ndarray:
    """Balanced loss (len(times), len(GAMMAS)) from one vmapped trajectory."""
    steps = int(round(max(times) / lr))
    cfg = Config(parametrization=parametrization, weighting="power", lr=lr, steps=steps,
                 saves=steps + 1)
    spec, problem, numeric = spec_of(cfg), problem_of(cfg), numeric_of(cfg)
    key = jax.random.PRNGKey(cfg.seed)
    run = jax.jit(jax.vmap(lambda g: trajectory(spec, problem, numeric._replace(gamma=g),
                                                key).per_class_loss))
    per_class = np.asarray(run(jnp.asarray(GAMMAS, numeric.gamma.dtype)))  # (g, s, k)
    index = [int(round(t / lr)) for t in times]
    return per_class[:, index, :].mean(axis=-1).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--meta-lr", type=float, default=0.05)
    parser.add_argument("--json", default="meta_gamma.json")
    args = parser.parse_args()
    rows = []
    print("| parametrisation | T | grid argmin gamma | meta-learned gamma | balanced loss at "
          "optimum | ERM | gamma = 1/2 | gamma = 1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for parametrization, (lr, times) in SETTINGS.items():
        losses = grid_losses(parametrization, lr, times)
        for t1, row_losses in zip(times, losses, strict=True):
            best = int(np.argmin(row_losses))
            cfg = Config(parametrization=parametrization, weighting="power", gamma=0.5, lr=lr)
            learned = meta.learn(cfg, "balanced_loss", "gamma", t1=float(t1),
                                 iterations=args.iterations, learning_rate=args.meta_lr)
            at = {g: float(row_losses[np.argmin(np.abs(GAMMAS - g))]) for g in (0.0, 0.5, 1.0)}
            row = {
                "parametrization": parametrization, "lr": lr, "t1": t1,
                "grid_gamma": float(GAMMAS[best]), "grid_loss": float(row_losses[best]),
                "meta_gamma": float(learned.learned), "meta_loss": float(learned.objective[-1]),
                "meta_start_loss": float(learned.objective[0]),
                "loss_erm": at[0.0], "loss_gamma_half": at[0.5], "loss_gamma_one": at[1.0],
                "grid_losses": row_losses.tolist(),
            }
            rows.append(row)
            print(f"| {parametrization} | {t1} | {row['grid_gamma']:.2f} | "
                  f"{row['meta_gamma']:.2f} | {min(row['grid_loss'], row['meta_loss']):.3g} | "
                  f"{at[0.0]:.3g} | {at[0.5]:.3g} | {at[1.0]:.3g} |", flush=True)
            with open(args.json, "w") as f:
                json.dump({"gammas": GAMMAS.tolist(), "iterations": args.iterations,
                           "meta_lr": args.meta_lr, "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
