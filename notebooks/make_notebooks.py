"""Write the notebooks of this folder from the cell sources below (outputs stripped).

    .venv/bin/python notebooks/make_notebooks.py

The .ipynb files are committed without outputs; edit the cells here and rerun, so the
notebooks and this script stay in step (``tests/test_notebooks.py`` checks that they do,
then executes every notebook with ``SSM_JAX_QUICK=1``).
"""

from __future__ import annotations

import os
import sys
import textwrap

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

QUICK_LINE = 'QUICK = os.environ.get("SSM_JAX_QUICK") == "1"  # CI: smaller problems, same story'


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    """A code cell; the line ``QUICK_LINE`` becomes the quick-mode switch."""
    source = textwrap.dedent(text).strip().replace("QUICK_LINE", QUICK_LINE)
    return nbformat.v4.new_code_cell(source)


# ---------------------------------------------------------------------------- 1 quickstart

QUICKSTART = [
    md("""
    # 1. Quickstart: one imbalanced run, per-class learning curves, ERM vs reweighting

    The *unconstrained features model* (UFM) trains a classifier `W` (k x d) together with
    one free feature column per training example, `H` (d x n), on one-hot labels `Y`. With
    class imbalance every class is one singular mode of the label matrix, and its strength
    grows with the class size: gradient descent learns **the majority classes first and the
    minorities later**. Per-class loss weights $\\omega_c \\propto n_c^{-\\gamma}$ change those
    strengths (Zhao & Thrampoulidis, arXiv 2601.12011).

    This notebook runs the simulator once, reads its per-class curves, and compares ERM
    with reweighting for both losses. Every number comes from `ssm_jax`; set
    `SSM_JAX_QUICK=1` for the small version that CI runs.
    """),
    code("""
    import functools
    import os

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import numpy as np

    from ssm_jax import Config, metrics, plot, simulate

    %matplotlib inline

    QUICK_LINE
    N_MAJOR = 40 if QUICK else 100  # examples per majority class (minorities: / ratio)
    """),
    md("""
    ## One run

    Five majority classes of `N_MAJOR` examples and five minority classes ten times
    smaller; squared loss $\\tfrac12\\lVert z - y\\rVert^2$, plain gradient descent with
    learning rate 4 for 300 steps from a small gaussian initialisation. Time is
    $t = \\text{lr} \\times \\text{step}$. The power-law weighting with `gamma=0` is ERM (every
    weight is 1; `weighting="erm"` is the same run): keeping `gamma` a number lets the runs
    below reuse one compiled simulator.
    """),
    code("""
    cfg = Config(loss="mse", ratio=10, n_major=N_MAJOR, weighting="power", gamma=0.0)
    result = simulate(cfg)
    tr = result.trajectory
    print("class counts      ", result.class_counts)
    print("class weights     ", np.round(tr.weights, 3))
    print("saved times       ", tr.t[:3], "...", tr.t[-1])
    print("learn time (acc 1/2)", np.round(tr.learn_time, 1))
    print("half time (z_c = 1/2)", np.round(tr.half_time, 1))
    """),
    md("""
    The trajectory holds, at every saved time, the per-class accuracy, the per-class loss
    and the *own output* $\\bar z_c$ (the mean output of class c on its own examples).
    Majority classes (blue) are learned first, the minorities (red) several times later.
    """),
    code("""
    fig, (ax_acc, ax_own) = plt.subplots(1, 2, figsize=(10, 3.4))
    plot.class_accuracy_panel(ax_acc, result, "ERM: per-class accuracy")
    ax_acc.legend(loc="lower right", fontsize=8)
    major = metrics.majority_mask(result.class_counts)
    for c in range(len(result.class_counts)):
        ax_own.plot(tr.t, tr.own_output[:, c], color="C0" if major[c] else "C3", lw=1)
    ax_own.set(xlabel="time t = lr x step", ylabel="own output", title="ERM: own outputs")
    fig.tight_layout()
    plt.show()
    """),
    md("""
    ## ERM vs reweighting

    With $\\omega_c \\propto n_c^{-\\gamma}$ (normalised so the mean per-example weight is 1),
    $\\gamma = 1/2$ gives every class the same rate in this model; $\\gamma = 1$ (inverse
    frequency) over-corrects, so the minorities come first. All runs start from the same
    initialisation (same seed).
    """),
    code("""
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
    """),
    md("""
    ## Cross-entropy tells the same story

    The same runs with cross-entropy $\\log\\sum_j e^{z_j} - z_y$: near the origin its
    gradient is that of the squared loss on the centred labels, so the ordering (and what
    reweighting does to it) carries over.
    """),
    code("""
    ce_runs = {g: simulate(cfg.replace(loss="ce", gamma=g)) for g in gammas}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    for ax, (g, res) in zip(axes, ce_runs.items(), strict=True):
        plot.class_accuracy_panel(ax, res, f"cross-entropy, gamma = {g:g}")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    plt.show()
    table(ce_runs, "cross-entropy")
    """),
    md("""
    ## Interactive: ratio, gamma, loss and time

    `show` reruns the simulator for the chosen imbalance ratio, weighting exponent and
    loss (the first run of a new ratio or loss compiles, a few seconds; the rest are
    cached), and marks the chosen time: the bars are the per-class accuracies at that
    time. The first cell draws the static figure; the second adds the sliders (they need
    a live kernel).
    """),
    code("""
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
    """),
    code("""
    widgets.interact(
        show,
        ratio=widgets.FloatLogSlider(value=10, base=10, min=0, max=2, step=0.25,
                                     continuous_update=False),
        gamma=widgets.FloatSlider(value=0.5, min=0, max=1.5, step=0.25,
                                  continuous_update=False),
        loss=["mse", "ce"],
        time=widgets.FloatSlider(value=200, min=0, max=cfg.lr * cfg.steps, step=cfg.lr * 3),
    );
    """),
    md("""
    Next: [02_paper_story.ipynb](02_paper_story.ipynb) explains *why*, from the label
    matrix's spectrum, with the closed-form trajectories on top of these simulations.
    """),
]


