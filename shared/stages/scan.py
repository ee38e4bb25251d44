"""Scan: list the source files and record what each one is (size, ETag, last-modified).

The manifest is the run's contract: every later stage works on exactly these files at
exactly these ETags, and it travels between stages as a URL, never inline.
"""

from __future__ import annotations

import codecs
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import (
    EmptySource,
    SourceChanged,
    SourceNotFound,
    SourceUnreadable,
    TooManyFiles,
)
from shared.model.layout import Layout, digest
from shared.model.locations import Location, check_local_source_file, parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanManifest:
    dataset_id: str
    source: str
    patterns: tuple[str, ...]
    files: tuple[ObjectInfo, ...]
    # The HDF5/NetCDF4 group every stage reads ("/science"); None: the root group. It travels
    # with the manifest, so each stage knows it, and it names every per-file artifact.
    group: str | None = None
    # Where a slice of a manifest was read from (load_manifest_slice): a file outside the
    # slice is looked up there (verify's failure paths). Not part of the document.
    origin: str | None = field(default=None, compare=False)

    @property
    def digest(self) -> str:
        group = (f"group {self.group}",) if self.group else ()
        files = (f"{f.url} {f.etag} {f.size}" for f in self.files)
        return digest(self.dataset_id, *group, *files)

    def subset(self, files: tuple[ObjectInfo, ...]) -> ScanManifest:
        """The same manifest with other files (those of an incremental run)."""
        return ScanManifest(
            self.dataset_id, self.source, self.patterns, files, self.group, self.origin
        )

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "scan-manifest",
            "version": 1,
            "dataset_id": self.dataset_id,
            "source": self.source,
            "patterns": list(self.patterns),
            **({"group": self.group} if self.group else {}),
            "file_count": len(self.files),
            "total_bytes": self.total_bytes,
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanManifest:
        return cls(
            dataset_id=data["dataset_id"],
            source=data["source"],
            patterns=tuple(data["patterns"]),
            files=tuple(ObjectInfo.from_dict(f) for f in data["files"]),
            group=data.get("group"),
        )


@dataclass(frozen=True)
class ScanResult:
    manifest_url: str
    file_count: int
    total_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_url": self.manifest_url,
            "file_count": self.file_count,
            "total_bytes": self.total_bytes,
            "seconds": self.seconds,
        }


def list_source(
    source: Location, patterns: tuple[str, ...], storage: Storage, max_files: int
) -> list[ObjectInfo]:
    """The matching files of a source prefix, or the one file a source names. A local file
    reached through a symbolic link must lead where the source itself may be
    (check_local_source_file)."""
    if source.is_local:
        path = Path(source.path)
        if path.is_file():
            return [storage.head(source)]
        if not path.is_dir():
            if path.exists():
                raise SourceUnreadable(
                    f"The source {source.url} is neither a file nor a folder (a device, pipe "
                    "or socket).",
                    remedy="Give the folder that holds the NetCDF files.",
                    url=source.url,
                )
            raise SourceNotFound(f"The source {source.url} does not exist.")
    files = storage.list(source, patterns, limit=max_files)
    if source.is_local:
        for info in files:
            check_local_source_file(info.url.removeprefix("file://"), storage.settings)
    if not files and not source.is_local and source.path and storage.exists(source):
        return [storage.head(source)]  # a blob URL naming one file
    if len(files) > max_files:
        raise TooManyFiles(
            f"The source {source.url} holds more than {max_files} matching files; "
            f"the limit (PIPELINE_MAX_FILES) is {max_files}."
        )
    if not files:
        others = storage.count_below(source)
        if others:
            raise EmptySource(
                f"No file under {source.url} matches {', '.join(patterns)}; found only "
                f"{', '.join(others)}{' ...' if len(others) >= 5 else ''}."
            )
        raise EmptySource(f"There are no files under {source.url}.")
    return files


