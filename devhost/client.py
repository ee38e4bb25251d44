"""The command line's side of the HTTP API: submit a pipeline request and follow its status
URL to the end, feeding the progress display from the orchestrator's custom status. This is
what a user does with curl, in code."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from devhost.progress import Progress
from shared.model.errors import BadRequest, PipelineError
from shared.model.status import PHASES

POLL_SECONDS = 0.25


class RunFailed(PipelineError):
    """The run ended Failed: carries the code of the error the orchestrator recorded."""

    def __init__(
        self, message: str, *, code: str | None, remedy: str | None, **context: Any
    ) -> None:
        super().__init__(message, remedy=remedy, **context)
        self.code = code or "run_failed"  # type: ignore[misc]


def http_json(method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def submit(base_url: str, body: dict[str, Any]) -> str:
    """POST the request; returns the status URL, or raises the API's error as ours."""
    status, answer = http_json("POST", f"{base_url}/api/pipelines", body)
    if status == 202:
        return str(answer["status_url"])
    error = answer.get("error") or {}
    raise BadRequest(
        error.get("message") or f"POST /api/pipelines answered {status}",
        remedy=error.get("remedy"),
        status=status,
        status_url=answer.get("status_url"),
    )


def follow(status_url: str, progress: Progress, timeout: float = 24 * 3600) -> dict[str, Any]:
    """Poll the status URL until the run ends; returns the final view, raises on failure."""
    deadline = time.monotonic() + timeout
    display = _Display(progress)
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, view = http_json("GET", status_url)
        display.update(view)
        if view.get("runtime_status") in ("Completed", "Failed", "Terminated"):
            break
        time.sleep(POLL_SECONDS)
    else:
        raise TimeoutError(f"{status_url} did not finish within {timeout} s")
    if view.get("runtime_status") != "Completed":
        error = view.get("error") or {}
        raise RunFailed(
            error.get("message") or f"The run ended {view.get('runtime_status')}.",
            code=error.get("code"),
            remedy=error.get("remedy"),
            run_report=view.get("run_report"),
            run_summary=view.get("run_summary"),
            gate_report=view.get("gate_summary_url") or view.get("gate_report_url"),
        )
    return view


def _last_stage(stages: dict[str, Any]) -> str | None:
    """The stage the run reached last (the one a failed run failed in)."""
    reached = [name for name in PHASES if name in stages]
    return reached[-1] if reached else None


class _Display:
    """Moves the progress display through every phase the run has reached, in order (a fast
    phase may begin and end between two polls), and to the current file counts."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: str | None = None
        self.done: set[str] = set()

    def update(self, view: dict[str, Any]) -> None:
        files = view.get("files") or {}
        stages = view.get("stages") or {}
        counts = {"validate": files.get("validated", 0), "generate": files.get("generated", 0)}
        # unchanged files are reused, not processed: the bars count the others
        work = max(files.get("total", 0) - files.get("reused", 0), 0)
        ended = view.get("phase") in ("succeeded", "failed")
        self.progress.remaining = (view.get("estimate") or {}).get("run_remaining_seconds")
        for name in PHASES:
            if name not in stages or name in self.done:
                continue
            if self.current != name:
                self.progress.start(name, work if name in counts else 0)
                self.current = name
            if name in counts:
                self.progress.advance(counts[name] - self.progress.done)
            seconds = stages[name]
            if seconds is None and not ended:
                break  # still running
            failed = view.get("phase") == "failed" and name == _last_stage(stages)
            self.progress.finish(seconds=seconds, failed=failed)
            self.done.add(name)
            self.current = None