# ---------------------------------------------------------------------------- 2 paper story

PAPER_STORY = [
    md("""
    # 2. The paper's story, reproduced

    Zhao & Thrampoulidis (arXiv 2601.12011) explain why loss reweighting helps *if you stop
    early*. In the unconstrained features model the gradient flow learns the singular modes
    of the (weighted) label matrix one by one, at rates set by their singular values:

    1. the label-matrix spectrum, and how the class weights change it;
    2. ERM learns the majorities first; reweighting learns the classes together;
    3. the closed-form trajectories on top of the simulated ones;
    4. which $\\gamma$ equalises the classes, for each parametrisation;
    5. the terminal phase: the squared loss interpolates, and cross-entropy heads to the
       SELI geometry whatever the weights, so reweighting matters only early.

    Theory comes from `ssm_jax.theory` (derivations in `docs/theory.md`), simulations from
    `ssm_jax.simulate` and `ssm_jax.sweep`.
    """),
    code("""
    import os

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import numpy as np

    from ssm_jax import Config, class_counts_of, metrics, plot, problem_of, simulate, sweep, theory
    from ssm_jax.geometry import class_means
    from ssm_jax.weights import class_weights

    %matplotlib inline

    QUICK_LINE
    N_MAJOR = 40 if QUICK else 100
    base = Config(ratio=10, n_major=N_MAJOR, weighting="power")
    counts = np.array(class_counts_of(base))
    major = metrics.majority_mask(counts)
    gammas = (0.0, 0.5, 1.0)
    omegas = {g: np.asarray(class_weights(counts, "power", g)) for g in gammas}
    print("class counts", counts)
    """),
    md("""
    ## 1. The label matrix and its spectrum

    With per-example weights, gradient flow on the squared loss is driven by the weighted
    label matrix $Y\\Omega$ (k x n, column i is $\\omega_{y_i} e_{y_i}$). Its singular
    values are $s_c = \\omega_c\\sqrt{n_c}$, one per class: under ERM the majorities are
    $\\sqrt{10}$ times stronger. `theory.label_spectrum` computes the SVD numerically;
    `theory.singular_values` is the closed form. Cross-entropy, near the origin, sees the
    centred matrix $PY\\Omega$ ($P = I - \\tfrac1k 11^\\top$), which has k - 1 modes.
    """),
    code("""
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
    """),
    md("""
    ## 2. ERM learns the majorities first; reweighting learns them together

    A realistic start: gaussian initialisation of standard deviation $10^{-3}$. The
    minority own outputs reach 1/2 about $\\sqrt{10}$ times later under ERM.
    `theory.learning_time_ratios` predicts the ratio from the rates and the effective
    initial outputs of each mode (the plain rate ratio, $r_{maj}/r_{min}$, ignores the
    latter).
    """),
    code("""
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
    """),
    md("""
    ## 3. The closed form on top of the simulation

    From the spectrally *aligned* balanced initialisation (every own output starts at
    $z_0$, the modes never mix), each own output follows a logistic exactly:

    $$z_c(t) = \\frac{e^{r_c t}}{e^{r_c t} - 1 + 1/z_0},\\qquad r_c = \\tfrac2n s_c .$$

    The sweep below runs the three parametrisations (`sample`: one feature per example;
    `class`: one feature per class; `whitened`: train $G = H\\Omega^{1/2}$) at three values
    of $\\gamma$, vmapped, in memory. Gradient descent with learning rate 0.1 approximates
    the flow to $O(\\text{lr})$: the dots (simulation) sit on the lines (`theory.trajectory`
    with `theory.rate`).
    """),
    code("""
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
    """),
    md("""
    ## 4. Which $\\gamma$ equalises, for which parametrisation

    The rate $r_c \\propto s_c$ goes like $n_c^{1/2-\\gamma}$ (`sample`),
    $n_c^{1-\\gamma}$ (`class`) and $n_c^{(1-\\gamma)/2}$ (`whitened`), so the equalising
    exponent is 1/2, 1 and 1 (`theory.equalising_exponent`). The table gives the
    simulated minority/majority half-time ratio from the same sweep
    (`sweep.delay_ratio`), and the closed-form ratio from the rates.
    """),
    code("""
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
    """),
    md("""
    ## 5. The terminal phase

    **Squared loss interpolates.** Whatever the weights, the loss has a zero, $WH = Y$, and
    every per-class loss falls towards it (ERM's minorities last: at the full size they
    are still at a few 1e-2 by t = 1200), so late in training every weighting reaches the
    same fit; the weights only changed the order.
    """),
    code("""
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
    """),
    md("""
    **Cross-entropy heads to SELI.** Cross-entropy has no minimiser; with vanishing
    weight decay the parameters approach, in direction, the max-margin solution, whose
    geometry is the *simplex-encoded-label interpolation* (SELI, Thrampoulidis et al.
    2022): $WW^\\top = V\\Lambda V^\\top$, $H^\\top H = U\\Lambda U^\\top$ for the SVD of the
    centred labels. It depends on the class counts but **not on the weights**. Below, ERM
    and inverse-frequency weights (counts 20, 20, 2, 2, weight decay $10^{-3}$): the
    distances of the classifier and class-mean-feature Gram matrices to SELI
    (`theory.gram_distance`) both fall, and the majority/minority classifier-norm ratio
    approaches SELI's (`theory.seli`).
    """),
    code("""
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
    """),
    md("""
    ## Interactive: the closed form

    The theory is cheap, so the sliders recompute it instantly: the own output of a
    majority and a minority class (aligned init, squared loss) for any ratio, $\\gamma$ and
    parametrisation, and the state at the chosen time. The first cell is the static figure.
    """),
    code("""
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
    """),
    code("""
    widgets.interact(
        closed_form,
        ratio=widgets.FloatLogSlider(value=10, base=10, min=0, max=2, step=0.05),
        gamma=widgets.FloatSlider(value=0.0, min=0, max=1.5, step=0.05),
        parametrization=list(parametrizations),
        time=widgets.FloatSlider(value=150, min=0, max=600, step=5),
    );
    """),
    md("""
    Next: [03_sweeps.ipynb](03_sweeps.ipynb) maps the minority delay over (ratio, $\\gamma$)
    and the early-stopped balanced accuracy over (time, $\\gamma$).
    """),
]


