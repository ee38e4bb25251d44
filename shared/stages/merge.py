"""Combine by merging chunk manifests: the per-file references are joined column by column.

Each file's references document is read once into compact columns (``Columns``): per
variable along the concat dimension, the chunks' offsets and lengths in one flat array, each
file's stored chunk shape and its chunks along that dimension, explicit paths and inlined
chunks where a file has them; and the concat coordinate and its CF bounds as raw values,
grouped by the attributes they decode with. ``merge`` then decodes each group once (decoding
is element by element, so one call over many files gives what one call per file gives),
orders the files, checks them, asks shared.stages.grid for each variable's chunk grid (the
files' own chunks, or sub-chunks cut from plain bytes: shared.stages.chunks) and gathers
every variable's chunks into one ManifestArray in that order.

This is combine's one path. It covers every collection the gate lets through: files whose
chunk shapes differ (plain bytes are cut into one grid; compressed chunks that do not form
one are stopped at the gate), codecs that differ only where decoding does not look (a
compression level), a concat dimension in any position of a variable's dimensions, and
variables never written. What it cannot join raises ``Irregular`` naming the file, the
variable and what differs; the gate has a rule for each such case, so reaching it is a gap
in the gate (tests/test_gate_predicts_combine.py holds the gate to that).

Columns of a batch of files can be written to the work area (``to_bytes``) and joined
later (``Columns.join``): the combine of a large collection is spread over activities.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import warnings
from array import array as int_array
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, cast

import numpy as np
import xarray as xr
from virtualizarr.manifests import ManifestArray
from virtualizarr.manifests.utils import copy_and_replace_metadata
from xarray.backends.zarr import FillValueCoder
from zarr.core.array import create_codec_pipeline
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync

from shared.model.errors import CombineFailed
from shared.model.telemetry import emit
from shared.stages.chunks import (
    Chunks,
    Virtual,
    cut,
    cut_array,
    empty_manifest,
    flat,
    is_plain,
    itemsize,
    native_grid,
    segments,
    starts_of,
)
from shared.stages.grid import Grid, NoGrid, Stored, plan

log = logging.getLogger(__name__)


class Irregular(CombineFailed):
    """Files the merge cannot join into one store. The gate stops every such collection (a
    rule in shared.stages.gate for each reason), so this names a gap in the gate."""

    default_remedy = (
        "Nothing was written. Run `python -m devhost validate` on the source files to see them "
        "side by side, fix or remove the named file, and report this to the maintainers: the "
        "gate should have stopped the collection."
    )


def no_coordinate(url: str, concat_dim: str, dims: Iterable[Any]) -> CombineFailed:
    names = sorted({str(d) for d in dims if d is not None})
    return CombineFailed(
        f"{url} has no coordinate variable {concat_dim!r} to concatenate along "
        f"(its dimensions are {', '.join(names) or 'none'}).",
        remedy="Give the right concat_dim in the request, or fix the file.",
    )


def _bounds_names(arrays: Mapping[str, Any], concat_dim: str) -> list[str]:
    """As references.concat_bounds, on a document's arrays."""
    attributes = arrays[concat_dim]["zarr"].get("attributes") or {}
    names = [attributes.get(key) for key in ("bounds", "climatology")]
    return [n for n in names if isinstance(n, str) and n in arrays]


# Codec settings that only the writer uses: a chunk decodes the same whatever they were
# (the compression level; Blosc keeps its compressor and shuffle in each chunk's header).
_WRITER_ONLY = {"numcodecs.zlib": {"level"}, "numcodecs.gzip": {"level"},
                "numcodecs.zstd": {"level", "checksum"}, "numcodecs.blosc": {"clevel", "cname",
                "shuffle", "blocksize"}}  # fmt: skip


