"""Reading sources and the store for verify, and saying what went wrong when bytes do not
decode.

Each source file is opened independently of the reference machinery (read whole and opened
from memory by the netCDF-C library; an HDF5 file over SMALL_SOURCE_BYTES in sample mode with
h5netcdf over a ranged reader) with CF decoding on, exactly as a user would open it. Bytes
that do not decode, read from a file or where the store points (zlib errors, HDF5 "filter
returned failure", netCDF-C's "HDF error", a truncated file), are ``corrupt_chunk`` naming
the file, the variable and the chunk (found by reading the region one chunk at a time), never
retried; a file that changed meanwhile is ``source_changed`` (both ETags). The tile reader
(consumer.tiles) explains its failed reads with the same helpers.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import xarray as xr

from shared.io.formats import sniff
from shared.io.storage import ObjectInfo, Storage, _first_line
from shared.io.stores import kerchunk_references, open_store
from shared.model.errors import CorruptChunk, PipelineError, StorageUnavailable
from shared.model.locations import Location, parse_location
from shared.model.request import KERCHUNK_FORMATS, StoreFormat
from shared.model.settings import Settings
from shared.stages.combine import source_root
from shared.stages.scan import ScanManifest, ensure_unchanged, load_manifest

log = logging.getLogger(__name__)

# The netCDF-C library is not thread-safe, and verify's batches run side by side on the
# threads of a worker process: every call into it (opening, each read, closing) holds this
# lock, re-entrant because xarray reads the coordinates while the file is being opened. (HDF5
# sources read through h5netcdf use h5py, which holds its own process-wide lock.)
NETCDF_C = threading.RLock()

# A source file up to this size is always read whole (one request) and opened from memory:
# sampling a file this small reads most of its bytes anyway. Larger HDF5 files are read whole
# only when every value is compared (verify's full mode), else through the ranged reader.
SMALL_SOURCE_BYTES = 1 << 20


@contextmanager
def open_source(
    info: ObjectInfo,
    settings: Settings,
    storage: Storage,
    group: str | None = None,
    *,
    whole: bool = False,
    fetched: Callable[[], bytes] | None = None,
) -> Iterator[xr.Dataset]:
    """Open one source file (one group of it) with xarray, CF decoding on, without the
    reference machinery. With ``whole`` (or for a file of at most SMALL_SOURCE_BYTES, or
    NetCDF3) the file is read in one request and opened from memory by the netCDF-C library
    (about 10x faster than h5netcdf for a small file, and the values decode alike: xarray
    does the CF decoding for both); else an HDF5 file is opened with h5netcdf over a ranged
    reader, which reads only the header and the chunks asked for. A file in blob storage is
    read only as the version scanned (If-Match on its ETag: another is SourceChanged); a
    local file is checked before (compare_files: check_unchanged). ``fetched``: the whole
    file's bytes as the caller read them ahead, where reads_whole says it is read whole."""
    location = parse_location(info.url, settings, what="source file")
    if not reads_whole(info, whole):
        head = storage.read_range(location, 0, min(info.size, 8))  # which library opens it
        if sniff(head) == "hdf5":
            target: Any = (
                location.path
                if location.is_local
                else storage.reader(location, size=info.size, etag=info.etag)
            )
            with xr.open_dataset(target, engine="h5netcdf", chunks=None, group=group,
                                 create_default_indexes=False) as ds:  # fmt: skip
                yield ds
            return
    memory = None
    if not location.is_local:
        memory = fetched() if fetched else storage.read(location, etag=info.etag)
    with _netcdf_c(location, memory, group) as ds:
        yield ds


def reads_whole(info: ObjectInfo, whole: bool) -> bool:
    """Whether open_source reads ``info`` whole (a file in blob storage: in one request)
    rather than its header and the chunks asked for (an HDF5 file over SMALL_SOURCE_BYTES
    outside ``whole``; a larger NetCDF3 file is read whole all the same)."""
    return whole or info.size <= SMALL_SOURCE_BYTES


@contextmanager
def _netcdf_c(location: Location, memory: bytes | None, group: str | None) -> Iterator[xr.Dataset]:
    """A file opened by the netCDF-C library (from ``memory`` when given), every call into
    the library under NETCDF_C, so the lock is not held while the caller does other work."""
    import netCDF4

    with NETCDF_C:
        if memory is None:
            nc = netCDF4.Dataset(location.path, "r")
        else:
            nc = netCDF4.Dataset(location.name, "r", memory=memory)
        try:
            store = xr.backends.NetCDF4DataStore(nc, group=group, lock=NETCDF_C)
            # no engine guessing; no indexes: the comparison reads variables, and building
            # an index for every coordinate was a third of opening a small file
            ds = xr.open_dataset(store, engine="store", chunks=None, create_default_indexes=False)
        except BaseException:
            nc.close()
            raise
    try:
        yield ds
    finally:
        with NETCDF_C:
            ds.close()


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


