"""Validate: every case is a real file written here by netCDF4 or h5py (no mocks, except the
one storage fault that cannot be provoked on demand)."""

import hashlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import h5py
import hdf5plugin
import netCDF4
import numpy as np
import pytest
import xarray as xr
from obspec_utils.wrappers import RequestTrace

from consumer.reader import open_item
from devhost.samples import (
    SampleSpec,
    open_collection,
    truncate_copy,
    write_bytes,
    write_sample_files,
)
from shared.io.storage import ObjectInfo, Storage
from shared.io.stores import open_store
from shared.model.errors import (
    CombineFailed,
    StorageUnavailable,
    UnsuitableCollection,
    VerifyMismatch,
)
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import FORMATS, PipelineRequest
from shared.model.settings import Settings
from shared.stages.combine import combine, source_root
from shared.stages.references import generate_batch
from shared.stages.scan import load_manifest, scan
from shared.stages.validate import (
    REPORT_VERSION,
    VLEN_STRING_FORMATS,
    FileReport,
    ValidationBatch,
    load_report,
    render_report,
    validate_batch,
    validate_file,
)
from shared.stages.verify import verify
from tests.helpers import missing_tool, run_pipeline, scanned

ROOT = Path(__file__).resolve().parent.parent

SMALL = SampleSpec(files=1, lat=18, lon=36)

# Importing netCDF4 (conftest does) points HDF5_PLUGIN_PATH at netCDF4's own filter plugins,
# built for its own HDF5: h5py then finds a "blosc" it cannot write with ("error during user
# callback") and hdf5plugin does not register its own. Registering by force fixes writing.
hdf5plugin.register(force=True)


def validate(path: Path, settings: Settings) -> FileReport:
    storage = Storage(settings)
    info = storage.head(parse_location(str(path), settings))
    return validate_file(info, settings, storage)


def codes(report: FileReport) -> list[str]:
    return [f.code for f in report.findings]


def netcdf_like_hdf5(path: Path, **dataset_options) -> Path:
    """HDF5 with a dimension scale (what makes it netCDF-readable) and one variable "v"."""
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", data=np.arange(256, dtype="f8"))
        x.make_scale("x")
        v = f.create_dataset("v", data=np.arange(256, dtype="f4"), chunks=(64,), **dataset_options)
        v.dims[0].attach_scale(x)
    return path


# -- good files --------------------------------------------------------------------------------
def test_good_netcdf4_file_is_suitable_with_its_variables_dimensions_chunks_filters_and_encoding(
    tmp_path, local_settings
):
    path = write_sample_files(tmp_path, SMALL)[0]
    report = validate(path, local_settings)

    assert (report.verdict, report.findings) == ("suitable", ())
    assert (report.format, report.format_detail) == ("hdf5", "NetCDF4 (HDF5)")
    assert report.size == path.stat().st_size and report.url == f"file://{path}"
    assert report.dimensions == {"time": 1, "lat": 18, "lon": 36}
    assert [v.name for v in report.variables] == ["time", "lat", "lon", "crs", "tas", "pr"]
    assert report.attributes["Conventions"] == "CF-1.8"

    tas = report.variable("tas")
    assert tas.dtype == "<f4" and tas.shape == (1, 18, 36)
    assert tas.dimensions == ("time", "lat", "lon")
    assert (tas.layout, tas.chunks) == ("chunked", (1, 18, 36))
    assert tas.filters == ({"id": 2, "name": "shuffle"}, {"id": 1, "name": "deflate"})
    assert tas.encoding == {"_FillValue": float(np.float32(1.0e20)), "units": "K"}
    assert tas.nbytes == 18 * 36 * 4

    pr = report.variable("pr")
    assert pr.dtype == "<i2"
    assert pr.encoding == {
        "_FillValue": -32767,
        "units": "mm",
        "scale_factor": 0.01,
        "add_offset": 100.0,
    }
    time = report.variable("time")
    assert time.encoding == {"units": "days since 2024-01-01", "calendar": "standard"}
    crs = report.variable("crs")
    assert (crs.shape, crs.dimensions, crs.layout, crs.chunks) == ((), (), "contiguous", None)
    assert report.bytes_read == path.stat().st_size and report.requests == 1  # one 64 KiB block


def test_a_file_is_read_once_for_its_metadata_by_validate_and_never_by_generate(
    tmp_path, local_settings
):
    """The bench's daily file (90x180, about 88 KB: more than one 64 KiB block, less than
    two) is read whole in validate's first request, and the same bytes give its references:
    generate then reads nothing of the file (it checks its ETag), only its slice of the
    manifest."""
    path = write_sample_files(tmp_path / "src", SampleSpec(files=1))[0]
    size = path.stat().st_size
    assert local_settings.read_block_size < size <= 2 * local_settings.read_block_size
    report = validate(path, local_settings)
    assert (report.bytes_read, report.requests) == (size, 1)
    _, result = scanned(str(tmp_path / "src"), local_settings)
    storage = Storage(local_settings).traced()
    validated = validate_batch(result.manifest_url, 0, 1, local_settings, storage)
    assert (validated.bytes_read, validated.requests) == (size, 1)
    file_reads = [r for r in storage.trace.requests if r.path.endswith(path.name)]
    assert [r.method for r in file_reads if r.method != "head"] == ["get_range"]
    assert sum(r.length for r in file_reads) == size  # once, whole
    storage.trace.clear()
    generated = generate_batch(result.manifest_url, 0, 1, local_settings, storage=storage)
    assert (generated.generated, generated.reused) == (0, 1)
    file_reads = [r for r in storage.trace.requests if r.path.endswith(path.name)]
    assert not [r for r in file_reads if r.method != "head"]  # no byte of the file
    # (and it still checks the file's ETag: tests/test_hardening.py rewrites one in between)


