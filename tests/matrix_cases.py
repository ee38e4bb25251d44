"""The correctness matrix: collections the virtual-reference libraries combine silently
wrong (docs/correctness.md), each with the one outcome the pipeline must produce: refused
at the gate with a code naming the odd file and variable, or published exactly equal to
the sources."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import h5py
import netCDF4
import numpy as np

from devhost.samples import SampleSpec, truncate_copy, write_bytes, write_sample_files
from tests.helpers import REQUIRE_TOOLS as REQUIRE_TOOLS  # tests/stacapi.py reads it here
from tests.helpers import missing_tool

BASE = SampleSpec(files=3, steps_per_file=4, time_chunk=2, lat=6, lon=10)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[Path]]
    outcome: str  # "equal" or "gate"
    code: str = ""  # the finding code at the gate
    odd_file: str = ""  # a part of the odd file's name
    variable: str | None = ""
    why: str = ""
    settings: dict[str, int] = field(default_factory=dict)  # overrides for this case
    options: dict[str, object] = field(default_factory=dict)  # the request's options
    # Variables the files pack with float32 scale_factor/add_offset: the files decode them as
    # float32, the store (attributes as JSON numbers) as float64. Compared within float32
    # rounding (one float32 ulp at |value| + |add_offset|), every other variable identically.
    float32_packed: tuple[str, ...] = ()
    # The files' times decode to numpy dates in some files and cftime in others (a standard
    # calendar crossing 2262): the store's, one array, to cftime; compared with the files
    # opened with cftime dates throughout.
    cftime: bool = False


def _base_then_odd(folder: Path, odd: SampleSpec, base: SampleSpec = BASE) -> list[Path]:
    """Two ordinary files, then a third written with ``odd``."""
    paths = write_sample_files(folder, replace(base, files=2))
    return paths + write_sample_files(folder, replace(odd, files=1, first_index=2))


def partial_chunks(folder: Path) -> list[Path]:
    # 5 steps per file with a time chunk of 2: the files' last chunks are partial
    return write_sample_files(folder, replace(BASE, steps_per_file=5))


def partial_last_file_only(folder: Path) -> list[Path]:
    # only the last file is short (3 steps, chunk 2): the combined store's last chunk is
    # partial, which Zarr holds. Its days continue the others' (8, 9, 10).
    return _base_then_odd(folder, replace(BASE, steps_per_file=3, start=date(2024, 1, 3)))


def other_chunks(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, time_chunk=4))


def other_dtype(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, tas_dtype="f8"))


def other_codec(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, compression=False))


def missing_variable(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, with_pr=False))


def other_scale_factor(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, pr_scale_factor=0.1))


def other_add_offset(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, pr_add_offset=0.0))


def other_fill_value(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, pr_fill_value=-9999))


def other_missing_value(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, pr_missing_value=-9999))


def other_time_units(folder: Path) -> list[Path]:
    return write_sample_files(folder, replace(BASE, per_file_time_units=True))


def other_calendar(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, calendar="noleap"))


def other_grid(folder: Path) -> list[Path]:
    return _base_then_odd(folder, replace(BASE, lat_offset=0.5))


def duplicate_steps(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, BASE)
    copy = folder / "tas_day_copy.nc"
    copy.write_bytes(paths[1].read_bytes())
    return [*paths, copy]


def overlapping_steps(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, BASE)
    # a file that starts inside the second file's steps
    shifted = replace(
        BASE, files=1, start=BASE.start, prefix="tas_shifted", time_units="days since 2024-01-01"
    )
    extra = write_sample_files(folder / "x", shifted)[0]
    with netCDF4.Dataset(extra, "a") as ds:
        ds["time"][:] = ds["time"][:] + 5  # days 5..8 overlap the second file's 4..7
    target = folder / extra.name
    extra.rename(target)
    (folder / "x").rmdir()
    return [*paths, target]


def out_of_order_names(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, BASE)
    return [p.rename(p.with_name(f"{9 - i}_{p.name}")) for i, p in enumerate(paths)]


def scalar_grid_mapping_with_value(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, BASE)
    for path in paths:
        with netCDF4.Dataset(path, "a") as ds:
            ds["crs"].assignValue(4326)
    return paths


def zeros_without_fill_value(folder: Path) -> list[Path]:
    """Variables without _FillValue whose HDF5 fill value is 0 (netCDF4 fill_value=False):
    real zeros must stay zeros and integers integers."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(3):
        path = folder / f"counts_{i}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("x", 4)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * i, 2 * i + 1]
            x = ds.createVariable("x", "f4", ("x",), fill_value=False)
            x[:] = [-1.0, 0.0, 1.0, 2.0]
            rain = ds.createVariable(
                "rain", "f4", ("time", "x"), fill_value=False, chunksizes=(1, 4)
            )
            rain[:] = [[0.0, 1.5, 0.0, 2.0], [0.0, 0.0, 3.0, 0.0]]
            count = ds.createVariable("count", "i4", ("time", "x"), chunksizes=(1, 4))
            count[:] = np.arange(8).reshape(2, 4)
        paths.append(path)
    return paths


