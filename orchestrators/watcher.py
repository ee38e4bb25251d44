"""The dataset watcher: one eternal orchestration per dataset (instance id
``watch-<dataset>``) that turns a stream of upload events into as few pipeline runs as
possible. It only decides (no I/O, no clock but context.current_utc_datetime); the state and
its rules are in shared/watch.py, the routing of events in shared/events.py.

    idle        wait for a "blob_created" event
    waiting     until the quiet period (or the maximum wait) is over, absorbing events
    checking    check_changes: does the source differ from the published version?
    running     the pipeline, as the sub-orchestration ``pipeline-<dataset>``
    -> continue-as-new with a fresh history (a change check is owed after every run)

Events that arrive during a run wait in the runtime's buffer (the Python SDK keeps only the
last one of a name) or are dropped by continue-as-new; that is safe because the check after
every run lists the source prefix: the follow-up run includes whatever was uploaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.events import FileChange
from shared.telemetry import emit
from shared.watch import WatchState

log = logging.getLogger(__name__)
bp = df.Blueprint()

EVENT = "blob_created"
EVENTS_PER_GENERATION = 50  # continue-as-new after this many events: the history stays small
PIPELINE = "pipeline"
# A pipeline failure carries its code ("[unsuitable_collection] ..."): the same files are not
# tried again until another upload. Anything else means the run could not start (another
# run of the dataset was in progress): check again after the quiet period.
_PIPELINE_FAILURE = re.compile(r"\[([a-z_]+)\] ")
# Failures that another attempt on the same files can cure: checked again after the quiet
# period instead of waiting for the next upload.
_TRANSIENT = ("retries_exhausted", "storage_unavailable")


def watcher_id(dataset_id: str) -> str:
    return f"watch-{dataset_id}"


@bp.orchestration_trigger(context_name="context")
def dataset_watcher(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    state = WatchState.from_dict(context.get_input())
    dataset = state.dataset_id
    handled = 0

    def show(phase: str) -> None:
        context.set_custom_status(state.status(phase, context.current_utc_datetime))

    def note(message: str, **fields: Any) -> None:
        if not context.is_replaying:
            emit(
                log,
                message,
                stage="watch",
                dataset=dataset,
                instance_id=context.instance_id,
                **fields,
            )

    while True:
        now = context.current_utc_datetime
        if not state.owed:
            show("idle")
            change = yield context.wait_for_external_event(EVENT)
        elif now < state.due():
            show("waiting")
            timer = context.create_timer(state.due())
            event = context.wait_for_external_event(EVENT)
            winner = yield context.task_any([event, timer])
            if winner is not event:
                continue  # the quiet period is over: check on the next turn
            timer.cancel()
            change = event.result
        else:
            yield from _check_and_run(context, state, show, note)
            context.continue_as_new(state.to_dict())
            return
        state.config = change.get("config") or state.config  # the registry as of this event
        upload = FileChange.from_dict(change["change"])
        verdict = state.absorb(upload, context.current_utc_datetime)
        handled += 1
        note(f"upload event: {verdict}", url=upload.url, verdict=verdict)
        if handled >= EVENTS_PER_GENERATION:
            show("waiting")
            context.continue_as_new(state.to_dict())
            return


def _check_and_run(
    context: df.DurableOrchestrationContext,
    state: WatchState,
    show: Any,
    note: Any,
) -> Generator[Any, Any, None]:
    """The window is over: ask whether anything changed, run the pipeline if so."""
    config = state.config
    retry = df.RetryOptions(
        config["policy"]["retry_first_interval_ms"], config["policy"]["retry_max_attempts"]
    )
    show("checking")
    checked = yield context.call_activity_with_retry(
        "check_changes",
        retry,
        {"request": config["request"], "instance_id": context.instance_id},
    )
    now = context.current_utc_datetime
    if not checked["ok"]:
        state.last_check = {"at": now.isoformat(), "error": checked["error"]}
        state.close_window(now, recheck=False)
        note("change check failed", code=checked["error"].get("code"))
        return
    state.last_check = {
        "at": now.isoformat(),
        **{k: checked[k] for k in ("file_count", "new", "modified", "removed", "examples")},
    }
    if not checked["changed"] or checked["listing_digest"] == state.failed_listing:
        state.checks_without_change += 1
        state.close_window(now, recheck=False)
        note(
            "nothing to publish"
            if not checked["changed"]
            else "same files as the last failed run: waiting for another upload",
            file_count=checked["file_count"],
        )
        return
    show("running")
    run_id = f"pipeline-{state.dataset_id}"
    note("pipeline run starts", new=checked["new"], modified=checked["modified"])
    started = context.current_utc_datetime
    try:
        result = yield context.call_sub_orchestrator(
            PIPELINE,
            {"request": config["request"], "policy": config["policy"]},
            run_id,
        )
    except Exception as exc:  # the sub-orchestration failed: its status has the details
        message = str(exc).strip()
        started_at = started.isoformat()
        state.runs += 1
        state.last_run = {"instance_id": run_id, "started": started_at, "ok": False}
        state.last_run["error"] = message[:500]
        failure = _PIPELINE_FAILURE.search(message)
        if failure and failure.group(1) not in _TRANSIENT:
            state.failed_listing = checked["listing_digest"]
        note("pipeline run failed", error=message[:500])
    else:
        state.runs += 1
        published = result.get("phase") == "succeeded"
        # Rejected or expired: not published, and not rebuilt until another upload.
        state.failed_listing = None if published else checked["listing_digest"]
        outputs = result.get("outputs") or {}
        state.last_run = {
            "instance_id": run_id,
            "started": started.isoformat(),
            "ok": published,
            "phase": result.get("phase"),
            "run_id": result.get("run_id"),
            "files": (result.get("files") or {}).get("total"),
            "reused": (result.get("files") or {}).get("reused"),
            "item_url": outputs.get("item_url"),
        }
        note(f"pipeline run {result.get('phase')}", run_id=result.get("run_id"))
    state.close_window(context.current_utc_datetime, recheck=True)
