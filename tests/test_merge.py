"""Combine by merging manifests (shared.stages.merge), production's one path, against the
path it replaced: every file opened as a virtual dataset and xr.concat'ed
(tests/oracle.py), kept as the oracle. For every case of the correctness matrix and of
test_combine, without the gate in between: where the old path combines, both give the same
dataset and the same references in every store format; where it cannot (files whose own
chunks form no grid), the merge cuts them and its store written whole equals its store
written piece by piece; and a collection the gate stops is refused by the merge too, with
an error that names the file (and the gate rule), never a library's message.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from kerchunk.df import refs_to_dataframe
from virtualizarr.manifests import ManifestArray
from zarr.core.sync import sync

from devhost.samples import SampleSpec, write_sample_files
from shared.io.memory import MemoryWatch
from shared.io.storage import Storage
from shared.io.stores import fix_kerchunk_refs, open_icechunk_repository, open_store
from shared.model.errors import CombineFailed, PipelineError
from shared.model.layout import Layout
from shared.model.locations import Location, parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.stages import chunkrefs
from shared.stages.chunks import Chunks
from shared.stages.combine import (
    combine,
    concatenate,
    merge_columns,
    read_columns,
    source_root,
    write_store,
)
from shared.stages.merge import Columns, Irregular
from shared.stages.references import generate_batch, load_references
from shared.stages.scan import load_manifest, scan
from shared.stages.spread import join_partials, merge_batch
from tests.archive_cases import ARCHIVE_CASES
from tests.matrix_cases import BASE, CASES, Case
from tests.oracle import concatenate_opened


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
        if case.outcome != "gate":
            raise
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
@pytest.mark.parametrize(
    "case", CASES + ARCHIVE_CASES + EXTRA, ids=lambda c: c.name.replace(" ", "-")
)
def test_merged_equals_concatenated(tmp_path, local_settings, case: Case):
    settings = local_settings.with_changes(**case.settings)
    manifest, storage, (new, old) = _both(case, tmp_path, settings)
    if isinstance(new, Exception):
        if isinstance(old, Exception) and (type(new), str(new)) == (type(old), str(old)):
            return  # combine's own refusals (an overlap, a wrong concat dimension), as before
        assert case.outcome == "gate", new  # the merge covers every collection the gate lets by
        assert isinstance(new, Irregular), new
        assert "file://" in str(new) or ".nc" in str(new), new  # names the file
        if case.code in GATE_RULES:
            assert case.code in str(new), new  # and the rule that stops it
        return
    if isinstance(old, Exception):
        # the old path cannot: chunks that form no grid (the merge cuts plain bytes), codecs
        # that differ only in level (the merge keeps the first file's)
        assert isinstance(old, CombineFailed) and case.outcome == "equal", old
        old = None
    else:
        _assert_same(new, old)
        refs = [fix_kerchunk_refs(ds.vz.to_kerchunk(format="dict")) for ds in (new, old)]
        assert refs[0] == refs[1]
    source = source_root(manifest, settings)
    layout = Layout.from_settings(settings)
    # The spread join's writer (shared.stages.chunkrefs): the chunks beside the dataset.
    request = _request(tmp_path / "src", case)
    chunks: dict[str, Chunks] = {}
    memory = MemoryWatch(settings.memory_limit_bytes, "combine")
    columns = read_columns(manifest, request, settings, storage, memory)
    piecewise = merge_columns(columns, manifest, request, settings, storage, chunks=chunks)
    writes: list[tuple[str, xr.Dataset, dict[str, Chunks] | None]] = [
        ("new", new, None),
        *([("old", old, None)] if old is not None else []),
        ("pieces", piecewise, chunks),
    ]
    for fmt in ("kerchunk-json", "kerchunk-parquet", "icechunk"):
        written = []
        for run, ds, given in writes:
            target = layout.store("merge", run, fmt)
            write_store(ds, target, fmt, source, settings, storage, given)
            written.append(target)
        whole = written[1] if old is not None else written[0]  # the oracle, else the merge
        if old is not None:
            _assert_same_store(written[0], whole, fmt, source, settings)
        _assert_same_store(written[-1], whole, fmt, source, settings, set(chunks))
        if fmt == "kerchunk-json":  # key for key in the same order
            assert Path(written[-1].path).read_bytes() == Path(written[0].path).read_bytes()


# Gate rules across files: a collection they stop is refused by the merge naming the rule.
GATE_RULES = {"chunks_differ", "partial_chunks", "dtype_differs", "codecs_differ",
              "variables_differ", "dimensions_differ"}  # fmt: skip


def _assert_same_store(
    a: Location,
    b: Location,
    fmt: str,
    source: Location,
    settings: Settings,
    virtual: set[str] | None = None,
) -> None:
    """The two stores hold the same references, chunk key by chunk key. ``virtual``: ``a``
    was written piece by piece (shared.stages.chunkrefs), whose Icechunk store keeps the
    arrays loaded along the concat dimension in larger chunks (chunkrefs.coarse): those
    are compared by value only."""
    if fmt == "kerchunk-json":
        assert json.loads(Path(a.path).read_text()) == json.loads(Path(b.path).read_text())
    elif fmt == "kerchunk-parquet":
        files = [sorted(p.relative_to(t.path).as_posix() for p in Path(t.path).rglob("*"))
                 for t in (a, b)]  # fmt: skip
        assert files[0] == files[1]
        for name in files[1]:
            if name == ".zmetadata":
                assert json.loads(Path(a.path, name).read_text()) == json.loads(
                    Path(b.path, name).read_text()
                )
            else:
                _assert_same_frame(
                    pd.read_parquet(Path(a.path, name)), pd.read_parquet(Path(b.path, name))
                )
    else:
        stores = [
            open_icechunk_repository(t, settings).readonly_session("main").store for t in (a, b)
        ]
        groups = [zarr.open_group(s, mode="r") for s in stores]
        assert sorted(groups[0].array_keys()) == sorted(groups[1].array_keys())
        attrs = [dict(g.attrs.asdict()) for g in groups]
        for found in attrs:  # the same coordinates, maybe listed in another order
            found["coordinates"] = sorted(str(found.get("coordinates", "")).split())
        assert attrs[0] == attrs[1]
        for key in groups[1].array_keys():
            if virtual is not None and key not in virtual and groups[1][key].ndim:
                continue  # compared by value below
            assert groups[0][key].metadata == groups[1][key].metadata, key
            assert sync(_keys(stores[0], key)) == sync(_keys(stores[1], key)), key
        with (
            open_store(a, "icechunk", source, settings) as one,
            open_store(b, "icechunk", source, settings) as other,
        ):
            xr.testing.assert_identical(one.load(), other.load())


def _assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """assert_frame_equal, fast: a record file has RECORD_SIZE rows whatever it holds, and
    pandas compares object columns element by element (minutes for the matrix)."""
    assert list(a.columns) == list(b.columns)
    assert list(a.dtypes) == list(b.dtypes)
    for column in a.columns:
        if a[column].tolist() != b[column].tolist():  # NaN != NaN: let pandas say where
            pd.testing.assert_series_equal(a[column], b[column])


async def _keys(store: Any, array: str) -> list[str]:
    """An Icechunk array's chunk keys (virtual, native or inlined)."""
    return sorted([key async for key in store.list_prefix(array) if "/c/" in key])


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
        got = joined.virtual[name]
        assert got.counts == column.counts
        for a, b in ((got.offsets, column.offsets), (got.lengths, column.lengths)):
            assert np.array_equal(np.concatenate(a), np.concatenate(b))