# ---------------------------------------------------------------------------- 3 sweeps

SWEEPS = [
    md("""
    # 3. Sweeps: the minority delay over (ratio, $\\gamma$) and early stopping

    A sweep is the Cartesian product of lists of options. `ssm_jax.sweep` runs every
    group of runs that share a compiled function as one `vmap`-ed call (different ratios
    are padded to a common number of examples), writes finished chunks so an interrupted
    sweep resumes, and assembles a labelled `xarray.Dataset` in a netCDF file. The command
    line does the same:

    ```bash
    ssm-jax sweep --ratio 1,2,5,10,20,50,100 --weighting power --gamma 0,0.5,1 --seeds 8 \\
        --out sweep.nc
    ssm-jax plot sweep.nc
    ```

    Here we run a small sweep into a temporary folder and load it back with
    `ssm_jax.sweep.load`, as you would a saved sweep.
    """),
    code("""
    import os
    import tempfile

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import numpy as np

    from ssm_jax import Config, metrics, plot, sweep, theory

    %matplotlib inline

    QUICK_LINE
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
    """),
    code("""
    folder = tempfile.mkdtemp(prefix="ssm-jax-notebook-")
    path = os.path.join(folder, "sweep.nc")
    sweep.run(plan, path, progress=False)  # resumable: rerunning finishes missing chunks
    ds = sweep.load(path)
    ds
    """),
    md("""
    ## The data

    One dimension per swept option (`loss_fn` for the loss: `loss` is a variable), then
    `save` and `class`. `t` is a coordinate over the runs and save points (it depends on
    the learning rate), `sweep.config_of` rebuilds the `Config` of any run.
    """),
    code("""
    one = ds.sel(loss_fn="mse", ratio=10, gamma=0.5, seed=0)
    print("learn times:", np.round(one.learn_time.values, 1))
    print("final balanced accuracy:", float(one.balanced_accuracy[-1]))
    print(sweep.config_of(ds, loss="mse", ratio=10, gamma=0.5, seed=0))
    """),
    md("""
    ## Phase diagram of the minority delay

    `sweep.delay_ratio` is the mean learn time (accuracy reaches 1/2) of the minority
    classes over that of the majorities, per run; the heat map shows its median over seeds
    (red: minorities later; blue: earlier; grey: a class never learned or no minority). The
    delay grows with the ratio under ERM and flips sign past the equalising exponent
    ($\\gamma = 1/2$ for this parametrisation, `theory.equalising_exponent("sample")`).
    """),
    code("""
    print("equalising gamma (sample parametrisation):", theory.equalising_exponent("sample"))
    fig = plot.delay_heatmap(ds)
    plt.show()
    fig = plot.delay_heatmap(ds, time="half_time")
    plt.show()
    """),
    md("""
    ## Early-stopped balanced accuracy over (time, $\\gamma$)

    Balanced accuracy (mean of the per-class accuracies) if training is stopped at time
    t. Reweighting wins early; by the end every weighting has fitted every class, so the
    advantage of reweighting is an early-stopping one. The right panel gives the best
    $\\gamma$ at each stopping time.
    """),
    code("""
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
    """),
    md("""
    ## Interactive: ratio, gamma, loss and time

    Everything is already computed, so the sliders only select from the Dataset: the
    per-class accuracy curves of one run, and the balanced accuracy against $\\gamma$ when
    stopping at the chosen time. The first cell is the static figure.
    """),
    code("""
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
    """),
    code("""
    widgets.interact(
        explore,
        ratio=widgets.SelectionSlider(options=list(ds.ratio.values), value=axes["ratio"][-1]),
        gamma=widgets.SelectionSlider(options=list(ds.gamma.values), value=axes["gamma"][0]),
        loss=list(ds.loss_fn.values),
        time=widgets.FloatSlider(value=200, min=0, max=float(ds.t.max()), step=base.lr * 3),
    );
    """),
    md("""
    The temporary folder is removed at the end; for your own sweeps keep the `.nc` file
    (it is the whole result) and reopen it with `sweep.load(path)`.
    """),
    code("""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    """),
]

