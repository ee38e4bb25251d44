"""Instances in flight, taken out of one devhost state and put into another: what a task hub
holds while a release is replaced by the next (tools/record_histories.py records them with
the previous release; tests/test_versioning.py replays them with today's code).

A snapshot of an instance is its row (name, input, status, custom status, execution id,
counters), its history, the messages waiting for it (with how long until each is due) and
the retry bookkeeping of its tasks: everything the extension keeps in the task hub for it.
It reads the tables every devhost schema from 2 on has; an instance of a state without
versions has the empty version, as on Azure before host.json had a defaultVersion."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from devhost.durable.store import Store

_ROW = (
    "id",
    "name",
    "input",
    "status",
    "custom_status",
    "parent_id",
    "parent_task",
    "parent_execution",
    "execution_id",
    "created",
    "updated",
    "next_seq",
    "actions_seen",
)

_RETRY = ("key", "name", "input", "first_interval_ms", "max_attempts", "attempt")


def dump(state_db: Path, instance_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The instances of a devhost state that have not ended (or those named), as JSON-able
    snapshots."""
    db = sqlite3.connect(state_db)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
        fields = [*_ROW, *(["version"] if "version" in columns else [])]
        if instance_ids is None:
            rows = db.execute(
                f"SELECT {', '.join(fields)} FROM instances WHERE status NOT IN "
                "('Completed', 'Failed', 'Terminated') ORDER BY created"
            ).fetchall()
        else:
            rows = [
                db.execute(
                    f"SELECT {', '.join(fields)} FROM instances WHERE id = ?", (i,)
                ).fetchone()
                for i in instance_ids
            ]
        now = time.time()
        snapshots = []
        for row in rows:
            instance = dict(zip(fields, row, strict=True))
            instance.setdefault("version", "")
            instance_id = instance["id"]
            history = [
                json.loads(text)
                for (text,) in db.execute(
                    "SELECT event FROM history WHERE instance_id = ? ORDER BY position",
                    (instance_id,),
                )
            ]
            inbox = [
                {"event": json.loads(text), "due_in": max(0.0, due - now), "execution_id": target}
                for text, due, target in db.execute(
                    "SELECT event, due, execution_id FROM inbox WHERE instance_id = ? ORDER BY id",
                    (instance_id,),
                )
            ]
            retries = [
                dict(zip(_RETRY, r, strict=True))
                for r in db.execute(
                    "SELECT key, name, input, first_interval_ms, max_attempts, attempt FROM "
                    "retries WHERE instance_id = ? ORDER BY key",
                    (instance_id,),
                )
            ]
            snapshots.append(
                {"instance": instance, "history": history, "inbox": inbox, "retries": retries}
            )
        return snapshots
    finally:
        db.close()


def load(store: Store, snapshots: list[dict[str, Any]], *, due_now: bool = False) -> None:
    """Put snapshots into a (stopped or new) devhost state: each instance as it was, its
    messages due as long after now as they were after the snapshot (or now: ``due_now``,
    time having passed)."""
    now = time.time()
    with store.transaction() as db:
        for snapshot in snapshots:
            instance = snapshot["instance"]
            fields = [*_ROW, "version"]
            db.execute(
                f"INSERT OR REPLACE INTO instances ({', '.join(fields)}) VALUES "
                f"({', '.join('?' * len(fields))})",
                [instance.get(f, "" if f == "version" else None) for f in fields],
            )
            instance_id = instance["id"]
            db.executemany(
                "INSERT INTO history (instance_id, position, event) VALUES (?, ?, ?)",
                [(instance_id, i, json.dumps(e)) for i, e in enumerate(snapshot["history"])],
            )
            db.executemany(
                "INSERT INTO inbox (instance_id, event, due, execution_id) VALUES (?, ?, ?, ?)",
                [
                    (
                        instance_id,
                        json.dumps(m["event"]),
                        now if due_now else now + float(m["due_in"]),
                        m["execution_id"],
                    )
                    for m in snapshot["inbox"]
                ],
            )
            db.executemany(
                "INSERT INTO retries VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        instance_id,
                        r["key"],
                        r["name"],
                        r["input"],
                        r["first_interval_ms"],
                        r["max_attempts"],
                        r["attempt"],
                    )
                    for r in snapshot["retries"]
                ],
            )
