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
# # 2. The paper's story, reproduced
#
# Zhao & Thrampoulidis (arXiv 2601.12011) explain why loss reweighting helps *if you stop
# early*. In the unconstrained features model the gradient flow learns the singular modes
# of the (weighted) label matrix one by one, at rates set by their singular values:
#
# 1. the label-matrix spectrum, and how the class weights change it;
# 2. ERM learns the majorities first; reweighting learns the classes together;
# 3. the closed-form trajectories on top of the simulated ones;
# 4. which $\gamma$ equalises the classes, for each parametrisation;
# 5. the terminal phase: the squared loss interpolates, and cross-entropy heads to the
#    SELI geometry whatever the weights, so reweighting matters only early.
#
# Theory comes from `ssm_jax.theory` (derivations in `docs/theory.md`), simulations from
# `ssm_jax.simulate` and `ssm_jax.sweep`.

# %%
import os

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from ssm_jax import Config, class_counts_of, metrics, plot, problem_of, simulate, sweep, theory
from ssm_jax.experiments.terminal import minority_collapse
from ssm_jax.geometry import class_means
from ssm_jax.weights import class_weights

# %matplotlib inline

QUICK = os.environ.get("SSM_JAX_QUICK") == "1"  # CI: smaller problems, same story
N_MAJOR = 40 if QUICK else 100
base = Config(ratio=10, n_major=N_MAJOR, weighting="power")
counts = np.array(class_counts_of(base))
major = metrics.majority_mask(counts)
gammas = (0.0, 0.5, 1.0)
omegas = {g: np.asarray(class_weights(counts, "power", g)) for g in gammas}
print("class counts", counts)

# %% [markdown]
# ## 1. The label matrix and its spectrum
#
# With per-example weights, gradient flow on the squared loss is driven by the weighted
# label matrix $Y\Omega$ (k x n, column i is $\omega_{y_i} e_{y_i}$). Its singular
# values are $s_c = \omega_c\sqrt{n_c}$, one per class: under ERM the majorities are
# $\sqrt{10}$ times stronger. `theory.label_spectrum` computes the SVD numerically;
# `theory.singular_values` is the closed form. Cross-entropy, near the origin, sees the
# centred matrix $PY\Omega$ ($P = I - \tfrac1k 11^\top$), which has k - 1 modes.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
width = 0.27
for j, g in enumerate(gammas):
    closed = np.asarray(theory.singular_values(counts, omegas[g], "sample"))
    numeric = theory.label_spectrum(counts, omegas[g], "sample").values
    assert np.allclose(np.sort(numeric), np.sort(closed)), (numeric, closed)
    axes[0].bar(np.arange(len(counts)) + (j - 1) * width, closed, width,
                label=f"gamma = {g:g}")
    centred = theory.label_spectrum(counts, omegas[g], "sample", centred=True).values
    axes[1].plot(np.arange(1, len(centred) + 1), centred, "o-", label=f"gamma = {g:g}")
    print(f"gamma {g:g}: majority/minority singular value "
          f"{closed[major].mean() / closed[~major].mean():.3f}")
axes[0].set(xlabel="class", ylabel="singular value s_c", title="Y Omega (squared loss)")
axes[1].set(xlabel="mode (decreasing)", ylabel="singular value",
            title="centred P Y Omega (cross-entropy near 0)")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. ERM learns the majorities first; reweighting learns them together
#
# A realistic start: gaussian initialisation of standard deviation $10^{-3}$. The
# minority own outputs reach 1/2 about $\sqrt{10}$ times later under ERM.
# `theory.learning_time_ratios` predicts the ratio from the rates and the effective
# initial outputs of each mode (the plain rate ratio, $r_{maj}/r_{min}$, ignores the
# latter).

# %%
gauss = {g: simulate(base.replace(gamma=g)) for g in gammas}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
for ax, (g, res) in zip(axes, gauss.items(), strict=True):
    plot.class_accuracy_panel(ax, res, f"gaussian init, gamma = {g:g}")
axes[0].legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()

print("gamma  minority/majority half time: measured  predicted  rate ratio")
for g, res in gauss.items():
    half = res.trajectory.half_time
    measured = half[~major].mean() / half[major].mean()
    predicted = np.asarray(theory.learning_time_ratios(
        counts, omegas[g], "sample", base.init_scale, base.dim))
    rates = np.asarray(theory.rate(counts, omegas[g]))
    print(f"{g:5.2f}  {measured:37.3f}  {predicted[~major].mean():9.3f}"
          f"  {rates[major].mean() / rates[~major].mean():10.3f}")

