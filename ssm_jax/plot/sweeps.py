"""Figures of a sweep Dataset (:mod:`ssm_jax.sweep`): a delay-ratio heat map over
(ratio, gamma) and balanced accuracy over time for each gamma.

Dimensions other than ``ratio``, ``gamma`` and ``seed`` become separate panels (select a
slice first with ``ds.sel`` or ``--select`` when there are many); seeds are summarised
(median delay ratio; mean accuracy with a min-max band)."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np

from ..config import ConfigError
from ..sweep import delay_ratio, load, select

MAX_PANELS = 24
PLOT_DIMS = ("ratio", "gamma")


def _with_plot_dims(da, ds):
    """Give ``da`` the dims ``ratio`` and ``gamma`` (length 1, from the base config, when
    they were not swept)."""
    base = json.loads(ds.attrs["config"])
    for dim in PLOT_DIMS:
        if dim not in da.dims:
            da = da.expand_dims({dim: [base[dim]]})
    return da


def _panels(da, skip: tuple[str, ...]):
    """``[(title, selection dict)]`` over the product of every dim not in ``skip``."""
    extra = [d for d in da.dims if d not in skip]
    combos = list(itertools.product(*(da[d].values for d in extra)))
    if len(combos) > MAX_PANELS:
        raise ConfigError(f"{len(combos)} panels over {extra}: too many to draw; select a "
                          f"slice, e.g. --select {extra[0]}={da[extra[0]].values[0]}")
    return [(", ".join(f"{d}={v}" for d, v in zip(extra, combo, strict=True)),
             dict(zip(extra, combo, strict=True))) for combo in combos]


def delay_heatmap(ds, time: str = "learn_time"):
    """Figure: median (over seeds) minority/majority delay ratio, ``ratio`` down and
    ``gamma`` across, log colour scale centred on 1 (equal delays). NaN cells (a class
    never learned, or no minority) are left grey and marked."""
    import matplotlib.pyplot as plt

    delay = _with_plot_dims(delay_ratio(ds, time), ds)
    if "seed" in delay.dims:
        delay = delay.median("seed", skipna=True)
    delay = delay.transpose(*PLOT_DIMS, ...)
    panels = _panels(delay, PLOT_DIMS)
    ratios, gammas = delay["ratio"].values, delay["gamma"].values
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    size = (1.2 + 0.9 * len(gammas) * cols, 0.9 + 0.6 * len(ratios) * rows)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=size)
    finite = np.abs(np.log10(delay.values[np.isfinite(delay.values) & (delay.values > 0)]))
    bound = max(float(finite.max()) if finite.size else 1.0, 0.1)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    image = None
    for ax, (title, where) in zip(axes.flat, panels, strict=False):
        values = delay.sel(where).values if where else delay.values
        with np.errstate(divide="ignore", invalid="ignore"):
            logged = np.log10(np.where(values > 0, values, np.nan))
        image = ax.imshow(np.ma.masked_invalid(logged), cmap=cmap, vmin=-bound, vmax=bound,
                          aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(values):
            text = f"{value:.2g}" if np.isfinite(value) else "n/a"
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        ax.set_yticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        ax.set_xlabel("gamma (w_c ∝ n_c^-gamma)")
        ax.set_ylabel("imbalance ratio")
        ax.set_title(title or f"minority/majority {time}", fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    bar = fig.colorbar(image, ax=axes, shrink=0.9)
    bar.set_label(f"log10 delay ratio ({time}); 0 = equal")
    return fig


def accuracy_over_time(ds):
    """Figure: balanced accuracy against t, one line per gamma (mean over seeds, min-max
    band), one panel per ratio (and per value of any other swept dimension)."""
    import matplotlib.pyplot as plt

    acc = _with_plot_dims(ds["balanced_accuracy"], ds)
    t = _with_plot_dims(ds["t"], ds)
    panels = _panels(acc.isel(gamma=0, drop=True), ("ratio", "seed", "save"))
    panels = [(title, where, r) for title, where in panels for r in acc["ratio"].values]
    if len(panels) > MAX_PANELS:
        raise ConfigError(f"{len(panels)} panels: too many to draw; select a slice with "
                          f"--select")
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, sharey=True,
                             figsize=(3.4 * cols, 2.8 * rows))
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, acc.sizes["gamma"]))
    for ax, (title, where, ratio) in zip(axes.flat, panels, strict=False):
        for color, gamma in zip(colors, acc["gamma"].values, strict=True):
            pick = {**where, "ratio": ratio, "gamma": gamma}
            lines = acc.sel(pick)
            times = t.sel(pick)
            if "seed" in lines.dims:
                x = times.isel(seed=0).values
                ax.fill_between(x, lines.min("seed").values, lines.max("seed").values,
                                color=color, alpha=0.2, lw=0)
                lines = lines.mean("seed")
            else:
                x = times.values
            ax.plot(x, lines.values, color=color, lw=1.5, label=f"gamma={gamma:g}")
        ax.set_title(", ".join(filter(None, [f"ratio={ratio:g}", title])), fontsize=9)
        ax.set_xlabel("time t = lr x step")
        ax.set_ylim(-0.03, 1.03)
    for ax in axes[:, 0]:
        ax.set_ylabel("balanced accuracy")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_sweep(path, out_dir=None, *, time: str = "learn_time",
               selections: list[str] | None = None) -> list[str]:
    """Write ``<stem>_delay.png`` and ``<stem>_accuracy.png`` for the sweep file ``path``
    (next to it, or in ``out_dir``); returns the paths written."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConfigError(f"{path!r} does not exist")
    if time not in ("learn_time", "half_time"):
        raise ConfigError(f"time={time!r} is not one of 'learn_time', 'half_time'")
    ds = select(load(path), selections)
    import matplotlib.pyplot as plt  # after the checks: a refusal imports no matplotlib
    out_dir = os.fspath(out_dir) if out_dir else os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    figures = {"delay": delay_heatmap(ds, time), "accuracy": accuracy_over_time(ds)}
    written = []
    for name, fig in figures.items():
        target = os.path.join(out_dir, f"{stem}_{name}.png")
        fig.savefig(target, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(target)
    return written
