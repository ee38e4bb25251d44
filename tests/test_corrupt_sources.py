"""Sources that change or break after they were scanned, provoked for real on files written in
the test: replaced, truncated, replaced keeping their size and modification time (the same
ETag), or 16 bytes of one compressed chunk overwritten with 0xff. Verify names the file
(source_changed with both ETags, or corrupt_chunk with the variable and chunk) and publishes
nothing; the tile server answers 409 naming the file instead of a 500."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest
from fastapi.testclient import TestClient

from consumer.tiles import configure, create_app
from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.model.errors import CorruptChunk, SourceChanged, StorageUnavailable, describe
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import FORMATS, PipelineRequest
from shared.stages.combine import combine
from shared.stages.gate import gate
from shared.stages.references import generate_batch
from shared.stages.scan import load_manifest, scan
from shared.stages.validate import validate_batch
from shared.stages.verify import decode_failure, reading, verify
from tests.helpers import run_pipeline

SPEC = SampleSpec(files=3, lat=18, lon=36)
KERCHUNK = ["kerchunk-json", "kerchunk-parquet"]


def request_for(folder: Path, store_format: str = "kerchunk-json") -> PipelineRequest:
    return PipelineRequest.from_dict(
        {"source": str(folder), "dataset_id": "tas", "format": store_format}
    )


def combined_store(folder: Path, settings, store_format: str, *, before_combine=None):
    """Scan, validate, gate, generate and combine ``folder``; ``before_combine`` runs after
    generate. Returns the manifest and store URLs."""
    request = request_for(folder, store_format)
    scanned = scan(request, settings)
    validate_batch(scanned.manifest_url, 0, scanned.file_count, settings)
    gate(scanned.manifest_url, settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, settings)
    if before_combine is not None:
        before_combine()
    combined = combine(scanned.manifest_url, request, "run-1", settings)
    return scanned.manifest_url, combined.store_url


def chunk_of(path: Path, variable: str = "tas", index: int = 0) -> tuple[int, int]:
    """Byte offset and size of one stored (compressed) chunk of a variable."""
    with h5py.File(path, "r") as f:
        info = f[variable].id.get_chunk_info(index)
        return int(info.byte_offset), int(info.size)


def keep_mtime(path: Path):
    stat = path.stat()
    return lambda: os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def damage_chunk(path: Path, variable: str = "tas") -> None:
    """16 bytes of 0xff in the middle of the variable's first chunk, written in place; the
    file keeps its size and modification time (so its ETag)."""
    offset, size = chunk_of(path, variable)
    restore = keep_mtime(path)
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        f.write(b"\xff" * 16)
    restore()


def replace_keeping_size_and_mtime(path: Path, scratch: Path) -> None:
    """Replace a file by another file of the same grid and dates (other values), padded to the
    same size, with its modification time put back: its ETag does not change."""
    size = path.stat().st_size
    restore = keep_mtime(path)
    for seed in range(1, 100):
        index = int(path.stem[-2:]) - 1  # tas_day_202401DD.nc
        other = write_sample_files(
            scratch / str(seed), SampleSpec(files=1, lat=18, lon=36, seed=seed, first_index=index)
        )[0]
        data = other.read_bytes()
        if len(data) <= size:
            break
    else:
        raise AssertionError(f"no replacement for {path.name} fits in {size} bytes")
    path.write_bytes(data + bytes(size - len(data)))
    restore()


def replace_later(path: Path, scratch: Path) -> None:
    """Replace a file by an uncompressed one of the same grid and dates, modified a minute
    after the original."""
    stat = path.stat()
    index = int(path.stem[-2:]) - 1
    other = write_sample_files(
        scratch, SampleSpec(files=1, lat=18, lon=36, seed=7, compression=False, first_index=index)
    )[0]
    path.write_bytes(other.read_bytes())
    os.utime(path, (stat.st_atime + 60, stat.st_mtime + 60))


def truncate(path: Path, scratch: Path) -> None:
    """Keep the first two thirds of a file, as an interrupted upload over it would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def etag_now(path: Path, settings) -> str:
    return Storage(settings).head(parse_location(str(path), settings)).etag


def scanned_etag(manifest_url: str, index: int, settings) -> str:
    return load_manifest(manifest_url, settings).files[index].etag


def verified_marker(settings, store_url: str) -> Path:
    run_id = Path(store_url).name.split(".", 1)[0]
    return Path(Layout.from_settings(settings).verified_marker("tas", run_id).path)


