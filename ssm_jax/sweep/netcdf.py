"""A finished sweep as one netCDF4 file: its layout, and its assembly from the chunk files;
or the same Dataset built in memory.

When every chunk exists, the chunk files are streamed, one at a time, into ``<out>``
(written atomically), each checked first (:func:`~ssm_jax.sweep.store.read_chunk`). The
file has one dimension per axis (named after the option's Config field, except ``loss`` ->
``loss_fn`` because ``loss`` is a variable), then ``save`` (save-point index) and
``class``. Times differ between learning rates (``t = lr x step``),
so ``t`` is a coordinate over every swept dimension and ``save``. See :data:`VARIABLES`.

A sweep without a file (``sweep.run(sweep)``, ``out=None``) never writes one:
:class:`DatasetBuilder` puts each chunk's arrays into the Dataset's arrays as the chunk
finishes, with the same layout, types, fill values and attributes as the file loaded by
:func:`~ssm_jax.sweep.analysis.load` (tested to be identical).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import DEFINITIONS as GEOMETRY_DEFINITIONS
from ..io import atomic_write
from .analysis import typed
from .definition import FORMAT_VERSION
from .planning import Chunk, Plan
from .store import read_chunk

# Variables of a sweep Dataset: name -> (dims after the sweep dims, description). The same
# quantities as the JSON of ``ssm-jax simulate``.
VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "loss": (("save",), "training objective L at each save point"),
    "per_class_accuracy": (("save", "class"),
                           "fraction of class-c examples whose largest output is c"),
    "per_class_loss": (("save", "class"), "mean unweighted per-example loss over class c"),
    "own_output": (("save", "class"), "mean over class-c examples of output c"),
    "balanced_accuracy": (("save",), "mean of the per-class accuracies"),
    "learn_time": (("class",), "first time the class accuracy reaches 0.5 "
                               "(linearly interpolated); NaN if never reached"),
    "half_time": (("class",), "first time own_output reaches 0.5 (linearly interpolated); "
                              "NaN if never reached"),
    "weights": (("class",), "normalised class weights omega_c"),
    "class_counts": (("class",), "examples per class (0 for a class the run does not have)"),
    "diverged": ((), "whether the loss became non-finite"),
    "diverged_step": ((), "first step with a non-finite loss; -1 if the run did not diverge"),
}
FLOAT_FILL = float("nan")


def _coordinate_values(values: tuple) -> np.ndarray:
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int8)
    return np.array(values)


def _contiguous_segments(runs: np.ndarray, shape: tuple[int, ...]):
    """Split sorted flat indices into ``(start, stop)`` pieces contiguous along the last dim."""
    if not shape:
        yield 0, 1
        return
    last = shape[-1]
    start = 0
    for i in range(1, len(runs) + 1):
        if i == len(runs) or runs[i] != runs[i - 1] + 1 or runs[i] % last == 0:
            yield start, i
            start = i


def _file_attrs(the_plan: Plan) -> dict:
    sweep = the_plan.sweep
    return {
        "title": "ssm-jax sweep",
        "ssm_jax_format": FORMAT_VERSION,
        "config_hash": sweep.config_hash,
        "config": json.dumps(sweep.base.to_dict()),
        "sweep": json.dumps(sweep.to_dict()),
        "swept_fields": json.dumps(sweep.fields),
        "num_runs": sweep.size,
        "chunk_size": the_plan.chunk_size,
        "buckets": str(the_plan.buckets),
        "matmul_precision": the_plan.matmul_precision,
        "time_convention": "t = lr x step (a coordinate over every swept dimension and save)",
        "missing_values": "NaN: a learn_time/half_time never reached, a save or class index a "
                          "run does not have, or values after a divergence (see diverged)",
    }


@dataclass(frozen=True)
class _Variable:
    dims: tuple[str, ...]  # after the sweep dims
    dtype: str
    fill: Any


def _variable_dims(name: str, shape: tuple[int, ...], saves: int, k: int) -> tuple[str, ...]:
    """Dims of a per-run array: from :data:`VARIABLES`, else from its shape (a leading axis
    of length ``saves`` is ``save``, axes of length ``k`` are ``class``, ``class2``)."""
    if name in VARIABLES:
        return VARIABLES[name][0]
    if name == "t":
        return ("save",)
    dims: list[str] = []
    for axis, size in enumerate(shape):
        if axis == 0 and size == saves:
            dims.append("save")
        elif size == k and "class2" not in dims:
            dims.append("class2" if "class" in dims else "class")
        else:
            dims.append(f"{name}_dim{axis}")
    return tuple(dims)


def _variable(name: str, array: np.ndarray, spec, k: int) -> _Variable:
    """How the per-run array ``array`` (leading run axis) of variable ``name`` is stored,
    for a run of ``spec`` with ``k`` classes: dims, netCDF type and fill value."""
    kind = array.dtype.kind
    if name == "class_counts":
        dtype, fill = "i4", 0
    elif kind == "f":
        dtype, fill = array.dtype.str[1:], FLOAT_FILL
    elif kind == "b" or name == "diverged":
        dtype, fill = "i1", 0
    else:
        dtype, fill = "i4", -1
    return _Variable(_variable_dims(name, array.shape[1:], spec.saves, k), dtype, fill)


def _ordered(layout: dict[str, _Variable]) -> dict[str, _Variable]:
    order = ["t", *VARIABLES]
    return dict(sorted(layout.items(),
                       key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def _layout(the_plan: Plan, parts: str) -> dict[str, _Variable]:
    """Every variable of the file, from the first chunk of each group (their union: a
    variable that only some groups have is filled elsewhere)."""
    layout: dict[str, _Variable] = {}
    firsts = {}
    for chunk in the_plan.chunks:
        firsts.setdefault(chunk.group, chunk.id)
    for group, chunk_id in firsts.items():
        spec, k = the_plan.groups[group].spec, the_plan.groups[group].num_classes
        data = read_chunk(the_plan, parts, the_plan.chunks[chunk_id])
        for name, array in data.items():
            if name == "index" or name in layout:
                continue
            layout[name] = _variable(name, array, spec, k)
    return _ordered(layout)


def assemble(the_plan: Plan, parts: str, out: str) -> None:
    """Stream the chunk files, one at a time, into a netCDF4 file written atomically."""
    import netCDF4

    layout = _layout(the_plan, parts)

    def write(tmp: str) -> None:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            sizes = _define(nc, the_plan, parts, layout)
            for chunk in the_plan.chunks:
                data = read_chunk(the_plan, parts, chunk)
                _write_chunk(nc, layout, sizes, data, the_plan.sweep.shape)

    atomic_write(out, write)


def _define(nc, the_plan: Plan, parts: str, layout: dict[str, _Variable]) -> dict[str, int]:
    """Create the dimensions, coordinates, variables and attributes of an empty file;
    returns the length of every dimension after the sweep's."""
    sweep = the_plan.sweep
    dims, shape = sweep.dims, sweep.shape
    sizes = {"save": the_plan.saves, "class": the_plan.num_classes,
             "class2": the_plan.num_classes}
    for name, size in zip(dims, shape, strict=True):
        nc.createDimension(name, size)
    for (field, values), name in zip(sweep.axes, dims, strict=True):
        coord = _coordinate_values(values)
        var = nc.createVariable(name, str if coord.dtype == object else coord.dtype, (name,))
        var[:] = coord
        var.setncattr("long_name", f"swept option {field}")
    first = read_chunk(the_plan, parts, the_plan.chunks[0])
    extra = {d: first[n].shape[1 + v.dims.index(d)] for n, v in layout.items()
             for d in v.dims if d not in sizes and n in first}
    sizes.update(extra)
    used = {d for v in layout.values() for d in v.dims}
    for name in ("save", "class", "class2", *extra):
        if name in used:
            nc.createDimension(name, sizes[name])
            if name in ("save", "class"):
                nc.createVariable(name, "i4", (name,))[:] = np.arange(sizes[name])
    for name, var_layout in layout.items():
        var = nc.createVariable(name, var_layout.dtype, (*dims, *var_layout.dims),
                                fill_value=False)
        var.setncattr("description", _description(name))
        for key, value in _geometry_attrs(name).items():
            var.setncattr(key, value)
        if "save" in var_layout.dims and name != "t":
            var.setncattr("coordinates", "t")
    for key, value in _file_attrs(the_plan).items():
        nc.setncattr(key, value)
    return sizes


