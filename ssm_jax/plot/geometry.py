"""Figures of the neural-collapse geometry (:mod:`ssm_jax.geometry`): measures over training,
and the terminal phase over decreasing weight decay."""

from __future__ import annotations

import numpy as np

from ..metrics import majority_mask


def geometry_figure(result, path) -> None:
    """Three panels over time: collapse distances (NC1, NC2 ETF/SELI, NC3), per-class
    classifier and feature norms (majority blue, minority red), minority cosine."""
    import matplotlib.pyplot as plt

    tr, g = result.trajectory, result.trajectory.geometry
    major = majority_mask(result.class_counts)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    for key, style in [("nc2_etf_classifier", "C0-"), ("nc2_seli_classifier", "C1-"),
                       ("nc2_etf_features", "C0--"), ("nc2_seli_features", "C1--"),
                       ("nc2_seli_outputs", "C2-"), ("nc3", "C4-")]:
        ax.plot(tr.t, g[key], style, label=key)
    ax.set_ylabel("normalised distance")
    ax2 = ax.twinx()
    ax2.semilogy(tr.t, np.maximum(g["nc1"], 1e-16), "k:", label="nc1 (right)")
    ax2.set_ylabel("NC1")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    for c in range(len(result.class_counts)):
        color = "C0" if major[c] else "C3"
        ax.plot(tr.t, g["classifier_norm"][:, c], color=color, lw=1)
        ax.plot(tr.t, g["feature_norm"][:, c], color=color, lw=1, ls="--")
    ax.set_ylabel("||w_c|| (solid), ||mu_c|| (dashed)")
    ax = axes[2]
    ax.plot(tr.t, g["minority_cosine"], "C3")
    ax.set_ylabel("mean cosine of minority classifiers")
    ax.set_ylim(-1.05, 1.05)
    for ax in axes:
        ax.set_xlabel("time t = lr x step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
