"""The real dataset watcher orchestration with stand-in activities that the test controls, so
that every interleaving of upload events with the watcher's steps can be provoked on purpose
(test_watcher_races.py). The stand-ins read and write files in the folder named by the
environment variable WATCHER_CONTROL (worker processes inherit it):

    hold-check            while it exists, check_changes waits (started-check-N marks a start)
    unchanged             check_changes answers "nothing changed"
    busy                  start_run answers "a run is in progress" (not started)
    run-done              run_status answers that the run has finished (Completed)
    calls.jsonl           one line per call: {"name", "n", "start", "end"} (time.time())
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import azure.durable_functions as df

from activities.stages import Payload
from orchestrators.watcher import bp as watcher

app = df.DFApp()
app.register_functions(watcher)


def control() -> Path:
    return Path(os.environ["WATCHER_CONTROL"])


def calls(name: str | None = None) -> list[dict[str, Any]]:
    path = control() / "calls.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [c for c in found if name is None or c["name"] == name]


def _record(name: str, started: float) -> int:
    n = len(calls(name)) + 1
    with (control() / "calls.jsonl").open("a") as out:
        out.write(json.dumps({"name": name, "n": n, "start": started, "end": time.time()}) + "\n")
    return n


@app.activity_trigger(input_name="payload")
def check_changes(payload: Payload) -> dict[str, Any]:
    started = time.time()
    n = len(calls("check_changes")) + 1
    # written whole, then renamed: the test may look for the marker at any moment
    marker = control() / f"started-check-{n}"
    marker.with_suffix(".tmp").write_text(str(started))
    marker.with_suffix(".tmp").replace(marker)
    while (control() / "hold-check").exists():
        time.sleep(0.02)
    changed = not (control() / "unchanged").exists()
    _record("check_changes", started)
    return {
        "ok": True,
        "changed": changed,
        "listing_digest": f"listing-{n}",
        "file_count": n,
        "new": int(changed),
        "modified": 0,
        "removed": 0,
        "examples": [],
    }


@app.activity_trigger(input_name="payload")
def start_run(payload: Payload) -> dict[str, Any]:
    started = time.time()
    busy = (control() / "busy").exists()
    _record("start_run", started)
    return {
        "ok": True,
        "instance_id": "pipeline-ds",
        "started": not busy,
        "runtime_status": "Running" if busy else None,
    }


@app.activity_trigger(input_name="payload")
def run_status(payload: Payload) -> dict[str, Any]:
    started = time.time()
    done = (control() / "run-done").exists()
    _record("run_status", started)
    return {
        "ok": True,
        "instance_id": payload["run_instance_id"],
        "runtime_status": "Completed" if done else "Running",
        "finished": done,
        "phase": "succeeded" if done else "generate",
        "run_id": "run-1",
        "files": 3,
        "reused": 0,
        "item_url": "file:///item.json",
        "error": None,
    }
