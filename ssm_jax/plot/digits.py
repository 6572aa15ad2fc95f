"""Figure of the digits experiment (:mod:`ssm_jax.experiments.digits`): the network's
accuracy per weighting, its loss curves beside the UFM's, and the delays."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..experiments.digits import NUM_CLASSES, DigitsResult, bridge_summary


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
    columns = max(3, len(names))
    fig, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 7.4), squeeze=False)
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
    ax.set_xticklabels(names, fontsize=8)
    ax.legend(fontsize=7)
    for j in range(3, columns):
        axes[0, j].axis("off")

    for w, name in enumerate(names):
        ax = axes[1, w]
        groups = result.group_accuracy(w)
        _band(ax, t[shown], groups["majority"][:, shown], "C0", "majority")
        _band(ax, t[shown], groups["minority"][:, shown], "C3", "minority")
        _band(ax, t[shown], groups["balanced"][:, shown], "k", "balanced", ls="--", lw=1)
        ax.set(xscale="log", xlabel="time (summed lr)", ylabel="test accuracy", ylim=(0, 1.02),
               title=name)
        ax.legend(fontsize=8, loc="lower right")
    for j in range(len(names), columns):
        axes[1, j].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
