"""Combine by merging chunk manifests: the per-file references are joined column by column.

Each file's references document is read once into compact columns (``Columns``): per
variable along the concat dimension, the chunks' offsets and lengths in one flat array, the
chunks per file along that dimension, explicit paths and inlined chunks where a file has
them; and the concat coordinate and its CF bounds as raw values, grouped by the attributes
they decode with. ``merge`` then decodes each group once (decoding is element by element,
so one call over many files gives what one call per file gives), orders the files, checks
them, and gathers every variable's chunks into one ManifestArray in that order.

What the columns do not cover - a variable whose chunk layout, dimensions or codecs differ
between files, a concat dimension that is not a variable's first, chunks of the coordinate
that are not inlined, anything unexpected - raises ``Irregular``: combine then takes the
xr.concat path, which gives the same store or the same error as before. The gate refuses
most such collections before they get here.

Columns of a batch of files can be written to the work area (``to_bytes``) and joined
later (``Columns.join``): the combine of a large collection is spread over activities.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, cast

import numpy as np
import xarray as xr
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH, MISSING_CHUNK_PATH
from virtualizarr.manifests.utils import (
    check_no_partial_chunks_on_concat_axis,
    copy_and_replace_metadata,
)
from xarray.backends.zarr import FillValueCoder
from zarr.core.array import create_codec_pipeline
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync

from shared.model.errors import CombineFailed

# Calendars xarray decodes to numpy datetimes when the dates fit (else to cftime objects,
# a choice made over the whole array): such groups whose values came out as objects are
# decoded again file by file, as opening each file did.
_NUMPY_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}


class Irregular(Exception):
    """The merge does not cover this collection; xr.concat of the opened files decides."""


def no_coordinate(url: str, concat_dim: str, dims: Iterable[Any]) -> CombineFailed:
    names = sorted({str(d) for d in dims if d is not None})
    return CombineFailed(
        f"{url} has no coordinate variable {concat_dim!r} to concatenate along "
        f"(its dimensions are {', '.join(names) or 'none'}).",
        remedy="Give the right concat_dim in the request, or fix the file.",
    )


def concat_failed(files: int, concat_dim: str, exc: Exception) -> CombineFailed:
    return CombineFailed(
        f"Concatenating {files} files along {concat_dim!r} failed: {type(exc).__name__}: {exc}",
        remedy="Run `python -m devhost validate` on the source to find the odd file.",
    )


def _bounds_names(arrays: Mapping[str, Any], concat_dim: str) -> list[str]:
    """As references.concat_bounds, on a document's arrays."""
    attributes = arrays[concat_dim]["zarr"].get("attributes") or {}
    names = [attributes.get(key) for key in ("bounds", "climatology")]
    return [n for n in names if isinstance(n, str) and n in arrays]


