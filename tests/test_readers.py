"""The adaptive reader (shared/io/readers.py): exact bytes for any read pattern, and reads
close to h5py's metadata floor on a file with a large chunk index (counted, not timed)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from obspec_utils.wrappers import RequestTrace, TracingReadableStore
from obstore.store import MemoryStore

from bench.per_file import h5py_floor
from devhost.samples import SampleSpec, write_sample_files
from shared.io.readers import SMALL_READ, AdaptiveReader, chunk_tree_children
from shared.io.storage import Storage
from shared.stages.references import build_references
from shared.stages.scan import load_manifest
from shared.stages.validate import validate_file
from tests.helpers import scanned

DATA = bytes(random.Random(0).randbytes(300_000))


def memory_reader(
    data: bytes = DATA, *, block_size: int = 65536, size: int | None = None
) -> tuple[AdaptiveReader, RequestTrace]:
    store = MemoryStore()
    store.put("f", data)
    trace = RequestTrace()
    reader = AdaptiveReader(
        TracingReadableStore(store, trace), "f", block_size=block_size, size=size
    )
    return reader, trace


def test_any_read_pattern_returns_the_exact_bytes():
    reader, _ = memory_reader(block_size=16384)
    rng = random.Random(1)
    for _ in range(2000):
        start = rng.randrange(len(DATA) + 10)
        size = rng.choice([0, 1, 8, 100, 3136, 5000, 70_000, -1])
        reader.seek(start)
        expected = DATA[start:] if size < 0 else DATA[start : start + size]
        assert reader.read(size) == expected
        assert reader.tell() == start + len(expected)


def test_file_protocol_seek_tell_readinto_and_the_end():
    reader, trace = memory_reader()
    assert reader.seek(0, 2) == len(DATA)  # SEEK_END: the size (from HEAD: none was given)
    assert [r.method for r in trace.requests] == ["head"]
    assert reader.read(10) == b""
    assert reader.seek(-5, 1) == len(DATA) - 5
    buffer = bytearray(8)
    assert reader.readinto(buffer) == 5 and bytes(buffer[:5]) == DATA[-5:]
    reader.seek(100)
    assert reader.readall() == DATA[100:]
    with pytest.raises(ValueError):
        reader.seek(0, 3)
    with reader:
        pass
    assert reader.closed


def test_scattered_reads_stay_small_and_sequential_reads_grow():
    reader, trace = memory_reader(size=len(DATA))
    for offset in (10_000, 100_000, 200_000):  # scattered: one small request each
        reader.seek(offset)
        reader.read(100)
    assert [r.length for r in trace.requests] == [SMALL_READ] * 3
    assert reader.read(100) == DATA[200_100:200_200]  # cached: no request
    assert len(trace.requests) == 3
    reader, trace = memory_reader(size=len(DATA))
    while reader.read(1000):  # sequential: the read-ahead doubles up to the block size
        pass
    lengths = [r.length for r in trace.requests]
    assert lengths[:4] == [8192, 16384, 32768, 65536]
    assert max(lengths) == 65536 and len(lengths) < 12


def test_a_partly_cached_read_fetches_the_missing_span_once():
    reader, trace = memory_reader(size=len(DATA))
    reader.seek(5000)
    reader.read(10)  # caches [5000, 5000 + SMALL_READ)
    reader.seek(0)
    assert reader.read(20_000) == DATA[:20_000]
    assert len(trace.requests) == 2
    reader.seek(0)
    assert reader.read(20_000) == DATA[:20_000] and len(trace.requests) == 2


def test_a_short_object_returns_what_there_is():
    reader, _ = memory_reader(DATA[:1000], size=5000)  # listed longer than it is
    reader.seek(900)
    assert reader.read(500) == DATA[900:1000]


def test_the_cache_is_bounded():
    reader, _ = memory_reader(block_size=1024)
    reader.seek(0)
    while reader.read(4096):
        pass
    assert reader._cached <= 64 * 1024


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NetCDF4 file with 600 chunks per variable, uncompressed (its chunk index is spread
    through 30 MB, as in a real file of daily steps)."""
    spec = SampleSpec(files=1, steps_per_file=600, lat=60, lon=100, compression=False)
    return write_sample_files(tmp_path_factory.mktemp("chunked"), spec)[0]


