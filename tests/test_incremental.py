"""Incremental runs through the orchestrator on devhost: only new or changed files are
validated and generated (counted as activity executions), and the published store still
equals a full rebuild of every file and the sources themselves."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import xarray as xr

from consumer.reader import open_item, read_item
from devhost.durable import DurableHost
from devhost.samples import SampleSpec, write_sample_files
from shared.io.stores import open_icechunk_repository
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import FORMATS, PipelineRequest
from shared.model.settings import Settings
from tests.helpers import durable_host, open_sources, run_pipeline, submit

SPEC = SampleSpec(files=4, lat=6, lon=10)


def run(host: DurableHost, settings: Settings, **body) -> tuple[dict, Counter[str]]:
    """One run; its output and how many times each activity ran for it."""
    before = len(host.executions())
    instance_id = submit(host, settings, **body)
    status = host.wait_for(instance_id, timeout=180)
    assert status["runtimeStatus"] == "Completed", status["customStatus"]
    executed = Counter(e[2] for e in host.executions()[before:])
    return status["output"], executed


def manifest_files(output: dict) -> list[dict]:
    """The files of a run's scan manifest (url, etag, size, ...)."""
    return json.loads(Path(output["outputs"]["manifest_url"].removeprefix("file://")).read_text())[
        "files"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("store_format", FORMATS)
def test_after_one_new_file_only_that_file_is_validated_and_generated(
    tmp_path, local_settings, monkeypatch, store_format
):
    source = tmp_path / "src"
    paths = write_sample_files(source, SPEC)
    settings = local_settings.with_changes(batch_size=2, files_per_activity=1)
    body = {"source": str(source), "format": store_format}
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        first, _ = run(host, settings, **body)
        paths += write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=4))
        second, executed = run(host, settings, **body)

    assert first["files"]["reused"] == 0
    assert second["files"] == {
        "total": 5,
        "bytes": second["files"]["bytes"],
        "validated": 1,
        "unsuitable": 0,
        "generated": 1,
        "reused": 4,
    }
    assert executed["validate_files"] == 1
    assert executed["generate_files"] == 1
    assert second["run_id"] != first["run_id"]

    # The same store a full rebuild of all five files gives, and the sources' own values.
    full = run_pipeline(
        PipelineRequest.from_dict(
            {"source": str(source), "dataset_id": "tas", "format": store_format}
        ),
        local_settings.with_changes(
            work_area=str(tmp_path / "full" / "work"),
            store_root=str(tmp_path / "full" / "stores"),
            catalog=str(tmp_path / "full" / "catalog"),
        ),
    )
    expected = open_sources(paths)
    with open_item(second["outputs"]["item_url"], settings) as published:
        incremental = published.load()
    full_settings = local_settings.with_changes(catalog=str(tmp_path / "full" / "catalog"))
    with open_item(full.item_url, full_settings) as rebuilt:
        xr.testing.assert_identical(incremental, rebuilt.load())
    xr.testing.assert_identical(incremental, expected)

    if store_format == "icechunk":  # appended to a copy of the first version, as a commit
        repo = open_icechunk_repository(
            parse_location(second["outputs"]["store_url"], settings), settings
        )
        messages = [snapshot.message for snapshot in repo.ancestry(branch="main")]
        assert messages[0].startswith("virtual-zarr-pipeline: append 1 file(s)")
        assert messages[1] == "virtual-zarr-pipeline: combined references"

    item = read_item(second["outputs"]["item_url"], settings)
    assert item.properties["version"] == second["run_id"]
    assert item.properties["end_datetime"].startswith("2024-01-05")
    assert item.properties["updated"] >= item.properties["created"]


