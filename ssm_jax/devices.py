"""On a CPU, one JAX device per core by default.

The small matrices of a chunk of runs leave most cores of a single host device idle; a
sweep's runs are independent, so split over one host device per core they use every core
(:mod:`ssm_jax.sweep.execution`; a sweep of 84 runs went from 7.9 s to 6.7 s on 2 cores).
JAX fixes the number of host devices when its backend starts, at the first computation;
:func:`configure` sets it when JAX is imported in a process that imported :mod:`ssm_jax`
(right after JAX's own initialisation, whoever imports it), or at once when ssm_jax is
imported after JAX, which comes before that in every entry point. ``import ssm_jax`` itself
imports no JAX, and neither does this module until :func:`configure` is called.

A count given to JAX is kept: ``JAX_NUM_CPU_DEVICES``, ``jax.config.update(
"jax_num_cpu_devices", N)`` before the import, or ``--xla_force_host_platform_device_count``
in ``XLA_FLAGS``. ``jax.config.update("jax_num_cpu_devices", 1)`` after the import (before
the first computation), or ``ssm-jax sweep --cpu-devices 1``, restores JAX's single CPU
device. A single run uses the first device and is unaffected; sweeps run groups that call
LAPACK on one device (:func:`ssm_jax.sweep.execution.uses_lapack`). On a GPU or TPU the
host devices are extra CPU devices nobody uses, and sweeps run on the accelerators.
"""

from __future__ import annotations

import os

_XLA_FLAG = "--xla_force_host_platform_device_count"


def configure() -> int | None:
    """Set ``jax_num_cpu_devices`` to the number of cores, unless a count was given or the
    backend already runs (then its devices are what they are). Returns the count set, or
    ``None`` when it was left alone."""
    import jax

    if jax.config.jax_num_cpu_devices != -1 or _XLA_FLAG in os.environ.get("XLA_FLAGS", ""):
        return None
    count = os.cpu_count() or 1
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend already runs, with the devices it has
        return None
    return count