def scan(
    request: PipelineRequest, settings: Settings, storage: Storage | None = None
) -> ScanResult:
    started = time.perf_counter()
    storage = storage or Storage(settings)
    source = parse_location(request.source, settings, what="source")
    files = list_source(source, request.patterns, storage, settings.max_files)
    manifest = ScanManifest(
        request.dataset_id, source.url, request.patterns, tuple(files), request.group
    )
    location = Layout.from_settings(settings).manifest(request.dataset_id, manifest.digest)
    write_manifest(manifest, location, storage)
    result = ScanResult(
        location.url, len(files), manifest.total_bytes, time.perf_counter() - started
    )
    emit(
        log,
        "scan done",
        stage="scan",
        dataset=request.dataset_id,
        source=source.url,
        file_count=result.file_count,
        bytes=result.total_bytes,
        seconds=round(result.seconds, 3),
    )
    return result


# A manifest's index (beside it, `<digest>.index.json`): the byte offset of every INDEX_EVERY-th
# file entry, so that a batch reads its slice of the manifest and nothing else (a manifest of
# 10,000 files is 3 MB: read and parsed whole by each of a run's 3,000 activities, it was
# most of their time), and what the stages need of the whole: file count, total size.
INDEX_EVERY = 100


def index_location(manifest: Location) -> Location:
    return Location(manifest.kind, manifest.container, manifest.path.removesuffix(".json") +
                    ".index.json")  # fmt: skip


def write_manifest(manifest: ScanManifest, location: Location, storage: Storage) -> None:
    """The manifest (the same document as ever, one file entry a line) and its index."""
    document = manifest.to_dict()
    entries = document.pop("files")
    head = json.dumps({**document, "files": []}, indent=1)
    start = head.rindex("[]")
    parts = [(head[:start] + "[\n").encode()]
    position = len(parts[0])
    offsets = []
    for i, entry in enumerate(entries):
        if i % INDEX_EVERY == 0:
            offsets.append(position)
        line = (json.dumps(entry, separators=(",", ":"), allow_nan=False) +
                (",\n" if i + 1 < len(entries) else "\n")).encode()  # fmt: skip
        parts.append(line)
        position += len(line)
    parts.append(("]" + head[start + 2 :]).encode())
    data = b"".join(parts)
    _forget_index(location)
    storage.write(location, data, "application/json")
    storage.write_json(
        index_location(location),
        {"kind": "scan-manifest-index", "version": 1, "every": INDEX_EVERY, "offsets": offsets,
         "end": position, "size": len(data), "file_count": len(entries),
         "total_bytes": manifest.total_bytes},
    )  # fmt: skip


@dataclass(frozen=True)
class ManifestTotals:
    """What a batch needs of the whole manifest besides its slice."""

    file_count: int
    total_bytes: int


def manifest_totals(url: str, settings: Settings, storage: Storage) -> ManifestTotals:
    """The file count and total size, from the index (the whole manifest without one)."""
    location = parse_location(url, settings, what="manifest")
    index = _index(location, storage)
    if index is not None:
        return ManifestTotals(int(index["file_count"]), int(index["total_bytes"]))
    manifest = load_manifest(url, settings, storage)
    return ManifestTotals(len(manifest.files), manifest.total_bytes)


# The indexes this process has checked against their manifests, by the manifest's URL. A
# manifest is named by the digest of what it lists (Layout.manifest), so one URL is one
# document: every validate, generate and verify batch of a run, and of the next, reads the
# same index, which is read and checked once a worker process instead of twice a batch (a
# read and a HEAD each time). Scan forgets the entry of a manifest it writes.
_INDEXES: OrderedDict[str, dict[str, Any]] = OrderedDict()
_INDEXES_KEPT = 32
_INDEXES_LOCK = threading.Lock()


def _index(location: Location, storage: Storage) -> dict[str, Any] | None:
    """The manifest's index, or None (a manifest written before indexes, lost, or not the
    one the index was written for: its size differs)."""
    with _INDEXES_LOCK:
        known = _INDEXES.get(location.url)
        if known is not None:
            _INDEXES.move_to_end(location.url)
            return known
    try:
        index = storage.read_json(index_location(location))
    except SourceNotFound:
        return None
    if index.get("kind") != "scan-manifest-index":
        return None
    if storage.head(location).size != index.get("size"):
        return None
    with _INDEXES_LOCK:
        _INDEXES[location.url] = index
        while len(_INDEXES) > _INDEXES_KEPT:
            _INDEXES.popitem(last=False)
    return index


