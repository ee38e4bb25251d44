"""Orchestration versioning: a deploy over runs in flight.

The orchestrations the previous release left in flight (a run waiting for approval, a
dataset's watcher; recorded by tools/record_histories.py from that release's own code, kept
in tests/fixtures/histories/) are replayed by today's code on devhost and complete; one of a
newer release is refused as host.json's versionFailureStrategy says. devhost imitates the
extension's version matching (DTFx TaskOrchestrationDispatcher with VersioningSettings:
CompareVersions, Strict / CurrentOrOlder, Reject abandons the work item with the Azure
Storage backend's backoff, Fail ends it VersionMismatch) and its non-determinism check
(DTFx TaskOrchestrationContext.HandleTaskScheduledEvent and the timer and sub-orchestration
handlers: NonDeterministicOrchestrationException)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableHost
from devhost.durable.snapshot import load
from devhost.durable.versioning import Versioning, abandon_delay
from devhost.events import blob_created_events, post_events
from devhost.server import DevServer
from shared.io.storage import Storage
from shared.model.settings import Settings
from shared.model.versions import CURRENT, LEGACY, RELEASED, at_least, compare_versions
from tools.record_histories import FIXTURES, install, recording_env

ROOT = Path(__file__).resolve().parent.parent
HOST = json.loads((ROOT / "host.json").read_text())
DURABLE = HOST["extensions"]["durableTask"]
RECORDED = sorted(p for p in FIXTURES.iterdir() if (p / "instances.json").is_file())
APPROVAL = "pipeline-approval"
WATCHER = "watch-watched"


def fixture_version(folder: Path) -> str:
    return LEGACY if folder.name == "legacy" else folder.name


# -- the versions: host.json, the app, the fixtures ----------------------------------------
def test_host_json_stamps_the_app_version_and_keeps_older_instances_running():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert DURABLE["defaultVersion"] == CURRENT == project["version"]
    assert DURABLE["versionMatchStrategy"] == "CurrentOrOlder"
    assert DURABLE["versionFailureStrategy"] == "Reject"
    # Dotted numbers: DTFx compares them as System.Version ("10" < "9" as text).
    assert re.fullmatch(r"\d+\.\d+\.\d+", CURRENT)
    assert RELEASED[-1] == CURRENT and list(RELEASED) == sorted(
        RELEASED, key=lambda v: [int(p) for p in v.split(".")] if v else [-1]
    )


def test_every_earlier_release_still_in_flight_has_recorded_histories():
    recorded = {fixture_version(p) for p in RECORDED}
    assert set(RELEASED[:-1]) <= recorded, "run tools/record_histories.py (docs/versioning.md)"
    assert recorded <= set(RELEASED)


@pytest.mark.parametrize(
    ("source", "other", "expected"),
    [
        ("1.0.0", "1.0.0", 0),
        ("2.0.0", "1.0.0", 1),
        ("1.0.0", "2.0.0", -1),
        ("", "1.0.0", -1),  # the documented examples of VersioningSettings.CompareVersions
        (None, "", 0),
        ("1.0", "1.0.0", -1),  # System.Version: a missing build number is older than 0
        ("1.10.0", "1.9.0", 1),
        ("10", "9", -1),  # not a System.Version: text, ignoring case
        ("V2", "v2", 0),
    ],
)
def test_versions_compare_as_dtfx_compares_them(source, other, expected):
    assert compare_versions(source, other) == expected
    assert at_least(source, other) is (expected >= 0)


@pytest.mark.parametrize(
    ("match", "refused"),
    [
        ("CurrentOrOlder", {"2.0.0"}),
        ("Strict", {"", "0.9.0", "2.0.0"}),
        ("None", set()),
    ],
)
def test_a_worker_refuses_the_versions_its_match_strategy_excludes(match, refused):
    worker = Versioning("1.0.0", match, "Reject")
    versions = {"", "0.9.0", "1.0.0", "2.0.0"}
    assert {v for v in versions if worker.refuses(v)} == refused
    assert worker.stamp(None) == "1.0.0" and worker.stamp("0.9.0") == "0.9.0"


def test_host_json_settings_read_as_the_extension_reads_them():
    assert Versioning.of_app(ROOT) == Versioning("1.0.0", "CurrentOrOlder", "Reject")
    read = Versioning.from_host_json({"versionMatchStrategy": "strict"})
    assert (read.default_version, read.match, read.failure) == ("", "Strict", "Reject")
    with pytest.raises(ValueError, match="versionFailureStrategy"):
        Versioning.from_host_json({"versionFailureStrategy": "Retry"})
    # Abandoned work items come back after 2, 4, 8 ... seconds, at most 10 minutes.
    assert [abandon_delay(n) for n in (1, 2, 3, 10)] == [2.0, 4.0, 8.0, 600.0]


# -- replaying what the previous release left in flight ------------------------------------
@contextmanager
def hub(
    fixture: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    edit: Any = None,
    due_now: bool = False,
    versioning: Versioning | None = None,
    workers: int = 2,
) -> Iterator[tuple[DurableHost, DevServer, Path]]:
    """Today's app on devhost over the task hub and the data the recorded release left."""
    root = tmp_path / "hub"
    snapshots = install(fixture, root)
    if edit is not None:
        edit(snapshots)
    for name, value in recording_env(root).items():
        monkeypatch.setenv(name, value)
    state = tmp_path / "state"
    with DurableHost(state, workers=workers, versioning=versioning) as host:
        load(host.store, snapshots, due_now=due_now)
        with DevServer(host) as server:
            yield host, server, root


