"""The wire between the Durable extension and the SDK, as devhost speaks it: the history event
and action types, the events' JSON, the timer limits and batch size the extension announces
or uses, and the extension's checks on what an orchestrator returns. Pure: no SQLite, no
threads."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# History event types (DurableTask.Core EventType).
EXECUTION_STARTED, EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_TERMINATED = 0, 1, 2, 3
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = 7, 8, 9
TIMER_CREATED, TIMER_FIRED = 10, 11
ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 12, 13
EVENT_SENT, EVENT_RAISED, CONTINUE_AS_NEW = 14, 15, 16

# Action types in the orchestrator's answer.
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY = 0, 1
CALL_SUB, CALL_SUB_WITH_RETRY = 2, 3
ACTION_CONTINUE_AS_NEW, CREATE_TIMER, WAIT_FOR_EVENT = 4, 5, 6
WHEN_ANY, WHEN_ALL = 11, 12

UPPER_SCHEMA_VERSION, UPPER_SCHEMA_VERSION_NEW = 1, 2
ERROR_MARKER = "$OutOfProcData$:"
TERMINAL = ("Completed", "Failed", "Terminated")
# What a purge by filter may delete (DTFx Azure Storage keeps only these of the statuses given).
PURGEABLE = ("Completed", "Failed", "Terminated", "Canceled")
# The Azure Storage backend's timer limits, as the extension announces them to the SDK
# (AzureStorageDurabilityProvider: MaximumDelayTime 6 days, LongRunningTimerIntervalLength 3
# days). The SDK turns a longer timer into a chain of timers of at most the interval.
MAX_SHORT_TIMER = timedelta(days=6)
LONG_TIMER_INTERVAL = timedelta(days=3)
HTTP_POLL_MILLISECONDS = 30_000  # defaultHttpAsyncRequestSleepTimeMillseconds
BATCH_SIZE = 32  # messages an episode takes at most (controlQueueBatchSize)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timespan(span: timedelta) -> str:
    """A duration as .NET's TimeSpan "c" format ([d.]hh:mm:ss[.fffffff]), as the extension
    serialises it (the SDK's parse_timespan_attrib reads it back)."""
    total = int(span.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    ticks = span.microseconds * 10
    if ticks:
        text += f".{ticks:07d}"
    return f"{days}.{text}" if days else text


def new_execution_id() -> str:
    return uuid.uuid4().hex


def event(
    event_type: int, event_id: int = -1, timestamp: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "EventType": event_type,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": iso(timestamp or utc_now()),
        **fields,
    }


def execution_started(
    instance_id: str, execution_id: str, name: str, input_json: str | None, version: str = ""
) -> dict[str, Any]:
    """ExecutionStarted, with the instance's orchestration version (the SDK's
    context.version reads it)."""
    return event(
        EXECUTION_STARTED,
        Name=name,
        Input=input_json,
        Version=version,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
    )


def custom_status_refused(custom: Any) -> str | None:
    """The extension's refusal of a custom status over its limit (MessagePayloadDataConverter
    .Serialize, 16 KB: it fails when floor(UTF-16 bytes of the compact JSON / 1024) > 16),
    which fails the orchestration; None when it fits."""
    if custom is None:
        return None
    text = json.dumps(custom, separators=(",", ":"), ensure_ascii=False)
    size_kb = len(text.encode("utf-16-le")) // 1024
    if size_kb <= 16:
        return None
    return (
        "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. The current "
        f"payload size is {size_kb} KB."
    )


def loads(text: str | None) -> Any:
    """A stored JSON value, or the text itself when it is not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_time(text: str) -> datetime:
    from dateutil.parser import isoparse

    moment = isoparse(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
