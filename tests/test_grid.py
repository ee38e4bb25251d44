"""The store's chunk grid per variable (shared.stages.grid.plan) and the cutting of plain
bytes into it (shared.stages.chunks.cut), on layouts whose answer is worked out by hand in
each test. The matrix (tests/archive_cases.py) and the property test
(tests/test_gate_predicts_combine.py) prove the same end to end on real files."""

from __future__ import annotations

import array

import numpy as np
import pytest

from shared.stages.chunks import Virtual, cut
from shared.stages.grid import Grid, NoGrid, Stored, plan

MB = 1 << 20


def contiguous(*lengths: int, rest: tuple[int, ...] = (4, 3, 4)) -> list[Stored]:
    return [Stored(f"f{i}.nc", (n, *rest), (n, *rest), True) for i, n in enumerate(lengths)]


def chunked(lengths: list[int], chunk: int, plain: bool, rest=(4, 3, 4)) -> list[Stored]:
    return [Stored(f"f{i}.nc", (n, *rest), (chunk, *rest), plain) for i, n in enumerate(lengths)]


def test_files_whose_own_chunks_form_one_grid_keep_them():
    files = chunked([4, 4, 3], 2, plain=False)  # the last file may end inside a chunk
    assert plan(files, 0, 4, MB) == Grid((2, 4, 3, 4), cut=False)
    assert plan(chunked([4, 4, 3], 2, plain=True), 0, 4, MB) == Grid((2, 4, 3, 4), cut=False)


@pytest.mark.parametrize(
    ("lengths", "along"),
    [((120, 120, 60), 60), ((600, 180), 60), ((366, 365, 365), 1), ((120, 120, 84), 12)],
)
def test_contiguous_files_of_uneven_lengths_are_cut_to_a_length_dividing_every_file(lengths, along):
    assert plan(contiguous(*lengths), 0, 4, MB) == Grid((along, 4, 3, 4), cut=True)


def test_a_cut_is_the_largest_divisor_under_the_size_then_splits_the_next_dimensions():
    files = contiguous(120, 120, 60)  # one step of (4, 3, 4) float32: 192 bytes
    assert plan(files, 0, 4, 1000).chunks == (5, 4, 3, 4)  # 5 divides 60; 6 steps pass 1000
    assert plan(files, 0, 4, 192).chunks == (1, 4, 3, 4)
    assert plan(files, 0, 4, 100).chunks == (1, 2, 3, 4)  # two levels: 96 bytes
    assert plan(files, 0, 4, 40).chunks == (1, 1, 1, 4)  # a latitude row: 16 bytes (3 is prime)
    assert plan(files, 0, 4, 1).chunks == (1, 1, 1, 1)  # one element is always a block


def test_a_plain_variable_whose_own_chunk_is_too_large_is_cut_even_when_it_forms_a_grid():
    files = contiguous(120, 120)  # 120 steps of 192 bytes: 23 KB a chunk
    assert plan(files, 0, 4, MB) == Grid((120, 4, 3, 4), cut=False)
    assert plan(files, 0, 4, 4096) == Grid((20, 4, 3, 4), cut=True)
    compressed = chunked([120, 120], 120, plain=False)
    assert plan(compressed, 0, 4, 4096) == Grid((120, 4, 3, 4), cut=False)  # cannot be cut


def test_stored_chunks_bound_the_cut_along_every_axis():
    # chunks of 4 months in one file, contiguous in the other: 4 and 8 and 12 give 4
    files = [
        Stored("a.nc", (8, 4, 3, 4), (4, 4, 3, 4), True),
        Stored("b.nc", (12, 4, 3, 4), (12, 4, 3, 4), True),
    ]
    assert plan(files, 0, 4, MB) == Grid((4, 4, 3, 4), cut=True)
    # a chunk of 3 latitudes in one, 2 in the other (the last partial, padded): 1
    files = [
        Stored("a.nc", (5, 4, 3, 4), (5, 4, 3, 4), True),
        Stored("b.nc", (5, 4, 3, 4), (5, 4, 2, 4), True),
    ]
    assert plan(files, 0, 4, MB) == Grid((1, 1, 1, 4), cut=True)


def test_the_concat_dimension_last_is_cut_along_it_one_row_at_a_time():
    files = contiguous(10, 10, 5, rest=())
    files = [Stored(f.url, (3, f.shape[0]), (3, f.shape[0]), True) for f in files]
    assert plan(files, 1, 4, MB) == Grid((1, 5), cut=True)