# %% [markdown]
# ## 3. The closed form on top of the simulation
#
# From the spectrally *aligned* balanced initialisation (every own output starts at
# $z_0$, the modes never mix), each own output follows a logistic exactly:
#
# $$z_c(t) = \frac{e^{r_c t}}{e^{r_c t} - 1 + 1/z_0},\qquad r_c = \tfrac2n s_c .$$
#
# The sweep below runs the three parametrisations (`sample`: one feature per example;
# `class`: one feature per class; `whitened`: train $G = H\Omega^{1/2}$) at three values
# of $\gamma$, vmapped, in memory. Gradient descent with learning rate 0.1 approximates
# the flow to $O(\text{lr})$: the dots (simulation) sit on the lines (`theory.trajectory`
# with `theory.rate`).

# %%
z0 = 0.01
aligned = base.replace(init="aligned", init_scale=z0, lr=0.1, steps=6000, saves=601)
parametrizations = ("sample", "class", "whitened")
ds = sweep.run(sweep.make_sweep(aligned, {"parametrization": parametrizations,
                                          "gamma": list(gammas)}), progress=False)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
worst = 0.0
for ax, g in zip(axes, gammas, strict=True):
    run = ds.sel(parametrization="sample", gamma=g)
    t, own = run.t.values, run.own_output.values
    closed = np.asarray(theory.trajectory(
        t[:, None], theory.rate(counts, omegas[g], parametrization="sample")[None, :], z0))
    worst = max(worst, float(np.abs(own - closed).max()))
    for c in (0, len(counts) - 1):  # one majority and one minority class
        color = "C0" if major[c] else "C3"
        ax.plot(t, closed[:, c], color=color, lw=1.5,
                label="theory " + ("majority" if major[c] else "minority"))
        ax.plot(t[::3], own[::3, c], "o", color=color, ms=3.5)
    ax.set(title=f"aligned init, gamma = {g:g}", xlabel="time t")
axes[0].set_ylabel("own output z_c")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"largest |simulated - closed form| over classes, times and gammas: {worst:.3g}")
assert worst < 0.01  # gradient descent at lr 0.1 vs the flow's closed form

# %% [markdown]
# ## 4. Which $\gamma$ equalises, for which parametrisation
#
# The rate $r_c \propto s_c$ goes like $n_c^{1/2-\gamma}$ (`sample`),
# $n_c^{1-\gamma}$ (`class`) and $n_c^{(1-\gamma)/2}$ (`whitened`), so the equalising
# exponent is 1/2, 1 and 1 (`theory.equalising_exponent`). The table gives the
# simulated minority/majority half-time ratio from the same sweep
# (`sweep.delay_ratio`), and the closed-form ratio from the rates.

# %%
delays = sweep.delay_ratio(ds, "half_time")
print("parametrization  equalising gamma   " + "   ".join(f"gamma={g:g} (sim / theory)"
                                                     for g in gammas))
for p in parametrizations:
    cells = []
    for g in gammas:
        rates = np.asarray(theory.rate(counts, omegas[g], parametrization=p))
        cells.append(f"{float(delays.sel(parametrization=p, gamma=g)):8.3f} /"
                     f" {rates[major].mean() / rates[~major].mean():6.3f}")
    print(f"{p:15s}  {theory.equalising_exponent(p):16g}   " + "   ".join(cells))
    equal = float(delays.sel(parametrization=p, gamma=theory.equalising_exponent(p)))
    assert abs(equal - 1) < 0.05, (p, equal)  # equal half times at the equalising gamma

# %% [markdown]
# ## 5. The terminal phase
#
# **Squared loss interpolates.** Whatever the weights, the loss has a zero, $WH = Y$, and
# every per-class loss falls towards it (ERM's minorities last: at the full size they
# are still at a few 1e-2 by t = 1200), so late in training every weighting reaches the
# same fit; the weights only changed the order.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for g, res in gauss.items():
    ax.semilogy(res.trajectory.t, res.trajectory.per_class_loss.max(axis=1),
                label=f"gamma = {g:g}")
ax.set(xlabel="time t", ylabel="largest per-class loss", title="squared loss")
ax.legend(fontsize=8)
plt.show()
for g, res in gauss.items():
    print(f"gamma {g:g}: final largest per-class loss "
          f"{res.trajectory.per_class_loss[-1].max():.2e}")

# %% [markdown]
# **Cross-entropy heads to SELI.** Cross-entropy has no minimiser; with vanishing
# weight decay the parameters approach, in direction, the max-margin solution, whose
# geometry is the *simplex-encoded-label interpolation* (SELI, Thrampoulidis et al.
# 2022): $WW^\top = V\Lambda V^\top$, $H^\top H = U\Lambda U^\top$ for the SVD of the
# centred labels. It depends on the class counts but **not on the weights**. Below, ERM
# and inverse-frequency weights (counts 20, 20, 2, 2, weight decay $10^{-3}$): the
# distances of the classifier and class-mean-feature Gram matrices to SELI
# (`theory.gram_distance`) both fall, and the majority/minority classifier-norm ratio
# approaches SELI's (`theory.seli`).

# %%
terminal = Config(loss="ce", counts=(20, 20, 2, 2), dim=6, init_scale=0.1, lr=2.0,
                  steps=1000 if QUICK else 2500, saves=26, weight_decay=1e-3,
                  weighting="power", keep_params=True)
