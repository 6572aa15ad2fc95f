"""ssm-jax: training dynamics of classifiers on class-imbalanced data, in JAX.

The public API is re-exported here and imported when a name is first used (PEP 562,
:mod:`ssm_jax.lazy`), so ``import ssm_jax`` imports neither JAX nor numpy: the command line
parses and validates its input before the numerics are imported.

Two process-wide JAX defaults are set when JAX is imported, before anything is compiled:
the persistent compilation cache (:mod:`ssm_jax.cache`) and, on a CPU, one device per core
(:mod:`ssm_jax.devices`). Importing ssm_jax arranges it: if JAX is imported already they are
set at once; otherwise they are set right after JAX's own initialisation, whoever imports
it (ssm_jax's numerics, a notebook, a user's ``import jax``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from . import cache, devices, lazy

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy.attach(__name__, __file__)

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


class _Package(types.ModuleType):
    """The package's module type: its attribute ``simulate`` is the function
    :func:`ssm_jax.simulate.simulate`, as it always was, even after the submodule of the
    same name is imported (the import system then binds the submodule here, which is
    ignored; any other value set, e.g. by a test's monkeypatch, is kept)."""

    @property
    def simulate(self):
        if "simulate" in self.__dict__:
            return self.__dict__["simulate"]
        return importlib.import_module(".simulate", __name__).simulate

    @simulate.setter
    def simulate(self, value) -> None:
        if value is sys.modules.get(f"{__name__}.simulate"):
            return
        self.__dict__["simulate"] = value

    @simulate.deleter
    def simulate(self) -> None:
        self.__dict__.pop("simulate", None)


sys.modules[__name__].__class__ = _Package


def configure_jax() -> None:
    """Set ssm-jax's JAX defaults (:func:`ssm_jax.cache.configure`,
    :func:`ssm_jax.devices.configure`); called when JAX is imported (module docstring)."""
    cache.configure()
    devices.configure()


class _ConfigureJaxOnImport:
    """A meta path finder (``sys.meta_path``) that finds no module itself. Asked for ``jax``
    (once), it lets the other finders find it and makes its loader call
    :func:`configure_jax` right after JAX's ``__init__`` ran, before the code that imported
    JAX gets it back."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "jax":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_configure(module) -> None:
            exec_module(module)
            configure_jax()

        spec.loader.exec_module = exec_then_configure
        return spec


if "jax" in sys.modules:
    configure_jax()
elif not any(isinstance(finder, _ConfigureJaxOnImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _ConfigureJaxOnImport())