def decoding_codecs(codecs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The codecs as decoding sees them: the gate compares the filters' names, so files
    whose compression differs only in level are joined, with the first file's codecs."""
    out = []
    for codec in codecs:
        ignored = _WRITER_ONLY.get(str(codec.get("name")), set())
        configuration = {k: v for k, v in (codec.get("configuration") or {}).items()
                         if k not in ignored}  # fmt: skip
        out.append({"name": codec.get("name"), "configuration": configuration})
    return out


def _same(zarr: Mapping[str, Any], axis: int) -> tuple[Any, ...]:
    """What must be equal in every file for a variable's chunks to be joined (the chunk
    shape may differ: shared.stages.grid decides the store's)."""
    shape = list(zarr["shape"])
    del shape[axis]
    return (
        zarr["data_type"],
        decoding_codecs(zarr["codecs"]),
        zarr.get("dimension_names"),
        shape,
        zarr.get("storage_transformers") or [],
    )


_DECODERS: dict[str, tuple[np.dtype[Any], Any, ArraySpec | None]] = {}


def _decoder(zarr: Mapping[str, Any], where: str) -> tuple[np.dtype[Any], Any, ArraySpec | None]:
    """(native dtype, byte-order dtype or a codec pipeline, chunk spec) for raw chunks."""
    key = json.dumps([zarr["data_type"], zarr["codecs"], zarr["chunk_grid"], zarr["fill_value"]])
    found = _DECODERS.get(key)
    if found is None:
        metadata = ArrayV3Metadata.from_dict({**zarr, "attributes": {}})
        native = metadata.dtype.to_native_dtype()
        if native.kind not in "biufcmM":
            raise Irregular(f"{where} has the dtype {native}, which is no number or time.")
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


def _dims(entry: Mapping[str, Any]) -> list[str]:
    return list(entry["zarr"].get("dimension_names") or [])


def raw_values(entry: Mapping[str, Any], where: str) -> np.ndarray:
    """The stored values of an array whose every chunk is inlined, undecoded (no CF)."""
    zarr = entry["zarr"]
    shape = tuple(zarr["shape"])
    grid = tuple(entry["grid"])
    chunks = tuple(zarr["chunk_grid"]["configuration"]["chunk_shape"])
    if len(grid) not in (1, 2) or (len(grid) == 2 and grid[1] != 1):
        raise Irregular(f"{where} is chunked along its second dimension.")
    keys = [str(i) if len(grid) == 1 else f"{i}.0" for i in range(grid[0])]
    inline = entry["inline"]
    if any(k not in inline for k in keys):
        raise Irregular(f"{where} has chunks that were not read with the references "
                        "(stored in another file, or never written).")  # fmt: skip
    native, how, spec = _decoder(zarr, where)
    data = [base64.b64decode(inline[k]) for k in keys]
    if spec is None:
        blocks = [np.frombuffer(b, dtype=how).reshape(chunks) for b in data]
    else:
        decoded = sync(how.decode([(cpu.Buffer.from_bytes(b), spec) for b in data]))
        blocks = [d.as_numpy_array().reshape(chunks) for d in decoded]
    values = np.concatenate(blocks) if len(blocks) != 1 else blocks[0]
    return np.ascontiguousarray(values[tuple(slice(0, n) for n in shape)], dtype=native)


@dataclass
class Decoding:
    """Files whose coordinate (and bounds) decode with the same metadata."""

    coordinate: dict[str, Any]  # zarr metadata without shape and grid
    bounds: dict[str, dict[str, Any]]
    files: list[int] = field(default_factory=list)
    raw: dict[str, list[np.ndarray]] = field(default_factory=dict)  # pieces, files in order
    sizes: dict[str, list[int]] = field(default_factory=dict)  # per file, rows of each name


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
            theirs, ours = set(names), set(self.names)
            raise Irregular(
                f"{url} has the variables {sorted(theirs - ours) or 'none'} that the first "
                f"file lacks and lacks {sorted(ours - theirs) or 'none'} (gate rule "
                "variables_differ)."
            )
        index = len(self.urls)
        steps = int(coordinate["zarr"]["shape"][0])
        loaded = {dim: coordinate, **{b: arrays[b] for b in bounds}}
        for name, entry in loaded.items():
            if (entry["zarr"].get("dimension_names") or [None])[0] != dim:
                raise Irregular(f"{url}: {name} is not along {dim} first.")
        described = _decode_key(coordinate["zarr"])
        bounds_described = {b: _decode_key(arrays[b]["zarr"]) for b in bounds}
        key = _decoding_key(described, bounds_described)
        decoding = self.decodings.get(key)
        if decoding is None:
            decoding = self.decodings[key] = Decoding(described, bounds_described)
        for name, entry in loaded.items():
            values = raw_values(entry, f"{url}: {name}")
            decoding.raw.setdefault(name, []).append(values)
            decoding.sizes.setdefault(name, []).append(len(values))
        decoding.files.append(index)
        along = [n for n in names if n not in loaded and dim in _dims(arrays[n])]
        if index and sorted(along) != sorted(self.virtual):
            raise Irregular(
                f"{url}: the variables along {dim} are {sorted(along)}, in the first file "
                f"{sorted(self.virtual)} (gate rule dimensions_differ)."
            )
        for name in along:
            entry = arrays[name]
            zarr = entry["zarr"]
            axis = _dims(entry).index(dim)
            if zarr["shape"][axis] != steps:
                raise Irregular(
                    f"{url}: {name} has {zarr['shape'][axis]} steps along {dim} but the "
                    f"coordinate {steps} (gate rule dimensions_differ)."
                )
            column = self.virtual.get(name)
            if column is None:
                column = self.virtual[name] = Virtual(zarr, _same(zarr, axis), axis)
            elif _same(zarr, axis) != column.same:
                raise Irregular(
                    f"{url}: {name}'s dtype, codecs, dimensions or shape along the other "
                    "dimensions differ from the first file's (gate rules dtype_differs, "
                    "codecs_differ, dimensions_differ)."
                )
            self._chunks(column, index, entry, url)
        self.urls.append(url)
        self.steps.append(steps)

    @staticmethod
    def _chunks(column: Virtual, index: int, entry: Mapping[str, Any], url: str) -> None:
        zarr = entry["zarr"]
        stored = tuple(int(c) for c in zarr["chunk_grid"]["configuration"]["chunk_shape"])
        grid = native_grid(zarr["shape"], stored)
        offsets = np.asarray(entry["offsets"], dtype="uint64")
        lengths = np.asarray(entry["lengths"], dtype="uint64")
        if tuple(entry["grid"]) != grid:
            # VirtualiZarr gives a variable never written a grid as large as its shape, all
            # missing: the same, on the grid its chunk shape gives (it reads as fill)
            if lengths.any():
                raise Irregular(f"{url}: the chunk grid of {zarr.get('dimension_names')} "
                                "does not match its shape and chunks.")  # fmt: skip
            offsets = lengths = np.zeros(int(np.prod(grid, dtype="int64")), dtype="uint64")
        column.kind.append(column.kind_of(stored))
        column.counts.append(grid[column.axis])
        column.offsets.append(offsets)
        column.lengths.append(lengths)
        if entry["paths"] is not None:
            column.paths[index] = list(entry["paths"])
        for key, value in entry["inline"].items():
            flat_index = int(np.ravel_multi_index(tuple(int(i) for i in key.split(".")), grid))
            column.inline[(index, flat_index)] = base64.b64decode(value)

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
                raise Irregular(
                    f"the variables of the batch from {part.urls[0]} differ from the first "
                    "batch's (gate rule variables_differ)."
                )
            base = len(out.urls)
            out.templates.update({base + i: d for i, d in part.templates.items()})
            out.urls += part.urls
            out.steps += part.steps
            for name, column in part.virtual.items():
                target = out.virtual.get(name)
                if target is None:
                    target = out.virtual[name] = Virtual(column.zarr, column.same, column.axis)
                elif column.same != target.same:
                    raise Irregular(
                        f"{name}'s dtype, codecs, dimensions or shape along the other "
                        f"dimensions differ between the batches from {out.urls[0]} and "
                        f"{part.urls[0]}."
                    )
                renumber = np.asarray([target.kind_of(k) for k in column.kinds], dtype="int32")
                target.kind.frombytes(renumber[np.asarray(column.kind, dtype="int64")].tobytes())
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
                    target_d.sizes.setdefault(name, []).extend(decoding.sizes[name])
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
                "axis": column.axis,
                "kinds": [list(k) for k in column.kinds],
                "counts": column.counts,
                "paths": {str(k): v for k, v in column.paths.items()},
                "inline": [
                    [f, c, base64.b64encode(d).decode()] for (f, c), d in column.inline.items()
                ],
            }
            arrays[f"k{i}"] = np.asarray(column.kind, dtype="int32")
            arrays[f"o{i}"] = flat(column.offsets)
            arrays[f"l{i}"] = flat(column.lengths)
        for j, decoding in enumerate(self.decodings.values()):
            entry: dict[str, Any] = {
                "coordinate": decoding.coordinate,
                "bounds": decoding.bounds,
                "files": decoding.files,
                "raw": {},
            }
            for k, (name, raw) in enumerate(decoding.raw.items()):
                arrays[f"r{j}_{k}"] = np.concatenate(raw)
                arrays[f"n{j}_{k}"] = np.asarray(decoding.sizes[name], dtype="int64")
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
            out.virtual[name] = Virtual(  # one flat piece: not an array per file (memory)
                entry["zarr"],
                _same(entry["zarr"], entry["axis"]),
                entry["axis"],
                [tuple(k) for k in entry["kinds"]],
                int_array("i", stored[f"k{i}"].astype("int32").tobytes()),
                entry["counts"],
                [stored[f"o{i}"]],
                [stored[f"l{i}"]],
                {int(k): v for k, v in entry["paths"].items()},
                {(f, c): base64.b64decode(d) for f, c, d in entry["inline"]},
            )
        for j, entry in enumerate(header["decodings"]):
            decoding = Decoding(entry["coordinate"], entry["bounds"], entry["files"])
            for name, k in entry["raw"].items():
                decoding.raw[name] = [stored[f"r{j}_{k}"]]
                decoding.sizes[name] = stored[f"n{j}_{k}"].tolist()
            out.decodings[_decoding_key(decoding.coordinate, decoding.bounds)] = decoding
        return out


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


