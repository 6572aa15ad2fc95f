"""The parts of an unfinished sweep: a folder of chunk files, the manifest they belong to,
and the lock of the process that writes them.

Each finished chunk is written atomically (:func:`ssm_jax.io.atomic_write`) to
``<out>.parts/chunk-NNNNNN.npz`` next to a ``manifest.json`` holding the hash of the sweep,
its chunk size, buckets and matrix-product precision. Started again, the same sweep finds
the chunks it still has to compute (:func:`done_chunks`); a different sweep is refused
(:class:`ConfigError`), since mixing the parts of two sweeps would give a file that is
neither.

The manifest alone cannot keep a sweep whole: it can be deleted, and a file can be
truncated, damaged or put in another chunk's place. So every chunk file carries the hash of
its sweep, its run ids (``index``) and a checksum of all its arrays, and a chunk is used
only once :func:`read_chunk` has checked all three against the plan. A chunk that fails is
reported (:class:`StoreWarning`), removed and computed again; nothing foreign is ever
assembled.

While a sweep runs, its process 0 (the one that assembles the file) holds ``<out>.lock``
(:func:`writer_lock`), so a second sweep into the same ``out`` is refused at once instead
of racing it. The lock is released when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..io import atomic_write
from .definition import FORMAT_VERSION
from .planning import Chunk, Plan, plan

# Names of a chunk file's own records, beside the arrays of compute_chunk.
SWEEP_HASH = "_sweep_hash"
CHECKSUM = "_checksum"


class StoreWarning(UserWarning):
    """A chunk file that is not what the plan expects: it is removed and computed again."""


class ChunkError(RuntimeError):
    """A chunk file that fails :func:`read_chunk`'s checks; the message says which."""


def parts_dir(out) -> str:
    """The folder of the parts of the sweep whose file is ``out``."""
    return os.fspath(out) + ".parts"


def chunk_path(parts: str, chunk_id: int) -> str:
    """The file of chunk ``chunk_id`` in the parts folder ``parts``."""
    return os.path.join(parts, f"chunk-{chunk_id:06d}.npz")


def lock_path(out) -> str:
    """The lock file of the sweep whose file is ``out``."""
    return os.fspath(out) + ".lock"


@contextlib.contextmanager
def writer_lock(out) -> Iterator[None]:
    """Hold ``<out>.lock`` (an OS file lock, ``filelock``) for the body, or raise
    :class:`ConfigError` at once if another process holds it.

    The second of two sweeps into one ``out`` is refused rather than made to wait: it would
    otherwise wait for as long as the first runs, and then find a finished file that is
    either its own (nothing to do) or another sweep's (refused anyway). The lock file is
    left in place: removing it while another process opens it would let two hold it."""
    from filelock import FileLock, Timeout

    path = lock_path(out)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(f"another sweep is writing {os.fspath(out)} (it holds {path}): "
                          f"wait for it to finish, or choose another --out") from None
    try:
        yield
    finally:
        lock.release()


def _describe_difference(old: dict, new: dict) -> str:
    old_flat = {**{f"{k}": v for k, v in old.get("base", {}).items()},
                **{f"{k} (swept)": v for k, v in old.get("axes", {}).items()}}
    new_flat = {**{f"{k}": v for k, v in new.get("base", {}).items()},
                **{f"{k} (swept)": v for k, v in new.get("axes", {}).items()}}
    diffs = [f"{k}: {old_flat.get(k, '-')!r} there, {new_flat.get(k, '-')!r} now"
             for k in sorted(set(old_flat) | set(new_flat)) if old_flat.get(k) != new_flat.get(k)]
    return "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "") or "format version"


def _read_manifest(path: str) -> dict | None:
    """The manifest at ``path``; ``None`` (reported) when it is not a readable one, which
    the chunks' own hashes make safe: the manifest is then written anew."""
    try:
        with open(path) as f:
            manifest = json.load(f)
        if isinstance(manifest, dict) and "config_hash" in manifest:
            return manifest
        reason = "is not a sweep manifest"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = f"is unreadable ({err})"
    warnings.warn(f"{path} {reason}; writing it again (each chunk file is checked on its "
                  f"own)", StoreWarning, stacklevel=3)
    return None


