"""What the machine has: its memory, read before a run, sweep or gradient allocates.

psutil is not a dependency: Linux's ``/proc/meminfo`` gives the memory available to a new
process (``MemAvailable``: free memory plus caches the kernel can drop), and elsewhere
``os.sysconf`` gives the physical memory. :func:`check_fits` refuses an estimate beyond it
with :class:`~ssm_jax.options.ConfigError` (exit status 2), naming the estimate.
"""

from __future__ import annotations

import os

from .options import ConfigError


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
