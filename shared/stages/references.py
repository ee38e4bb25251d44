"""Generate: one file's virtual references, written to the work area.

VirtualiZarr parses the file (HDF5/NetCDF4 with its HDF parser over a small-block reader,
NetCDF3 classic with its NetCDF3 parser) into a ManifestGroup: per variable, the Zarr v3
metadata and, per chunk, (url, offset, length). We serialise that group as our own small
JSON document ("file references") instead of a per-file kerchunk file, because the
kerchunk round trip loses information (a scalar variable's chunk key comes out as "crs/"
and an unwritten scalar cannot be read back at all).

Small arrays that the combine stage must *load* are inlined as their raw stored bytes:
the concat dimension's coordinate and its bounds (so differing time units decode correctly,
see docs/correctness.md), scalar variables (grid mappings) and other small dimension
coordinates.
Raw bytes keep the file's own encoding, so loading them decodes exactly as the source.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH, MISSING_CHUNK_PATH
from virtualizarr.parsers import HDFParser, NetCDF3Parser
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.metadata.v3 import check_storable

from shared.io.formats import describe_magic, sniff
from shared.io.readers import AdaptiveReader, first_read
from shared.io.storage import ObjectInfo, Storage, Writes
from shared.model.errors import PipelineError, ReferencesFailed, SourceNotFound
from shared.model.jsonsafe import json_safe
from shared.model.layout import Layout, library_versions
from shared.model.locations import Location, parse_location
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.scan import ensure_unchanged, load_manifest_slice
from shared.stages.validated import batch_document

log = logging.getLogger(__name__)

DOCUMENT_KIND = "file-references"
DOCUMENT_VERSION = 1


# -- building ---------------------------------------------------------------------------
def build_references(
    info: ObjectInfo,
    settings: Settings,
    storage: Storage,
    *,
    concat_dim: str = "time",
    group: str | None = None,
    reader: AdaptiveReader | None = None,
    parsed: ManifestGroup | None = None,
    location: Location | None = None,
) -> dict[str, Any]:
    """Parse one file and return its references document (not yet written). ``reader``: the
    reader validate read the file's header through (validate_batch: every read bound to the
    scanned ETag), whose bytes are reused; else a new one, between two checks of the ETag.
    ``parsed``: an HDF5 file's ManifestGroup as validate's walk built it
    (shared.stages.hdf5refs), else VirtualiZarr's parser reads the header. ``location``:
    info.url as the caller parsed it already."""
    location = location or parse_location(info.url, settings, what="source file")
    if reader is None:
        ensure_unchanged(info, storage.head(location), "it was scanned")
    if info.size == 0:
        raise ReferencesFailed(f"{info.url} is empty (0 bytes); it has no variables to reference.")
    if reader is None:
        reader = storage.reader(location, size=info.size, prefetch_index=True)
    reader.seek(0)
    head = reader.read(first_read(info.size, settings.read_block_size))
    reader.seek(0)
    file_format = sniff(head)
    if file_format is None:
        raise ReferencesFailed(
            f"{info.url} is neither HDF5/NetCDF4 nor NetCDF3 classic; it looks like "
            f"{describe_magic(head[:64])}."
        )
    if file_format == "hdf5":
        parser: Any = HDFParser(group=group, reader_factory=lambda store, path: reader)
    elif group:
        raise ReferencesFailed(
            f"{info.url} is NetCDF3 classic, which has no groups; the group {group!r} "
            "cannot be read from it."
        )
    else:
        parser = NetCDF3Parser()
    if parsed is None or file_format != "hdf5":
        registry = storage.registry([location])
        try:
            parsed = parser(location.url, registry)._group
        except PipelineError:
            raise
        except Exception as exc:  # the parsers raise many types; name the file and the cause
            raise ReferencesFailed(
                f"Could not read the structure of {info.url}: {type(exc).__name__}: {exc}"
            ) from exc
    inline = _inline_candidates(parsed, concat_dim, settings.inline_max_bytes)
    inlined, elsewhere = _read_inline_chunks(parsed, inline, location, storage, reader)
    # Before and after: a file rewritten while its header was being read is refused, so the
    # offsets recorded here are offsets into the bytes that the ETag names. A reader bound to
    # the scanned ETag (validate's) refused any other version already, read by read.
    if getattr(reader, "etag", None) != info.etag or elsewhere:
        ensure_unchanged(info, storage.head(location), "its references were read")
    return {
        "kind": DOCUMENT_KIND,
        "version": DOCUMENT_VERSION,
        "source": info.to_dict(),
        "file_format": file_format,
        **({"group": group} if group else {}),
        "libraries": library_versions(),
        "attributes": json_safe(dict(parsed.metadata.attributes)),
        "arrays": {
            name: _array_to_json(array, info.url, inlined.get(name, {}))
            for name, array in parsed.arrays.items()
        },
    }


def concat_bounds(group: Any, concat_dim: str) -> list[str]:
    """The bounds and climatology variables of the concat coordinate (CF: they take its units
    and calendar, so they must be decoded with it, per file)."""
    coordinate = group.arrays.get(concat_dim)
    if coordinate is None:
        return []
    attributes = coordinate.metadata.attributes or {}
    names = [attributes.get(key) for key in ("bounds", "climatology")]
    return [n for n in names if isinstance(n, str) and n in group.arrays]


def _inline_candidates(group: ManifestGroup, concat_dim: str, limit: int) -> set[str]:
    names = set(concat_bounds(group, concat_dim))
    for name, array in group.arrays.items():
        dims = tuple(array.metadata.dimension_names or ())
        stored = int(array.manifest._lengths.sum())
        is_dim_coord = len(dims) == 1 and dims[0] == name
        if array.ndim == 0 or (is_dim_coord and (name == concat_dim or stored <= limit)):
            names.add(name)
    return names


def _read_inline_chunks(
    group: ManifestGroup,
    names: set[str],
    location: Location,
    storage: Storage,
    reader: AdaptiveReader,
) -> tuple[dict[str, dict[tuple[int, ...], bytes]], bool]:
    """Raw stored bytes of every chunk of the chosen arrays: from what the reader fetched
    for the header (small coordinates usually sit next to it), the rest in one ranged call
    (then True: bytes were read outside the reader)."""
    wanted: list[tuple[str, tuple[int, ...], int, int]] = []
    for name in sorted(names):
        manifest = group.arrays[name].manifest
        for index in np.ndindex(manifest.shape_chunk_grid):
            path = str(manifest._paths[index])
            if path in (MISSING_CHUNK_PATH, INLINED_CHUNK_PATH) or path != location.url:
                continue
            wanted.append(
                (name, index, int(manifest._offsets[index]), int(manifest._lengths[index]))
            )
    known = [reader.cached(start, length) for _, _, start, length in wanted]
    rest = [w for w, chunk in zip(wanted, known, strict=True) if chunk is None]
    fetched = iter(storage.read_ranges(location, [w[2] for w in rest], [w[3] for w in rest]))
    out: dict[str, dict[tuple[int, ...], bytes]] = {}
    for (name, index, _, _), chunk in zip(wanted, known, strict=True):
        out.setdefault(name, {})[index] = chunk if chunk is not None else next(fetched)
    return out, bool(rest)


def _array_to_json(
    array: ManifestArray, source_url: str, inline: dict[tuple[int, ...], bytes]
) -> dict[str, Any]:
    manifest = array.manifest
    paths = manifest._paths
    inline = {**manifest._inlined, **inline}
    grid = list(manifest.shape_chunk_grid)
    offsets = manifest._offsets.copy()
    lengths = manifest._lengths.copy()
    flat_paths = [str(p) for p in paths.ravel()]
    missing = np.array([p == MISSING_CHUNK_PATH for p in flat_paths], dtype=bool).reshape(
        offsets.shape
    )
    offsets[missing] = 0  # a missing chunk's offset and length are uninitialised memory
    lengths[missing] = 0
    for index in inline:
        flat = int(np.ravel_multi_index(index, manifest.shape_chunk_grid)) if grid else 0
        flat_paths[flat] = INLINED_CHUNK_PATH
    uniform = all(p in (source_url, MISSING_CHUNK_PATH, INLINED_CHUNK_PATH) for p in flat_paths)
    # what to_buffer_dict stores as zarr.json, without zarr's indented (pure Python) encoding
    check_storable(array.metadata)
    metadata = json.loads(json.dumps(array.metadata.to_dict()))
    return {
        "zarr": metadata,
        "grid": grid,
        "offsets": [int(x) for x in offsets.ravel()],
        "lengths": [int(x) for x in lengths.ravel()],
        # Paths are stored only when some chunk lives outside this file (external links).
        "paths": None if uniform else flat_paths,
        "inline": {
            ".".join(map(str, index)) or "0": base64.b64encode(chunk).decode()
            for index, chunk in sorted(inline.items())
        },
    }


# -- reading back ---------------------------------------------------------------------
def manifest_group(document: dict[str, Any]) -> ManifestGroup:
    """Rebuild the ManifestGroup a references document describes."""
    if document.get("kind") != DOCUMENT_KIND or document.get("version") != DOCUMENT_VERSION:
        raise ReferencesFailed(
            f"Unrecognised references document (kind={document.get('kind')!r}, "
            f"version={document.get('version')!r}); regenerate the references."
        )
    source_url = document["source"]["url"]
    arrays = {
        name: _array_from_json(entry, source_url) for name, entry in document["arrays"].items()
    }
    return ManifestGroup(arrays=arrays, attributes=document["attributes"])


def _array_from_json(entry: dict[str, Any], source_url: str) -> ManifestArray:
    metadata = ArrayV3Metadata.from_dict(entry["zarr"])
    grid = tuple(entry["grid"])
    offsets = np.asarray(entry["offsets"], dtype="uint64").reshape(grid)
    lengths = np.asarray(entry["lengths"], dtype="uint64").reshape(grid)
    inlined = {
        tuple(int(i) for i in key.split(".")) if grid else (): base64.b64decode(value)
        for key, value in entry["inline"].items()
    }
    if entry["paths"] is not None:
        paths = np.asarray(entry["paths"], dtype=np.dtypes.StringDType()).reshape(grid)
    else:
        paths = np.where(lengths > 0, source_url, MISSING_CHUNK_PATH).astype(
            np.dtypes.StringDType()
        )
        paths = paths.reshape(grid)
    for index in inlined:
        paths[index] = INLINED_CHUNK_PATH
    manifest = ChunkManifest.from_arrays(
        paths=paths, offsets=offsets, lengths=lengths, validate_paths=False, inlined=inlined
    )
    return ManifestArray(metadata=metadata, chunkmanifest=manifest)


# -- the stage --------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerateBatch:
    files: int
    generated: int
    reused: int
    bytes_read: int
    requests: int
    reference_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def generate_file(
    info: ObjectInfo,
    settings: Settings,
    storage: Storage,
    *,
    concat_dim: str = "time",
    refresh: bool = False,
    group: str | None = None,
) -> tuple[Location, bool, int]:
    """Write one file's references unless they already exist; returns (location, reused,
    size). Validate writes them as it reads the file (validate_batch), so in a run they are
    usually there (and generate_batch takes those its batch document vouches for without
    calling this): the file is not read again, only its ETag checked (a file rewritten since
    the scan is SourceChanged here too). ``refresh`` (a full run) writes them again unless
    they were written by these very libraries (validate did, in this run: it refreshes too)."""
    target = Layout.from_settings(settings).references(info.url, info.etag, group)
    stored = _stored_size(target, storage)
    if stored is not None and (not refresh or _current(target, storage)):
        location = parse_location(info.url, settings, what="source file")
        ensure_unchanged(info, storage.head(location), "it was scanned")
        return target, True, stored
    document = build_references(info, settings, storage, concat_dim=concat_dim, group=group)
    return target, False, write_references(info, document, settings, storage, group)


def _stored_size(target: Location, storage: Storage) -> int | None:
    """The size of the references already at ``target`` (validate's, or a run's before), or
    None where there are none."""
    try:
        return storage.head(target).size
    except SourceNotFound:
        return None


def _current(target: Location, storage: Storage) -> bool:
    """Whether the references at ``target`` were written by the libraries loaded here."""
    try:
        return bool(storage.read_json(target).get("libraries") == library_versions())
    except PipelineError as exc:
        if exc.retryable:
            raise
        return False


def write_references(
    info: ObjectInfo, document: dict[str, Any], settings: Settings, storage: Storage | Writes,
    group: str | None = None,
) -> int:  # fmt: skip
    """Write a file's references document where generate and combine look (``storage``, or
    in the background: Writes); its size."""
    target = Layout.from_settings(settings).references(info.url, info.etag, group)
    data = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    storage.write(target, data, "application/json")
    return len(data)


def generate_batch(
    manifest_url: str,
    start: int,
    stop: int,
    settings: Settings,
    *,
    concat_dim: str = "time",
    storage: Storage | None = None,
    refresh: bool = False,
) -> GenerateBatch:
    """Generate references for manifest files [start, stop)."""
    started = time.perf_counter()
    storage = (storage or Storage(settings)).traced()
    assert storage.trace is not None
    manifest, _ = load_manifest_slice(manifest_url, start, stop, settings, storage)
    files = manifest.files  # only this batch's files are read from the manifest
    # What validate wrote for these very files (its batches are these batches): references
    # it vouches for are taken as they are, without a request a file (shared.stages.validated)
    vouched = batch_document(
        manifest_url, manifest.dataset_id, start, start + len(files), settings, storage
    )
    generated = reused = reference_bytes = 0
    for info in files:
        file_started = time.perf_counter()
        size = vouched.references(info, concat_dim) if vouched else None
        if size is not None:
            was_reused = True
        else:
            _, was_reused, size = generate_file(
                info, settings, storage, concat_dim=concat_dim, refresh=refresh,
                group=manifest.group,
            )  # fmt: skip
        reused += was_reused
        generated += not was_reused
        reference_bytes += size
        emit(
            log,
            "file references",
            logging.DEBUG,
            stage="generate",
            dataset=manifest.dataset_id,
            url=info.url,
            reused=was_reused,
            reference_bytes=size,
            seconds=round(time.perf_counter() - file_started, 3),
        )
    batch = GenerateBatch(
        files=len(files),
        generated=generated,
        reused=reused,
        bytes_read=storage.trace.total_bytes,
        requests=storage.trace.total_requests,
        reference_bytes=reference_bytes,
        seconds=time.perf_counter() - started,
    )
    emit(
        log,
        "generate batch done",
        stage="generate",
        dataset=manifest.dataset_id,
        batch=[start, start + len(files)],
        file_count=len(files),
        reused=batch.reused,
        bytes=batch.bytes_read,
        reference_bytes=reference_bytes,
        seconds=round(batch.seconds, 3),
        libraries=library_versions(),
    )
    return batch


def load_references(
    info: ObjectInfo,
    settings: Settings,
    storage: Storage,
    *,
    group: str | None = None,
    layout: Layout | None = None,
) -> dict[str, Any]:
    """One file's references document (``layout``: given once by callers reading many)."""
    layout = layout or Layout.from_settings(settings)
    return storage.read_json(layout.references(info.url, info.etag, group))
