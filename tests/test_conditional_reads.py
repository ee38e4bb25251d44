"""Validate reads each file through a reader bound to the scanned ETag (If-Match on every
read) instead of asking for the file's ETag before and after: bytes of another version are
never read into a report or references, on local files and in Azurite."""

from __future__ import annotations

from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.model.errors import SourceChanged
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.settings import Settings
from shared.stages.references import generate_file
from shared.stages.scan import load_manifest
from shared.stages.validate import validate_batch
from tests.helpers import rewrite_same_size, scanned

SPEC = SampleSpec(files=2, steps_per_file=2, lat=4, lon=6)


def test_a_reader_bound_to_an_etag_refuses_a_read_of_another_version_local(
    tmp_path: Path, local_settings: Settings
) -> None:
    path = write_sample_files(tmp_path / "src", SPEC)[0]
    storage = Storage(local_settings)
    location = parse_location(str(path), local_settings)
    info = storage.head(location)
    reader = storage.reader(location, size=info.size, etag=info.etag)
    assert reader.read(8) == path.read_bytes()[:8]  # the scanned version: read
    rewrite_same_size(path)
    reader.seek(info.size - 100)
    with pytest.raises(SourceChanged) as changed:
        reader.read(100)  # not cached: a conditional read of the rewritten file
    assert str(path) in changed.value.message and info.etag in changed.value.message
    assert changed.value.context["scanned_etag"] == info.etag


def test_a_reader_bound_to_an_etag_refuses_a_read_of_another_version_in_azurite(
    tmp_path: Path, blob_settings: Settings, containers
) -> None:  # type: ignore[no-untyped-def]
    path = write_sample_files(tmp_path / "src", SPEC)[0]
    container = containers.new("src")
    containers.upload(container, "tas/", [path])
    storage = Storage(blob_settings)
    location = parse_location(f"az://{container}/tas/{path.name}", blob_settings)
    info = storage.head(location)
    reader = storage.reader(location, size=info.size, etag=info.etag)
    assert reader.read(8) == path.read_bytes()[:8]
    rewrite_same_size(path)
    containers.upload(container, "tas/", [path])
    reader.seek(info.size - 100)
    with pytest.raises(SourceChanged) as changed:
        reader.read(100)
    assert location.url in changed.value.message


def test_a_bound_reader_counts_its_reads_like_any_other(
    tmp_path: Path, local_settings: Settings
) -> None:
    path = write_sample_files(tmp_path / "src", SPEC)[0]
    traced = Storage(local_settings).traced()
    location = parse_location(str(path), local_settings)
    info = traced.head(location)
    reader = traced.reader(location, size=info.size, etag=info.etag)
    reader.read(10)
    assert traced.trace is not None and traced.trace.total_requests == 1
    assert traced.trace.total_bytes >= 10


def test_a_file_rewritten_after_the_scan_gets_no_references_and_generate_names_both_etags(
    tmp_path: Path, local_settings: Settings
) -> None:
    paths = write_sample_files(tmp_path / "src", SPEC)
    _, result = scanned(str(tmp_path / "src"), local_settings)
    manifest = load_manifest(result.manifest_url, local_settings)
    rewrite_same_size(paths[1])
    storage = Storage(local_settings)
    validate_batch(result.manifest_url, 0, 2, local_settings, storage)
    layout = Layout.from_settings(local_settings)
    first, second = manifest.files
    assert storage.exists(layout.references(first.url, first.etag, None))
    assert not storage.exists(layout.references(second.url, second.etag, None))
    with pytest.raises(SourceChanged) as changed:
        generate_file(second, local_settings, storage)
    assert second.etag in changed.value.message
    assert changed.value.context["current_etag"] != second.etag
