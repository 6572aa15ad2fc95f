"""Files: JSON values of results, and the one way this package writes a file.

Every file ssm-jax writes (a run's JSON, a sweep's chunk files, manifest and netCDF file,
the digits experiment's parameters) goes through :func:`atomic_write`, so a reader, or a
sweep started again after a crash, sees either the previous file or the complete new one,
never a torn one; and it only ever creates a file or replaces a regular file (never a
device such as ``/dev/full``, a folder or a socket). Every output path a command is given
is checked by :func:`check_output_path` when the command line is parsed, before any work.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from .options import ConfigError


def _array_types() -> tuple[type, ...]:
    """numpy's and JAX's array types, of those imported (an array of a library that is
    not imported cannot exist, so this module imports neither)."""
    types: tuple[type, ...] = ()
    if (np := sys.modules.get("numpy")) is not None:
        types += (np.ndarray, np.generic)
    if (jax := sys.modules.get("jax")) is not None and hasattr(jax, "Array"):
        types += (jax.Array,)
    return types


def to_json_value(value):
    """Convert arrays/numbers to JSON values; NaN and infinities become ``None``."""
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, _array_types()):
        import numpy as np

        return to_json_value(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _existing_ancestor(path: str) -> str:
    """The nearest folder above ``path`` that exists (the one a new path is created in);
    a file found on the way up is refused (a path below a file cannot be created)."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"output {path!r}: {parent!r} is not a folder")
    return parent


def check_output_path(path, *, folder: bool = False) -> str:
    """Check an output path before any work and return it (exit status 2 otherwise).

    A file must be absent or a regular file; a folder (``folder=True``) absent or a folder;
    and the nearest existing folder above it must take a new file, which is tried by
    creating and removing a hidden temporary file there (``os.access`` answers yes for root
    everywhere, ``/proc`` included). Nothing is left behind. Raises :class:`ConfigError`
    naming the path and why."""
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError("output path '' is empty: give a file or folder name")
    if os.path.lexists(text):
        # A folder may be reached through a link; a file is replaced, so it must be one.
        info = os.stat(text) if folder and os.path.exists(text) else os.lstat(text)
        if folder and not stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"output folder {text!r} exists and is not a folder")
        if not folder and not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else
                    "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file")
            raise ConfigError(f"output file {text!r} is {kind}: only a regular file is "
                              "replaced")
    where = text if folder and os.path.isdir(text) else _existing_ancestor(text)
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".", suffix=".probe")
    except OSError as err:
        raise ConfigError(f"output {text!r} cannot be written: {where!r}: "
                          f"{err.strerror or err}") from None
    os.close(fd)
    os.remove(probe)
    return text


def _refuse_non_regular(path: str) -> None:
    """Refuse to replace anything but a regular file (a rename would replace a device node
    or a symbolic link itself)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path!r} is not a regular file: ssm-jax only replaces regular "
                          "files")


def atomic_write(path, write: Callable[[str], object]) -> None:
    """Write the file ``path`` atomically: ``write(tmp)`` writes a temporary file ``tmp``
    in the same folder, which is flushed to disk and then renamed to ``path``.

    ``write`` receives a path rather than an open file because some writers (netCDF4)
    open the file themselves. The rename is atomic within one filesystem, hence the same
    folder; ``tmp`` is hidden (``.`` prefix) and ends with ``.tmp`` and ``path``'s
    extension. The folder is created if needed. Only a regular file is replaced (anything
    else at ``path`` raises :class:`ConfigError` before writing). On any error, including
    an interrupt, ``tmp`` is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    if not path:
        raise ConfigError("output path '' is empty")
    _refuse_non_regular(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    extension = os.path.splitext(path)[1]
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp" + extension)
    os.close(fd)
    try:
        write(tmp)
        # Data must reach the disk before the rename does, or a crash can leave a
        # complete-looking name with empty contents.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _refuse_non_regular(path)  # again: something may have appeared while writing
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(data: dict, path) -> None:
    """Write ``data`` as JSON (indent 1) atomically; NaN is refused, so convert values with
    :func:`to_json_value` first."""
    import json

    text = json.dumps(data, indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(text.encode()))