def still_as_scanned(
    url: str, manifest: ScanManifest, settings: Settings, storage: Storage
) -> None:
    """Raise SourceChanged (both ETags) if ``url``, a file of the manifest, changed since the
    scan: then bytes that do not decode are the change, not damage. A file outside a slice
    of the manifest is looked up in the whole (a failure path: read only then)."""
    files = manifest.files
    if manifest.origin and all(info.url != url for info in files):
        files = load_manifest(manifest.origin, settings, storage).files
    for info in files:
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
def _undecodable(explain: Callable[[Exception, str], NoReturn]) -> Iterator[None]:
    """Bytes that do not decode in the block (decode_failure's words): ``explain(exc,
    words)`` raises what they mean (CorruptChunk, SourceChanged, or StorageUnavailable when
    they decode once read again). Any other error passes through unchanged."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        words = decode_failure(exc)
        if words is None:
            raise
        explain(exc, words)


def _fails_again(reopen: Callable[[], None]) -> bool:
    """Whether opening once more fails on bytes that do not decode too (so the damage is in
    what is stored, not in transit). Any other error is raised."""
    try:
        reopen()
    except Exception as again:
        if decode_failure(again) is None:
            raise
        return True
    return False


@contextmanager
def source_opens(
    info: ObjectInfo,
    manifest: ScanManifest,
    settings: Settings,
    storage: Storage,
    *,
    whole: bool = False,
) -> Iterator[None]:
    """Opening a source file (its header and coordinates; ``whole`` as open_source's): bytes
    that do not decode, again when it is opened a second time, are CorruptChunk naming the
    file (SourceChanged if it changed meanwhile)."""

    def reopen() -> None:
        with open_source(info, settings, storage, manifest.group, whole=whole):
            pass

    def explain(exc: Exception, words: str) -> NoReturn:
        still_as_scanned(info.url, manifest, settings, storage)
        if not _fails_again(reopen):
            raise _not_reproduced(f"Opening {info.url}", words) from exc
        raise CorruptChunk(
            f"{info.url} cannot be opened: {words}. Its ETag and size are those scanned, so "
            "it was damaged in place (or replaced keeping its size and modification time).",
            url=info.url,
            side="source file",
            error=words,
        ) from exc

    with _undecodable(explain):
        yield


@contextmanager
def source_decodes(
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

    def explain(exc: Exception, words: str) -> NoReturn:
        still_as_scanned(info.url, manifest, settings, storage)
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

    with _undecodable(explain):
        yield


@contextmanager
def store_decodes(
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

    def explain(exc: Exception, words: str) -> NoReturn:
        changed = changed_in_icechunk(str(exc))
        if changed:
            still_as_scanned(changed, manifest, settings, storage)
        bad = first_bad_chunk(variable, region, limit=None)
        if bad is None:
            what = f"The store {store.url}: variable {name!r} ({_region_words(region)})"
            raise _not_reproduced(what, words) from exc
        ref = chunk_reference(store, store_format, name, bad.index, settings)
        url = ref.url if ref else changed or info.url
        still_as_scanned(url, manifest, settings, storage)
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

    with _undecodable(explain):
        yield


@contextmanager
def store_opens(
    store: Location, store_format: StoreFormat, manifest: ScanManifest, settings: Settings
) -> Iterator[None]:
    """Opening the store (it reads its coordinates from the sources): bytes that do not
    decode, again when it is opened a second time, are CorruptChunk naming the store (and the
    file, when Icechunk names it)."""

    def reopen() -> None:
        open_store(store, store_format, source_root(manifest, settings), settings).close()

    def explain(exc: Exception, words: str) -> NoReturn:
        if not _fails_again(reopen):
            raise _not_reproduced(f"Opening the store {store.url}", words) from exc
        raise CorruptChunk(
            f"The store {store.url} cannot be opened: a chunk of a coordinate it refers to "
            f"does not decode ({words}). Every source file's ETag and size are those "
            "scanned, so one of them was damaged in place (or replaced keeping its size "
            "and modification time).",
            url=changed_in_icechunk(str(exc)) or store.url,
            side="store",
            store_url=store.url,
            error=words,
        ) from exc

    with _undecodable(explain):
        yield
