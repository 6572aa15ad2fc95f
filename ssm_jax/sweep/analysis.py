"""Reading a finished sweep: the Dataset, the Config of any run, and delay ratios."""

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
    and the axes. ``lazy=True`` leaves the data on disk (for sweeps larger than memory)."""
    import xarray as xr

    ds = xr.open_dataset(os.fspath(path), engine="netcdf4")
    if not lazy:
        loaded = ds.load()
        ds.close()
        ds = loaded
    sweep_info = json.loads(ds.attrs["sweep"])
    for field, values in sweep_info["axes"].items():
        if all(isinstance(v, bool) for v in values):
            ds = ds.assign_coords({dim_name(field): np.array(values, dtype=bool)})
    ds["diverged"] = ds["diverged"].astype(bool)
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
    count). NaN when a class never reached the threshold or the run is balanced."""
    counts = ds["class_counts"]
    majority = counts == counts.max("class")
    minority = (~majority) & (counts > 0)
    values = ds[time]
    # A never-reached time (NaN) in any real class makes the ratio NaN.
    never = (values.isnull() & (counts > 0)).any("class")
    major = values.where(majority).mean("class")
    minor = values.where(minority).mean("class")
    ratio = (minor / major).where(~never & minority.any("class"))
    ratio.name = f"delay_ratio_{time}"
    ratio.attrs["description"] = (f"mean {time} of the minority classes / mean {time} of the "
                                  f"majority classes; NaN if a class never reached it")
    return ratio
