"""devhost's Event Grid side: the host's webhook (/runtime/webhooks/eventgrid) delivering
to the app's Event Grid functions, and BlobCreated events built for files and posted to it
(devhost.events, `python -m devhost events`).

One DurableHost + DevServer for the module runs tests/eventgrid_test_app.py: blob_created
raises each event to a `collect` orchestration through the real Durable client, so the
collector's output is what the function was given; picky fails on subjects with "boom"."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.cli import main
from devhost.durable import TERMINAL, DurableHost
from devhost.events import (
    BLOB_CREATED,
    EventDeliveryFailed,
    as_delivered,
    blob_created_events,
    post_events,
    webhook_url,
)
from devhost.server import DevServer
from shared.io.storage import Storage
from shared.model.locations import Location, parse_location
from tests import eventgrid_test_app
from tests.eventgrid_test_app import COLLECTOR
from tests.helpers import Answer, call

APP = "tests.eventgrid_test_app"
TOPIC_PREFIX = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/devhost"
    "/providers/Microsoft.Storage/storageAccounts/"
)
DATA_KEYS = [
    "api",
    "clientRequestId",
    "requestId",
    "eTag",
    "contentType",
    "contentLength",
    "blobType",
    "url",
    "sequencer",
    "storageDiagnostics",
]


# -- plumbing ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    state = tmp_path_factory.mktemp("eventgrid")
    with DurableHost(state, app_module=APP, workers=1) as host, DevServer(host) as running:
        yield running


def deliver(
    server: DevServer,
    body: Any,
    function: str = "blob_created",
    kind: str | None = "Notification",
    path: str = "/runtime/webhooks/eventgrid",
) -> Answer:
    headers = {"aeg-event-type": kind} if kind else {}
    return call("POST", f"{server.base_url}{path}?functionName={function}", body, headers)


def collected(server: DevServer, count: int, send: Callable[[], Any]) -> tuple[Any, list[dict]]:
    """Start the collector for `count` events, send them, and return what send() returned
    and what blob_created handed the collector, in order."""
    host = server.host
    host.start_new("collect", COLLECTOR, json.dumps(count))
    try:
        sent = send()
        status = host.wait_for(COLLECTOR, timeout=30)
    finally:
        running = host.get_status(COLLECTOR, show_input=False)
        if running is not None and running["runtimeStatus"] not in TERMINAL:
            host.terminate(COLLECTOR, "the test is over")
    assert status["runtimeStatus"] == "Completed", status
    return sent, status["output"]


def grid_event(number: int, subject: str = "/things/one", **changes: Any) -> dict[str, Any]:
    return {
        "id": f"event-{number}",
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z",
        "subject": subject,
        "eventType": "Test.Thing.Happened",
        "eventTime": "2024-05-06T07:08:09.1234567Z",  # seven digits, as Azure writes them
        "data": {"number": number, "nested": {"list": [1, 2]}},
        "dataVersion": "2",
        "metadataVersion": "1",
        **changes,
    }


@pytest.fixture
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI reads its settings from the environment: no storage account, local areas."""
    for name in [n for n in os.environ if n.startswith("PIPELINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIPELINE_WORK_AREA", str(tmp_path / "work"))
    monkeypatch.setenv("PIPELINE_STORE_ROOT", str(tmp_path / "stores"))
    monkeypatch.setenv("PIPELINE_CATALOG", str(tmp_path / "catalog"))


# -- the webhook -------------------------------------------------------------------------
def test_the_subscription_handshake_answers_the_validation_code(server):
    handshake = grid_event(
        0,
        eventType="Microsoft.EventGrid.SubscriptionValidationEvent",
        data={"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "x"},
    )
    answer = deliver(server, [handshake], kind="SubscriptionValidation")
    assert answer.status == 200, answer.body
    assert answer.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    no_code = deliver(server, [grid_event(0)], kind="SubscriptionValidation")
    assert no_code.status == 400
    assert "validationCode" in no_code.json()["error"]["message"]


def test_posted_events_reach_the_function_as_event_grid_events_with_every_field(server):
    events = [grid_event(1), grid_event(2, "/things/two", dataVersion="", data=[1, "two"])]
    answer, got = collected(server, 2, lambda: deliver(server, events))
    assert (answer.status, answer.body) == (202, b"")
    assert got == [
        {
            "id": "event-1",
            "topic": events[0]["topic"],
            "subject": "/things/one",
            "event_type": "Test.Thing.Happened",
            "event_time": "2024-05-06T07:08:09.123456+00:00",
            "data_version": "2",
            "data": {"number": 1, "nested": {"list": [1, 2]}},
            "type": "EventGridEvent",
        },
        {
            "id": "event-2",
            "topic": events[1]["topic"],
            "subject": "/things/two",
            "event_type": "Test.Thing.Happened",
            "event_time": "2024-05-06T07:08:09.123456+00:00",
            "data_version": "",
            "data": [1, "two"],
            "type": "EventGridEvent",
        },
    ]


def test_a_single_event_object_without_the_header_on_the_capitalised_path_is_delivered(server):
    event = grid_event(3)
    answer, got = collected(
        server,
        1,
        lambda: deliver(
            server, event, function="Blob_Created", kind=None, path="/runtime/webhooks/EventGrid"
        ),
    )
    assert answer.status == 202, answer.body
    assert [e["id"] for e in got] == ["event-3"]


def test_a_failing_call_is_500_naming_its_event_id_and_the_rest_of_the_batch_is_delivered(server):
    eventgrid_test_app.RECEIVED.clear()
    events = [grid_event(1, "/ok/first"), grid_event(2, "/boom/here"), grid_event(3, "/ok/last")]
    answer = deliver(server, events, function="picky")
    assert answer.status == 500, answer.body
    error = answer.json()["error"]
    assert error["code"] == "function_failed"
    assert "event id event-2" in error["message"]
    assert "ValueError: cannot take /boom/here" in error["message"]
    assert "event-1" not in error["message"] and "event-3" not in error["message"]
    assert [e["subject"] for e in eventgrid_test_app.RECEIVED] == [
        "/ok/first",
        "/boom/here",
        "/ok/last",
    ]
    assert deliver(server, [grid_event(4, "/ok/again")], function="picky").status == 202


def test_an_unknown_function_is_404_naming_it(server):
    answer = deliver(server, [grid_event(1)], function="no_such_function")
    assert answer.status == 404
    assert "no_such_function" in answer.json()["error"]["message"]


def test_a_function_without_an_event_grid_trigger_is_400(server):
    answer = deliver(server, [grid_event(1)], function="collect")
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "not_an_eventgrid_function"
    assert "orchestrationTrigger" in error["message"]
    missing = call("POST", f"{server.base_url}/runtime/webhooks/eventgrid", [grid_event(1)])
    assert missing.status == 400
    assert "functionName" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'[{"id": "x",', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("an event", "the body is a string, not an array"),
        ([], "no events"),
        ([1], "event 0 is a number, not an object"),
        ([grid_event(1), {**grid_event(2), "eventType": None}], "event 1: 'eventType' is null"),
        ([{k: v for k, v in grid_event(1).items() if k != "id"}], "'id' is missing"),
        ([grid_event(1, eventTime="yesterday")], "'yesterday' is not an ISO 8601 time"),
        ([grid_event(1, topic=5)], "'topic' is a number, not a string"),
    ],
    ids=[
        "malformed",
        "not-utf8",
        "a-string",
        "empty",
        "not-objects",
        "null-field",
        "missing-id",
        "bad-time",
        "wrong-type",
    ],
)
def test_a_body_that_is_not_event_grid_events_is_400_and_nothing_is_delivered(
    server, body, fragment
):
    eventgrid_test_app.RECEIVED.clear()
    answer = deliver(server, body, "picky")
    assert answer.status == 400, answer.body
    assert fragment in answer.json()["error"]["message"]
    assert eventgrid_test_app.RECEIVED == []


