"""Event-driven ingestion end to end: files uploaded to Azurite, their BlobCreated events
posted (shuffled, duplicated) to devhost's Event Grid webhook, the real blob_created
function, the dataset watcher and the pipeline on the real Durable SDK replay."""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.durable import DurableHost
from devhost.events import blob_created_events, post_events, webhook_url
from devhost.samples import SampleSpec, truncate_copy, write_sample_files
from devhost.server import DevServer
from shared.io.storage import Storage
from shared.model.settings import Settings
from tests.conftest import Containers
from tests.helpers import call, open_sources

pytestmark = pytest.mark.azurite

DATASET = "tas-upload"
WATCHER = f"watch-{DATASET}"
QUIET = 2


@dataclass
class Ingest:
    host: DurableHost
    server: DevServer
    settings: Settings
    container: str
    containers: Containers
    folder: Path

    @property
    def source(self) -> str:
        return f"az://{self.container}/daily"

    def upload(self, spec: SampleSpec) -> list[Path]:
        paths = write_sample_files(self.folder, spec)
        self.containers.upload(self.container, "daily", paths)
        return paths

    def events_for(self, names: list[str]) -> list[dict[str, Any]]:
        events = blob_created_events(self.source, self.settings, Storage(self.settings))
        return [e for e in events if e["data"]["url"].rsplit("/", 1)[-1] in names]

    def post(self, events: list[dict[str, Any]]) -> None:
        post_events(self.server.base_url, events)

    def watcher(self) -> dict[str, Any]:
        status = self.host.get_status(WATCHER)
        assert status is not None, "the watcher was never started"
        return status["customStatus"] or {}

    def wait_watcher(self, done: Callable[[dict[str, Any]], bool], timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.host.get_status(WATCHER)
            if status and status["runtimeStatus"] == "Failed":
                pytest.fail(f"the watcher failed: {status['output']}")
            if status and done(status["customStatus"] or {}):
                return status["customStatus"]
            time.sleep(0.2)
        pytest.fail(f"the watcher did not get there in {timeout} s: {self.watcher()}")

    def wait_scanned(self, files: int, timeout: float = 120) -> None:
        """Until the dataset's run has scanned its source and found ``files`` files."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.host.get_status(f"pipeline-{DATASET}") or {}
            custom = status.get("customStatus") or {}
            if (custom.get("files") or {}).get("total") == files:
                return
            time.sleep(0.1)
        pytest.fail(f"the run never scanned {files} files: {status}")

    def executed(self) -> Counter[str]:
        return Counter(e[2] for e in self.host.executions())


@pytest.fixture
def ingest(tmp_path, blob_settings, containers, monkeypatch) -> Iterator[Ingest]:
    container = containers.new("uploads")
    registry = {
        "datasets": {
            DATASET: {
                "source": f"az://{container}/daily",
                "patterns": ["*.nc"],
                "quiet_seconds": QUIET,
                "max_wait_seconds": 120,
            }
        }
    }
    settings = blob_settings.with_changes(
        datasets=json.dumps(registry), batch_size=10, files_per_activity=5
    )
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    with (
        DurableHost(tmp_path / "state", workers=2) as host,
        DevServer(host) as server,
    ):
        yield Ingest(host, server, settings, container, containers, tmp_path / "files")


def idle_after(runs: int, checks: int) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (
        s.get("phase") == "idle"
        and s.get("runs") == runs
        and s.get("checks_without_change") == checks
    )


@pytest.mark.slow
def test_fifty_uploads_shuffled_and_duplicated_make_exactly_one_run(ingest: Ingest):
    paths = ingest.upload(SampleSpec(files=50, lat=4, lon=6))
    events = ingest.events_for([p.name for p in paths])
    assert len(events) == 50
    delivered = events + [dict(e, id=f"{e['id']}-again") for e in events[::3]]
    random.Random(7).shuffle(delivered)
    ingest.post(delivered)

    # One run, then the check owed after it finds nothing new.
    watcher = ingest.wait_watcher(idle_after(runs=1, checks=1))
    assert watcher["last_run"]["ok"] is True and watcher["last_run"]["files"] == 50
    executed = ingest.executed()
    assert executed["scan_files"] == 1
    assert executed["check_changes"] == 2
    run = ingest.host.get_status(f"pipeline-{DATASET}")
    assert run["output"]["files"]["total"] == 50
    with open_item(run["output"]["outputs"]["item_url"], ingest.settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))

    # Event Grid delivers some of them again hours later: a check, no run.
    ingest.post([dict(e, id=f"{e['id']}-late") for e in events[:5]])
    ingest.wait_watcher(idle_after(runs=1, checks=2))
    assert ingest.executed()["scan_files"] == 1


@pytest.mark.slow
def test_uploads_during_a_run_make_exactly_one_follow_up_run_with_the_new_files(ingest: Ingest):
    first = ingest.upload(SampleSpec(files=6, lat=4, lon=6))
    ingest.post(ingest.events_for([p.name for p in first]))
    ingest.wait_watcher(lambda s: s.get("phase") == "running", timeout=60)
    ingest.wait_scanned(6)  # the run has listed its files: what comes now is for the next one

    more = ingest.upload(SampleSpec(files=2, lat=4, lon=6, first_index=6))
    ingest.post(ingest.events_for([p.name for p in more]) * 2)
    during = ingest.host.get_status(f"pipeline-{DATASET}")
    assert during["runtimeStatus"] in ("Pending", "Running"), "the events came after the run"

    watcher = ingest.wait_watcher(idle_after(runs=2, checks=1))
    assert watcher["last_run"]["ok"] is True
    assert watcher["last_run"]["files"] == 8 and watcher["last_run"]["reused"] == 6
    assert ingest.executed()["scan_files"] == 2
    run = ingest.host.get_status(f"pipeline-{DATASET}")
    with open_item(run["output"]["outputs"]["item_url"], ingest.settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(first + more))


@pytest.mark.slow
def test_events_for_other_containers_suffixes_and_prefixes_are_ignored_with_a_log_line(
    ingest: Ingest, caplog
):
    endpoint = ingest.settings.account.endpoint
    other = ingest.containers.new("other")

    def event(event_id: str, url: str, event_type: str = "Microsoft.Storage.BlobCreated") -> dict:
        return {
            "id": event_id,
            "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/"
            "storageAccounts/devstoreaccount1",
            "subject": "/blobServices/default/containers/c/blobs/b",
            "eventType": event_type,
            "eventTime": "2026-11-25T03:00:00Z",
            "data": {"api": "PutBlob", "url": url, "eTag": "0x1", "contentLength": 1},
            "dataVersion": "",
            "metadataVersion": "1",
        }

    with caplog.at_level(logging.INFO, logger="api.events"):
        ingest.post(
            [
                event("other-container", f"{endpoint}/{other}/daily/a.nc"),
                event("other-suffix", f"{endpoint}/{ingest.container}/daily/readme.txt"),
                event("other-prefix", f"{endpoint}/{ingest.container}/monthly/a.nc"),
                event("other-account", "https://elsewhere.blob.core.windows.net/c/daily/a.nc"),
                event("deleted", f"{endpoint}/{ingest.container}/daily/a.nc", "BlobDeleted"),
            ]
        )
    reasons = {
        r.event_id: (r.levelname, r.event_reason)
        for r in caplog.records
        if getattr(r, "event_action", None) == "ignore"
    }
    assert reasons == {
        "other-container": ("WARNING", "unknown_dataset"),
        "other-suffix": ("INFO", "pattern_mismatch"),
        "other-prefix": ("WARNING", "unknown_dataset"),
        "other-account": ("WARNING", "outside_storage"),
        "deleted": ("INFO", "not_blob_created"),
    }
    assert all("event ignored" in r.getMessage() for r in caplog.records if r.name == "api.events")
    assert ingest.host.get_status(WATCHER) is None


@pytest.mark.slow
def test_a_bad_upload_fails_one_run_and_its_corrected_upload_is_published(ingest: Ingest):
    good = ingest.upload(SampleSpec(files=3, lat=4, lon=6))
    fixed = write_sample_files(
        ingest.folder / "later", SampleSpec(files=1, lat=4, lon=6, first_index=3)
    )
    broken = truncate_copy(fixed[0], ingest.folder / "broken" / fixed[0].name)
    ingest.containers.upload(ingest.container, "daily", [broken])
    ingest.post(ingest.events_for([p.name for p in [*good, broken]]))

    # The run fails at the gate; the check owed after it sees the same files: no retry loop.
    watcher = ingest.wait_watcher(idle_after(runs=1, checks=1))
    assert watcher["last_run"]["ok"] is False
    assert "unsuitable_collection" in watcher["last_run"]["error"]
    failed = ingest.host.get_status(f"pipeline-{DATASET}")
    assert failed["customStatus"]["errors"][0]["url"].endswith(broken.name)

    corrected = ingest.folder / fixed[0].name  # beside the good ones, in date order
    corrected.write_bytes(fixed[0].read_bytes())
    ingest.containers.upload(ingest.container, "daily", [corrected])
    ingest.post(ingest.events_for([corrected.name]))
    watcher = ingest.wait_watcher(idle_after(runs=2, checks=2))
    assert watcher["last_run"]["ok"] is True and watcher["last_run"]["files"] == 4
    run = ingest.host.get_status(f"pipeline-{DATASET}")
    with open_item(run["output"]["outputs"]["item_url"], ingest.settings) as published:
        xr.testing.assert_identical(published.load(), open_sources([*good, corrected]))


@pytest.mark.slow
def test_an_unreadable_registry_fails_the_delivery_so_event_grid_retries_it(
    ingest: Ingest, monkeypatch
):
    monkeypatch.setenv("PIPELINE_DATASETS", '{"datasets": {"tas": {"source": 42}}}')
    endpoint = ingest.settings.account.endpoint
    event = {
        "id": "e-registry",
        "subject": "/blobServices/default/containers/c/blobs/daily/a.nc",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-25T03:00:00Z",
        "data": {"url": f"{endpoint}/{ingest.container}/daily/a.nc", "eTag": "0x1"},
    }
    answer = call("POST", webhook_url(ingest.server.base_url), [event])
    assert answer.status == 500
    message = answer.json()["error"]["message"]
    assert "e-registry" in message and "'tas'" in message and "source" in message
    assert ingest.host.get_status(WATCHER) is None


@pytest.mark.slow
def test_a_run_started_over_http_is_never_replaced_by_uploads_which_run_after_it(
    ingest: Ingest,
):
    """One run per dataset on Azure's semantics: an HTTP-started run waits for approval while
    a burst of uploads arrives. The watcher starts runs the way the HTTP starter does (a
    client start, refused while the run is in progress), so it never replaces that run; its
    uploads are published by the run it starts once the first has ended."""
    first = ingest.upload(SampleSpec(files=4, lat=4, lon=6))
    base = ingest.server.base_url
    body = {"source": ingest.source, "dataset_id": DATASET, "options": {"approval": True}}
    assert call("POST", f"{base}/api/pipelines", body).status == 202
    run_id = f"pipeline-{DATASET}"
    deadline = time.monotonic() + 120
    while (ingest.host.get_status(run_id)["customStatus"] or {}).get(
        "phase"
    ) != "awaiting_approval":
        assert time.monotonic() < deadline, ingest.host.get_status(run_id)
        time.sleep(0.2)
    created = ingest.host.get_status(run_id)["createdTime"]

    later = ingest.upload(SampleSpec(files=3, lat=4, lon=6, first_index=4))
    ingest.post(ingest.events_for([p.name for p in later]))
    watcher = ingest.wait_watcher(lambda s: (s.get("last_start") or {}).get("started") is False)
    assert watcher["last_start"]["busy"] == "Running"
    waiting = ingest.host.get_status(run_id)
    assert (
        waiting["createdTime"] == created
        and waiting["customStatus"]["phase"] == "awaiting_approval"
    )

    decision = {"by": "operator", "reason": "checked"}
    assert call("POST", f"{base}/api/pipelines/{run_id}/approve", decision).status == 202
    watcher = ingest.wait_watcher(lambda s: s.get("runs") == 1 and s.get("phase") == "idle")
    assert watcher["last_run"]["ok"] is True and watcher["last_run"]["files"] == 7
    run = ingest.host.get_status(run_id)
    with open_item(run["output"]["outputs"]["item_url"], ingest.settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(first + later))
