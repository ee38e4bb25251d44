"""Write a merged store piece by piece, for collections too large to hold as one manifest.

A spread combine's join (shared.stages.spread) has every virtual variable's chunks as
columns (shared.stages.merge.Chunks) and a dataset whose virtual variables carry no chunk:
its references give the metadata, the loaded coordinate and the scalars, as VirtualiZarr
writes them; the chunks are then written PIECE at a time, never as one dictionary of every
reference (2,000,002 of them at 1,000,000 files took 2.47 GB that way). What is written is
what write_store writes for the same dataset with full manifests (tests/test_merge.py
compares them chunk key by chunk key):

- kerchunk-json: the same document, key for key in the same order (each variable's chunk
  references come just before its ``.zarray``, as VirtualiZarr's writer puts them);
- kerchunk-parquet: the same ``.zmetadata`` and ``refs.N.parq`` files as kerchunk's
  refs_to_dataframe (record_size RECORD_SIZE), each record file written by fsspec's own
  LazyReferenceMapper.write from the rows of that record only;
- icechunk: the same arrays and references, set PIECE chunks at a time with
  set_virtual_refs_arr (inlined chunks as native ones, as VirtualiZarr does) and committed
  piece by piece, in a repository whose manifests are split every PIECE chunks along the
  first axis. Two differences: main has a commit per piece (not one), and the concat
  coordinate and its bounds are stored in chunks of PIECE steps, not one chunk per file
  (``coarse``); their values are the same.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH, MISSING_CHUNK_PATH

from shared.stages.chunks import Chunks

PIECE = 100_000  # chunks in memory at a time
RECORD_SIZE = 100_000  # references per Parquet record file: refs_to_dataframe's default


def _keys(grid: tuple[int, ...], start: int, stop: int) -> list[str]:
    """Kerchunk chunk keys ("i.j.k") of the flat chunk indices [start, stop)."""
    indices = np.unravel_index(np.arange(start, stop), grid)
    text = [i.astype(np.dtypes.StringDType()) for i in indices]
    keys = text[0]
    for part in text[1:]:
        keys = np.strings.add(np.strings.add(keys, "."), part)
    return list(keys.tolist())


def _path(path: str) -> str:
    """As VirtualiZarr's kerchunk writer: local paths without file://."""
    return path.removeprefix("file://") if path.startswith("file:///") else path


def references(chunks: Chunks, start: int, stop: int) -> Iterator[tuple[int, Any]]:
    """(flat index, kerchunk reference) of the chunks [start, stop) that exist: [path,
    offset, length], or "base64:..." for an inlined chunk."""
    paths, offsets, lengths = chunks.piece(start, stop)
    present = np.flatnonzero(paths != MISSING_CHUNK_PATH)
    for i, path, offset, length in zip(
        present.tolist(),
        paths[present].tolist(),
        offsets[present].tolist(),
        lengths[present].tolist(),
        strict=True,
    ):
        if path == INLINED_CHUNK_PATH:
            data = chunks.inlined[start + i]
            yield start + i, "base64:" + base64.b64encode(data).decode()
        else:
            yield start + i, [_path(path), offset, length]


def kerchunk_json(refs: dict[str, Any], chunks: dict[str, Chunks]) -> list[bytes]:
    """json.dumps(...).encode() of the whole reference document, in pieces (not joined: at
    2,000,000 references the document is 213 MB)."""
    parts: list[bytes] = []

    def add(text: str) -> None:
        parts.append(("," if len(parts) > 1 else "").encode() + text.encode())

    head = json.dumps({k: v for k, v in refs.items() if k != "refs"}, separators=(",", ":"))
    parts.append((head[:-1] + ',"refs":{').encode())
    for key, value in refs["refs"].items():
        name = key[: -len("/.zarray")] if key.endswith("/.zarray") else None
        if name in chunks:
            column = chunks[name]
            for start in range(0, len(column), PIECE):
                stop = min(start + PIECE, len(column))
                keys = _keys(column.grid, start, stop)
                piece = {f"{name}/{keys[i - start]}": r for i, r in references(column, start, stop)}
                if piece:
                    add(json.dumps(piece, separators=(",", ":"))[1:-1])
        add(json.dumps({key: value}, separators=(",", ":"))[1:-1])
    parts.append(b"}}")
    return parts