def _forget_index(location: Location) -> None:
    with _INDEXES_LOCK:
        _INDEXES.pop(location.url, None)


def load_manifest(url: str, settings: Settings, storage: Storage | None = None) -> ScanManifest:
    storage = storage or Storage(settings)
    return ScanManifest.from_dict(storage.read_json(parse_location(url, settings, what="manifest")))


MANIFEST_PIECE = 8 << 20  # bytes read at a time by load_manifest_slice
_DECODER = json.JSONDecoder()


def load_manifest_slice(
    url: str, start: int, stop: int, settings: Settings, storage: Storage | None = None
) -> tuple[ScanManifest, int]:
    """The manifest with only its files [start, stop), and how many files it has in all.

    Read piece by piece (MANIFEST_PIECE bytes) and parsed one file entry at a time, keeping
    only the slice: at 1,000,000 files the whole manifest takes about 700 MB once loaded,
    a slice of it a few MB. ``stop=start`` reads only the header (what a join needs)."""
    storage = storage or Storage(settings)
    location = parse_location(url, settings, what="manifest")
    index = _index(location, storage)
    if index is not None:
        sliced, total = _indexed_slice(location, index, start, stop, storage)
        return replace(sliced, origin=url), total
    reader = _JsonPieces(storage, location)
    header: dict[str, Any] = {}
    kept: list[ObjectInfo] = []
    reader.expect("{")
    while not reader.take("}"):
        key = reader.value()
        reader.expect(":")
        if key == "files":
            count = _files_slice(reader, start, stop, kept, header.get("file_count"))
            header.setdefault("file_count", count)
            if count is None:  # stopped early: nothing after the slice is needed
                break
        else:
            header[key] = reader.value()
        reader.take(",")
    manifest = ScanManifest.from_dict({**header, "files": []})
    return replace(manifest.subset(tuple(kept)), origin=url), int(header["file_count"])


def manifest_pieces(
    url: str, settings: Settings, storage: Storage, piece: int = 100_000
) -> Iterator[ScanManifest]:
    """The manifest's files ``piece`` at a time (slices: a reader never holds all of a
    large manifest; 1,000,000 entries loaded at once take 700 MB)."""
    first, count = load_manifest_slice(url, 0, piece, settings, storage)
    yield first
    for start in range(piece, count, piece):
        yield load_manifest_slice(url, start, start + piece, settings, storage)[0]


def _indexed_slice(
    location: Location, index: dict[str, Any], start: int, stop: int, storage: Storage
) -> tuple[ScanManifest, int]:
    """load_manifest_slice with the index: the header, then only the lines of the slice."""
    count, every, offsets = int(index["file_count"]), int(index["every"]), index["offsets"]
    stop = min(max(stop, start), count)
    header_end = offsets[0] if offsets else int(index["end"])
    head = storage.read_range(location, 0, header_end).decode()
    header = json.loads(head[: head.rindex("[")] + "[]}")
    kept: tuple[ObjectInfo, ...] = ()
    if start < stop:
        first, last = start // every, -(-stop // every)
        begin = int(offsets[first])
        end = int(offsets[last]) if last < len(offsets) else int(index["end"])
        text = storage.read_range(location, begin, end - begin).decode().rstrip().rstrip(",")
        entries = json.loads("[" + text + "]")
        kept = tuple(ObjectInfo.from_dict(e) for e in entries[start - first * every :
                                                               stop - first * every])  # fmt: skip
    return ScanManifest.from_dict({**header, "files": []}).subset(kept), count


def _files_slice(
    reader: _JsonPieces, start: int, stop: int, kept: list[ObjectInfo], known: int | None
) -> int | None:
    """Walk the manifest's list of files, keeping [start, stop); returns the files counted,
    or None when it stopped after the slice because the header already gave the count."""
    reader.expect("[")
    index = 0
    while not reader.take("]"):
        if index >= stop and known is not None:
            return None
        entry = reader.value()
        if start <= index:
            kept.append(ObjectInfo.from_dict(entry))
        index += 1
        reader.take(",")
    return index


