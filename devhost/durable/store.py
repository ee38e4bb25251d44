"""The host's state in SQLite (<state>/durable.sqlite): instances, their histories, the
messages not yet delivered (inbox), the activities to run (work), the retries in progress and
every activity execution.

Every episode and every activity completion is one transaction (Store.transaction; the
functions below that take ``db`` run inside one): a killed host restarts where it stopped,
and an activity whose completion was recorded is never run again (one whose completion was
not is run again: activities are at-least-once, as in Azure). A state folder written with
another schema is set aside when none of its runs is in progress, and refused when one is.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from devhost.durable.protocol import (
    SUB_COMPLETED,
    SUB_CREATED,
    TASK_COMPLETED,
    TASK_FAILED,
    TERMINAL,
    event,
    iso,
)
from shared.model.errors import PipelineError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

# instances.version: the orchestration version stamped on the instance (docs/devhost.md);
# instances.abandons: how often a refused episode was put back (versioning.abandon_delay).
# inbox.execution_id: the execution a message was sent to (a completion, a fired timer, a
# start); NULL for what goes to whichever execution is current (raised events, terminate).
SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, input TEXT, status TEXT NOT NULL,
    output TEXT, custom_status TEXT, parent_id TEXT, parent_task INTEGER,
    parent_execution TEXT, execution_id TEXT NOT NULL, created TEXT NOT NULL,
    updated TEXT NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,
    actions_seen INTEGER NOT NULL DEFAULT 0, episodes INTEGER NOT NULL DEFAULT 0,
    version TEXT NOT NULL DEFAULT '', abandons INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, position INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, position));
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, event TEXT NOT NULL,
    due REAL NOT NULL, execution_id TEXT);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL, task_id INTEGER NOT NULL, name TEXT NOT NULL, input TEXT,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retries (
    instance_id TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, input TEXT,
    first_interval_ms INTEGER NOT NULL, max_attempts INTEGER NOT NULL, attempt INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key));
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, task_id INTEGER NOT NULL,
    name TEXT NOT NULL, started REAL NOT NULL, finished REAL, ok INTEGER,
    input_bytes INTEGER, output_bytes INTEGER);
CREATE INDEX IF NOT EXISTS inbox_due ON inbox (due);
CREATE INDEX IF NOT EXISTS work_state ON work (state);
"""


class StateOutdated(PipelineError):
    """The state folder was written by a devhost with another schema, with runs in progress."""

    code = "devhost_state_outdated"


class Retry(NamedTuple):
    """A task with retry options (key "task:<id>") or its retry timer ("timer:<id>")."""

    name: str
    input: str | None
    first_interval_ms: int
    max_attempts: int
    attempt: int


