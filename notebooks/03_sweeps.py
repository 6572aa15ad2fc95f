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
# # 3. Sweeps: the minority delay over (ratio, $\gamma$) and early stopping
#
# A sweep is the Cartesian product of lists of options. `ssm_jax.sweep` runs every
# group of runs that share a compiled function as one `vmap`-ed call (different ratios
# are padded to a common number of examples), writes finished chunks so an interrupted
# sweep resumes, and assembles a labelled `xarray.Dataset` in a netCDF file. The command
# line does the same:
#
# ```bash
# ssm-jax sweep --ratio 1,2,5,10,20,50,100 --weighting power --gamma 0,0.5,1 --seeds 8 \
#     --out sweep.nc
# ssm-jax plot sweep.nc
# ```
#
# Here we run a small sweep into a temporary folder and load it back with
# `ssm_jax.sweep.load`, as you would a saved sweep.

# %%
import os
import shutil
import tempfile

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from ssm_jax import Config, metrics, plot, sweep, theory

# %matplotlib inline

QUICK = os.environ.get("SSM_JAX_QUICK") == "1"  # CI: smaller problems, same story
if QUICK:
    axes = {"loss": ["mse", "ce"], "ratio": [2, 5, 10], "gamma": [0.0, 0.5, 1.0]}
    seeds, n_major = 2, 20
else:
    axes = {"loss": ["mse", "ce"], "ratio": [1, 2, 5, 10, 20, 50],
            "gamma": [0.0, 0.25, 0.5, 0.75, 1.0]}
    seeds, n_major = 3, 50
base = Config(weighting="power", n_major=n_major, lr=4.0, steps=300, saves=101)
plan = sweep.make_sweep(base, axes, seeds=seeds)
print(plan.size, "runs over", dict(zip(plan.dims, plan.shape, strict=True)))

# %%
folder = tempfile.mkdtemp(prefix="ssm-jax-notebook-")
path = os.path.join(folder, "sweep.nc")
sweep.run(plan, path, progress=False)  # resumable: rerunning finishes missing chunks
ds = sweep.load(path)
display(ds)

# %% [markdown]
# ## The data
#
# One dimension per swept option (`loss_fn` for the loss: `loss` is a variable), then
# `save` and `class`. `t` is a coordinate over the runs and save points (it depends on
# the learning rate), `sweep.config_of` rebuilds the `Config` of any run.

# %%
one = ds.sel(loss_fn="mse", ratio=10, gamma=0.5, seed=0)
print("learn times:", np.round(one.learn_time.values, 1))
print("final balanced accuracy:", float(one.balanced_accuracy[-1]))
print(sweep.config_of(ds, loss="mse", ratio=10, gamma=0.5, seed=0))

# %% [markdown]
# ## Phase diagram of the minority delay
#
# `sweep.delay_ratio` is the mean learn time (accuracy reaches 1/2) of the minority
# classes over that of the majorities, per run; the heat map shows its median over seeds
# (red: minorities later; blue: earlier; grey: a class never learned or no minority). The
# delay grows with the ratio under ERM and flips sign past the equalising exponent
# ($\gamma = 1/2$ for this parametrisation, `theory.equalising_exponent("sample")`).

# %%
print("equalising gamma (sample parametrisation):", theory.equalising_exponent("sample"))
fig = plot.delay_heatmap(ds)
plt.show()
fig = plot.delay_heatmap(ds, time="half_time")
plt.show()

# %% [markdown]
# ## Early-stopped balanced accuracy over (time, $\gamma$)
#
# Balanced accuracy (mean of the per-class accuracies) if training is stopped at time
# t. Reweighting wins early; by the end every weighting has fitted every class, so the
# advantage of reweighting is an early-stopping one. The right panel gives the best
# $\gamma$ at each stopping time.

# %%
ratio = 10
for loss in axes["loss"]:
    acc = ds.balanced_accuracy.sel(loss_fn=loss, ratio=ratio).mean("seed")
    t = ds.t.sel(loss_fn=loss, ratio=ratio, gamma=acc.gamma[0]).isel(seed=0).values
    gam = acc.gamma.values
    fig, (heat, best) = plt.subplots(1, 2, figsize=(11, 3.2))
    image = heat.imshow(acc.values, aspect="auto", origin="lower", vmin=0, vmax=1,
                        extent=(t[0], t[-1], -0.5, len(gam) - 0.5), cmap="viridis")
    heat.set_yticks(range(len(gam)), [f"{g:g}" for g in gam])
    heat.set(xlabel="stopping time t", ylabel="gamma",
             title=f"{loss}, ratio {ratio}: balanced accuracy")
    fig.colorbar(image, ax=heat)
    best.plot(t, gam[acc.values.argmax(axis=0)], "k.-", ms=3)
    best.set(xlabel="stopping time t", ylabel="best gamma", title="best gamma at time t")
    fig.tight_layout()
    plt.show()
fig = plot.accuracy_over_time(ds.sel(loss_fn="mse"))
plt.show()


# %% [markdown]
# ## Interactive: ratio, gamma, loss and time
#
# Everything is already computed, so the sliders only select from the Dataset: the
# per-class accuracy curves of one run, and the balanced accuracy against $\gamma$ when
# stopping at the chosen time. The first cell is the static figure.

# %%
def explore(ratio=10, gamma=0.5, loss="mse", time=200.0):
    sel = ds.sel(loss_fn=loss, ratio=ratio).mean("seed")
    t = ds.t.sel(loss_fn=loss, ratio=ratio).isel(seed=0, gamma=0).values
    i = int(np.argmin(np.abs(t - time)))
    run = sel.sel(gamma=gamma)
    major = metrics.majority_mask(run.class_counts.values)
    fig, (curves, at) = plt.subplots(1, 2, figsize=(10, 3.2))
    for c in range(len(major)):
        curves.plot(t, run.per_class_accuracy.values[:, c],
                    color="C0" if major[c] else "C3", lw=1)
    curves.axvline(t[i], color="0.4", ls=":")
    curves.set(xlabel="time t", ylabel="per-class accuracy",
               title=f"{loss}, ratio {ratio:g}, gamma {gamma:g} (seed mean)")
    at.plot(sel.gamma, sel.balanced_accuracy.values[:, i], "o-")
    at.set(xlabel="gamma", ylabel="balanced accuracy", ylim=(-0.03, 1.03),
           title=f"stopped at t = {t[i]:g}")
    fig.tight_layout()
    plt.show()


explore(ratio=axes["ratio"][-1], gamma=axes["gamma"][0])

# %%
_ = widgets.interact(
    explore,
    ratio=widgets.SelectionSlider(options=list(ds.ratio.values), value=axes["ratio"][-1]),
    gamma=widgets.SelectionSlider(options=list(ds.gamma.values), value=axes["gamma"][0]),
    loss=list(ds.loss_fn.values),
    time=widgets.FloatSlider(value=200, min=0, max=float(ds.t.max()), step=base.lr * 3),
)

# %% [markdown]
# The temporary folder is removed at the end; for your own sweeps keep the `.nc` file
# (it is the whole result) and reopen it with `sweep.load(path)`.

# %%
shutil.rmtree(folder, ignore_errors=True)
