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
# # 5. Real data: imbalanced digits beside the small-scale model
#
# Do the UFM's predictions survive a real network on real images? `ssm_jax.experiments.digits`
# trains an MLP (64-128-64-10, ReLU; its last hidden layer plays the UFM's features `H`,
# its last layer the classifier `W`) on scikit-learn's bundled 8x8 handwritten digits
# (no download), with digits 5-9 made ten times rarer in training and a balanced test
# set. Recipes: ERM, $\gamma = 1/2$, $\gamma = 1$, logit adjustment, class-balanced
# resampling, deferred re-weighting (DRW), re-weighting then ERM, LDAM and LDAM-DRW
# (`digits.RECIPES`). Beside it (`digits.bridge`), UFM runs with the same class counts
# and recipes, and the UFM's closed-form delays $r^{1/2-\gamma}$ (`sample`: a free
# feature per example) and $r^{1-\gamma}$ (`class`: one feature per class). Details and
# full-size numbers:
# `docs/digits.md` (the command `ssm-jax digits` runs the same experiment).

# %%
import os
import shutil
import tempfile

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from ssm_jax import plot, theory
from ssm_jax.experiments import digits

# %matplotlib inline

QUICK = os.environ.get("SSM_JAX_QUICK") == "1"  # CI: smaller problems, same story
if QUICK:  # fewer steps and seeds (the test suite's quick setting)
    cfg = digits.DigitsConfig(steps=150, warmup=50, checkpoints=31, seeds=2,
                              ufm_steps=1500)
else:
    cfg = digits.DigitsConfig()
data = digits.load_data(cfg)
print("training counts per digit:", data.train_counts)
print("test counts per digit:    ", data.test_counts)

# %%
fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for c in range(10):
    rows = np.flatnonzero(data.y_train == c)[:2]
    for r, row in enumerate(rows):
        axes[r, c].imshow(data.x_train[row].reshape(8, 8), cmap="gray_r")
    axes[0, c].set_title(f"{c}: n={data.train_counts[c]}", fontsize=8,
                         color="C3" if c in cfg.minority else "C0")
for ax in axes.flat:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Train every recipe and seed
#
# One jitted call trains all runs (full batch, SGD with momentum, warm-up); the report
# gives test accuracy early (end of warm-up) and at the end, and the minority/majority
# delay: the time for the training loss of a class to fall to $\log(k)/2$.

# %%
result = digits.run_digits(cfg)
digits.print_report(result)

# %% [markdown]
# The library's summary figure (top: balanced test accuracy; ERM's network loss curves
# with the UFM's on the network's clock; the delays. Below: majority and minority test
# accuracy per recipe).

# %%
folder = tempfile.mkdtemp(prefix="ssm-jax-digits-")
figure = os.path.join(folder, "digits.png")
plot.digits_figure(result, figure)
display(Image(filename=figure))

# %% [markdown]
# Balanced test accuracy of every recipe, with seed bands: the recipes that switch their
# weights (right) follow ERM or $\gamma = 1$ until the switch (dotted), and the one in
# effect afterwards from then on.

# %%
figure = os.path.join(folder, "digits_recipes.png")
plot.digits_recipes_figure(result, figure)
display(Image(filename=figure))

# %% [markdown]
# ## The delay beside the model's prediction
#
# The delay against $\gamma$ on a log scale: the network (mean and spread over seeds),
# the simulated UFMs, and the closed forms. The per-example UFM predicts that
# $\gamma = 1/2$ equalises (`theory.equalising_exponent("sample")`); the network
# behaves like the per-class UFM, whose equalising exponent is 1
# (`theory.equalising_exponent("class")`): the images of one class move together.

# %%
summary = digits.bridge_summary(result.bridge)
ratio = summary["ratio"]
names = [n for n in cfg.weightings  # the power laws
         if n in digits.WEIGHTINGS and not digits.WEIGHTINGS[n][1]]
gammas = np.array([digits.WEIGHTINGS[n][0] for n in names])
network = np.array([summary["weightings"][n]["network_delay"] for n in names])
grid = np.linspace(0, 1.2, 50)

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.errorbar(gammas, network[:, 0], yerr=network[:, 1], fmt="ko", capsize=3,
            label="network (loss criterion)")
for p, color in (("sample", "C2"), ("class", "C1")):
    ufm = [summary["weightings"][n]["ufm_delay"][p] for n in names]
    ax.plot(gammas, ufm, "s", color=color, label=f"UFM {p} (simulated)")
    closed = [digits.closed_form_delay(ratio, g, p) for g in grid]
    ax.plot(grid, closed, color=color, lw=1,
            label=f"closed form, equalising gamma {theory.equalising_exponent(p):g}")
ax.axhline(1, color="0.5", lw=0.8)
ax.set(yscale="log", xlabel="gamma", ylabel="minority / majority learning time",
       title=f"ratio r = {ratio:g}")
ax.legend(fontsize=7)
plt.show()
exponents = summary["exponent"]
print("fitted p in delay = r^(p - gamma):",
      {k: round(v, 3) for k, v in exponents.items()})

# %% [markdown]
# ## Interactive: weighting and time
#
# The sliders pick a recipe and a checkpoint: per-digit test accuracy of the network
# (mean over seeds) at that time. The first cell is the static figure.

# %%
times = cfg.checkpoint_times()
minority = result.minority_mask
early_time = float(times[cfg.early_index()])


def at_time(weighting="erm", time=early_time):
    w = list(cfg.weightings).index(weighting)
    i = int(np.argmin(np.abs(times - time)))
    accuracy = result.recorded["test_per_class_accuracy"][w][:, i].mean(axis=0)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(np.arange(10), accuracy, color=np.where(minority, "C3", "C0"))
    ax.set(ylim=(0, 1.05), xlabel="digit (red: minority)", ylabel="test accuracy",
           title=f"{weighting}, time {times[i]:.3g} (step {cfg.checkpoint_steps()[i]})")
    plt.show()


at_time()

# %%
_ = widgets.interact(
    at_time,
    weighting=list(cfg.weightings),
    time=widgets.SelectionSlider(options=[float(t) for t in times], value=early_time),
)

# %%
shutil.rmtree(folder, ignore_errors=True)