# -- building and posting BlobCreated events ---------------------------------------------
def test_blob_created_events_over_a_local_folder_are_one_well_formed_event_per_file(
    local_settings, sample_files
):
    folder = sample_files[0].parent
    (folder / "notes.txt").write_text("not a NetCDF file")
    storage = Storage(local_settings)
    events = blob_created_events(str(folder), local_settings, storage)
    assert len(events) == len(sample_files)
    assert len({e["id"] for e in events}) == len(events)
    for event, path in zip(events, sample_files, strict=True):
        assert event["topic"] == TOPIC_PREFIX + "local"
        assert event["subject"] == f"/local/files{path.resolve()}"
        assert event["eventType"] == BLOB_CREATED
        assert event["eventTime"].endswith("Z")
        assert (event["dataVersion"], event["metadataVersion"]) == ("", "1")
        data = event["data"]
        assert list(data) == DATA_KEYS
        assert data["url"] == path.resolve().as_uri()
        assert data["contentLength"] == path.stat().st_size
        assert data["contentType"] == "application/x-netcdf"
        assert (data["api"], data["blobType"]) == ("PutBlob", "BlockBlob")
        assert data["eTag"] == storage.head(parse_location(data["url"], local_settings)).etag
        assert len(data["sequencer"]) == 32 and int(data["sequencer"], 16) > 0
        assert set(data["storageDiagnostics"]) == {"batchId"}
    only = blob_created_events(str(folder), local_settings, storage, ["*.txt"])
    assert [e["subject"] for e in only] == [f"/local/files{(folder / 'notes.txt').resolve()}"]

    rewritten = sample_files[0]
    before = os.stat(rewritten).st_mtime
    rewritten.write_bytes(rewritten.read_bytes())
    os.utime(rewritten, (before + 60, before + 60))
    again = blob_created_events(str(rewritten), local_settings, storage)
    assert len(again) == 1
    assert again[0]["subject"] == events[0]["subject"]
    assert again[0]["data"]["sequencer"] > events[0]["data"]["sequencer"]
    assert again[0]["eventTime"] > events[0]["eventTime"]


