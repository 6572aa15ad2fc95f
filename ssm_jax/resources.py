"""What the machine has, and what a run needs: memory, read before a run, sweep or
gradient allocates.

psutil is not a dependency: Linux's ``/proc/meminfo`` gives the memory available to a new
process (``MemAvailable``: free memory plus caches the kernel can drop), and elsewhere
``os.sysconf`` gives the physical memory. :func:`estimate_run_bytes` estimates a run's
memory from its shapes (no JAX: the command line refuses a run too large before importing
it), and :func:`check_fits` refuses an estimate beyond the machine's with
:class:`~ssm_jax.options.ConfigError` (exit status 2), naming the estimate.
"""

from __future__ import annotations

import os

from .config import Spec
from .options import ConfigError
from .registry import METHODS


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use, or None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_run_bytes(spec: Spec, num_classes: int, n_pad: int, x64: bool = False) -> int:
    """Estimated device memory of one run inside a vmapped batch, in bytes (an upper guess).

    Counts the arrays that are live during a training step: parameters (``k d + d m (+ k)``
    with m = n or k) held about six times (params, gradients, updates, new params and the
    two scan carries) plus the optimiser slots (1 for momentum, 2 for adam), per-example
    arrays (outputs, labels, residuals: ``4 k n``; features ``2 d n``; masks ``4 n``), the
    saved snapshots ``saves (3 k + 2)``, doubled for temporaries XLA may keep."""
    k, d, n = num_classes, spec.dim, n_pad
    m = k if spec.parametrization == "class" else n
    params = k * d + d * m + (k if spec.bias else 0)
    slots = METHODS[spec.method].slots
    per_example = 4 * k * n + 2 * d * n + 4 * n
    saved = spec.saves * (3 * k + 2) + 3 * k + 2
    if spec.keep_params:
        saved += spec.saves * params
    itemsize = 8 if x64 else 4
    return int(2 * itemsize * ((6 + slots) * params + per_example + saved))


def format_bytes(count: float) -> str:
    """``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError  # unreachable


def check_fits(estimate: float, what: str, available: int | None = None) -> None:
    """Refuse ``what`` when its estimated memory ``estimate`` (bytes) exceeds the memory
    available (:func:`available_memory` unless given)."""
    available = available_memory() if available is None else available
    if available is not None and estimate > available:
        raise ConfigError(f"{what} needs about {format_bytes(estimate)} of memory (estimated "
                          f"from its shapes) but this machine has {format_bytes(available)} "
                          "available; make it smaller")
