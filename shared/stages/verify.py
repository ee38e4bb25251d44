"""Verify: reopen the combined store with xarray and compare it with the source files.

Nothing is registered unless this passes. Each source file is opened independently of the
reference machinery (h5netcdf over a ranged reader for HDF5, the netCDF-C library for
NetCDF3) with CF decoding on, exactly as a user would open it, and compared with the slice of
the store it should have become: same variables, dtypes, attributes and values (NaN equals
NaN), same decoded times.

Small collections (total size up to PIPELINE_VERIFY_FULL_MAX_BYTES) are compared in full.
Larger ones are compared on a deterministic sample: for every file, every variable along the
concat dimension is checked in PIPELINE_VERIFY_SAMPLE_CHUNKS chunks chosen by a hash of the
file URL and variable name, and variables without the concat dimension are checked in full for
the first and last file and one hashed file in between.

Before any value is compared, every source's ETag and size are checked against the manifest:
a file changed since the scan is ``source_changed`` (both ETags). Bytes that do not decode,
read from a file or where the store points (zlib errors, HDF5 "filter returned failure", a
truncated file), are ``corrupt_chunk`` naming the file, the variable and the chunk (found by
reading the region one chunk at a time), never retried; a file that changed meanwhile is
``source_changed`` again. The tile reader (consumer.tiles) explains its failed reads with the
same helpers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from shared.io.formats import sniff
from shared.io.memory import MemoryWatch
from shared.io.storage import ObjectInfo, Storage, _first_line, classify, storage_faults
from shared.io.stores import kerchunk_references, open_store
from shared.model.errors import CorruptChunk, PipelineError, StorageUnavailable, VerifyMismatch
from shared.model.layout import Layout
from shared.model.locations import Location, parse_location
from shared.model.request import KERCHUNK_FORMATS, StoreFormat
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.combine import source_root
from shared.stages.scan import ScanManifest, check_unchanged, ensure_unchanged, load_manifest

log = logging.getLogger(__name__)

MAX_REPORTED = 5
# When a variable is not chunked, a sample covers one step and at most this many elements
# along each other dimension.
UNCHUNKED_SAMPLE_EDGE = 512


@dataclass(frozen=True)
class VerifyResult:
    store_url: str
    mode: str  # "full" or "sample"
    files_checked: int
    variables_checked: int
    values_compared: int
    seconds: float
    dataset_id: str = ""
    manifest_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Mismatch:
    url: str
    variable: str
    what: str

    def sentence(self) -> str:
        return f"{self.url}, variable {self.variable!r}: {self.what}"


@contextmanager
def open_source(
    info: ObjectInfo, settings: Settings, storage: Storage, group: str | None = None
) -> Iterator[xr.Dataset]:
    """Open one source file (one group of it) with xarray, CF decoding on, without the
    reference machinery."""
    location = parse_location(info.url, settings, what="source file")
    head = storage.read_range(location, 0, min(info.size, 8))
    file_format = sniff(head)
    if file_format == "hdf5":
        target: Any = (
            location.path if location.is_local else storage.reader(location, size=info.size)
        )
        with xr.open_dataset(target, engine="h5netcdf", chunks=None, group=group) as ds:
            yield ds
        return
    import netCDF4

    if location.is_local:
        nc = netCDF4.Dataset(location.path, "r")
    else:
        nc = netCDF4.Dataset(location.name, "r", memory=storage.read(location))
    with xr.open_dataset(xr.backends.NetCDF4DataStore(nc), chunks=None) as ds:
        yield ds


def _digest_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\n".join(parts).encode()).digest()[:8], "big")


def _sample_regions(
    var: xr.DataArray, concat_dim: str, url: str, count: int
) -> list[dict[str, slice]]:
    """Deterministic chunk-aligned regions of a source variable to compare."""
    chunks = var.encoding.get("chunksizes") or var.encoding.get("chunks")
    if chunks is None or len(chunks) != var.ndim:
        chunks = tuple(
            1 if dim == concat_dim else min(size, UNCHUNKED_SAMPLE_EDGE)
            for dim, size in zip(var.dims, var.shape, strict=True)
        )
    grid = [int(np.ceil(size / c)) for size, c in zip(var.shape, chunks, strict=True)]
    total = int(np.prod(grid)) if grid else 1
    picks = {0, total - 1} if count >= 2 else set()
    seed = _digest_int(url, str(var.name))
    while len(picks) < min(count, total):
        picks.add(seed % total)
        seed = _digest_int(str(seed))
    regions = []
    for flat in sorted(picks)[: max(count, 1)]:
        index = np.unravel_index(flat, grid) if grid else ()
        regions.append(
            {
                str(dim): slice(int(i) * c, min((int(i) + 1) * c, size))
                for dim, i, c, size in zip(var.dims, index, chunks, var.shape, strict=True)
            }
        )
    return regions


def _compare(expected: xr.Variable, found: xr.Variable) -> str | None:
    """None if identical (dims, dtype, attrs, values with NaN == NaN), else why not."""
    if expected.dims != found.dims:
        return f"dimensions {found.dims} in the store, {expected.dims} in the file"
    if expected.dtype != found.dtype:
        return f"dtype {found.dtype} in the store, {expected.dtype} in the file"
    if expected.shape != found.shape:
        return f"shape {found.shape} in the store, {expected.shape} in the file"
    if not _attrs_equal(expected.attrs, found.attrs):
        differing = sorted(
            k
            for k in set(expected.attrs) | set(found.attrs)
            if not _value_equal(expected.attrs.get(k), found.attrs.get(k))
        )
        return "attributes differ: " + ", ".join(
            f"{k}={found.attrs.get(k)!r} in the store, {expected.attrs.get(k)!r} in the file"
            for k in differing[:3]
        )
    a, b = np.asarray(expected.values), np.asarray(found.values)
    equal = a == b
    if a.dtype.kind in "fc" or a.dtype.kind == "M":
        equal |= _isnan(a) & _isnan(b)
    if bool(np.all(equal)):
        return None
    where = tuple(int(i) for i in np.argwhere(~np.asarray(equal))[0])
    count = int(np.size(equal) - np.count_nonzero(equal))
    return (
        f"{count} of {np.size(equal)} values differ; first at index {where}: "
        f"{_show(b[where])} in the store, {_show(a[where])} in the file"
    )


def _load(variable: xr.Variable, region: Mapping[str, slice]) -> xr.Variable:
    """The values of ``region`` of a lazily opened variable, read now (the variable itself
    keeps no data)."""
    part = variable.isel(dict(region)) if region else variable.copy(deep=False)
    return part.load()


def _in_store(
    region: Mapping[str, slice], window: Mapping[str, slice], stored: xr.Variable
) -> dict[str, slice]:
    """A region of one file's variable, as a region of the store's variable: the file's
    steps are ``window`` of the store's."""
    placed = dict(window)
    for dim, part in region.items():
        if dim in window:
            offset = window[dim].start
            start, stop, _ = part.indices(window[dim].stop - offset)
            placed[dim] = slice(offset + start, offset + stop)
        else:
            placed[dim] = part
    return {d: r for d, r in placed.items() if d in stored.dims}


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _isnan(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "M":
        return np.isnat(values)
    return np.isnan(values)


def _attrs_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(_value_equal(a[k], b[k]) for k in a)


def _value_equal(x: Any, y: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def _static_files_to_check(files: tuple[ObjectInfo, ...], mode: str) -> set[str]:
    if mode == "full" or len(files) <= 3:
        return {f.url for f in files}
    middle = files[1 + _digest_int(*(f.url for f in files)) % (len(files) - 2)]
    return {files[0].url, files[-1].url, middle.url}


# -- bytes that do not decode ----------------------------------------------------------------
# What the libraries say when bytes they were given do not decode, or a file is shorter than
# its own header says: a damaged file, or references pointing at bytes a file no longer holds.
# Never a storage failure (a timeout, throttling, a dropped connection): those are retried.
DECODE_WORDS = (
    "filter returned failure",  # HDF5: deflate, shuffle or fletcher32 failed on a chunk
    "truncated file",  # HDF5: the file ends before the end its superblock records
    "can't read data",  # HDF5: a dataset's chunk index or data cannot be read
    "can't synchronously read data",
    "wrong b-tree signature",
    "bad object header",
    "incorrect metadata checksum",
    "netcdf: hdf error",  # the netCDF-C library's words for the same
    "netcdf: filter error",
    "decompress",  # zlib, blosc, zstd, lz4 (numcodecs)
    "checksum",  # fletcher32, crc32c (numcodecs); Icechunk's "checksum of the object ..."
    "data corruption",
    "not enough data",  # Icechunk: a virtual chunk ends after the end of its file
)
# Icechunk refuses a virtual chunk whose file's ETag (or local modification time) changed.
ICECHUNK_CHANGED = re.compile(r"virtual chunk has changed \(([^)\s]+)\)")
REPLACED_REMEDY = (
    "Nothing was published. If the file's new content is right, submit the run again with "
    '"options": {"full": true}: its references are then made from the file as it is now. '
    "Otherwise put the original file back."
)


def decode_failure(exc: BaseException) -> str | None:
    """The library's words when ``exc`` says that bytes read did not decode (zlib errors,
    HDF5 "filter returned failure", a truncated file, Icechunk's "not enough data" or changed
    checksum), else None. An error caused by a storage failure (a PipelineError such as
    StorageUnavailable, a timeout or dropped connection, an obstore error) is never one."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 16 and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for error in chain:
        if isinstance(error, PipelineError | ConnectionError | TimeoutError):
            return None
        if type(error).__module__.startswith("obstore"):
            return None
    for error in chain:
        words = _first_line(error)
        if isinstance(error, zlib.error):
            return words
        library = type(error) in (OSError, RuntimeError) or type(error).__module__.startswith(
            "icechunk"
        )
        if library and any(w in str(error).lower() for w in DECODE_WORDS):
            return words
    return None


def changed_in_icechunk(words: str) -> str | None:
    """The file Icechunk names when it refuses a chunk because its file changed."""
    found = ICECHUNK_CHANGED.search(words)
    return found.group(1) if found else None


@dataclass(frozen=True)
class BadChunk:
    """One chunk of a variable that does not decode."""

    index: tuple[int, ...]  # its position in the variable's chunk grid
    region: dict[str, slice]  # the elements it holds
    error: str  # the library's words

    def where(self) -> str:
        if not self.index:
            return "its only chunk"
        elements = ", ".join(f"{d} {s.start}:{s.stop}" for d, s in self.region.items())
        return f"chunk ({', '.join(map(str, self.index))}) ({elements})"

    def context(self) -> dict[str, Any]:
        return {
            "chunk": list(self.index),
            "region": {d: [s.start, s.stop] for d, s in self.region.items()},
        }


def chunk_shape(variable: xr.Variable) -> tuple[int, ...]:
    """A variable's chunk shape as its file or store records it (one chunk if contiguous)."""
    chunks = variable.encoding.get("chunksizes") or variable.encoding.get("chunks")
    if chunks is None or len(chunks) != variable.ndim:
        return tuple(max(int(n), 1) for n in variable.shape)
    return tuple(max(int(c), 1) for c in chunks)


def first_bad_chunk(
    variable: xr.Variable,
    region: Mapping[str, slice] | None = None,
    limit: int | None = None,
) -> BadChunk | None:
    """The first chunk of ``variable`` (within ``region``) whose values do not decode, read one
    chunk at a time; None if none of them (none of the first ``limit``) fails. Any other
    error is raised."""
    region = region or {}
    bounds = []
    for dim, size, edge in zip(variable.dims, variable.shape, chunk_shape(variable), strict=True):
        start, stop, _ = region.get(str(dim), slice(None)).indices(int(size))
        bounds.append((str(dim), start, stop, edge))
    grid = [range(a // c, (b - 1) // c + 1) if b > a else range(0) for _, a, b, c in bounds]
    for index in itertools.islice(itertools.product(*grid), limit):
        part = {
            dim: slice(max(start, i * edge), min(stop, (i + 1) * edge))
            for (dim, start, stop, edge), i in zip(bounds, index, strict=True)
        }
        try:
            np.asarray(variable.isel(part).values)
        except Exception as exc:
            words = decode_failure(exc)
            if words is None:
                raise
            return BadChunk(tuple(int(i) for i in index), part, words)
    return None


@dataclass(frozen=True)
class ChunkReference:
    """Where a kerchunk store's chunk lives: a byte range of a source file."""

    key: str
    url: str
    offset: int
    length: int

    def sentence(self) -> str:
        return f"the {self.length} bytes at offset {self.offset} of {self.url}"


def chunk_reference(
    store: Location,
    store_format: StoreFormat,
    name: str,
    index: tuple[int, ...],
    settings: Settings,
) -> ChunkReference | None:
    """The file and byte range a kerchunk store's chunk refers to; None for Icechunk (its
    references are not readable from Python), inline chunks, or references that cannot be
    read (this only ever explains a failure: it must not hide it)."""
    if store_format not in KERCHUNK_FORMATS:
        return None
    try:
        refs: Any = kerchunk_references(store, settings)
        if isinstance(refs, dict):
            refs = refs.get("refs", refs)
        meta = refs[f"{name}/.zarray"]
        meta = json.loads(meta) if isinstance(meta, str | bytes) else dict(meta)
        separator = meta.get("dimension_separator") or "."
        key = f"{name}/" + (separator.join(str(i) for i in index) if index else "0")
        ref = refs[key]
        if not isinstance(ref, list | tuple) or len(ref) != 3:
            return None
        url = parse_location(str(ref[0]), settings, what="source file").url
        return ChunkReference(key, url, int(ref[1]), int(ref[2]))
    except Exception:
        log.debug("no reference found for %s chunk %s", name, index, exc_info=True)
        return None


def store_chunk_key(store_format: StoreFormat, name: str, index: tuple[int, ...]) -> str:
    """The chunk's key in the store (Zarr v2 for kerchunk, v3 for Icechunk)."""
    if store_format == "icechunk":
        return f"{name}/c/" + "/".join(str(i) for i in index) if index else f"{name}/c"
    return f"{name}/" + (".".join(str(i) for i in index) if index else "0")


def _still_as_scanned(
    url: str, manifest: ScanManifest, settings: Settings, storage: Storage
) -> None:
    """Raise SourceChanged (both ETags) if ``url``, a file of the manifest, changed since the
    scan: then bytes that do not decode are the change, not damage."""
    for info in manifest.files:
        if info.url == url:
            current = storage.head(parse_location(url, settings, what="source file"))
            ensure_unchanged(info, current, "it was scanned")
            return


def _not_reproduced(what: str, words: str) -> StorageUnavailable:
    """Bytes that did not decode once and did when read again: a fault in transit (a body cut
    short, say), not in the file. Retried like any storage failure."""
    return StorageUnavailable(
        f"{what} did not decode ({words}), then did when read again: storage delivered wrong "
        "bytes once."
    )


def _region_words(region: Mapping[str, slice]) -> str:
    return ", ".join(f"{d} {s.start}:{s.stop}" for d, s in region.items())


@contextmanager
def _source_opens(
    info: ObjectInfo, manifest: ScanManifest, settings: Settings, storage: Storage
) -> Iterator[None]:
    """Opening a source file (its header and coordinates): bytes that do not decode, again
    when it is opened a second time, are CorruptChunk naming the file (SourceChanged if it
    changed meanwhile)."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        words = decode_failure(exc)
        if words is None:
            raise
        _still_as_scanned(info.url, manifest, settings, storage)
        try:
            with open_source(info, settings, storage, manifest.group):
                pass
        except Exception as again:
            if decode_failure(again) is None:
                raise
            raise CorruptChunk(
                f"{info.url} cannot be opened: {words}. Its ETag and size are those scanned, so "
                "it was damaged in place (or replaced keeping its size and modification time).",
                url=info.url,
                side="source file",
                error=words,
            ) from exc
        raise _not_reproduced(f"Opening {info.url}", words) from exc


@contextmanager
def _source_decodes(
    info: ObjectInfo,
    manifest: ScanManifest,
    settings: Settings,
    storage: Storage,
    name: str,
    variable: xr.Variable,
    region: Mapping[str, slice],
) -> Iterator[None]:
    """Reading one variable's region of a source file: bytes that do not decode are
    CorruptChunk naming the file, the variable and the chunk (found by reading the region one
    chunk at a time); SourceChanged if the file changed meanwhile."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        words = decode_failure(exc)
        if words is None:
            raise
        _still_as_scanned(info.url, manifest, settings, storage)
        bad = first_bad_chunk(variable, region, limit=None)
        if bad is None:
            where = f" (elements {_region_words(region)})" if region else ""
            raise _not_reproduced(f"{info.url}: variable {name!r}{where}", words) from exc
        raise CorruptChunk(
            f"{info.url}: variable {name!r}, {bad.where()} does not decode ({bad.error}). Its "
            "ETag and size are those scanned, so the file was damaged in place (or replaced "
            "keeping its size and modification time).",
            url=info.url,
            variable=name,
            side="source file",
            error=bad.error,
            **bad.context(),
        ) from exc


@contextmanager
def _store_decodes(
    info: ObjectInfo,
    manifest: ScanManifest,
    store: Location,
    store_format: StoreFormat,
    name: str,
    variable: xr.Variable,
    region: Mapping[str, slice],
    settings: Settings,
    storage: Storage,
) -> Iterator[None]:
    """Reading one variable's region of the store, just after the same values were read from
    ``info``'s file: bytes that do not decode are CorruptChunk naming the chunk and the file
    (and byte range) it refers to; SourceChanged if that file changed meanwhile."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        words = decode_failure(exc)
        if words is None:
            raise
        changed = changed_in_icechunk(str(exc))
        if changed:
            _still_as_scanned(changed, manifest, settings, storage)
        bad = first_bad_chunk(variable, region, limit=None)
        if bad is None:
            what = f"The store {store.url}: variable {name!r} ({_region_words(region)})"
            raise _not_reproduced(what, words) from exc
        ref = chunk_reference(store, store_format, name, bad.index, settings)
        url = ref.url if ref else changed or info.url
        _still_as_scanned(url, manifest, settings, storage)
        key = store_chunk_key(store_format, name, bad.index)
        what = f"variable {name!r}, {bad.where()}, key {key}"
        if ref is not None:
            points = f"refers to {ref.sentence()}, which do not decode ({bad.error})"
        else:
            points = f"does not decode ({bad.error}); its bytes are in {url}"
        read_fine = (
            f", while {url} itself reads: the file no longer holds the bytes the store was "
            "built from (it was replaced keeping its size and modification time, so its ETag "
            "is the one scanned)"
            if url == info.url
            else f"; the ETag and size of {url} are those scanned, so the file was damaged in "
            "place (or replaced keeping its size and modification time)"
        )
        offsets = {"offset": ref.offset, "length": ref.length} if ref else {}
        raise CorruptChunk(
            f"The store {store.url}: {what} {points}{read_fine}.",
            remedy=REPLACED_REMEDY if url == info.url else None,
            url=url,
            variable=name,
            side="store",
            store_url=store.url,
            error=bad.error,
            **bad.context(),
            **offsets,
        ) from exc


@contextmanager
def _store_opens(
    store: Location, store_format: StoreFormat, manifest: ScanManifest, settings: Settings
) -> Iterator[None]:
    """Opening the store (it reads its coordinates from the sources): bytes that do not
    decode, again when it is opened a second time, are CorruptChunk naming the store (and the
    file, when Icechunk names it)."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        words = decode_failure(exc)
        if words is None:
            raise
        changed = changed_in_icechunk(str(exc))
        try:
            open_store(store, store_format, source_root(manifest, settings), settings).close()
        except Exception as again:
            if decode_failure(again) is None:
                raise
            raise CorruptChunk(
                f"The store {store.url} cannot be opened: a chunk of a coordinate it refers to "
                f"does not decode ({words}). Every source file's ETag and size are those "
                "scanned, so one of them was damaged in place (or replaced keeping its size "
                "and modification time).",
                url=changed or store.url,
                side="store",
                store_url=store.url,
                error=words,
            ) from exc
        raise _not_reproduced(f"Opening the store {store.url}", words) from exc


def verify(
    manifest_url: str,
    store_url: str,
    store_format: StoreFormat,
    concat_dim: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> VerifyResult:
    """The verify stage: compare the store with its sources (compare_store), then record it
    as verified (mark_verified), the record register and unpublish require."""
    storage = storage or Storage(settings)
    result = compare_store(
        manifest_url,
        store_url,
        store_format,
        concat_dim,
        settings,
        storage,
        drop_variables=drop_variables,
        static_differs=static_differs,
    )
    mark_verified(result, settings, storage)
    return result


def mark_verified(result: VerifyResult, settings: Settings, storage: Storage) -> None:
    """The store read back equal to its sources: say so beside it ({run}.verified.json)."""
    store = parse_location(result.store_url, settings, what="store")
    run_id = store.name.split(".", 1)[0]
    storage.write_json(
        Layout.from_settings(settings).verified_marker(result.dataset_id, run_id),
        {
            "kind": "verified-store",
            "store_url": result.store_url,
            "manifest_url": result.manifest_url,
            "mode": result.mode,
            "values_compared": result.values_compared,
        },
    )


def compare_store(
    manifest_url: str,
    store_url: str,
    store_format: StoreFormat,
    concat_dim: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> VerifyResult:
    """Compare the store with every source file. Variables the request dropped are not in
    the store and not compared; with static_differs "keep-first", a variable without the
    concat dimension is compared with the file that holds the first steps only (the store
    keeps that file's).

    Every source is first checked against the manifest (ETag and size): a file changed since
    the scan is SourceChanged, before any value is compared. Bytes that do not decode, in a
    file or where the store points, are CorruptChunk naming the file, variable and chunk."""
    started = time.perf_counter()
    dropped = set(drop_variables)
    storage = storage or Storage(settings)
    manifest = load_manifest(manifest_url, settings, storage)
    mode = "full" if manifest.total_bytes <= settings.verify_full_max_bytes else "sample"
    store: Location = parse_location(store_url, settings, what="store")
    check_unchanged(manifest, settings, storage, "it was scanned")
    with (
        storage_faults(f"opening the store {store_url}"),
        _store_opens(store, store_format, manifest, settings),
    ):
        combined = open_store(store, store_format, source_root(manifest, settings), settings)
    index = combined.get_index(concat_dim)
    static_check = _static_files_to_check(manifest.files, mode)
    memory = MemoryWatch(settings.memory_limit_bytes, "verify")
    mismatches: list[Mismatch] = []
    variables_checked = values_compared = 0
    # Which steps of the store some file accounts for: each exactly once, all of them.
    claimed = np.zeros(combined.sizes[concat_dim], dtype=bool)
    try:
        for info in manifest.files:
            with (
                _source_opens(info, manifest, settings, storage),
                open_source(info, settings, storage, manifest.group) as source,
            ):
                positions = index.get_indexer(source[concat_dim].values)
                if (positions < 0).any():
                    missing = source[concat_dim].values[positions < 0][:3]
                    mismatches.append(
                        Mismatch(info.url, concat_dim, f"values {missing} are not in the store")
                    )
                    continue
                if not np.array_equal(positions, np.arange(positions[0], positions[-1] + 1)):
                    mismatches.append(
                        Mismatch(info.url, concat_dim, "its steps are not contiguous in the store")
                    )
                    continue
                if claimed[positions].any():
                    mismatches.append(
                        Mismatch(
                            info.url,
                            concat_dim,
                            "its steps are also another file's: two files hold the same "
                            f"{concat_dim} values (was a file overwritten with another's content?)",
                        )
                    )
                    continue
                claimed[positions] = True
                window = {concat_dim: slice(int(positions[0]), int(positions[-1]) + 1)}
                extra = sorted(map(str, set(combined.variables) - set(source.variables)))
                if extra and info.url == manifest.files[0].url:
                    mismatches.append(
                        Mismatch(info.url, extra[0], "is in the store but not in the file")
                    )
                holds_first = int(positions[0]) == 0
                for name, var in source.variables.items():
                    if name in dropped:
                        continue
                    if name not in combined.variables:
                        mismatches.append(
                            Mismatch(info.url, str(name), "is missing from the store")
                        )
                        continue
                    along = concat_dim in var.dims
                    if not along and static_differs == "keep-first":
                        if not holds_first:
                            continue  # the store keeps the first file's, on purpose
                    elif not along and info.url not in static_check:
                        continue
                    stored = combined.variables[name]
                    if mode == "full" or not along:
                        regions: list[dict[str, slice]] = [{}]
                    else:
                        regions = _sample_regions(
                            source[name], concat_dim, info.url, settings.verify_sample_chunks
                        )
                    for region in regions:
                        in_store = _in_store(region, window if along else {}, stored)
                        with _source_decodes(
                            info, manifest, settings, storage, str(name), var, region
                        ):
                            expected = _load(var, region)
                        with _store_decodes(
                            info,
                            manifest,
                            store,
                            store_format,
                            str(name),
                            stored,
                            in_store,
                            settings,
                            storage,
                        ):
                            found = _load(stored, in_store)
                        why = _compare(expected, found)
                        values_compared += int(np.size(expected))
                        if why:
                            where = f" (region {region})" if region else ""
                            mismatches.append(Mismatch(info.url, str(name), why + where))
                            break
                    variables_checked += 1
            if len(mismatches) >= MAX_REPORTED:
                break
            memory.check(f"after comparing {info.url}")
        if not mismatches and not claimed.all():
            mismatches.append(
                Mismatch(
                    store_url,
                    concat_dim,
                    f"the store has {combined.sizes[concat_dim]} steps but the files account "
                    f"for {int(claimed.sum())}",
                )
            )
    except Exception as exc:
        classified = classify(exc, f"comparing the store {store_url} with its sources")
        if classified is exc:
            raise
        raise classified from exc
    finally:
        combined.close()
    if mismatches:
        raise VerifyMismatch(
            f"The store {store_url} does not read back equal to its sources: "
            + "; ".join(m.sentence() for m in mismatches[:MAX_REPORTED]),
            mismatches=[m.__dict__ for m in mismatches[:MAX_REPORTED]],
        )
    result = VerifyResult(
        store_url=store_url,
        mode=mode,
        files_checked=len(manifest.files),
        variables_checked=variables_checked,
        values_compared=values_compared,
        seconds=time.perf_counter() - started,
        dataset_id=manifest.dataset_id,
        manifest_url=manifest_url,
    )
    emit(
        log,
        "verify done",
        stage="verify",
        dataset=manifest.dataset_id,
        store_url=store_url,
        mode=mode,
        file_count=len(manifest.files),
        values_compared=values_compared,
        seconds=round(result.seconds, 3),
    )
    return result