class _JsonPieces:
    """A JSON document read from storage piece by piece, one value at a time."""

    def __init__(self, storage: Storage, location: Location) -> None:
        self.storage, self.location = storage, location
        self.size = storage.head(location).size
        self.read = 0
        self.text = ""
        self.at = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def _more(self) -> bool:
        if self.read >= self.size:
            return False
        length = min(MANIFEST_PIECE, self.size - self.read)
        data = self.storage.read_range(self.location, self.read, length)
        self.read += length
        self.text = self.text[self.at :] + self.decoder.decode(data, self.read >= self.size)
        self.at = 0
        return True

    def _skip(self) -> None:
        while True:
            while self.at < len(self.text) and self.text[self.at] in " \t\r\n":
                self.at += 1
            if self.at < len(self.text) or not self._more():
                return

    def take(self, char: str) -> bool:
        """Consume ``char`` if it comes next."""
        self._skip()
        if self.text[self.at : self.at + 1] == char:
            self.at += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.take(char):
            raise ValueError(f"{self.location.url}: expected {char!r} at byte {self.read}")

    def value(self) -> Any:
        self._skip()
        while True:
            try:
                found, end = _DECODER.raw_decode(self.text, self.at)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise
            if end < len(self.text) or not self._more():  # a number may go on in the next piece
                self.at = end
                return found


def ensure_unchanged(scanned: ObjectInfo, current: ObjectInfo, since: str) -> None:
    """Raise SourceChanged, naming the file and both ETags, if the file is not the one scanned."""
    if current.etag != scanned.etag or current.size != scanned.size:
        raise SourceChanged(
            f"{scanned.url} changed after {since}: ETag {scanned.etag!r} (size {scanned.size}) "
            f"at scan, now {current.etag!r} (size {current.size}).",
            url=scanned.url,
            scanned_etag=scanned.etag,
            current_etag=current.etag,
        )


# A manifest of at least this many files is checked by listing its source (one request per
# 5,000 blobs on Azure, one folder walk locally) instead of a HEAD per file; a file the
# listing does not show is asked for by itself (SourceNotFound names it).
LIST_CHECK_MIN_FILES = 100
# The HEADs of a smaller manifest, 16 at a time: one pool for the process (verify checks a
# few files per call, and starting 16 threads a call cost as much as the HEADs locally).
_HEADS = ThreadPoolExecutor(16, thread_name_prefix="unchanged")


def check_unchanged(
    manifest: ScanManifest, settings: Settings, storage: Storage, since: str
) -> None:
    """Refuse (SourceChanged, SourceNotFound) if any file of the manifest changed since the
    scan: the last check before a store that references them is published. The ETags and
    sizes come from a listing of the source, as the scan's did, for a large manifest; from a
    HEAD per file (in parallel) otherwise."""
    many = len(manifest.files) >= LIST_CHECK_MIN_FILES
    listed = _listed(manifest, settings, storage) if many else {}
    unlisted = [info for info in manifest.files if info.url not in listed]

    def current(info: ObjectInfo) -> ObjectInfo:
        return storage.head(parse_location(info.url, settings, what="source file"))

    heads = dict(zip((i.url for i in unlisted), _HEADS.map(current, unlisted), strict=True))
    for scanned in manifest.files:
        ensure_unchanged(scanned, listed.get(scanned.url) or heads[scanned.url], since)


def _listed(manifest: ScanManifest, settings: Settings, storage: Storage) -> dict[str, ObjectInfo]:
    """The manifest's files as a listing of its source shows them now (a local file reached
    through a symbolic link checked as the scan checks it)."""
    source = parse_location(manifest.source, settings, what="source")
    if source.is_local and not Path(source.path).is_dir():
        return {}  # a source naming one file
    wanted = {info.url for info in manifest.files}
    listing = storage.list(source, manifest.patterns)
    found = {info.url: info for info in listing if info.url in wanted}
    if source.is_local:
        for url in found:
            check_local_source_file(url.removeprefix("file://"), settings)
    return found
