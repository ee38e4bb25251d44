"""The pipeline's custom status: what an operator sees while a run is in flight.

Pure data and pure functions (no I/O, no clock): the orchestrator builds it from its own
deterministic state on every step, and the status endpoint and the command line read it.
It stays small whatever the number of files: counts, the current batch, the first few
errors, and URLs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PHASES = (
    "scan",
    "validate",
    "gate",
    "generate",
    "combine",
    "verify",
    "awaiting_approval",
    "register",
)
AWAITING_APPROVAL = "awaiting_approval"
MAX_ERRORS = 5
# Rough per-file cost of the single-activity stages, from bench/combine_memory.py (2 cores,
# 1,000-10,000 files: combine 14-15 ms, sampled verify 52-60 ms a file). The estimate of
# time remaining uses them until the stage's own timing is known.
SECONDS_PER_FILE = {"combine": 0.015, "verify": 0.06, "register": 0.002}
# The Durable extension refuses a custom status whose JSON, written compactly as JSON.NET
# writes it, is 17 KB or more in UTF-16, i.e. about 8,700 ASCII characters
# (MessagePayloadDataConverter.Serialize with MaxCustomStatusPayloadSizeInKB 16: it fails
# when floor(UTF-16 bytes / 1024) > 16); the orchestration that sets it fails. We keep ours
# within 16 KB of UTF-16.
CUSTOM_STATUS_LIMIT_UTF16 = 17 * 1024
CUSTOM_STATUS_BUDGET_UTF16 = 16 * 1024
TRIMMED = (
    "Shortened to fit Azure's limit on a custom status (16 KB of UTF-16); the run report "
    "(outputs.run_report, written when the run ends) has everything."
)


@dataclass
class RunStatus:
    dataset_id: str
    phase: str = "starting"
    run_id: str = ""
    files_total: int = 0
    bytes_total: int = 0
    files_validated: int = 0
    files_unsuitable: int = 0
    files_generated: int = 0
    files_reused: int = 0  # unchanged since the published version: not processed again
    bytes_read: dict[str, int] = field(default_factory=dict)  # per stage: validate, generate
    batch: dict[str, Any] = field(default_factory=dict)  # {"stage", "current", "total"}
    # [{"url", "code", "message"}, and "variable" when a finding names one]
    errors: list[dict[str, str]] = field(default_factory=list)
    # {"started", "seconds"} and, on the stage that failed, "failed": true
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    # what combine built: {"mode", "bytes", "references", "dims", "peak_memory_bytes", "chunks"}
    store: dict[str, Any] = field(default_factory=dict)
    # {"stage_remaining_seconds", "run_remaining_seconds", "basis"}: see estimate()
    estimate: dict[str, Any] = field(default_factory=dict)
    # {"required", "state": awaiting/approved/rejected/expired, "deadline", "by", "reason", "at"}
    approval: dict[str, Any] = field(default_factory=dict)
    # what a run that published must still tell its operator: [{"code", "message", "remedy"}]
    # (an unknown license: shared.catalog.stac.licenses)
    warnings: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    # the orchestration version of the run ("" before versioning: docs/versioning.md), so an
    # operator listing what is in flight before a deploy sees which release started it
    orchestration_version: str = ""

    def begin(self, phase: str, now: datetime) -> None:
        self.end(now)
        self.phase = phase
        self.batch = {}
        self.stages[phase] = {"started": now.isoformat(), "seconds": None}

    def end(self, now: datetime) -> None:
        current = self.stages.get(self.phase)
        if current is not None and current.get("seconds") is None:
            started = datetime.fromisoformat(current["started"])
            current["seconds"] = round((now - started).total_seconds(), 3)

    def add_errors(self, errors: list[dict[str, str]]) -> None:
        room = MAX_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(
                {
                    "url": e.get("url", ""),
                    "code": e.get("code", ""),
                    "message": e.get("message", ""),
                    # the variable a finding names (the gate's), so the operator page and
                    # the status show file, variable and rule together
                    **({"variable": e["variable"]} if e.get("variable") else {}),
                }
                for e in errors[:room]
            )

    def estimate_remaining(self, now: datetime) -> None:
        """Update ``estimate``: the time left in the current stage and in the run, from the
        rate of the current fan-out (files done per second so far; generate is assumed to
        go at validate's pace) and SECONDS_PER_FILE for combine, verify and register. None
        where there is nothing to go on yet (no file done)."""
        current = self.stages.get(self.phase)
        if current is None or self.phase not in PHASES:
            self.estimate = {}
            return
        elapsed = (now - datetime.fromisoformat(current["started"])).total_seconds()
        work = max(self.files_total - self.files_reused, 0)
        done = {"validate": self.files_validated, "generate": self.files_generated}
        rate: float | None = None
        if done.get(self.phase):
            rate = elapsed / done[self.phase]
        elif self.phase == "generate" and "validate" in self.stages and work:
            rate = (self.stages["validate"].get("seconds") or 0.0) / work
        stage_left: float | None
        if self.phase in done:
            stage_left = None if rate is None else rate * max(work - done[self.phase], 0)
        elif self.phase in SECONDS_PER_FILE:
            stage_left = max(SECONDS_PER_FILE[self.phase] * self.files_total - elapsed, 0.0)
        else:
            stage_left = 0.0
        later = PHASES[PHASES.index(self.phase) + 1 :]
        run_left = stage_left
        for phase in later:
            if run_left is None:
                break
            if phase == "generate":
                run_left = None if rate is None else run_left + rate * work
            else:
                run_left += SECONDS_PER_FILE.get(phase, 0.0) * self.files_total
        self.estimate = {
            "stage_remaining_seconds": None if stage_left is None else round(stage_left, 1),
            "run_remaining_seconds": None if run_left is None else round(run_left, 1),
            "basis": "files done so far in this stage; combine, verify and register from "
            "measured seconds per file",
        }

    def fail(self, error: dict[str, Any], now: datetime) -> None:
        self.end(now)
        self.error = {k: error.get(k) for k in ("code", "message", "remedy", "retryable")}
        failed = self.stages.setdefault(self.phase, {"started": now.isoformat(), "seconds": 0.0})
        failed["failed"] = True  # the stage that failed keeps its time, marked
        self.phase = "failed"
        self.estimate = {}

    def end_unpublished(self, outcome: str, now: datetime) -> None:
        """The run built and verified a store but publishes nothing: rejected or expired."""
        self.end(now)
        self.phase = outcome
        self.batch = {}
        self.estimate = {}

    def succeed(self, now: datetime) -> None:
        self.end(now)
        self.phase = "succeeded"
        self.batch = {}
        self.estimate = {}

    def custom_status(self) -> dict[str, Any]:
        """What the orchestrator shows while it runs: to_dict(), fitted to Azure's limit."""
        return fit_custom_status(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "phase": self.phase,
            "run_id": self.run_id,
            "files": {
                "total": self.files_total,
                "bytes": self.bytes_total,
                "validated": self.files_validated,
                "unsuitable": self.files_unsuitable,
                "generated": self.files_generated,
                "reused": self.files_reused,
            },
            "bytes_read": self.bytes_read,
            "batch": self.batch,
            "errors": self.errors,
            "stages": self.stages,
            "outputs": self.outputs,
            "store": self.store,
            "estimate": self.estimate,
            "approval": self.approval,
            "warnings": self.warnings,
            "error": self.error,
            "orchestration_version": self.orchestration_version,
        }


def custom_status_size(value: Any) -> int:
    """The size the extension measures: compact JSON, non-ASCII kept, in UTF-16 bytes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-16-le"))


def fit_custom_status(
    value: dict[str, Any], budget: int = CUSTOM_STATUS_BUDGET_UTF16
) -> dict[str, Any]:
    """``value`` if it fits the budget; else a copy with long strings shortened in the
    middle (the start and the end of a URL or a message are what identify it), then lists
    cut to their first items, until it fits; it says so in "trimmed". Counts, phases, codes
    and short fields are never touched."""
    if custom_status_size(value) <= budget:
        return value
    fitted: Any = value
    for longest in (400, 200, 120, 80, 48):
        fitted = _shorten(fitted, longest)
        if custom_status_size({**fitted, "trimmed": TRIMMED}) <= budget:
            return {**fitted, "trimmed": TRIMMED}
    for items in (3, 1, 0):
        fitted = _cut_lists(fitted, items)
        if custom_status_size({**fitted, "trimmed": TRIMMED}) <= budget:
            return {**fitted, "trimmed": TRIMMED}
    keep = ("dataset_id", "phase", "run_id", "files", "kind", "runs", "updated")
    return {k: value[k] for k in keep if k in value} | {"trimmed": TRIMMED}


def _shorten(value: Any, longest: int) -> Any:
    if isinstance(value, str) and len(value) > longest:
        half = (longest - 1) // 2
        return f"{value[:half]}\u2026{value[-half:]}"
    if isinstance(value, dict):
        return {k: _shorten(v, longest) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, longest) for v in value]
    return value


def _cut_lists(value: Any, items: int) -> Any:
    if isinstance(value, dict):
        return {k: _cut_lists(v, items) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_lists(v, items) for v in value[:items]]
    return value


def stage_seconds(custom_status: dict[str, Any]) -> dict[str, float | None]:
    return {name: s.get("seconds") for name, s in (custom_status.get("stages") or {}).items()}


def pipeline_view(durable: dict[str, Any]) -> dict[str, Any]:
    """What GET /api/pipelines/{id} answers, from the Durable status of the instance: never
    the Durable management URLs (they carry the system key)."""
    custom = durable.get("customStatus") or {}
    if isinstance(custom, str):
        custom = {}
    outputs = custom.get("outputs") or {}
    runtime = durable.get("runtimeStatus")
    view: dict[str, Any] = {
        "instance_id": durable.get("instanceId"),
        "dataset_id": custom.get("dataset_id"),
        "runtime_status": runtime,
        "phase": custom.get("phase", "pending" if runtime == "Pending" else "starting"),
        "run_id": custom.get("run_id") or None,
        "files": custom.get("files") or {},
        "bytes_read": custom.get("bytes_read") or {},
        "batch": custom.get("batch") or {},
        "errors": custom.get("errors") or [],
        "stages": stage_seconds(custom),
        "store": custom.get("store") or {},
        "estimate": custom.get("estimate") or {},
        "approval": custom.get("approval") or {},
        "warnings": custom.get("warnings") or [],
        "created": durable.get("createdTime"),
        "last_updated": durable.get("lastUpdatedTime"),
        **{key: outputs[key] for key in sorted(outputs)},
    }
    if custom.get("error"):
        view["error"] = custom["error"]
    elif runtime in ("Failed", "Terminated"):
        view["error"] = {
            "code": "orchestration_" + runtime.lower(),
            "message": durable.get("output"),
        }
    return view


def watcher_view(durable: dict[str, Any]) -> dict[str, Any]:
    """What GET /api/pipelines/watch-<dataset> answers: the upload watcher's state (phase,
    pending changes, when the next check is due, the last run and the last check)."""
    custom = durable.get("customStatus") or {}
    if isinstance(custom, str):
        custom = {}
    return {
        "instance_id": durable.get("instanceId"),
        "runtime_status": durable.get("runtimeStatus"),
        **{k: v for k, v in custom.items() if k != "kind"},
        "created": durable.get("createdTime"),
        "last_updated": durable.get("lastUpdatedTime"),
    }


def release_view(durable: dict[str, Any]) -> dict[str, Any]:
    """What GET /api/pipelines/release-<dataset> answers: the release operation (unpublish or
    cleanup of a version), its step, and its result or error once it has ended."""
    custom = durable.get("customStatus") or {}
    if isinstance(custom, str):
        custom = {}
    view: dict[str, Any] = {
        "instance_id": durable.get("instanceId"),
        "runtime_status": durable.get("runtimeStatus"),
        **{k: v for k, v in custom.items() if k != "kind"},
        "created": durable.get("createdTime"),
        "last_updated": durable.get("lastUpdatedTime"),
    }
    output = durable.get("output")
    if durable.get("runtimeStatus") == "Completed" and isinstance(output, dict):
        if output.get("ok"):
            view["result"] = {k: v for k, v in output.items() if k != "ok"}
        else:
            view["error"] = output.get("error")
    elif durable.get("runtimeStatus") in ("Failed", "Terminated"):
        view["error"] = {
            "code": "orchestration_" + str(durable.get("runtimeStatus")).lower(),
            "message": durable.get("output"),
        }
    return view