@pytest.mark.azurite
def test_blob_created_events_over_azurite_carry_the_http_url_parse_location_accepts(
    sample_files, blob_settings, containers, blob_service, azurite_endpoint
):
    container = containers.new("src")
    keys = containers.upload(container, "daily/tas", sample_files[:2])
    events = blob_created_events(
        f"az://{container}/daily/tas", blob_settings, Storage(blob_settings)
    )
    assert [e["subject"] for e in events] == [
        f"/blobServices/default/containers/{container}/blobs/{key}" for key in keys
    ]
    for event, key in zip(events, keys, strict=True):
        assert event["topic"] == TOPIC_PREFIX + "devstoreaccount1"
        url = event["data"]["url"]
        assert url == f"{azurite_endpoint}/{container}/{key}"
        assert parse_location(url, blob_settings, what="source") == Location("blob", container, key)
        properties = blob_service.get_blob_client(container, key).get_blob_properties()
        assert event["data"]["eTag"] == properties.etag.strip('"')
        assert event["data"]["contentLength"] == properties.size


def test_post_events_names_the_url_when_a_batch_fails_or_the_app_is_not_reachable(server):
    eventgrid_test_app.RECEIVED.clear()
    events = [grid_event(n, "/boom" if n == 3 else "/ok") for n in range(5)]
    with pytest.raises(EventDeliveryFailed) as failed:
        post_events(server.base_url, events, "picky", batch_size=2)
    assert failed.value.context["status"] == 500
    assert webhook_url(server.base_url, "picky") in failed.value.message
    assert "2 delivered before it" in failed.value.message
    assert "event id event-3" in failed.value.message
    assert len(eventgrid_test_app.RECEIVED) == 4  # the third batch was never posted

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(EventDeliveryFailed, match="is not reachable") as unreachable:
        post_events(closed, events, "picky")
    assert webhook_url(closed, "picky") in unreachable.value.message


def test_the_events_command_posts_every_file_repeat_times_in_the_seeded_order(
    server, sample_files, local_settings, isolated_environment, capsys
):
    folder = str(sample_files[0].parent)
    argv = ["events", folder, "--url", server.base_url, "--repeat", "2", "--shuffle"]
    code, got = collected(server, 8, lambda: main([*argv, "--seed", "7"]))
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "batch 1: 8 event(s) -> 202",
        f"posted 8 event(s) for 4 file(s) in 1 batch(es) to "
        f"{webhook_url(server.base_url, 'blob_created')}",
    ]
    files = blob_created_events(folder, local_settings, Storage(local_settings))
    expected = as_delivered(files, repeat=2, shuffle=True, seed=7)
    assert [e["subject"] for e in got] == [e["subject"] for e in expected]
    assert [e["subject"] for e in got] != [e["subject"] for e in as_delivered(files, repeat=2)]
    assert len({e["id"] for e in got}) == 8
    for subject in {e["subject"] for e in files}:
        copies = [e["data"] for e in got if e["subject"] == subject]
        assert len(copies) == 2 and copies[0] == copies[1]
        assert copies[0]["url"].startswith("file:///")
    assert {e["event_type"] for e in got} == {BLOB_CREATED}


def test_the_events_command_says_when_the_app_is_not_reachable(
    sample_files, isolated_environment, capsys
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert main(["events", str(sample_files[0].parent), "--url", closed]) == 1
    err = capsys.readouterr().err
    assert f"error [event_delivery_failed]: The app at {closed}/runtime/webhooks/eventgrid" in err
    assert "what to do: Start the app (python -m devhost start)" in err
    assert "Traceback" not in err
    assert main(["events", str(sample_files[0].parent), "--repeat", "0"]) == 2
