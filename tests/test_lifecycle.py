"""The release lifecycle over real HTTP against the local host: submit -> build -> approve
(or reject, or time out) -> publish -> versions -> unpublish -> cleanup."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.durable import DurableHost
from devhost.samples import SampleSpec, write_sample_files
from devhost.server import DevServer
from shared.model.layout import Layout
from shared.model.settings import Settings
from tests.helpers import Answer, call, open_sources

SPEC = SampleSpec(files=3, lat=4, lon=6)


@dataclass
class Host:
    server: DevServer
    settings: Settings
    source: Path

    def url(self, path: str) -> str:
        return f"{self.server.base_url}/api/{path}"

    def submit(self, dataset: str, **options: Any) -> str:
        body = {"source": str(self.source), "dataset_id": dataset, "options": options}
        answer = call("POST", self.url("pipelines"), body)
        assert answer.status == 202, answer.json()
        return answer.json()["instance_id"]

    def status(self, instance_id: str) -> dict[str, Any]:
        return call("GET", self.url(f"pipelines/{instance_id}")).json()

    def wait(self, instance_id: str, done: Callable[[dict], bool], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.status(instance_id)
            if done(view):
                return view
            time.sleep(0.1)
        raise AssertionError(f"{instance_id}: {self.status(instance_id)}")

    def awaiting(self, instance_id: str) -> dict:
        return self.wait(instance_id, lambda v: v.get("phase") == "awaiting_approval")

    def finished(self, instance_id: str) -> dict:
        return self.wait(instance_id, lambda v: v["runtime_status"] in ("Completed", "Failed"))

    def decide(self, instance_id: str, decision: str, **body: Any) -> Answer:
        return call("POST", self.url(f"pipelines/{instance_id}/{decision}"), body)

    def versions(self, dataset: str) -> Answer:
        return call("GET", self.url(f"datasets/{dataset}"))

    def unpublish(self, dataset: str, version: str, **body: Any) -> Answer:
        return call("POST", self.url(f"datasets/{dataset}/versions/{version}/unpublish"), body)


@pytest.fixture
def host(tmp_path, local_settings, monkeypatch) -> Iterator[Host]:
    settings = local_settings.with_changes(approval_timeout_seconds=3)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "source"
    write_sample_files(source, SPEC)
    # The 7-day approval timeout, the Azure Storage backend's 6-day timer limit and its 3-day
    # long-timer interval, all scaled to the 3 s timeout: the timeout becomes the same chain
    # of timers as on Azure (3 days, then 4).
    scale = 3 / 7
    with (
        DurableHost(
            tmp_path / "state",
            workers=2,
            max_short_timer=timedelta(seconds=6 * scale),
            long_timer_interval=timedelta(seconds=3 * scale),
        ) as durable,
        DevServer(durable) as server,
    ):
        yield Host(server, settings, source)


def item_equals_sources(host: Host, item_url: str, paths: list[Path]) -> None:
    with open_item(item_url, host.settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(sorted(paths)))


@pytest.mark.slow
def test_an_approved_run_publishes_and_records_who_approved(host: Host):
    instance_id = host.submit("tas-approve", approval=True)
    waiting = host.awaiting(instance_id)
    assert waiting["approval"]["state"] == "awaiting" and waiting["approval"]["deadline"]
    assert waiting["gate_summary_url"] and waiting["store_url"]  # what the approver reads
    assert host.versions("tas-approve").status == 404  # nothing published yet

    answer = host.decide(instance_id, "approve", by="alice", reason="report checked")
    assert answer.status == 202 and answer.json()["decision"]["by"] == "alice"
    done = host.finished(instance_id)
    assert done["phase"] == "succeeded" and done["approval"]["state"] == "approved"

    versions = host.versions("tas-approve").json()
    [version] = versions["versions"]
    assert versions["current"] == version["version"] == done["run_id"] and version["current"]
    assert version["approval"]["by"] == "alice" and version["file_count"] == 3
    item_equals_sources(host, done["item_url"], sorted(host.source.glob("*.nc")))


@pytest.mark.slow
def test_a_rejected_run_publishes_nothing_and_keeps_its_store_for_inspection(host: Host):
    instance_id = host.submit("tas-reject", approval=True)
    host.awaiting(instance_id)
    assert host.decide(instance_id, "reject", by="bob").status == 400  # a reason is required
    answer = host.decide(instance_id, "reject", by="bob", reason="wrong calendar")
    assert answer.status == 202
    done = host.finished(instance_id)
    assert done["runtime_status"] == "Completed" and done["phase"] == "rejected"
    assert done["approval"] | {"at": None} == {
        "required": True,
        "state": "rejected",
        "deadline": done["approval"]["deadline"],
        "by": "bob",
        "reason": "wrong calendar",
        "at": None,
    }
    assert "item_url" not in done
    assert host.versions("tas-reject").status == 404
    assert not Path(host.settings.catalog, "tas-reject").exists()
    layout = Layout.from_settings(host.settings)
    assert Path(layout.verified_marker("tas-reject", done["run_id"]).path).exists()


@pytest.mark.slow
def test_a_run_nobody_decides_expires_and_publishes_nothing(host: Host):
    instance_id = host.submit("tas-expire", approval=True)
    host.awaiting(instance_id)
    done = host.finished(instance_id)  # the timeout is 3 s in this test
    assert done["phase"] == "expired" and done["approval"]["by"] == "timeout"
    history = host.server.host.history(instance_id)
    timers = [e for e in history if e["EventType"] == 10]
    assert len(timers) == 2  # a long timer, as on Azure: "3 days", then the "4 days" left
    assert host.versions("tas-expire").status == 404
    late = host.decide(instance_id, "approve", by="carol")
    assert late.status == 409 and "not waiting" in late.json()["error"]["message"]


@pytest.mark.slow
def test_bad_ids_and_second_decisions_get_404_and_409_with_clear_messages(host: Host):
    unknown = host.decide("pipeline-nope", "approve", by="dave")
    assert unknown.status == 404 and "pipeline-nope" in unknown.json()["error"]["message"]
    assert host.decide("watch-x", "approve", by="dave").status == 404
    assert host.versions("Not_A_Dataset").status == 404
    assert host.unpublish("nothing", "0123456789abcdef", by="d", reason="r").status == 404

    instance_id = host.submit("tas-twice", approval=True)
    host.awaiting(instance_id)
    assert host.decide(instance_id, "approve").status == 400  # who decides?
    assert host.decide(instance_id, "approve", by="erin").status == 202
    second = host.decide(instance_id, "reject", by="frank", reason="too late")
    assert second.status == 409
    assert "already decided: approve by erin" in second.json()["error"]["message"]
    assert host.finished(instance_id)["phase"] == "succeeded"
    run_id = host.status(instance_id)["run_id"]
    bad = host.unpublish("tas-twice", "not-a-version", by="g", reason="r")
    assert bad.status == 404 and "16 hex digits" in bad.json()["error"]["remedy"]
    assert host.unpublish("tas-twice", run_id, by="g").status == 400  # why?


@pytest.mark.slow
def test_unpublishing_the_current_version_makes_the_previous_one_current(host: Host):
    first_files = sorted(host.source.glob("*.nc"))
    first = host.finished(host.submit("tas-versions"))
    more = write_sample_files(host.source, SampleSpec(files=1, lat=4, lon=6, first_index=3))
    second = host.finished(host.submit("tas-versions"))
    listed = host.versions("tas-versions").json()
    assert [v["version"] for v in listed["versions"]] == [second["run_id"], first["run_id"]]
    assert listed["current"] == second["run_id"]

    answer = host.unpublish("tas-versions", second["run_id"], by="gina", reason="bad day 4")
    assert answer.status == 200, answer.json()
    assert answer.json()["current"] == first["run_id"]
    listed = host.versions("tas-versions").json()
    assert listed["current"] == first["run_id"]
    gone = next(v for v in listed["versions"] if v["version"] == second["run_id"])
    assert gone["state"] == "unpublished" and gone["unpublished"]["by"] == "gina"
    item_equals_sources(host, first["item_url"], first_files)
    assert all(p.exists() for p in [*first_files, *more])  # sources untouched

    again = host.unpublish("tas-versions", second["run_id"], by="gina", reason="again")
    assert again.status == 409 and "already unpublished" in again.json()["error"]["message"]
    in_use = call("POST", host.url(f"datasets/tas-versions/versions/{first['run_id']}/cleanup"))
    assert in_use.status == 409
    cleaned = call("POST", host.url(f"datasets/tas-versions/versions/{second['run_id']}/cleanup"))
    assert cleaned.status == 200 and cleaned.json()["objects_removed"] >= 2

    last = host.unpublish("tas-versions", first["run_id"], by="gina", reason="withdrawn")
    assert last.status == 200 and last.json()["current"] is None
    assert host.versions("tas-versions").json()["current"] is None
    assert not Path(first["item_url"].removeprefix("file://")).exists()


@pytest.mark.slow
def test_the_command_line_approves_lists_unpublishes_and_cleans_up(host: Host, capsys):
    from devhost.cli import main

    url = ["--url", host.server.base_url]
    first = host.finished(host.submit("tas-cli"))
    write_sample_files(host.source, SampleSpec(files=1, lat=4, lon=6, first_index=3))
    instance_id = host.submit("tas-cli", approval=True)
    host.awaiting(instance_id)
    assert main(["approve", instance_id, "--by", "hana", *url]) == 0
    second = host.finished(instance_id)
    assert f"approved {instance_id}" in capsys.readouterr().out

    assert main(["versions", "tas-cli", *url]) == 0
    listing = capsys.readouterr().out
    assert f"current version {second['run_id']}" in listing and first["run_id"] in listing

    assert main(["unpublish", "tas-cli", second["run_id"], "--reason", "oops", *url]) == 0
    assert f"current version is now {first['run_id']}" in capsys.readouterr().out
    assert main(["cleanup", "tas-cli", second["run_id"], *url]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["reject", instance_id, "--reason", "late", *url]) == 1
    assert "409" in capsys.readouterr().err


@pytest.mark.slow
def test_a_decision_for_a_run_not_waiting_is_refused_and_not_recorded(host: Host):
    finished = host.finished(host.submit("tas-early"))
    early = host.decide(finished["instance_id"], "approve", by="ivan")
    assert early.status == 409 and "not waiting" in early.json()["error"]["message"]
    # The same files again, now waiting: the same build (run id), still undecided.
    instance_id = host.submit("tas-early", approval=True)
    waiting = host.awaiting(instance_id)
    assert waiting["run_id"] == finished["run_id"]
    assert host.decide(instance_id, "reject", by="judy", reason="not yet").status == 202
    assert host.finished(instance_id)["phase"] == "rejected"


@pytest.mark.slow
def test_an_unpublish_longer_than_the_wait_answers_202_and_its_status_has_the_result(
    host: Host, monkeypatch, capsys
):
    """Unpublish is an orchestration (orchestrators/release.py): the HTTP answer waits a
    while for it, and after that gives the status URL, which has the result once it ends.
    The command line follows that URL."""
    import api.releases
    from devhost.cli import main

    first = host.finished(host.submit("tas-slow"))
    write_sample_files(host.source, SampleSpec(files=1, lat=4, lon=6, first_index=3))
    second = host.finished(host.submit("tas-slow"))
    monkeypatch.setattr(api.releases, "RELEASE_WAIT_SECONDS", 0.0)
    answer = host.unpublish("tas-slow", second["run_id"], by="ida", reason="slow")
    assert answer.status == 202, answer.json()
    assert answer.json()["status_url"].endswith("/api/pipelines/release-tas-slow")
    # Until the orchestration first runs its status has no phase yet (Pending): wait for an end.
    view = host.wait("release-tas-slow", lambda v: v.get("phase") not in (None, "running"))
    assert view["operation"] == "unpublish" and view["phase"] == "succeeded", view
    assert view["result"]["current"] == first["run_id"]

    url = ["--url", host.server.base_url]
    assert main(["unpublish", "tas-slow", first["run_id"], "--reason", "gone", *url]) == 0
    assert "current version is now (none" in capsys.readouterr().out
    assert host.versions("tas-slow").json()["current"] is None


@pytest.mark.slow
def test_a_second_release_operation_on_a_dataset_waits_for_the_first(host: Host, monkeypatch):
    """One release operation per dataset at a time (they read and write the same ledger):
    while one is in progress a second is refused with 409, naming where to follow the first."""
    import api.releases

    host.finished(host.submit("tas-one"))
    write_sample_files(host.source, SampleSpec(files=1, lat=4, lon=6, first_index=3))
    second = host.finished(host.submit("tas-one"))
    monkeypatch.setattr(api.releases, "RELEASE_WAIT_SECONDS", 0.0)
    with host.server.host.holding_episodes():  # the first stays in progress meanwhile
        started = host.unpublish("tas-one", second["run_id"], by="ida", reason="one")
        assert started.status == 202, started.json()
        refused = host.unpublish("tas-one", second["run_id"], by="ida", reason="two")
    assert refused.status == 409, refused.json()
    assert "/api/pipelines/release-tas-one" in refused.json()["error"]["remedy"]
    host.wait("release-tas-one", lambda v: v.get("phase") == "succeeded")


@pytest.mark.slow
def test_pruning_is_a_step_of_its_own_after_register(host: Host):
    """register publishes; the old stores beyond the number kept are removed by the next
    activity (prune_versions), whose failure would not fail a published run."""
    instance_id = host.submit("tas-prune")
    host.finished(instance_id)
    db = sqlite3.connect(host.server.host.state_dir / "durable.sqlite")
    names = [n for (n,) in db.execute(
        "SELECT name FROM executions WHERE instance_id = ? ORDER BY id", (instance_id,)
    )]  # fmt: skip
    db.close()
    assert names[-3:] == ["register_item", "prune_versions", "record_run"]