def _same(zarr: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be equal in every file for a variable's manifests to be joined."""
    return (
        zarr["data_type"],
        zarr["codecs"],
        zarr["chunk_grid"],
        zarr.get("dimension_names"),
        zarr["shape"][1:],
        zarr.get("storage_transformers") or [],
    )


_DECODERS: dict[str, tuple[np.dtype[Any], Any, ArraySpec | None]] = {}


def _decoder(zarr: Mapping[str, Any]) -> tuple[np.dtype[Any], Any, ArraySpec | None]:
    """(native dtype, byte-order dtype or a codec pipeline, chunk spec) for raw chunks."""
    key = json.dumps([zarr["data_type"], zarr["codecs"], zarr["chunk_grid"], zarr["fill_value"]])
    found = _DECODERS.get(key)
    if found is None:
        metadata = ArrayV3Metadata.from_dict({**zarr, "attributes": {}})
        native = metadata.dtype.to_native_dtype()
        if native.kind not in "biufcmM":
            raise Irregular(f"a coordinate of dtype {native}")
        codecs = zarr["codecs"]
        if len(codecs) == 1 and codecs[0]["name"] == "bytes":
            endian = (codecs[0].get("configuration") or {}).get("endian", "little")
            found = (native, native.newbyteorder("<" if endian == "little" else ">"), None)
        else:
            chunks = tuple(zarr["chunk_grid"]["configuration"]["chunk_shape"])
            spec = ArraySpec(
                shape=chunks,
                dtype=metadata.data_type,
                fill_value=metadata.fill_value,
                config=ArrayConfig.from_dict({}),
                prototype=default_buffer_prototype(),
            )
            found = (native, create_codec_pipeline(metadata), spec)
        _DECODERS[key] = found
    return found


def raw_values(entry: Mapping[str, Any]) -> np.ndarray:
    """The stored values of an array whose every chunk is inlined, undecoded (no CF)."""
    zarr = entry["zarr"]
    shape = tuple(zarr["shape"])
    grid = tuple(entry["grid"])
    chunks = tuple(zarr["chunk_grid"]["configuration"]["chunk_shape"])
    if len(grid) not in (1, 2) or (len(grid) == 2 and grid[1] != 1):
        raise Irregular("a coordinate chunked along a second dimension")
    keys = [str(i) if len(grid) == 1 else f"{i}.0" for i in range(grid[0])]
    inline = entry["inline"]
    if any(k not in inline for k in keys):
        raise Irregular("a coordinate chunk that is not inlined")
    native, how, spec = _decoder(zarr)
    data = [base64.b64decode(inline[k]) for k in keys]
    if spec is None:
        blocks = [np.frombuffer(b, dtype=how).reshape(chunks) for b in data]
    else:
        decoded = sync(how.decode([(cpu.Buffer.from_bytes(b), spec) for b in data]))
        blocks = [d.as_numpy_array().reshape(chunks) for d in decoded]
    values = np.concatenate(blocks) if len(blocks) != 1 else blocks[0]
    return np.ascontiguousarray(values[tuple(slice(0, n) for n in shape)], dtype=native)


@dataclass
class Virtual:
    """One virtual variable along the concat dimension: its chunks, file after file."""

    zarr: dict[str, Any]  # the first file's metadata
    same: tuple[Any, ...]
    rest: tuple[int, ...]  # the chunk grid after the concat axis
    counts: list[int] = field(default_factory=list)  # chunks along the concat axis per file
    offsets: list[np.ndarray] = field(default_factory=list)
    lengths: list[np.ndarray] = field(default_factory=list)
    paths: dict[int, list[str]] = field(default_factory=dict)  # file -> explicit paths
    inline: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (file, flat) -> data


@dataclass
class Decoding:
    """Files whose coordinate (and bounds) decode with the same metadata."""

    coordinate: dict[str, Any]  # zarr metadata without shape and grid
    bounds: dict[str, dict[str, Any]]
    files: list[int] = field(default_factory=list)
    raw: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _decode_key(zarr: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in zarr.items() if k not in ("shape", "chunk_grid", "codecs")}


def _decoding_key(coordinate: dict[str, Any], bounds: dict[str, dict[str, Any]]) -> str:
    return json.dumps([coordinate, bounds], sort_keys=True, default=str)


@dataclass
class Columns:
    """The references of some files, as columns (see the module's docstring)."""

    concat_dim: str
    drop: tuple[str, ...] = ()
    urls: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    names: list[str] | None = None  # the variables kept, as in the first file
    virtual: dict[str, Virtual] = field(default_factory=dict)
    decodings: dict[str, Decoding] = field(default_factory=dict)
    # References documents kept whole (file -> document): a batch keeps its first file's,
    # which the join opens when that file is the first of all.
    templates: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, document: Mapping[str, Any]) -> None:
        url = document["source"]["url"]
        arrays = document["arrays"]
        dim = self.concat_dim
        coordinate = arrays.get(dim)
        if coordinate is None or len(coordinate["zarr"]["shape"]) != 1 or dim in self.drop:
            raise no_coordinate(
                url,
                dim,
                (d for a in arrays.values() for d in a["zarr"].get("dimension_names") or ()),
            )
        bounds = [b for b in _bounds_names(arrays, dim) if b not in self.drop]
        names = [n for n in arrays if n not in self.drop]
        if self.names is None:
            self.names = names
        elif sorted(names) != sorted(self.names):
            raise Irregular("the variables differ between files")
        index = len(self.urls)
        steps = int(coordinate["zarr"]["shape"][0])
        loaded = {dim: coordinate, **{b: arrays[b] for b in bounds}}
        for name, entry in loaded.items():
            if (entry["zarr"].get("dimension_names") or [None])[0] != dim:
                raise Irregular(f"{name} is not along {dim} first")
        described = _decode_key(coordinate["zarr"])
        bounds_described = {b: _decode_key(arrays[b]["zarr"]) for b in bounds}
        key = _decoding_key(described, bounds_described)
        decoding = self.decodings.get(key)
        if decoding is None:
            decoding = self.decodings[key] = Decoding(described, bounds_described)
        for name, entry in loaded.items():
            decoding.raw.setdefault(name, []).append(raw_values(entry))
        decoding.files.append(index)
        for name in names:
            entry = arrays[name]
            zarr = entry["zarr"]
            dims = zarr.get("dimension_names") or []
            if name in loaded or dim not in dims:
                continue
            if dims[0] != dim or zarr["shape"][0] != steps:
                raise Irregular(f"{name} is not along {dim} first")
            column = self.virtual.get(name)
            if column is None:
                if index:
                    raise Irregular(f"{name} is not along {dim} in every file")
                column = self.virtual[name] = Virtual(zarr, _same(zarr), tuple(entry["grid"][1:]))
            elif _same(zarr) != column.same:
                raise Irregular(f"{name}'s chunks, codecs or shape differ between files")
            self._chunks(column, index, entry)
        if len(self.virtual) != sum(
            1
            for n in names
            if n not in loaded and dim in (arrays[n]["zarr"].get("dimension_names") or ())
        ):
            raise Irregular("a variable along the concat dimension is missing in a file")
        self.urls.append(url)
        self.steps.append(steps)

    @staticmethod
    def _chunks(column: Virtual, index: int, entry: Mapping[str, Any]) -> None:
        grid = tuple(entry["grid"])
        column.counts.append(grid[0])
        column.offsets.append(np.asarray(entry["offsets"], dtype="uint64"))
        column.lengths.append(np.asarray(entry["lengths"], dtype="uint64"))
        if entry["paths"] is not None:
            column.paths[index] = list(entry["paths"])
        for key, value in entry["inline"].items():
            flat = int(np.ravel_multi_index(tuple(int(i) for i in key.split(".")), grid))
            column.inline[(index, flat)] = base64.b64decode(value)

    # -- joining ---------------------------------------------------------------------------
    @classmethod
    def join(cls, parts: list[Columns]) -> Columns:
        """The columns of several batches as one (files in the parts' order)."""
        first = parts[0]
        out = cls(first.concat_dim, first.drop, names=first.names)
        for part in parts:
            if part.names is None:
                continue
            if out.names is None:
                out.names = part.names
            if sorted(part.names) != sorted(out.names) or set(part.virtual) != set(
                out.virtual or part.virtual
            ):
                raise Irregular("the variables differ between batches")
            base = len(out.urls)
            out.templates.update({base + i: d for i, d in part.templates.items()})
            out.urls += part.urls
            out.steps += part.steps
            for name, column in part.virtual.items():
                target = out.virtual.get(name)
                if target is None:
                    target = out.virtual[name] = Virtual(column.zarr, column.same, column.rest)
                elif column.same != target.same:
                    raise Irregular(f"{name}'s chunks, codecs or shape differ between files")
                target.counts += column.counts
                target.offsets += column.offsets
                target.lengths += column.lengths
                target.paths.update({base + i: p for i, p in column.paths.items()})
                target.inline.update({(base + i, f): d for (i, f), d in column.inline.items()})
            for key, decoding in part.decodings.items():
                target_d = out.decodings.get(key)
                if target_d is None:
                    target_d = out.decodings[key] = Decoding(decoding.coordinate, decoding.bounds)
                target_d.files += [base + i for i in decoding.files]
                for name, raw in decoding.raw.items():
                    target_d.raw.setdefault(name, []).extend(raw)
        return out

    # -- a partial, in the work area -------------------------------------------------------
    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        header: dict[str, Any] = {
            "concat_dim": self.concat_dim,
            "drop": list(self.drop),
            "urls": self.urls,
            "steps": self.steps,
            "names": self.names,
            "virtual": {},
            "decodings": [],
            "templates": {str(i): d for i, d in self.templates.items()},
        }
        for i, (name, column) in enumerate(self.virtual.items()):
            header["virtual"][name] = {
                "zarr": column.zarr,
                "rest": list(column.rest),
                "counts": column.counts,
                "paths": {str(k): v for k, v in column.paths.items()},
                "inline": [
                    [f, c, base64.b64encode(d).decode()] for (f, c), d in column.inline.items()
                ],
            }
            arrays[f"o{i}"] = _flat(column.offsets)
            arrays[f"l{i}"] = _flat(column.lengths)
        for j, decoding in enumerate(self.decodings.values()):
            entry: dict[str, Any] = {
                "coordinate": decoding.coordinate,
                "bounds": decoding.bounds,
                "files": decoding.files,
                "raw": {},
            }
            for k, (name, raw) in enumerate(decoding.raw.items()):
                arrays[f"r{j}_{k}"] = np.concatenate(raw)
                arrays[f"n{j}_{k}"] = np.asarray([len(r) for r in raw], dtype="int64")
                entry["raw"][name] = k
            header["decodings"].append(entry)
        buffer = io.BytesIO()
        header_bytes = np.frombuffer(json.dumps(header, default=str).encode(), dtype="uint8")
        save: Any = np.savez
        save(buffer, header=header_bytes, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Columns:
        stored = np.load(io.BytesIO(data), allow_pickle=False)
        header = json.loads(stored["header"].tobytes())
        out = cls(header["concat_dim"], tuple(header["drop"]), header["urls"], header["steps"],
                  header["names"])  # fmt: skip
        out.templates = {int(i): d for i, d in header.get("templates", {}).items()}
        for i, (name, entry) in enumerate(header["virtual"].items()):
            counts = entry["counts"]
            per_file = [c * int(np.prod(entry["rest"], dtype="int64")) for c in counts]
            splits = np.cumsum(per_file)[:-1]
            out.virtual[name] = Virtual(
                entry["zarr"],
                _same(entry["zarr"]),
                tuple(entry["rest"]),
                counts,
                list(np.split(stored[f"o{i}"], splits)),
                list(np.split(stored[f"l{i}"], splits)),
                {int(k): v for k, v in entry["paths"].items()},
                {(f, c): base64.b64decode(d) for f, c, d in entry["inline"]},
            )
        for j, entry in enumerate(header["decodings"]):
            decoding = Decoding(entry["coordinate"], entry["bounds"], entry["files"])
            for name, k in entry["raw"].items():
                raw, sizes = stored[f"r{j}_{k}"], stored[f"n{j}_{k}"]
                decoding.raw[name] = list(np.split(raw, np.cumsum(sizes)[:-1]))
            out.decodings[_decoding_key(decoding.coordinate, decoding.bounds)] = decoding
        return out


def _flat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0, "uint64")