@pytest.mark.parametrize(
    ("netcdf_format", "detail"),
    [
        ("NETCDF3_CLASSIC", "CDF-1 (classic)"),
        ("NETCDF3_64BIT_OFFSET", "CDF-2 (64-bit offset)"),
        ("NETCDF3_64BIT_DATA", "CDF-5 (64-bit data)"),
    ],
)
def test_netcdf3_classic_files_are_suitable_with_record_variables_chunked_by_record(
    tmp_path, local_settings, netcdf_format, detail
):
    spec = SampleSpec(files=1, steps_per_file=3, lat=18, lon=36, netcdf_format=netcdf_format)
    path = write_sample_files(tmp_path, spec)[0]
    report = validate(path, local_settings)

    assert (report.verdict, report.format, report.format_detail) == ("suitable", "netcdf3", detail)
    assert report.dimensions == {"time": 3, "lat": 18, "lon": 36}
    tas = report.variable("tas")
    assert (tas.dtype, tas.shape, tas.dimensions) == (">f4", (3, 18, 36), ("time", "lat", "lon"))
    assert (tas.layout, tas.chunks, tas.filters) == ("classic", (1, 18, 36), ())
    assert report.variable("lat").chunks is None
    assert report.variable("pr").encoding["scale_factor"] == 0.01


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "gzip", "shuffle": True, "fletcher32": True},
        dict(hdf5plugin.Blosc()),
        dict(hdf5plugin.Zstd()),
    ],
    ids=["deflate+shuffle+fletcher32", "blosc", "zstd"],
)
def test_filters_virtualizarr_can_decode_are_accepted(tmp_path, local_settings, options):
    report = validate(netcdf_like_hdf5(tmp_path / "f.h5", **options), local_settings)
    assert report.verdict == "suitable", render_report(report)
    assert report.format_detail == "HDF5 with netCDF dimension scales"
    assert report.variable("v").dimensions == ("x",)


# -- files that are not (complete) NetCDF ---------------------------------------------------------
def test_zero_byte_file_is_empty_file_without_reading_anything(tmp_path, local_settings):
    report = validate(write_bytes(tmp_path / "empty.nc", b""), local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["empty_file"])
    assert (report.bytes_read, report.requests) == (0, 0)
    assert str(tmp_path / "empty.nc") in report.findings[0].message


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"time,lat,lon,tas\n2024-01-01,10,20,280.1\n", "plain text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "a PNG image"),
    ],
    ids=["text", "png"],
)
def test_a_file_named_nc_that_is_not_netcdf_says_what_it_looks_like(
    tmp_path, local_settings, content, looks_like
):
    report = validate(write_bytes(tmp_path / "data.nc", content), local_settings)
    assert (report.verdict, codes(report), report.format) == ("unsuitable", ["not_netcdf"], None)
    assert looks_like in report.findings[0].message
    assert "data.nc" in report.findings[0].message


def test_truncated_netcdf4_names_the_size_its_header_expects(tmp_path, local_settings):
    good = write_sample_files(tmp_path / "src", SMALL)[0]
    path = truncate_copy(good, tmp_path / "cut.nc", 0.6)
    report = validate(path, local_settings)
    assert (report.verdict, codes(report), report.format) == ("unsuitable", ["truncated"], "hdf5")
    finding = report.findings[0]
    assert finding.details["expected_size"] == good.stat().st_size
    assert f"{good.stat().st_size:,}" in finding.message and "cut.nc" in finding.message


def test_hdf5_cut_inside_its_superblock_is_truncated(tmp_path, local_settings):
    good = write_sample_files(tmp_path / "src", SMALL)[0]
    path = write_bytes(tmp_path / "cut.nc", good.read_bytes()[:20])
    assert codes(validate(path, local_settings)) == ["truncated"]


@pytest.mark.parametrize("keep", [0.9, 0.02], ids=["in-the-data", "in-the-header"])
def test_truncated_netcdf3_is_detected_from_the_sizes_in_its_header(tmp_path, local_settings, keep):
    spec = SampleSpec(files=1, steps_per_file=2, lat=18, lon=36, netcdf_format="NETCDF3_CLASSIC")
    good = write_sample_files(tmp_path / "src", spec)[0]
    report = validate(truncate_copy(good, tmp_path / "cut.nc", keep), local_settings)
    assert (report.verdict, codes(report), report.format) == (
        "unsuitable",
        ["truncated"],
        "netcdf3",
    )
    if keep > 0.5:
        assert report.findings[0].details["expected_size"] == good.stat().st_size


def test_damaged_hdf5_is_unreadable_with_the_library_message(tmp_path, local_settings):
    good = write_sample_files(tmp_path / "src", SMALL)[0]
    data = bytearray(good.read_bytes())
    data[8] = 99  # superblock version: no HDF5 library knows it
    report = validate(write_bytes(tmp_path / "bad.nc", bytes(data)), local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["unreadable"])
    assert "superblock" in report.findings[0].message


# -- files the references cannot represent ------------------------------------------------------
UNSUPPORTED_FILTERS = {
    "lzf": ({"compression": "lzf"}, 32000),
    "scaleoffset": ({"scaleoffset": 2}, 6),
    "szip": ({"compression": "szip"}, 4),
    "bitshuffle": (dict(hdf5plugin.Bitshuffle()), 32008),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED_FILTERS))
