"""The chunk grid each virtual variable gets in the combined store, decided from how every
file stores it. The gate and combine ask the same question of the same function (``plan``):
the gate from the files' validation reports, combine from their references. So a collection
the gate lets through always combines, and one that cannot be combined is stopped at the
gate with a finding that names the files, their lengths and chunks, and a fix that works.

A Zarr array has one regular chunk grid, where only the last chunk along an axis may be
short. Files concatenated along a dimension keep their own chunks only when every file has
the same chunk shape and every file but the last holds a whole number of chunks along the
concat dimension (``native``). Real archives rarely look like that: CMOR writes variables
contiguously (one "chunk" as long as the file) and splits a run unevenly in time (decades of
120 months and a last file of 60; daily files of 366 and 365 days).

Bytes stored without filters (contiguous, or chunked with no compression, shuffle or
checksum; NetCDF3 classic) are the values in row-major order, so any block that is whole
along the trailing axes is one contiguous byte range at a computable offset. Such a variable
is referenced as sub-chunks (``cut``): along the concat dimension a length that divides every
file's length (and every stored chunk it falls in), so every file starts a new chunk; whole
along the other dimensions, unless a chunk would pass ``max_bytes`` (then one step and split
along the next dimensions too). That always exists (one element is a block), so a plain
variable never stops a collection. Compressed chunks cannot be cut: a collection whose
compressed chunks do not form one grid is refused (``NoGrid``).

A plain variable whose own chunks already form a grid keeps them, unless they pass
``max_bytes`` (a contiguous variable of 500 MB would be read whole): then it is cut too.
Variables without the concat dimension (one copy, the first file's) follow the same rule
with one file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce


@dataclass(frozen=True)
class Stored:
    """How one file stores one variable."""

    url: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]  # the stored chunk shape; contiguous: the shape
    plain: bool  # no filters: the stored bytes are the values, row-major


@dataclass(frozen=True)
class Grid:
    """The store's chunk shape for a variable; ``cut``: sub-chunks of the files' bytes at
    computed offsets (else the files' own chunks, merged)."""

    chunks: tuple[int, ...]
    cut: bool


@dataclass(frozen=True)
class NoGrid:
    """Compressed chunks that do not form one grid: what is wrong, about which files."""

    code: str  # "chunks_differ" or "partial_chunks"
    odd: tuple[Stored, ...]  # the files that break the grid
    usual: tuple[int, ...]  # the chunk shape of most files
    usual_files: int
    axis: int
    lengths: tuple[int, ...]  # every file's length along the concat dimension

    def sentence(self, variable: str, dimensions: Sequence[str]) -> str:
        """The finding's message: the files, their lengths and chunks, why, and the fix."""
        dim = dimensions[self.axis]
        shown = ", ".join(
            f"{_file(s.url)} ({s.shape[self.axis]} steps in chunks of {s.chunks[self.axis]})"
            for s in self.odd[:3]
        ) + (f" and {len(self.odd) - 3} more" if len(self.odd) > 3 else "")
        if self.code == "chunks_differ":
            what = (
                f"{variable} is stored compressed in chunks of {list(self.odd[0].chunks)} in "
                f"{shown} but {list(self.usual)} in the other {self.usual_files} file(s)"
            )
        else:
            what = (
                f"{variable} is stored compressed along {dim} in chunks that do not divide "
                f"the files' lengths: {shown}, so a chunk would straddle two files"
            )
        return (
            f"{what}; compressed chunks cannot be cut, and a store has one regular chunk grid "
            f"per variable. Rewrite every file with chunks of {self.fix_length} along {dim} "
            f"(which divides every file's length) and the same chunks along the other "
            f"dimensions, e.g. `{self.fix(dimensions)}`, or store it uncompressed "
            f"(`nccopy -d 0 IN.nc OUT.nc`), which the pipeline cuts into a regular grid."
        )

    @property
    def fix_length(self) -> int:
        return reduce(math.gcd, self.lengths)

    def fix(self, dimensions: Sequence[str]) -> str:
        """An nccopy command that makes every file's chunks one grid: nccopy keeps a file's
        own chunk sizes for the dimensions its -c does not name, so it names them all, and
        ignores chunks smaller than its minimum chunk size (a few KB, netCDF-C 4.9) unless
        -M0 lifts it."""
        shape = self.odd[0].shape
        sizes = [
            self.fix_length if i == self.axis else min(self.usual[i], shape[i])
            for i in range(len(dimensions))
        ]
        spec = ",".join(f"{d}/{n}" for d, n in zip(dimensions, sizes, strict=True))
        return f"nccopy -M0 -c {spec} IN.nc OUT.nc"


def _file(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def plan(files: Sequence[Stored], axis: int | None, itemsize: int, max_bytes: int) -> Grid | NoGrid:
    """The store's grid for one variable stored by ``files`` (in concat order), concatenated
    along ``axis`` (None: a variable without the concat dimension, the first file's)."""
    if axis is None:
        files = files[:1]
    native = _native(files, axis)
    plain = all(f.plain for f in files)
    if isinstance(native, Grid):
        if not plain or math.prod(native.chunks) * itemsize <= max_bytes:
            return native
    elif not plain:
        return native
    return Grid(_cut_shape(files, axis, itemsize, max_bytes), cut=True)


def _native(files: Sequence[Stored], axis: int | None) -> Grid | NoGrid:
    """The files' own chunks, if they form one grid along ``axis``."""
    shapes = [f.chunks for f in files]
    usual = max(set(shapes), key=lambda s: (shapes.count(s), -shapes.index(s)))
    lengths = tuple(f.shape[axis] for f in files) if axis is not None else ()
    if axis is None:
        return Grid(usual, cut=False)
    odd = tuple(f for f in files if f.chunks != usual)
    if odd:
        return NoGrid("chunks_differ", odd, usual, len(files) - len(odd), axis, lengths)
    partial = tuple(f for f in files[:-1] if f.shape[axis] % usual[axis])
    if partial:
        return NoGrid("partial_chunks", partial, usual, len(files) - len(partial), axis, lengths)
    return Grid(usual, cut=False)


def _cut_shape(
    files: Sequence[Stored], axis: int | None, itemsize: int, max_bytes: int
) -> tuple[int, ...]:
    """The largest block that is one byte range inside every file's stored chunks and tiles
    them: 1 along the axes before ``j``, a divisor along ``j``, whole after it; along the
    concat axis a divisor of every file's length. The first ``j`` under ``max_bytes`` wins."""
    ndim = len(files[0].shape)
    for j in range(ndim):
        trailing = []
        for i in range(j + 1, ndim):
            sizes = {f.chunks[i] for f in files}
            # whole along i: one chunk size in every file, and along the concat axis every
            # file a whole number of them
            if len(sizes) != 1 or (i == axis and any(f.shape[i] % f.chunks[i] for f in files)):
                break
            trailing.append(sizes.pop())
        else:
            inner = math.prod(trailing) * itemsize
            if inner > max_bytes and j < ndim - 1:
                continue
            room = max(max_bytes // max(inner, 1), 1)
            along = _largest_divisor(_divides(files, j, axis), room)
            return (*([1] * j), along, *trailing)
    raise AssertionError("unreachable: the last axis always gives a block")


def _divides(files: Sequence[Stored], j: int, axis: int | None) -> int:
    """What a block's length along axis ``j`` must divide: every stored chunk it falls in
    (a chunk as long as the axis or longer holds one block row of the whole length), and
    along the concat axis every file's length (each file starts a new chunk)."""
    lengths = []
    for f in files:
        chunk, length = f.chunks[j], f.shape[j]
        if j == axis:
            lengths.append(length if chunk >= length else math.gcd(length, chunk))
        else:
            lengths.append(chunk)
    return reduce(math.gcd, lengths)


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` not above ``at_most`` (at least 1)."""
    if n <= at_most:
        return max(n, 1)
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if best < candidate <= at_most:
                    best = candidate
    return best
