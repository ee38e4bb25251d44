"""The last check before publishing (register's check_unchanged) refuses a source changed
since the scan, whether it asks for each file (small manifests) or lists the source once
(large ones: shared.stages.scan.LIST_CHECK_MIN_FILES), on local files and in blob storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.model.errors import PipelineError, SourceChanged, SourceNotFound
from shared.model.settings import Settings
from shared.stages import scan as scan_module
from shared.stages.scan import check_unchanged, load_manifest
from tests.helpers import rewrite_same_size, scanned

SPEC = SampleSpec(files=4, steps_per_file=2, lat=4, lon=6)
PATHS = {"listing": 1, "heads": 10**9}  # LIST_CHECK_MIN_FILES for each way of asking


def _manifest(source: str, settings: Settings):  # type: ignore[no-untyped-def]
    _, result = scanned(source, settings)
    return load_manifest(result.manifest_url, settings)


def _check(manifest, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    check_unchanged(manifest, settings, Storage(settings), "the store was built")


@pytest.fixture(params=list(PATHS), ids=list(PATHS))
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(scan_module, "LIST_CHECK_MIN_FILES", PATHS[request.param])
    return str(request.param)


def test_unchanged_local_sources_pass(way: str, tmp_path: Path, local_settings: Settings) -> None:
    write_sample_files(tmp_path / "src", SPEC)
    _check(_manifest(str(tmp_path / "src"), local_settings), local_settings)


def test_a_local_file_rewritten_after_the_scan_is_refused_naming_it(
    way: str, tmp_path: Path, local_settings: Settings
) -> None:
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest = _manifest(str(tmp_path / "src"), local_settings)
    rewrite_same_size(paths[2])
    with pytest.raises(SourceChanged) as changed:
        _check(manifest, local_settings)
    assert paths[2].name in changed.value.message
    assert "changed after the store was built" in changed.value.message
    assert changed.value.context["scanned_etag"] == manifest.files[2].etag


def test_a_local_file_deleted_after_the_scan_is_not_found_naming_it(
    way: str, tmp_path: Path, local_settings: Settings
) -> None:
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest = _manifest(str(tmp_path / "src"), local_settings)
    paths[1].unlink()
    with pytest.raises(SourceNotFound) as gone:
        _check(manifest, local_settings)
    assert paths[1].name in gone.value.message


def test_a_local_file_swapped_for_a_link_out_of_the_allowed_roots_is_refused(
    way: str, tmp_path: Path, local_settings: Settings
) -> None:
    paths = write_sample_files(tmp_path / "src", SPEC)
    manifest = _manifest(str(tmp_path / "src"), local_settings)
    paths[3].unlink()
    paths[3].symlink_to("/etc/hostname")
    with pytest.raises(PipelineError) as refused:
        _check(manifest, local_settings)
    assert paths[3].name in refused.value.message or "/etc" in refused.value.message


def test_a_blob_rewritten_after_the_scan_is_refused_naming_it(
    way: str, tmp_path: Path, blob_settings: Settings, containers
) -> None:  # type: ignore[no-untyped-def]
    paths = write_sample_files(tmp_path / "src", SPEC)
    container = containers.new("src")
    containers.upload(container, "tas/", paths)
    manifest = _manifest(f"az://{container}/tas", blob_settings)
    _check(manifest, blob_settings)  # unchanged: passes
    rewrite_same_size(paths[0])
    containers.upload(container, "tas/", paths[:1])
    with pytest.raises(SourceChanged) as changed:
        _check(manifest, blob_settings)
    assert paths[0].name in changed.value.message


def test_a_blob_deleted_after_the_scan_is_not_found_naming_it(
    way: str, tmp_path: Path, blob_settings: Settings, containers, blob_service
) -> None:  # type: ignore[no-untyped-def]
    paths = write_sample_files(tmp_path / "src", SPEC)
    container = containers.new("src")
    containers.upload(container, "tas/", paths)
    manifest = _manifest(f"az://{container}/tas", blob_settings)
    blob_service.get_blob_client(container, f"tas/{paths[1].name}").delete_blob()
    with pytest.raises(SourceNotFound) as gone:
        _check(manifest, blob_settings)
    assert paths[1].name in gone.value.message
