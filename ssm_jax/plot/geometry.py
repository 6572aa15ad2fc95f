"""Figures of the neural-collapse geometry (:mod:`ssm_jax.geometry`): measures over training,
minority collapse (ERM vs reweighting) over training and against the imbalance ratio, and
the terminal phase over decreasing weight decay (cross-entropy against SELI; squared loss
against the closed-form minimiser and its collapse thresholds)."""

from __future__ import annotations

import numpy as np

from ..geometry import minority_mean
from ..metrics import majority_mask
from ..theory import weight_decay_minimiser


def geometry_figure(result, path) -> None:
    """Four panels over time: collapse distances (NC2 ETF/SELI, both NC3s); NC1 and CDNV (log)
    with the NC4 agreement; per-class classifier and feature norms (majority blue, minority
    red); the minority cosines of the classifier and of the centred class means."""
    import matplotlib.pyplot as plt

    tr, g = result.trajectory, result.trajectory.geometry
    counts = result.class_counts
    major = majority_mask(counts)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    ax = axes[0]
    for key, style in [("nc2_etf_classifier", "C0-"), ("nc2_seli_classifier", "C1-"),
                       ("nc2_etf_features", "C0--"), ("nc2_seli_features", "C1--"),
                       ("nc2_seli_outputs", "C2-"), ("nc3", "C4-"),
                       ("nc3_self_duality", "C4--")]:
        ax.plot(tr.t, g[key], style, label=key)
    ax.set_ylabel("normalised distance")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    ax.semilogy(tr.t, np.maximum(g["nc1"], 1e-16), "k-", label="nc1")
    ax.semilogy(tr.t, np.maximum(g["nc1_cdnv"], 1e-16), "k--", label="nc1_cdnv")
    ax.set_ylabel("within-class variability")
    twin = ax.twinx()
    twin.plot(tr.t, g["nc4_ncc_agreement"], "C2-", label="nc4_ncc_agreement (right)")
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("NCC agreement")
    ax.legend(*(a + b for a, b in zip(ax.get_legend_handles_labels(),
                                      twin.get_legend_handles_labels(), strict=True)),
              fontsize=7, loc="center right")
    ax = axes[2]
    for c in range(len(counts)):
        color = "C0" if major[c] else "C3"
        ax.plot(tr.t, g["classifier_norm"][:, c], color=color, lw=1)
        ax.plot(tr.t, g["feature_norm"][:, c], color=color, lw=1, ls="--")
        ax.plot(tr.t, g["feature_norm_centred"][:, c], color=color, lw=1, ls=":")
    ax.set_ylabel("norm")
    ax.set_title("||w_c|| (solid), ||mu_c|| (dashed), ||mu_c - mu_G|| (dotted)", fontsize=8)
    ax = axes[3]
    ax.plot(tr.t, g["minority_cosine"], "C3", label="classifier rows")
    ax.plot(tr.t, minority_mean(g["feature_cosine_centred"], counts), "C3--",
            label="centred class means")
    ax.axhline(-1 / (len(counts) - 1), color="0.5", ls=":", label="simplex ETF")
    ax.set_ylabel("mean cosine between minority classes")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("time t = lr x step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def minority_figure(collapse: dict, num_classes: int, path=None):
    """Minority collapse over training (Fang et al. 2021), per run label (ERM, reweighted;
    :func:`ssm_jax.experiments.terminal.minority_collapse`): the mean cosine between minority
    classifier rows, and between centred minority class means, against the simplex ETF's
    -1/(k-1) and full collapse at 1. Saved to ``path`` when given, else returned."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for i, (label, run) in enumerate(collapse.items()):
        axes[0].plot(run["t"], run["minority_cosine"], color=f"C{i}", label=label)
        axes[1].plot(run["t"], run["minority_feature_cosine_centred"], color=f"C{i}",
                     label=label)
    for ax, title in zip(axes, ("classifier rows w_c", "centred class means mu_c - mu_G"),
                         strict=True):
        ax.axhline(-1 / (num_classes - 1), color="0.5", ls=":", label="simplex ETF")
        ax.axhline(1.0, color="k", ls=":", lw=0.8, label="collapsed")
        ax.set(xlabel="time t = lr x step", title=f"minority {title}", ylim=(-1.05, 1.05))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("mean cosine between minority classes")
    fig.suptitle("minority collapse (Fang et al. 2021): ERM vs reweighting", fontsize=10)
    return _saved(fig, path)


def terminal_figure(weight_decays, labelled: dict, seli_ratio: float, path) -> None:
    """Over decreasing weight decay, per run label (e.g. ERM, reweighted): distance of the
    classifier Gram to SELI and to the ETF, and the majority/minority classifier-norm ratio
    against SELI's value. ``labelled[label]`` is a dict of final geometry arrays (one row per
    weight decay) plus ``"norm_ratio"``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (label, g) in enumerate(labelled.items()):
        color = f"C{i}"
        axes[0].semilogx(weight_decays, g["nc2_seli_classifier"], "o-", color=color,
                         label=f"{label}: SELI")
        axes[0].semilogx(weight_decays, g["nc2_etf_classifier"], "s--", color=color,
                         label=f"{label}: ETF")
        axes[1].semilogx(weight_decays, g["norm_ratio"], "o-", color=color, label=label)
        axes[2].semilogx(weight_decays, g["minority_cosine"], "o-", color=color, label=label)
    axes[1].axhline(seli_ratio, color="k", ls=":", label="SELI")
    axes[1].set_yscale("log")  # collapsed minority classifiers send the ratio to infinity
    axes[0].set_ylabel("distance of W W^T")
    axes[1].set_ylabel("||w_major|| / ||w_minor||")
    axes[2].set_ylabel("mean cosine of minority classifiers")
    for ax in axes:
        ax.set_xlabel("weight decay")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def decay_figure(weight_decays, labelled: dict, counts, parametrization: str, depth: int,
                 path=None):
    """The squared-loss terminal phase (:func:`ssm_jax.experiments.terminal.squared_loss_terminal`):
    one panel per run label (ERM, reweighted) with each class's own output at the
    closed-form global minimiser against the weight decay (lines; majority classes blue,
    minorities red), at depth >= 2 the nonzero local minimum that outlives the threshold
    (dashed), the simulated final own outputs (markers) and the collapse thresholds
    (dotted); a last panel with every class's collapse threshold against its count, per
    label, showing how reweighting moves them. Saved to ``path`` when given, else returned."""
    import matplotlib.pyplot as plt

    counts = np.asarray(counts, dtype=np.float64)
    major = majority_mask(counts)
    decays = np.asarray(weight_decays, dtype=np.float64)
    thresholds = np.concatenate([g["collapse_threshold"] for g in labelled.values()])
    low = min(decays.min(), thresholds.min()) / 3
    high = max(decays.max(), thresholds.max()) * 3
    grid = np.geomspace(low, high, 400)
    fig, axes = plt.subplots(1, len(labelled) + 1, figsize=(4.6 * (len(labelled) + 1), 3.7))
    for ax, (label, g) in zip(axes, labelled.items(), strict=False):
        minimiser = weight_decay_minimiser(counts, g["weights"], grid, parametrization, depth)
        curves = minimiser.own_output
        # Depth >= 2: the nonzero local minimum that survives past the threshold (dashed).
        metastable = np.where(curves == 0, minimiser.stable_output, np.nan)
        for c in range(len(counts)):
            color = "C0" if major[c] else "C3"
            ax.semilogx(grid, curves[:, c], color=color, lw=1)
            ax.semilogx(grid, metastable[:, c], color=color, lw=0.8, ls="--")
            ax.semilogx(decays, g["own_output"][:, c], "o", color=color, ms=4, mfc="none")
            ax.axvline(g["collapse_threshold"][c], color=color, ls=":", lw=0.8)
        ax.set(title=f"{label}: own output at the minimiser", xlabel="weight decay",
               ylim=(-0.05, 1.05))
        ax.set_ylabel("own output (line: closed form, o: simulated)")
    ax = axes[-1]
    order = np.argsort(counts)
    for i, (label, g) in enumerate(labelled.items()):
        ax.loglog(counts[order], g["collapse_threshold"][order], "os"[i % 2] + "-",
                  color=("C2", "C4")[i % 2], label=label)
    ax.set(title="collapse threshold of each class", xlabel="class count n_c",
           ylabel="weight decay at which z_c reaches 0")
    ax.legend(fontsize=7)
    fig.suptitle(f"squared loss with weight decay ({parametrization}, depth {depth})",
                 fontsize=10)
    return _saved(fig, path)