def versions(host: DurableHost) -> dict[str, str]:
    with host.store.lock:
        return dict(host.store.db.execute("SELECT id, version FROM instances"))


def approve(host: DurableHost) -> None:
    decision = {"decision": "approve", "by": "replay", "reason": "recorded", "at": None}
    host.raise_event(APPROVAL, "approval", json.dumps(decision))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", RECORDED, ids=lambda p: p.name)
def test_a_run_waiting_for_approval_publishes_when_approved_after_the_deploy(
    fixture, tmp_path, monkeypatch
):
    with hub(fixture, tmp_path, monkeypatch) as (host, _, root):
        assert versions(host)[APPROVAL] == fixture_version(fixture)
        approve(host)
        done = host.wait_for(APPROVAL, timeout=180)
        assert done["runtimeStatus"] == "Completed", done
        output = done["output"]
        assert output["phase"] == "succeeded" and output["approval"]["state"] == "approved"
        item = Path(output["outputs"]["item_url"].removeprefix("file://"))
        assert item.is_file() and item.is_relative_to(root)
        # The run keeps the version it was started with, and says so to operators.
        assert versions(host)[APPROVAL] == fixture_version(fixture)
        assert output["orchestration_version"] == fixture_version(fixture)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", RECORDED, ids=lambda p: p.name)
def test_a_run_waiting_for_approval_expires_when_its_deadline_passes_after_the_deploy(
    fixture, tmp_path, monkeypatch
):
    with hub(fixture, tmp_path, monkeypatch, due_now=True) as (host, _, _):
        done = host.wait_for(APPROVAL, timeout=120)
        assert done["runtimeStatus"] == "Completed", done
        assert done["output"]["phase"] == "expired"
        assert done["output"]["approval"]["by"] == "timeout"


