"""Figures of the digits experiment (:mod:`ssm_jax.experiments.digits`): the network's
accuracy per recipe, its loss curves beside the UFM's, and the delays
(:func:`digits_figure`); balanced test accuracy of every recipe over time
(:func:`digits_recipes_figure`)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..experiments.digits import NUM_CLASSES, RECIPES, DigitsResult, bridge_summary


def _band(ax, t, values, color, label, **style) -> None:
    """Mean over seeds (axis 0) with a mean ± std band."""
    with warnings.catch_warnings():  # a checkpoint where every seed is NaN stays blank
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    ax.plot(t, mean, color=color, label=label, **style)
    ax.fill_between(t, mean - std, mean + std, color=color, alpha=0.18, lw=0)


def digits_figure(result: DigitsResult, path) -> None:
    """Top: balanced test accuracy per weighting; the ERM network vs the time-rescaled UFM
    (training accuracy, majority/minority); delay ratios network vs UFM vs closed forms.
    Bottom: majority/minority test accuracy per weighting. Bands: mean ± std over seeds;
    time (summed learning rate) on a log axis."""
    import matplotlib.pyplot as plt

    cfg, links = result.config, result.bridge
    t = cfg.checkpoint_times()
    shown = t > 0
    names = list(cfg.weightings)
    columns = max(3, min(len(names), 5))
    rows = 1 + -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.7 * rows),
                             squeeze=False)
    ax = axes[0, 0]
    for w, name in enumerate(names):
        _band(ax, t[shown], result.group_accuracy(w)["balanced"][:, shown], f"C{w}", name)
    ax.axvline(t[cfg.early_index()], color="grey", ls=":", lw=1)
    ax.set(xscale="log", xlabel="time (summed lr)", ylabel="balanced test accuracy",
           title="balanced test accuracy (dotted: early checkpoint)", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[0, 1]
    minority, reference = result.minority_mask, links["reference"]
    w = names.index(reference)
    per_class = result.recorded["train_per_class_loss"][w]
    _band(ax, t[shown], per_class[:, shown][..., ~minority].mean(-1), "C0", "network majority")
    _band(ax, t[shown], per_class[:, shown][..., minority].mean(-1), "C3", "network minority")
    for parametrization, style in (("class", "--"), ("sample", ":")):
        ufm = links["ufm"][parametrization][reference]
        clock = links["time_scale"][parametrization] * ufm["t"]
        keep = clock > 0
        for mask, color, group in ((~minority, "C0", "maj"), (minority, "C3", "min")):
            ax.plot(clock[keep], ufm["per_class_loss"][keep][:, mask].mean(-1), color=color,
                    ls=style, lw=1.2, label=f"UFM {parametrization} {group}")
    ax.axhline(math.log(NUM_CLASSES) / 2, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="time (summed lr; UFM rescaled)", ylabel="training CE loss",
           title=f"{reference}: network vs UFM, same counts", xlim=(t[shown][0], t[-1]))
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[0, 2]
    summary = bridge_summary(links)["weightings"]
    x = np.arange(len(names))
    bars = [("network (loss)", lambda e: e["network_delay"]),
            ("network (test acc.)", lambda e: e["network_delay_test"]),
            ("UFM class", lambda e: [e["ufm_delay"]["class"], 0.0]),
            ("UFM sample", lambda e: [e["ufm_delay"]["sample"], 0.0])]
    width = 0.8 / (len(bars) + 2)
    for j, (label, get) in enumerate(bars):
        values = np.array([get(summary[n]) for n in names], dtype=np.float64)
        ax.bar(x + (j - 2) * width, values[:, 0], width, yerr=values[:, 1], label=label,
               color=f"C{j}")
    for j, (parametrization, marker) in enumerate((("class", "v"), ("sample", "^"))):
        closed = [summary[n]["closed_form_delay"][parametrization] for n in names]
        closed = np.array([np.nan if v is None else v for v in closed], dtype=np.float64)
        ax.scatter(x + (2 + j) * width, closed, marker=marker, color="k", zorder=3,
                   label=f"r^({'1' if parametrization == 'class' else '1/2'}-γ)")
    ax.axhline(1.0, color="grey", lw=0.8)
    fitted = links["exponent"]["network"]
    ax.set(yscale="log", xticks=x, ylabel="minority / majority learning time",
           title=f"delay (r = {links['ratio']:g}; network fit r^({fitted:.2f}-γ))")
    ax.set_xticklabels(names, fontsize=7, rotation=30, ha="right")
    ax.legend(fontsize=7)
    for j in range(3, columns):
        axes[0, j].axis("off")

    for w, name in enumerate(names):
        ax = axes[1 + w // columns, w % columns]
        groups = result.group_accuracy(w)
        _band(ax, t[shown], groups["majority"][:, shown], "C0", "majority")
        _band(ax, t[shown], groups["minority"][:, shown], "C3", "minority")
        _band(ax, t[shown], groups["balanced"][:, shown], "k", "balanced", ls="--", lw=1)
        ax.set(xscale="log", xlabel="time (summed lr)", ylabel="test accuracy", ylim=(0, 1.02),
               title=name)
        ax.legend(fontsize=8, loc="lower right")
    for j in range(len(names), (rows - 1) * columns):
        axes[1 + j // columns, j % columns].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def digits_recipes_figure(result: DigitsResult, path, dpi: int = 72) -> None:
    """Balanced test accuracy of every recipe against time (summed lr), mean ± std over
    seeds. Left: the recipes whose weights do not switch; right (when some do): those that
    switch, with ``erm`` and ``gamma=1`` as dashed lines for reference. Top: log time,
    the whole run (grey line: the early checkpoint); bottom: linear time from the early
    checkpoint on, accuracy zoomed (dotted: the switch times). A recipe keeps its colour
    in every panel."""
    import matplotlib.pyplot as plt

    cfg = result.config
    t = cfg.checkpoint_times()
    early = cfg.early_index()
    names = list(cfg.weightings)
    colour = {name: f"C{w % 10}" for w, name in enumerate(names)}
    switching = [n for n in names if RECIPES[n].schedule != "constant"]
    panels = [("recipes with constant weights", [n for n in names if n not in switching], [])]
    if switching:
        references = [n for n in ("erm", "gamma=1") if n in names]
        panels.append(("recipes that switch weights", switching, references))
    panels = [p for p in panels if p[1]]
    balanced = {name: result.group_accuracy(w)["balanced"] for w, name in enumerate(names)}
    late = _balanced_range([balanced[n][:, early:] for n in names])
    fig, axes = plt.subplots(2, len(panels), figsize=(5.6 * len(panels), 7.6), sharey="row",
                             squeeze=False)
    for j, (title, drawn, references) in enumerate(panels):
        for row, keep in ((0, t > 0), (1, np.arange(t.size) >= early)):
            ax = axes[row, j]
            for name in drawn:
                _band(ax, t[keep], balanced[name][:, keep], colour[name], name)
            for name in references:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(balanced[name][:, keep], axis=0)
                ax.plot(t[keep], mean, color=colour[name], ls="--", lw=1.2, zorder=3,
                        label=f"{name} (mean)")
            if row == 0:
                ax.axvline(t[early], color="grey", lw=1)
                ax.set(xscale="log", title=title, ylim=(0, 1.0), xlim=(t[keep][0], t[-1]))
            else:
                if references:
                    for when in sorted(set(cfg.switch_times())):
                        ax.axvline(when, color="k", ls=":", lw=1)
                ax.set(ylim=late, xlim=(t[early], t[-1]),
                       title=f"{title}, from the early checkpoint")
            ax.set_xlabel("time (summed lr)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    for row in range(2):
        axes[row, 0].set_ylabel(f"balanced test accuracy (mean ± std, {cfg.seeds} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _balanced_range(curves) -> tuple[float, float]:
    """A y-range (multiples of 0.05) holding the mean ± std bands of ``curves``, each
    [seed, time]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lows = [np.nanmin(np.nanmean(c, axis=0) - np.nanstd(c, axis=0)) for c in curves]
        highs = [np.nanmax(np.nanmean(c, axis=0) + np.nanstd(c, axis=0)) for c in curves]
        low, high = np.nanmin(lows), np.nanmax(highs)
    if not (np.isfinite(low) and np.isfinite(high)):
        return 0.0, 1.0
    return max(0.0, float(np.floor(low * 20) / 20)), min(1.0, float(np.ceil(high * 20) / 20))
