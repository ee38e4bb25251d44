"""Run the stages in order on this machine, in batches, the way the orchestrator will.

This is the local stand-in used by the command line until the Durable orchestrator and the
devhost replay runtime take over; every stage call is the same shared/ function the
activities call, with the same small inputs (manifest URL, batch bounds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devhost.progress import Progress
from shared.io.storage import Storage
from shared.model.errors import PipelineError, describe
from shared.model.layout import Layout, run_id_for
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.status import MAX_ERRORS, PHASES
from shared.stages.combine import combine
from shared.stages.gate import gate
from shared.stages.references import generate_batch, rebuild_salt
from shared.stages.register import register
from shared.stages.runreport import summary_location, write_run_report
from shared.stages.scan import load_manifest, scan
from shared.stages.validate.batch import validate_batch
from shared.stages.verify import verify

DEFAULT_BATCH_SIZE = 100
log = logging.getLogger(__name__)


@dataclass
class RunReport:
    request: dict[str, Any]
    run_id: str = ""
    status: str = "running"  # running, succeeded, failed
    manifest_url: str = ""
    files: int = 0
    total_bytes: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    store_url: str = ""
    item_url: str = ""
    catalog_url: str = ""
    report_url: str = ""
    summary_url: str = ""  # the Markdown run report beside the store (shared.stages.runreport)
    errors: list[dict[str, str]] = field(default_factory=list)  # the first few, by file
    error: dict[str, Any] | None = None
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add_errors(self, errors: list[dict[str, str]]) -> None:
        room = MAX_ERRORS - len(self.errors)
        self.errors.extend(
            {k: str(e.get(k) or "") for k in ("url", "code", "message")} for e in errors[:room]
        )

    def to_status(self) -> dict[str, Any]:
        """This report in the shape of the orchestrator's status (RunStatus.to_dict), so
        shared.stages.runreport renders a run of either path the same way."""
        stage = {name: self.stages.get(name) or {} for name in PHASES}
        combined = stage["combine"]
        return {
            "dataset_id": self.request.get("dataset_id"),
            "phase": self.status,
            "run_id": self.run_id,
            "files": {
                "total": self.files,
                "bytes": self.total_bytes,
                "validated": stage["validate"].get("files", 0),
                "unsuitable": stage["validate"].get("unsuitable", 0),
                "generated": stage["generate"].get("files", 0),
                "reused": 0,  # this path has no published base: it processes every file
            },
            "bytes_read": {
                name: stage[name]["bytes_read"]
                for name in ("validate", "generate")
                if "bytes_read" in stage[name]
            },
            "stages": {name: {"seconds": s.get("seconds")} for name, s in self.stages.items()},
            "errors": self.errors,
            "outputs": {
                key: value
                for key, value in (
                    ("manifest_url", self.manifest_url),
                    ("gate_report_url", stage["gate"].get("report_url")),
                    ("gate_summary_url", stage["gate"].get("summary_url")),
                    ("store_url", self.store_url),
                    ("item_url", self.item_url),
                    ("catalog_url", self.catalog_url),
                    ("run_report", self.report_url),
                )
                if value
            },
            "store": {
                "mode": combined.get("mode"),
                "bytes": combined.get("bytes"),
                "references": combined.get("references"),
                "dims": combined.get("dims"),
                "peak_memory_bytes": combined.get("peak_memory_bytes"),
            }
            if combined
            else {},
            "error": self.error,
        }


def _batches(count: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def run_pipeline(
    request: PipelineRequest,
    settings: Settings,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> RunReport:
    """Scan, validate, gate, generate, combine, verify, register. Raises PipelineError on a
    failure after writing the run report (when the failure came after the scan)."""
    progress = progress or Progress(enabled=False)
    storage = Storage(settings)
    layout = Layout.from_settings(settings)
    report = RunReport(request=request.to_dict())
    try:
        progress.start("scan")
        scanned = scan(request, settings, storage)
        report.manifest_url, report.files = scanned.manifest_url, scanned.file_count
        report.total_bytes = scanned.total_bytes
        manifest = load_manifest(scanned.manifest_url, settings, storage)
        full = bool(request.options.get("full"))
        report.run_id = run_id_for(
            manifest.digest, request.format, request.concat_dim, rebuild_salt() if full else ""
        )
        report.report_url = layout.run_report(request.dataset_id, report.run_id).url
        report.summary_url = summary_location(request.dataset_id, report.run_id, settings).url
        report.stages["scan"] = {
            "seconds": progress.finish(
                f"{scanned.file_count} files, {scanned.total_bytes:,} bytes"
            ),
            "files": scanned.file_count,
            "bytes": scanned.total_bytes,
        }
        batches = _batches(scanned.file_count, batch_size)

        progress.start("validate", scanned.file_count)
        read = reused = validated = unsuitable = 0
        for start, stop in batches:
            result = validate_batch(scanned.manifest_url, start, stop, settings, refresh=full)
            read += result.bytes_read
            reused += result.reused
            validated += result.files
            unsuitable += result.verdicts["unsuitable"]
            report.add_errors(result.to_dict()["errors"])
            progress.advance(stop - start)
        report.stages["validate"] = {
            "seconds": progress.finish(f"{read:,} bytes read, {reused} reports reused"),
            "bytes_read": read,
            "reused": reused,
            "files": validated,
            "unsuitable": unsuitable,
        }

        progress.start("gate")
        checked = gate(
            scanned.manifest_url,
            settings,
            storage,
            concat_dim=request.concat_dim,
            store_format=request.format,
            drop_variables=request.drop_variables,
            static_differs=request.static_differs,
        )
        report.stages["gate"] = {
            "seconds": progress.finish(
                f"{checked.suitable + checked.with_warnings} suitable "
                f"({checked.with_warnings} with warnings)"
            ),
            "report_url": checked.report_url,
            "summary_url": checked.summary_url,
            "findings": checked.findings_by_code,
        }

        progress.start("generate", scanned.file_count)
        read = reused = done = 0
        for start, stop in batches:
            generated = generate_batch(
                scanned.manifest_url,
                start,
                stop,
                settings,
                concat_dim=request.concat_dim,
                refresh=full,
            )
            read += generated.bytes_read
            reused += generated.reused
            done += generated.files
            progress.advance(stop - start)
        report.stages["generate"] = {
            "seconds": progress.finish(f"{read:,} bytes read, {reused} references reused"),
            "bytes_read": read,
            "reused": reused,
            "files": done,
        }

        progress.start("combine")
        combined = combine(scanned.manifest_url, request, report.run_id, settings, storage)
        report.store_url = combined.store_url
        report.stages["combine"] = {
            "seconds": progress.finish(f"{combined.dims}"),
            "dims": combined.dims,
            "references": combined.reference_count,
            "peak_memory_bytes": combined.peak_memory_bytes,
            "mode": combined.mode,
            "bytes": combined.store_bytes,
        }

        progress.start("verify")
        verified = verify(
            scanned.manifest_url,
            combined.store_url,
            request.format,
            request.concat_dim,
            settings,
            storage,
            drop_variables=request.drop_variables,
            static_differs=request.static_differs,
        )
        report.stages["verify"] = {
            "seconds": progress.finish(
                f"{verified.mode}: {verified.values_compared:,} values equal to the sources"
            ),
            "mode": verified.mode,
            "values_compared": verified.values_compared,
        }

        progress.start("register")
        registered = register(
            scanned.manifest_url, request, report.run_id, combined.store_url, settings, storage
        )
        report.item_url, report.catalog_url = registered.item_url, registered.catalog_url
        report.stages["register"] = {"seconds": progress.finish(registered.item_url)}
        report.status = "succeeded"
        return report
    except PipelineError as exc:
        if progress.stage and progress.stage not in report.stages:
            # The stage that failed keeps its time, as in the orchestrator's status.
            seconds = progress.finish(failed=True)
            report.stages[progress.stage] = {"seconds": seconds, "failed": True}
        report.status = "failed"
        report.error = describe(exc)
        gated = exc.context.get("gate") or {}
        if gated:  # stopped by the gate: its report and its first errors say why
            report.stages.setdefault("gate", {}).update(
                report_url=gated.get("report_url"), summary_url=gated.get("summary_url")
            )
            report.errors = []
            report.add_errors(gated.get("first_errors") or [])
        if report.report_url:
            exc.context.setdefault("run_report", report.report_url)
            exc.context.setdefault("run_summary", report.summary_url)
        raise
    finally:
        report.finished = datetime.now(UTC).isoformat()
        if report.report_url:
            _write_reports(report, request.dataset_id, settings, storage)


def _write_reports(
    report: RunReport, dataset_id: str, settings: Settings, storage: Storage
) -> None:
    """The JSON run report, then its Markdown page. A failure to write either is logged,
    never raised: it must not hide the run's own outcome."""
    location = Layout.from_settings(settings).run_report(dataset_id, report.run_id)
    try:
        storage.write_json(location, report.to_dict())
        write_run_report(dataset_id, report.run_id, report.to_status(), settings, storage)
    except PipelineError as exc:
        log.warning("could not write the run report of %s: %s", report.run_id, exc)