def test_a_filter_the_readers_cannot_decode_is_unsupported_naming_variable_and_filter(
    tmp_path, local_settings, name
):
    if name == "szip" and "szip" not in h5py.filters.encode:
        missing_tool("this h5py build cannot write szip (the wheel requirements.txt pins can)")
    options, filter_id = UNSUPPORTED_FILTERS[name]
    report = validate(netcdf_like_hdf5(tmp_path / f"{name}.h5", **options), local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["unsupported_filter"])
    finding = report.findings[0]
    assert finding.variable == "v"
    assert finding.details == {"filter_id": filter_id, "filter_name": name}
    assert "'v'" in finding.message and name in finding.message and f"{name}.h5" in finding.message


def test_an_unknown_filter_id_is_unsupported(tmp_path, local_settings):
    path = tmp_path / "unknown.h5"
    with h5py.File(path, "w") as f:  # no data written: the filter exists only in the header
        f.create_dataset(
            "u", shape=(10,), dtype="f4", chunks=(5,), compression=32099, allow_unknown_filter=True
        )
    report = validate(path, local_settings)
    assert "unsupported_filter" in codes(report)
    assert report.variable("u").filters == ({"id": 32099, "name": "unknown"},)


def test_compact_storage_is_unsupported_because_it_would_read_back_as_fill_values(
    tmp_path, local_settings
):
    path = netcdf_like_hdf5(tmp_path / "compact.h5")
    with h5py.File(path, "a") as f:
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((256,))
        dsid = h5py.h5d.create(f.id, b"k", h5py.h5t.STD_I32LE, space, plist)
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(256, dtype="<i4"))
        f["k"].dims[0].attach_scale(f["x"])
    report = validate(path, local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["unsupported_layout"])
    assert report.variable("k").layout == "compact" and report.findings[0].variable == "k"


def test_a_dimension_without_coordinate_variable_is_as_long_as_its_variables(
    tmp_path, local_settings
):
    path = tmp_path / "records.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)  # no "time" variable: netCDF-4 stores a 0-long scale
        ds.createDimension("x", 4)
        ds.createDimension("unused", 7)
        ds.createVariable("v", "f4", ("time", "x"))[0:5, :] = np.ones((5, 4))
    report = validate(path, local_settings)
    assert report.dimensions == {"time": 5, "x": 4, "unused": 7}
    assert [v.name for v in report.variables] == ["v"] and report.verdict == "suitable"


def test_hdf5_without_dimension_scales_is_refused_as_not_netcdf_hdf5_with_phony_dimensions(
    tmp_path, local_settings
):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.zeros((3, 4), dtype="f4"))
        f.create_dataset("b", data=np.zeros(5, dtype="f4"))
    report = validate(path, local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["not_netcdf_hdf5"])
    assert report.format_detail == "HDF5 without netCDF dimension scales"
    assert report.variable("a").dimensions == ("phony_dim_0", "phony_dim_1")
    assert report.findings[0].details["clashes"] == {"phony_dim_0": [3, 5]}
    assert report.coordinates == {}  # no dimension has a name, so nothing is a coordinate


def test_strings_groups_and_ragged_arrays_are_reported_per_variable(tmp_path, local_settings):
    path = tmp_path / "mixed.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("station", 3)
        names = ds.createVariable("name", str, ("station",))
        names[:] = np.array(["Oslo", "Bergen", "Tromsø"], dtype=object)
        ds.createVariable("temp", "f4", ("station",), fill_value=np.float32("nan"))
        ragged = ds.createVLType(np.int32, "ragged")
        ds.createVariable("history", ragged, ("station",))
        ds.createGroup("extra").createVariable("other", "f4", ("station",))
    report = validate(path, local_settings)
    found = {(f.code, f.variable) for f in report.findings}
    assert found == {
        ("variable_length_strings", "name"),
        ("unsupported_dtype", "history"),
        ("subgroups_ignored", None),
    }
    assert report.verdict == "unsuitable"
    assert report.variable("temp").encoding == {"_FillValue": "NaN"}  # JSON has no NaN


def test_a_file_without_variables_is_no_variables(tmp_path, local_settings):
    path = tmp_path / "nothing.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "only attributes"
        ds.createDimension("time", 4)
    report = validate(path, local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["no_variables"])
    assert report.dimensions == {"time": 4} and report.attributes == {"title": "only attributes"}