def empty_file(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, replace(BASE, files=2))
    return [*paths, write_bytes(folder / "tas_day_empty.nc", b"")]


def not_netcdf(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, replace(BASE, files=2))
    return [*paths, write_bytes(folder / "tas_day_notes.nc", b"<html>an error page</html>")]


def truncated(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, BASE)
    cut = truncate_copy(paths[2], folder / "tas_day_cut.nc", 0.5)
    paths[2].unlink()
    return [*paths[:2], cut]


def variable_length_strings(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, BASE)
    for path in paths:
        with netCDF4.Dataset(path, "a") as ds:
            ds.createDimension("station", 2)
            names = ds.createVariable("station_name", str, ("station",))
            names[:] = np.array(["north", "south"], dtype=object)
    return paths


def plain_hdf5(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(2):
        path = folder / f"plain_{i}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("time", data=np.arange(2.0 * i, 2.0 * i + 2))
            f.create_dataset("tas", data=np.ones((2, 3), "f4"), chunks=(1, 3), fillvalue=np.nan)
        paths.append(path)
    return paths


def large_unchunked(folder: Path) -> list[Path]:
    # the limits are lowered for this case: each file stores tas compressed in one chunk
    # (plain variables, contiguous ones included, are cut into sub-chunks instead)
    return write_sample_files(folder, replace(BASE, time_chunk=BASE.steps_per_file))


def many_references(folder: Path) -> list[Path]:
    return write_sample_files(folder, BASE)


def unsupported_filter(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, replace(BASE, files=2))
    odd = folder / "tas_day_20240109.nc"
    with h5py.File(odd, "w") as f:  # a NetCDF-like file whose variable is lzf-compressed
        time = f.create_dataset("time", data=np.arange(8.0, 12.0))
        time.attrs["units"] = "days since 2024-01-01"
        time.make_scale("time")
        tas = f.create_dataset(
            "tas", data=np.zeros((4, 6, 10), "f4"), chunks=(2, 6, 10), compression="lzf"
        )
        tas.dims[0].attach_scale(time)
    return [*paths, odd]


def _netcdf(path: Path, build: Callable[[netCDF4.Dataset], None], **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", **kwargs) as ds:
        build(ds)
    return path


def bounds_per_file_units(folder: Path) -> list[Path]:
    """CDO's habit: every file's time units start at its own first step, and time has
    bounds (time:bounds = "time_bnds", the bounds without units of their own: CF gives them
    the coordinate's)."""
    paths = write_sample_files(folder, replace(BASE, per_file_time_units=True))
    for path in paths:
        with netCDF4.Dataset(path, "a") as ds:
            ds.createDimension("bnds", 2)
            ds["time"].bounds = "time_bnds"
            bounds = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
            steps = ds["time"][:]
            bounds[:] = np.stack([steps - 0.5, steps + 0.5], axis=1)
    return paths


def integer_time_bounds_noleap(folder: Path) -> list[Path]:
    """CMIP style: int time in a noleap calendar, units "days since <month start>" per file,
    int bounds."""

    def month(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.createDimension("time", None)
            ds.createDimension("bnds", 2)
            ds.createDimension("x", 4)
            time = ds.createVariable("time", "i4", ("time",))
            time.units = f"days since 2024-{index + 1:02d}-01"
            time.calendar = "noleap"
            time.bounds = "time_bnds"
            time[:] = [0, 1, 2]
            bounds = ds.createVariable("time_bnds", "i4", ("time", "bnds"))
            bounds[:] = [[0, 1], [1, 2], [2, 3]]
            tas = ds.createVariable("tas", "f4", ("time", "x"), chunksizes=(1, 4))
            tas.units = "K"
            tas[:] = np.arange(12, dtype="f4").reshape(3, 4) + 100 * index

        return build

    return [_netcdf(folder / f"tas_mon_{i}.nc", month(i)) for i in range(3)]


def climatology_bounds(folder: Path) -> list[Path]:
    """Climatological statistics: time:climatology names the bounds (CF 7.4)."""

    def one(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.createDimension("time", None)
            ds.createDimension("nv", 2)
            ds.createDimension("x", 4)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = f"days since 2000-{index + 1:02d}-01"
            time.climatology = "climatology_bounds"
            time[:] = [15.0]
            bounds = ds.createVariable("climatology_bounds", "f8", ("time", "nv"))
            bounds[:] = [[0.0, 30.0 + 3650.0]]
            tas = ds.createVariable("tas", "f4", ("time", "x"), chunksizes=(1, 4))
            tas.cell_methods = "time: mean within years time: mean over years"
            tas[:] = np.arange(4, dtype="f4").reshape(1, 4) + 10 * index

        return build

    return [_netcdf(folder / f"clim_{i}.nc", one(i)) for i in range(3)]


def _with_scalar_height(paths: list[Path], heights: list[float]) -> list[Path]:
    for path, height in zip(paths, heights, strict=True):
        with netCDF4.Dataset(path, "a") as ds:
            var = ds.createVariable("height", "f8", ())
            var.units = "m"
            var.standard_name = "height"
            var.assignValue(height)
            ds["tas"].coordinates = "height"
    return paths


def scalar_coordinate_same(folder: Path) -> list[Path]:
    return _with_scalar_height(write_sample_files(folder, BASE), [2.0, 2.0, 2.0])


def scalar_coordinate_differs(folder: Path) -> list[Path]:
    """A 2 m temperature file among 10 m ones: the scalar coordinate height differs."""
    return _with_scalar_height(write_sample_files(folder, BASE), [2.0, 2.0, 10.0])


def static_mask_differs(folder: Path) -> list[Path]:
    """A land mask (lat x lon, no time) that one file has different."""
    paths = write_sample_files(folder, BASE)
    for i, path in enumerate(paths):
        with netCDF4.Dataset(path, "a") as ds:
            mask = ds.createVariable("land", "i1", ("lat", "lon"))
            values = np.zeros((BASE.lat, BASE.lon), "i1")
            values[: 2 + (i == 2), :] = 1
            mask[:] = values
    return paths


def packed_single_precision(folder: Path) -> list[Path]:
    """scale_factor and add_offset stored as float (many satellite and reanalysis files)."""
    paths = write_sample_files(folder, BASE)
    for path in paths:
        with netCDF4.Dataset(path, "a") as ds:
            ds["pr"].scale_factor = np.float32(BASE.pr_scale_factor)
            ds["pr"].add_offset = np.float32(BASE.pr_add_offset)
    return paths


def packed_single_precision_netcdf3(folder: Path) -> list[Path]:
    return packed_single_precision_in(folder, "NETCDF3_CLASSIC")


def packed_single_precision_in(folder: Path, netcdf_format: str) -> list[Path]:
    paths = write_sample_files(folder, replace(BASE, netcdf_format=netcdf_format))
    for path in paths:
        with netCDF4.Dataset(path, "a") as ds:
            ds["pr"].scale_factor = np.float32(BASE.pr_scale_factor)
            ds["pr"].add_offset = np.float32(BASE.pr_add_offset)
    return paths


def _unsigned_bytes(folder: Path, attribute_type: type) -> list[Path]:
    """Satellite L3 style: bytes flagged _Unsigned, packed with scale_factor/add_offset."""

    def day(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.createDimension("time", None)
            ds.createDimension("x", 4)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * index, 2 * index + 1]
            sst = ds.createVariable("sst", "i1", ("time", "x"), chunksizes=(1, 4), fill_value=-1)
            sst._Unsigned = "true"
            sst.scale_factor = attribute_type(0.1)
            sst.add_offset = attribute_type(270.0)
            sst.valid_range = np.array([0, 250], "u1").view("i1")
            sst.set_auto_maskandscale(False)
            raw = (np.arange(8).reshape(2, 4) * 30 + index).astype("u1")
            sst[:] = raw.view("i1")

        return build

    return [_netcdf(folder / f"sst_{i}.nc", day(i)) for i in range(3)]


def unsigned_bytes_double(folder: Path) -> list[Path]:
    return _unsigned_bytes(folder, np.float64)


def unsigned_bytes_single(folder: Path) -> list[Path]:
    return _unsigned_bytes(folder, np.float32)


def _satellite_packed(folder: Path, name: str, signed: str, fill: int, pack: tuple[float, float]):
    """As satellite producers write it: netCDF4, chunked, deflate with shuffle; unsigned
    values stored in a signed type flagged _Unsigned, packed with float32 scale_factor and
    add_offset, a _FillValue (unsigned) and a valid_range. Every file holds both ends of the
    unsigned range and values next to them, the fill value, and random values."""
    unsigned = np.dtype(signed.replace("i", "u"))
    top = int(np.iinfo(unsigned).max)
    rng = np.random.default_rng(7)

    def granule(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.createDimension("time", None)
            ds.createDimension("lat", 3)
            ds.createDimension("lon", 4)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * index, 2 * index + 1]
            ds.createVariable("lat", "f4", ("lat",))[:] = [-10.0, 0.0, 10.0]
            ds.createVariable("lon", "f4", ("lon",))[:] = [0.0, 90.0, 180.0, 270.0]
            var = ds.createVariable(
                name,
                signed,
                ("time", "lat", "lon"),
                fill_value=np.array(fill, unsigned).view(signed),
                zlib=True,
                complevel=4,
                shuffle=True,
                chunksizes=(1, 3, 4),
            )
            var._Unsigned = "true"
            var.scale_factor = np.float32(pack[0])
            var.add_offset = np.float32(pack[1])
            valid = [1, top] if fill == 0 else [0, top - 1]
            var.valid_range = np.array(valid, unsigned).view(signed)
            var.set_auto_maskandscale(False)
            raw = rng.integers(0, top + 1, (2, 3, 4)).astype(unsigned)
            raw.flat[:5] = [0, 1, top - 1, top, fill]
            var[:] = raw.view(signed)

        return build

    return [_netcdf(folder / f"{name}_{i}.nc", granule(i)) for i in range(3)]


def satellite_bytes_float32_packed(folder: Path) -> list[Path]:
    """Sea surface temperature in unsigned bytes, the fill value at the top of the range."""
    return _satellite_packed(folder, "sst", "i1", 255, (0.15, 271.15))


def satellite_shorts_float32_packed(folder: Path) -> list[Path]:
    """Land surface temperature in unsigned shorts, the fill value at the bottom (MODIS's
    habit)."""
    return _satellite_packed(folder, "lst", "i2", 0, (0.002, 250.0))


def missing_values_and_valid_range(folder: Path) -> list[Path]:
    """Two missing values (a list), valid_min/valid_max and a valid_range: xarray masks the
    missing values and leaves the valid_* as attributes, from the files and from the store."""

    def day(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.createDimension("time", None)
            ds.createDimension("x", 4)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * index, 2 * index + 1]
            snow = ds.createVariable("snow", "i2", ("time", "x"), chunksizes=(1, 4))
            snow.missing_value = np.array([-999, -998], "i2")
            snow.valid_min = np.int16(0)
            snow.valid_max = np.int16(500)
            snow.set_auto_maskandscale(False)
            snow[:] = np.array([[1, -999, 3, 4], [-998, 6, 7, 8 + index]], "i2")
            depth = ds.createVariable("depth", "f4", ("time", "x"), chunksizes=(1, 4))
            depth.valid_range = np.array([0.0, 10.0], "f4")
            depth[:] = np.arange(8, dtype="f4").reshape(2, 4) / 2 + index

        return build

    return [_netcdf(folder / f"snow_{i}.nc", day(i)) for i in range(3)]


def data_in_a_group(folder: Path) -> list[Path]:
    """The data sit in a sub-group; the root holds only time."""

    def day(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.createDimension("time", None)
            ds.createDimension("x", 4)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * index, 2 * index + 1]
            science = ds.createGroup("science")
            sst = science.createVariable("sst", "f4", ("time", "x"), chunksizes=(1, 4))
            sst[:] = np.arange(8, dtype="f4").reshape(2, 4) + 10 * index

        return build

    return [_netcdf(folder / f"product_{i}.nc", day(i)) for i in range(3)]


def data_in_a_group_with_coordinates(folder: Path) -> list[Path]:
    """Sentinel-5P style: the root holds attributes only; /PRODUCT holds its own dimensions,
    coordinates and data."""

    def day(index: int) -> Callable[[netCDF4.Dataset], None]:
        def build(ds: netCDF4.Dataset) -> None:
            ds.Conventions = "CF-1.7"
            product = ds.createGroup("PRODUCT")
            product.createDimension("time", None)
            product.createDimension("x", 4)
            time = product.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * index, 2 * index + 1]
            x = product.createVariable("x", "i4", ("x",))
            x[:] = np.arange(4)
            no2 = product.createVariable("no2", "f4", ("time", "x"), chunksizes=(1, 4))
            no2.units = "mol m-2"
            no2[:] = np.arange(8, dtype="f4").reshape(2, 4) * 1e-5 + index

        return build

    return [_netcdf(folder / f"s5p_{i}.nc", day(i)) for i in range(3)]


def group_missing_in_one_file(folder: Path) -> list[Path]:
    paths = data_in_a_group_with_coordinates(folder)
    odd = folder / "s5p_9.nc"

    def build(ds: netCDF4.Dataset) -> None:
        other = ds.createGroup("DETAILED")
        other.createDimension("x", 4)
        other.createVariable("x", "i4", ("x",))[:] = np.arange(4)

    return [*paths, _netcdf(odd, build)]


# -- files written by the tools archives use (Debian packages cdo, nco, netcdf-bin) ---------
def tool(*command: str | Path, cwd: Path | None = None) -> None:
    """Run an archive tool; skip the case (fail, under CI) when the tool is not installed."""
    name = str(command[0])
    if shutil.which(name) is None:
        missing_tool(f"{name} is not installed (Debian: apt-get install cdo nco netcdf-bin)")
    subprocess.run([str(c) for c in command], check=True, capture_output=True, cwd=cwd)


def _six_hourly(path: Path, days: int = 4, dtype: str = "f4") -> Path:
    """Model output CDO and NCO start from: 6-hourly steps, hours since the start."""

    def build(ds: netCDF4.Dataset) -> None:
        ds.createDimension("time", None)
        ds.createDimension("lat", 6)
        ds.createDimension("lon", 10)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "hours since 2024-01-01 00:00:00"
        time.calendar = "standard"
        time.standard_name = "time"
        time[:] = np.arange(0, 24 * days, 6)
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-75, 75, 6)
        lon = ds.createVariable("lon", "f4", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(0, 324, 10)
        tas = ds.createVariable("tas", dtype, ("time", "lat", "lon"))
        tas.units = "K"
        tas.standard_name = "air_temperature"
        rng = np.random.default_rng(1)
        tas[:] = 273 + rng.normal(size=(4 * days, 6, 10))

    return _netcdf(path, build)


def cdo_daily_means(folder: Path) -> list[Path]:
    """CDO: daily means (time bounds), one file per day, each with its own reference time."""
    work = folder.parent / f"{folder.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    base = _six_hourly(work / "base.nc")
    tool("cdo", "-s", "-f", "nc4", "-z", "zip_4", "daymean", base, work / "daily.nc")
    tool("cdo", "-s", "splitsel,1", work / "daily.nc", work / "day_")
    paths = []
    for day in range(1, 5):
        target = folder / f"tas_day_2024010{day}.nc"
        reference = f"setreftime,2024-01-0{day},00:00:00,hours"
        tool("cdo", "-s", reference, work / f"day_00000{day}.nc", target)
        paths.append(target)
    return paths


def _nco_packed(folder: Path, source_dtype: str) -> list[Path]:
    """NCO: ncpdq packs the collection once (short, with scale_factor and add_offset of the
    unpacked variable's type), then ncks cuts it into daily files."""
    work = folder.parent / f"{folder.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    base = _six_hourly(work / "base.nc", dtype=source_dtype)
    tool("ncpdq", "-O", "-4", "-P", "all_new", base, work / "packed.nc")
    paths = []
    for day in range(4):
        target = folder / f"tas_6h_2024010{day + 1}.nc"
        steps = f"time,{4 * day},{4 * day + 3}"
        tool("ncks", "-O", "-4", "--cnk_dmn", "time,4", "-d", steps, work / "packed.nc", target)
        paths.append(target)
    return paths


def nco_packed_float(folder: Path) -> list[Path]:
    return _nco_packed(folder, "f4")


def nco_packed_float_fixed_with_ncatted(folder: Path) -> list[Path]:
    """The remedy the gate gives for packed_single_precision, applied: ncatted stores the
    packing attributes as double, without touching the data."""
    paths = _nco_packed(folder, "f4")
    with netCDF4.Dataset(paths[0]) as ds:
        scale, offset = float(ds["tas"].scale_factor), float(ds["tas"].add_offset)
    for path in paths:
        tool(
            "ncatted", "-O", "-a", f"scale_factor,tas,m,d,{scale!r}",
            "-a", f"add_offset,tas,m,d,{offset!r}", path,
        )  # fmt: skip
    return paths


def nco_packed_double(folder: Path) -> list[Path]:
    return _nco_packed(folder, "f8")


def _ncgen(folder: Path, cdl: Callable[[int], str], files: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        text = folder / f"file_{i}.cdl"
        text.write_text(cdl(i))
        target = folder / f"file_{i}.nc"
        tool("ncgen", "-k", "nc4", "-o", target, text)
        text.unlink()
        paths.append(target)
    return paths


def ncgen_stations(folder: Path) -> list[Path]:
    """ncgen, CF discrete sampling geometry: char station names, a cell measure, an
    ancillary status flag with flag_values, the julian calendar."""

    def cdl(i: int) -> str:
        return f"""netcdf stations {{
dimensions: time = UNLIMITED ; station = 3 ; name_strlen = 8 ;
variables:
  double time(time) ; time:units = "days since 2024-01-01" ; time:calendar = "julian" ;
  char station_name(station, name_strlen) ; station_name:cf_role = "timeseries_id" ;
  float area(station) ; area:units = "m2" ;
  float tas(time, station) ; tas:units = "K" ; tas:ancillary_variables = "tas_flag" ;
    tas:cell_measures = "area: area" ; tas:coordinates = "station_name" ;
  byte tas_flag(time, station) ; tas_flag:flag_values = 0b, 1b ;
    tas_flag:flag_meanings = "good suspect" ;
data:
  time = {2 * i}, {2 * i + 1} ; station_name = "north", "south", "east" ;
  area = 1.5, 2.5, 3.5 ; tas = 270, 271, 272, 273, 274, 27{i} ;
  tas_flag = 0, 1, 0, 0, 0, 1 ;
}}"""

    return _ncgen(folder, cdl)


def ncgen_months_360_day(folder: Path) -> list[Path]:
    """ncgen: "months since" in the 360_day calendar (CF allows months there)."""

    def cdl(i: int) -> str:
        return f"""netcdf months {{
dimensions: time = UNLIMITED ; x = 2 ;
variables:
  double time(time) ; time:units = "months since 2000-01-01" ; time:calendar = "360_day" ;
  float pr(time, x) ; pr:units = "mm" ;
data: time = {2 * i}, {2 * i + 1} ; pr = 1, 2, 3, {i} ;
}}"""

    return _ncgen(folder, cdl)


def ncgen_gathered(folder: Path) -> list[Path]:
    """ncgen: compression by gathering (CF 8.2: a list variable with a compress attribute)."""

    def cdl(i: int) -> str:
        return f"""netcdf gathered {{
dimensions: time = UNLIMITED ; lat = 3 ; lon = 4 ; landpoint = 5 ;
variables:
  double time(time) ; time:units = "days since 2024-01-01" ;
  float lat(lat) ; lat:units = "degrees_north" ;
  float lon(lon) ; lon:units = "degrees_east" ;
  int landpoint(landpoint) ; landpoint:compress = "lat lon" ;
  float soil(time, landpoint) ; soil:units = "kg m-2" ;
data:
  time = {2 * i}, {2 * i + 1} ; lat = -10, 0, 10 ; lon = 0, 90, 180, 270 ;
  landpoint = 0, 3, 5, 6, 11 ; soil = 1, 2, 3, 4, 5, 6, 7, 8, 9, 1{i} ;
}}"""

    return _ncgen(folder, cdl)


CASES = [
    Case(
        "partial chunks along time in every file",
        partial_chunks,
        "gate",
        "partial_chunks",
        "tas_day_20240101",
        "tas",
        "kerchunk combines it silently wrong; VirtualiZarr refuses",
    ),
    Case(
        "partial chunk in the last file only",
        partial_last_file_only,
        "equal",
        why="the combined store's last chunk may be partial: Zarr represents it exactly",
    ),
    Case(
        "chunk shape differs in one file",
        other_chunks,
        "gate",
        "chunks_differ",
        "tas_day_20240109",
        "tas",
    ),
    Case(
        "dtype differs in one file", other_dtype, "gate", "dtype_differs", "tas_day_20240109", "tas"
    ),
    Case(
        "codec differs in one file", other_codec, "gate", "codecs_differ", "tas_day_20240109", "tas"
    ),
    Case(
        "a variable is missing in one file",
        missing_variable,
        "gate",
        "variables_differ",
        "tas_day_20240109",
        "pr",
    ),
    Case(
        "scale_factor differs in one file",
        other_scale_factor,
        "gate",
        "encoding_differs",
        "tas_day_20240109",
        "pr",
    ),
    Case(
        "add_offset differs in one file",
        other_add_offset,
        "gate",
        "encoding_differs",
        "tas_day_20240109",
        "pr",
    ),
    Case(
        "_FillValue differs in one file",
        other_fill_value,
        "gate",
        "encoding_differs",
        "tas_day_20240109",
        "pr",
    ),
    Case(
        "missing_value differs in one file",
        other_missing_value,
        "gate",
        "encoding_differs",
        "tas_day_20240109",
        "pr",
    ),
    Case(
        "time units differ between files",
        other_time_units,
        "equal",
        why="each file's times are decoded with its own units, then encoded once",
    ),
    Case(
        "calendar differs in one file",
        other_calendar,
        "gate",
        "calendar_differs",
        "tas_day_20240109",
        "time",
    ),
    Case(
        "latitude grid differs in one file",
        other_grid,
        "gate",
        "coordinates_differ",
        "tas_day_20240109",
        "lat",
    ),
    Case(
        "a file repeats another's steps",
        duplicate_steps,
        "gate",
        "concat_overlap",
        "tas_day_copy",
        "time",
    ),
    Case(
        "a file overlaps another's steps",
        overlapping_steps,
        "gate",
        "concat_overlap",
        "tas_shifted",
        "time",
    ),
    Case(
        "time bounds with per-file time units",
        bounds_per_file_units,
        "equal",
        why="the bounds are decoded with their coordinate's units, per file, as CF says",
    ),
    Case(
        "integer time and bounds, noleap, per-file units",
        integer_time_bounds_noleap,
        "equal",
        why="as above, in the file's own calendar",
    ),
    Case(
        "climatology bounds",
        climatology_bounds,
        "equal",
        why="time:climatology names bounds that take the coordinate's units",
    ),
    Case(
        "a scalar coordinate, the same in every file",
        scalar_coordinate_same,
        "equal",
        why="one copy in the store, equal to every file's",
    ),
    Case(
        "a scalar coordinate differs in one file",
        scalar_coordinate_differs,
        "gate",
        "static_differs",
        "tas_day_20240109",
        "height",
    ),
    Case(
        "a scalar coordinate differs, option static_differs keep-first",
        scalar_coordinate_differs,
        "equal",
        "static_differs",
        why="published with a warning: the store keeps the first file's, as asked",
        options={"static_differs": "keep-first"},
    ),
    Case(
        "a scalar coordinate differs, option drop_variables",
        scalar_coordinate_differs,
        "equal",
        why="the variable is left out of the store",
        options={"drop_variables": ["height"]},
    ),
    Case(
        "a static field differs in one file",
        static_mask_differs,
        "gate",
        "static_differs",
        "tas_day_20240109",
        "land",
    ),
    Case(
        "packed with single-precision scale_factor and add_offset",
        packed_single_precision,
        "equal",
        "packed_single_precision",
        why="float64 from the store, float32 from the files: equal within float32 rounding",
        float32_packed=("pr",),
    ),
    Case(
        "packed with single-precision attributes, NetCDF3",
        packed_single_precision_netcdf3,
        "equal",
        "packed_single_precision",
        why="as above; the attribute types are read from the classic header's own bytes",
        float32_packed=("pr",),
    ),
    Case(
        "_Unsigned bytes packed with double attributes",
        unsigned_bytes_double,
        "equal",
        why="xarray reads _Unsigned from the store's attributes as from the file's",
    ),
    Case(
        "_Unsigned bytes packed with single-precision attributes",
        unsigned_bytes_single,
        "equal",
        "packed_single_precision",
        why="the satellite L3 habit: as above, _Unsigned applied before the packing",
        float32_packed=("sst",),
    ),
    Case(
        "float32-packed unsigned bytes with _FillValue, satellite style",
        satellite_bytes_float32_packed,
        "equal",
        "packed_single_precision",
        why="netCDF4, chunked, deflate: 0, 1, 254, and 255 (the fill value) in every file",
        float32_packed=("sst",),
    ),
    Case(
        "float32-packed unsigned shorts with _FillValue, satellite style",
        satellite_shorts_float32_packed,
        "equal",
        "packed_single_precision",
        why="as above: 0 (the fill value), 1, 65534 and 65535 in every file",
        float32_packed=("lst",),
    ),
    Case(
        "missing_value list, valid_min/valid_max, valid_range",
        missing_values_and_valid_range,
        "equal",
        why="a list of missing values masks both; valid_* stay attributes, as xarray leaves them",
    ),
    Case(
        "the data only in a sub-group",
        data_in_a_group,
        "gate",
        "no_data_variables",
        "product_0",
        None,
    ),
    Case(
        "the data in a group, option group",
        data_in_a_group_with_coordinates,
        "equal",
        why="the group with its own coordinates is published as the store's root",
        options={"group": "PRODUCT"},
    ),
    Case(
        "the group is missing in one file",
        group_missing_in_one_file,
        "gate",
        "group_missing",
        "s5p_9",
        None,
        options={"group": "PRODUCT"},
    ),
    Case(
        "CDO daily means, per-file reference time and bounds",
        cdo_daily_means,
        "equal",
        why="cdo daymean + splitsel + setreftime: bounds decoded with each file's units",
    ),
    Case(
        "NCO-packed float data",
        nco_packed_float,
        "equal",
        "packed_single_precision",
        why="ncpdq packs float data with float packing attributes: as above",
        float32_packed=("tas",),
    ),
    Case(
        "NCO-packed float data, attributes made double with ncatted",
        nco_packed_float_fixed_with_ncatted,
        "equal",
        why="the remedy packed_single_precision gives, applied: the same store as the files",
    ),
    Case(
        "NCO-packed double data",
        nco_packed_double,
        "equal",
        why="ncpdq gives double data double packing attributes",
    ),
    Case(
        "ncgen stations: char names, cell measure, status flag, julian",
        ncgen_stations,
        "equal",
        why="fixed-length char, flag_values and cell_measures read back as in the files",
    ),
    Case(
        "ncgen months since, 360_day",
        ncgen_months_360_day,
        "equal",
        why='xarray decodes "months since" in 360_day but cannot encode it: stored as days '
        "since the same date, which decode to the same dates",
    ),
    Case(
        "ncgen compression by gathering",
        ncgen_gathered,
        "equal",
        why="the list variable and the gathered data are stored as they are, as xarray reads them",
    ),
    Case(
        "file names out of time order",
        out_of_order_names,
        "equal",
        why="files are ordered by their time values",
    ),
    Case(
        "scalar grid mapping with a value",
        scalar_grid_mapping_with_value,
        "equal",
        why="0-d chunk keys are written as name/0 (kerchunk readers return NaN otherwise)",
    ),
    Case(
        "zeros in variables without _FillValue",
        zeros_without_fill_value,
        "equal",
        why="arrays without _FillValue get no Zarr fill_value, so zeros are not masked",
    ),
    Case("an empty file", empty_file, "gate", "empty_file", "tas_day_empty", None),
    Case("a file that is not NetCDF", not_netcdf, "gate", "not_netcdf", "tas_day_notes", None),
    Case("a truncated file", truncated, "gate", "truncated", "tas_day_cut", None),
    Case(
        "variable-length strings",
        variable_length_strings,
        "gate",
        "variable_length_strings",
        "tas_day_20240101",
        "station_name",
    ),
    Case("HDF5 without netCDF dimensions", plain_hdf5, "gate", "not_netcdf_hdf5", "plain_0", None),
    Case(
        "a compressed variable stored in one chunk above the limit",
        large_unchunked,
        "gate",
        "unchunked_variable_too_large",
        "tas_day_20240101",
        "tas",
        settings={"unchunked_warn_bytes": 16, "unchunked_max_bytes": 20},
    ),
    Case(
        "more references than a JSON store should hold",
        many_references,
        "equal",
        "many_references",
        why="a warning that recommends kerchunk-parquet or icechunk (kerchunk-json only)",
        settings={"json_max_references": 10},
    ),
    Case(
        "a variable with the lzf filter",
        unsupported_filter,
        "gate",
        "unsupported_filter",
        "tas_day_20240109",
        "tas",
    ),
]
