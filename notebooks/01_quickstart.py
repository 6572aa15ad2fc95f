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
# # 1. Quickstart: one imbalanced run, per-class learning curves, ERM vs reweighting
#
# The *unconstrained features model* (UFM) trains a classifier `W` (k x d) together with
# one free feature column per training example, `H` (d x n), on one-hot labels `Y`. With
# class imbalance every class is one singular mode of the label matrix, and its strength
# grows with the class size: gradient descent learns **the majority classes first and the
# minorities later**. Per-class loss weights $\omega_c \propto n_c^{-\gamma}$ change those
# strengths (Zhao & Thrampoulidis, arXiv 2601.12011).
#
# This notebook runs the simulator once, reads its per-class curves, and compares ERM
# with reweighting for both losses. Every number comes from `ssm_jax`; set
# `SSM_JAX_QUICK=1` for the small version that CI runs.

# %%
import functools
import os

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from ssm_jax import Config, metrics, plot, simulate

# %matplotlib inline

QUICK = os.environ.get("SSM_JAX_QUICK") == "1"  # CI: smaller problems, same story
N_MAJOR = 40 if QUICK else 100  # examples per majority class (minorities: / ratio)

# %% [markdown]
# ## One run
#
# Five majority classes of `N_MAJOR` examples and five minority classes ten times
# smaller; squared loss $\tfrac12\lVert z - y\rVert^2$, plain gradient descent with
# learning rate 4 for 300 steps from a small gaussian initialisation. Time is
# $t = \text{lr} \times \text{step}$. The power-law weighting with `gamma=0` is ERM (every
# weight is 1; `weighting="erm"` is the same run): keeping `gamma` a number lets the runs
# below reuse one compiled simulator.

# %%
cfg = Config(loss="mse", ratio=10, n_major=N_MAJOR, weighting="power", gamma=0.0)
result = simulate(cfg)
tr = result.trajectory
print("class counts      ", result.class_counts)
print("class weights     ", np.round(tr.weights, 3))
print("saved times       ", tr.t[:3], "...", tr.t[-1])
print("learn time (acc 1/2)", np.round(tr.learn_time, 1))
print("half time (z_c = 1/2)", np.round(tr.half_time, 1))

# %% [markdown]
# The trajectory holds, at every saved time, the per-class accuracy, the per-class loss
# and the *own output* $\bar z_c$ (the mean output of class c on its own examples).
# Majority classes (blue) are learned first, the minorities (red) several times later.

# %%
fig, (ax_acc, ax_own) = plt.subplots(1, 2, figsize=(10, 3.4))
plot.class_accuracy_panel(ax_acc, result, "ERM: per-class accuracy")
ax_acc.legend(loc="lower right", fontsize=8)
major = metrics.majority_mask(result.class_counts)
for c in range(len(result.class_counts)):
    ax_own.plot(tr.t, tr.own_output[:, c], color="C0" if major[c] else "C3", lw=1)
ax_own.set(xlabel="time t = lr x step", ylabel="own output", title="ERM: own outputs")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## ERM vs reweighting
#
# With $\omega_c \propto n_c^{-\gamma}$ (normalised so the mean per-example weight is 1),
# $\gamma = 1/2$ gives every class the same rate in this model; $\gamma = 1$ (inverse
# frequency) over-corrects, so the minorities come first. All runs start from the same
# initialisation (same seed).

# %%
gammas = (0.0, 0.5, 1.0)


def table(runs, title):
    print(title)
    print("  gamma  majority  minority  minority/majority (learn time)")
    for g, res in runs.items():
        times, major = res.trajectory.learn_time, metrics.majority_mask(res.class_counts)
        print(f"  {g:5.2f}  {times[major].mean():8.1f}  {times[~major].mean():8.1f}"
              f"  {metrics.delay_ratio(times, ~major):8.3f}")


mse_runs = {g: simulate(cfg.replace(gamma=g)) for g in gammas}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
for ax, (g, res) in zip(axes, mse_runs.items(), strict=True):
    plot.class_accuracy_panel(ax, res, f"squared loss, gamma = {g:g}")
axes[0].legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()
table(mse_runs, "squared loss")

# %% [markdown]
# ## Cross-entropy tells the same story
#
# The same runs with cross-entropy $\log\sum_j e^{z_j} - z_y$: near the origin its
# gradient is that of the squared loss on the centred labels, so the ordering (and what
# reweighting does to it) carries over.

# %%
ce_runs = {g: simulate(cfg.replace(loss="ce", gamma=g)) for g in gammas}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
for ax, (g, res) in zip(axes, ce_runs.items(), strict=True):
    plot.class_accuracy_panel(ax, res, f"cross-entropy, gamma = {g:g}")
axes[0].legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()
table(ce_runs, "cross-entropy")


# %% [markdown]
# ## Interactive: ratio, gamma, loss and time
#
# `show` reruns the simulator for the chosen imbalance ratio, weighting exponent and
# loss (the first run of a new ratio or loss compiles, a few seconds; the rest are
# cached), and marks the chosen time: the bars are the per-class accuracies at that
# time. The first cell draws the static figure; the second adds the sliders (they need
# a live kernel).

# %%
@functools.lru_cache(maxsize=32)
def run(loss, ratio, gamma):
    return simulate(cfg.replace(loss=loss, ratio=ratio, gamma=gamma))


def show(ratio=10.0, gamma=0.5, loss="mse", time=200.0):
    res = run(loss, float(ratio), float(gamma))
    tr = res.trajectory
    i = int(np.argmin(np.abs(tr.t - time)))
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(10, 3.3),
                                   gridspec_kw={"width_ratios": [2, 1]})
    plot.class_accuracy_panel(ax, res, f"{loss}, ratio {ratio:g}, gamma {gamma:g}")
    ax.axvline(tr.t[i], color="0.4", ls=":")
    major = metrics.majority_mask(res.class_counts)
    bars.bar(np.arange(len(major)), tr.per_class_accuracy[i],
             color=np.where(major, "C0", "C3"))
    bars.set(ylim=(0, 1.05), xlabel="class", title=f"accuracy at t = {tr.t[i]:g}")
    fig.tight_layout()
    plt.show()


show()

# %%
_ = widgets.interact(
    show,
    ratio=widgets.FloatLogSlider(value=10, base=10, min=0, max=2, step=0.25,
                                 continuous_update=False),
    gamma=widgets.FloatSlider(value=0.5, min=0, max=1.5, step=0.25,
                              continuous_update=False),
    loss=["mse", "ce"],
    time=widgets.FloatSlider(value=200, min=0, max=cfg.lr * cfg.steps, step=cfg.lr * 3),
)

# %% [markdown]
# Next: [02_paper_story.ipynb](02_paper_story.ipynb) explains *why*, from the label
# matrix's spectrum, with the closed-form trajectories on top of these simulations.
