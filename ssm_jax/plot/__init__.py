"""Figures of runs, sweeps, the neural-collapse geometry, meta-learning, the digits
experiment and the resampling-against-reweighting comparison.

pyplot is imported inside the drawing functions and no backend is chosen here, so a
notebook keeps its inline backend; the command line selects the headless Agg backend.
Every function draws on axes it is given or builds a figure that it saves to a path or
returns; nothing is shown. The functions are imported when first used (:mod:`ssm_jax.lazy`).
"""

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .digits import digits_figure, digits_recipes_figure
    from .geometry import (
        collapse_ratio_figure,
        decay_figure,
        geometry_figure,
        minority_figure,
        terminal_figure,
    )
    from .meta import meta_figure
    from .runs import class_accuracy_panel, demo_figure
    from .sampling import resampling_figure
    from .sweeps import accuracy_over_time, delay_heatmap, plot_sweep

__getattr__, __dir__ = lazy.attach(__name__, __file__)

__all__ = [
    "accuracy_over_time",
    "class_accuracy_panel",
    "collapse_ratio_figure",
    "decay_figure",
    "delay_heatmap",
    "demo_figure",
    "digits_figure",
    "digits_recipes_figure",
    "geometry_figure",
    "meta_figure",
    "minority_figure",
    "plot_sweep",
    "resampling_figure",
    "terminal_figure",
]
