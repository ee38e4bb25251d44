"""The run report for a person: one Markdown page per run, beside the run's store.

The JSON run report (Layout.run_report) is the record a program reads; this page is what an
operator opens after a run, or after a failure at 3am: the outcome and what to do, the counts,
bytes read, the store, the variables it decodes to another dtype than the files (float32-packed
ones: float64 from the store; the JSON record's ``decoded_dtypes`` too), the time of every
stage, links to every artifact, and a row for every file with its verdict and finding codes,
so "which file, and why" needs no other document.

It is built from the run's status (RunStatus.to_dict, the orchestrator's), the
scan manifest and each file's stored validation report (keyed by URL and ETag, so files
reused from the published version have theirs too). Of each report only the verdict, the
finding codes, the first error and the decoded dtypes are kept: 10,000 files make a page of
about 1 MB, not the hundreds of MB the full reports would be.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import PipelineError, SourceNotFound
from shared.model.layout import STORE_SUFFIX, Layout
from shared.model.locations import Location
from shared.model.settings import Settings
from shared.model.wire import RecordAnswer
from shared.stages.scan import ScanManifest, load_manifest
from shared.stages.validate.batch import load_report
from shared.stages.validate.model import FileReport
from shared.stages.validated import stored_reports

log = logging.getLogger(__name__)

SUMMARY_SUFFIX = ".report.md"
READ_WORKERS = 16  # stored reports read at once: enough for blob latency, bounded for 10,000
MESSAGE_CHARS = 300  # of the first error shown per unsuitable file

VERDICT_TEXT = {
    "suitable": "suitable",
    "suitable_with_warnings": "suitable-with-warnings",
    "unsuitable": "unsuitable",
}
NOT_VALIDATED = "not validated"


@dataclass(frozen=True)
class FileVerdict:
    """What the page keeps of one file's validation report: never its variables or
    coordinates, so the verdicts of 10,000 files stay small in memory."""

    verdict: str
    codes: tuple[str, ...] = ()
    first_error: str = ""
    # (variable, the file's decoded dtype, the store's): FileReport.decoded_dtypes
    decoded: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def of(cls, report: FileReport) -> FileVerdict:
        errors = report.errors
        return cls(
            verdict=report.verdict,
            codes=tuple(dict.fromkeys(f.code for f in report.findings)),
            first_error=errors[0].message[:MESSAGE_CHARS] if errors else "",
            decoded=tuple((n, a, b) for n, (a, b) in report.decoded_dtypes().items()),
        )


def summary_location(dataset_id: str, run_id: str, settings: Settings) -> Location:
    """{stores}/{dataset}/{run id}.report.md: beside the store, so it is found where the
    store is. The run id comes before the first '.', so shared.catalog.ledger prunes the page
    together with its run's store. (Computed here rather than in shared.model.layout, which is
    not part of this change; it belongs there as Layout.run_report_markdown.)"""
    return Layout.from_settings(settings).stores.join(dataset_id, f"{run_id}{SUMMARY_SUFFIX}")


def read_verdicts(
    manifest_url: str,
    manifest: ScanManifest,
    settings: Settings,
    storage: Storage,
) -> dict[str, FileVerdict]:
    """The verdict of every file of ``manifest`` that has a stored report, by URL: from
    validate's batch documents (a read a batch), else the file's own report; a file without
    one (never validated, or its report unreadable) is left out and shown as not
    validated."""
    verdicts: dict[str, FileVerdict] = {}
    stored = stored_reports(manifest_url, manifest.dataset_id, manifest.files, settings, storage)
    for url, document in stored.items():
        try:
            verdicts[url] = FileVerdict.of(FileReport.from_dict(document))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("unreadable validation report of %s in a batch document: %s", url, exc)

    def read(info: ObjectInfo) -> tuple[str, FileVerdict | None]:
        try:
            report = load_report(info.url, info.etag, settings, storage, group=manifest.group)
            return info.url, FileVerdict.of(report)
        except SourceNotFound:
            return info.url, None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("unreadable validation report of %s: %s", info.url, exc)
            return info.url, None

    missing = [info for info in manifest.files if info.url not in verdicts]
    with ThreadPoolExecutor(READ_WORKERS) as pool:
        verdicts.update((url, v) for url, v in pool.map(read, missing) if v is not None)
    return verdicts


def record_run(
    dataset_id: str,
    run_id: str,
    status: Mapping[str, Any],
    settings: Settings,
    storage: Storage,
    drop_variables: Collection[str] = (),
) -> RecordAnswer:
    """Write the run report twice: JSON in the work area for programs (the record), then
    the Markdown page beside the store for people. Both say which variables the store
    decodes to another dtype than the files (``decoded_dtypes``; the variables the request
    dropped are not in the store). A page that cannot be written for a reason trying again
    cannot fix is logged, not raised: the store root may be what the run failed on, and the
    JSON record must not be lost for the page's sake."""
    location = Layout.from_settings(settings).run_report(dataset_id, run_id)
    record = {"kind": "run-report", **status}
    files: RunFiles | None = None
    try:
        files = run_files(status, settings, storage)
    except PipelineError as exc:
        storage.write_json(location, record)  # the record, whatever becomes of the rest
        if exc.retryable:
            raise
        log.warning("the run's files not read for its reports: %s", exc)
    decoded = decoded_dtypes(status, files, drop_variables) if files else {}
    if decoded:
        record["decoded_dtypes"] = decoded
    storage.write_json(location, record)
    summary = None
    try:
        summary = write_run_report(
            dataset_id, run_id, status, settings, storage, files=files, decoded=decoded
        ).url
    except PipelineError as exc:
        if exc.retryable:
            raise
        log.warning("run summary not written: %s", exc)
    return RecordAnswer(run_report=location.url, run_summary=summary)


