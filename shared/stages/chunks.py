"""One virtual variable's chunk references across the files of a collection: as the files
store them (``Virtual``, a column of shared.stages.merge), cut into the sub-chunks of a
regular grid where the files' own chunks do not form one (``cut``, shared.stages.grid says
when and which), and merged in the files' order along the concat axis (``Chunks``), to be
written as one manifest or piece by piece (shared.stages.chunkrefs).

Cutting needs no read: a variable stored without filters holds its values row-major, so a
block that is whole along the trailing axes of a stored chunk starts at the chunk's offset
plus the block's first element times the item size, and is as long as its elements. Files
that store the variable alike (same chunk shape and length) share one template of sub-chunk
positions, so a collection is cut in a few vectorised steps whatever its file count.
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH, MISSING_CHUNK_PATH
from zarr.core.metadata import ArrayV3Metadata

from shared.model.errors import CombineFailed
from shared.stages.grid import Stored


def segments(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indices of the ranges [starts[i], starts[i] + sizes[i]), one after the other."""
    sizes = np.asarray(sizes, dtype="int64")
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("int64")
    return np.arange(int(sizes.sum()), dtype="int64") + np.repeat(
        np.asarray(starts, dtype="int64") - before, sizes
    )


def starts_of(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("int64")


def flat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0, "uint64")


def is_plain(codecs: Sequence[dict[str, Any]]) -> bool:
    """Stored bytes are the values themselves (no compression, shuffle or checksum)."""
    return [c.get("name") for c in codecs] == ["bytes"]


def itemsize(zarr: dict[str, Any]) -> int:
    metadata = ArrayV3Metadata.from_dict({**zarr, "attributes": {}})
    return int(metadata.dtype.to_native_dtype().itemsize)


@dataclass
class Virtual:
    """One virtual variable along the concat dimension: its chunks, file after file, each
    file's in the C order of its own chunk grid."""

    zarr: dict[str, Any]  # the first file's metadata
    same: tuple[Any, ...]  # what must be equal in every file (merge)
    axis: int  # the concat dimension's position in the variable's dimensions
    kinds: list[tuple[int, ...]] = field(default_factory=list)  # stored chunk shapes seen
    # per file: its chunk shape in kinds (4 bytes a file: a spread join holds 1,000,000)
    kind: array.array[int] = field(default_factory=lambda: array.array("i"))
    counts: list[int] = field(default_factory=list)  # chunks along the concat axis per file
    offsets: list[np.ndarray] = field(default_factory=list)  # pieces (a file's, a batch's)
    lengths: list[np.ndarray] = field(default_factory=list)
    paths: dict[int, list[str]] = field(default_factory=dict)  # file -> explicit paths
    inline: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (file, flat) -> data

    def kind_of(self, chunks: tuple[int, ...]) -> int:
        if chunks not in self.kinds:
            self.kinds.append(chunks)
        return self.kinds.index(chunks)

    def shape(self, steps: int) -> tuple[int, ...]:
        """A file's shape of this variable, given its steps along the concat dimension."""
        shape = list(self.zarr["shape"])
        shape[self.axis] = steps
        return tuple(shape)

    def stored(self, url: str, steps: int, kind: int) -> Stored:
        return Stored(url, self.shape(steps), self.kinds[kind], is_plain(self.zarr["codecs"]))