def test_references_through_the_reader_equal_those_from_the_whole_file(
    chunked, local_settings, monkeypatch
):
    _, result = scanned(str(chunked.parent), local_settings)
    info = load_manifest(result.manifest_url, local_settings).files[0]
    ours = build_references(info, local_settings, Storage(local_settings))

    class WholeFile(io.BytesIO):  # the file read whole; inlined chunks read on their own
        def cached(self, start: int, length: int) -> None:
            return None

    monkeypatch.setattr(Storage, "reader", lambda self, location, **_: WholeFile(
        chunked.read_bytes()))  # fmt: skip
    whole = build_references(info, local_settings, Storage(local_settings))
    assert ours == whole


def test_generate_reads_near_the_metadata_floor(chunked, local_settings):
    _, result = scanned(str(chunked.parent), local_settings)
    info = load_manifest(result.manifest_url, local_settings).files[0]
    floor, _ = h5py_floor(str(chunked))
    traced = Storage(local_settings).traced()
    build_references(info, local_settings, traced)
    assert traced.trace is not None
    read, requests = traced.trace.total_bytes, traced.trace.total_requests
    assert read <= 4 * floor, f"read {read:,} bytes, {read / floor:.1f}x the floor {floor:,}"
    assert requests <= 40
    report = validate_file(info, local_settings, Storage(local_settings))
    assert report.requests <= 2
    assert report.bytes_read <= local_settings.read_block_size + 2 * SMALL_READ


def chunk_node(children: list[int], level: int = 1, offsets: int = 4) -> bytes:
    """A version-1 B-tree node of a chunk index, laid out as HDF5 writes it."""
    head = b"TREE" + bytes([1, level]) + len(children).to_bytes(2, "little") + b"\xff" * 16

    def key(i: int, last: bool = False) -> bytes:
        element = 4 if last else 0  # the element offset: 0 but in the final key
        start = [i * 10] + [0] * (offsets - 2) + [element]
        return (
            (1000).to_bytes(4, "little")
            + bytes(4)
            + b"".join(o.to_bytes(8, "little") for o in start)
        )

    body = b"".join(key(i) + c.to_bytes(8, "little") for i, c in enumerate(children))
    return (head + body + key(len(children), last=True)).ljust(3136, b"\0")


def test_chunk_index_children_are_read_from_nodes_above_the_leaves():
    children = [5000, 90_000, 40_000]
    assert chunk_tree_children(chunk_node(children), size=100_000) == children
    assert chunk_tree_children(chunk_node(children, offsets=2), size=100_000) == children
    assert chunk_tree_children(chunk_node(children, level=0), size=100_000) == []  # leaves
    assert chunk_tree_children(chunk_node([5000, 200_000]), size=100_000) == []  # outside
    assert chunk_tree_children(b"SNOD" + bytes(100), size=100_000) == []


def test_the_children_of_a_chunk_index_node_are_prefetched_together():
    size = 100_000
    children = [20_000, 50_000, 80_000]
    data = bytearray(random.Random(2).randbytes(size))
    node = chunk_node(children)
    data[1000 : 1000 + len(node)] = node
    reader, trace = memory_reader(bytes(data), size=size)
    reader.prefetch_index = True
    reader.seek(1000)
    assert reader.read(len(node)) == node
    assert sorted(r.start for r in trace.requests[1:]) == children
    assert all(r.length == len(node) for r in trace.requests[1:])
    for child in children:  # h5py's reads of the children: from memory
        reader.seek(child)
        assert reader.read(len(node)) == data[child : child + len(node)]
    assert len(trace.requests) == 4