# How the times are decoded: as xarray does by default (numpy datetimes in nanoseconds where
# the dates fit, else cftime dates), in microseconds (numpy dates from year -290,000 to
# 294,000, cftime's own resolution; the standard calendar before 1582 stays cftime), or to
# cftime dates throughout (decoded_values says when).
TIMES: dict[str, Any] = {
    "default": True,
    "us": xr.coders.CFDatetimeCoder(time_unit="us"),
    "cftime": xr.coders.CFDatetimeCoder(use_cftime=True),
}


def _decode(
    decoding: Decoding, concat_dim: str, raw: dict[str, np.ndarray], times: str = "default"
) -> dict[str, np.ndarray]:
    metas = {concat_dim: decoding.coordinate, **decoding.bounds}
    variables = {
        name: xr.Variable(
            tuple(metas[name].get("dimension_names") or ()), values, _attributes(metas[name])
        )
        for name, values in raw.items()
    }
    with warnings.catch_warnings():  # "dates out of range": what decoded_values is for
        warnings.simplefilter("ignore", xr.SerializationWarning)
        decoded = xr.decode_cf(xr.Dataset(variables), decode_times=TIMES[times])
    return {name: decoded.variables[name].values for name in raw}


@dataclass
class Decoded:
    """The decoded concat coordinate and bounds of every file: ``joined`` holds each name's
    values of all files in one array (files in index order, ``sizes`` rows each) when every
    file decodes to one numpy dtype; else ``per_file`` holds each file's own arrays."""

    names: list[str]
    joined: dict[str, np.ndarray] | None = None
    sizes: dict[str, np.ndarray] = field(default_factory=dict)
    per_file: list[dict[str, np.ndarray]] | None = None

    def in_order(self, name: str, order: np.ndarray) -> np.ndarray:
        """The name's values of every file, files in ``order``."""
        if self.joined is None:
            assert self.per_file is not None
            parts = [self.per_file[i][name] for i in order]
            if len({p.dtype for p in parts}) != 1:
                raise Irregular(f"{name} decodes to different dtypes")
            return np.concatenate(parts)
        values = self.joined[name]
        if np.array_equal(order, np.arange(len(order))):
            return values
        sizes = self.sizes[name]
        return values[segments(starts_of(sizes)[order], sizes[order])]