class Store:
    """The SQLite database of one state folder; one connection, shared by the host's threads
    under ``lock``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "durable.sqlite"
        self.lock = threading.RLock()
        self.db = self._connect()
        self._check_schema()
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _check_schema(self) -> None:
        """A state folder written by a devhost with another schema: set aside when none of
        its runs is in progress (its history is of no further use), else refused."""
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        (tables,) = self.db.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'instances'"
        ).fetchone()
        if not tables or version == SCHEMA_VERSION:
            return
        placeholders = ",".join("?" * len(TERMINAL))
        (busy,) = self.db.execute(
            f"SELECT COUNT(*) FROM instances WHERE status NOT IN ({placeholders})", TERMINAL
        ).fetchone()
        self.db.close()
        if busy:
            raise StateOutdated(
                f"The state in {self.state_dir} was written by another version of devhost "
                f"(schema {version}; this one reads {SCHEMA_VERSION}) and has {busy} run(s) in "
                "progress, which this version cannot resume.",
                remedy="Finish them with the devhost version that started them, or delete "
                "that folder (or pass another --state folder) to give them up.",
            )
        aside = self.path.with_name(f"durable.schema{version}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{self.path}{suffix}")
            if old.exists():
                old.replace(Path(f"{aside}{suffix}"))
        log.warning(
            "devhost state of schema %s set aside as %s (no run in progress)", version, aside
        )
        self.db = self._connect()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- reads -------------------------------------------------------------------------
    def status(
        self, instance_id: str, show_history: bool
    ) -> tuple[tuple[Any, ...] | None, list[dict[str, Any]] | None]:
        """(name, input, status, output, custom status, created, updated) of an instance, and
        its history when asked for and the instance exists."""
        with self.lock:
            row = self.db.execute(
                "SELECT name, input, status, output, custom_status, created, updated FROM "
                "instances WHERE id = ?",
                (instance_id,),
            ).fetchone()
            history = read_history(self.db, instance_id) if show_history and row else None
        return row, history

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return read_history(self.db, instance_id)

    def instance_ids(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM instances ORDER BY created")]

    def executions(self) -> list[tuple[str, int, str, float | None]]:
        """Every activity execution ever started: (instance, task id, name, finished)."""
        with self.lock:
            return list(
                self.db.execute(
                    "SELECT instance_id, task_id, name, finished FROM executions ORDER BY id"
                )
            )

    def payload_sizes(self) -> dict[str, int]:
        """Largest activity input and output, sub-orchestration input and output, custom
        status and history (bytes), over everything this host has run."""
        with self.lock:
            db = self.db
            (activity_in, activity_out) = db.execute(
                "SELECT COALESCE(MAX(input_bytes), 0), COALESCE(MAX(output_bytes), 0) "
                "FROM executions"
            ).fetchone()
            (custom,) = db.execute(
                "SELECT COALESCE(MAX(LENGTH(custom_status)), 0) FROM instances"
            ).fetchone()
            sub_in = sub_out = 0
            for (text,) in db.execute("SELECT event FROM history"):
                found = json.loads(text)
                if found["EventType"] == SUB_CREATED:
                    sub_in = max(sub_in, len((found.get("Input") or "").encode()))
                elif found["EventType"] == SUB_COMPLETED:
                    sub_out = max(sub_out, len((found.get("Result") or "").encode()))
            (history,) = db.execute(
                "SELECT COALESCE(MAX(total), 0) FROM (SELECT SUM(LENGTH(event)) AS total "
                "FROM history GROUP BY instance_id)"
            ).fetchone()
            (events,) = db.execute(
                "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM history "
                "GROUP BY instance_id)"
            ).fetchone()
        return {
            "activity_input": int(activity_in),
            "activity_output": int(activity_out),
            "sub_orchestration_input": sub_in,
            "sub_orchestration_output": sub_out,
            "custom_status": int(custom),
            "history_bytes": int(history),
            "history_events": int(events),
        }

    def history_sizes(self) -> dict[str, int]:
        """Bytes of stored history per instance (what a replay has to read)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT instance_id, SUM(LENGTH(event)) FROM history GROUP BY instance_id"
            )
            return {r[0]: int(r[1]) for r in rows}

    def next_due(self) -> float | None:
        """When the earliest waiting message is due (epoch seconds), None when none waits."""
        with self.lock:
            row = self.db.execute("SELECT MIN(due) FROM inbox").fetchone()
        return row[0] if row else None

    def due_instances(self, now: float) -> list[str]:
        """The instances with messages due by ``now``, the one waiting longest first."""
        with self.lock:
            rows = self.db.execute(
                "SELECT instance_id FROM inbox WHERE due <= ? GROUP BY instance_id "
                "ORDER BY MIN(id)",
                (now,),
            ).fetchall()
        return [r[0] for r in rows]


# -- inside a transaction ------------------------------------------------------------------
def read_history(db: sqlite3.Connection, instance_id: str) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT event FROM history WHERE instance_id = ? ORDER BY position", (instance_id,)
    )
    return [json.loads(r[0]) for r in rows]


def append_history(db: sqlite3.Connection, instance_id: str, events: list[dict[str, Any]]) -> None:
    (count,) = db.execute(
        "SELECT COUNT(*) FROM history WHERE instance_id = ?", (instance_id,)
    ).fetchone()
    db.executemany(
        "INSERT INTO history (instance_id, position, event) VALUES (?, ?, ?)",
        [(instance_id, count + i, json.dumps(e)) for i, e in enumerate(events)],
    )


def status_of(db: sqlite3.Connection, instance_id: str) -> str | None:
    row = db.execute("SELECT status FROM instances WHERE id = ?", (instance_id,)).fetchone()
    return row[0] if row is not None else None


