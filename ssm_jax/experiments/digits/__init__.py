r"""Real-data validation: class-imbalanced handwritten digits with a small network.

The UFM predicts that under plain ERM the majority classes are learned first and the
minorities lag (mode c grows at a rate set by the label matrix's singular value
:math:`\sqrt{n_c}`), that reweighting removes the lag, and that the advantage is an early-
training one. This module checks that on a real network and real images:

* **Data.** scikit-learn's bundled digits (8 x 8 images, 10 classes, 1797 examples, no
  download). Per digit, ``test_per_class`` random examples form a balanced test set; of the
  rest, a majority digit keeps ``train_per_class`` and a minority digit keeps
  ``max(1, round(train_per_class / ratio))`` (a step imbalance, the core's
  :func:`ssm_jax.problem.step_counts`). Pixels are standardised with training statistics.
* **Model.** An MLP ``64 -> hidden... -> 10`` with ReLU; the last hidden layer is the
  feature matrix ``H`` (d x n, one column per example, as in the UFM) and the last layer is
  the classifier ``W`` (k x d) with bias ``b``: logits ``Z = W H + b``.
* **Training.** Full-batch optax (``gd``, ``momentum`` or ``adam``, the core's
  :func:`ssm_jax.dynamics.discrete.optimizer`) inside ``lax.scan``
  (:func:`ssm_jax.dynamics.discrete.run`) on the core's objective convention
  :math:`L = \frac1n\sum_i s_i\,\omega_{y_i}(t)\,\ell(z_i + \tau\log\pi, y_i)`
  (+ weight decay on the weight matrices), with class weights from
  :func:`ssm_jax.weights.class_weights`. A recipe (:data:`RECIPES`, the names of
  ``--weightings``) sets the weights and when they apply, tau, the loss and the sampler:
  ``erm`` (:math:`\omega = 1, \tau = 0`), ``gamma=1/2`` and ``gamma=1`` (:math:`\omega_c
  \propto n_c^{-\gamma}`), ``logit_adjusted`` (:math:`\omega = 1`, additive
  :math:`\tau\log\pi_c` on the training logits, Menon et al. 2021; predictions use the
  plain logits), ``resample`` (class-balanced sampling), ``drw`` (ERM, then
  :math:`\gamma = 1` from ``reweight_from``), ``reweight_then_erm`` (:math:`\gamma = 1`
  until ``reweight_until``, then ERM), ``ldam`` and ``ldam_drw`` (the LDAM loss, Cao et
  al. 2019). Minibatches (:math:`s_i`, :mod:`ssm_jax.sampling`) with ``batch_size`` and
  ``sampling``. Every recipe and seed runs in one program (each recipe is a set of per-run
  arrays, :mod:`.recipes`); a seed gives every recipe the same initialisation.
* **Recorded at each checkpoint** (see :func:`observe_fn`): per-class and balanced test
  and train accuracy, per-class train loss (unweighted CE), own output, the UFM mode
  strengths :math:`a_c = e_c^\top W H v_c` along the label matrix's singular vectors
  (:math:`Y = \sum_c \sqrt{n_c}\, e_c v_c^\top`, :math:`v_c = 1_c/\sqrt{n_c}`), the
  classifier rows and class-mean features, and neural collapse NC1.
* **Bridge.** :func:`bridge` runs the UFM (the core's pieces, the same class counts and
  recipe, :func:`ufm_recipe_config`) and compares its minority/majority delay ratio, and
  the closed form :math:`(n_{maj}/n_{min})^{1/2-\gamma}` of the sample-parametrised UFM,
  with the delay measured on the network.

Modules, one idea each: :mod:`.config` (:class:`DigitsConfig` and its validation),
:mod:`.schedule` (warm-up and time), :mod:`.data`, :mod:`.network` (the MLP, its objective
and observations), :mod:`.recipes` (recipes as per-run arrays), :mod:`.training`,
:mod:`.ufm` (the bridge), :mod:`.results` and :mod:`.report`. Their public names are
re-exported here, imported when first used (:mod:`ssm_jax.lazy`: the command line reads
:mod:`.config` without JAX); the figures are :func:`ssm_jax.plot.digits_figure` and
:func:`ssm_jax.plot.digits_recipes_figure`.
"""

from typing import TYPE_CHECKING

from ... import lazy

if TYPE_CHECKING:
    from .config import (
        METHODS,
        NUM_CLASSES,
        PIXELS,
        RECIPES,
        SWITCH_FRACTION,
        WEIGHTINGS,
        DigitsConfig,
        Recipe,
        validate_digits,
    )
    from .data import DigitsData, load_data
    from .network import (
        Params,
        init_mlp,
        neural_collapse,
        objective_fn,
        observe_fn,
        penultimate,
        weight_decay_penalty,
    )
    from .recipes import RecipeArrays, recipe_arrays
    from .report import print_report
    from .results import RECORDED_PER_CLASS, DigitsResult, run_digits, save_params
    from .schedule import elapsed_multiplier, lr_multiplier
    from .training import problem_of_labels, resolve_vmap_size, train_all, weighting_arrays
    from .ufm import (
        UFM_PARAMETRIZATIONS,
        bridge,
        bridge_summary,
        closed_form_delay,
        effective_gamma,
        fit_exponent,
        loss_time,
        ufm_config,
        ufm_recipe_config,
        ufm_trajectories,
    )

__getattr__, __dir__ = lazy.attach(__name__, __file__)

__all__ = [
    "METHODS",
    "NUM_CLASSES",
    "PIXELS",
    "RECIPES",
    "RECORDED_PER_CLASS",
    "SWITCH_FRACTION",
    "UFM_PARAMETRIZATIONS",
    "WEIGHTINGS",
    "DigitsConfig",
    "DigitsData",
    "DigitsResult",
    "Params",
    "Recipe",
    "RecipeArrays",
    "bridge",
    "bridge_summary",
    "closed_form_delay",
    "effective_gamma",
    "elapsed_multiplier",
    "fit_exponent",
    "init_mlp",
    "load_data",
    "loss_time",
    "lr_multiplier",
    "neural_collapse",
    "objective_fn",
    "observe_fn",
    "penultimate",
    "print_report",
    "problem_of_labels",
    "recipe_arrays",
    "resolve_vmap_size",
    "run_digits",
    "save_params",
    "train_all",
    "ufm_config",
    "ufm_recipe_config",
    "ufm_trajectories",
    "validate_digits",
    "weight_decay_penalty",
    "weighting_arrays",
]
