"""One orchestration step ("episode") of one instance, as the extension runs it.

For every episode it builds the history JSON the extension would build (the stored events
marked IsPlayed, a new OrchestratorStarted, the batch of new events), calls the registered
orchestrator's handle, reads the actions it returns, and appends the scheduling events with
the sequence numbers the extension would give them. Retries, timers (long timers included),
sub-orchestrations, external events and continue-as-new follow the extension's event layout
and the Azure Storage backend's rules.

Events reach an instance in batches (up to BATCH_SIZE due events per episode, as the
extension dequeues a control queue's messages). Numbering inside a batch follows the order
in which the extension processes the events: the orchestrator is called once per run of
ordinary events, and once more at each event that moves a retry (a failed attempt, a fired
retry timer), after that retry's timer or task has taken its number.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devhost.durable.instances import continue_as_new, finish, new_execution
from devhost.durable.protocol import (
    ACTION_CONTINUE_AS_NEW,
    BATCH_SIZE,
    CALL_ACTIVITY,
    CALL_ACTIVITY_WITH_RETRY,
    CALL_SUB,
    CALL_SUB_WITH_RETRY,
    CREATE_TIMER,
    ERROR_MARKER,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    HTTP_POLL_MILLISECONDS,
    ORCHESTRATOR_COMPLETED,
    ORCHESTRATOR_STARTED,
    SUB_CREATED,
    TASK_FAILED,
    TASK_SCHEDULED,
    TERMINAL,
    TIMER_CREATED,
    TIMER_FIRED,
    UPPER_SCHEMA_VERSION,
    UPPER_SCHEMA_VERSION_NEW,
    WAIT_FOR_EVENT,
    WHEN_ALL,
    WHEN_ANY,
    custom_status_refused,
    event,
    iso,
    parse_time,
    timespan,
    utc_now,
)
from devhost.durable.store import (
    Retry,
    Store,
    append_history,
    current_execution,
    episode_state,
    put_back,
    queue_activity,
    read_history,
    record_episode,
    retry_attempts,
    retry_of,
    send,
    set_retry,
    take_batch,
)
from devhost.durable.versioning import (
    MISMATCH_MESSAGE,
    MISMATCH_REASON,
    Versioning,
    abandon_delay,
)

log = logging.getLogger(__name__)


class Sequence:
    """The extension's per-instance counter for TaskScheduled, SubOrchestrationInstanceCreated
    and TimerCreated, in the order it processes them."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self) -> int:
        value = self.next
        self.next += 1
        return value


