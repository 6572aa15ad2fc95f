"""Figures of the resampling-against-reweighting comparison
(:func:`ssm_jax.experiments.resampling.compare`)."""

from __future__ import annotations

import numpy as np

LABELS = {"erm": "ERM, uniform batches", "reweight": "reweighting, uniform batches",
          "resample": "ERM, resampled batches", "reweight_full_batch": "reweighting, full batch"}


def resampling_figure(result: dict, path) -> None:
    """Two panels against the learning rate: the minority/majority half-time delay (mean
    and standard deviation over seeds that did not diverge) and the fraction of seeds that
    diverged, one line per arm; saved to ``path``."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    lrs = np.asarray(result["lrs"])
    for i, (arm, rows) in enumerate(result["arms"].items()):
        delay = np.array([row["delay"] for row in rows], float)
        style = dict(color=f"C{i}", label=LABELS.get(arm, arm), marker="o", ms=4, capsize=3)
        left.errorbar(lrs * (1 + 0.03 * i), delay[:, 0], yerr=delay[:, 1], **style)
        right.plot(lrs, [row["diverged"] for row in rows], color=f"C{i}", marker="o", ms=4,
                   label=LABELS.get(arm, arm))
    from matplotlib.ticker import NullFormatter

    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate")
    delays = np.array([row["delay"][0] for rows in result["arms"].values() for row in rows])
    if np.any(np.isfinite(delays) & (delays > 0)):  # no class learned: nothing to log-scale
        left.set_yscale("log")
        left.yaxis.set_minor_formatter(NullFormatter())
    left.set_ylabel("half-time delay (minority / majority)")
    left.set_title(f"delay until t = {result['t1']:g} (batch {result['batch_size']})",
                   fontsize=10)
    right.set_ylabel("fraction of seeds diverged")
    right.set_ylim(-0.03, 1.03)
    right.set_title(f"stability ({result['seeds']} seeds)", fontsize=10)
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
