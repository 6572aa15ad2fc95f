"""ssm-jax: training dynamics of classifiers on class-imbalanced data, in JAX.

The public API is re-exported here; modules hold the implementation. Importing the package
sets two process-wide JAX defaults before anything is compiled: the persistent compilation
cache (:mod:`ssm_jax.cache`) and, on a CPU, one device per core (:mod:`ssm_jax.devices`).
"""

from . import cache, devices
from .config import Config, ConfigError
from .problem import Problem, class_counts_of, longtail_counts, make_problem, step_counts
from .simulate import (
    Numeric,
    Result,
    Spec,
    Trajectory,
    numeric_of,
    problem_of,
    simulate,
    spec_of,
    trajectory,
    trajectory_jit,
)
from .weights import class_weights

# Importing the modules above compiles nothing; these must run before the first program.
cache.configure()
devices.configure()

__all__ = [
    "Config",
    "ConfigError",
    "Numeric",
    "Problem",
    "Result",
    "Spec",
    "Trajectory",
    "class_counts_of",
    "class_weights",
    "longtail_counts",
    "make_problem",
    "numeric_of",
    "problem_of",
    "simulate",
    "spec_of",
    "step_counts",
    "trajectory",
    "trajectory_jit",
]

__version__ = "0.1.0"