def created_times(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(id, status, created) of every instance."""
    return db.execute("SELECT id, status, created FROM instances").fetchall()


def current_execution(db: sqlite3.Connection, instance_id: str) -> str | None:
    row = db.execute("SELECT execution_id FROM instances WHERE id = ?", (instance_id,)).fetchone()
    return row[0] if row else None


def send(
    db: sqlite3.Connection,
    instance_id: str,
    new_event: dict[str, Any],
    due: float = 0.0,
    execution_id: str | None = None,
) -> None:
    """Queue a message for an instance: for one execution of it (``execution_id``: a
    completion, a fired timer), or for whichever is current (None: a raised event)."""
    db.execute(
        "INSERT INTO inbox (instance_id, event, due, execution_id) VALUES (?, ?, ?, ?)",
        (instance_id, json.dumps(new_event), due, execution_id),
    )


def send_first(
    db: sqlite3.Connection, instance_id: str, started: dict[str, Any], execution_id: str
) -> None:
    """Queue an ExecutionStarted ahead of every waiting message (the extension puts the
    start of an execution first in its batch: DTFx EnsureExecutionStartedIsFirst)."""
    db.execute(
        "INSERT INTO inbox (id, instance_id, event, due, execution_id) VALUES ((SELECT "
        "COALESCE(MIN(id), 1) - 1 FROM inbox), ?, ?, 0, ?)",
        (instance_id, json.dumps(started), execution_id),
    )


def take_batch(
    db: sqlite3.Connection, instance_id: str, due_by: float, limit: int
) -> list[tuple[int, str, str | None]]:
    """Remove and return the first ``limit`` messages due for an instance by ``due_by``:
    (id, event JSON, execution id)."""
    batch = db.execute(
        "SELECT id, event, execution_id FROM inbox WHERE instance_id = ? AND due <= ? "
        "ORDER BY id LIMIT ?",
        (instance_id, due_by, limit),
    ).fetchall()
    db.executemany("DELETE FROM inbox WHERE id = ?", [(b[0],) for b in batch])
    return batch


def episode_state(db: sqlite3.Connection, instance_id: str) -> tuple[Any, ...] | None:
    """(name, input, status, parent id, next sequence number, actions seen, execution id,
    version, abandons)."""
    return db.execute(
        "SELECT name, input, status, parent_id, next_seq, actions_seen, execution_id, "
        "version, abandons FROM instances WHERE id = ?",
        (instance_id,),
    ).fetchone()


def version_of(db: sqlite3.Connection, instance_id: str) -> str:
    row = db.execute("SELECT version FROM instances WHERE id = ?", (instance_id,)).fetchone()
    return str(row[0]) if row else ""


def put_back(
    db: sqlite3.Connection, instance_id: str, batch: list[tuple[int, str, str | None]], due: float
) -> None:
    """An abandoned episode: its messages go back, invisible until ``due``, in their order."""
    db.executemany(
        "INSERT INTO inbox (id, instance_id, event, due, execution_id) VALUES (?, ?, ?, ?, ?)",
        [(message_id, instance_id, text, due, target) for message_id, text, target in batch],
    )
    db.execute("UPDATE instances SET abandons = abandons + 1 WHERE id = ?", (instance_id,))


def record_episode(
    db: sqlite3.Connection,
    instance_id: str,
    next_seq: int,
    actions_seen: int,
    custom_json: str | None,
    now: datetime,
) -> None:
    db.execute(
        "UPDATE instances SET status = 'Running', next_seq = ?, actions_seen = ?, "
        "custom_status = ?, updated = ?, episodes = episodes + 1, abandons = 0 WHERE id = ?",
        (next_seq, actions_seen, custom_json, iso(now), instance_id),
    )


def end_execution(db: sqlite3.Connection, instance_id: str) -> None:
    """Forget the current execution's history and pending work; messages already sent to
    it are discarded by execution id (queued ones here, running activities' when they
    finish). Raised events waiting for the instance stay, for the next execution."""
    db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
    db.execute("DELETE FROM retries WHERE instance_id = ?", (instance_id,))
    db.execute("DELETE FROM work WHERE instance_id = ? AND state = 'queued'", (instance_id,))
    db.execute(
        "DELETE FROM inbox WHERE instance_id = ? AND execution_id IS NOT NULL", (instance_id,)
    )


def forget(db: sqlite3.Connection, instance_id: str) -> None:
    """Delete everything of one instance (purge). Its sub-orchestrations stay."""
    for table, column in (
        ("instances", "id"),
        ("history", "instance_id"),
        ("inbox", "instance_id"),
        ("work", "instance_id"),
        ("retries", "instance_id"),
    ):
        db.execute(f"DELETE FROM {table} WHERE {column} = ?", (instance_id,))


def retry_of(db: sqlite3.Connection, instance_id: str, key: str) -> Retry | None:
    """The retry a task ("task:<id>") or a timer ("timer:<id>") belongs to, if any."""
    row = db.execute(
        "SELECT name, input, first_interval_ms, max_attempts, attempt FROM retries "
        "WHERE instance_id = ? AND key = ?",
        (instance_id, key),
    ).fetchone()
    return Retry(*row) if row is not None else None


def retry_attempts(db: sqlite3.Connection, instance_id: str) -> dict[str, int]:
    """Every retry key of an instance ("task:<id>", "timer:<id>") and its attempt."""
    rows = db.execute("SELECT key, attempt FROM retries WHERE instance_id = ?", (instance_id,))
    return {key: int(attempt) for key, attempt in rows}


def set_retry(db: sqlite3.Connection, instance_id: str, key: str, retry: Retry) -> None:
    db.execute(
        "INSERT OR REPLACE INTO retries VALUES (?, ?, ?, ?, ?, ?, ?)",
        (instance_id, key, *retry),
    )


# -- activities ----------------------------------------------------------------------------
def queue_activity(
    db: sqlite3.Connection, instance_id: str, task_id: int, name: str, input_json: str | None
) -> None:
    db.execute(
        "INSERT INTO work (instance_id, execution_id, task_id, name, input, state) VALUES "
        "(?, (SELECT execution_id FROM instances WHERE id = ?), ?, ?, ?, 'queued')",
        (instance_id, instance_id, task_id, name, input_json),
    )


def requeue_running(db: sqlite3.Connection) -> None:
    """Activities that were running when the host died run again."""
    db.execute("UPDATE work SET state = 'queued' WHERE state = 'running'")


def claim_work(db: sqlite3.Connection, limit: int) -> list[tuple[int, str, int, str, str | None]]:
    """Mark up to ``limit`` queued activities running, the oldest first, and record their
    executions: (work id, instance id, task id, name, input JSON)."""
    rows = db.execute(
        "SELECT id, instance_id, task_id, name, input FROM work WHERE state = 'queued' "
        "ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    for work_id, instance_id, task_id, name, input_json in rows:
        db.execute("UPDATE work SET state = 'running' WHERE id = ?", (work_id,))
        db.execute(
            "INSERT INTO executions (instance_id, task_id, name, started, input_bytes) "
            "VALUES (?, ?, ?, ?, ?)",
            (instance_id, task_id, name, time.time(), len((input_json or "").encode())),
        )
    return rows


def complete_work(db: sqlite3.Connection, work_id: int, ok: bool, value: str, details: str) -> None:
    """Record an activity's end and send its instance's execution TaskCompleted or
    TaskFailed; nothing when the instance was purged while the activity ran."""
    row = db.execute(
        "SELECT instance_id, task_id, execution_id FROM work WHERE id = ?", (work_id,)
    ).fetchone()
    if row is None:
        return
    instance_id, task_id, execution_id = row
    db.execute("DELETE FROM work WHERE id = ?", (work_id,))
    db.execute(
        "UPDATE executions SET finished = ?, ok = ?, output_bytes = ? WHERE id = "
        "(SELECT MAX(id) FROM executions WHERE instance_id = ? AND task_id = ?)",
        (time.time(), int(ok), len(value.encode()) if ok else 0, instance_id, task_id),
    )
    if ok:
        done = event(TASK_COMPLETED, TaskScheduledId=task_id, Result=value)
    else:
        done = event(TASK_FAILED, TaskScheduledId=task_id, Reason=value, Details=details)
    send(db, instance_id, done, execution_id=execution_id)