def kerchunk_parquet(refs: dict[str, Any], chunks: dict[str, Chunks], root: Path) -> None:
    """The Parquet reference store kerchunk's refs_to_dataframe(refs, root) writes."""
    import fsspec
    from fsspec.implementations.reference import LazyReferenceMapper

    store = refs["refs"]
    out = LazyReferenceMapper.create(
        root=str(root),
        fs=fsspec.filesystem("file"),
        record_size=RECORD_SIZE,
        categorical_threshold=10,
    )
    for key in sorted(store):  # as refs_to_dataframe: metadata before the chunks it shapes
        out[key] = store[key]
    for name, column in chunks.items():
        for record in range(math.ceil(len(column) / RECORD_SIZE)):
            start, stop = record * RECORD_SIZE, min((record + 1) * RECORD_SIZE, len(column))
            rows = {i - start: r for i, r in references(column, start, stop)}
            if rows:  # one record file, from its rows only (LazyReferenceMapper.write's input)
                out._items[(name, record)] = rows
                out.write(name, record)
    out.flush()


def coarse(dataset: xr.Dataset, chunks: dict[str, Chunks]) -> xr.Dataset:
    """The dataset with its loaded variables along the concat dimension (the coordinate and
    its bounds) stored in chunks of PIECE steps, not in the files' own chunks (one step a
    file: 1,000,000 native chunks of 8 bytes took minutes and 2.9 GB in one Icechunk
    session, and as many reads for a reader of the coordinate). Their values are the same."""
    dims = {dataset[name].dims[column.axis] for name, column in chunks.items()}
    out = dataset.copy()
    for name, variable in out.variables.items():
        if name in chunks or not variable.dims or variable.dims[0] not in dims:
            continue
        given = variable.encoding.get("chunks")
        if given:
            encoding = dict(variable.encoding)
            encoding["chunks"] = (min(PIECE, variable.shape[0]), *tuple(given)[1:])
            encoding.pop("preferred_chunks", None)
            variable.encoding = encoding
    return out


def icechunk(dataset: xr.Dataset, chunks: dict[str, Chunks], repo: Any, message: str) -> None:
    """What dataset.vz.to_icechunk writes with full manifests, committed on main a piece at
    a time: the metadata and loaded variables first, then each PIECE chunks of references
    ("<message>, piece k of n"), so no session holds more than a piece's changes (one
    session of 2,000,000 references took 3.5 GB; amending one commit piece by piece still
    grew to 1.5 GB, its transaction log holding every change). The repository splits its
    manifests every PIECE chunks (create_icechunk_repository(split=)): a commit rewrites
    only the manifests its piece touched."""
    from virtualizarr.writers.icechunk import write_inlined_chunks_as_native
    from zarr.core.sync import sync

    pieces: list[tuple[str, int, int]] = []
    for name, column in chunks.items():
        per_row = int(np.prod(column.grid[1:], dtype="int64"))
        rows = max(PIECE // max(per_row, 1), 1)
        pieces += [(name, first, min(first + rows, column.grid[0]))
                   for first in range(0, column.grid[0], rows)]  # fmt: skip
    total = len(pieces) + 1
    session = repo.writable_session("main")
    coarse(dataset, chunks).vz.to_icechunk(session.store)  # metadata, loaded variables
    for name, column in chunks.items():
        if column.inlined:
            inlined = {tuple(int(i) for i in np.unravel_index(at, column.grid)): data
                       for at, data in column.inlined.items()}  # fmt: skip
            sync(write_inlined_chunks_as_native(session.store, name, inlined,
                                                (0,) * len(column.grid)))  # fmt: skip
    session.commit(f"{message}, piece 1 of {total}")
    updated = datetime.now(UTC) + timedelta(seconds=1)  # as VirtualiZarr's writer
    for number, (name, first, last) in enumerate(pieces, start=2):
        column = chunks[name]
        per_row = int(np.prod(column.grid[1:], dtype="int64"))
        paths, offsets, lengths = column.piece(first * per_row, last * per_row)
        paths = np.where(paths == INLINED_CHUNK_PATH, MISSING_CHUNK_PATH, paths)
        session = repo.writable_session("main")
        if (paths != MISSING_CHUNK_PATH).any():
            session.store.set_virtual_refs_arr(
                array_path=name,
                chunk_grid_shape=(last - first, *column.grid[1:]),
                locations=paths.tolist(),
                offsets=offsets,
                lengths=lengths,
                validate_containers=False,
                arr_offset=(first, *(0 for _ in column.grid[1:])) if first else None,
                checksum=updated,
            )
        session.commit(f"{message}, piece {number} of {total}", allow_empty=True)
