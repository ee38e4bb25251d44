"""Rows of the correctness matrix shaped like the archives hold model output (docs/
correctness.md, "Archive layouts"): CMOR-written CMIP6 files with the data variable stored
contiguously, split unevenly in time (decades with a short last file, 600 + 180 months),
daily files of a leap and two common years, NCO's unchunked output, the same compressed in
chunks that do not divide the years (stopped at the gate), and the layouts the merge must
cover beyond them: the concat dimension last, a variable never written, compression levels
that differ, contiguous and chunked files mixed, chunks above the sub-chunk size.

CMOR writes NetCDF4 (classic model) with a fixed time dimension, `time_bnds`, `lat_bnds`,
`lon_bnds`, `plev` in Pa, "days since 1850-1-1", `_FillValue` and `missing_value` 1e20, and
the CMIP6 global attributes, a `tracking_id` of its own in every file."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

import netCDF4
import numpy as np

from devhost.samples import write_sample_files
from tests.matrix_cases import BASE, Case, tool

PLEV = np.array([100000.0, 85000.0, 50000.0, 25000.0])
LAT = np.array([-45.0, 0.0, 45.0])
LON = np.array([0.0, 90.0, 180.0, 270.0])
FILL = np.float32(1.0e20)
CMIP6_LICENSE = (
    "CMIP6 model data produced by the modelling centre is licensed under a Creative Commons "
    "Attribution 4.0 International License (https://creativecommons.org/licenses/). Consult "
    "https://pcmdi.llnl.gov/CMIP6/TermsOfUse for terms of use governing CMIP6 output, "
    "including citation requirements and proper acknowledgment."
)
_NOLEAP_MONTH_STARTS = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _noleap_day(month: int) -> int:
    """Days since 1850-01-01 (365_day calendar) of the first day of month ``month``."""
    return 365 * (month // 12) + int(_NOLEAP_MONTH_STARTS[month % 12])


def _cmip6_attributes(ds: netCDF4.Dataset, name: str, frequency: str, table: str) -> None:
    ds.Conventions = "CF-1.7 CMIP-6.2"
    ds.activity_id = "CMIP"
    ds.experiment_id = "historical"
    ds.frequency = frequency
    ds.table_id = table
    ds.source_id = "MODEL-A"
    ds.institution_id = "INST"
    ds.variant_label = "r1i1p1f1"
    ds.grid_label = "gn"
    ds.license = CMIP6_LICENSE
    ds.tracking_id = f"hdl:21.14100/{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    ds.creation_date = "2019-06-19T00:00:00Z"


def _grid(ds: netCDF4.Dataset, levels: bool) -> None:
    """plev, lat, lon and their bounds, as CMOR writes them."""
    ds.createDimension("bnds", 2)
    if levels:
        ds.createDimension("plev", len(PLEV))
        plev = ds.createVariable("plev", "f8", ("plev",))
        plev.units, plev.axis, plev.positive = "Pa", "Z", "down"
        plev.standard_name = "air_pressure"
        plev[:] = PLEV
    for name, values, units in (("lat", LAT, "degrees_north"), ("lon", LON, "degrees_east")):
        ds.createDimension(name, len(values))
        coordinate = ds.createVariable(name, "f8", (name,))
        coordinate.units, coordinate.axis = units, "Y" if name == "lat" else "X"
        coordinate.bounds = f"{name}_bnds"
        coordinate[:] = values
        step = values[1] - values[0]
        ds.createVariable(f"{name}_bnds", "f8", (name, "bnds"))[:] = np.stack(
            [values - step / 2, values + step / 2], axis=1
        )


def _time(ds: netCDF4.Dataset, starts: np.ndarray, ends: np.ndarray, calendar: str) -> None:
    ds.createDimension("time", len(starts))  # CMOR's contiguous files: a fixed dimension
    time = ds.createVariable("time", "f8", ("time",))
    time.units, time.calendar, time.axis = "days since 1850-1-1", calendar, "T"
    time.standard_name, time.bounds = "time", "time_bnds"
    time[:] = (starts + ends) / 2
    ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack([starts, ends], 1)


def _values(shape: tuple[int, ...], first: int) -> np.ndarray:
    values = 200.0 + np.arange(np.prod(shape), dtype="f4").reshape(shape) / 7 + first
    values[:, 0, ...] = FILL  # below the surface: missing, as CMOR fills it
    return values.astype("f4")


def _data(ds: netCDF4.Dataset, name: str, dims: tuple[str, ...], values: np.ndarray,
          storage: dict[str, object]) -> None:  # fmt: skip
    variable = ds.createVariable(name, "f4", dims, fill_value=FILL, **storage)  # type: ignore[arg-type]
    variable.missing_value = FILL
    variable.units, variable.standard_name = "K", "air_temperature"
    variable.cell_methods, variable.cell_measures = "time: mean", "area: areacella"
    variable[:] = values


def cmor_monthly(
    folder: Path,
    splits: Sequence[int],
    storage: dict[str, object] | None = None,
    start: int = 0,
) -> list[Path]:
    """`ta` (Amon) of one model run from month ``start`` (of 1850), split into files of
    ``splits`` months."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, first = [], start
    for months in splits:
        last = first + months - 1
        name = (f"ta_Amon_MODEL-A_historical_r1i1p1f1_gn_{1850 + first // 12}"
                f"{first % 12 + 1:02d}-{1850 + last // 12}{last % 12 + 1:02d}.nc")  # fmt: skip
        path = folder / name
        with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as ds:
            _cmip6_attributes(ds, name, "mon", "Amon")
            _grid(ds, levels=True)
            index = np.arange(first, last + 1)
            starts = np.array([_noleap_day(m) for m in index], dtype="f8")
            ends = np.array([_noleap_day(m + 1) for m in index], dtype="f8")
            _time(ds, starts, ends, "365_day")
            shape = (months, len(PLEV), len(LAT), len(LON))
            _data(ds, "ta", ("time", "plev", "lat", "lon"), _values(shape, first),
                  storage or {"contiguous": True})  # fmt: skip
        paths.append(path)
        first += months
    return paths


