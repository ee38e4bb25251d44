"""Combine by merging manifests (shared.stages.merge) against the path it replaces: every
file opened as a virtual dataset and xr.concat'ed (concatenate_opened), kept as the oracle.
For every case of the correctness matrix and of test_combine, without the gate in between,
both paths give the same dataset and the same references in every store format, or the
same error."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import xarray as xr
import zarr
from virtualizarr.manifests import ManifestArray

from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.io.stores import fix_kerchunk_refs, open_icechunk_repository, open_store
from shared.model.errors import CombineFailed, PipelineError
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.stages.combine import (
    combine,
    concatenate,
    concatenate_opened,
    source_root,
    write_store,
)
from shared.stages.merge import Columns
from shared.stages.references import generate_batch, load_references
from shared.stages.scan import load_manifest, scan
from shared.stages.spread import join_partials, merge_batch
from tests.matrix_cases import BASE, CASES, Case


def _overlap_with_copy(folder: Path) -> list[Path]:
    paths = write_sample_files(folder, replace(BASE, files=2))
    return paths + write_sample_files(folder, replace(BASE, files=1, prefix="copy"))


EXTRA = [
    Case("test_combine: per-file units, 1 step", lambda f: write_sample_files(
        f, SampleSpec(files=4, lat=4, lon=6, per_file_time_units=True)), "equal"),
    Case("test_combine: an overlapping copy", _overlap_with_copy, "equal"),
    Case("test_combine: a wrong concat dimension", lambda f: write_sample_files(f, BASE),
         "equal", options={"concat_dim": "level"}),
    Case("one file", lambda f: write_sample_files(f, replace(BASE, files=1)), "equal"),
]  # fmt: skip


# Collections the merge leaves to xr.concat although the gate lets them by.
CONCATENATED: set[str] = set()


def _request(folder: Path, case: Case, fmt: str = "kerchunk-json") -> PipelineRequest:
    options = dict(case.options)
    concat_dim = options.pop("concat_dim", "time")
    return PipelineRequest.from_dict(
        {"source": str(folder), "dataset_id": "merge", "format": fmt, "concat_dim": concat_dim,
         "options": options}
    )  # fmt: skip


def _both(case: Case, tmp_path: Path, settings):
    case.build(tmp_path / "src")
    request = _request(tmp_path / "src", case)
    scanned = scan(request, settings)
    try:
        generate_batch(scanned.manifest_url, 0, scanned.file_count, settings)
    except PipelineError:
        pytest.skip("the files have no references (the gate refuses them)")
    storage = Storage(settings)
    manifest = load_manifest(scanned.manifest_url, settings, storage)
    got = []
    for path in (concatenate, concatenate_opened):
        try:
            got.append(path(manifest, request, settings, storage))
        except PipelineError as exc:
            got.append(exc)
    return manifest, storage, got


def _assert_same(new: xr.Dataset, old: xr.Dataset) -> None:
    assert new.attrs == old.attrs
    assert set(new.coords) == set(old.coords)
    assert set(new.variables) == set(old.variables)
    assert set(new.xindexes) == set(old.xindexes)
    for name, variable in old.variables.items():
        got = new.variables[name]
        assert got.encoding == variable.encoding, name
        if isinstance(variable.data, ManifestArray):  # compared by value: strings fail ==
            assert isinstance(got.data, ManifestArray), name
            assert got.data.metadata == variable.data.metadata, name
            assert got.data.manifest.dict() == variable.data.manifest.dict(), name
            assert (got.dims, got.attrs) == (variable.dims, variable.attrs), name
        else:
            xr.testing.assert_identical(got, variable)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES + EXTRA, ids=lambda c: c.name.replace(" ", "-"))
def test_merged_equals_concatenated(tmp_path, local_settings, case: Case, caplog):
    settings = local_settings.with_changes(**case.settings)
    with caplog.at_level(logging.INFO, logger="shared.stages.combine"):
        manifest, storage, (new, old) = _both(case, tmp_path, settings)
    fell_back = [r.getMessage() for r in caplog.records if "does not cover" in r.getMessage()]
    if case.outcome == "equal" and case.name not in CONCATENATED:
        assert not fell_back, fell_back  # the merge covers every collection the gate lets by
    if isinstance(old, Exception) or isinstance(new, Exception):
        assert type(new) is type(old), (new, old)
        assert str(new) == str(old)
        return
    _assert_same(new, old)
    refs = [fix_kerchunk_refs(ds.vz.to_kerchunk(format="dict")) for ds in (new, old)]
    assert refs[0] == refs[1]
    source = source_root(manifest, settings)
    layout = Layout.from_settings(settings)
    for fmt in ("kerchunk-json", "kerchunk-parquet", "icechunk"):
        written = []
        for run, ds in (("new", new), ("old", old)):
            target = layout.store("merge", run, fmt)
            write_store(ds, target, fmt, source, settings, storage)
            written.append(target)
        if fmt == "kerchunk-json":
            a, b = (json.loads(Path(t.path).read_text()) for t in written)
            assert a == b
        elif fmt == "kerchunk-parquet":
            a, b = (sorted(p.relative_to(t.path).as_posix() for p in Path(t.path).rglob("*"))
                    for t in written)  # fmt: skip
            assert a == b
        else:
            stores = [
                open_icechunk_repository(t, settings).readonly_session("main").store
                for t in written
            ]
            groups = [zarr.open_group(s, mode="r") for s in stores]
            assert sorted(groups[0].array_keys()) == sorted(groups[1].array_keys())
            for key in groups[1].array_keys():
                assert groups[0][key].metadata == groups[1][key].metadata, key


def test_columns_written_and_read_back_merge_the_same(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SampleSpec(files=5, lat=4, lon=6,
                                                   per_file_time_units=True))  # fmt: skip
    request = _request(tmp_path / "src", EXTRA[0])
    scanned = scan(request, local_settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, local_settings)
    storage = Storage(local_settings)
    manifest = load_manifest(scanned.manifest_url, local_settings, storage)
    parts = []
    for batch in (manifest.files[:2], manifest.files[2:]):
        columns = Columns("time")
        for info in batch:
            columns.add(load_references(info, local_settings, storage))
        parts.append(Columns.from_bytes(columns.to_bytes()))
    joined = Columns.join(parts)
    whole = Columns("time")
    for info in manifest.files:
        whole.add(load_references(info, local_settings, storage))
    assert joined.urls == whole.urls
    assert joined.steps == whole.steps
    for name, column in whole.virtual.items():
        assert [list(o) for o in joined.virtual[name].offsets] == [list(o) for o in column.offsets]


@pytest.mark.parametrize("fmt", ["kerchunk-json", "icechunk"])
def test_a_combine_spread_over_batches_writes_the_same_store(tmp_path, local_settings, fmt):
    # names out of time order: the batches interleave, the join orders the files
    paths = write_sample_files(tmp_path / "src", replace(BASE, files=5, per_file_time_units=True))
    for i, p in enumerate(paths):
        p.rename(p.with_name(f"{(i * 3) % 5}_{p.name}"))
    request = _request(tmp_path / "src", EXTRA[0], fmt)
    scanned = scan(request, local_settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, local_settings)
    single = combine(scanned.manifest_url, request, "single", local_settings)
    starts = [0, 2, 4]
    for start in starts:
        merge_batch(scanned.manifest_url, start, start + 2, request, "spread", local_settings)
    spread = join_partials(scanned.manifest_url, starts, request, "spread", local_settings)
    assert (spread.dims, spread.first, spread.last, spread.reference_count) == (
        single.dims, single.first, single.last, single.reference_count)  # fmt: skip
    manifest = load_manifest(scanned.manifest_url, local_settings)
    opened = [
        open_store(parse_location(r.store_url, local_settings), fmt,
                   source_root(manifest, local_settings), local_settings).load()
        for r in (single, spread)
    ]  # fmt: skip
    xr.testing.assert_identical(opened[0], opened[1])
    if fmt == "kerchunk-json":
        a, b = (json.loads(Path(r.store_url.removeprefix("file://")).read_text())
                for r in (single, spread))  # fmt: skip
        assert a == b


def test_a_batch_overlapping_another_is_refused_at_the_join(tmp_path, local_settings):
    _overlap_with_copy(tmp_path / "src")
    request = _request(tmp_path / "src", EXTRA[0])
    scanned = scan(request, local_settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, local_settings)
    for start in (0, 1, 2):  # one file a batch: the overlap is between batches
        merge_batch(scanned.manifest_url, start, start + 1, request, "r", local_settings)
    with pytest.raises(CombineFailed, match=r"copy_20240101\.nc and .*20240101\.nc overlap"):
        join_partials(scanned.manifest_url, [0, 1, 2], request, "r", local_settings)
