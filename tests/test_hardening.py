"""Changed sources, atomic publish, version retention and the memory ceiling, each provoked
for real on files written in the test."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import xarray as xr

from consumer.reader import open_item, read_item
from devhost.samples import SampleSpec, open_collection, write_sample_files
from shared.io.memory import MemoryLimitExceeded
from shared.model.errors import SourceChanged
from shared.model.layout import Layout, digest
from shared.model.request import PipelineRequest
from shared.stages.combine import combine
from shared.stages.gate import gate
from shared.stages.references import generate_batch
from shared.stages.register import register
from shared.stages.scan import load_manifest, scan
from shared.stages.validate import validate_batch
from shared.stages.verify import verify
from tests.helpers import HostProcess, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
SPEC = SampleSpec(files=3, lat=6, lon=10)


def request_for(folder: Path, **fields) -> PipelineRequest:
    return PipelineRequest.from_dict({"source": str(folder), "dataset_id": "tas", **fields})


def rewrite(path: Path) -> None:
    """Overwrite a source in place with the same bytes: a new ETag, as any upload gives."""
    time.sleep(0.01)
    path.write_bytes(path.read_bytes())


def test_a_file_overwritten_between_validate_and_generate_fails_verify_naming_both_etags(
    tmp_path, local_settings
):
    """Validate read each file as scanned and wrote its references; generate takes them as
    validate's batch document vouches (no request a file), so the change is caught where the
    file's bytes are next read: verify, before any of its values is compared."""
    paths = write_sample_files(tmp_path / "src", SPEC)
    request = request_for(tmp_path / "src")
    scanned = scan(request, local_settings)
    validate_batch(scanned.manifest_url, 0, 3, local_settings)
    gate(scanned.manifest_url, local_settings)
    before = load_manifest(scanned.manifest_url, local_settings).files[1].etag
    rewrite(paths[1])
    generate_batch(scanned.manifest_url, 0, 3, local_settings)
    combined = combine(scanned.manifest_url, request, "run-1", local_settings)
    with pytest.raises(SourceChanged) as changed:
        verify(scanned.manifest_url, combined.store_url, request.format, "time", local_settings)
    assert paths[1].name in changed.value.message
    assert (
        before in changed.value.message
        and changed.value.context["current_etag"] in changed.value.message
    )


def test_a_file_overwritten_between_combine_and_register_publishes_nothing(
    tmp_path, local_settings
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    request = request_for(tmp_path / "src")
    scanned = scan(request, local_settings)
    validate_batch(scanned.manifest_url, 0, 3, local_settings)
    gate(scanned.manifest_url, local_settings)
    generate_batch(scanned.manifest_url, 0, 3, local_settings)
    combined = combine(scanned.manifest_url, request, "run-1", local_settings)
    verify(scanned.manifest_url, combined.store_url, request.format, "time", local_settings)
    rewrite(paths[2])
    with pytest.raises(SourceChanged, match=paths[2].name):
        register(scanned.manifest_url, request, "run-1", combined.store_url, local_settings)
    assert not Path(local_settings.catalog).exists()


def test_the_item_records_the_etags_it_was_built_from(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SPEC)
    report = run_pipeline(request_for(tmp_path / "src"), local_settings)
    manifest = load_manifest(report.manifest_url, local_settings)
    item = read_item(report.item_url, local_settings)
    expected = digest(*(f"{f.url} {f.etag}" for f in manifest.files))
    assert f"Source ETag digest: {expected}." in item.properties["processing:lineage"]


def test_a_combine_stopped_by_the_memory_ceiling_leaves_the_published_version(
    tmp_path, local_settings
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    first = run_pipeline(request_for(tmp_path / "src"), local_settings)
    more = write_sample_files(tmp_path / "src", SampleSpec(files=1, lat=6, lon=10, first_index=3))
    low = local_settings.with_changes(memory_limit_bytes=50_000_000)  # below any Python process
    with pytest.raises(
        MemoryLimitExceeded, match=r"combine stopped .* above the limit of 0\.05 GB"
    ):
        run_pipeline(request_for(tmp_path / "src"), low)
    with open_item(first.item_url, local_settings) as published:
        assert published.attrs  # the item still points at the first version ...
        xr.testing.assert_identical(published.load(), open_collection(paths).load())  # ... intact
    item = read_item(first.item_url, local_settings)
    assert item.properties["version"] == first.run_id
    assert more[0].exists()


@pytest.mark.slow
def test_a_host_killed_mid_combine_leaves_the_published_version_readable(tmp_path, local_settings):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=40, lat=6, lon=10))
    first = run_pipeline(request_for(tmp_path / "src"), local_settings)
    write_sample_files(tmp_path / "src", SampleSpec(files=20, lat=6, lon=10, first_index=40))
    host = HostProcess(tmp_path, local_settings)

    def combining() -> bool:
        return any(e[2] == "combine_store" and e[3] is None for e in host.executions())

    host.kill_when(host.start(request_for(tmp_path / "src")), combining)

    item = read_item(first.item_url, local_settings)  # still the first version, complete
    assert item.properties["version"] == first.run_id
    with open_item(first.item_url, local_settings) as published:
        xr.testing.assert_identical(published.load(), open_collection(paths).load())

    status = host.resume()
    assert status["runtimeStatus"] == "Completed", status
    with open_item(status["output"]["outputs"]["item_url"], local_settings) as published:
        assert published.sizes["time"] == 60


@pytest.mark.slow
def test_only_the_newest_versions_are_kept(tmp_path, local_settings):
    settings = local_settings.with_changes(keep_versions=2)
    write_sample_files(tmp_path / "src", SPEC)
    runs = []
    for extra in range(3):
        write_sample_files(
            tmp_path / "src", SampleSpec(files=1, lat=6, lon=10, first_index=3 + extra)
        )
        runs.append(run_pipeline(request_for(tmp_path / "src"), settings).run_id)
        time.sleep(0.05)  # marker times must differ
    kept = {p.name.split(".", 1)[0] for p in (Path(settings.store_root) / "tas").iterdir()}
    assert kept == {runs[-1], runs[-2]}
    assert (
        read_item(
            Layout.from_settings(settings).catalog.join("tas", "tas", "tas.json").url, settings
        ).properties["version"]
        == runs[-1]
    )


def test_a_repeated_run_does_not_rewrite_its_verified_store(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SPEC)
    first = run_pipeline(request_for(tmp_path / "src"), local_settings)
    store = Path(first.store_url.removeprefix("file://"))
    written = store.stat().st_mtime_ns
    again = run_pipeline(request_for(tmp_path / "src"), local_settings)
    assert again.store_url == first.store_url
    assert store.stat().st_mtime_ns == written