@dataclass(frozen=True)
class Replayer:
    """Runs episodes of one app's orchestrators, announcing the given timer limits."""

    orchestrators: Mapping[str, Callable[[str], str]]
    activities: Container[str]
    max_short_timer: timedelta
    long_timer_interval: timedelta
    versioning: Versioning = field(default_factory=Versioning)

    def episode(self, store: Store, instance_id: str, due_by: float) -> None:
        """One episode of ``instance_id`` with its messages due by ``due_by``: one
        transaction."""
        now = utc_now()
        with store.transaction() as db:
            self._episode(db, instance_id, due_by, now)

    def _episode(
        self, db: sqlite3.Connection, instance_id: str, due_by: float, now: datetime
    ) -> None:
        row = episode_state(db, instance_id)
        batch = take_batch(db, instance_id, due_by, BATCH_SIZE)
        if row is None:
            return  # no such instance (purged): its messages are dropped
        name, input_json, status, parent_id, next_seq, actions_seen, execution_id = row[:7]
        version, abandons = row[7:]
        if status in TERMINAL:
            return  # e.g. an activity that finished after the instance failed
        # Messages for an earlier execution (before continue-as-new, or of an execution
        # that a new start replaced) are discarded, as DTFx does by execution id.
        kept = [b for b in batch if b[2] in (None, execution_id)]
        events = [json.loads(e) for _, e, _ in kept]
        if len(events) < len(batch):
            log.debug("%s: %d stale message(s) dropped", instance_id, len(batch) - len(events))
        if not events:
            return
        if self.versioning.refuses(version):
            self._refuse(db, instance_id, version, kept, events, abandons, now)
            return
        stored = read_history(db, instance_id)
        for old in stored:
            old["IsPlayed"] = True
        started = event(ORCHESTRATOR_STARTED, timestamp=now)
        step = _Step(
            db,
            instance_id,
            execution_id,
            now,
            Sequence(next_seq),
            self.activities,
            self.versioning,
        )
        numbered = scheduled_in_history(stored, retry_attempts(db, instance_id))
        delivered: list[dict[str, Any]] = []
        state: dict[str, Any] = {}
        error: str | None = None
        continue_as_new_action: dict[str, Any] | None = None
        for segment in step.segments(events):
            step.retry_bookkeeping(segment[0])
            delivered += segment
            context = {
                "history": [*stored, started, *delivered],
                "instanceId": instance_id,
                "isReplaying": bool(stored),
                "parentInstanceId": parent_id,
                "input": input_json,
                "upperSchemaVersion": UPPER_SCHEMA_VERSION,
                "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
                "maximumShortTimerDuration": timespan(self.max_short_timer),
                "longRunningTimerIntervalDuration": timespan(self.long_timer_interval),
                "defaultHttpAsyncRequestSleepTimeMillseconds": HTTP_POLL_MILLISECONDS,
            }
            state, error = call_orchestrator(self.orchestrators[name], context)
            error = error or custom_status_refused(state.get("customStatus"))
            actions = state.get("actions") or [[]]
            actions = actions[0] if actions and isinstance(actions[0], list) else actions
            replayed = numbered_actions(actions)
            if error is None:
                error = nondeterminism(numbered, replayed, done=bool(state.get("isDone")))
                if error is not None:
                    break  # nothing of this replay is scheduled: the orchestration fails
            numbered = replayed
            for action in actions[actions_seen:]:
                continue_as_new_action = step.schedule(action) or continue_as_new_action
            actions_seen = len(actions)
            if error is not None or state.get("isDone") or continue_as_new_action is not None:
                break  # the rest of the batch is dropped with this execution
        custom = state.get("customStatus")
        record_episode(
            db,
            instance_id,
            step.sequence.next,
            actions_seen,
            json.dumps(custom) if custom is not None else None,
            now,
        )
        completed_events: list[dict[str, Any]] = []
        if error is not None:
            completed_events.append(
                event(EXECUTION_FAILED, timestamp=now, Reason=error, Details=None)
            )
        elif state.get("isDone") and continue_as_new_action is None:
            output = json.dumps(state.get("output"))
            completed_events.append(event(EXECUTION_COMPLETED, timestamp=now, Result=output))
        append_history(
            db,
            instance_id,
            [
                started,
                *events,
                *step.scheduled,
                event(ORCHESTRATOR_COMPLETED, timestamp=now),
                *completed_events,
            ],
        )
        if error is not None:
            finish(db, instance_id, "Failed", json.dumps(error), now)
        elif continue_as_new_action is not None:
            continue_as_new(db, instance_id, name, continue_as_new_action.get("input"), now)
        elif state.get("isDone"):
            finish(db, instance_id, "Completed", json.dumps(state.get("output")), now)

    def _refuse(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        version: str,
        kept: list[tuple[int, str, str | None]],
        events: list[dict[str, Any]],
        abandons: int,
        now: datetime,
    ) -> None:
        """An episode this worker's versioning refuses (DTFx TaskOrchestrationDispatcher):
        Reject puts the messages back, invisible for a while, and changes nothing else;
        Fail ends the orchestration Failed with VersionMismatch."""
        if self.versioning.failure == "Reject":
            delay = abandon_delay(abandons + 1)
            put_back(db, instance_id, kept, now.timestamp() + delay)
            log.info(
                "%s: orchestration version %r refused by this worker (%s, defaultVersion %r); "
                "abandoned for %.0f s",
                instance_id,
                version,
                self.versioning.match,
                self.versioning.default_version,
                delay,
            )
            return
        reason = f"{MISMATCH_REASON}: {MISMATCH_MESSAGE}"
        append_history(
            db,
            instance_id,
            [
                event(ORCHESTRATOR_STARTED, timestamp=now),
                *events,
                event(ORCHESTRATOR_COMPLETED, timestamp=now),
                event(EXECUTION_FAILED, timestamp=now, Reason=reason, Details=None),
            ],
        )
        finish(db, instance_id, "Failed", json.dumps(reason), now)


def numbered_actions(actions: list[dict[str, Any]]) -> list[list[str]]:
    """The actions that take a sequence number (activities, sub-orchestrations, timers), in
    order, as [kind, name]: what DTFx matches every TaskScheduled, SubOrchestrationInstance
    Created and TimerCreated of the history with on replay. Waits for events take none."""
    found: list[list[str]] = []
    for action in actions:
        kind = action.get("actionType")
        if kind in (WHEN_ALL, WHEN_ANY):
            found += numbered_actions(action.get("compoundActions") or [])
        elif kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            found.append(["activity", str(action.get("functionName"))])
        elif kind in (CALL_SUB, CALL_SUB_WITH_RETRY):
            found.append(["sub-orchestration", str(action.get("functionName"))])
        elif kind == CREATE_TIMER:
            found.append(["timer", ""])
    return found


