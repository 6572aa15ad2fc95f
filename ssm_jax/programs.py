"""Compiled single-run programs kept on disk and loaded without tracing.

JAX's persistent compilation cache (:mod:`ssm_jax.cache`) skips XLA's compilation, but to
find an entry every process still traces the function and lowers it to XLA, which is about
a quarter of a warm default ``ssm-jax simulate`` on a 2-core CPU. For single runs
(:func:`ssm_jax.simulate.simulate`) this store keeps the compiled executable itself
(``jax.experimental.serialize_executable``) and a later process loads it directly.

An entry is found by a SHA-256 key over everything that determines the program:

* the program's name and its static arguments (the :class:`~ssm_jax.config.Spec`, by
  ``repr``);
* the tree structure, shapes, dtypes and weak types of its array arguments;
* the source of the installed ``ssm_jax`` package (every ``.py`` file), so that editing
  the package invalidates every entry;
* the JAX and jaxlib versions, the backend (platform, version, device kind), ``XLA_FLAGS``
  and the JAX settings that change a traced program (:data:`CONFIG`).

Under ``jax_disable_jit``, JAX's NaN / Inf debugging or a ``jax_default_device`` the store
is bypassed (the program is traced and compiled as usual). It lives in
the ``programs`` subfolder of the compilation cache folder and is off with it
(``SSM_JAX_CACHE_DIR=``). Entries are written atomically (a temporary file renamed), so
processes sharing the folder never read half an entry; beyond :data:`MAX_ENTRIES` the least
recently used are removed. An entry names its key and is checked against it when read; one
that cannot be read, loaded or run is reported with a :class:`~ssm_jax.cache.CacheWarning`,
removed, and the program compiled again; a folder that cannot
be written is reported the same way and the run goes on. Only a program XLA has just
compiled is stored: one JAX read back from its own cache cannot be serialised again, and a
program with host callbacks cannot be serialised at all; these are compiled (or read from
JAX's cache) as before. As with JAX's own cache, an entry
is native code: keep the folder private to its user.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import threading
import warnings
import zlib

from . import cache, io

#: Subfolder of the compilation cache folder holding the entries.
SUBDIR = "programs"

#: Entries kept; beyond it the least recently used are removed. An entry of the default
#: trajectory is about 0.2 MiB compressed.
MAX_ENTRIES = 200

#: JAX settings that change what a function traces or lowers to.
CONFIG = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
          "jax_threefry_partitionable", "jax_numpy_rank_promotion",
          "jax_numpy_dtype_promotion", "jax_enable_checks", "jax_softmax_custom_jvp")

_SUFFIX = ".xla"


def folder() -> str | None:
    """The store's folder, or ``None`` when the compilation cache is off."""
    root = cache.cache_dir()
    return None if root is None else os.path.join(root, SUBDIR)


@functools.cache
def source_fingerprint() -> str:
    """SHA-256 of every ``.py`` file of the installed ``ssm_jax`` package (paths and
    contents)."""
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def key_of(name: str, static, args: tuple) -> str:
    """The store key of program ``name`` called with ``static`` and the array ``args``."""
    import jax
    import jaxlib

    leaves, treedef = jax.tree.flatten(args)
    device = jax.devices()[0]
    parts = [
        name, repr(static), str(treedef), [repr(jax.typeof(leaf)) for leaf in leaves],
        source_fingerprint(), jax.__version__, jaxlib.__version__, device.platform,
        device.client.platform_version, device.device_kind, os.environ.get("XLA_FLAGS", ""),
        [(setting, repr(getattr(jax.config, setting, None))) for setting in CONFIG],
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _bypassed() -> bool:
    import jax

    return bool(jax.config.jax_disable_jit or jax.config.jax_debug_nans
                or jax.config.jax_debug_infs or jax.config.jax_default_device is not None)


def _load(path: str, device):
    from jax.experimental import serialize_executable

    with open(path, "rb") as f:
        key, serialized, in_tree, out_tree = pickle.loads(zlib.decompress(f.read()))
    if key != os.path.basename(path):
        raise ValueError(f"the entry holds the program {key}")
    compiled = serialize_executable.deserialize_and_load(
        serialized, in_tree, out_tree, execution_devices=[device])
    with contextlib.suppress(OSError):
        os.utime(path)  # least recently *used* goes first
    return compiled


def _serialized(compiled, path: str) -> bytes | None:
    """The entry of a compiled program for ``path`` (which it names, and is checked against
    when read), or ``None`` where XLA cannot serialise it (host callbacks, as in equinox's
    runtime errors)."""
    from jax.experimental import serialize_executable

    try:
        entry = (os.path.basename(path), *serialize_executable.serialize(compiled))
        return zlib.compress(pickle.dumps(entry), 1)
    except Exception:
        return None


def _store(path: str, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    io.atomic_write(path, write)
    _prune(os.path.dirname(path))


def _prune(directory: str) -> None:
    entries = []
    for name in os.listdir(directory):
        if name.endswith(_SUFFIX):
            with contextlib.suppress(OSError):
                entries.append((os.stat(os.path.join(directory, name)).st_mtime, name))
    for _, name in sorted(entries)[:max(0, len(entries) - MAX_ENTRIES)]:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, name))


_HITS = threading.local()


@functools.cache
def _count_cache_hits() -> None:
    """Count, per thread, the programs JAX reads from its persistent cache (registered once
    per process): an executable read back from that cache cannot be serialised again (XLA's
    CPU client then loses its kernels: "Function ... not found" when it runs), so it is not
    stored."""
    import jax

    def listener(event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _HITS.count = getattr(_HITS, "count", 0) + 1

    jax.monitoring.register_event_listener(listener)


def _warn(message: str) -> None:
    warnings.warn(f"ssm-jax: {message}", cache.CacheWarning, stacklevel=3)


def call(name: str, jitted, static, *args):
    """``jitted(static, *args)``, with the compiled program read from the store when an
    entry exists and written to it when not. ``jitted`` is a :func:`jax.jit` function
    whose first argument is static; ``args`` are its array arguments (pytrees). The result
    is computed before it is returned (``block_until_ready``)."""
    import jax

    directory = folder()
    if directory is None or _bypassed():
        return jitted(static, *jax.tree.map(jax.numpy.asarray, args))
    device = jax.devices()[0]
    path = os.path.join(directory, f"{name}-{key_of(name, static, args)}{_SUFFIX}")
    if os.path.exists(path):
        try:
            return jax.block_until_ready(_load(path, device)(*args))
        except Exception as err:  # a damaged entry: remove it and compile again
            _warn(f"the stored program {path} could not be loaded or run ({err!r}); "
                  "removed, and compiled again.")
            with contextlib.suppress(OSError):
                os.remove(path)
    _count_cache_hits()
    _HITS.count = 0
    compiled = jitted.lower(static, *args).compile()
    data = _serialized(compiled, path) if _HITS.count == 0 else None
    if data is not None:
        try:
            _store(path, data)
        except Exception as err:  # the run goes on without storing its program
            _warn(f"the compiled program could not be stored in {directory} ({err!r}).")
    return jax.block_until_ready(compiled(*args))