problem = problem_of(terminal)
target = theory.seli(terminal.counts)
seli_ratio = target.classifier_norms[0] / target.classifier_norms[-1]

fig, axes = plt.subplots(1, 2, figsize=(11, 3.3))
for g in (0.0, 1.0):
    res = simulate(terminal.replace(gamma=g))
    W, H = res.trajectory.params["W"], res.trajectory.params["H"]
    dist = np.array([[d["classifier"], d["feature"]] for d in (
        theory.gram_distance(W[s], class_means(H[s], problem), terminal.counts)
        for s in range(len(W)))])
    norms = np.linalg.norm(W, axis=2)
    ratio = norms[:, :2].mean(axis=1) / norms[:, 2:].mean(axis=1)
    t = res.trajectory.t
    axes[0].plot(t, dist[:, 0], label=f"classifier, gamma = {g:g}")
    axes[0].plot(t, dist[:, 1], ls="--", label=f"features, gamma = {g:g}")
    axes[1].plot(t, ratio, label=f"gamma = {g:g}")
    print(f"gamma {g:g}: final distance to SELI classifier {dist[-1, 0]:.3f}, "
          f"features {dist[-1, 1]:.3f}; norm ratio {ratio[-1]:.3f} (SELI {seli_ratio:.3f})")
axes[1].axhline(seli_ratio, color="k", ls=":", label="SELI")
axes[0].set(xlabel="time t", ylabel="distance to SELI (normalised Grams)")
axes[1].set(xlabel="time t", ylabel="||w_major|| / ||w_minor||")
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
print("SELI angles and norm ratios for this step imbalance:", {
    k: round(v, 3) for k, v in theory.step_summary(2, 2, 10).items()})

# %% [markdown]
# **Minority collapse.** Under a *fixed* weight decay the minimiser is not SELI: ERM's
# minority classifiers are pulled towards each other (Fang et al. 2021). Below, the mean
# cosine between the two minority classifier rows and between the two centred minority
# class means (centred by the unweighted mean of the class means, as Papyan et al.), over
# training, for ERM and inverse-frequency weights at weight decay $10^{-2}$
# (`experiments.terminal.minority_collapse`, drawn by `plot.minority_figure`; the same
# figure as `ssm-jax geometry`'s `minority.png`). The simplex ETF has $-1/3$.

# %%
collapse_cfg = terminal.replace(weight_decay=1e-2, keep_params=False,
                                steps=600 if QUICK else 1500, saves=31)
collapse = minority_collapse(collapse_cfg, gamma=1.0)
plot.minority_figure(collapse, len(collapse_cfg.counts))
plt.show()
for label, run in collapse.items():
    print(f"{label}: final minority cosine, classifier {run['minority_cosine'][-1]:.3f}, "
          f"centred class means {run['minority_feature_cosine_centred'][-1]:.3f}")


# %% [markdown]
# ## Interactive: the closed form
#
# The theory is cheap, so the sliders recompute it instantly: the own output of a
# majority and a minority class (aligned init, squared loss) for any ratio, $\gamma$ and
# parametrisation, and the state at the chosen time. The first cell is the static figure.

# %%
def closed_form(ratio=10.0, gamma=0.0, parametrization="sample", time=150.0):
    n = (N_MAJOR, max(1, round(N_MAJOR / ratio)))
    counts2 = np.array([n[0]] * 5 + [n[1]] * 5)
    omega = class_weights(counts2, "power", gamma)
    rates = np.asarray(theory.rate(counts2, omega, parametrization=parametrization))
    t = np.linspace(0, 600, 400)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for c, name, color in ((0, "majority", "C0"), (9, "minority", "C3")):
        z = np.asarray(theory.trajectory(t, rates[c], z0))
        at = float(theory.trajectory(time, rates[c], z0))
        ax.plot(t, z, color=color, label=f"{name}: r = {rates[c]:.4f}, z(t) = {at:.2f}")
    ax.axvline(time, color="0.4", ls=":")
    ax.set(xlabel="time t", ylabel="own output", ylim=(-0.03, 1.03),
           title=f"{parametrization}, ratio {ratio:g}, gamma {gamma:g} "
                 f"(equalising: {theory.equalising_exponent(parametrization):g})")
    ax.legend(fontsize=8, loc="lower right")
    plt.show()


closed_form()

# %%
_ = widgets.interact(
    closed_form,
    ratio=widgets.FloatLogSlider(value=10, base=10, min=0, max=2, step=0.05),
    gamma=widgets.FloatSlider(value=0.0, min=0, max=1.5, step=0.05),
    parametrization=list(parametrizations),
    time=widgets.FloatSlider(value=150, min=0, max=600, step=5),
)

# %% [markdown]
# Next: [03_sweeps.ipynb](03_sweeps.ipynb) maps the minority delay over (ratio, $\gamma$)
# and the early-stopped balanced accuracy over (time, $\gamma$).
