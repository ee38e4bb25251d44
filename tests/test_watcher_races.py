"""The upload watcher never loses an upload, whatever the interleaving of events with its
steps. The real watcher orchestration runs on devhost with stand-in activities the test
holds and releases (tests/watcher_test_app.py); devhost's holding_episodes puts events in
the same batch as a completion, as the extension does when they are due together.

What "not lost" means: after every upload event, a change check (a listing of the source)
starts. The listing, not the event, decides what the next run contains."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableHost
from shared.ingest.watch import WatchState

APP = "tests.watcher_test_app"
WATCHER = "watch-ds"
QUIET = 1


def config(**extra: Any) -> dict[str, Any]:
    return {
        "request": {"dataset_id": "ds", "source": "/nowhere"},
        "policy": {"retry_first_interval_ms": 100, "retry_max_attempts": 2},
        "quiet_seconds": QUIET,
        "max_wait_seconds": 60,
        **extra,
    }


@dataclass
class Watch:
    host: DurableHost
    control: Path
    uploads: int = 0

    def upload(self) -> float:
        """Raise one upload event (a new file); returns when it was raised."""
        self.uploads += 1
        change = {
            "url": f"file:///data/file-{self.uploads}.nc",
            "etag": f"etag-{self.uploads}",
            "size": 10,
            "sequencer": f"{self.uploads:016x}",
            "event_id": f"event-{self.uploads}",
        }
        raised = time.time()
        self.host.raise_event(WATCHER, "blob_created", json.dumps({"change": change}))
        return raised

    def status(self) -> dict[str, Any]:
        found = self.host.get_status(WATCHER)
        assert found is not None
        if found["runtimeStatus"] == "Failed":
            pytest.fail(f"the watcher failed: {found['output']}")
        return found["customStatus"] or {}

    def until(self, what: str, done: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.02)
        pytest.fail(f"never {what}: {self.status()}, calls {self.calls()}")

    def phase(self, phase: str) -> None:
        self.until(f"phase {phase}", lambda: self.status().get("phase") == phase)

    def calls(self, name: str | None = None) -> list[dict[str, Any]]:
        path = self.control / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if name is None or c["name"] == name]

    def check_started(self, n: int) -> float:
        """When check n started (waits for it)."""
        marker = self.control / f"started-check-{n}"
        self.until(f"check {n} started", marker.exists)
        return float(marker.read_text())

    def flag(self, name: str, on: bool = True) -> None:
        path = self.control / name
        if on:
            path.write_text("")
        else:
            path.unlink(missing_ok=True)

    def raised_in_history(self) -> int:
        return sum(1 for e in self.host.history(WATCHER) if e["EventType"] == 15)


@pytest.fixture
def watch(tmp_path, monkeypatch) -> Iterator[Watch]:
    control = tmp_path / "control"
    control.mkdir()
    monkeypatch.setenv("WATCHER_CONTROL", str(control))
    with DurableHost(tmp_path / "state", app_module=APP, workers=2) as host:
        yield Watch(host, control)


def start(watch: Watch, **extra: Any) -> None:
    state = WatchState(config=config(**extra))
    watch.host.start_new("dataset_watcher", WATCHER, json.dumps(state.to_dict()))
    watch.phase("idle")


@pytest.mark.slow
def test_an_upload_during_the_change_check_gets_a_check_of_its_own(watch: Watch):
    """The wait that lost to the quiet-period timer is still open in the runtime while
    check_changes runs, and takes the event raised meanwhile: the watcher absorbs it, and a
    second check follows it (before: it went idle, the file unpublished until the next
    upload)."""
    start(watch)
    watch.flag("unchanged")
    watch.flag("hold-check")
    watch.upload()
    watch.check_started(1)
    during = watch.upload()
    watch.until("the event is in the history", lambda: watch.raised_in_history() == 2)
    watch.flag("hold-check", on=False)
    assert watch.check_started(2) > during
    watch.phase("idle")
    assert watch.status()["checks_without_change"] == 2


@pytest.mark.slow
def test_an_upload_in_the_same_batch_as_the_check_result_gets_a_check(watch: Watch):
    """The check's completion and an upload event reach the watcher in one batch."""
    start(watch)
    watch.flag("unchanged")
    watch.flag("hold-check")
    watch.upload()
    watch.check_started(1)
    with watch.host.holding_episodes():
        watch.flag("hold-check", on=False)
        watch.until("check 1 ended", lambda: len(watch.calls("check_changes")) == 1)
        same_batch = watch.upload()
        time.sleep(0.2)
    assert watch.check_started(2) > same_batch
    watch.phase("idle")


@pytest.mark.slow
def test_an_upload_dropped_with_a_continue_as_new_is_still_followed_by_a_check(watch: Watch):
    """The extension drops events in the same batch as continue-as-new. The watcher continues
    as new only while a check is owed, so the check it owes starts after the dropped event."""
    start(watch, turns_per_generation=2)
    watch.upload()
    watch.phase("waiting")
    before = watch.host.get_status(WATCHER)["input"]
    with watch.host.holding_episodes():
        watch.upload()  # completes the wait: the next turn continues as new
        dropped = watch.upload()  # same batch: dropped by the runtime
        time.sleep(0.2)
    watch.until("continued as new", lambda: watch.host.get_status(WATCHER)["input"] != before)
    assert watch.check_started(1) > dropped
    watch.phase("running")  # the check found the files: one run, followed across generations
    watch.flag("unchanged")
    watch.flag("run-done")
    watch.phase("idle")
    assert watch.status()["runs"] == 1


@pytest.mark.slow
def test_uploads_during_a_run_are_checked_after_it(watch: Watch):
    """Uploads while the run the watcher started is in progress: absorbed while it follows
    the run, and a check after the run lists them."""
    start(watch)
    watch.upload()
    watch.phase("running")
    during = [watch.upload() for _ in range(3)]
    watch.flag("unchanged")
    watch.flag("run-done")
    assert watch.check_started(2) > max(during)
    watch.phase("idle")
    status = watch.status()
    assert status["runs"] == 1 and status["last_run"]["ok"] is True
    assert len(watch.calls("start_run")) == 1


@pytest.mark.slow
def test_a_run_in_progress_is_never_replaced_and_the_uploads_run_after_it(watch: Watch):
    """start_run answers busy (another run of the dataset, e.g. an HTTP one): the watcher
    starts nothing, checks again after the quiet period, and starts its run once the other
    has ended."""
    start(watch)
    watch.flag("busy")
    watch.upload()
    watch.until("refused once", lambda: len(watch.calls("start_run")) >= 1)
    # the activity has answered; the watcher records the refusal in its next episode
    watch.until(
        "recorded the refusal",
        lambda: (watch.status().get("last_start") or {}).get("started") is False,
    )
    watch.until("refused twice", lambda: len(watch.calls("start_run")) >= 2)
    watch.flag("busy", on=False)
    watch.phase("running")
    watch.flag("unchanged")
    watch.flag("run-done")
    watch.phase("idle")
    assert watch.status()["runs"] == 1