def collapse_ratio_figure(collapse: dict, num_classes: int, path=None):
    """Minority collapse against the imbalance ratio
    (:func:`ssm_jax.experiments.terminal.minority_collapse_ratios`): the mean cosine between
    minority classifier rows (solid) and between centred minority class means (dashed) at
    the end of training, per run label, with the vanishing-weight-decay limit (SELI or the
    ETF, dotted), the simplex ETF's -1/(k-1) and full collapse at 1. Saved to ``path``
    when given, else returned."""
    import matplotlib.pyplot as plt

    ratios = np.asarray(collapse["ratios"])
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (label, run) in enumerate(collapse["runs"].items()):
        ax.semilogx(ratios, run["minority_cosine"], "o-", color=f"C{i}",
                    label=f"{label}: classifier rows")
        ax.semilogx(ratios, run["minority_feature_cosine_centred"], "s--", color=f"C{i}",
                    ms=3, label=f"{label}: centred class means")
    ax.semilogx(ratios, collapse["limit_minority_cosine"], "k:", label="weight decay -> 0 limit")
    ax.axhline(-1 / (num_classes - 1), color="0.5", ls=":", lw=0.8, label="simplex ETF")
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.set(xlabel="imbalance ratio R = n_major / n_minor",
           ylabel="mean cosine between minority classes", ylim=(-1.05, 1.05),
           title="minority collapse against the ratio (Fang et al. 2021)")
    ax.legend(fontsize=7)
    return _saved(fig, path)


def _saved(fig, path):
    """Lay ``fig`` out, then save it to ``path`` and close it (returning None), or return it
    when ``path`` is None (a notebook shows it)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