@pytest.mark.slow
@pytest.mark.parametrize("fixture", RECORDED, ids=lambda p: p.name)
def test_the_watcher_of_the_previous_release_takes_the_next_upload(fixture, tmp_path, monkeypatch):
    with hub(fixture, tmp_path, monkeypatch) as (host, server, root):
        before = host.get_status(WATCHER)["customStatus"]
        assert before["phase"] == "idle" and before["runs"] == 1
        settings = Settings.from_env()
        source = str(root / "data" / "source" / "watched")
        post_events(server.base_url, blob_created_events(source, settings, Storage(settings)))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = host.get_status(WATCHER)
            assert status["runtimeStatus"] == "Running", status
            custom = status["customStatus"]
            if (
                custom["phase"] == "idle"
                and custom["runs"] + custom["checks_without_change"]
                > before["runs"] + before["checks_without_change"]
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the watcher did not finish its next check: {custom}")
        assert custom["last_check"].get("error") is None, custom
        stamped = versions(host)
        # The eternal watcher keeps its version (continue-as-new keeps it); a run it starts
        # now, and that run's batches, are of today's release.
        assert stamped[WATCHER] == fixture_version(fixture)
        assert custom["orchestration_version"] == fixture_version(fixture)
        if custom["runs"] > before["runs"]:
            assert custom["last_run"]["ok"] is True, custom
            run = "pipeline-watched"
            assert stamped[run] == CURRENT
            children = [v for i, v in stamped.items() if i.startswith(f"{run}:")]
            assert children and set(children) == {CURRENT}


@pytest.mark.slow
def test_an_instance_of_a_newer_release_is_left_in_the_queue_by_this_one(tmp_path, monkeypatch):
    def newer(snapshots: list[dict[str, Any]]) -> None:
        for snapshot in snapshots:
            snapshot["instance"]["version"] = "99.0.0"  # as if a rollback followed a deploy

    with hub(RECORDED[-1], tmp_path, monkeypatch, edit=newer, workers=1) as (host, _, _):
        history = host.history(APPROVAL)
        custom = host.get_status(APPROVAL)["customStatus"]
        approve(host)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with host.store.lock:
                (abandons,) = host.store.db.execute(
                    "SELECT abandons FROM instances WHERE id = ?", (APPROVAL,)
                ).fetchone()
            if abandons:
                break
            time.sleep(0.1)
        assert abandons >= 1, "the episode was never refused"
        status = host.get_status(APPROVAL)
        # Reject: nothing ran, nothing changed; the decision waits in the queue for a worker
        # of that release.
        assert status["runtimeStatus"] == "Running" and status["customStatus"] == custom
        assert host.history(APPROVAL) == history
        with host.store.lock:
            waiting = [
                json.loads(e)
                for (e,) in host.store.db.execute(
                    "SELECT event FROM inbox WHERE instance_id = ?", (APPROVAL,)
                )
            ]
        assert any(e.get("Name") == "approval" for e in waiting)


@pytest.mark.slow
def test_with_the_fail_strategy_an_instance_of_a_newer_release_fails_version_mismatch(
    tmp_path, monkeypatch
):
    def newer(snapshots: list[dict[str, Any]]) -> None:
        snapshots[:] = [s for s in snapshots if s["instance"]["id"] == APPROVAL]
        snapshots[0]["instance"]["version"] = "99.0.0"

    failing = Versioning(CURRENT, "CurrentOrOlder", "Fail")
    with hub(RECORDED[-1], tmp_path, monkeypatch, edit=newer, versioning=failing, workers=1) as (
        host,
        _,
        _,
    ):
        approve(host)
        done = host.wait_for(APPROVAL, timeout=30)
    assert done["runtimeStatus"] == "Failed"
    assert "VersionMismatch" in json.dumps(done["output"])


@pytest.mark.slow
def test_a_replay_that_schedules_another_step_fails_as_non_deterministic(tmp_path, monkeypatch):
    """What an orchestrator change without a version branch does to a run in flight: the
    extension refuses the replay, and the run fails (here: the history says the gate ran
    an activity the code no longer calls at that point)."""

    def renamed(snapshots: list[dict[str, Any]]) -> None:
        snapshots[:] = [s for s in snapshots if s["instance"]["id"] == APPROVAL]
        for past in snapshots[0]["history"]:
            if past.get("Name") == "gate_files":
                past["Name"] = "gate_files_renamed"

    with hub(RECORDED[-1], tmp_path, monkeypatch, edit=renamed, workers=1) as (host, _, _):
        approve(host)
        done = host.wait_for(APPROVAL, timeout=30)
    assert done["runtimeStatus"] == "Failed"
    message = json.dumps(done["output"])
    assert "Non-Deterministic workflow detected" in message and "gate_files_renamed" in message


def test_the_recorded_histories_are_of_the_release_they_name():
    for folder in RECORDED:
        recorded = json.loads((folder / "instances.json").read_text())
        started = [
            e
            for snapshot in recorded["instances"]
            for e in snapshot["history"]
            if e["EventType"] == 0
        ]
        assert started and {e.get("Version") or "" for e in started} == {fixture_version(folder)}
        assert {s["instance"]["id"] for s in recorded["instances"]} == {APPROVAL, WATCHER}


def test_a_devhost_state_keeps_each_instance_version(tmp_path):
    state = tmp_path / "state"
    with DurableHost(state, in_process=True) as host:
        host.start_new("pipeline", "pipeline-x", json.dumps({"request": {}, "policy": {}}))
        host.start_new("pipeline", "pipeline-y", json.dumps({"request": {}, "policy": {}}), "0.9.0")
        host.wait_for("pipeline-x", timeout=30)
        host.wait_for("pipeline-y", timeout=30)
    db = sqlite3.connect(state / "durable.sqlite")
    stamped = dict(db.execute("SELECT id, version FROM instances"))
    db.close()
    assert stamped == {"pipeline-x": CURRENT, "pipeline-y": "0.9.0"}