def scheduled_in_history(
    history: list[dict[str, Any]], attempts: Mapping[str, int]
) -> list[list[str]]:
    """What the orchestrator scheduled in this execution, by the history: every
    TaskScheduled, SubOrchestrationInstanceCreated and TimerCreated but those the host made
    for a retry (a retry timer, a task scheduled again: ``attempts`` maps "task:<id>" and
    "timer:<id>" of the tasks with retry options to their attempt), as [kind, name]."""
    found: list[list[str]] = []
    for past in history:
        kind, number = past["EventType"], past.get("EventId")
        if kind == TASK_SCHEDULED and attempts.get(f"task:{number}", 1) <= 1:
            found.append(["activity", str(past.get("Name"))])
        elif kind == SUB_CREATED:
            found.append(["sub-orchestration", str(past.get("Name"))])
        elif kind == TIMER_CREATED and f"timer:{number}" not in attempts:
            found.append(["timer", ""])
    return found


def nondeterminism(before: list[list[str]], now: list[list[str]], done: bool) -> str | None:
    """DTFx's refusal of a replay that does not schedule what the history says was scheduled
    (TaskOrchestrationContext.HandleTaskScheduledEvent, HandleTimerCreatedEvent,
    HandleSubOrchestrationCreatedEvent: NonDeterministicOrchestrationException, which fails
    the orchestration); None when the replay agrees. A replay that ends (``done``) or waits
    before scheduling everything the history has scheduled is refused too."""
    for position, (old, new) in enumerate(zip(before, now, strict=False)):
        if old[0] != new[0] or old[1].lower() != new[1].lower():
            return (
                "Non-Deterministic workflow detected: A previous execution of this "
                f"orchestration scheduled {_describe(old)} at position {position}, but the "
                f"current orchestration replay instead scheduled {_describe(new)} there. Was "
                "a change made to the orchestrator code after this instance had already "
                "started running?"
            )
    if len(now) < len(before):
        missing = before[len(now)]
        return (
            "Non-Deterministic workflow detected: A previous execution of this orchestration "
            f"scheduled {_describe(missing)} at position {len(now)}, but the current replay "
            f"execution hasn't {'' if done else '(yet?) '}scheduled this task. Was a change "
            "made to the orchestrator code after this instance had already started running?"
        )
    return None


def _describe(action: list[str]) -> str:
    kind, name = action
    return f"a {kind} named '{name}'" if name else f"a {kind}"


