"""Archive layouts end to end (docs/correctness.md, "Archive layouts"): the chunk grid the
store gets is the one the docs describe, the gate's fix for compressed chunks that do not
divide the files works when applied, a spread combine cuts as a single one does, and an
incremental Icechunk run appends a file that keeps the published grid and recombines when a
new file's length changes it."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.samples import open_collection
from shared.io.storage import Storage
from shared.io.stores import open_store
from shared.model.errors import UnsuitableCollection
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.stages.combine import combine, concatenate, source_root
from shared.stages.references import generate_batch
from shared.stages.scan import load_manifest, scan
from shared.stages.spread import join_partials, merge_batch
from tests.archive_cases import WEEKLY, cmor_daily, cmor_monthly
from tests.helpers import run_pipeline
from tests.matrix_cases import tool


def request(source: Path, fmt: str = "kerchunk-json") -> PipelineRequest:
    return PipelineRequest.from_dict({"source": str(source), "dataset_id": "ta", "format": fmt})


def published(run, settings) -> xr.Dataset:
    with open_item(run.item_url, settings) as opened:
        return opened.load()


@pytest.mark.parametrize(
    ("splits", "chunks", "settings", "bounds"),
    [
        ([120, 120, 60], (60, 4, 3, 4), {}, (3, 2)),
        ([120, 120, 84], (12, 4, 3, 4), {}, (3, 2)),
        ([12, 12, 6], (1, 1, 1, 4), {"subchunk_max_bytes": 40}, (1, 2)),
    ],
)
def test_contiguous_files_get_the_grid_the_docs_describe_and_the_run_says_so(
    tmp_path, local_settings, caplog, splits, chunks, settings, bounds
):
    paths = cmor_monthly(tmp_path / "src", splits)
    settings = local_settings.with_changes(**settings)
    with caplog.at_level(logging.INFO, logger="shared.stages.merge"):
        run = run_pipeline(request(tmp_path / "src"), settings)
    store = published(run, settings)
    assert store["ta"].encoding["chunks"] == chunks
    assert store["lat_bnds"].encoding["chunks"] == bounds  # without time: cut only when large
    xr.testing.assert_identical(store, open_collection(paths).load())
    # the operator sees it: the record of each cut, the run's status and its summary
    cut = next(r for r in caplog.records if getattr(r, "variable", None) == "ta")
    assert cut.getMessage().startswith("variable cut into sub-chunks")
    assert (cut.chunks, cut.lengths) == (list(chunks), sorted(set(splits)))
    assert cut.stored == sorted({f"{n}x4x3x4" for n in splits})
    assert run.store["chunks"]["ta"] == list(chunks)
    summary = Path(run.summary_url.removeprefix("file://")).read_text()
    assert f"ta {'x'.join(map(str, chunks))}" in summary


def test_daily_files_of_a_leap_and_two_common_years_take_one_reference_per_day(
    tmp_path, local_settings
):
    cmor_daily(tmp_path / "src", [2000, 2001, 2002])
    run = run_pipeline(request(tmp_path / "src"), local_settings)
    refs = json.loads(Path(run.store_url.removeprefix("file://")).read_text())["refs"]
    chunk_keys = [key for key in refs if key.startswith("tas/") and key[4].isdigit()]
    assert len(chunk_keys) == 366 + 365 + 365
    assert run.store["dims"]["time"] == 1096


def test_the_gate_fix_for_compressed_chunks_that_do_not_divide_the_years_publishes_them(
    tmp_path, local_settings
):
    """Weekly compressed chunks end inside the next year's file: the gate names both files
    with their lengths and chunks, and gives an nccopy command; applied to every file, the
    collection publishes, equal to the files."""
    paths = cmor_daily(tmp_path / "src", [2000, 2001, 2002], WEEKLY)
    with pytest.raises(UnsuitableCollection) as refused:
        run_pipeline(request(tmp_path / "src"), local_settings)
    report = Path(refused.value.context["gate"]["report_url"].removeprefix("file://"))
    finding = next(
        f
        for f in json.loads(report.read_text())["collection_findings"]
        if f["code"] == "partial_chunks"
    )
    assert finding["variable"] == "tas"
    assert [
        (Path(f["url"]).name[-20:], f["length"], f["chunk"]) for f in finding["details"]["files"]
    ] == [
        ("20000101-20001231.nc", 366, 7),
        ("20010101-20011231.nc", 365, 7),
    ]
    assert "366 steps in chunks of 7" in finding["message"]
    fix = finding["details"]["fix"]
    assert fix == "nccopy -M0 -c time/1,lat/3,lon/4 IN.nc OUT.nc"
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    for path in paths:
        command = [str(path) if w == "IN.nc" else str(fixed / path.name) if w == "OUT.nc" else w
                   for w in shlex.split(fix)]  # fmt: skip
        tool(*command)
    settings = local_settings.with_changes(work_area=str(tmp_path / "work2"))
    run = run_pipeline(request(fixed), settings)
    store = published(run, settings)
    assert store["tas"].encoding["chunks"] == (1, 3, 4)  # the files' own chunks now
    xr.testing.assert_identical(store, open_collection(sorted(fixed.iterdir())).load())


@pytest.mark.parametrize("fmt", ["kerchunk-json", "icechunk"])
def test_a_spread_combine_cuts_contiguous_files_as_a_single_combine_does(
    tmp_path, local_settings, fmt
):
    cmor_monthly(tmp_path / "src", [120, 120, 60])
    req = request(tmp_path / "src", fmt)
    scanned = scan(req, local_settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, local_settings)
    single = combine(scanned.manifest_url, req, "single", local_settings)
    for start in (0, 1, 2):  # a file a batch: the grid is decided at the join, from all
        merge_batch(scanned.manifest_url, start, start + 1, req, "spread", local_settings)
    spread = join_partials(scanned.manifest_url, [0, 1, 2], req, "spread", local_settings)
    assert (spread.dims, spread.reference_count) == (single.dims, single.reference_count)
    source = source_root(load_manifest(scanned.manifest_url, local_settings), local_settings)
    stores = []
    for result in (single, spread):
        location = parse_location(result.store_url, local_settings)
        with open_store(location, fmt, source, local_settings) as opened:
            stores.append(opened.load())
            assert opened["ta"].encoding["chunks"] == (60, 4, 3, 4)
    xr.testing.assert_identical(stores[0], stores[1])


@pytest.mark.slow
def test_icechunk_appends_a_file_that_keeps_the_grid_and_recombines_one_that_changes_it(
    tmp_path, local_settings
):
    source = tmp_path / "src"
    paths = cmor_monthly(source, [120, 120])
    first = run_pipeline(request(source, "icechunk"), local_settings)
    paths += cmor_monthly(source, [60], start=240)  # 60 months: the grid becomes 60
    second = run_pipeline(request(source, "icechunk"), local_settings)
    paths += cmor_monthly(source, [60], start=300)  # 60 more: the grid stays
    third = run_pipeline(request(source, "icechunk"), local_settings)
    modes = [r.store["mode"] for r in (first, second, third)]
    assert modes == ["recombine", "recombine", "append"]
    store = published(third, local_settings)
    assert store["ta"].encoding["chunks"] == (60, 4, 3, 4)
    xr.testing.assert_identical(store, open_collection(paths).load())


@pytest.mark.parametrize(
    ("years", "dtype"),
    [
        ([2000, 2001], "datetime64[ns]"),  # numpy's nanoseconds hold them: as xarray decodes
        ([2260, 2261, 2262, 2263], "datetime64[us]"),  # beyond 2262: microseconds, not cftime
        ([1581, 2263], "object"),  # the standard calendar before 1582 is cftime: all cftime
    ],
)
def test_standard_calendar_times_are_decoded_once_in_the_type_that_holds_them_all(
    tmp_path, local_settings, years, dtype
):
    """A run in the standard calendar is ordered and encoded from one type of date: numpy
    nanoseconds where every date fits, numpy microseconds beyond 2262 (cftime dates would
    take seconds more at 1,000 years: bench.combine --contiguous), cftime dates when some
    need them (the Julian part of the standard calendar); and it publishes equal to the files
    opened with cftime dates throughout."""
    paths = cmor_daily(tmp_path / "src", years)
    req = request(tmp_path / "src")
    scanned = scan(req, local_settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, local_settings)
    storage = Storage(local_settings)
    manifest = load_manifest(scanned.manifest_url, local_settings, storage)
    combined = concatenate(manifest, req, local_settings, storage)
    assert str(combined["time"].dtype) == dtype
    assert str(combined["time_bnds"].dtype) == dtype
    settings = local_settings.with_changes(work_area=str(tmp_path / "work2"))
    run = run_pipeline(req, settings)
    expected = open_collection(paths, cftime=dtype != "datetime64[ns]").load()
    xr.testing.assert_identical(published(run, settings), expected)