@pytest.mark.slow
def test_an_overwritten_file_gets_new_references_and_the_store_its_new_values(
    tmp_path, local_settings, monkeypatch
):
    source = tmp_path / "src"
    paths = write_sample_files(source, SPEC)
    settings = local_settings.with_changes(batch_size=2, files_per_activity=1)
    layout = Layout.from_settings(settings)
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        first, _ = run(host, settings, source=str(source))
        old = next(f for f in manifest_files(first) if f["url"].endswith(paths[2].name))
        # Same name, same dates, other values (another seed): a new ETag.
        write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=2, seed=7))
        second, executed = run(host, settings, source=str(source))

    new = next(f for f in manifest_files(second) if f["url"] == old["url"])
    assert new["etag"] != old["etag"]
    assert executed["generate_files"] == 1
    assert second["files"]["generated"] == 1 and second["files"]["reused"] == 3
    new_refs = Path(layout.references(new["url"], new["etag"]).path)
    old_refs = Path(layout.references(old["url"], old["etag"]).path)
    assert new_refs.exists() and old_refs.exists() and new_refs != old_refs
    with open_item(second["outputs"]["item_url"], settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


@pytest.mark.slow
def test_option_full_validates_and_generates_every_file_again(
    tmp_path, local_settings, monkeypatch
):
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    settings = local_settings.with_changes(batch_size=4, files_per_activity=4)
    layout = Layout.from_settings(settings)
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        first, _ = run(host, settings, source=str(source))
        unchanged, skipped = run(host, settings, source=str(source))
        # A stored reference document that no longer matches what the code writes (as after
        # a library upgrade): only a full run replaces it.
        stale = manifest_files(first)[0]
        references = Path(layout.references(stale["url"], stale["etag"]).path)
        references.write_text(references.read_text().replace('"', '"', 1) + " ")
        before = references.read_bytes()
        full, executed = run(host, settings, source=str(source), options={"full": True})
    assert unchanged["files"]["reused"] == 4 and "validate_files" not in skipped
    assert unchanged["run_id"] == first["run_id"]
    assert full["files"]["reused"] == 0
    assert executed["validate_files"] == 1 and executed["generate_files"] == 1
    assert full["bytes_read"]["validate"] > 0 and full["bytes_read"]["generate"] > 0
    assert references.read_bytes() != before  # written again
    assert full["run_id"] != first["run_id"]  # a new version, built by these libraries


@pytest.mark.slow
def test_icechunk_recombines_when_a_new_file_does_not_extend_the_store(
    tmp_path, local_settings, monkeypatch
):
    source = tmp_path / "src"
    paths = write_sample_files(source, SampleSpec(files=2, lat=6, lon=10, first_index=1))
    settings = local_settings.with_changes(batch_size=4, files_per_activity=4)
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        run(host, settings, source=str(source), format="icechunk")
        # a day before the published ones: appending would put it at the end
        paths += write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=0))
        second, _ = run(host, settings, source=str(source), format="icechunk")
    repo = open_icechunk_repository(
        parse_location(second["outputs"]["store_url"], settings), settings
    )
    assert next(s.message for s in repo.ancestry(branch="main")) == (
        "virtual-zarr-pipeline: combined references"
    )
    with open_item(second["outputs"]["item_url"], settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(sorted(paths)))


@pytest.mark.slow
def test_a_reused_report_lost_from_the_work_area_stops_the_run_saying_to_run_full(
    tmp_path, local_settings, monkeypatch
):
    source = tmp_path / "src"
    paths = write_sample_files(source, SPEC)
    settings = local_settings.with_changes(batch_size=4, files_per_activity=4)
    layout = Layout.from_settings(settings)
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        first, _ = run(host, settings, source=str(source))
        lost = manifest_files(first)[1]
        Path(layout.report(lost["url"], lost["etag"]).path).unlink()
        write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=4))
        instance_id = submit(host, settings, source=str(source))
        failed = host.wait_for(instance_id, timeout=180)
        repaired, _ = run(host, settings, source=str(source), options={"full": True})
    assert failed["runtimeStatus"] == "Failed"
    error = failed["customStatus"]["error"]
    assert error["code"] == "artifact_missing"
    assert paths[1].name in error["message"] and '"full": true' in error["remedy"]
    assert repaired["files"]["validated"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("store_format", FORMATS)
def test_time_bounds_with_per_file_units_stay_right_when_a_file_is_added(
    tmp_path, local_settings, store_format
):
    """CF bounds take their coordinate's units: an incremental run (Icechunk appends to the
    published store) encodes the new file's bounds as the store's, not as the file's."""
    from tests.matrix_cases import bounds_per_file_units

    paths = bounds_per_file_units(tmp_path / "all")
    source = tmp_path / "src"
    source.mkdir()
    for path in paths[:2]:
        (source / path.name).write_bytes(path.read_bytes())
    request = PipelineRequest.from_dict(
        {"source": str(source), "dataset_id": "bnds", "format": store_format}
    )
    run_pipeline(request, local_settings)
    (source / paths[2].name).write_bytes(paths[2].read_bytes())
    report = run_pipeline(request, local_settings)
    if store_format == "icechunk":
        assert report.store["mode"] == "append", report.store
    with open_item(report.item_url, local_settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(sorted(source.glob("*.nc"))))
