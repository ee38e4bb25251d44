"""Validate's batch documents: every report of one validate call's files in one document
(Layout.validated_batch), with the size of the references validate wrote for each and the
libraries that wrote them.

They exist so that what grows with the collection is read a batch at a time: the gate and
the run report read one document for every ``files_per_activity`` files instead of each
file's report (two requests a file, on Azure two billed transactions), and generate takes
the references a document vouches for without asking storage, file by file, whether they
are there and whether the file is still the scanned one (two more). The per-file reports
stay: they are what a later run reuses and what an operator opens. A document is written
after all its files' reports and references, so a batch stopped half-way leaves none, and
every reader falls back to the files' own reports for any file no document covers
(a document from an older release, a batch still being retried, an incremental run's
earlier files, a document that does not parse).

Why trusting them is safe: validate read each file through a reader bound to the scanned
ETag (If-Match on every read), so the references describe exactly the scanned bytes; a file
changed after that is caught where its bytes are next read (verify's reads, bound the same
way) and by the listing register checks before publishing (scan.check_unchanged)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import SourceNotFound
from shared.model.layout import Layout, library_versions
from shared.model.locations import Location
from shared.model.settings import Settings

log = logging.getLogger(__name__)

KIND = "validated-batch"
VERSION = 1
READ_WORKERS = 8  # documents read at once (each holds files_per_activity reports)


@dataclass(frozen=True)
class BatchDocument:
    concat_dim: str
    libraries: dict[str, str]
    files: dict[str, dict[str, Any]]  # by URL: {"etag", "references", "report"}

    def references(self, info: ObjectInfo, concat_dim: str) -> int | None:
        """The size of ``info``'s references if this document vouches for them: written by
        validate for the scanned ETag, for ``concat_dim``, by the libraries loaded here."""
        entry = self.files.get(info.url)
        if (
            entry is None
            or entry.get("etag") != info.etag
            or self.concat_dim != concat_dim
            or self.libraries != library_versions()
        ):
            return None
        size = entry.get("references")
        return size if isinstance(size, int) and not isinstance(size, bool) else None


def entry(info: ObjectInfo, report: str, references: int | None) -> str:
    """One file of a batch document as JSON text (``report``: its report, already encoded
    to be written on its own)."""
    return (
        f'{{"url":{json.dumps(info.url)},"etag":{json.dumps(info.etag)},'
        f'"references":{json.dumps(references)},"report":{report}}}'
    )


def write_batch_document(
    manifest_url: str,
    dataset_id: str,
    start: int,
    stop: int,
    concat_dim: str,
    entries: Iterable[str],
    settings: Settings,
    storage: Storage,
) -> None:
    header = json.dumps(
        {
            "kind": KIND,
            "version": VERSION,
            "manifest_url": manifest_url,
            "start": start,
            "stop": stop,
            "concat_dim": concat_dim,
            "libraries": library_versions(),
        },
        separators=(",", ":"),
    )
    text = header[:-1] + ',"files":[' + ",".join(entries) + "]}"
    location = Layout.from_settings(settings).validated_batch(dataset_id, manifest_url, start, stop)
    storage.write(location, text.encode(), "application/json")


def batch_document(
    manifest_url: str,
    dataset_id: str,
    start: int,
    stop: int,
    settings: Settings,
    storage: Storage,
) -> BatchDocument | None:
    """The document validate wrote for the files [start, stop) of ``manifest_url``, or None
    (none there, or not one this code reads)."""
    location = Layout.from_settings(settings).validated_batch(dataset_id, manifest_url, start, stop)
    return _load(location, storage)


def stored_reports(
    manifest_url: str,
    dataset_id: str,
    files: Iterable[ObjectInfo],
    settings: Settings,
    storage: Storage,
) -> dict[str, dict[str, Any]]:
    """The reports of ``files`` (at their scanned ETags) that the batch documents of
    ``manifest_url`` hold, by URL: one listing and a read a document. A file no document
    covers is left out (read its own report). Where two documents cover a file (a batch size
    changed between two runs of one manifest) the later one counts, as the report it wrote
    last does."""
    folder = Layout.from_settings(settings).validated(dataset_id, manifest_url)
    listed = sorted(storage.list(folder, ("*.json",)), key=lambda i: (i.last_modified, i.url))
    if not listed:
        return {}
    etags = {info.url: info.etag for info in files}
    locations = [folder.join(info.url[len(folder.url) + 1 :]) for info in listed]
    with ThreadPoolExecutor(min(READ_WORKERS, len(locations))) as pool:
        documents = list(pool.map(lambda location: _load(location, storage), locations))
    reports: dict[str, dict[str, Any]] = {}
    for document in documents:
        for url, found in (document.files if document else {}).items():
            report = found.get("report")
            if etags.get(url) == found.get("etag") and isinstance(report, dict):
                reports[url] = report
    return reports


def _load(location: Location, storage: Storage) -> BatchDocument | None:
    try:
        document = storage.read_json(location)
        if document.get("kind") != KIND or document.get("version") != VERSION:
            return None
        return BatchDocument(
            concat_dim=str(document["concat_dim"]),
            libraries=dict(document["libraries"]),
            files={f["url"]: f for f in document["files"]},
        )
    except SourceNotFound:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring an unreadable batch document %s: %s", location.url, exc)
        return None