def cmor_daily(
    folder: Path, years: Sequence[int], storage: dict[str, object] | None = None
) -> list[Path]:
    """`tas` (day) in the standard calendar, one file a year: 366, 365, ... days."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for year in years:
        name = f"tas_day_MODEL-A_historical_r1i1p1f1_gn_{year}0101-{year}1231.nc"
        path = folder / name
        first = (date(year, 1, 1) - date(1850, 1, 1)).days
        days = (date(year + 1, 1, 1) - date(year, 1, 1)).days
        with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as ds:
            _cmip6_attributes(ds, name, "day", "day")
            _grid(ds, levels=False)
            starts = first + np.arange(days, dtype="f8")
            _time(ds, starts, starts + 1, "standard")
            values = _values((days, len(LAT), len(LON)), first)
            _data(ds, "tas", ("time", "lat", "lon"), values, storage or {"contiguous": True})
        paths.append(path)
    return paths


def nco_unchunked(folder: Path) -> list[Path]:
    """NCO: one 300-month file cut into 120 + 120 + 60 months by ncks, written contiguous
    (`--cnk_plc=unchunk` with the record dimension fixed), as archives republish model
    output."""
    work = folder.parent / f"{folder.name}-work"
    base = cmor_monthly(work, [300], {"chunksizes": (1, len(PLEV), len(LAT), len(LON))})[0]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for first, last in ((0, 119), (120, 239), (240, 299)):
        target = folder / f"ta_Amon_nco_{first:03d}-{last:03d}.nc"
        tool("ncks", "-O", "-4", "--fix_rec_dmn=time", "--cnk_plc=unchunk",
             "-d", f"time,{first},{last}", base, target)  # fmt: skip
        paths.append(target)
    return paths


def stations_time_last(
    folder: Path, storage: dict[str, object], stations: Sequence[int] = (3, 3, 3)
) -> list[Path]:
    """Station series stored (station, time): the concat dimension is a variable's last,
    files of 10, 10 and 5 steps (of ``stations`` stations each)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, first = [], 0
    for steps, count in zip((10, 10, 5), stations, strict=True):
        path = folder / f"stations_{first:03d}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("station", count)
            ds.createDimension("time", steps)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "hours since 2024-01-01"
            time[:] = np.arange(first, first + steps)
            name = ds.createVariable("station_id", "i4", ("station",))
            name[:] = 101 + np.arange(count)
            tas = ds.createVariable("tas", "f4", ("station", "time"), **storage)  # type: ignore[arg-type]
            tas.units = "K"
            tas[:] = 280 + np.arange(count * steps, dtype="f4").reshape(count, steps) / 4 + first
        paths.append(path)
        first += steps
    return paths


def never_written_in_one_file(folder: Path) -> list[Path]:
    """A contiguous variable the model never wrote in the second file (fill only: HDF5
    allocates no storage for it); it reads as missing there, from the files and the store."""
    paths = cmor_monthly(folder, [12, 12, 6])
    for i, path in enumerate(paths):
        with netCDF4.Dataset(path, "a") as ds:
            flag = ds.createVariable("clt", "f4", ("time", "lat", "lon"), fill_value=FILL,
                                     contiguous=True)  # fmt: skip
            flag.units = "%"
            if i != 1:
                flag[:] = np.full(flag.shape, 50.0 + i, dtype="f4")
    return paths