def _interleaved(tmp_path: Path, fmt: str, settings: Settings) -> tuple[PipelineRequest, Any]:
    """Five files whose names are out of time order (batches interleave, the join orders
    the files), with per-file time units; scanned and their references generated."""
    paths = write_sample_files(tmp_path / "src", replace(BASE, files=5, per_file_time_units=True))
    for i, p in enumerate(paths):
        p.rename(p.with_name(f"{(i * 3) % 5}_{p.name}"))
    request = _request(tmp_path / "src", EXTRA[0], fmt)
    scanned = scan(request, settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, settings)
    return request, scanned


@pytest.mark.parametrize("fmt", ["kerchunk-json", "kerchunk-parquet", "icechunk"])
def test_a_combine_spread_over_batches_writes_the_same_store(tmp_path, local_settings, fmt):
    request, scanned = _interleaved(tmp_path, fmt, local_settings)
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
    stores = [parse_location(r.store_url, local_settings) for r in (spread, single)]
    virtual = {str(n) for n in opened[0].data_vars if opened[0][n].ndim > 1}
    _assert_same_store(*stores, fmt, source_root(manifest, local_settings), local_settings,
                       virtual)  # fmt: skip


@pytest.mark.parametrize("fmt", ["kerchunk-json", "kerchunk-parquet", "icechunk"])
def test_a_store_written_in_many_pieces_reads_as_the_store_written_whole(
    tmp_path, local_settings, monkeypatch, fmt
):
    """chunkrefs writes PIECE references (Parquet: RECORD_SIZE) at a time; with 3 here, the
    10 chunks of each variable take four pieces, the last one short, and the files come
    in batches out of time order. kerchunk's own refs_to_dataframe with the same
    record_size is the Parquet oracle (write_store uses its default, 100,000)."""
    monkeypatch.setattr(chunkrefs, "PIECE", 3)
    monkeypatch.setattr(chunkrefs, "RECORD_SIZE", 3)
    request, scanned = _interleaved(tmp_path, fmt, local_settings)
    storage, layout = Storage(local_settings), Layout.from_settings(local_settings)
    manifest = load_manifest(scanned.manifest_url, local_settings, storage)
    source = source_root(manifest, local_settings)
    whole = concatenate(manifest, request, local_settings, storage)
    chunks: dict[str, Chunks] = {}
    columns = read_columns(manifest, request, local_settings, storage,
                           MemoryWatch(local_settings.memory_limit_bytes, "combine"))  # fmt: skip
    pieces = merge_columns(columns, manifest, request, local_settings, storage, chunks=chunks)
    assert {len(c) for c in chunks.values()} == {10}
    old, new = layout.store("merge", "whole", fmt), layout.store("merge", "pieces", fmt)
    write_store(pieces, new, fmt, source, local_settings, storage, chunks)
    if fmt == "kerchunk-parquet":
        Path(old.path).mkdir(parents=True)
        refs_to_dataframe(fix_kerchunk_refs(whole.vz.to_kerchunk(format="dict")), old.path,
                          record_size=3)  # fmt: skip
        assert len(list(Path(old.path, "tas").glob("refs.*.parq"))) == 4
    else:
        write_store(whole, old, fmt, source, local_settings, storage)
    _assert_same_store(new, old, fmt, source, local_settings, set(chunks))
    if fmt == "kerchunk-json":
        assert Path(new.path).read_bytes() == Path(old.path).read_bytes()
    if fmt == "icechunk":  # the metadata, then four pieces of each of the two variables
        repo = open_icechunk_repository(new, local_settings)
        messages = [snapshot.message for snapshot in repo.ancestry(branch="main")]
        assert messages[0] == "virtual-zarr-pipeline: combined references, piece 9 of 9"
        assert len(messages) == 10  # and the repository's initial commit


def test_a_batch_overlapping_another_is_refused_at_the_join(tmp_path, local_settings):
    _overlap_with_copy(tmp_path / "src")
    request = _request(tmp_path / "src", EXTRA[0])
    scanned = scan(request, local_settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, local_settings)
    for start in (0, 1, 2):  # one file a batch: the overlap is between batches
        merge_batch(scanned.manifest_url, start, start + 1, request, "r", local_settings)
    with pytest.raises(CombineFailed, match=r"copy_20240101\.nc and .*20240101\.nc overlap"):
        join_partials(scanned.manifest_url, [0, 1, 2], request, "r", local_settings)