# -- coordinate summaries (what the gate compares across files) ----------------------------------
def grid_file(
    path: Path,
    lats: list[float] | np.ndarray,
    times: list[float] | np.ndarray = (0.0,),
    *,
    units: str = "days since 2024-01-01",
    calendar: str = "standard",
    netcdf_format: str = "NETCDF4",
) -> Path:
    """A file with a time and a lat coordinate and one variable on them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format=netcdf_format) as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", len(lats))
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = units, calendar
        time[:] = np.asarray(times, dtype="f8")
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.asarray(lats, dtype="f4")
        ds.createVariable("tas", "f4", ("time", "lat"))[:] = np.zeros((len(times), len(lats)))
    return path


def test_every_dimension_coordinate_is_summarised_with_raw_ends_digest_order_and_dates(
    tmp_path, local_settings
):
    spec = SampleSpec(files=1, steps_per_file=3, lat=18, lon=36, start=date(2024, 2, 27))
    path = write_sample_files(tmp_path, spec)[0]
    report = validate(path, local_settings)

    assert list(report.coordinates) == ["time", "lat", "lon"]  # not crs, tas or pr
    lats = np.linspace(-89.0, 89.0, 18, dtype="<f4")
    assert report.to_dict()["coordinates"]["lat"] == {
        "size": 18,
        "dtype": "<f4",
        "first": -89.0,
        "last": 89.0,
        "digest": hashlib.sha256(lats.tobytes()).hexdigest(),
        "monotonic": "increasing",
        "duplicates": False,
        "units": "degrees_north",
        "calendar": None,
        "first_decoded": None,
        "last_decoded": None,
    }
    time = report.coordinates["time"]
    assert (time.size, time.dtype, time.first, time.last) == (3, "<f8", 0.0, 2.0)  # raw, as stored
    assert (time.units, time.calendar) == ("days since 2024-02-27", "standard")
    assert (time.first_decoded, time.last_decoded) == ("2024-02-27T00:00:00", "2024-02-29T00:00:00")
    assert "coordinate time: 3 values 2024-02-27T00:00:00 .. 2024-02-29T00:00:00" in (
        render_report(report)
    )


def test_equal_grids_have_equal_digests_in_any_format_and_a_shifted_grid_does_not(
    tmp_path, local_settings
):
    lats = np.linspace(-89.0, 89.0, 18)
    netcdf4 = validate(grid_file(tmp_path / "a.nc", lats), local_settings)
    netcdf3 = validate(
        grid_file(tmp_path / "b.nc", lats, netcdf_format="NETCDF3_CLASSIC"), local_settings
    )
    shifted = validate(grid_file(tmp_path / "c.nc", lats + 0.5), local_settings)

    a, b, c = (r.coordinates["lat"] for r in (netcdf4, netcdf3, shifted))
    assert (a.dtype, b.dtype) == ("<f4", ">f4")  # stored big-endian in NetCDF3 ...
    assert a.digest == b.digest  # ... but the digest is of little-endian values
    assert a.to_dict() | {"dtype": None} == b.to_dict() | {"dtype": None}
    assert c.digest != a.digest and (c.first, c.last) == (-88.5, 89.5)


@pytest.mark.parametrize(
    ("calendar", "last"),
    [
        ("noleap", "2024-03-01T12:00:00"),  # no 29 February
        ("standard", "2024-02-29T12:00:00"),
        ("360_day", "2024-02-29T12:00:00"),  # every month has 30 days
    ],
)
@pytest.mark.parametrize("netcdf_format", ["NETCDF4", "NETCDF3_CLASSIC"])
def test_time_is_decoded_in_its_own_calendar(
    tmp_path, local_settings, calendar, last, netcdf_format
):
    path = grid_file(
        tmp_path / "t.nc",
        [0.0],
        [0.0, 1.0, 2.5],
        units="days since 2024-02-27",
        calendar=calendar,
        netcdf_format=netcdf_format,
    )
    time = validate(path, local_settings).coordinates["time"]
    assert (time.first, time.last, time.calendar) == (0.0, 2.5, calendar)
    assert (time.first_decoded, time.last_decoded) == ("2024-02-27T00:00:00", last)


def test_time_units_that_cannot_be_decoded_leave_the_dates_null(tmp_path, local_settings):
    path = grid_file(tmp_path / "t.nc", [0.0], [0.0, 1.0], units="months since 2024-01-01")
    time = validate(path, local_settings).coordinates["time"]  # months: only in 360_day
    assert (time.first_decoded, time.last_decoded, time.last) == (None, None, 1.0)


@pytest.mark.parametrize(
    ("lats", "monotonic", "duplicates"),
    [
        ([10, 20, 30], "increasing", False),
        ([30, 20, 10], "decreasing", False),
        ([10, 20, 20, 30], "no", True),
        ([20, 10, 30], "no", False),
        ([5, 5], "constant", True),
        ([5], "increasing", False),  # one value is (trivially) increasing
        ([1, np.nan, 2], "no", False),
    ],
)
def test_order_and_duplicates_of_a_coordinate(
    tmp_path, local_settings, lats, monotonic, duplicates
):
    summary = validate(grid_file(tmp_path / "g.nc", lats), local_settings).coordinates["lat"]
    assert (summary.monotonic, summary.duplicates) == (monotonic, duplicates)


@pytest.mark.parametrize("netcdf_format", ["NETCDF4", "NETCDF3_CLASSIC"])
def test_a_coordinate_above_the_read_limit_is_summarised_from_its_two_ends(
    tmp_path, local_settings, netcdf_format
):
    settings = local_settings.with_changes(inline_max_bytes=64)  # limit: 16 x 64 = 1,024 bytes
    times = np.arange(1000) / 4  # 8,000 bytes
    path = grid_file(
        tmp_path / "long.nc",
        [1.0, 2.0],
        times,
        units="hours since 2024-01-01",
        netcdf_format=netcdf_format,
    )
    report = validate(path, settings)
    time = report.coordinates["time"]
    assert (time.size, time.first, time.last) == (1000, 0.0, 249.75)
    assert (time.digest, time.monotonic, time.duplicates) == (None, None, None)
    assert not time.complete
    assert (time.first_decoded, time.last_decoded) == ("2024-01-01T00:00:00", "2024-01-11T09:45:00")
    assert report.coordinates["lat"].complete  # 8 bytes: read whole
    full = validate(path, local_settings).coordinates["time"]
    assert full.complete and full.monotonic == "increasing"
    assert (full.first, full.last, full.last_decoded) == (time.first, time.last, time.last_decoded)


# -- variables stored in one piece ---------------------------------------------------------------
def test_compressed_variables_in_one_chunk_warn_above_one_size_and_are_unsuitable_above_another(
    tmp_path, local_settings
):
    settings = local_settings.with_changes(unchunked_warn_bytes=1000, unchunked_max_bytes=5000)
    path = tmp_path / "pieces.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("y", 20)
        ds.createDimension("x", 40)
        zlib = {"zlib": True}
        ds.createVariable("small", "f4", ("x",), chunksizes=(40,), **zlib)  # 160 bytes
        ds.createVariable("medium", "f4", ("y", "x"), chunksizes=(20, 40), **zlib)  # 3,200
        ds.createVariable("big", "f8", ("y", "x"), chunksizes=(20, 40), **zlib)  # 6,400
        ds.createVariable("tiled", "f8", ("y", "x"), chunksizes=(5, 40), **zlib)  # 4 chunks
    report = validate(path, settings)

    found = {(f.code, f.severity, f.variable) for f in report.findings}
    assert found == {
        ("large_unchunked_variable", "warning", "medium"),
        ("unchunked_variable_too_large", "error", "big"),
    }
    assert report.verdict == "unsuitable"
    big = next(f for f in report.findings if f.variable == "big")
    assert big.details == {
        "bytes": 6400,
        "layout": "chunked",
        "limit": 5000,
        "suggested_chunks": [1, 40],  # at most half the warning size per read
    }
    for text in ("'big'", "pieces.nc", "6.2 KB", "PIPELINE_UNCHUNKED_MAX_BYTES"):
        assert text in big.message
    assert "nccopy -c y/1,x/40 IN.nc OUT.nc" in big.message
    assert "h5repack -l big:CHUNK=1x40" in big.message
    medium = next(f for f in report.findings if f.variable == "medium")
    assert "single chunk" in medium.message and "PIPELINE_UNCHUNKED_WARN_BYTES" in medium.message
    assert validate(path, local_settings).verdict == "suitable"  # the defaults: 256 MB and 2 GB


def test_plain_variables_are_never_judged_as_one_piece_combine_cuts_them(tmp_path, local_settings):
    """Contiguous, chunked without filters, NetCDF3 (records and the rest): the stored bytes
    are the values, so combine cuts them into chunks of at most PIPELINE_SUBCHUNK_MAX_BYTES
    (tests/archive_cases.py publishes such files); no size finding, whatever the limits."""
    settings = local_settings.with_changes(unchunked_warn_bytes=1000, unchunked_max_bytes=5000)
    netcdf4 = tmp_path / "plain.nc"
    with netCDF4.Dataset(netcdf4, "w") as ds:
        ds.createDimension("y", 20)
        ds.createDimension("x", 40)
        ds.createVariable("big", "f8", ("y", "x"), contiguous=True)[:] = 1.0  # 6,400 bytes
        ds.createVariable("single", "f8", ("y", "x"), chunksizes=(20, 40))[:] = 1.0
    classic = tmp_path / "classic.nc"
    with netCDF4.Dataset(classic, "w", format="NETCDF3_CLASSIC") as ds:
        ds.createDimension("time", None)
        ds.createDimension("y", 20)
        ds.createDimension("x", 40)
        ds.createVariable("tas", "f4", ("time", "y", "x"))[:] = np.zeros((3, 20, 40))
        ds.createVariable("mask", "f8", ("y", "x"))[:] = np.zeros((20, 40))  # 6.4 KB
    for path in (netcdf4, classic):
        report = validate(path, settings)
        assert report.verdict == "suitable", [f.message for f in report.findings]
        assert not report.findings


# -- decided end to end: what the pipeline publishes ---------------------------------------------
# These run the stages themselves on files written here: the findings above say what they say
# because of what happens below. If a library upgrade makes a "refused" case pass, the test that
# pins the failure fails and says which finding to relax.
def station_files(folder: Path, strings: str) -> list[Path]:
    """Two files of a station series: time, a station-name variable and temperatures.
    ``strings``: "vlen" (netCDF4 str type) or "chars" (fixed-length characters)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(2):
        path = folder / f"stations_{i}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("station", 3)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "days since 2024-01-01"
            time[:] = [2 * i, 2 * i + 1]
            names = np.array(["Oslo", "Bergen", "Tromsø"])
            if strings == "vlen":
                ds.createVariable("station_name", str, ("station",))[:] = names.astype(object)
            else:
                ds.createDimension("name_length", 8)
                name = ds.createVariable("station_name", "S1", ("station", "name_length"))
                name._Encoding = "utf-8"
                name[:] = names
            temp = ds.createVariable("temp", "f4", ("time", "station"), chunksizes=(1, 3))
            temp[:] = np.arange(6, dtype="f4").reshape(2, 3) + 10 * i
        paths.append(path)
    return paths


