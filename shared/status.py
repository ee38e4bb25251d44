"""The pipeline's custom status: what an operator sees while a run is in flight.

Pure data and pure functions (no I/O, no clock): the orchestrator builds it from its own
deterministic state on every step, and the status endpoint and the command line read it.
It stays small whatever the number of files: counts, the current batch, the first few
errors, and URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PHASES = ("scan", "validate", "gate", "generate", "combine", "verify", "register")
MAX_ERRORS = 5


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
    errors: list[dict[str, str]] = field(default_factory=list)  # [{"url","code","message"}]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"started","seconds"}
    outputs: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None

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
                }
                for e in errors[:room]
            )

    def fail(self, error: dict[str, Any], now: datetime) -> None:
        self.end(now)
        self.error = {k: error.get(k) for k in ("code", "message", "remedy", "retryable")}
        self.stages.setdefault(self.phase, {"started": now.isoformat(), "seconds": 0.0})
        self.phase = "failed"

    def succeed(self, now: datetime) -> None:
        self.end(now)
        self.phase = "succeeded"
        self.batch = {}

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
            "error": self.error,
        }


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