def mixed_storage(folder: Path) -> list[Path]:
    """One file contiguous, one chunked uncompressed in chunks of 5 months, one in chunks
    of 1: plain bytes every time, cut into one grid."""
    first = cmor_monthly(folder / "a", [20])
    second = cmor_monthly(folder / "b", [20, 10], {"chunksizes": (5, 2, 3, 4)})[1:]
    third = cmor_monthly(folder / "c", [30, 6], {"chunksizes": (1, 4, 3, 4)})[1:]
    paths = []
    for path in (*first, *second, *third):
        target = folder / path.name
        path.rename(target)
        paths.append(target)
    for sub in ("a", "b", "c"):
        for leftover in (folder / sub).iterdir():
            leftover.unlink()
        (folder / sub).rmdir()
    return paths


def compression_level_differs(folder: Path) -> list[Path]:
    """The same filters, another deflate level in one file: decoding does not look at it."""
    paths = write_sample_files(folder, replace(BASE, files=2))
    return paths + write_sample_files(folder, replace(BASE, files=1, first_index=2, complevel=9))


WEEKLY = {"zlib": True, "complevel": 4, "chunksizes": (7, len(LAT), len(LON))}

ARCHIVE_CASES = [
    Case(
        "CMOR contiguous monthly files split 120+120+60",
        lambda f: cmor_monthly(f, [120, 120, 60]),
        "equal",
        why="cut into sub-chunks of 60 months (the lengths' greatest common divisor)",
    ),
    Case(
        "CMOR contiguous monthly files split 600+180",
        lambda f: cmor_monthly(f, [600, 180]),
        "equal",
        why="cut into sub-chunks of 60 months (600 and 180 have 60 in common)",
    ),
    Case(
        "CMOR contiguous daily files of 366, 365 and 365 days",
        lambda f: cmor_daily(f, [2000, 2001, 2002]),
        "equal",
        why="cut into sub-chunks of one day: one reference per step and variable",
    ),
    Case(
        "contiguous daily files crossing the year 2262, standard calendar",
        lambda f: cmor_daily(f, [2260, 2261, 2262, 2263]),
        "equal",
        why="numpy dates end in 2262: the files before decode to numpy, those after to cftime; "
        "the store's coordinate is one array and decodes to cftime, the same instants (verify "
        "compares them as such)",
        cftime=True,
    ),
    Case(
        "NCO unchunked monthly files split 120+120+60",
        nco_unchunked,
        "equal",
        why="`ncks --cnk_plc=unchunk` writes them contiguous: cut as CMOR's",
    ),
    Case(
        "daily files of 366, 365 and 365 days compressed in weekly chunks",
        lambda f: cmor_daily(f, [2000, 2001, 2002], WEEKLY),
        "gate",
        "partial_chunks",
        "20000101-20001231",
        "tas",
        why="compressed chunks cannot be cut; the finding gives nccopy -M0 -c time/1,lat/3,lon/4",
    ),
    Case(
        "contiguous variable above the sub-chunk size, static fields too",
        lambda f: cmor_monthly(f, [12, 12, 6]),
        "equal",
        why="chunks of at most PIPELINE_SUBCHUNK_MAX_BYTES (40 here): split along the next "
        "dimensions too, and the bounds without time cut the same way",
        settings={"subchunk_max_bytes": 40},
    ),
    Case(
        "contiguous and chunked uncompressed files mixed",
        mixed_storage,
        "equal",
        why="plain bytes in every file: cut into one grid of 2 months",
    ),
    Case(
        "a contiguous variable never written in one file",
        never_written_in_one_file,
        "equal",
        why="no storage in that file: its sub-chunks are missing and read as fill",
    ),
    Case(
        "the concat dimension last, contiguous, files of 10, 10 and 5 steps",
        lambda f: stations_time_last(f, {"contiguous": True}),
        "equal",
        why="(station, time): cut along time into sub-chunks of one station and 5 steps",
    ),
    Case(
        "the concat dimension last, compressed chunks of 5 steps",
        lambda f: stations_time_last(f, {"zlib": True, "chunksizes": (3, 5)}),
        "equal",
        why="the files' own chunks form one grid along the last dimension",
    ),
    Case(
        "a variable's other dimension differs in one file",
        lambda f: stations_time_last(f, {"contiguous": True}, stations=(3, 3, 4)),
        "gate",
        "dimensions_differ",
        "stations_020",
        "tas",
        why="one store holds one shape per variable (station is no coordinate to compare)",
    ),
    Case(
        "compression level differs in one file",
        compression_level_differs,
        "equal",
        why="deflate 9 and 4 decode alike: the store keeps the first file's codecs",
    ),
]
