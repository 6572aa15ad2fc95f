# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Differentiating through training
#
# A training run is a pure JAX function of its numeric options, so an outcome at the
# stopping time T (here the **balanced loss**, the mean over classes of the per-class
# loss, unweighted) can be differentiated with respect to the weighting exponent
# $\gamma$, the stopping time T itself, the imbalance ratio, the learning rate, ...
# (`ssm_jax.meta`, derivations in `docs/meta.md`). This notebook
#
# 1. takes those gradients and checks them against finite differences and a sweep,
# 2. draws the balanced loss over ($\gamma$, T): early on the best $\gamma$ is extreme;
#    later it settles near the equalising exponent,
# 3. learns $\gamma$, and then free per-class weights, by gradient descent through
#    training (optax).
#
# Default problem (5 + 5 classes, ratio 10, n_major 100), squared loss, GD with lr 4,
# float64.

# %%
import os

import ipywidgets as widgets
import jax
import matplotlib.pyplot as plt
import numpy as np

from ssm_jax import Config, class_counts_of, meta, metrics, sweep, theory
from ssm_jax.weights import class_weights

# %matplotlib inline

QUICK = os.environ.get("SSM_JAX_QUICK") == "1"  # CI: smaller problems, same story
T = 400.0  # stopping time: lr x steps
cfg = Config(loss="mse", weighting="power", gamma=0.5, lr=4.0, steps=int(T / 4.0), x64=True)
counts = np.array(class_counts_of(cfg), dtype=float)
major = metrics.majority_mask(counts)

# %% [markdown]
# ## Gradients at one point
#
# `meta.gradient` returns the objective at T and its gradient with respect to any of
# `meta.WRT`. `t1` is the stopping time (at fixed learning rate); `ratio` moves the class
# counts inside the weights and their normalisation.

# %%
out = meta.gradient(cfg, "balanced_loss", ("gamma", "t1", "ratio"))
print(f"balanced loss at T = {T:g}: {float(out.value):.5f}")
for name, value in out.gradient.items():
    print(f"  d/d{name:6s} {float(value): .6f}")

# %% [markdown]
# ## Checking the gradients
#
# `meta.value_and_grad` is pure, so one `vmap`-ed, compiled call gives the objective and
# its gradients on a whole grid of $\gamma$, plus the four shifted points of two
# central finite differences: in $\gamma$ ($\pm h$) and in T (`t_offset` $= \pm h$
# along the run's continuous-time interpolation).

# %%
gamma_grid = np.linspace(0.0, 1.5, 7 if QUICK else 31)
h, g0 = 1e-5, cfg.gamma
# the grid, then (g0, T), (g0 -+ h, T), (g0, T -+ h)
gammas = np.concatenate([gamma_grid, [g0, g0 - h, g0 + h, g0, g0]])
offsets = np.concatenate([np.zeros(len(gamma_grid) + 3), [-h, h]])

with jax.enable_x64(True):
    spec, problem, numeric, key, _ = meta.inputs_of(cfg)

    def at(gamma, offset):
        return meta.value_and_grad(spec, problem, numeric._replace(gamma=gamma), key,
                                   objective="balanced_loss", wrt=("gamma", "t1"),
                                   t_offset=offset)

    batch = jax.jit(jax.vmap(at))(gammas, offsets)
value = np.asarray(batch.value)
grad_gamma = np.asarray(batch.gradient["gamma"])
grad_t = np.asarray(batch.gradient["t1"])
n = len(gamma_grid)
fd_gamma = (value[n + 2] - value[n + 1]) / (2 * h)
fd_t = (value[n + 4] - value[n + 3]) / (2 * h)
print(f"dJ/dgamma: autodiff {grad_gamma[n]: .9f}   finite difference {fd_gamma: .9f}")
print(f"dJ/dT:     autodiff {grad_t[n]: .9f}   finite difference {fd_t: .9f}")
assert np.isclose(grad_gamma[n], fd_gamma, rtol=1e-6, atol=0)
assert np.isclose(grad_t[n], fd_t, rtol=1e-6, atol=0)
assert np.isclose(grad_gamma[n], out.gradient["gamma"], rtol=1e-10, atol=0)

# %% [markdown]
# ## The balanced loss over ($\gamma$, T), from a sweep
#
# The same runs, simulated past T and saved at every step (`ssm_jax.sweep`, in memory):
# the balanced loss at every stopping time and $\gamma$. At T it equals the values
# `meta` computed, and the tangents drawn with `meta`'s gradients touch the curve.

# %%
grid = sweep.run(sweep.make_sweep(cfg.replace(steps=2 * cfg.steps, saves=2 * cfg.steps + 1),
                                  {"gamma": list(gamma_grid)}), progress=False)
balanced = grid.per_class_loss.mean("class")  # (gamma, save)
t = grid.t.isel(gamma=0).values
at_t = int(np.argmin(np.abs(t - T)))
assert np.allclose(balanced.values[:, at_t], value[:n], rtol=1e-8)