# -- decoding the coordinate -------------------------------------------------------------
def _attributes(zarr: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes xarray's Zarr backend gives a variable (format 3: _FillValue decoded)."""
    attributes = dict(zarr.get("attributes") or {})
    if "_FillValue" in attributes:
        scalar = {
            **zarr,
            "shape": [],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": []}},
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "attributes": {},
        }
        dtype = ArrayV3Metadata.from_dict(scalar).dtype.to_native_dtype()
        attributes["_FillValue"] = FillValueCoder.decode(attributes["_FillValue"], dtype)
    return attributes


def _decode(
    decoding: Decoding, concat_dim: str, raw: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    metas = {concat_dim: decoding.coordinate, **decoding.bounds}
    variables = {
        name: xr.Variable(
            tuple(metas[name].get("dimension_names") or ()), values, _attributes(metas[name])
        )
        for name, values in raw.items()
    }
    decoded = xr.decode_cf(xr.Dataset(variables))
    return {name: decoded.variables[name].values for name in raw}


def decoded_values(columns: Columns) -> tuple[list[dict[str, np.ndarray]], bool]:
    """Per file, its decoded coordinate and bounds; and whether all share one dtype."""
    dim = columns.concat_dim
    per_file: list[dict[str, np.ndarray]] = [{} for _ in columns.urls]
    for decoding in columns.decodings.values():
        sizes = [len(r) for r in decoding.raw[dim]]
        joined = {name: np.concatenate(raw) for name, raw in decoding.raw.items()}
        values = _decode(decoding, dim, joined)
        calendar = str((decoding.coordinate.get("attributes") or {}).get("calendar", "standard"))
        if values[dim].dtype == object and calendar.lower() in _NUMPY_CALENDARS and len(sizes) > 1:
            for i, file in enumerate(decoding.files):
                per_file[file] = _decode(decoding, dim, {n: r[i] for n, r in decoding.raw.items()})
            continue
        splits = np.cumsum(sizes)[:-1]
        for name, array in values.items():
            for file, part in zip(decoding.files, np.split(array, splits), strict=True):
                per_file[file][name] = part
    dtypes = {v.dtype for f in per_file for v in f.values() if v.ndim == 1}
    return per_file, len(dtypes) == 1 and next(iter(dtypes)).kind != "O"


# -- the merged store ---------------------------------------------------------------------
def merged_manifest(column: Virtual, urls: list[str], order: np.ndarray) -> ChunkManifest:
    """The column's chunks in the files' order, as one manifest along the concat axis."""
    per_chunk = int(np.prod(column.rest, dtype="int64"))
    sizes = np.asarray(column.counts, dtype="int64") * per_chunk
    offsets = _flat(column.offsets)
    lengths = _flat(column.lengths)
    files = np.repeat(np.arange(len(sizes)), sizes)
    url_array = np.asarray(urls, dtype=np.dtypes.StringDType())
    paths = np.where(lengths > 0, url_array[files], MISSING_CHUNK_PATH).astype(
        np.dtypes.StringDType()
    )
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("int64")
    for file, explicit in column.paths.items():
        paths[starts[file] : starts[file] + sizes[file]] = explicit
    for file, flat in column.inline:
        paths[starts[file] + flat] = INLINED_CHUNK_PATH
    if not np.array_equal(order, np.arange(len(order))):
        ordered_sizes = sizes[order]
        before = np.concatenate([[0], np.cumsum(ordered_sizes)[:-1]]).astype("int64")
        gather = np.arange(int(ordered_sizes.sum())) + np.repeat(
            starts[order] - before, ordered_sizes
        )
        paths, offsets, lengths = paths[gather], offsets[gather], lengths[gather]
        position = np.empty_like(gather)
        position[gather] = np.arange(len(gather))
    else:
        position = None
    grid = (int(np.asarray(column.counts)[order].sum()), *column.rest)
    inlined = {}
    for (file, flat), data in column.inline.items():
        at = starts[file] + flat
        at = int(position[at]) if position is not None else int(at)
        inlined[tuple(int(i) for i in np.unravel_index(at, grid))] = data
    return ChunkManifest.from_arrays(
        paths=cast(Any, paths).reshape(grid),
        offsets=offsets.reshape(grid),
        lengths=lengths.reshape(grid),
        validate_paths=False,
        inlined=inlined or None,
    )


# -- ordering ---------------------------------------------------------------------------------
def order_files(values: list[np.ndarray], urls: list[str], concat_dim: str) -> list[int]:
    """Indices of the files sorted by their first concat value; refuses overlaps."""
    firsts = []
    for array, url in zip(values, urls, strict=True):
        if array.size == 0:
            raise CombineFailed(f"{url} has no steps along {concat_dim!r}.")
        if array.size > 1 and not bool(np.all(array[1:] > array[:-1])):
            raise CombineFailed(
                f"{url}: the {concat_dim!r} values are not strictly increasing within the file."
            )
        firsts.append(array[0])
    try:
        order = sorted(range(len(values)), key=lambda i: (firsts[i], urls[i]))
    except TypeError:  # e.g. cftime and numpy dates: the gate's calendar rule says more
        raise CombineFailed(
            f"The files' {concat_dim!r} values cannot be ordered together (different calendars "
            "or types).",
            remedy="Run `python -m devhost validate` on the source to find the odd file.",
        ) from None
    for a, b in pairwise(order):
        last_a = values[a][-1]
        first_b = values[b][0]
        if not last_a < first_b:
            raise CombineFailed(
                f"{urls[a]} and {urls[b]} overlap along {concat_dim!r}: the first ends at "
                f"{last_a}, the second starts at {first_b}.",
                remedy="Remove the duplicate file (or the overlapping steps) from the source.",
            )
    return order


def order_joined(
    values: np.ndarray, sizes: np.ndarray, urls: list[str], concat_dim: str
) -> np.ndarray:
    """order_files over the files' values joined in one array (one numpy dtype), vectorised."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("int64")
    ends = starts + sizes
    rising = np.ones(len(values), dtype=bool)
    rising[1:] = values[1:] > values[:-1]
    rising[starts[sizes > 0]] = True
    bad = set(np.flatnonzero(sizes == 0)[:1].tolist())
    falls = np.flatnonzero(~rising)
    if falls.size:
        bad.add(int(np.searchsorted(ends, falls[0], side="right")))
    firsts = values[np.minimum(starts, len(values) - 1)] if len(values) else values
    if bad or (firsts != firsts).any():  # also NaN/NaT: the file-by-file rules decide
        return np.asarray(order_files(np.split(values, starts[1:]), urls, concat_dim))
    by_url = np.argsort(np.asarray(urls), kind="stable")
    rank = np.empty_like(by_url)
    rank[by_url] = np.arange(len(by_url))
    order = np.lexsort((rank, firsts))
    lasts = values[ends - 1]
    ok = lasts[order[:-1]] < firsts[order[1:]]
    if not ok.all():
        k = int(np.argmin(ok))
        a, b = int(order[k]), int(order[k + 1])
        raise CombineFailed(
            f"{urls[a]} and {urls[b]} overlap along {concat_dim!r}: the first ends at "
            f"{lasts[a]}, the second starts at {firsts[b]}.",
            remedy="Remove the duplicate file (or the overlapping steps) from the source.",
        )
    return order


def ordered(columns: Columns) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Per file, its decoded coordinate and bounds; and the files' order (checked)."""
    dim = columns.concat_dim
    per_file, joinable = decoded_values(columns)
    steps = np.asarray(columns.steps, dtype="int64")
    if joinable:
        joined = np.concatenate([f[dim] for f in per_file])
        return per_file, order_joined(joined, steps, columns.urls, dim)
    return per_file, np.asarray(order_files([f[dim] for f in per_file], columns.urls, dim))


def merge(columns: Columns, open_file: Callable[[int], xr.Dataset]) -> xr.Dataset:
    """The combined dataset: ``open_file(i)`` opens file i as combine's old path does (its
    variables without the concat dimension, attributes and encodings are kept, as
    xr.concat with compat="override" keeps the first file's)."""
    dim = columns.concat_dim
    per_file, order = ordered(columns)
    steps = np.asarray(columns.steps, dtype="int64")
    template = open_file(int(order[0]))
    names = [n for n, v in template.variables.items() if dim in v.dims]
    new: dict[Hashable, xr.Variable] = {}
    for name in names:
        variable = template.variables[name]
        if name in per_file[0]:
            parts = [per_file[i][str(name)] for i in order]
            dtypes = {p.dtype for p in parts}
            if len(dtypes) != 1:
                raise Irregular(f"{name} decodes to different dtypes")
            data: Any = np.concatenate(parts)
        else:
            column = columns.virtual.get(str(name))
            if column is None or not isinstance(variable.data, ManifestArray):
                raise Irregular(f"{name} is not a virtual variable in every file")
            chunk = variable.data.metadata.chunk_grid.chunk_shape[0]  # type: ignore[union-attr]
            try:
                check_no_partial_chunks_on_concat_axis(
                    [(int(steps[i]),) for i in order], [(chunk,)] * len(order), 0
                )
            except ValueError as exc:
                raise concat_failed(len(order), dim, exc) from exc
            manifest = merged_manifest(column, columns.urls, order)
            shape = [int(steps.sum()), *variable.shape[1:]]
            metadata = copy_and_replace_metadata(variable.data.metadata, new_shape=shape)
            data = ManifestArray(metadata=metadata, chunkmanifest=manifest)
        kind = xr.IndexVariable if name == dim else xr.Variable
        new[name] = kind(variable.dims, data, dict(variable.attrs), dict(variable.encoding))
    coords = [n for n in names if n in template.coords]
    merged = template.drop_vars(names)
    merged = merged.assign_coords({n: new[n] for n in coords})
    merged = merged.assign({n: new[n] for n in names if n not in coords})
    return merged
