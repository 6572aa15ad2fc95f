"""Files: JSON values of results, and the one way this package writes a file.

Every file ssm-jax writes (a run's JSON, a sweep's chunk files, manifest and netCDF file,
the digits experiment's parameters) goes through :func:`atomic_write`, so a reader, or a
sweep started again after a crash, sees either the previous file or the complete new one,
never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np


def to_json_value(value):
    """Convert arrays/numbers to JSON values; NaN and infinities become ``None``."""
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        return to_json_value(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write(path, write: Callable[[str], object]) -> None:
    """Write the file ``path`` atomically: ``write(tmp)`` writes a temporary file ``tmp``
    in the same folder, which is flushed to disk and then renamed to ``path``.

    ``write`` receives a path rather than an open file because some writers (netCDF4)
    open the file themselves. The rename is atomic within one filesystem, hence the same
    folder; ``tmp`` is hidden (``.`` prefix) and ends with ``.tmp`` and ``path``'s
    extension. The folder is created if needed. On any error, including an interrupt,
    ``tmp`` is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    extension = os.path.splitext(path)[1]
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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(data: dict, path) -> None:
    """Write ``data`` as JSON (indent 1) atomically; NaN is refused, so convert values with
    :func:`to_json_value` first."""
    text = json.dumps(data, indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(text.encode()))
