"""The dataset watcher: one eternal orchestration per dataset (instance id
``watch-<dataset>``) that turns a stream of upload events into as few pipeline runs as
possible. It only decides (no I/O, no clock but context.current_utc_datetime); the state and
its rules are in shared/ingest/watch.py, the routing of events in shared/ingest/events.py.

    idle        wait for a "blob_created" event
    waiting     until the quiet period (or the maximum wait) is over, absorbing events
    checking    check_changes: does the source differ from the published version?
    starting    start_run: a client start of ``pipeline-<dataset>`` (api/runs.py), the same
                rule as the HTTP starter's; a run already in progress (one started over
                HTTP) is never replaced: the watcher checks again after the quiet period
    running     follow the run (run_status every poll interval) until it ends
    -> a change check is owed after every run

No upload is lost, whatever the interleaving. Every event either reaches the state (absorbed:
the window opens, so a listing comes after it), or is collapsed by the runtime into a later
event that is absorbed, or is dropped together with a continue-as-new, which happens only
while a listing is owed (a window is open or a run is in progress) and so still comes after
it. A wait that lost to a timer stays open in the runtime and takes the next event when
nothing newer waits (during an activity): the watcher keeps every wait it made and absorbs
what any of them received after each step, and never re-yields one (the extension's shim
awaits actions in order: a re-yielded wait would hold back every action after it).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared.ingest.events import FileChange
from shared.ingest.watch import WatchState
from shared.model.plan import PipelineInput, RunPolicy
from shared.model.request import PipelineRequest
from shared.model.status import fit_custom_status
from shared.model.telemetry import emit
from shared.model.versions import version_of
from shared.model.wire import (
    ChangesAnswer,
    ChangesInput,
    ErrorInfo,
    RunStatusAnswer,
    RunStatusInput,
    StartRunAnswer,
    StartRunInput,
    Wire,
    answer,
)

log = logging.getLogger(__name__)
bp = df.Blueprint()

EVENT = "blob_created"
# Continue as new after this many turns of the loop (events, timers, polls), at the first
# turn where a listing is owed: the history stays small and no event can be lost.
TURNS_PER_GENERATION = 50
# A run failure carries its code: the same files are not tried again until another upload,
# unless another attempt on the same files can cure it.
_TRANSIENT = ("retries_exhausted", "storage_unavailable", "orchestration_terminated")


class Uploads:
    """Every wait for an upload event this execution made, and what they received."""

    def __init__(self, context: df.DurableOrchestrationContext) -> None:
        self.context = context
        self.open: list[Any] = []

    def wait(self) -> Any:
        """A new wait (never one already yielded)."""
        task = self.context.wait_for_external_event(EVENT)
        self.open.append(task)
        return task

    def received(self) -> list[dict[str, Any]]:
        """The events any open wait received since the last call, oldest wait first."""
        done = [task for task in self.open if task.is_completed]
        self.open = [task for task in self.open if not task.is_completed]
        return [task.result for task in done if isinstance(task.result, dict)]


@bp.orchestration_trigger(context_name="context")
def dataset_watcher(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    state = WatchState.from_dict(context.get_input())
    uploads = Uploads(context)
    watch = _Watch(context, state, uploads)
    turns = 0
    while True:
        turns += 1
        limit = state.config.get("turns_per_generation", TURNS_PER_GENERATION)
        if turns > limit and (state.owed or state.running):
            watch.absorb()
            watch.show("waiting" if not state.running else "running")
            context.continue_as_new(state.to_dict())
            return
        now = context.current_utc_datetime
        if state.running:
            yield from watch.follow_run()
        elif not state.owed:
            watch.show("idle")
            yield uploads.wait()
        elif now < state.due():
            watch.show("waiting")
            timer = context.create_timer(state.due())
            winner = yield context.task_any([uploads.wait(), timer])
            if winner is not timer:
                timer.cancel()
        else:
            yield from watch.check_and_start()
        watch.absorb()


class _Watch:
    """The watcher's steps over one state; each yields Durable tasks only."""

    def __init__(
        self, context: df.DurableOrchestrationContext, state: WatchState, uploads: Uploads
    ) -> None:
        self.context = context
        self.state = state
        self.uploads = uploads

    def show(self, phase: str) -> None:
        status = self.state.status(phase, self.context.current_utc_datetime)
        # which release started it (kept for ever: docs/versioning.md, "Retiring")
        status["orchestration_version"] = version_of(self.context)
        self.context.set_custom_status(fit_custom_status(status))

    def note(self, message: str, **fields: Any) -> None:
        if not self.context.is_replaying:
            emit(
                log,
                message,
                stage="watch",
                dataset=self.state.dataset_id,
                instance_id=self.context.instance_id,
                **fields,
            )

    def absorb(self) -> None:
        """Take in every event received since the last step."""
        for change in self.uploads.received():
            self.state.config = change.get("config") or self.state.config  # as of the event
            upload = FileChange.from_dict(change["change"])
            verdict = self.state.absorb(upload, self.context.current_utc_datetime)
            self.note(f"upload event: {verdict}", url=upload.url, verdict=verdict)

    def _retry(self) -> df.RetryOptions:
        policy = self.state.config["policy"]
        return df.RetryOptions(policy["retry_first_interval_ms"], policy["retry_max_attempts"])

    def _call[W: Wire](
        self, name: str, payload: Wire, kind: type[W]
    ) -> Generator[Any, Any, W | ErrorInfo]:
        """One activity with the retries; their running out is an answer, not a crash."""
        try:
            result = yield self.context.call_activity_with_retry(
                name, self._retry(), payload.to_dict()
            )
        except Exception as exc:
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "failed"
            return ErrorInfo(code="retries_exhausted", message=f"{name}: {message}")
        return answer(kind, result)

    def _fields(self) -> dict[str, str]:
        return {"dataset": self.state.dataset_id, "instance_id": self.context.instance_id}

    def check_and_start(self) -> Generator[Any, Any, None]:
        """The window is over: ask whether anything changed, start the run if so."""
        state, context = self.state, self.context
        self.show("checking")
        request = PipelineRequest.from_dict(state.config["request"])
        checked = yield from self._call(
            "check_changes", ChangesInput(request=request, **self._fields()), ChangesAnswer
        )
        now = context.current_utc_datetime
        # The listing covered everything before it; what arrived during it opens a new window.
        state.close_window(now, recheck=False)
        if isinstance(checked, ErrorInfo):
            state.last_check = {"at": now.isoformat(), "error": checked.to_dict()}
            transient = checked.code in _TRANSIENT
            if transient:
                state.close_window(now, recheck=True)  # try again after the quiet period
            self.note("change check failed", code=checked.code, again=transient)
            return
        state.last_check = {
            "at": now.isoformat(),
            "file_count": checked.file_count,
            "new": checked.new,
            "modified": checked.modified,
            "removed": checked.removed,
            "examples": checked.examples,
        }
        if not checked.changed or checked.listing_digest == state.failed_listing:
            state.checks_without_change += 1
            self.note(
                "nothing to publish"
                if not checked.changed
                else "same files as the last failed run: waiting for another upload",
                file_count=checked.file_count,
            )
            return
        self.show("starting")
        run = PipelineInput(request, RunPolicy.from_dict(state.config["policy"]))
        started = yield from self._call(
            "start_run", StartRunInput(run=run, **self._fields()), StartRunAnswer
        )
        now = context.current_utc_datetime
        if isinstance(started, ErrorInfo) or not started.started:
            # Another run of the dataset is in progress (or the start failed): never replace
            # it; check again after the quiet period, when it may have ended.
            busy = None if isinstance(started, ErrorInfo) else started.runtime_status
            state.close_window(now, recheck=True)
            state.last_start = {
                "at": now.isoformat(),
                "started": False,
                "busy": busy,
                "error": started.to_dict() if isinstance(started, ErrorInfo) else None,
            }
            self.note(
                "pipeline run could not be started"
                if isinstance(started, ErrorInfo)
                else "pipeline run not started: another run of the dataset is in progress",
                run_status=busy,
            )
            return
        state.running = {
            "instance_id": started.instance_id,
            "started": now.isoformat(),
            "listing_digest": checked.listing_digest,
        }
        state.last_start = {"at": now.isoformat(), "started": True}
        self.note("pipeline run starts", new=checked.new, modified=checked.modified)

    def follow_run(self) -> Generator[Any, Any, None]:
        """Wait one poll interval (absorbing uploads), then ask whether the run has ended."""
        state, context = self.state, self.context
        self.show("running")
        timer = context.create_timer(
            context.current_utc_datetime + timedelta(seconds=state.poll_seconds)
        )
        winner = yield context.task_any([self.uploads.wait(), timer])
        if winner is not timer:
            timer.cancel()
            return
        running = state.running or {}
        polled = yield from self._call(
            "run_status",
            RunStatusInput(run_instance_id=running["instance_id"], **self._fields()),
            RunStatusAnswer,
        )
        if isinstance(polled, ErrorInfo) or not polled.finished:
            return
        self.finished(running, polled)

    def finished(self, running: dict[str, Any], run: RunStatusAnswer) -> None:
        state, now = self.state, self.context.current_utc_datetime
        published = run.runtime_status == "Completed" and run.phase == "succeeded"
        error = run.error or {}
        state.runs += 1
        state.running = None
        state.last_run = {
            "instance_id": running["instance_id"],
            "started": running["started"],
            "ok": published,
            "phase": run.phase,
            "run_id": run.run_id,
            "files": run.files,
            "reused": run.reused,
            "item_url": run.item_url,
        }
        if error:
            state.last_run["error"] = f"[{error.get('code')}] {error.get('message')}"[:500]
        # Failed (not for a transient reason), rejected or expired: not rebuilt from the same
        # files until another upload.
        retry_same_files = published or error.get("code") in _TRANSIENT
        state.failed_listing = None if retry_same_files else running["listing_digest"]
        state.close_window(now, recheck=True)
        self.note(
            f"pipeline run {run.phase or run.runtime_status}",
            run_id=run.run_id,
            runtime_status=run.runtime_status,
            files=run.files,
        )