def plain_hdf5_files(folder: Path, scales: bool) -> list[Path]:
    """Two HDF5 files written with h5py: time, lat, lon and tas(time, lat, lon); with
    ``scales``, the remedy not_netcdf_hdf5 gives (dimension scales attached)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(2):
        path = folder / f"plain_{i}.h5"
        with h5py.File(path, "w") as f:
            # fillvalue NaN: h5py's default 0 reads back as missing from kerchunk stores
            nan = {"fillvalue": np.nan}
            f.create_dataset("time", data=np.array([2.0 * i, 2.0 * i + 1]), **nan)
            f["time"].attrs["units"] = "days since 2024-01-01"
            f.create_dataset("lat", data=np.linspace(-80, 80, 3, dtype="f4"), **nan)
            f.create_dataset("lon", data=np.linspace(0, 300, 4, dtype="f4"), **nan)
            tas = np.arange(24, dtype="f4").reshape(2, 3, 4) + 100 * i
            f.create_dataset("tas", data=tas, chunks=(1, 3, 4), **nan)
            if scales:
                for axis, name in enumerate(("time", "lat", "lon")):
                    f[name].make_scale(name)
                    f["tas"].dims[axis].attach_scale(f[name])
        paths.append(path)
    return paths


def publish(source: Path, settings: Settings, fmt: str) -> xr.Dataset:
    """The core path: scan .. register, then open the item as a user would."""
    request = PipelineRequest.from_dict(
        {
            "source": str(source),
            "dataset_id": "decided",
            "format": fmt,
            "patterns": ["*.nc", "*.h5"],
        }
    )
    report = run_pipeline(request, settings)
    with open_item(report.item_url, settings) as published:
        return published.load()


def generate_and_combine(source: Path, settings: Settings, fmt: str, **fields) -> tuple[str, str]:
    """Generate and combine without the gate (what would happen if validation let it pass)."""
    request, result = scanned(str(source), settings, format=fmt, **fields)
    generate_batch(
        result.manifest_url, 0, result.file_count, settings, concat_dim=request.concat_dim
    )
    return result.manifest_url, combine(result.manifest_url, request, "run-1", settings).store_url


def test_variable_length_strings_are_refused_naming_every_format(tmp_path, local_settings):
    paths = station_files(tmp_path / "vlen", "vlen")
    report = validate(paths[0], local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["variable_length_strings"])
    finding = report.findings[0]
    assert finding.variable == "station_name"
    assert finding.details == {"formats": list(FORMATS)}
    assert set(VLEN_STRING_FORMATS) == set(FORMATS)
    for text in (*FORMATS, "'station_name'", "stations_0.nc", "'dtype': 'S1'", "ncks -x -v"):
        assert text in finding.message
    with pytest.raises(UnsuitableCollection, match="station_name"):
        run_pipeline(
            PipelineRequest.from_dict({"source": str(tmp_path / "vlen"), "dataset_id": "vlen"}),
            local_settings,
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_variable_length_strings_read_back_right_but_verify_refuses_their_dtype(
    tmp_path, local_settings, fmt
):
    """Why variable_length_strings is an error: every format reads the right text, with another
    dtype (object in kerchunk, StringDType in Icechunk; the file gives <U6), so Verify fails
    the run after all the work. When this test fails because Verify passes, make the finding
    a warning again."""
    paths = station_files(tmp_path / "vlen", "vlen")
    manifest_url, store_url = generate_and_combine(tmp_path / "vlen", local_settings, fmt)
    manifest = load_manifest(manifest_url, local_settings)
    store = parse_location(store_url, local_settings)
    source = source_root(manifest, local_settings)
    with open_store(store, fmt, source, local_settings) as stored:
        combined = stored.load()
    xr.testing.assert_identical(combined, open_collection(paths).load())  # the values are right
    assert combined["station_name"].dtype != open_collection(paths)["station_name"].dtype
    with pytest.raises(VerifyMismatch, match="'station_name': dtype"):
        verify(manifest_url, store_url, fmt, "time", local_settings)


@pytest.mark.filterwarnings("ignore:The data type .NullTerminatedBytes")
@pytest.mark.parametrize("fmt", FORMATS)
def test_fixed_length_character_names_are_published_identically(tmp_path, local_settings, fmt):
    """The remedy variable_length_strings gives."""
    paths = station_files(tmp_path / "chars", "chars")
    assert validate(paths[0], local_settings).verdict == "suitable"
    published = publish(tmp_path / "chars", local_settings, fmt)
    xr.testing.assert_identical(published, open_collection(paths).load())


def test_plain_hdf5_is_refused_saying_there_is_no_named_dimension_and_how_to_add_scales(
    tmp_path, local_settings
):
    paths = plain_hdf5_files(tmp_path / "plain", scales=False)
    report = validate(paths[0], local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["not_netcdf_hdf5"])
    message = report.findings[0].message
    assert "no named dimension to concatenate along" in message
    assert "f['time'].make_scale('time'); f['tas'].dims[0].attach_scale(f['time'])" in message
    assert "phony_dim_0 has lengths 2, 3, 4" in message  # time, lat and lon all phony_dim_0
    with pytest.raises(UnsuitableCollection, match="no named dimension"):
        publish(tmp_path / "plain", local_settings, "kerchunk-json")


@pytest.mark.parametrize("concat_dim", ["time", "phony_dim_0"])
def test_plain_hdf5_cannot_be_combined_along_any_dimension(tmp_path, local_settings, concat_dim):
    """Why not_netcdf_hdf5 is an error: without the gate, Combine fails for every request (it
    fails before any format is written, so one format shows it)."""
    plain_hdf5_files(tmp_path / "plain", scales=False)
    with pytest.raises(CombineFailed):
        generate_and_combine(tmp_path / "plain", local_settings, "icechunk", concat_dim=concat_dim)


@pytest.mark.parametrize("fmt", FORMATS)
def test_hdf5_with_dimension_scales_attached_is_published_identically(
    tmp_path, local_settings, fmt
):
    """The remedy not_netcdf_hdf5 gives."""
    paths = plain_hdf5_files(tmp_path / "scales", scales=True)
    report = validate(paths[0], local_settings)
    assert (report.verdict, report.format_detail) == (
        "suitable",
        "HDF5 with netCDF dimension scales",
    )
    assert list(report.coordinates) == ["lat", "lon", "time"]
    published = publish(tmp_path / "scales", local_settings, fmt)
    xr.testing.assert_identical(published, open_collection(paths).load())


# -- packing ----------------------------------------------------------------------------------
def packed_file(path: Path, attribute_type: type, netcdf_format: str = "NETCDF4") -> Path:
    """A short packed with scale_factor/add_offset of ``attribute_type``, with a _FillValue."""
    with netCDF4.Dataset(path, "w", format=netcdf_format) as ds:
        ds.createDimension("x", 4)
        v = ds.createVariable("v", "i2", ("x",), fill_value=np.int16(-32768))
        v.scale_factor = attribute_type(0.01)
        v.add_offset = attribute_type(100)
        v.set_auto_maskandscale(False)
        v[:] = np.array([-32768, -32767, 0, 32767], "i2")
    return path


@pytest.mark.parametrize("netcdf_format", ["NETCDF4", "NETCDF3_CLASSIC"])
def test_float32_packing_is_a_warning_that_says_the_store_decodes_float64(
    tmp_path, local_settings, netcdf_format
):
    path = packed_file(tmp_path / "packed.nc", np.float32, netcdf_format)
    report = validate(path, local_settings)
    assert report.verdict == "suitable_with_warnings"
    assert codes(report) == ["packed_single_precision"]
    finding = report.findings[0]
    assert (finding.severity, finding.variable) == ("warning", "v")
    assert finding.details == {
        "attribute_types": {"scale_factor": "float32", "add_offset": "float32"},
        "file_dtype": "float32",
        "store_dtype": "float64",
        "tolerance": "float32 rounding",
    }
    for text in ("decode it as float32", "decodes it as float64", "float32 rounding", "verify"):
        assert text in finding.message
    with xr.open_dataset(path) as ds:  # what the finding says of the file is what xarray does
        assert ds["v"].dtype == np.float32


def test_double_packing_has_no_finding_and_other_packing_types_stay_an_error(
    tmp_path, local_settings
):
    assert validate(packed_file(tmp_path / "d.nc", np.float64), local_settings).findings == ()
    path = tmp_path / "int.nc"
    with netCDF4.Dataset(path, "w") as ds:  # an integer scale_factor: xarray decodes int16
        ds.createDimension("x", 2)
        v = ds.createVariable("v", "i2", ("x",), fill_value=False)
        v.scale_factor = np.int16(2)
        v[:] = [1, 2]
    report = validate(path, local_settings)
    assert (report.verdict, codes(report)) == ("unsuitable", ["packed_single_precision"])
    assert report.findings[0].details["file_dtype"] == "int16"  # no bound verify could hold


# -- reports --------------------------------------------------------------------------------------
def test_report_round_trips_exactly_through_strict_json(tmp_path, local_settings):
    path = tmp_path / "mixed.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("n", 2)
        ds.createDimension("time", 3)
        ds.createVariable("v", "f8", ("n",), fill_value=np.nan, compression="zlib")
        ds.createVariable("s", str, ("n",))
        time = ds.createVariable("time", "f4", ("time",), fill_value=np.float32(-1))
        time.units, time.calendar = "hours since 2024-01-01", "noleap"
        time[:] = [np.nan, 1.5, 1.5]  # NaN and repeats: everything that needs care in JSON
        ds.flags = np.array([1, 2, 3], dtype="i2")
    report = validate(path, local_settings)
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert FileReport.from_dict(json.loads(text)) == report
    assert report.findings  # the round trip covered findings too
    assert report.coordinates["time"].first == "NaN"  # and coordinates
    assert json.loads(text)["version"] == REPORT_VERSION


def test_render_report_puts_the_verdict_first_then_findings_then_variables(
    tmp_path, local_settings
):
    path = netcdf_like_hdf5(tmp_path / "lzf.h5", compression="lzf")
    text = render_report(validate(path, local_settings))
    lines = text.splitlines()
    assert lines[0].startswith("UNSUITABLE") and str(path) in lines[0]
    assert any(line.strip().startswith("ERROR   unsupported_filter") for line in lines)
    assert any(line.split()[:2] == ["v", "<f4"] for line in lines)


def test_a_storage_failure_propagates_and_never_becomes_a_finding(tmp_path, local_settings):
    class FlakyStorage(Storage):
        """Storage whose reads fail after the first block (a fault we cannot provoke)."""

        def reader(self, location, *, size=None):
            inner = super().reader(location, size=size)
            real_read = inner.read
            calls = []

            def read(n=-1, /):
                calls.append(n)
                if len(calls) > 1:  # h5py's reads, after the first block was sniffed
                    raise ConnectionResetError("connection reset by peer")
                return real_read(n)

            inner.read = read
            return inner

    path = write_sample_files(tmp_path, SMALL)[0]
    storage = FlakyStorage(local_settings, trace=RequestTrace())
    info = storage.head(parse_location(str(path), local_settings))
    with pytest.raises(StorageUnavailable, match="connection reset") as raised:
        validate_file(info, local_settings, storage)
    assert "h5py" in "".join(str(entry.path) for entry in raised.traceback)


@pytest.mark.parametrize("netcdf_format", ["NETCDF4", "NETCDF3_64BIT_OFFSET"])
def test_validation_reads_a_small_fraction_of_a_large_file(tmp_path, local_settings, netcdf_format):
    path = tmp_path / "big.nc"
    chunking = {"chunksizes": (1, 90, 180)} if netcdf_format == "NETCDF4" else {}
    with netCDF4.Dataset(path, "w", format=netcdf_format) as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", 90)
        ds.createDimension("lon", 180)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 2024-01-01"
        time[:] = np.arange(365)
        ds.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-89, 89, 90)
        ds.createVariable("lon", "f4", ("lon",))[:] = np.linspace(-179, 179, 180)
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"), **chunking)
        tas[:] = np.random.default_rng(0).normal(280, 5, (365, 90, 180)).astype("f4")
    report = validate(path, local_settings)
    assert report.size > 20_000_000
    assert report.verdict == "suitable"
    assert set(report.coordinates) == {"time", "lat", "lon"}
    assert report.coordinates["time"].last_decoded == "2024-12-30T00:00:00"
    # Measured with the coordinate summaries: NetCDF4 65,536 bytes (one block, 0.28%); NetCDF3
    # 131,072 (the header block and the block of the last record's time value, 0.55%): its
    # 365 time values lie one per 64 KB record, so only their two ends are read.
    assert report.bytes_read < 0.01 * report.size
    if netcdf_format == "NETCDF4":
        assert report.variable("tas").chunks == (1, 90, 180)
        assert report.coordinates["time"].complete
    else:
        assert not report.coordinates["time"].complete
        assert report.coordinates["lat"].complete


# -- batches ----------------------------------------------------------------------------------
def make_manifest(source: Path | str, settings: Settings) -> str:
    return scan(PipelineRequest(source=str(source), dataset_id="tas-daily"), settings).manifest_url


def test_validate_batch_writes_each_report_and_reuses_them_when_run_again(tmp_path, local_settings):
    source = tmp_path / "source"
    good = write_sample_files(source, SampleSpec(files=3, lat=18, lon=36))
    truncate_copy(good[0], source / "zz_cut.nc", 0.5)
    manifest_url = make_manifest(source, local_settings)

    first = validate_batch(manifest_url, 0, 10, local_settings)
    assert (first.files, first.reused, first.stop) == (4, 0, 4)
    assert first.verdicts == {"suitable": 3, "suitable_with_warnings": 0, "unsuitable": 1}
    assert first.findings == {"truncated": 1} and first.error_count == 1
    assert first.errors[0][0].endswith("zz_cut.nc") and first.errors[0][1] == "truncated"
    assert first.bytes_read == sum(p.stat().st_size for p in source.iterdir())
    assert len(json.dumps(first.to_dict())) < 2_000
    assert ValidationBatch.from_dict(json.loads(json.dumps(first.to_dict()))) == first

    storage = Storage(local_settings)
    info = storage.head(parse_location(str(good[1]), local_settings))
    stored = load_report(info.url, info.etag, local_settings, storage)
    assert stored == validate_file(info, local_settings, storage)
    assert storage.exists(Layout.from_settings(local_settings).report(info.url, info.etag))

    again = validate_batch(manifest_url, 0, 10, local_settings)
    assert (again.reused, again.bytes_read, again.requests) == (4, 0, 0)
    assert again.verdicts == first.verdicts and again.errors == first.errors


def test_validate_batch_covers_only_its_slice_of_the_manifest(tmp_path, local_settings):
    source = tmp_path / "source"
    write_sample_files(source, SampleSpec(files=4, lat=18, lon=36))
    manifest_url = make_manifest(source, local_settings)
    batch = validate_batch(manifest_url, 1, 3, local_settings)
    assert (batch.start, batch.stop, batch.files) == (1, 3, 2)
    assert validate_batch(manifest_url, 0, 4, local_settings).reused == 2


# -- the same through Azurite ---------------------------------------------------------------------
@pytest.mark.azurite
def test_validation_through_blob_storage_good_and_truncated_files(
    tmp_path, blob_settings, containers
):
    good = write_sample_files(tmp_path / "src", SMALL)[0]
    cut = truncate_copy(good, tmp_path / "src" / "cut.nc", 0.5)
    container = containers.new("source")
    containers.upload(container, "daily", [good, cut])
    storage = Storage(blob_settings)

    def blob_info(name: str) -> ObjectInfo:
        return storage.head(parse_location(f"az://{container}/daily/{name}", blob_settings))

    report = validate_file(blob_info(good.name), blob_settings, storage)
    assert report.verdict == "suitable" and report.url.startswith(f"az://{container}/")
    assert report.variable("tas").filters == (
        {"id": 2, "name": "shuffle"},
        {"id": 1, "name": "deflate"},
    )
    assert report.bytes_read == good.stat().st_size and report.requests == 1

    cut_report = validate_file(blob_info("cut.nc"), blob_settings, storage)
    assert codes(cut_report) == ["truncated"]
    assert cut_report.findings[0].details["expected_size"] == good.stat().st_size

    manifest_url = make_manifest(f"az://{container}/daily", blob_settings)
    batch = validate_batch(manifest_url, 0, 2, blob_settings)
    assert batch.verdicts == {"suitable": 1, "suitable_with_warnings": 0, "unsuitable": 1}
    info = blob_info("cut.nc")
    assert load_report(info.url, info.etag, blob_settings) == cut_report
    assert validate_batch(manifest_url, 0, 2, blob_settings).reused == 2


def test_a_storage_failure_inside_h5py_does_not_crash_the_process_at_exit(tmp_path):
    """A reader that kept the failure alive made an uncollectable cycle through h5py's file
    access list; HDF5 then freed it after the interpreter had gone and crashed (SIGSEGV)."""
    path = write_sample_files(tmp_path, SMALL)[0]
    script = f"""
from obspec_utils.wrappers import RequestTrace
from shared.model.locations import parse_location
from shared.model.settings import Settings
from shared.io.storage import Storage
from shared.stages.validate import validate_file

class FlakyStorage(Storage):
    def reader(self, location, *, size=None):
        inner = super().reader(location, size=size)
        real_read, calls = inner.read, []
        def read(n=-1, /):
            calls.append(n)
            if len(calls) > 1:
                raise ConnectionResetError("connection reset by peer")
            return real_read(n)
        inner.read = read
        return inner

settings = Settings(allow_local_paths=True, work_area={str(tmp_path / "work")!r})
storage = FlakyStorage(settings, trace=RequestTrace())
info = storage.head(parse_location({str(path)!r}, settings))
try:
    validate_file(info, settings, storage)
except Exception as error:
    print(type(error).__name__)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "StorageUnavailable"
    assert result.returncode == 0, f"process ended with {result.returncode}: {result.stderr[-500:]}"
