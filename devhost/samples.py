"""Realistic sample NetCDF collections: the demo's input and every test's input.

One helper writes them all (daily CF-compliant files of a gridded variable on a lat/lon
grid, chunked and compressed, plus a packed int16 variable with scale_factor, add_offset
and _FillValue and a few missing values, plus a scalar grid-mapping variable), so the
demo and the tests exercise the same shapes of data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

# What CMIP6 files say in their ``license`` global attribute (here for CC BY 4.0): the
# register stage maps it to the SPDX id CC-BY-4.0 (shared.catalog.stac.licenses).
SAMPLE_LICENSE = (
    "Sample data produced by virtual-zarr-pipeline is licensed under a Creative Commons "
    "Attribution 4.0 International License (https://creativecommons.org/licenses/by/4.0/)."
)


@dataclass(frozen=True)
class SampleSpec:
    files: int = 30
    steps_per_file: int = 1
    step_days: float = 1.0  # 0.125: 3-hourly steps (8 per daily file)
    time_chunk: int = 1
    lat: int = 90
    lon: int = 180
    start: date = date(2024, 1, 1)
    # None: "days since <start>" in every file. A string: the same units in every file.
    time_units: str | None = None
    # True: each file uses "days since <its own first day>" (a common real-world variation).
    per_file_time_units: bool = False
    calendar: str = "standard"
    netcdf_format: str = "NETCDF4"  # or NETCDF4_CLASSIC, NETCDF3_CLASSIC, NETCDF3_64BIT_OFFSET
    compression: bool = True
    complevel: int = 4  # the deflate level (decoding does not depend on it)
    with_crs: bool = True
    seed: int = 0
    prefix: str = "tas_day"
    # Knobs for the collections that must be refused or handled (the correctness matrix):
    tas_dtype: str = "f4"
    pr_scale_factor: float = 0.01
    pr_add_offset: float = 100.0
    pr_fill_value: int = -32767
    pr_missing_value: int | None = None
    lat_offset: float = 0.0  # shifts the latitude grid
    with_pr: bool = True
    first_index: int = 0  # the first file's position in the collection (its dates)
    license: str | None = SAMPLE_LICENSE  # the global attribute; None: no license attribute


def write_sample_files(folder: Path | str, spec: SampleSpec | None = None) -> list[Path]:
    """Write ``spec.files`` NetCDF files into ``folder`` and return their paths, sorted."""
    spec = spec or SampleSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lats = (np.linspace(-89.0, 89.0, spec.lat) + spec.lat_offset).astype("f4")
    lons = np.linspace(-179.0, 179.0, spec.lon, dtype="f4")
    paths = []
    for i in range(spec.first_index, spec.first_index + spec.files):
        first_day = spec.start + timedelta(days=i * spec.steps_per_file * spec.step_days)
        path = folder / f"{spec.prefix}_{first_day:%Y%m%d}.nc"
        _write_one(path, spec, i, first_day, lats, lons)
        paths.append(path)
    return paths


def _write_one(
    path: Path,
    spec: SampleSpec,
    index: int,
    first_day: date,
    lats: np.ndarray,
    lons: np.ndarray,
) -> None:
    rng = np.random.default_rng(spec.seed * 100_003 + index)
    classic = spec.netcdf_format.startswith("NETCDF3")
    compress: dict[str, Any] = (
        {}
        if classic or not spec.compression
        else {"zlib": True, "complevel": spec.complevel, "shuffle": True}
    )
    chunking: dict[str, Any] = (
        {} if classic else {"chunksizes": (spec.time_chunk, spec.lat, spec.lon)}
    )
    if spec.per_file_time_units:
        units = f"days since {first_day:%Y-%m-%d}"
        offset: float = 0
    else:
        units = spec.time_units or f"days since {spec.start:%Y-%m-%d}"
        offset = index * spec.steps_per_file * spec.step_days
    with netCDF4.Dataset(path, "w", format=spec.netcdf_format) as ds:  # type: ignore[arg-type]
        ds.Conventions = "CF-1.8"
        ds.title = "Synthetic daily near-surface air temperature and precipitation"
        ds.institution = "virtual-zarr-pipeline samples"
        ds.source = "devhost/samples.py"
        if spec.license is not None:
            ds.license = spec.license
        ds.createDimension("time", None)
        ds.createDimension("lat", spec.lat)
        ds.createDimension("lon", spec.lon)
        time = ds.createVariable("time", "f8", ("time",))
        time.standard_name = "time"
        time.units = units
        time.calendar = spec.calendar
        time.axis = "T"
        time[:] = offset + spec.step_days * np.arange(spec.steps_per_file, dtype="f8")
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.standard_name = "latitude"
        lat.units = "degrees_north"
        lat.axis = "Y"
        lat[:] = lats
        lon = ds.createVariable("lon", "f4", ("lon",))
        lon.standard_name = "longitude"
        lon.units = "degrees_east"
        lon.axis = "X"
        lon[:] = lons
        if spec.with_crs:
            crs = ds.createVariable("crs", "i4", ())
            crs.grid_mapping_name = "latitude_longitude"
            crs.semi_major_axis = 6378137.0
            crs.inverse_flattening = 298.257223563
        shape = (spec.steps_per_file, spec.lat, spec.lon)
        tas = ds.createVariable(
            "tas",
            spec.tas_dtype,
            ("time", "lat", "lon"),
            fill_value=np.dtype(spec.tas_dtype).type(1.0e20),
            **compress,
            **chunking,
        )
        tas.standard_name = "air_temperature"
        tas.long_name = "Near-Surface Air Temperature"
        tas.units = "K"
        tas.cell_methods = "time: mean"
        if spec.with_crs:
            tas.grid_mapping = "crs"
        seasonal = 15.0 * np.cos(np.deg2rad(lats))[None, :, None]
        tas[:] = (273.15 + seasonal + rng.normal(0.0, 3.0, shape)).astype("f4")
        if not spec.with_pr:
            return
        pr = ds.createVariable(
            "pr",
            "i2",
            ("time", "lat", "lon"),
            fill_value=np.int16(spec.pr_fill_value),
            **compress,
            **chunking,
        )
        pr.standard_name = "precipitation_amount"
        pr.long_name = "Daily precipitation"
        pr.units = "mm"
        pr.scale_factor = spec.pr_scale_factor
        pr.add_offset = spec.pr_add_offset
        if spec.pr_missing_value is not None:
            pr.missing_value = np.int16(spec.pr_missing_value)
        if spec.with_crs:
            pr.grid_mapping = "crs"
        values = np.clip(rng.gamma(0.6, 4.0, shape), 0.0, 300.0)
        masked = np.ma.masked_array(values, mask=rng.random(shape) < 0.02)
        pr[:] = masked


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write raw bytes (for the not-NetCDF, zero-byte and truncated cases in tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncate_copy(source: Path | str, target: Path | str, keep_fraction: float = 0.5) -> Path:
    """Copy the first part of a file, as an interrupted upload would leave it."""
    data = Path(source).read_bytes()
    return write_bytes(target, data[: max(1, int(len(data) * keep_fraction))])


def sample_paths(folder: Path | str, suffixes: Sequence[str] = (".nc",)) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix in suffixes)


def open_collection(
    paths: Sequence[Path | str],
    concat_dim: str = "time",
    group: str | None = None,
    cftime: bool = False,
) -> xr.Dataset:
    """The collection as xarray itself opens it (lazily, CF-decoded; one group of it): the
    reference answer every published store must be identical to. ``cftime``: times decoded
    to cftime dates in every file (xarray otherwise decodes each file on its own, to numpy
    datetimes where its dates fit and to cftime beyond 2262, and mixes the two)."""
    times: Any = xr.coders.CFDatetimeCoder(use_cftime=True) if cftime else None
    return xr.open_mfdataset(
        sorted(paths),
        combine="nested",
        concat_dim=concat_dim,
        data_vars="minimal",
        coords="minimal",
        compat="override",
        group=group,
        decode_times=times,
    )