@dataclass(frozen=True)
class RunFiles:
    """The run's files as its reports show them: the manifest (None when the run stopped
    before it, or it is gone), every file's verdict, and the files processed in this run
    (None when not known)."""

    manifest: ScanManifest | None
    verdicts: Mapping[str, FileVerdict]
    processed: Collection[str] | None = None


def run_files(status: Mapping[str, Any], settings: Settings, storage: Storage) -> RunFiles:
    """The manifest when the run got that far (outputs.manifest_url) and the verdict of each
    of its files; when the status names the manifest of the files processed in this run
    (outputs.work_manifest_url, for incremental runs), which those are."""
    outputs = status.get("outputs") or {}
    manifest = _manifest(outputs.get("manifest_url"), settings, storage)
    verdicts = {}
    if manifest:
        verdicts = read_verdicts(outputs["manifest_url"], manifest, settings, storage)
    processed = None
    if manifest and outputs.get("work_manifest_url"):
        work = _manifest(outputs["work_manifest_url"], settings, storage)
        processed = {f.url for f in work.files} if work else None
    return RunFiles(manifest, verdicts, processed)


def decoded_dtypes(
    status: Mapping[str, Any], files: RunFiles, drop_variables: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """The variables the run's store decodes to another dtype than its files do (packed
    with float32 attributes: the files float32, the store float64), by name: ``store``,
    ``files``, ``file_count`` (how many files say so) and ``code``. Empty when the run made
    no store."""
    if not (status.get("outputs") or {}).get("store_url") or files.manifest is None:
        return {}
    decoded: dict[str, dict[str, Any]] = {}
    for info in files.manifest.files:
        verdict = files.verdicts.get(info.url)
        for name, file_dtype, store_dtype in verdict.decoded if verdict else ():
            if name in drop_variables:
                continue
            entry = decoded.setdefault(
                name,
                {
                    "store": store_dtype,
                    "files": file_dtype,
                    "file_count": 0,
                    "code": "packed_single_precision",
                },
            )
            entry["file_count"] += 1
    return decoded


def write_run_report(
    dataset_id: str,
    run_id: str,
    status: Mapping[str, Any],
    settings: Settings,
    storage: Storage | None = None,
    *,
    files: RunFiles | None = None,
    decoded: Mapping[str, Mapping[str, Any]] | None = None,
) -> Location:
    """Render the run's page and write it beside the store; returns where it is. ``files``
    (run_files) and ``decoded`` (decoded_dtypes) are read here when not given."""
    storage = storage or Storage(settings)
    layout = Layout.from_settings(settings)
    outputs = dict(status.get("outputs") or {})
    outputs.setdefault("run_report", layout.run_report(dataset_id, run_id).url)
    files = files or run_files(status, settings, storage)
    if decoded is None:
        decoded = decoded_dtypes(status, files)
    text = render_run_report(
        {**status, "dataset_id": dataset_id, "run_id": run_id, "outputs": outputs},
        files.manifest,
        files.verdicts,
        processed=files.processed,
        decoded=decoded,
    )
    location = summary_location(dataset_id, run_id, settings)
    storage.write(location, text.encode(), "text/markdown")
    return location


def _manifest(url: str | None, settings: Settings, storage: Storage) -> ScanManifest | None:
    if not url:
        return None
    try:
        return load_manifest(url, settings, storage)
    except SourceNotFound:
        log.warning("the manifest %s is gone: the run report lists no files", url)
        return None


# -- rendering (pure) ---------------------------------------------------------------------
def render_run_report(
    status: Mapping[str, Any],
    manifest: ScanManifest | None,
    verdicts: Mapping[str, FileVerdict],
    *,
    processed: Collection[str] | None = None,
    decoded: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The Markdown page of one run. ``status`` has the shape of RunStatus.to_dict();
    ``verdicts`` maps file URLs to their verdicts (a file missing from it was not
    validated); ``processed`` names the files validated and generated in this run (the
    others were reused), or is None when that is not known: the column is then left out;
    ``decoded`` the variables the store decodes to another dtype (decoded_dtypes)."""
    lines = [*_outcome(status), *_warnings(status.get("warnings") or [])]
    lines += _summary(status, manifest, verdicts)
    lines += _decoded(decoded or {})
    lines += _timings(status.get("stages") or {})
    lines += _links(status.get("outputs") or {})
    lines += _errors(status.get("errors") or [])
    lines += _files(manifest, verdicts, processed)
    return "\n".join(lines).rstrip() + "\n"


def cell(value: object) -> str:
    """One Markdown table cell: a '|' or a line break in a file name or a message would
    otherwise split the row or end the table."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def _row(*cells: object) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def _outcome(status: Mapping[str, Any]) -> list[str]:
    lines = [f"# Run report: {status.get('dataset_id')}, run {status.get('run_id')}", ""]
    phase = status.get("phase")
    error = status.get("error") or {}
    if phase == "succeeded":
        lines.append("**Succeeded.**")
    elif phase == "failed":
        stages = list(status.get("stages") or {})
        where = f" at {stages[-1]}" if stages else ""
        lines.append(f"**Failed{where}** [{error.get('code')}]: {error.get('message')}")
        if error.get("remedy"):
            lines += ["", f"What to do: {error['remedy']}"]
    else:
        lines.append(f"**Not finished** (phase {phase}).")
    return [*lines, ""]


def _warnings(warnings: list[Mapping[str, Any]]) -> list[str]:
    """What a run that published must still tell its operator (an unknown license)."""
    if not warnings:
        return []
    lines = ["## Warnings", ""]
    for warning in warnings:
        line = f"- **{warning.get('code')}**: {warning.get('message')}"
        if warning.get("remedy"):
            line += f" What to do: {warning['remedy']}"
        lines.append(line)
    return [*lines, ""]


def _summary(
    status: Mapping[str, Any], manifest: ScanManifest | None, verdicts: Mapping[str, FileVerdict]
) -> list[str]:
    files = status.get("files") or {}
    total = files.get("bytes") or 0
    rows: list[tuple[str, object]] = [
        ("files", files.get("total", 0)),
        ("validated in this run", files.get("validated", 0)),
        ("reused (unchanged since the published version)", files.get("reused", 0)),
        ("unsuitable", files.get("unsuitable", 0)),
        ("generated in this run", files.get("generated", 0)),
    ]
    if manifest is not None:
        counts = Counter(
            verdicts[f.url].verdict if f.url in verdicts else NOT_VALIDATED for f in manifest.files
        )
        order = [*VERDICT_TEXT, *sorted(set(counts) - set(VERDICT_TEXT))]
        rows.append(
            (
                "verdicts",
                ", ".join(f"{counts[v]} {VERDICT_TEXT.get(v, v)}" for v in order if counts[v]),
            )
        )
        rows.append(("source", manifest.source))
    rows.append(("total size", _bytes(total)))
    for stage, read in (status.get("bytes_read") or {}).items():
        share = f" ({100 * read / total:.1f}% of the files)" if total else ""
        rows.append((f"bytes read to {stage}", f"{read:,}{share}"))
    store = status.get("store") or {}
    store_url = (status.get("outputs") or {}).get("store_url") or ""
    if store or store_url:
        fmt = next((f for f, suffix in STORE_SUFFIX.items() if store_url.endswith(suffix)), "?")
        rows.append(("store format", fmt))
        rows.append(("store mode", store.get("mode") or "?"))
        if store.get("bytes") is not None:
            rows.append(("store size", _bytes(store["bytes"])))
        if store.get("references") is not None:
            rows.append(("references", f"{store['references']:,}"))
        if store.get("dims"):
            rows.append(("dims", ", ".join(f"{k}={v}" for k, v in store["dims"].items())))
        if store.get("chunks"):
            rows.append(("chunks", ", ".join(f"{k} {'x'.join(map(str, v))}"
                                             for k, v in store["chunks"].items())))  # fmt: skip
        if store.get("peak_memory_bytes") is not None:
            rows.append(("peak memory (combine)", _bytes(store["peak_memory_bytes"])))
    return ["## Summary", "", "| | |", "|---|---|", *(_row(k, v) for k, v in rows), ""]


def _decoded(decoded: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not decoded:
        return []
    names = ", ".join(f"`{name}`" for name in decoded)
    rows = [
        _row(f"`{name}`", d.get("store"), d.get("files"), d.get("file_count"))
        for name, d in decoded.items()
    ]
    return [
        "## Decoded dtypes",
        "",
        f"The store decodes {names} to float64, where netCDF4 and xarray decode the files to "
        "float32: the files pack them with float32 scale_factor/add_offset, and the store "
        "keeps those attributes as JSON numbers, which carry no precision. The values agree "
        "within float32 rounding (one float32 ulp at |value| + |add_offset|), with the same "
        "missing values, which verify checks for every value it compares "
        "(packed_single_precision in docs/findings.md).",
        "",
        "| variable | store | files | files packed so |",
        "|---|---|---|---:|",
        *rows,
        "",
    ]


def _bytes(count: int) -> str:
    return f"{count:,} bytes ({count / 2**20:.1f} MiB)"


def _timings(stages: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seconds = {name: stage.get("seconds") for name, stage in stages.items()}
    total = sum(s for s in seconds.values() if s is not None)
    rows = [_row(name, "-" if s is None else f"{s:.2f}") for name, s in seconds.items()]
    return [
        "## Timings",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *rows,
        f"| **total** | **{total:.2f}** |",
        "",
    ]


LINKS = (
    ("manifest", "manifest_url"),
    ("gate report (JSON)", "gate_report_url"),
    ("gate report (Markdown)", "gate_summary_url"),
    ("store", "store_url"),
    ("STAC item", "item_url"),
    ("catalog", "catalog_url"),
    ("run report (JSON)", "run_report"),
)


def _links(outputs: Mapping[str, Any]) -> list[str]:
    links = [f"- {label}: {outputs[key]}" for label, key in LINKS if outputs.get(key)]
    return ["## Links", "", *(links or ["- (none: the run stopped before writing any)"]), ""]


def _errors(errors: list[Mapping[str, Any]]) -> list[str]:
    if not errors:
        return []
    rows = [_row(e.get("url", ""), e.get("code", ""), e.get("message", "")) for e in errors]
    return ["## First errors", "", "| file | code | message |", "|---|---|---|", *rows, ""]


def _files(
    manifest: ScanManifest | None,
    verdicts: Mapping[str, FileVerdict],
    processed: Collection[str] | None,
) -> list[str]:
    if manifest is None:
        return ["## Files", "", "The scan manifest is not available: no file list.", ""]
    processed = set(processed) if processed is not None else None
    head = ["#", "file", "size", "ETag", "verdict", "findings"]
    align = ["---:", "---", "---:", "---", "---", "---"]
    if processed is not None:
        head.insert(5, "this run")
        align.insert(5, "---")
    lines = [f"## Files ({len(manifest.files)})", "", _row(*head), "|" + "|".join(align) + "|"]
    prefix = manifest.source.rstrip("/") + "/"
    for number, info in enumerate(manifest.files, 1):
        verdict = verdicts.get(info.url)
        findings = ", ".join(verdict.codes) if verdict else ""
        if verdict and verdict.first_error:
            findings += f" ({verdict.first_error})"
        row = [
            number,
            info.url.removeprefix(prefix),
            f"{info.size:,}",
            info.etag,
            VERDICT_TEXT.get(verdict.verdict, verdict.verdict) if verdict else NOT_VALIDATED,
            findings,
        ]
        if processed is not None:
            row.insert(5, "processed" if info.url in processed else "reused")
        lines.append(_row(*row))
    return [*lines, ""]
