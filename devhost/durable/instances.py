"""An instance's executions, by the Azure Storage backend's rules: every start and every
continue-as-new is a new execution with its own id, and what was sent to an earlier
execution (a completion, a fired timer) is discarded when it arrives. The end of a
sub-orchestration is sent to its parent's execution."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from devhost.durable.protocol import (
    SUB_COMPLETED,
    SUB_FAILED,
    event,
    execution_started,
    iso,
    loads,
    new_execution_id,
)
from devhost.durable.store import end_execution, send, send_first, version_of


def new_execution(
    db: sqlite3.Connection,
    instance_id: str,
    name: str,
    input_json: str | None,
    now: datetime,
    parent: tuple[str, int, str] | None = None,
    version: str = "",
) -> str:
    """A new execution of ``instance_id`` (a new execution id) replacing whatever ran
    under that id before; ``parent`` is (parent id, task id, parent execution id) for a
    sub-orchestration. Messages sent to the replaced execution are discarded when they
    arrive (by execution id); raised events not yet delivered go to the new one, and
    sub-orchestrations the replaced one started are left to run, as on Azure. ``version`` is
    the orchestration version stamped on it for its whole life."""
    execution_id = new_execution_id()
    db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
    end_execution(db, instance_id)
    parent_id, parent_task, parent_execution = parent or (None, None, None)
    db.execute(
        "INSERT INTO instances (id, name, input, status, parent_id, parent_task, "
        "parent_execution, execution_id, created, updated, version) VALUES (?, ?, ?, "
        "'Pending', ?, ?, ?, ?, ?, ?, ?)",
        (
            instance_id,
            name,
            input_json,
            parent_id,
            parent_task,
            parent_execution,
            execution_id,
            iso(now),
            iso(now),
            version,
        ),
    )
    started = execution_started(instance_id, execution_id, name, input_json, version)
    if parent_id is not None:
        started["ParentInstance"] = {
            "OrchestrationInstance": {"InstanceId": parent_id, "ExecutionId": parent_execution},
            "TaskScheduleId": parent_task,
        }
    send_first(db, instance_id, started, execution_id)
    return execution_id


def continue_as_new(
    db: sqlite3.Connection, instance_id: str, name: str, input_json: str | None, now: datetime
) -> None:
    """Start the instance again, as a new execution with a fresh history and the new
    input. What the old execution was sent (completions of activities still running,
    timers) is discarded when it arrives; events raised after the batch that ended the
    old execution go to the new one; events of that batch, and events the old execution
    had received but not consumed, are gone (the out-of-process shim continues as new
    without preserveUnprocessedEvents). The new execution keeps the instance's version
    (DTFx: ``NewVersion ?? runtimeState.Version``; the SDK's continue_as_new sets none)."""
    execution_id = new_execution_id()
    end_execution(db, instance_id)
    db.execute(
        "UPDATE instances SET input = ?, status = 'Running', next_seq = 0, actions_seen = 0, "
        "execution_id = ?, updated = ? WHERE id = ?",
        (input_json, execution_id, iso(now), instance_id),
    )
    version = version_of(db, instance_id)
    first = execution_started(instance_id, execution_id, name, input_json, version)
    send_first(db, instance_id, first, execution_id)


def finish(
    db: sqlite3.Connection,
    instance_id: str,
    status: str,
    output_json: str | None,
    now: datetime,
) -> None:
    """Record an instance's end; a sub-orchestration's parent is sent its completion."""
    db.execute(
        "UPDATE instances SET status = ?, output = ?, updated = ? WHERE id = ?",
        (status, output_json, iso(now), instance_id),
    )
    db.execute("DELETE FROM work WHERE instance_id = ? AND state = 'queued'", (instance_id,))
    parent = db.execute(
        "SELECT parent_id, parent_task, parent_execution FROM instances WHERE id = ?",
        (instance_id,),
    ).fetchone()
    if parent and parent[0]:
        if status == "Completed":
            done = event(SUB_COMPLETED, TaskScheduledId=parent[1], Result=output_json)
        else:
            done = event(
                SUB_FAILED,
                TaskScheduledId=parent[1],
                Reason=loads(output_json) if output_json else status,
                Details=None,
            )
        send(db, parent[0], done, execution_id=parent[2])
