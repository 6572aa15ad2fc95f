"""The parts of an unfinished sweep: a folder of chunk files and the manifest they belong to.

Each finished chunk is written atomically (:func:`ssm_jax.io.atomic_write`) to
``<out>.parts/chunk-NNNNNN.npz`` next to a ``manifest.json`` holding the hash of the sweep,
its chunk size and buckets. Started again, the same sweep finds the chunks it still has to
compute (:func:`done_chunks`); a different sweep is refused (:class:`ConfigError`), since
mixing the parts of two sweeps would give a file that is neither.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..io import atomic_write
from .definition import FORMAT_VERSION
from .planning import Plan, plan


def parts_dir(out) -> str:
    """The folder of the parts of the sweep whose file is ``out``."""
    return os.fspath(out) + ".parts"


def chunk_path(parts: str, chunk_id: int) -> str:
    """The file of chunk ``chunk_id`` in the parts folder ``parts``."""
    return os.path.join(parts, f"chunk-{chunk_id:06d}.npz")


def _describe_difference(old: dict, new: dict) -> str:
    old_flat = {**{f"{k}": v for k, v in old.get("base", {}).items()},
                **{f"{k} (swept)": v for k, v in old.get("axes", {}).items()}}
    new_flat = {**{f"{k}": v for k, v in new.get("base", {}).items()},
                **{f"{k} (swept)": v for k, v in new.get("axes", {}).items()}}
    diffs = [f"{k}: {old_flat.get(k, '-')!r} there, {new_flat.get(k, '-')!r} now"
             for k in sorted(set(old_flat) | set(new_flat)) if old_flat.get(k) != new_flat.get(k)]
    return "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "") or "format version"


def open_parts(out: str, the_plan: Plan) -> tuple[str, Plan]:
    """Create ``<out>.parts`` with its manifest, or check an existing one matches the sweep.

    Resuming keeps the chunk size and buckets recorded in the manifest (so a different
    memory budget or device does not change the chunk layout). Returns the parts folder and
    the plan to follow."""
    parts = parts_dir(out)
    manifest_path = os.path.join(parts, "manifest.json")
    sweep = the_plan.sweep
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("config_hash") != sweep.config_hash:
            raise ConfigError(
                f"{parts} holds the unfinished parts of a different sweep "
                f"({_describe_difference(manifest.get('sweep', {}), sweep.to_dict())}); "
                f"refusing to mix them: rerun the original command to finish it, or remove "
                f"{parts} (and choose another --out) to start this one")
        recorded = manifest.get("buckets", 1)  # older manifests: one padded size per group
        if manifest["chunk_size"] != the_plan.chunk_size or recorded != the_plan.buckets:
            the_plan = plan(sweep, chunk_size=manifest["chunk_size"], buckets=recorded)
        return parts, the_plan
    os.makedirs(parts, exist_ok=True)
    manifest = {"format": FORMAT_VERSION, "config_hash": sweep.config_hash,
                "chunk_size": the_plan.chunk_size, "buckets": the_plan.buckets,
                "num_chunks": len(the_plan.chunks),
                "num_runs": sweep.size, "sweep": sweep.to_dict()}
    text = json.dumps(manifest, indent=1)
    atomic_write(manifest_path, lambda tmp: Path(tmp).write_bytes(text.encode()))
    return parts, the_plan


def save_chunk(parts: str, chunk_id: int, arrays: dict[str, np.ndarray]) -> None:
    """Write a chunk's arrays (:func:`~ssm_jax.sweep.execution.compute_chunk`) atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(chunk_path(parts, chunk_id), write)


def done_chunks(the_plan: Plan, parts: str) -> set[int]:
    """Ids of the chunks of ``the_plan`` whose files exist (complete: written atomically)."""
    return {c.id for c in the_plan.chunks if os.path.exists(chunk_path(parts, c.id))}