# ---------------------------------------------------------------------------- 4 meta-gradients

META = [
    md("""
    # 4. Differentiating through training

    A training run is a pure JAX function of its numeric options, so an outcome at the
    stopping time T (here the **balanced loss**, the mean over classes of the per-class
    loss, unweighted) can be differentiated with respect to the weighting exponent
    $\\gamma$, the stopping time T itself, the imbalance ratio, the learning rate, ...
    (`ssm_jax.meta`, derivations in `docs/meta.md`). This notebook

    1. takes those gradients and checks them against finite differences and a sweep,
    2. draws the balanced loss over ($\\gamma$, T): early on the best $\\gamma$ is extreme;
       later it settles near the equalising exponent,
    3. learns $\\gamma$, and then free per-class weights, by gradient descent through
       training (optax).

    Default problem (5 + 5 classes, ratio 10, n_major 100), squared loss, GD with lr 4,
    float64.
    """),
    code("""
    import os

    import ipywidgets as widgets
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    from ssm_jax import Config, class_counts_of, meta, metrics, sweep, theory
    from ssm_jax.weights import class_weights

    %matplotlib inline

    QUICK_LINE
    T = 400.0  # stopping time: lr x steps
    cfg = Config(loss="mse", weighting="power", gamma=0.5, lr=4.0, steps=int(T / 4.0), x64=True)
    counts = np.array(class_counts_of(cfg), dtype=float)
    major = metrics.majority_mask(counts)
    """),
    md("""
    ## Gradients at one point

    `meta.gradient` returns the objective at T and its gradient with respect to any of
    `meta.WRT`. `t1` is the stopping time (at fixed learning rate); `ratio` moves the class
    counts inside the weights and their normalisation.
    """),
    code("""
    out = meta.gradient(cfg, "balanced_loss", ("gamma", "t1", "ratio"))
    print(f"balanced loss at T = {T:g}: {float(out.value):.5f}")
    for name, value in out.gradient.items():
        print(f"  d/d{name:6s} {float(value): .6f}")
    """),
    md("""
    ## Checking the gradients

    `meta.value_and_grad` is pure, so one `vmap`-ed, compiled call gives the objective and
    its gradients on a whole grid of $\\gamma$, plus the four shifted points of two
    central finite differences: in $\\gamma$ ($\\pm h$) and in T (`t_offset` $= \\pm h$
    along the run's continuous-time interpolation).
    """),
    code("""
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
    """),
    md("""
    ## The balanced loss over ($\\gamma$, T), from a sweep

    The same runs, simulated past T and saved at every step (`ssm_jax.sweep`, in memory):
    the balanced loss at every stopping time and $\\gamma$. At T it equals the values
    `meta` computed, and the tangents drawn with `meta`'s gradients touch the curve.
    """),
    code("""
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
    """),
    md("""
    ## Learning the weighting

    `meta.learn` runs Adam on $\\gamma$ through training (each step differentiates the
    whole run), and then on free per-class weights $\\omega \\propto e^{\\theta}$
    (normalised as usual), both started at $\\gamma = 1/2$. The learned weights can be
    read as an effective exponent,
    $-\\log(\\omega_{min}/\\omega_{maj}) / \\log(n_{min}/n_{maj})$.
    """),
    code("""
    iterations = 8 if QUICK else 40
    learned_gamma = meta.learn(cfg, "balanced_loss", learn="gamma", iterations=iterations,
                               learning_rate=0.1)
    start = tuple(float(v) for v in class_weights(counts, "power", cfg.gamma))
    learned_weights = meta.learn(cfg.replace(weights=start), "balanced_loss", learn="weights",
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
    """),
    md("""
    ## Interactive: gamma and stopping time

    The sweep above already holds every ($\\gamma$, t), so the sliders only select: the
    balanced loss over training for one $\\gamma$, and over $\\gamma$ at the chosen
    stopping time. The first cell is the static figure.
    """),
    code("""
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
    """),
    code("""
    widgets.interact(
        explore,
        gamma=widgets.SelectionSlider(options=[float(g) for g in gamma_grid], value=0.5),
        time=widgets.FloatSlider(value=T, min=0, max=float(t[-1]), step=cfg.lr),
    );
    """),
    md("""
    Next: [05_digits.ipynb](05_digits.ipynb) checks the model's predictions on real images
    with a small network.
    """),
]

