"""Figure of a meta-optimisation over stopping times (:mod:`ssm_jax.meta`)."""

from __future__ import annotations

import os

import numpy as np


def meta_figure(record: dict, path) -> None:
    """Objective history per stopping time (left) and the learned value against T (right),
    of a record of :func:`ssm_jax.meta.learn_at_times`, saved to ``path``."""
    import matplotlib.pyplot as plt

    runs = record["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, r in enumerate(runs):
        left.plot(r["history"]["objective"], color=f"C{i % 10}", label=f"T = {r['t1']:.4g}")
    left.set_xlabel("meta-iteration")
    left.set_ylabel(record["objective"])
    left.legend(fontsize=8)
    t = [r["t1"] for r in runs]
    learned = np.asarray([r["learned"] for r in runs], dtype=float)
    if record["learn"] == "gamma":
        right.plot(t, learned, "o-")
        right.set_ylabel("learned gamma")
    else:
        for c in range(learned.shape[1]):
            right.plot(t, learned[:, c], "o-", lw=1, label=f"class {c}")
        right.set_ylabel("learned weight")
        right.legend(fontsize=7, ncol=2)
    right.set_xlabel("stopping time T")
    if len(t) > 1 and min(t) > 0:
        right.set_xscale("log")
    fig.suptitle(f"meta-learning {record['learn']} for {record['objective']}", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
