"""The dataset registry, the routing of BlobCreated events, and the watcher's debounce state
(pure parts; the whole flow through Event Grid and devhost is in test_ingestion.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.ingest.datasets import load_registry, parse_registry
from shared.ingest.events import BLOB_CREATED, FileChange, decide
from shared.ingest.watch import MAX_TRACKED, WatchState
from shared.io.storage import Storage
from shared.model.errors import BadRequest
from shared.model.locations import parse_location
from shared.model.settings import Settings

ACCOUNT_URL = "https://prodaccount.blob.core.windows.net"
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def registry_settings(account, containers_allowed=("netcdf",), **datasets) -> Settings:
    document = {"datasets": datasets or {"tas": {"source": "az://netcdf/daily/tas"}}}
    return Settings(
        account=account,
        allowed_containers=containers_allowed,
        datasets=json.dumps(document),
        quiet_seconds=30,
        max_wait_seconds=600,
    )


@pytest.fixture
def account():
    from shared.model.settings import StorageAccount

    return StorageAccount("prodaccount")


def blob_event(url: str, **data) -> dict:
    return {"url": url, "eTag": "0x8DE1", "contentLength": 10, "sequencer": "00a1", **data}


def test_a_registry_entry_is_a_pipeline_request_with_debounce_defaults(account):
    settings = registry_settings(
        account,
        tas={"source": "az://netcdf/daily/tas", "format": "icechunk", "patterns": ["*.nc"]},
        pr={"source": "az://netcdf/daily/pr", "quiet_seconds": 5, "max_wait_seconds": 60},
    )
    registry = load_registry(settings)
    tas, pr = registry.get("tas"), registry.get("pr")
    assert tas.request.format == "icechunk" and tas.request.dataset_id == "tas"
    assert (tas.quiet_seconds, tas.max_wait_seconds) == (30, 600)
    assert (pr.quiet_seconds, pr.max_wait_seconds) == (5, 60)
    assert registry.get("other") is None


@pytest.mark.parametrize(
    ("datasets", "named"),
    [
        ({"Bad Id": {"source": "az://netcdf/x"}}, "Bad Id"),
        ({"tas": {"source": "az://other/x"}}, "'tas'"),
        ({"tas": {"source": "az://netcdf/x", "format": "zarr3"}}, "format"),
        ({"tas": {"source": "az://netcdf/x", "quiet_seconds": 0}}, "quiet_seconds"),
        ({"tas": {"source": "az://netcdf/x", "quiet_seconds": 90, "max_wait_seconds": 9}}, "below"),
        ({"a": {"source": "az://netcdf/x"}, "b": {"source": "az://netcdf/x/y"}}, "overlap"),
        ({"tas": {"source": "az://netcdf/x", "colour": "red"}}, "colour"),
    ],
)
def test_a_bad_registry_entry_is_refused_naming_the_dataset_and_field(account, datasets, named):
    with pytest.raises(BadRequest) as raised:
        parse_registry({"datasets": datasets}, registry_settings(account), origin="test")
    assert named in str(raised.value)


def test_a_registry_that_is_not_json_says_what_the_setting_must_hold(account):
    settings = registry_settings(account).with_changes(datasets="{not json")
    with pytest.raises(BadRequest, match="PIPELINE_DATASETS"):
        load_registry(settings)


@pytest.mark.azurite
def test_a_registry_document_in_blob_storage_is_read(blob_settings, containers):
    container = containers.new("config")
    document = {"datasets": {"tas": {"source": f"az://{container}/tas", "concat_dim": "time"}}}
    location = parse_location(f"az://{container}/datasets.json", blob_settings)
    Storage(blob_settings).write_json(location, document)
    registry = load_registry(blob_settings.with_changes(datasets=location.url))
    assert registry.get("tas").source.url == f"az://{container}/tas"


@pytest.mark.parametrize(
    ("event_type", "url", "data", "reason"),
    [
        ("Microsoft.Storage.BlobDeleted", "az://netcdf/daily/tas/a.nc", {}, "not_blob_created"),
        (BLOB_CREATED, f"{ACCOUNT_URL}/logs/a.nc", {}, "outside_storage"),
        (BLOB_CREATED, "https://other.blob.core.windows.net/netcdf/a.nc", {}, "outside_storage"),
        (BLOB_CREATED, f"{ACCOUNT_URL}/netcdf/other/a.nc", {}, "unknown_dataset"),
        (BLOB_CREATED, f"{ACCOUNT_URL}/netcdf/daily/tas/a.txt", {}, "pattern_mismatch"),
        (BLOB_CREATED, f"{ACCOUNT_URL}/netcdf/daily/tas/a.nc", {"api": "CreateFile"}, "not_uploaded"),  # noqa: E501
    ],
)  # fmt: skip
def test_events_not_for_a_dataset_are_ignored_with_a_reason(account, event_type, url, data, reason):
    settings = registry_settings(account)
    decision = decide(
        event_id="e1",
        event_type=event_type,
        data=blob_event(url, **data),
        registry=load_registry(settings),
        settings=settings,
    )
    assert (decision.action, decision.reason) == ("ignore", reason)
    assert decision.change is None
    assert decision.log_fields()["event_reason"] == reason


def test_an_event_without_a_url_is_malformed(account):
    settings = registry_settings(account)
    decision = decide(
        event_id="e1",
        event_type=BLOB_CREATED,
        data={"api": "PutBlob"},
        registry=load_registry(settings),
        settings=settings,
    )
    assert decision.reason == "malformed"


def test_an_upload_into_a_dataset_prefix_is_routed_with_its_canonical_url(account):
    settings = registry_settings(account)
    url = f"{ACCOUNT_URL}/netcdf/daily/tas/2024/tas_20240101.nc"
    decision = decide(
        event_id="e1",
        event_type=BLOB_CREATED,
        data=blob_event(url, eTag='"0x8DE2"', contentLength=1234),
        registry=load_registry(settings),
        settings=settings,
    )
    assert decision.action == "route" and decision.dataset.dataset_id == "tas"
    assert decision.change == FileChange(
        url="az://netcdf/daily/tas/2024/tas_20240101.nc",
        etag="0x8DE2",
        size=1234,
        sequencer="00a1",
        event_id="e1",
    )


def change(name: str, etag: str = "e1", sequencer: str = "0001") -> FileChange:
    return FileChange(f"az://netcdf/tas/{name}", etag, 10, sequencer, f"id-{name}-{etag}")


def state() -> WatchState:
    return WatchState(
        config={"request": {"dataset_id": "tas"}, "quiet_seconds": 60, "max_wait_seconds": 600}
    )


def test_duplicates_and_older_events_change_nothing_not_even_the_quiet_period():
    watch = state()
    assert watch.absorb(change("a.nc", "e2", "0002"), NOW) == "new"
    later = NOW + timedelta(seconds=30)
    assert watch.absorb(change("a.nc", "e2", "0002"), later) == "duplicate"
    assert watch.absorb(change("a.nc", "e1", "0001"), later) == "older"
    assert watch.pending == 1 and watch.duplicates == 2
    assert watch.due() == NOW + timedelta(seconds=60)
    assert watch.absorb(change("a.nc", "e3", "0003"), later) == "new"  # overwritten again
    assert watch.due() == later + timedelta(seconds=60)


def test_a_steady_stream_of_uploads_runs_at_the_maximum_wait():
    watch = state()
    for minute in range(20):
        watch.absorb(change(f"f{minute}.nc"), NOW + timedelta(seconds=50 * minute))
    assert watch.due() == NOW + timedelta(seconds=600)


def test_beyond_the_tracked_limit_changes_are_counted_and_the_state_stays_small():
    watch = state()
    for i in range(MAX_TRACKED + 500):
        watch.absorb(change(f"f{i}.nc"), NOW)
    assert watch.pending == MAX_TRACKED + 500
    assert len(json.dumps(watch.to_dict())) < 16_000


def test_after_a_run_one_change_check_is_owed_and_the_window_restarts():
    watch = state()
    watch.absorb(change("a.nc"), NOW)
    later = NOW + timedelta(minutes=5)
    watch.close_window(later, recheck=True)
    assert watch.pending == 0 and watch.owed and watch.due() == later + timedelta(seconds=60)
    assert watch.absorb(change("a.nc"), later) == "new"  # a new window: not a duplicate
    watch.close_window(later, recheck=False)
    assert not watch.owed
    assert WatchState.from_dict(json.loads(json.dumps(watch.to_dict()))) == watch