# Calendars that numpy datetimes can hold (xarray decodes the others to cftime dates).
NUMPY_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}


def _calendar(decoding: Decoding) -> str:
    attributes = decoding.coordinate.get("attributes") or {}
    return str(attributes.get("calendar") or "standard").lower()


def _before_reform(decoding: Decoding, values: dict[str, np.ndarray]) -> bool:
    """Numpy dates before 1582-10-15 in the standard calendar: xarray's microsecond decode
    reads them as proleptic Gregorian when the units' reference date is later, where CF's
    standard calendar is Julian before the reform (cftime's dates, ten days earlier)."""
    if _calendar(decoding) not in ("standard", "gregorian"):
        return False
    for array in values.values():
        if array.dtype.kind == "M":
            known = array[~np.isnat(array)]
            if known.size and known.min() < np.datetime64("1582-10-15"):
                return True
    return False


def decoded_values(columns: Columns, times: str = "default") -> tuple[Decoded, bool]:
    """Every file's decoded coordinate and bounds; and whether all share one dtype.

    The files are decoded in groups (one call per way of encoding them), as xarray decodes
    one array: numpy datetimes where every date of the group fits, else cftime dates. When a
    group of a numpy calendar has dates beyond numpy's nanoseconds (after 2262: a long
    standard-calendar run), every group is decoded again in microseconds (numpy dates that
    reach far beyond: ordered, joined and encoded as fast as any; cftime's own resolution),
    or, when that leaves numpy and cftime dates mixed or puts a date of the standard calendar
    before its 1582 reform (Julian, which numpy cannot hold), to cftime dates throughout.
    The store's coordinate is one array, which xarray decodes to cftime dates as a whole;
    opening each file alone gives numpy datetimes where its own dates fit: verify compares
    the two as the same instants."""
    dim = columns.concat_dim
    count = len(columns.urls)
    groups: list[tuple[Decoding, dict[str, np.ndarray]]] = []
    for decoding in columns.decodings.values():
        joined = {name: np.concatenate(raw) for name, raw in decoding.raw.items()}
        groups.append((decoding, _decode(decoding, dim, joined, times)))
    if times == "default" and any(
        v[dim].dtype == object and _calendar(d) in NUMPY_CALENDARS for d, v in groups
    ):
        return decoded_values(columns, "us")  # beyond numpy's nanoseconds (2262)
    if times == "us" and (
        {"M", "O"} <= {v[dim].dtype.kind for _, v in groups}
        or any(_before_reform(d, v) for d, v in groups)
    ):
        return decoded_values(columns, "cftime")
    names = list(groups[0][1]) if groups else [dim]
    dtypes = {name: {v[name].dtype for _, v in groups} for name in names}
    if any(len(d) != 1 or next(iter(d)).kind == "O" for d in dtypes.values()):
        return _per_file(columns, groups, count)
    decoded = Decoded(names, {})
    assert decoded.joined is not None
    for name in names:
        sizes = np.zeros(count, dtype="int64")
        for decoding, _ in groups:
            sizes[decoding.files] = decoding.sizes[name]
        decoded.sizes[name] = sizes
        if len(groups) == 1 and np.array_equal(groups[0][0].files, np.arange(count)):
            decoded.joined[name] = groups[0][1][name]
            continue
        first = groups[0][1][name]
        out = np.empty((int(sizes.sum()), *first.shape[1:]), dtype=first.dtype)
        starts = starts_of(sizes)
        for decoding, values in groups:
            files = np.asarray(decoding.files, dtype="int64")
            out[segments(starts[files], sizes[files])] = values[name]
        decoded.joined[name] = out
    return decoded, True