def _geometry_attrs(name: str) -> dict[str, str]:
    """A ``geometry_<key>`` variable's convention (:data:`ssm_jax.geometry.DEFINITIONS`):
    its formula, centring, weighting and reference; nothing for other variables."""
    definition = GEOMETRY_DEFINITIONS.get(name.removeprefix("geometry_"))
    if not name.startswith("geometry_") or definition is None:
        return {}
    return {"formula": definition.formula, "centring": definition.centring,
            "weighting": definition.weighting, "reference": definition.reference}


def _padded(array: np.ndarray | None, runs: int, variable: _Variable, sizes: dict) -> np.ndarray:
    """A chunk's array padded to the file's extents (a missing variable is all fill)."""
    target = (runs, *(sizes[d] if d in sizes else None for d in variable.dims))
    if array is not None and array.shape == target:
        return array
    target = tuple(t if t is not None else a for t, a in
                   zip(target, array.shape if array is not None else target, strict=True))
    out = np.full(target, variable.fill, dtype=variable.dtype)
    if array is not None:
        out[tuple(slice(0, s) for s in array.shape)] = array
    return out


def _write_chunk(nc, layout: dict[str, _Variable], sizes: dict, data,
                 shape: tuple[int, ...]) -> None:
    runs = data["index"]
    arrays = {name: _padded(data.get(name), len(runs), var, sizes)
              for name, var in layout.items()}
    for start, stop in _contiguous_segments(runs, shape):
        if shape:
            position = np.unravel_index(int(runs[start]), shape)
            where = (*position[:-1], slice(position[-1], position[-1] + stop - start))
        else:
            where = ()
        for name, array in arrays.items():
            piece = array[start:stop]
            nc.variables[name][where] = piece if shape else piece[0]