# ---------------------------------------------------------------------------- 5 digits

DIGITS = [
    md("""
    # 5. Real data: imbalanced digits beside the small-scale model

    Do the UFM's predictions survive a real network on real images? `ssm_jax.experiments.digits`
    trains an MLP (64-128-64-10, ReLU; its last hidden layer plays the UFM's features `H`,
    its last layer the classifier `W`) on scikit-learn's bundled 8x8 handwritten digits
    (no download), with digits 5-9 made ten times rarer in training and a balanced test
    set. Weightings: ERM, $\\gamma = 1/2$, $\\gamma = 1$, and logit adjustment. Beside it
    (`digits.bridge`), UFM runs with the same class counts and weightings, and the UFM's
    closed-form delays $r^{1/2-\\gamma}$ (`sample`: a free feature per example) and
    $r^{1-\\gamma}$ (`class`: one feature per class). Details and full-size numbers:
    `docs/digits.md` (the command `ssm-jax digits` runs the same experiment).
    """),
    code("""
    import os
    import tempfile

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import numpy as np
    from IPython.display import Image, display

    from ssm_jax import plot, theory
    from ssm_jax.experiments import digits

    %matplotlib inline

    QUICK_LINE
    if QUICK:  # fewer steps and seeds (the test suite's quick setting)
        cfg = digits.DigitsConfig(steps=150, warmup=50, checkpoints=31, seeds=2,
                                  ufm_steps=1500)
    else:
        cfg = digits.DigitsConfig()
    data = digits.load_data(cfg)
    print("training counts per digit:", data.train_counts)
    print("test counts per digit:    ", data.test_counts)
    """),
    code("""
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
    """),
    md("""
    ## Train every weighting and seed

    One jitted call trains all runs (full batch, SGD with momentum, warm-up); the report
    gives test accuracy early (end of warm-up) and at the end, and the minority/majority
    delay: the time for the training loss of a class to fall to $\\log(k)/2$.
    """),
    code("""
    result = digits.run_digits(cfg)
    digits.print_report(result)
    """),
    md("""
    The library's summary figure (top: balanced test accuracy; ERM's network loss curves
    with the UFM's on the network's clock; the delays. Bottom: majority and minority test
    accuracy per weighting).
    """),
    code("""
    folder = tempfile.mkdtemp(prefix="ssm-jax-digits-")
    figure = os.path.join(folder, "digits.png")
    plot.digits_figure(result, figure)
    display(Image(filename=figure))
    """),
    md("""
    ## The delay beside the model's prediction

    The delay against $\\gamma$ on a log scale: the network (mean and spread over seeds),
    the simulated UFMs, and the closed forms. The per-example UFM predicts that
    $\\gamma = 1/2$ equalises (`theory.equalising_exponent("sample")`); the network
    behaves like the per-class UFM, whose equalising exponent is 1
    (`theory.equalising_exponent("class")`): the images of one class move together.
    """),
    code("""
    summary = digits.bridge_summary(result.bridge)
    ratio = summary["ratio"]
    names = [n for n in cfg.weightings if not digits.WEIGHTINGS[n][1]]  # the power laws
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
    """),
    md("""
    ## Interactive: weighting and time

    The sliders pick a weighting and a checkpoint: per-digit test accuracy of the network
    (mean over seeds) at that time. The first cell is the static figure.
    """),
    code("""
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
    """),
    code("""
    widgets.interact(
        at_time,
        weighting=list(cfg.weightings),
        time=widgets.SelectionSlider(options=[float(t) for t in times], value=early_time),
    );
    """),
    code("""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    """),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_paper_story.ipynb": PAPER_STORY,
    "03_sweeps.ipynb": SWEEPS,
    "04_meta_gradients.ipynb": META,
    "05_digits.ipynb": DIGITS,
}


def build(cells) -> nbformat.NotebookNode:
    """A notebook of ``cells`` with no outputs, the python3 kernel and stable cell ids."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = cells
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def render(cells) -> str:
    return nbformat.writes(build(cells)) + "\n"


def main(argv=None) -> int:
    """Write every notebook; ``--check`` only reports which ones differ (exit 1)."""
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = os.path.join(HERE, name)
        text = render(cells)
        current = open(path).read() if os.path.exists(path) else None
        if current != text:
            stale.append(name)
            if "--check" not in argv:
                with open(path, "w") as f:
                    f.write(text)
    if "--check" in argv and stale:
        print("out of date:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
