"""Combine spread over activities through the real orchestrator: above
PIPELINE_COMBINE_SPREAD_FILES files, merge_batch activities write one partial per batch of
PIPELINE_COMBINE_BATCH_FILES files and join_partials writes the store (shared/stages/
spread.py). The threshold is set low here (3 files, batches of 2) so five files spread."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.io.stores import open_icechunk_repository, open_store
from shared.model.errors import CombineFailed
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import FORMATS, PipelineRequest
from shared.model.settings import Settings
from shared.stages.combine import source_root
from shared.stages.scan import load_manifest
from tests.helpers import HostProcess, open_sources, run_pipeline
from tests.test_merge import _overlap_with_copy

SPEC = SampleSpec(files=5, steps_per_file=2, time_chunk=1, lat=6, lon=10)


def spread(settings: Settings) -> Settings:
    return settings.with_changes(combine_spread_files=3, combine_batch_files=2)


def elsewhere(settings: Settings, folder: Path) -> Settings:
    return settings.with_changes(
        work_area=str(folder / "work"),
        store_root=str(folder / "stores"),
        catalog=str(folder / "catalog"),
    )


def request(source: Path, fmt: str = "kerchunk-json") -> PipelineRequest:
    return PipelineRequest.from_dict({"source": str(source), "dataset_id": "tas", "format": fmt})


def opened(store_url: str, fmt: str, manifest_url: str, settings: Settings) -> xr.Dataset:
    storage = Storage(settings)
    source = source_root(load_manifest(manifest_url, settings, storage), settings)
    target = parse_location(store_url, settings)
    with open_store(target, fmt, source, settings) as store:  # type: ignore[arg-type]
        return store.load()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_spread_run_publishes_the_store_of_a_single_combine(
    tmp_path, local_settings, fmt, caplog
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    settings = spread(local_settings)
    with caplog.at_level(logging.INFO, logger="shared.stages.spread"):
        report = run_pipeline(request(tmp_path / "src", fmt), settings, batch_size=2)
    assert report.status == "succeeded"
    assert report.store["mode"] == "recombine" and report.store["dims"]["time"] == 10
    said = "combine batch merged "
    merged = [json.loads(r.getMessage().removeprefix(said)) for r in caplog.records
              if r.getMessage().startswith(said)]  # fmt: skip
    assert sorted(m["batch"][0] for m in merged) == [0, 2, 4]  # one partial a batch of 2 files
    layout, storage = Layout.from_settings(settings), Storage(settings)
    assert not storage.count_below(layout.partials("tas"))  # read by the join, then pruned
    with open_item(report.item_url, settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))

    single_settings = elsewhere(local_settings, tmp_path / "single")
    single = run_pipeline(request(tmp_path / "src", fmt), single_settings, batch_size=2)
    single_partial = Layout.from_settings(single_settings).partial("tas", single.run_id, 0)
    assert not storage.exists(single_partial)
    xr.testing.assert_identical(
        opened(report.store_url, fmt, report.manifest_url, settings),
        opened(single.store_url, fmt, single.manifest_url, single_settings),
    )
    if fmt == "kerchunk-json":  # the same references, byte for byte
        assert (
            Path(report.store_url.removeprefix("file://")).read_bytes()
            == Path(single.store_url.removeprefix("file://")).read_bytes()
        )


@pytest.mark.slow
def test_an_overlap_between_combine_batches_fails_the_run_naming_both_files(
    tmp_path, local_settings
):
    """The gate refuses overlapping files first; with the gate out of the way
    (tests/ungated_app.py), the join still refuses them, naming both."""
    _overlap_with_copy(tmp_path / "src")  # three files: two batches of two and one
    settings = spread(local_settings).with_changes(combine_batch_files=1)
    with pytest.raises(CombineFailed, match=r"copy_20240101\.nc and .*20240101\.nc overlap"):
        run_pipeline(request(tmp_path / "src"), settings.with_changes(combine_spread_files=1),
                     app_module="tests.ungated_app")  # fmt: skip


@pytest.mark.slow
def test_a_repeated_spread_run_merges_nothing_and_reuses_its_verified_store(
    tmp_path, local_settings, caplog
):
    write_sample_files(tmp_path / "src", SPEC)
    settings = spread(local_settings)
    first = run_pipeline(request(tmp_path / "src"), settings, batch_size=2)
    store = Path(first.store_url.removeprefix("file://"))
    written = store.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="shared.stages.spread"):
        again = run_pipeline(request(tmp_path / "src"), settings, batch_size=2)
    said = [r.getMessage().split(" {")[0] for r in caplog.records]
    assert Counter(said) == {"combine batch skipped": 3}, said  # no "combine batch merged"
    assert again.run_id == first.run_id and again.store_url == first.store_url
    assert store.stat().st_mtime_ns == written  # reused, not written again
    assert again.status == "succeeded"


@pytest.mark.slow
def test_a_spread_icechunk_run_appends_new_files_as_one_commit(tmp_path, local_settings):
    """combine's Icechunk append (append_icechunk) holds on the spread path: the join goes
    through combine(), which appends before it would read the partials."""
    source = tmp_path / "src"
    paths = write_sample_files(source, SPEC)
    settings = spread(local_settings)
    first = run_pipeline(request(source, "icechunk"), settings, batch_size=2)
    paths += write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=5,
                                                   steps_per_file=2, time_chunk=1))  # fmt: skip
    second = run_pipeline(request(source, "icechunk"), settings, batch_size=2)
    assert (first.store["mode"], second.store["mode"]) == ("recombine", "append")
    repo = open_icechunk_repository(parse_location(second.store_url, settings), settings)
    messages = [snapshot.message for snapshot in repo.ancestry(branch="main")]
    assert messages[0].startswith("virtual-zarr-pipeline: append 1 file(s)")
    with open_item(second.item_url, settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


@pytest.mark.slow
def test_a_host_killed_during_the_spread_combine_resumes(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SampleSpec(files=8, lat=6, lon=10))
    settings = spread(local_settings).with_changes(
        batch_size=4, files_per_activity=4, parallel_batches=1, combine_batch_files=1
    )
    host = HostProcess(tmp_path, settings)

    def merged() -> set[tuple[str, int]]:
        return {(e[0], e[1]) for e in host.executions() if e[2] == "merge_batch" and e[3]}

    host.kill_when(host.start(request(tmp_path / "src")), lambda: len(merged()) >= 2)
    done_before_kill = merged()
    status = host.resume()
    assert status["runtimeStatus"] == "Completed", status
    runs = Counter((e[0], e[1]) for e in host.executions() if e[2] == "merge_batch")
    assert all(runs[task] == 1 for task in done_before_kill), "a finished merge ran again"
    assert len(runs) == 8 and status["output"]["store"]["dims"]["time"] == 8


@pytest.mark.azurite
def test_a_store_document_written_in_pieces_reads_back_whole_from_blob_storage(
    blob_settings, containers
):
    """A spread join uploads a kerchunk JSON document as its pieces (Storage.write with a
    list): over 5 MB, obstore sends them as a multipart upload."""
    container = containers.new("stores")
    pieces = [bytes([65 + i]) * 3_000_000 for i in range(4)]
    target = parse_location(f"abfs://{container}/tas/refs.json", blob_settings)
    storage = Storage(blob_settings)
    storage.write(target, pieces, "application/json")
    assert storage.read(target) == b"".join(pieces)