def _per_file(
    columns: Columns, groups: list[tuple[Decoding, dict[str, np.ndarray]]], count: int
) -> tuple[Decoded, bool]:
    """decoded_values, file by file: groups that decode to different dtypes, or objects."""
    per_file: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for decoding, values in groups:
        for name, array in values.items():
            splits = np.cumsum(decoding.sizes[name])[:-1]
            for file, part in zip(decoding.files, np.split(array, splits), strict=True):
                per_file[file][name] = part
    dtypes = {v.dtype for f in per_file for v in f.values() if v.ndim == 1}
    names = list(per_file[0]) if per_file else [columns.concat_dim]
    return Decoded(names, per_file=per_file), len(dtypes) == 1 and next(iter(dtypes)).kind != "O"


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
    order = np.argsort(firsts, kind="stable")
    if bool(np.any(firsts[order][1:] == firsts[order][:-1])):  # ties: by URL, as order_files
        # (not a fixed-width array of every URL: 320 MB at 1,000,000 files)
        by_url = np.argsort(np.asarray(urls, dtype=np.dtypes.StringDType()), kind="stable")
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


def ordered(columns: Columns) -> tuple[Decoded, np.ndarray]:
    """Every file's decoded coordinate and bounds; and the files' order (checked)."""
    dim = columns.concat_dim
    decoded, joinable = decoded_values(columns)
    steps = np.asarray(columns.steps, dtype="int64")
    if decoded.joined is not None:
        return decoded, order_joined(decoded.joined[dim], steps, columns.urls, dim)
    assert decoded.per_file is not None
    values = [f[dim] for f in decoded.per_file]
    if joinable:
        return decoded, order_joined(np.concatenate(values), steps, columns.urls, dim)
    return decoded, np.asarray(order_files(values, columns.urls, dim))