def test_compressed_chunks_of_two_shapes_are_refused_naming_the_odd_file_and_a_fix():
    files = chunked([4, 4], 2, plain=False) + chunked([4], 4, plain=False)
    files[2] = Stored("odd.nc", files[2].shape, files[2].chunks, False)
    found = plan(files, 0, 4, MB)
    assert isinstance(found, NoGrid)
    assert (found.code, [f.url for f in found.odd], found.usual) == (
        "chunks_differ",
        ["odd.nc"],
        (2, 4, 3, 4),
    )
    sentence = found.sentence("ta", ["time", "plev", "lat", "lon"])
    assert "odd.nc (4 steps in chunks of 4)" in sentence
    assert "`nccopy -M0 -c time/4,plev/4,lat/3,lon/4 IN.nc OUT.nc`" in sentence
    assert "`nccopy -d 0 IN.nc OUT.nc`" in sentence


def test_compressed_chunks_that_straddle_two_files_are_refused_with_a_divisor_of_the_lengths():
    found = plan(chunked([366, 365, 365], 7, plain=False, rest=(3, 4)), 0, 4, MB)
    assert isinstance(found, NoGrid)
    assert found.code == "partial_chunks"
    assert [f.url for f in found.odd] == ["f0.nc", "f1.nc"]  # not the last file
    assert found.fix(["time", "lat", "lon"]) == "nccopy -M0 -c time/1,lat/3,lon/4 IN.nc OUT.nc"


def test_a_variable_without_the_concat_dimension_follows_the_first_file():
    files = [Stored("a.nc", (3, 2), (3, 2), True), Stored("b.nc", (3, 2), (1, 2), False)]
    assert plan(files, None, 8, MB) == Grid((3, 2), cut=False)
    assert plan(files, None, 8, 40) == Grid((1, 2), cut=True)


def _column(shape: tuple[int, ...], stored: list[tuple[int, ...]], axis: int = 0) -> Virtual:
    zarr = {
        "shape": list(shape),
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(stored[0])}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "zarr_format": 3,
        "node_type": "array",
    }
    return Virtual(zarr, (), axis)


def test_cutting_computes_each_sub_chunk_offset_from_the_row_major_layout():
    # file 0: contiguous (6, 2) float32 at byte 1000; file 1: chunks of (4, 2) at 100 and
    # 500, 6 steps (the second chunk holds steps 4-5 and two padded rows)
    column = _column((6, 2), [(6, 2)])
    column.kind = array.array("i", [column.kind_of((6, 2)), column.kind_of((4, 2))])
    column.counts = [1, 2]
    column.offsets = [np.array([1000], "uint64"), np.array([100, 500], "uint64")]
    column.lengths = [np.array([48], "uint64"), np.array([32, 32], "uint64")]
    got = cut(column, (2, 2), np.array([6, 6]), ["a.nc", "b.nc"])
    assert got.counts == [3, 3]
    assert got.kinds == [(2, 2)]
    assert got.offsets[0].tolist() == [1000, 1016, 1032, 100, 116, 500]
    assert got.lengths[0].tolist() == [16] * 6


def test_cutting_along_a_later_axis_and_a_missing_chunk_stay_missing():
    # (3, 4) stored contiguous, cut into (1, 2); the second file never wrote it
    column = _column((3, 4), [(3, 4)], axis=1)
    column.kind = array.array("i", [column.kind_of((3, 4)), column.kind_of((3, 4))])
    column.counts = [1, 1]
    column.offsets = [np.array([200], "uint64"), np.array([0], "uint64")]
    column.lengths = [np.array([48], "uint64"), np.array([0], "uint64")]
    got = cut(column, (1, 2), np.array([4, 4]), ["a.nc", "b.nc"])
    assert got.offsets[0].tolist()[:6] == [200, 208, 216, 224, 232, 240]
    assert got.lengths[0].tolist() == [8] * 6 + [0] * 6


def test_a_stored_chunk_of_the_wrong_length_is_never_cut():
    column = _column((6, 2), [(6, 2)])
    column.kind = array.array("i", [column.kind_of((6, 2))])
    column.counts = [1]
    column.offsets = [np.array([1000], "uint64")]
    column.lengths = [np.array([40], "uint64")]  # 48 expected: not the values row-major
    with pytest.raises(Exception, match="not the length its shape and dtype give"):
        cut(column, (2, 2), np.array([6]), ["a.nc"])
