"""Differentiating through training: objectives at a stopping time, their gradients, and
meta-learning the weighting.

A *meta-objective* is a scalar function of the outputs ``Z(T)`` of a run at its stopping
time ``T``. It is evaluated as a pure function of the run's arrays and differentiated with
``jax.value_and_grad``, so a whole sweep of gradients is one ``vmap``-ed call; meta-learning
descends that gradient with optax. Derivations and measurements: ``docs/meta.md``.

Modules, one idea each: :mod:`~ssm_jax.meta.request` (what a request may ask, and its
checks, without JAX), :mod:`~ssm_jax.meta.objectives` (the objectives and the minority
classes they use), :mod:`~ssm_jax.meta.differentiate` (the run to T, its value and gradient,
from arrays or from a :class:`~ssm_jax.config.Config`) and :mod:`~ssm_jax.meta.learning`
(meta-optimisation of gamma or the class weights, at one or several stopping times). Their
public names are re-exported here and imported when first used (:mod:`ssm_jax.lazy`).
"""

from typing import TYPE_CHECKING

from .. import lazy

if TYPE_CHECKING:
    from .differentiate import (
        MetaGradient,
        final_params,
        gradient,
        inputs_of,
        meta_spec_of,
        ratio_tangent_of,
        value,
        value_and_grad,
        value_and_grad_jit,
    )
    from .learning import (
        META_OPTIMIZERS,
        LearnResult,
        learn,
        learn_at_times,
        learn_step,
        meta_loss,
        meta_sign,
        run_record,
        unpack_learned,
    )
    from .objectives import objective_value, smooth_margin_score
    from .request import (
        DEFAULT_TEMPERATURE,
        LEARNABLE,
        META_OPTIMIZER_NAMES,
        NUMERIC_WRT,
        OBJECTIVES,
        WRT,
        check_config,
        check_learning,
        check_objective,
        check_temperature,
        check_wrt,
        failure_reason,
        is_flow,
        learning_config,
        learning_configs,
        stop_time,
        with_t1,
    )

__getattr__, __dir__ = lazy.attach(__name__, __file__)

__all__ = [
    "DEFAULT_TEMPERATURE",
    "LEARNABLE",
    "META_OPTIMIZERS",
    "META_OPTIMIZER_NAMES",
    "NUMERIC_WRT",
    "OBJECTIVES",
    "WRT",
    "LearnResult",
    "MetaGradient",
    "check_config",
    "check_learning",
    "check_objective",
    "check_temperature",
    "check_wrt",
    "failure_reason",
    "final_params",
    "gradient",
    "inputs_of",
    "is_flow",
    "learn",
    "learn_at_times",
    "learn_step",
    "learning_config",
    "learning_configs",
    "meta_loss",
    "meta_sign",
    "meta_spec_of",
    "objective_value",
    "ratio_tangent_of",
    "run_record",
    "smooth_margin_score",
    "stop_time",
    "unpack_learned",
    "value",
    "value_and_grad",
    "value_and_grad_jit",
    "with_t1",
]