def store_grid(
    name: str, column: Virtual, steps: np.ndarray, order: np.ndarray, urls: list[str],
    max_bytes: int,
) -> Grid:  # fmt: skip
    """The variable's grid in the store (shared.stages.grid), from one file of each way of
    storing it (length and chunk shape) among all files but the last, and the last."""
    kinds = np.asarray(column.kind, dtype="int64")[order]
    pairs = steps[order][:-1] * len(column.kinds) + kinds[:-1]
    first = np.sort(np.unique(pairs, return_index=True)[1])
    picked = [*order[first].tolist(), int(order[-1])]
    files = [column.stored(urls[f], int(steps[f]), int(column.kind[f])) for f in picked]
    found = plan(files, column.axis, itemsize(column.zarr), max_bytes)
    if isinstance(found, NoGrid):
        dims = [str(d) for d in column.zarr.get("dimension_names") or ()]
        raise Irregular(f"{found.sentence(name, dims)} (gate rule {found.code})")
    if found.cut:
        _cut_record(name, found, files, column.axis)
    return found


def _cut_record(name: str, grid: Grid, files: list[Stored], axis: int | None) -> None:
    """One record per variable cut: what the files store, what the store gets."""
    emit(
        log,
        "variable cut into sub-chunks",
        stage="combine",
        variable=name,
        chunks=list(grid.chunks),
        stored=sorted({"x".join(map(str, f.chunks)) for f in files}),
        lengths=sorted({f.shape[axis] for f in files}) if axis is not None else [],
    )


