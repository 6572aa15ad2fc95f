"""Reading a finished sweep: the Dataset, a slice of it, the Config of any run, and delay
ratios."""

from __future__ import annotations

import json
import os

import numpy as np

from ..config import Config, ConfigError
from .definition import dim_name


def load(path, *, lazy: bool = False):
    """Open a sweep file as an :class:`xarray.Dataset` (one call).

    Coordinates get back their Python types (strings, booleans), ``diverged`` is boolean,
    and ``attrs["config"]`` / ``attrs["sweep"]`` are JSON text of the base configuration
    and the axes. ``lazy=True`` leaves the data on disk (for sweeps larger than memory).
    Raises :class:`~ssm_jax.config.ConfigError` "not a sweep file" for a file that is not
    one (empty, truncated, JSON, another netCDF file) or does not exist."""
    import xarray as xr

    path = os.fspath(path)
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as err:  # netCDF4's and xarray's refusals
        raise ConfigError(f"{path} is not a sweep file ({err})") from None
    if not {"ssm_jax_format", "config_hash", "sweep", "config"} <= set(ds.attrs) \
            or "diverged" not in ds:
        ds.close()
        raise ConfigError(f"{path} is not a sweep file (a netCDF file without the attributes "
                          f"and variables of an ssm-jax sweep)")
    if not lazy:
        loaded = ds.load()
        ds.close()
        ds = loaded
    return typed(ds)


def typed(ds):
    """A sweep Dataset with its Python types back (the file stores booleans as int8):
    boolean coordinates, string coordinates as numpy strings, boolean ``diverged``. Shared
    by :func:`load` and the in-memory Dataset (:class:`~ssm_jax.sweep.netcdf.DatasetBuilder`),
    so both are the same."""
    sweep_info = json.loads(ds.attrs["sweep"])
    for field, values in sweep_info["axes"].items():
        dim = dim_name(field)
        if all(isinstance(v, bool) for v in values):
            ds = ds.assign_coords({dim: np.array(values, dtype=bool)})
        elif all(isinstance(v, str) for v in values):
            ds = ds.assign_coords({dim: (dim, np.array(values, dtype=str), ds[dim].attrs)})
    ds["diverged"] = ds["diverged"].astype(bool)
    return ds


def _typed(ds, dim: str, text: str):
    """The coordinate of ``ds[dim]`` that the text ``text`` names."""
    if dim not in ds.dims:
        raise ConfigError(f"--select {dim}={text}: {dim!r} is not a dimension of the sweep "
                          f"(dimensions: {', '.join(map(str, ds.dims))})")
    values = ds[dim].values
    if values.dtype.kind in "fiu":
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"--select {dim}={text}: need a number") from None
        match = values[np.isclose(values, number)]
        if not match.size:
            raise ConfigError(f"--select {dim}={text}: not one of {list(values)}")
        return match[0]
    if values.dtype.kind == "b":
        return text.lower() in ("1", "true", "yes", "on")
    if text not in values:
        raise ConfigError(f"--select {dim}={text}: not one of {list(values)}")
    return text


def select(ds, selections: list[str] | None):
    """``ds.sel`` from ``["dim=value", ...]``, the strings of ``ssm-jax plot --select``.

    A value picks the matching coordinate: numbers within ``np.isclose``, booleans from
    ``1/true/yes/on``, strings exactly. An unknown dimension or value raises
    :class:`~ssm_jax.config.ConfigError` naming it; ``None`` or ``[]`` selects nothing."""
    for item in selections or []:
        dim, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--select {item!r}: expected DIM=VALUE")
        dim = dim.strip()
        ds = ds.sel({dim: _typed(ds, dim, text.strip())})
    return ds


def config_of(ds, **point) -> Config:
    """The Config of one run of a loaded sweep, e.g. ``config_of(ds, ratio=10, seed=0)``."""
    base = json.loads(ds.attrs["config"])
    for key in ("counts", "weights"):
        if base.get(key) is not None:
            base[key] = tuple(base[key])
    fields = json.loads(ds.attrs["swept_fields"])
    unknown = set(point) - set(fields) - {dim_name(f) for f in fields}
    if unknown:
        raise ConfigError(f"{sorted(unknown)} are not swept; swept fields are {fields}")
    for field in fields:
        value = point.get(field, point.get(dim_name(field)))
        if value is None:
            raise ConfigError(f"config_of needs a value for every swept field; missing {field!r}")
        base[field] = value.item() if isinstance(value, np.generic) else value
    return Config(**base)


def delay_ratio(ds, time: str = "learn_time"):
    """Minority/majority delay ratio of every run: mean ``time`` (learn_time or half_time)
    of the minority classes over that of the majority classes (those with the largest
    count), as :func:`ssm_jax.metrics.delay_ratio` defines it. Padded classes (count 0) are
    in neither group. NaN when a class never reached the threshold or the run is balanced.

    Returns a DataArray over every dimension of ``ds[time]`` but ``class``."""
    import xarray as xr

    ratio = xr.apply_ufunc(_delay_ratio_by_counts, ds[time], ds["class_counts"],
                           input_core_dims=[["class"], ["class"]])
    ratio.name = f"delay_ratio_{time}"
    ratio.attrs["description"] = (f"mean {time} of the minority classes / mean {time} of the "
                                  f"majority classes; NaN if a class never reached it")
    return ratio


def _delay_ratio_by_counts(times: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """:func:`ssm_jax.metrics.delay_ratio` of runs ``times`` (..., k) whose class counts
    (..., k) differ from run to run. Runs with the same counts share their masks, so this is
    one vectorised call per distinct count vector (a handful in a sweep), not one per run.
    NaN for runs without a minority class (balanced)."""
    from .. import metrics

    times, counts = np.broadcast_arrays(times, counts)
    runs_shape, k = times.shape[:-1], times.shape[-1]
    times, counts = times.reshape(-1, k), counts.reshape(-1, k)
    distinct, which = np.unique(counts, axis=0, return_inverse=True)
    which = which.reshape(-1)
    ratio = np.full(len(times), np.nan, times.dtype)
    for index, class_counts in enumerate(distinct):
        minority = metrics.minority_mask(class_counts)
        if minority.any():
            runs = which == index
            ratio[runs] = metrics.delay_ratio(times[runs], minority,
                                              metrics.majority_mask(class_counts))
    return ratio.reshape(runs_shape)
