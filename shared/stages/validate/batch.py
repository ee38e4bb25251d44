"""Validate a batch of a manifest's files, reusing the reports already stored for the same
(url, ETag), and read a stored report back.

Validating a file reads its header; the same bytes also give its virtual references, so a
file validate finds usable has its references written here too (where generate looks for
them, shared.stages.references): each file is read once a run for its metadata. After
the batch's reports, one document holds them all (shared.stages.validated): the gate, the run
report and generate read that instead of each file's. Generate writes what validate could
not (a file that changed since the scan, or one whose references failed: generate says
why)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import h5py
from virtualizarr.manifests import ManifestGroup

from shared.io.hdf5attrs import HeaderReads
from shared.io.readers import AdaptiveReader
from shared.io.storage import ObjectInfo, Storage, Writes
from shared.model.errors import BadRequest, PipelineError, SourceChanged, SourceNotFound
from shared.model.layout import Layout
from shared.model.locations import Location, parse_location
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.hdf5refs import manifest_group
from shared.stages.references import build_references, write_references
from shared.stages.scan import load_manifest_slice
from shared.stages.validate.file import validate_file
from shared.stages.validate.model import REPORT_VERSION, FileReport, ValidationBatch
from shared.stages.validate.reading import traced_storage
from shared.stages.validated import entry, write_batch_document

# One logger for the whole stage, named as before the stage became a package.
log = logging.getLogger(__package__)

# Storage round trips of validate's batches that need not wait for each other: asking for the
# reports already stored, writing reports and references (shared by a process's batches).
_IO = ThreadPoolExecutor(8, thread_name_prefix="validate-io")

# A batch's summary names the first few errors, each cut to so many characters.
_SUMMARY_ERRORS = 5
_SUMMARY_MESSAGE_CHARS = 400


def validate_batch(
    manifest_url: str,
    start: int,
    stop: int,
    settings: Settings,
    storage: Storage | None = None,
    *,
    refresh: bool = False,
    concat_dim: str = "time",
) -> ValidationBatch:
    """Validate manifest files [start, stop), write each report (and each usable file's
    references, for ``concat_dim``), return a small summary.

    A report already stored for (url, ETag) is reused (activities run at least once), unless
    ``refresh`` (a full run: after a library upgrade, validate with the new code)."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    if start < 0 or stop < start:
        raise BadRequest(f"The batch [{start}, {stop}) of {manifest_url} is not a valid range.")
    manifest, _ = load_manifest_slice(manifest_url, start, stop, settings, storage)
    files = manifest.files  # only this batch's files are read from the manifest
    layout = Layout.from_settings(settings)
    reading, _ = traced_storage(storage)
    verdicts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    errors: list[tuple[str, str, str]] = []
    error_count = reused = bytes_read = requests = 0
    entries: list[str] = []  # the batch document's, as JSON text
    targets = [layout.report(info.url, info.etag, manifest.group) for info in files]
    # the reports already stored, asked for together (a round trip each, not one after the
    # other); the reports and references written here go on while the next file is read
    stored = (
        [None] * len(files)
        if refresh
        else list(_IO.map(lambda target: _stored_report(target, storage), targets))
    )
    with Writes(storage, _IO) as writes:
        for info, target, report in zip(files, targets, stored, strict=True):
            file_started = time.perf_counter()
            was_reused = report is not None
            references: int | None = None  # their size, when written here
            if report is None:
                report, references = _validate_and_reference(
                    info, settings, reading, manifest.group, concat_dim, refresh, writes
                )
                # compact: json's indenting encoder is pure Python (a millisecond a report)
                data = json.dumps(report.to_dict(), separators=(",", ":"), allow_nan=False)
                writes.write(target, data.encode(), "application/json")
                bytes_read += report.bytes_read
                requests += report.requests
            else:
                reused += 1
                data = json.dumps(report.to_dict(), separators=(",", ":"), allow_nan=False)
            entries.append(entry(info, data, references))
            verdicts[report.verdict] += 1
            codes.update(f.code for f in report.findings)
            for finding in report.errors:
                error_count += 1
                if len(errors) < _SUMMARY_ERRORS:
                    message = finding.message[:_SUMMARY_MESSAGE_CHARS]
                    errors.append((info.url, finding.code, message))
            emit(
                log,
                "file validated",
                logging.DEBUG,
                stage="validate",
                dataset=manifest.dataset_id,
                url=info.url,
                verdict=report.verdict,
                codes=[f.code for f in report.findings],
                bytes=0 if was_reused else report.bytes_read,
                seconds=round(time.perf_counter() - file_started, 3),
                reused=was_reused,
            )
    write_batch_document(
        manifest_url, manifest.dataset_id, start, start + len(files), concat_dim, entries,
        settings, storage,
    )  # fmt: skip
    summary = ValidationBatch(
        manifest_url=manifest_url,
        start=start,
        stop=start + len(files),
        files=len(files),
        reused=reused,
        verdicts={v: verdicts[v] for v in ("suitable", "suitable_with_warnings", "unsuitable")},
        findings=dict(sorted(codes.items())),
        bytes_read=bytes_read,
        requests=requests,
        seconds=round(time.perf_counter() - started, 3),
        errors=tuple(errors),
        error_count=error_count,
    )
    emit(
        log,
        "validate batch done",
        stage="validate",
        dataset=manifest.dataset_id,
        batch=[summary.start, summary.stop],
        file_count=summary.files,
        reused=summary.reused,
        bytes=summary.bytes_read,
        requests=summary.requests,
        seconds=summary.seconds,
        verdicts=summary.verdicts,
        findings=summary.findings,
    )
    return summary


