"""Figures of single runs (:class:`ssm_jax.Result`): per-class accuracy over time."""

from __future__ import annotations

from ..metrics import majority_mask


def class_accuracy_panel(ax, result, title: str | None = None) -> None:
    """Per-class accuracy over time (thin lines) with majority/minority means (thick)."""
    tr = result.trajectory
    major = majority_mask(result.class_counts)
    for c in range(len(result.class_counts)):
        ax.plot(tr.t, tr.per_class_accuracy[:, c], color="C0" if major[c] else "C3",
                alpha=0.25, lw=0.8)
    ax.plot(tr.t, tr.per_class_accuracy[:, major].mean(axis=1), color="C0", lw=2,
            label="majority")
    if (~major).any():
        ax.plot(tr.t, tr.per_class_accuracy[:, ~major].mean(axis=1), color="C3", lw=2,
                label="minority")
    ax.plot(tr.t, tr.balanced_accuracy, color="k", ls="--", lw=1, label="balanced")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("time t = lr x step")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title, fontsize=10)


def demo_figure(results: dict, path) -> None:
    """Grid of class-accuracy panels: one row per loss, one column per weighting, of
    ``results[loss][weighting]`` (a :class:`~ssm_jax.Result`), saved to ``path``."""
    import matplotlib.pyplot as plt

    losses = list(results)
    names = list(results[losses[0]])
    fig, axes = plt.subplots(len(losses), len(names), figsize=(4 * len(names), 3.2 * len(losses)),
                             squeeze=False, sharey=True)
    for i, loss in enumerate(losses):
        for j, name in enumerate(names):
            class_accuracy_panel(axes[i, j], results[loss][name], f"{loss}, {name}")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