def open_parts(out: str, the_plan: Plan) -> tuple[str, Plan]:
    """Create ``<out>.parts`` with its manifest, or check an existing one matches the sweep.

    Resuming keeps the chunk size, buckets and matrix-product precision recorded in the
    manifest (so a different memory budget or device does not change the chunk layout, and
    every chunk of a file is computed at one precision). Returns the parts folder and
    the plan to follow. Raises :class:`ConfigError` naming the options that differ when the
    manifest is another sweep's."""
    parts = parts_dir(out)
    manifest_path = os.path.join(parts, "manifest.json")
    sweep = the_plan.sweep
    manifest = _read_manifest(manifest_path) if os.path.exists(manifest_path) else None
    if manifest is not None:
        if manifest.get("config_hash") != sweep.config_hash:
            raise ConfigError(
                f"{parts} holds the unfinished parts of a different sweep "
                f"({_describe_difference(manifest.get('sweep', {}), sweep.to_dict())}); "
                f"refusing to mix them: rerun the original command to finish it, or remove "
                f"{parts} (and choose another --out) to start this one")
        recorded = manifest.get("buckets", 1)  # older manifests: one padded size per group
        # older manifests: JAX's default precision, which those sweeps were computed with
        precision = manifest.get("matmul_precision", "default")
        if (manifest["chunk_size"] != the_plan.chunk_size or recorded != the_plan.buckets
                or precision != the_plan.matmul_precision):
            the_plan = plan(sweep, chunk_size=manifest["chunk_size"], buckets=recorded,
                            matmul_precision=precision)
        return parts, the_plan
    os.makedirs(parts, exist_ok=True)
    manifest = {"format": FORMAT_VERSION, "config_hash": sweep.config_hash,
                "chunk_size": the_plan.chunk_size, "buckets": the_plan.buckets,
                "matmul_precision": the_plan.matmul_precision,
                "num_chunks": len(the_plan.chunks),
                "num_runs": sweep.size, "sweep": sweep.to_dict()}
    text = json.dumps(manifest, indent=1)
    atomic_write(manifest_path, lambda tmp: Path(tmp).write_bytes(text.encode()))
    return parts, the_plan


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes of ``arrays``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_chunk(parts: str, chunk_id: int, arrays: dict[str, np.ndarray],
               sweep_hash: str) -> None:
    """Write a chunk's arrays (:func:`~ssm_jax.sweep.execution.compute_chunk`, with the run
    ids ``index``) atomically, stamped with the sweep's hash and a checksum."""
    stamped = {**arrays, SWEEP_HASH: np.array(sweep_hash)}
    stamped[CHECKSUM] = np.array(_checksum(stamped))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **stamped)

    atomic_write(chunk_path(parts, chunk_id), write)


def read_chunk(the_plan: Plan, parts: str, chunk: Chunk) -> dict[str, np.ndarray]:
    """The arrays of ``chunk``'s file (without the stamps), after checking that the file
    reads, that its checksum matches, that it belongs to ``the_plan``'s sweep and that it
    holds exactly the chunk's runs. Raises :class:`ChunkError` saying which check failed,
    ``FileNotFoundError`` if there is no file."""
    path = chunk_path(parts, chunk.id)
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except Exception as err:  # a damaged zip or .npy file fails in many ways
        raise ChunkError(f"{path} is unreadable ({type(err).__name__}: {err})") from None
    stored = arrays.pop(CHECKSUM, None)
    if stored is None or str(stored) != _checksum(arrays):
        raise ChunkError(f"{path} does not match its checksum (damaged)")
    if str(arrays.pop(SWEEP_HASH)) != the_plan.sweep.config_hash:
        raise ChunkError(f"{path} belongs to another sweep")
    if not np.array_equal(arrays.get("index"), the_plan.runs_of(chunk)):
        raise ChunkError(f"{path} holds runs other than those of chunk {chunk.id}")
    return arrays


def written_chunks(the_plan: Plan, parts: str) -> set[int]:
    """Ids of the chunks of ``the_plan`` whose files exist (not yet checked)."""
    return {c.id for c in the_plan.chunks if os.path.exists(chunk_path(parts, c.id))}


def done_chunks(the_plan: Plan, parts: str, chunks: Iterable[Chunk] | None = None) -> set[int]:
    """Ids of the chunks (of ``chunks``, default all of ``the_plan``) whose files pass
    :func:`read_chunk`. A file that fails is reported (:class:`StoreWarning`) and removed,
    so that its chunk is computed again."""
    done = set()
    for chunk in the_plan.chunks if chunks is None else chunks:
        try:
            read_chunk(the_plan, parts, chunk)
        except FileNotFoundError:
            continue
        except ChunkError as err:
            warnings.warn(f"{err}; removing it to compute chunk {chunk.id} again",
                          StoreWarning, stacklevel=2)
            with contextlib.suppress(FileNotFoundError):
                os.remove(chunk_path(parts, chunk.id))
            continue
        done.add(chunk.id)
    return done