def _validate_and_reference(
    info: ObjectInfo,
    settings: Settings,
    storage: Storage,
    group: str | None,
    concat_dim: str,
    refresh: bool,
    writes: Writes,
) -> tuple[FileReport, int | None]:
    """The file's report; and, from the bytes its validation read, its references (their
    size, None when not written). Every read is of the scanned version (Storage.reader's
    etag): a file changed since the scan is validated as it is now, and generate says why it
    has no references."""
    location = parse_location(info.url, settings, what="file")
    if info.size == 0:
        return validate_file(info, settings, storage, group=group, location=location), None
    reader = storage.reader(location, size=info.size, prefetch_index=True, etag=info.etag)
    parsed: list[ManifestGroup] = []

    def also(chosen: h5py.Group, reads: HeaderReads) -> None:
        """The references' ManifestGroup from the file validate has open (else HDFParser
        reads the file's header again from the reader's bytes, as it did before)."""
        try:
            parsed.append(manifest_group(chosen, location.url, reads))
        except PipelineError:
            raise  # storage: the activity retries
        except Exception as exc:  # Declined, or anything else: HDFParser decides
            log.debug("references of %s from HDFParser (%s: %s)", info.url, type(exc).__name__, exc)

    try:
        try:
            report = validate_file(
                info, settings, storage, group=group, reader=reader, also=also, location=location
            )
        except SourceChanged:  # generate says why
            return validate_file(info, settings, storage, group=group, location=location), None
        written = None
        if report.verdict != "unsuitable":
            written = _write_references(
                info, location, settings, storage, group, concat_dim, refresh, reader, writes,
                parsed[0] if parsed else None,
            )  # fmt: skip
    finally:
        reader.close()
    return report, written


def _write_references(
    info: ObjectInfo,
    location: Location,
    settings: Settings,
    storage: Storage,
    group: str | None,
    concat_dim: str,
    refresh: bool,
    reader: AdaptiveReader,
    writes: Writes,
    parsed: ManifestGroup | None = None,
) -> int | None:
    """Write the file's references from ``parsed`` (the group validate's walk built), else
    from what ``reader`` holds; their size, or None where they could not be made. Called for
    a file validated now (its report was not reused), whose references are rarely there
    already (an attempt that stopped between the two writes): they are written again, the
    same, rather than asked for first (a request a file). A failure leaves them to generate,
    which reads the file again and says why (a storage fault is the activity's to retry)."""
    target = Layout.from_settings(settings).references(info.url, info.etag, group)
    try:
        document = build_references(
            info, settings, storage, concat_dim=concat_dim, group=group, reader=reader,
            parsed=parsed, location=location,
        )  # fmt: skip
    except PipelineError as exc:
        if exc.retryable:
            raise
        document = None
    except Exception:  # a library's own failure: generate reports it, as before
        document = None
    if document is None:
        if refresh and storage.exists(target):
            storage.delete([target])  # not this run's: generate writes them again
        return None
    return write_references(info, document, settings, writes, group)


def _stored_report(location: Location, storage: Storage) -> FileReport | None:
    """The report already written at ``location``, or None (absent, unreadable or written by
    an older set of rules: redo it)."""
    try:
        document = storage.read_json(location)
        if document.get("version") != REPORT_VERSION:
            return None
        return FileReport.from_dict(document)
    except SourceNotFound:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring an unreadable stored report %s; validating again", location.url)
        return None


def load_report(
    url: str,
    etag: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    group: str | None = None,
) -> FileReport:
    """The stored report of one file at one ETag (raises SourceNotFound if there is none)."""
    storage = storage or Storage(settings)
    location = Layout.from_settings(settings).report(url, etag, group)
    return FileReport.from_dict(storage.read_json(location))
