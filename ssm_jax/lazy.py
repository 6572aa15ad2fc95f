"""Packages whose public names are imported when first used (PEP 562).

A package declares its re-exports once, as ordinary imports inside ``if TYPE_CHECKING:``
(what type checkers, editors and the API docs read) and lists them in ``__all__``; at run
time :func:`attach` reads that block from the package's source and imports a name's module
the first time the name is used. Importing the package itself then imports none of its
modules, so ``import ssm_jax`` (and the command line, which parses and validates its input
first) imports no JAX. Submodules stay reachable as attributes (``ssm_jax.sweep.planning``)
as they were when the packages imported everything.

This is scientific-python's lazy-loading pattern (SPEC 1, ``lazy_loader.attach_stub``),
with the declarations in the ``__init__`` itself rather than in a stub file.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def declared(path: str) -> dict[str, tuple[str, str | None]]:
    """The re-exports of the package ``__init__`` at ``path``: ``{name: (relative module,
    attribute)}`` of each ``from .module import attribute [as name]`` inside ``if
    TYPE_CHECKING:`` (``attribute`` None for ``from . import module``)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    exports: dict[str, tuple[str, str | None]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.ImportFrom) and statement.level >= 1):
                continue
            dots = "." * statement.level
            for alias in statement.names:
                if statement.module is None:
                    exports[alias.asname or alias.name] = (dots + alias.name, None)
                else:
                    exports[alias.asname or alias.name] = (dots + statement.module, alias.name)
    return exports


def attach(package: str, path: str) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package named ``package`` whose ``__init__`` is
    ``path``: a declared name imports its module (once; the value is then kept in the
    package), any other name is tried as a submodule."""
    exports: dict[str, tuple[str, str | None]] | None = None

    def __getattr__(name: str) -> object:
        nonlocal exports
        if exports is None:
            exports = declared(path)
        if name in exports:
            module, attribute = exports[name]
            value = importlib.import_module(module, package)
            if attribute is not None:
                value = getattr(value, attribute)
        else:
            try:
                value = importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        vars(sys.modules[package])[name] = value
        return value

    def __dir__() -> list[str]:
        nonlocal exports
        if exports is None:
            exports = declared(path)
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