def _description(name: str) -> str:
    if name in VARIABLES:
        return VARIABLES[name][1]
    if name == "t":
        return "time t = lr x step of each save point (NaN past a run's saves)"
    return f"trajectory field {name} (as in simulate's JSON)"


class DatasetBuilder:
    """The Dataset of a sweep built in memory, chunk by chunk, as :func:`assemble` and
    :func:`~ssm_jax.sweep.analysis.load` would give it from a file, without the chunk files
    (and their fsyncs), the netCDF file and reading it back.

    Each variable is allocated at its first chunk (dims, type and fill value as in the
    file, :func:`_variable`), filled with the fill value, and every chunk's arrays are
    padded to the file's extents and put in place by their run ids. Chunks must come in
    the plan's order (as one process computes them), so that a variable is laid out from
    the first group that has it, as :func:`_layout` does."""

    def __init__(self, the_plan: Plan):
        self.plan = the_plan
        self.layout: dict[str, _Variable] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.sizes = {"save": the_plan.saves, "class": the_plan.num_classes,
                      "class2": the_plan.num_classes}

    def add(self, chunk: Chunk, data: dict[str, np.ndarray]) -> None:
        """Put the arrays of ``chunk`` (:func:`~ssm_jax.sweep.execution.compute_chunk`'s,
        with the run ids ``index``) in place."""
        group = self.plan.groups[chunk.group]
        runs = np.asarray(data["index"])
        for name, array in data.items():
            if name == "index":
                continue
            if name not in self.layout:
                variable = _variable(name, array, group.spec, group.num_classes)
                for axis, dim in enumerate(variable.dims):
                    self.sizes.setdefault(dim, array.shape[1 + axis])
                self.layout[name] = variable
                shape = (self.plan.sweep.size, *(self.sizes[d] for d in variable.dims))
                self.arrays[name] = np.full(shape, variable.fill, dtype=variable.dtype)
            variable = self.layout[name]
            self.arrays[name][runs] = _padded(array, len(runs), variable, self.sizes)

    def dataset(self):
        """The finished :class:`xarray.Dataset` (call once every chunk was added)."""
        import xarray as xr

        sweep = self.plan.sweep
        dims, shape = sweep.dims, sweep.shape
        coords = {}
        for (field, values), name in zip(sweep.axes, dims, strict=True):
            coords[name] = xr.Variable((name,), _coordinate_values(values),
                                       {"long_name": f"swept option {field}"})
        layout = _ordered(self.layout)
        used = {d for v in layout.values() for d in v.dims}
        for name in ("save", "class"):
            if name in used:
                coords[name] = xr.Variable((name,), np.arange(self.sizes[name], dtype=np.int32))
        variables = {}
        # As in the file, where the variables over ``save`` name ``t`` as their coordinate.
        t_is_coordinate = any("save" in v.dims for n, v in layout.items() if n != "t")
        for name, variable in layout.items():
            attrs = {"description": _description(name), **_geometry_attrs(name)}
            array = self.arrays[name].reshape((*shape, *self.arrays[name].shape[1:]))
            target = coords if name == "t" and t_is_coordinate else variables
            target[name] = xr.Variable((*dims, *variable.dims), array, attrs)
        return typed(xr.Dataset(variables, coords=coords, attrs=_file_attrs(self.plan)))


def read_hash(path: str) -> str | None:
    """The ``config_hash`` of a sweep file; ``None`` if ``path`` is not one."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            return str(nc.getncattr("config_hash"))
    except (OSError, AttributeError):
        return None