fig, (curve, surface) = plt.subplots(1, 2, figsize=(11, 3.4))
curve.plot(gamma_grid, value[:n], "o-", label=f"J(gamma) at T = {T:g}")
for g, v, d in zip(gamma_grid, value[:n], grad_gamma[:n], strict=True):
    dg = 0.3 * (gamma_grid[1] - gamma_grid[0])
    curve.plot([g - dg, g + dg], [v - d * dg, v + d * dg], color="C3", lw=1)
curve.set(xlabel="gamma", ylabel="balanced loss", title="meta: values and tangents")
curve.legend(fontsize=8)
step = gamma_grid[1] - gamma_grid[0]
image = surface.imshow(balanced.values, aspect="auto", origin="lower", cmap="magma",
                       extent=(t[0], t[-1], gamma_grid[0] - step / 2,
                               gamma_grid[-1] + step / 2))
best = gamma_grid[balanced.values.argmin(axis=0)]
surface.plot(t, best, "c.", ms=2, label="best gamma at t")
surface.axvline(T, color="w", ls=":")
surface.axhline(theory.equalising_exponent("sample"), color="w", lw=0.8,
                label="equalising exponent")
surface.set(xlabel="stopping time t", ylabel="gamma", title="balanced loss")
surface.legend(fontsize=7, loc="upper right")
fig.colorbar(image, ax=surface)
fig.tight_layout()
plt.show()
print(f"best gamma on the grid at T = {T:g}: {gamma_grid[value[:n].argmin()]:.2f}")

# %% [markdown]
# ## Learning the weighting
#
# `meta.learn` runs Adam on $\gamma$ through training (each step differentiates the
# whole run), and then on free per-class weights $\omega \propto e^{\theta}$
# (normalised as usual), both started at $\gamma = 1/2$. The learned weights can be
# read as an effective exponent,
# $-\log(\omega_{min}/\omega_{maj}) / \log(n_{min}/n_{maj})$.

# %%
iterations = 8 if QUICK else 40
learned_gamma = meta.learn(cfg, "balanced_loss", learn="gamma", iterations=iterations,
                           learning_rate=0.1)
start = tuple(float(v) for v in class_weights(counts, "power", cfg.gamma))
# (explicit weights replace the power law: gamma goes back to its default, 0)
explicit = cfg.replace(weighting="explicit", gamma=0.0, weights=start)
learned_weights = meta.learn(explicit, "balanced_loss", learn="weights",
                             iterations=iterations, learning_rate=0.1)
w = learned_weights.learned
effective = -np.log(w[~major].mean() / w[major].mean()) / np.log(
    counts[~major].mean() / counts[major].mean())
print(f"learned gamma {float(learned_gamma.learned):.3f} "
      f"(balanced loss {learned_gamma.objective[0]:.4f} -> {learned_gamma.objective[-1]:.4f})")
print(f"learned weights {np.round(w, 3)}: effective exponent {effective:.3f} "
      f"(balanced loss {learned_weights.objective[0]:.4f} -> "
      f"{learned_weights.objective[-1]:.4f})")
print("equalising exponent of the sample parametrisation:",
      theory.equalising_exponent("sample"))
assert learned_gamma.objective[-1] <= learned_gamma.objective[0]
assert learned_weights.objective[-1] <= learned_weights.objective[0]

fig, (hist, weights) = plt.subplots(1, 2, figsize=(11, 3.2))
hist.plot(learned_gamma.objective, "o-", ms=3, label="learning gamma")
hist.plot(learned_weights.objective, "s-", ms=3, label="learning per-class weights")
hist.set(xlabel="meta-iteration", ylabel=f"balanced loss at T = {T:g}")
hist.legend(fontsize=8)
weights.bar(np.arange(len(w)), w, color=np.where(major, "C0", "C3"))
weights.set(xlabel="class", ylabel="learned weight", title="learned per-class weights")
fig.tight_layout()
plt.show()


# %% [markdown]
# ## Interactive: gamma and stopping time
#
# The sweep above already holds every ($\gamma$, t), so the sliders only select: the
# balanced loss over training for one $\gamma$, and over $\gamma$ at the chosen
# stopping time. The first cell is the static figure.

# %%
def explore(gamma=0.5, time=400.0):
    i = int(np.argmin(np.abs(t - time)))
    j = int(np.argmin(np.abs(gamma_grid - gamma)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(t, balanced.values[j], color="C0")
    left.axvline(t[i], color="0.4", ls=":")
    left.set(xlabel="time t", ylabel="balanced loss",
             title=f"gamma = {gamma_grid[j]:g}")
    right.plot(gamma_grid, balanced.values[:, i], "o-")
    right.axvline(gamma_grid[j], color="0.4", ls=":")
    right.set(xlabel="gamma", ylabel="balanced loss", title=f"stopped at t = {t[i]:g}")
    fig.tight_layout()
    plt.show()


explore()

# %%
_ = widgets.interact(
    explore,
    gamma=widgets.SelectionSlider(options=[float(g) for g in gamma_grid], value=0.5),
    time=widgets.FloatSlider(value=T, min=0, max=float(t[-1]), step=cfg.lr),
)

# %% [markdown]
# Next: [05_digits.ipynb](05_digits.ipynb) checks the model's predictions on real images
# with a small network.
