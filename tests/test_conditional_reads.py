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


def _blob_store(tmp_path: Path, settings: Settings, containers):  # type: ignore[no-untyped-def]
    """Two files uploaded, scanned, validated, gated, referenced and combined: the files,
    their container, the manifest and the store."""
    from shared.model.request import PipelineRequest
    from shared.stages.combine import combine
    from shared.stages.gate import gate
    from shared.stages.references import generate_batch
    from shared.stages.scan import scan

    paths = write_sample_files(tmp_path / "src", SPEC)
    container = containers.new("src")
    containers.upload(container, "tas/", paths)
    request = PipelineRequest.from_dict({"source": f"az://{container}/tas", "dataset_id": "tas"})
    result = scan(request, settings)
    validate_batch(result.manifest_url, 0, 2, settings)
    gate(result.manifest_url, settings)
    generate_batch(result.manifest_url, 0, 2, settings)
    store = combine(result.manifest_url, request, "run-1", settings).store_url
    return paths, container, result.manifest_url, store


def test_verify_reads_each_blob_as_scanned_without_asking_for_its_etag_first(
    tmp_path: Path, blob_settings: Settings, containers, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from shared.stages.verify import verify

    _, container, manifest_url, store = _blob_store(tmp_path, blob_settings, containers)
    heads: list[str] = []
    head = Storage.head
    monkeypatch.setattr(Storage, "head", lambda s, loc: heads.append(loc.url) or head(s, loc))
    assert verify(manifest_url, store, "kerchunk-json", "time", blob_settings).files_checked == 2
    assert [url for url in heads if f"/{container}/" in url] == []


def test_a_blob_rewritten_after_generate_is_refused_when_verify_reads_it(
    tmp_path: Path, blob_settings: Settings, containers
) -> None:  # type: ignore[no-untyped-def]
    from shared.stages.verify import verify

    paths, container, manifest_url, store = _blob_store(tmp_path, blob_settings, containers)
    scanned_etag = load_manifest(manifest_url, blob_settings).files[1].etag
    rewrite_same_size(paths[1])
    containers.upload(container, "tas/", paths[1:])
    with pytest.raises(SourceChanged) as changed:
        verify(manifest_url, store, "kerchunk-json", "time", blob_settings)
    assert paths[1].name in changed.value.message
    assert "was refused because the object is now another" in changed.value.message  # If-Match
    assert changed.value.context["scanned_etag"] == scanned_etag
