"""The persistent compilation cache: compiled programs kept on disk between processes.

About half of a default ``ssm-jax simulate`` is XLA compiling the trajectory (1.4 s of
2.6 s on a 2-core CPU); with the program read back from disk a second invocation skips it.
(Single runs go one step further and skip tracing too: :mod:`ssm_jax.programs`.) The
cache is JAX's own (``jax_compilation_cache_dir``); this module only chooses its folder
and thresholds, once, when :mod:`ssm_jax` is imported. That is the one place every entry
point (the command line, the Python API, sweeps, notebooks) passes through before it
compiles anything, and JAX reads the folder lazily, at the first compilation that looks
for it, so the setting also holds in a process that used JAX before importing ssm_jax.

The folder, in order of precedence:

* ``SSM_JAX_CACHE_DIR=`` (set and empty): no persistent cache at all;
* a folder already given to JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` before the import) is kept;
* ``SSM_JAX_CACHE_DIR=PATH``;
* ``$XDG_CACHE_HOME/ssm-jax/xla``, by default ``~/.cache/ssm-jax/xla``.

Failures never fail a run. A folder that cannot be created or written is reported with one
:class:`CacheWarning` and the process compiles without a cache; an entry JAX cannot read
(corrupted, truncated) or write (a full disk) is reported by JAX with a warning and the
program is compiled as if the cache were empty (``jax_raise_persistent_cache_errors`` is
off by default).

Processes sharing the folder: JAX writes an entry with a plain ``write_bytes`` (not a
rename), so without a lock a reader can see a half-written file. With a size bound
(``jax_compilation_cache_max_size``, set here) JAX's LRU cache takes a file lock
(``filelock``) around every read and write, and evicts the least recently read entries
beyond the bound, which also keeps the folder from growing without limit.
"""

from __future__ import annotations

import os
import warnings

#: Environment variable choosing the folder; set and empty, it turns the cache off.
ENV_VAR = "SSM_JAX_CACHE_DIR"

#: Programs that compile faster than this are not written: reading an entry back costs a
#: few milliseconds, about what compiling the small helper programs (dtype conversions,
#: key setup: about 10 ms on a 2-core CPU) costs, while the programs worth keeping take
#: seconds (the default trajectory: 1.4 s). JAX's own default, 1 s, would miss the smaller
#: trajectories on a fast machine.
MIN_COMPILE_TIME_SECS = 0.1

#: The folder's bound, beyond which the least recently used entries are evicted. A
#: trajectory's entry is about 0.1 MiB; a sweep's programs a few MiB.
MAX_SIZE_BYTES = 2 * 2**30


class CacheWarning(UserWarning):
    """The compilation cache folder is unusable; programs are compiled without it."""


def default_dir() -> str:
    """``$XDG_CACHE_HOME/ssm-jax/xla`` (``~/.cache/ssm-jax/xla`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ssm-jax", "xla")


def cache_dir() -> str | None:
    """The folder this process caches compiled programs in, or ``None`` without a cache."""
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir


def configure() -> str | None:
    """Point JAX's persistent compilation cache at ssm-jax's folder (see the module doc).

    Settings JAX was given through its own environment variables (the minimum compile time
    and entry size, the size bound) are kept. Returns the folder, or ``None``."""
    import jax

    chosen = os.environ.get(ENV_VAR)
    if chosen == "":
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if not jax.config.jax_compilation_cache_dir:
        path = os.path.abspath(os.path.expanduser(chosen or default_dir()))
        try:
            os.makedirs(path, exist_ok=True)
            if not os.access(path, os.W_OK):
                raise PermissionError(f"no write permission on {path}")
        except OSError as err:
            warnings.warn(f"ssm-jax: the compilation cache folder {path} is unusable ({err}); "
                          f"compiling without a persistent cache. Set {ENV_VAR} to another "
                          "folder, or to nothing to turn the cache off.", CacheWarning,
                          stacklevel=2)
            return None
        jax.config.update("jax_compilation_cache_dir", path)
    for name, value in [("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS),
                        # -1: no size threshold, and JAX does not override it.
                        ("jax_persistent_cache_min_entry_size_bytes", -1),
                        ("jax_compilation_cache_max_size", MAX_SIZE_BYTES)]:
        if name.upper() not in os.environ:
            jax.config.update(name, value)
    return cache_dir()