def _one_copy(name: str, variable: xr.Variable, url: str, max_bytes: int) -> xr.Variable:
    """A variable without the concat dimension (the first file's): cut when it is plain and
    one of its chunks would pass ``max_bytes`` (shared.stages.grid)."""
    data = variable.data
    if not isinstance(data, ManifestArray) or not data.ndim or data.manifest._inlined:
        return variable
    metadata = data.metadata
    stored = Stored(url, tuple(data.shape), tuple(metadata.chunk_grid.chunk_shape),  # type: ignore[union-attr]
                    is_plain(cast(Any, metadata.to_dict()["codecs"])))  # fmt: skip
    grid = plan([stored], None, int(metadata.dtype.to_native_dtype().itemsize), max_bytes)
    if not isinstance(grid, Grid) or not grid.cut:
        return variable
    _cut_record(name, grid, [stored], None)
    return variable.copy(data=cast(Any, cut_array(data, grid.chunks, url)))


def merge(
    columns: Columns,
    open_file: Callable[[int], xr.Dataset],
    max_bytes: int,
    chunks: dict[str, Chunks] | None = None,
) -> xr.Dataset:
    """The combined dataset: ``open_file(i)`` opens file i as a virtual dataset (its
    variables without the concat dimension, attributes and encodings are kept, as
    xr.concat with compat="override" keeps the first file's). ``max_bytes``: the largest
    chunk of a plain variable (shared.stages.grid).

    With ``chunks``, the virtual variables' manifests are left empty and their chunks put
    there instead, to be written piece by piece (shared.stages.chunkrefs): a manifest of
    every chunk is what a million of them cannot afford."""
    dim = columns.concat_dim
    decoded, order = ordered(columns)
    steps = np.asarray(columns.steps, dtype="int64")
    template = open_file(int(order[0]))
    first_url = columns.urls[int(order[0])]
    names = [n for n, v in template.variables.items() if dim in v.dims]
    urls = np.asarray(columns.urls, dtype=object)
    new: dict[Hashable, xr.Variable] = {}
    for name in names:
        variable = template.variables[name]
        if name in decoded.names:
            data: Any = decoded.in_order(str(name), order)
        else:
            column = columns.virtual.get(str(name))
            if column is None or not isinstance(variable.data, ManifestArray):
                raise Irregular(f"{first_url}: {name} has no chunk references in every file.")
            grid = store_grid(str(name), column, steps, order, columns.urls, max_bytes)
            if grid.cut:
                column = cut(column, grid.chunks, steps, columns.urls)
            merged = Chunks.of(column, urls, order)
            if chunks is None:
                manifest = merged.manifest()
            else:
                chunks[str(name)] = merged
                manifest = empty_manifest(len(merged.grid))
            shape = list(variable.shape)
            shape[column.axis] = int(steps.sum())
            metadata = copy_and_replace_metadata(
                variable.data.metadata, new_shape=shape, new_chunks=list(grid.chunks)
            )
            data = ManifestArray(metadata=metadata, chunkmanifest=manifest)
        kind = xr.IndexVariable if name == dim else xr.Variable
        new[name] = kind(variable.dims, data, dict(variable.attrs), dict(variable.encoding))
    coords = [n for n in names if n in template.coords]
    merged_ds = template.drop_vars(names)
    for name, variable in list(merged_ds.variables.items()):
        copy = _one_copy(str(name), variable, first_url, max_bytes)
        if copy is not variable:
            new[name] = copy
            (coords if name in merged_ds.coords else names).append(name)
    merged_ds = merged_ds.assign_coords({n: new[n] for n in coords})
    merged_ds = merged_ds.assign({n: new[n] for n in names if n not in coords})
    return merged_ds