def call_orchestrator(
    handle: Callable[[str], str], context: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The orchestrator's answer to ``context`` and its error (None when it did not fail)."""
    try:
        return json.loads(handle(json.dumps(context))), None
    except Exception as exc:
        text = str(exc)
        if ERROR_MARKER in text:
            message, _, state_json = text.partition(ERROR_MARKER)
            state = json.loads(state_json)
            return state, state.get("error") or message.strip()
        return {"actions": [[]], "isDone": False}, f"{type(exc).__name__}: {exc}"


@dataclass
class _Step:
    """What one episode schedules: the events it appends (``scheduled``, numbered by
    ``sequence``) and the work, timers and children it starts."""

    db: sqlite3.Connection
    instance_id: str
    execution_id: str
    now: datetime
    sequence: Sequence
    activities: Container[str]
    versioning: Versioning = field(default_factory=Versioning)
    scheduled: list[dict[str, Any]] = field(default_factory=list)

    def segments(self, events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """The batch cut where the extension's numbering needs it: a run of ordinary events
        is one orchestrator call; an event that moves a retry (a failed attempt of a task
        with retry options, the firing of a retry timer) starts a segment of its own, whose
        retry timer or rescheduled task takes its number before the actions that follow."""
        run: list[dict[str, Any]] = []
        for new_event in events:
            if self._retry(new_event) is not None and run:
                yield run
                run = []
            run.append(new_event)
        if run:
            yield run

    def _retry(self, new_event: dict[str, Any]) -> Retry | None:
        """The retry an event moves: a failed attempt's, or its retry timer's."""
        kind = new_event["EventType"]
        if kind == TASK_FAILED:
            return retry_of(self.db, self.instance_id, f"task:{new_event['TaskScheduledId']}")
        if kind == TIMER_FIRED:
            return retry_of(self.db, self.instance_id, f"timer:{new_event['TimerId']}")
        return None

    def retry_bookkeeping(self, new_event: dict[str, Any]) -> None:
        """A failed task with retry options gets a timer (next number); when that timer fires
        and attempts remain, the task is scheduled again (next number). After the last failed
        attempt there is one more timer, which fires at once, then the task fails (DTFx
        RetryInterceptor: "a timer that fires immediately", kept for replay compatibility)."""
        retry = self._retry(new_event)
        if retry is None:
            return
        if new_event["EventType"] == TASK_FAILED:
            last_attempt = retry.attempt >= retry.max_attempts
            interval = timedelta(milliseconds=retry.first_interval_ms)
            timer_id = self.create_timer(self.now if last_attempt else self.now + interval)
            set_retry(self.db, self.instance_id, f"timer:{timer_id}", retry)
        elif retry.attempt < retry.max_attempts:  # a retry timer fired
            task_id = self.sequence.take()
            self.scheduled.append(
                event(TASK_SCHEDULED, task_id, self.now, Name=retry.name, Input=retry.input)
            )
            queue_activity(self.db, self.instance_id, task_id, retry.name, retry.input)
            next_attempt = retry._replace(attempt=retry.attempt + 1)
            set_retry(self.db, self.instance_id, f"task:{task_id}", next_attempt)

    def create_timer(self, fire_at: datetime) -> int:
        """TimerCreated (next number) now, and its TimerFired due at ``fire_at``, for the
        instance's current execution."""
        timer_id = self.sequence.take()
        self.scheduled.append(event(TIMER_CREATED, timer_id, self.now, FireAt=iso(fire_at)))
        fired = event(TIMER_FIRED, timestamp=fire_at, TimerId=timer_id, FireAt=iso(fire_at))
        send(
            self.db,
            self.instance_id,
            fired,
            due=fire_at.timestamp(),
            execution_id=current_execution(self.db, self.instance_id),
        )
        return timer_id

    def schedule(self, action: dict[str, Any]) -> dict[str, Any] | None:
        """Turn one new action into history events and work; returns a continue-as-new action."""
        kind = action["actionType"]
        if kind in (WHEN_ALL, WHEN_ANY):
            found = None
            for child in action.get("compoundActions", []):
                found = self.schedule(child) or found
            return found
        if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            self._call_activity(action, with_retry=kind == CALL_ACTIVITY_WITH_RETRY)
            return None
        if kind in (CALL_SUB, CALL_SUB_WITH_RETRY):
            if kind == CALL_SUB_WITH_RETRY:
                raise NotImplementedError(
                    "devhost does not implement sub-orchestrations with retry yet"
                )
            task_id = self.sequence.take()
            # An unnamed child is "<parent execution id>:<n>", as DTFx names it
            # (TaskOrchestrationContext.CreateSubOrchestrationInstanceCore).
            child_id = action.get("instanceId") or f"{self.execution_id}:{task_id}"
            name, input_json = action["functionName"], action.get("input")
            self.scheduled.append(
                event(
                    SUB_CREATED, task_id, self.now, Name=name, Input=input_json, InstanceId=child_id
                )
            )
            # No de-duplication: the Azure Storage backend de-duplicates only client starts,
            # so a child whose id is in use starts a new execution that replaces the running
            # one (whose own parent then never hears back). Name children uniquely.
            parent = (self.instance_id, task_id, self.execution_id)
            # The child's version: the one the action asks for (the SDK's version=), else
            # host.json's defaultVersion, as the extension stamps it.
            version = self.versioning.stamp(action.get("version"))
            new_execution(
                self.db, child_id, name, input_json, self.now, parent=parent, version=version
            )
            return None
        if kind == CREATE_TIMER:
            self.create_timer(parse_time(action["fireAt"]))
            return None
        if kind == WAIT_FOR_EVENT:
            return None  # no number; EventRaised is matched by name and kept until awaited
        if kind == ACTION_CONTINUE_AS_NEW:
            return action
        raise NotImplementedError(f"devhost does not implement action type {kind}: {action}")

    def _call_activity(self, action: dict[str, Any], with_retry: bool) -> None:
        task_id = self.sequence.take()
        name, input_json = action["functionName"], action.get("input")
        self.scheduled.append(event(TASK_SCHEDULED, task_id, self.now, Name=name, Input=input_json))
        if name not in self.activities:
            reason = (
                f"The function '{name}' doesn't exist, is disabled, or is not an activity function."
            )
            failed = event(TASK_FAILED, TaskScheduledId=task_id, Reason=reason, Details=None)
            send(self.db, self.instance_id, failed, execution_id=self.execution_id)
            return
        queue_activity(self.db, self.instance_id, task_id, name, input_json)
        if with_retry:
            options = action["retryOptions"]
            retry = Retry(
                name,
                input_json,
                int(options["firstRetryIntervalInMilliseconds"]),
                int(options["maxNumberOfAttempts"]),
                1,
            )
            set_retry(self.db, self.instance_id, f"task:{task_id}", retry)
