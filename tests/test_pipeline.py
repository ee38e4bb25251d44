"""End to end: every stage, local files and Azurite, every output format; the published
dataset, opened from its STAC item, must equal xarray.open_mfdataset of the sources."""

from pathlib import Path

import pytest
import xarray as xr

from consumer.reader import open_item, read_item
from devhost.samples import SampleSpec, truncate_copy, write_bytes, write_sample_files
from shared.io.storage import Storage
from shared.model.errors import EmptySource, SourceNotFound, UnsuitableCollection
from shared.model.request import FORMATS, PipelineRequest
from tests.helpers import open_sources, run_pipeline, stores_written

SPEC = SampleSpec(files=3, steps_per_file=2, time_chunk=1, lat=12, lon=20)


def run(source: str, settings, fmt="kerchunk-json", **fields):
    request = PipelineRequest.from_dict(
        {"source": source, "dataset_id": "tas-daily", "format": fmt, **fields}
    )
    return run_pipeline(request, settings, batch_size=2)


def assert_published_equals_sources(report, settings, paths):
    with open_item(report.item_url, settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


@pytest.mark.parametrize("fmt", FORMATS)
def test_local_netcdf4_collection_is_published_equal_to_its_sources(tmp_path, local_settings, fmt):
    paths = write_sample_files(tmp_path / "src", SPEC)
    report = run(str(tmp_path / "src"), local_settings, fmt)
    assert report.status == "succeeded"
    assert list(report.stages) == [
        "scan",
        "validate",
        "gate",
        "generate",
        "combine",
        "verify",
        "register",
    ]
    assert_published_equals_sources(report, local_settings, paths)
    item = read_item(report.item_url, local_settings)
    assert "from 3 file(s)" in item.properties["processing:lineage"]
    assert Storage(local_settings).exists(
        __import__("shared.model.locations", fromlist=["parse_location"]).parse_location(
            report.report_url, local_settings
        )
    )


@pytest.mark.parametrize(
    "netcdf_format", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF4_CLASSIC"]
)
def test_classic_and_netcdf4_classic_files_are_published_equal_to_their_sources(
    tmp_path, local_settings, netcdf_format
):
    paths = write_sample_files(
        tmp_path / "src", SampleSpec(files=3, lat=6, lon=10, netcdf_format=netcdf_format)
    )
    report = run(str(tmp_path / "src"), local_settings)
    assert_published_equals_sources(report, local_settings, paths)


@pytest.mark.azurite
@pytest.mark.parametrize("fmt", FORMATS)
def test_blob_collection_is_published_equal_to_its_sources(
    tmp_path, blob_settings, containers, fmt
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    container = containers.new("nc")
    containers.upload(container, "tas/daily", paths)
    report = run(f"abfs://{container}/tas/daily", blob_settings, fmt)
    assert report.store_url.startswith(blob_settings.store_root)
    assert report.item_url.startswith(blob_settings.account.endpoint)
    assert_published_equals_sources(report, blob_settings, paths)


@pytest.mark.azurite
def test_blob_netcdf3_collection_is_published_equal_to_its_sources(
    tmp_path, blob_settings, containers
):
    paths = write_sample_files(
        tmp_path / "src", SampleSpec(files=2, lat=6, lon=10, netcdf_format="NETCDF3_CLASSIC")
    )
    container = containers.new("nc")
    containers.upload(container, "", paths)
    report = run(f"az://{container}", blob_settings, "icechunk")
    assert_published_equals_sources(report, blob_settings, paths)


def catalog_is_empty(settings) -> bool:
    catalog = Path(settings.catalog)
    return not catalog.exists() or not any(catalog.rglob("*.json"))


@pytest.mark.parametrize(
    ("bad_name", "make", "message"),
    [
        ("notes.nc", lambda p, good: write_bytes(p, b"just some text\n"), r"notes\.nc is neither"),
        ("empty.nc", lambda p, good: write_bytes(p, b""), r"empty\.nc is empty"),
        ("cut.nc", lambda p, good: truncate_copy(good, p, 0.6), r"cut\.nc .*truncated"),
    ],
)
def test_a_bad_file_stops_the_run_at_the_gate_and_nothing_is_published(
    tmp_path, local_settings, bad_name, make, message
):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=6, lon=10))
    make(tmp_path / "src" / bad_name, paths[0])
    with pytest.raises(UnsuitableCollection, match=message) as error:
        run(str(tmp_path / "src"), local_settings)
    assert "1 of 3 files cannot be combined" in error.value.message
    assert catalog_is_empty(local_settings)
    assert not stores_written(local_settings.store_root)


def test_an_empty_folder_fails_at_scan_with_a_clear_error(tmp_path, local_settings):
    (tmp_path / "src").mkdir()
    with pytest.raises(EmptySource, match="There are no files"):
        run(str(tmp_path / "src"), local_settings)


def test_a_source_that_does_not_exist_fails_at_scan(tmp_path, local_settings):
    with pytest.raises(SourceNotFound, match="nowhere"):
        run(str(tmp_path / "nowhere"), local_settings)


def test_a_failed_run_leaves_the_published_version_untouched(tmp_path, local_settings):
    paths = write_sample_files(tmp_path / "src", SPEC)
    first = run(str(tmp_path / "src"), local_settings)
    write_bytes(tmp_path / "src" / "broken.nc", b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(UnsuitableCollection):
        run(str(tmp_path / "src"), local_settings)
    assert_published_equals_sources(first, local_settings, paths)