# -- verify -------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [replace_later, truncate], ids=["replaced", "truncated"])
@pytest.mark.parametrize("store_format", FORMATS)
def test_a_source_changed_after_generate_is_source_changed_before_any_value_is_compared(
    tmp_path, local_settings, store_format, change
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest_url, store_url = combined_store(
        tmp_path / "src",
        local_settings,
        store_format,
        before_combine=lambda: change(paths[1], tmp_path / "other"),
    )
    before = scanned_etag(manifest_url, 1, local_settings)
    with pytest.raises(SourceChanged) as changed:
        verify(manifest_url, store_url, store_format, "time", local_settings)
    error = changed.value
    assert paths[1].name in error.message and "changed after it was scanned" in error.message
    assert error.context["scanned_etag"] == before
    assert error.context["current_etag"] == etag_now(paths[1], local_settings) != before
    assert before in error.message and error.context["current_etag"] in error.message
    assert describe(error)["code"] == "source_changed" and not error.retryable
    assert not verified_marker(local_settings, store_url).exists()


@pytest.mark.parametrize("store_format", FORMATS)
def test_a_chunk_damaged_in_place_after_generate_is_corrupt_chunk_naming_file_variable_chunk(
    tmp_path, local_settings, store_format
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest_url, store_url = combined_store(
        tmp_path / "src",
        local_settings,
        store_format,
        before_combine=lambda: damage_chunk(paths[1]),
    )
    assert etag_now(paths[1], local_settings) == scanned_etag(manifest_url, 1, local_settings)
    with pytest.raises(CorruptChunk) as corrupt:
        verify(manifest_url, store_url, store_format, "time", local_settings)
    error = corrupt.value
    assert error.context["url"].endswith(paths[1].name)
    assert f"{paths[1].name}: variable 'tas', chunk (0, 0, 0)" in error.message
    # The library's words: the netCDF-C library's (verify reads a small file whole and opens
    # it with netCDF-C) or HDF5's through h5py (a large file, opened with h5netcdf).
    assert "NetCDF: HDF error" in error.message or "filter returned failure" in error.message
    assert error.context["chunk"] == [0, 0, 0] and error.context["side"] == "source file"
    assert describe(error)["code"] == "corrupt_chunk" and not describe(error)["retryable"]
    assert "Replace the named file with a good copy" in error.remedy
    assert "Nothing was published" in error.remedy
    assert not verified_marker(local_settings, store_url).exists()


def test_a_chunk_damaged_in_a_sampled_file_read_through_ranges_names_file_variable_chunk(
    tmp_path, local_settings, monkeypatch
):
    """A large file sampled (here: the small-file threshold set to 0) is opened with h5netcdf
    over ranged reads instead of read whole: its damaged chunk is found alike, in HDF5's
    words."""
    monkeypatch.setattr(reading, "SMALL_SOURCE_BYTES", 0)
    settings = local_settings.with_changes(verify_full_max_bytes=0)
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest_url, store_url = combined_store(
        tmp_path / "src", settings, "kerchunk-json", before_combine=lambda: damage_chunk(paths[1])
    )
    with pytest.raises(CorruptChunk) as corrupt:
        verify(manifest_url, store_url, "kerchunk-json", "time", settings)
    error = corrupt.value
    assert f"{paths[1].name}: variable 'tas', chunk (0, 0, 0)" in error.message
    assert "filter returned failure" in error.message
    assert error.context["chunk"] == [0, 0, 0] and error.context["side"] == "source file"


@pytest.mark.parametrize("store_format", FORMATS)
def test_a_source_replaced_keeping_its_etag_is_corrupt_chunk_naming_what_the_store_points_at(
    tmp_path, local_settings, store_format
):
    """The file is replaced after generate by one with other values, the same size and the same
    modification time: its ETag is the scanned one and it reads fine on its own, but the
    store's references point at bytes it no longer holds."""
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest_url, store_url = combined_store(
        tmp_path / "src",
        local_settings,
        store_format,
        before_combine=lambda: replace_keeping_size_and_mtime(paths[1], tmp_path / "other"),
    )
    assert etag_now(paths[1], local_settings) == scanned_etag(manifest_url, 1, local_settings)
    with pytest.raises(CorruptChunk) as corrupt:
        verify(manifest_url, store_url, store_format, "time", local_settings)
    error = corrupt.value
    assert error.context["side"] == "store" and error.context["url"].endswith(paths[1].name)
    assert error.message.startswith(f"The store {store_url}: variable ")
    assert f"{paths[1].name} itself reads" in error.message
    if store_format in KERCHUNK:  # the byte range the reference names
        offset, length = error.context["offset"], error.context["length"]
        points = f"the {length} bytes at offset {offset} of {error.context['url']}, which do not"
        assert points in error.message
    else:  # the Icechunk chunk key
        assert f"key {error.context['variable']}/c/" in error.message
        assert "does not decode" in error.message
    assert '"full": true' in error.remedy and not error.retryable
    assert not verified_marker(local_settings, store_url).exists()


@pytest.mark.slow
def test_a_run_on_a_damaged_file_fails_with_corrupt_chunk_and_publishes_nothing(
    tmp_path, local_settings
):
    """The whole run, as the orchestrator's stages run it: the damage is found by verify (no
    earlier stage reads chunk data), reported in the run report, and nothing is published."""
    paths = write_sample_files(tmp_path / "src", SPEC)
    damage_chunk(paths[2], "pr")
    settings = local_settings.with_changes(verify_full_max_bytes=0)  # sample mode
    with pytest.raises(
        CorruptChunk, match=rf"{paths[2].name}: variable 'pr', chunk \(0, 0, 0\)"
    ) as corrupt:
        run_pipeline(request_for(tmp_path / "src"), settings)
    run_report = parse_location(corrupt.value.context["run_report"], settings)
    report = json.loads(Path(run_report.path).read_text())
    assert report["error"]["code"] == "corrupt_chunk" and report["stages"]["verify"]["failed"]
    assert not Path(settings.catalog).exists()


def test_only_bytes_that_do_not_decode_are_called_corrupt():
    def raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
        try:
            raise error from cause
        except BaseException as caught:
            return caught

    hdf5 = "Can't synchronously read data (filter returned failure during read)"
    assert decode_failure(raised(OSError(hdf5))) == hdf5
    assert decode_failure(raised(zlib.error("Error -3 while decompressing data: x")))
    assert decode_failure(raised(OSError("Unable to open file (truncated file: eof = 1)")))
    # A storage failure underneath is a storage failure: retried, never "corrupt".
    assert decode_failure(raised(OSError(hdf5), ConnectionResetError("reset"))) is None
    assert decode_failure(raised(OSError(hdf5), StorageUnavailable("timeout"))) is None
    assert decode_failure(raised(TimeoutError("read timed out"))) is None
    assert decode_failure(raised(FileNotFoundError("no such file"))) is None
    assert decode_failure(raised(KeyError("tas"))) is None
    assert decode_failure(raised(ValueError("could not broadcast"))) is None


# -- tiles --------------------------------------------------------------------------------
@pytest.fixture
def client(local_settings) -> Iterator[TestClient]:
    configure(local_settings)
    try:
        with TestClient(create_app()) as app:
            yield app
    finally:
        configure(None)


def published(tmp_path: Path, settings, store_format: str):
    paths = write_sample_files(tmp_path / "src", SPEC)
    return paths, run_pipeline(request_for(tmp_path / "src", store_format), settings)


def tile_and_point(client: TestClient, url: str) -> list:
    query = {"url": url, "variable": "tas", "sel": "time=2024-01-02"}
    return [
        client.get("/tiles/WebMercatorQuad/1/1/0.png", params={**query, "rescale": "250,310"}),
        client.get("/point/10.5,20.5", params=query),
    ]


@pytest.mark.parametrize("store_format", FORMATS)
def test_tiles_of_a_store_whose_source_changed_name_the_file(
    tmp_path, local_settings, client, store_format
):
    paths, report = published(tmp_path, local_settings, store_format)
    replace_later(paths[1], tmp_path / "other")
    for url in (report.item_url, report.store_url):
        for answer in tile_and_point(client, url):
            assert answer.status_code == 409, answer.text
            detail = answer.json()["detail"]
            assert f"{paths[1].name} changed after the store" in detail, detail
            assert "Run the pipeline again" in detail


@pytest.mark.slow
@pytest.mark.parametrize("store_format", FORMATS)
def test_tiles_of_a_store_whose_source_is_damaged_name_the_file_and_chunk(
    tmp_path, local_settings, client, store_format
):
    paths, report = published(tmp_path, local_settings, store_format)
    damage_chunk(paths[1])
    for url in (report.item_url, report.store_url):
        for answer in tile_and_point(client, url):
            assert answer.status_code == 409, answer.text
            detail = answer.json()["detail"]
            assert "variable 'tas', chunk (1, 0, 0)" in detail and "decode" in detail, detail
            if store_format in KERCHUNK:
                offset, size = chunk_of(paths[1])
                assert f"{paths[1].name} is damaged" in detail
                assert f"the {size} bytes at offset {offset} of " in detail
            else:  # Icechunk does not say which file a chunk is in: the dates it holds
                assert "the source file holding its values (time 2024-01-02" in detail
    # The other files' time steps are still served.
    query = {"url": report.item_url, "variable": "tas", "sel": "time=2024-01-03"}
    assert client.get("/point/10.5,20.5", params=query).status_code == 200