def native_grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(-(-int(n) // int(c)) for n, c in zip(shape, chunks, strict=True))


# -- cutting ----------------------------------------------------------------------------
def _template(
    shape: Sequence[int], stored: Sequence[int], chunks: Sequence[int], size: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """For a file of ``shape`` stored in chunks of ``stored``, cut into ``chunks``: each
    sub-chunk's stored chunk (flat index) and byte offset in it, sub-chunks in C order;
    and the file's grid of sub-chunks."""
    s = np.asarray(chunks, dtype="int64")[:, None]
    c = np.asarray(stored, dtype="int64")[:, None]
    grid = native_grid(shape, chunks)
    first = np.indices(grid, dtype="int64").reshape(len(grid), -1) * s  # first elements
    within = np.ravel_multi_index(tuple(first % c), tuple(int(x) for x in stored))
    chunk = np.ravel_multi_index(tuple(first // c), native_grid(shape, stored))
    return chunk.astype("int64"), within.astype("int64") * size, grid


def _cut_files(
    offsets: np.ndarray,
    lengths: np.ndarray,
    native_starts: np.ndarray,
    template: tuple[np.ndarray, np.ndarray],
    stored_length: int,
    length: int,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and lengths of the sub-chunks of files whose chunks start at
    ``native_starts`` in the flat arrays, all stored alike (``template``): one row a file."""
    chunk, within = template
    rows = native_starts[:, None] + chunk[None, :]
    found = lengths[rows]
    present = found > 0
    if bool(np.any(found[present] != stored_length)):
        raise CombineFailed(
            f"{where}: a stored chunk is not the length its shape and dtype give "
            f"({stored_length} bytes), so its bytes cannot be cut at computed offsets.",
            remedy="Run `python -m devhost validate` on the file and report it.",
        )
    cut_offsets = np.where(present, offsets[rows] + within[None, :].astype("uint64"), 0)
    cut_lengths = np.where(present, np.uint64(length), np.uint64(0))
    return cut_offsets.astype("uint64"), cut_lengths.astype("uint64")


def cut(
    column: Virtual, chunks: tuple[int, ...], steps: np.ndarray, urls: Sequence[str]
) -> Virtual:
    """The column's files cut into sub-chunks of ``chunks`` (every file's length along the
    concat axis is a multiple of chunks[axis]: shared.stages.grid), files in index order."""
    size = itemsize(column.zarr)
    length = math.prod(chunks) * size
    steps = np.asarray(steps, dtype="int64")
    kind = np.asarray(column.kind, dtype="int64")
    offsets, lengths = flat(column.offsets), flat(column.lengths)
    stored_chunks = np.asarray(column.kinds, dtype="int64")  # kinds x axes
    across = np.asarray(column.shape(1), dtype="int64")[None, :]
    rows = -(-across // stored_chunks)
    rows[:, column.axis] = 1
    native = rows.prod(axis=1)[kind] * -(-steps // stored_chunks[kind, column.axis])
    native_starts = starts_of(native)
    rest = native_grid(column.shape(chunks[column.axis]), chunks)
    per_file = steps // chunks[column.axis] * math.prod(rest)
    out_starts = starts_of(per_file)
    out_offsets = np.zeros(int(per_file.sum()), dtype="uint64")
    out_lengths = np.zeros(int(per_file.sum()), dtype="uint64")
    key = kind * (int(steps.max(initial=0)) + 1) + steps
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    paths: dict[int, list[str]] = {}
    for g, representative in enumerate(first.tolist()):
        files = np.flatnonzero(inverse == g)
        stored = column.kinds[int(kind[representative])]
        shape = column.shape(int(steps[representative]))
        chunk, within, _ = _template(shape, stored, chunks, size)
        got = _cut_files(offsets, lengths, native_starts[files], (chunk, within),
                         math.prod(stored) * size, length, urls[representative])  # fmt: skip
        rows = out_starts[files][:, None] + np.arange(len(chunk))[None, :]
        out_offsets[rows], out_lengths[rows] = got
        for f in files.tolist():
            if f in column.paths:
                paths[f] = [column.paths[f][i] for i in chunk.tolist()]
    if column.inline:
        raise CombineFailed(f"{urls[0]}: a variable with inlined chunks cannot be cut.")
    counts = (steps // chunks[column.axis]).tolist()
    return Virtual(column.zarr, column.same, column.axis, [tuple(chunks)],
                   array.array("i", [0]) * len(steps), counts, [out_offsets], [out_lengths],
                   paths)  # fmt: skip


def cut_array(array: ManifestArray, chunks: tuple[int, ...], url: str) -> ManifestArray:
    """One file's array (a variable without the concat dimension) cut into ``chunks``."""
    metadata = array.metadata
    shape = tuple(int(n) for n in metadata.shape)
    stored = tuple(int(c) for c in metadata.chunk_grid.chunk_shape)  # type: ignore[union-attr]
    size = int(metadata.dtype.to_native_dtype().itemsize)
    manifest = array.manifest
    offsets = manifest._offsets.ravel().astype("uint64")
    lengths = manifest._lengths.ravel().astype("uint64")
    paths: np.ndarray = np.asarray(manifest._paths.ravel(), dtype=object)
    if offsets.size != math.prod(native_grid(shape, stored)):
        if lengths.any():
            raise CombineFailed(f"{url}: the chunk grid of a variable does not match its shape.")
        offsets = lengths = np.zeros(math.prod(native_grid(shape, stored)), dtype="uint64")
        paths = np.full(offsets.size, MISSING_CHUNK_PATH, dtype=object)
    chunk, within, grid = _template(shape, stored, chunks, size)
    new_offsets, new_lengths = _cut_files(offsets, lengths, np.zeros(1, "int64"),
                                          (chunk, within), math.prod(stored) * size,
                                          math.prod(chunks) * size, url)  # fmt: skip
    new_paths = np.asarray(paths, dtype=object)[chunk]
    new_paths = np.where(new_lengths[0] > 0, new_paths, MISSING_CHUNK_PATH)
    from virtualizarr.manifests.utils import copy_and_replace_metadata

    return ManifestArray(
        metadata=copy_and_replace_metadata(metadata, new_chunks=list(chunks)),
        chunkmanifest=ChunkManifest.from_arrays(
            paths=cast(Any, new_paths.astype(np.dtypes.StringDType())).reshape(grid),
            offsets=new_offsets[0].reshape(grid),
            lengths=new_lengths[0].reshape(grid),
            validate_paths=False,
        ),
    )


# -- the merged store ---------------------------------------------------------------------
@dataclass
class Chunks:
    """One virtual variable's chunks in the files' merged order, read piece by piece
    (``piece``: a range of its chunks, flat in C order) or whole (``manifest``)."""

    grid: tuple[int, ...]
    offsets: np.ndarray  # flat, files in index order
    lengths: np.ndarray
    files: np.ndarray  # each chunk's file
    urls: np.ndarray  # object array: each file's URL
    gather: np.ndarray | None  # merged position -> position in the files' order
    explicit: np.ndarray | None  # object array of paths, where a file gives its own
    inlined: dict[int, bytes]  # merged position -> data
    axis: int = 0  # the concat axis

    @classmethod
    def of(cls, column: Virtual, urls: np.ndarray, order: np.ndarray) -> Chunks:
        """The column's chunks merged in ``order``; every file's chunks are one shape."""
        counts = np.asarray(column.counts, dtype="int64")
        rest = list(native_grid(column.shape(1), column.kinds[0]))
        del rest[column.axis]
        per_chunk = int(np.prod(rest, dtype="int64"))
        sizes = counts * per_chunk
        starts = starts_of(sizes)
        files = np.repeat(np.arange(len(sizes), dtype="int32"), sizes)
        explicit = None
        if column.paths:
            explicit = np.full(int(sizes.sum()), None, dtype=object)
            for file, paths in column.paths.items():
                explicit[starts[file] : starts[file] + sizes[file]] = paths
        gather = position = None
        if column.axis:
            gather = _gather(counts, starts, order, rest, column.axis)
        elif not np.array_equal(order, np.arange(len(order))):
            gather = segments(starts[order], sizes[order])
        if gather is not None:
            position = np.empty_like(gather)
            position[gather] = np.arange(len(gather))
        inlined = {}
        for (file, flat_index), data in column.inline.items():
            at = int(starts[file] + flat_index)
            inlined[int(position[at]) if position is not None else at] = data
        grid = (*rest[: column.axis], int(counts[order].sum()), *rest[column.axis :])
        return cls(tuple(grid), flat(column.offsets), flat(column.lengths), files, urls,
                   gather, explicit, inlined, column.axis)  # fmt: skip

    def __len__(self) -> int:
        return len(self.files)

    def piece(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Paths (object array; MISSING_CHUNK_PATH, INLINED_CHUNK_PATH), offsets and lengths
        of the merged chunks [start, stop)."""
        rows = self.gather[start:stop] if self.gather is not None else slice(start, stop)
        offsets, lengths = self.offsets[rows], self.lengths[rows]
        paths = np.where(lengths > 0, self.urls[self.files[rows]], MISSING_CHUNK_PATH)
        if self.explicit is not None:
            given = self.explicit[rows]
            paths = np.where(given != None, given, paths)  # noqa: E711 (element-wise)
        if self.inlined:
            at = np.fromiter(self.inlined, dtype="int64", count=len(self.inlined))
            at = at[(at >= start) & (at < stop)]
            paths[at - start] = INLINED_CHUNK_PATH
        return paths, offsets, lengths

    def manifest(self) -> ChunkManifest:
        paths, offsets, lengths = self.piece(0, len(self))
        inlined = {tuple(int(i) for i in np.unravel_index(at, self.grid)): data
                   for at, data in self.inlined.items()}  # fmt: skip
        return ChunkManifest.from_arrays(
            paths=cast(Any, paths.astype(np.dtypes.StringDType())).reshape(self.grid),
            offsets=offsets.reshape(self.grid),
            lengths=lengths.reshape(self.grid),
            validate_paths=False,
            inlined=inlined or None,
        )


def _gather(
    counts: np.ndarray, starts: np.ndarray, order: np.ndarray, rest: list[int], axis: int
) -> np.ndarray:
    """Merged position -> position in the files' order, concatenating along ``axis`` > 0:
    a file's chunks are a block (before, its count, after) of the merged grid."""
    before = int(np.prod(rest[:axis], dtype="int64"))
    after = int(np.prod(rest[axis:], dtype="int64"))
    in_order = counts[order]
    file_of = np.repeat(order, in_order)  # the file of each merged step along the axis
    step = np.arange(int(in_order.sum()), dtype="int64") - np.repeat(starts_of(in_order), in_order)
    base = starts[file_of] + step * after
    stride = counts[file_of] * after
    return (
        base[None, :, None]
        + np.arange(before, dtype="int64")[:, None, None] * stride[None, :, None]
        + np.arange(after, dtype="int64")[None, None, :]
    ).ravel()


_EMPTY: dict[int, ChunkManifest] = {}


def empty_manifest(ndim: int) -> ChunkManifest:
    """A manifest of one missing chunk: writes no reference."""
    if ndim not in _EMPTY:
        shape = (1,) * ndim
        _EMPTY[ndim] = ChunkManifest.from_arrays(
            paths=cast(Any, np.full(shape, MISSING_CHUNK_PATH, dtype=np.dtypes.StringDType())),
            offsets=np.zeros(shape, dtype="uint64"),
            lengths=np.zeros(shape, dtype="uint64"),
            validate_paths=False,
        )
    return _EMPTY[ndim]
