"""The STAC API target: the pipeline publishes into a live stac-fastapi-pgstac on PostgreSQL
(started on loopback by the `stac_api` fixture, tests/stacapi.py), pystac-client finds what
it published, and register, a second run and unpublish keep the API and the static catalog
consistent; an API that is down or refuses leaves the static catalog as it was."""

from __future__ import annotations

import http.server
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import ClassVar
from urllib.parse import urljoin

import pytest
import requests
from azure.core.credentials import AccessToken
from pystac_client import Client

import shared.catalog.stac_api as stac_api_module
from devhost.cli import main
from devhost.samples import SampleSpec, write_sample_files
from devhost.stacapi import LocalStacApi
from shared.catalog.stac.catalog import CatalogPaths
from shared.catalog.stac_api import StacApi
from shared.io.storage import Storage
from shared.model.errors import StacApiRejected
from shared.model.layout import Layout
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.stages.release import unpublish
from tests.helpers import call, run_pipeline
from tests.stac_schemas import validation_errors

ROOT = Path(__file__).resolve().parent.parent
SPEC = SampleSpec(files=3, lat=6, lon=10)
# The sample grid covers the globe; 2024-01-01 .. 2024-01-03, one file a day.
FIRST_DAYS = "2024-01-01T00:00:00Z/2024-01-03T23:59:59Z"


def dataset() -> str:
    """A dataset (and collection) id of its own per test: the API's database is shared."""
    return f"tas-{uuid.uuid4().hex[:8]}"


def found(api: str, collection: str, **search: object) -> list[dict]:
    """What pystac-client's search finds in one collection."""
    results = Client.open(api).search(collections=[collection], **search)
    return [item.to_dict() for item in results.items()]


def static_documents(settings: Settings, collection: str, item: str) -> dict[str, bytes | None]:
    """The static catalog's catalog, collection and item documents as bytes (None: absent)."""
    paths = CatalogPaths(Layout.from_settings(settings).catalog, collection, item)
    storage = Storage(settings)
    documents: dict[str, bytes | None] = {}
    for location in (paths.catalog, paths.collection, paths.item()):
        name = location.url.rsplit("/", 1)[-1]
        documents[name] = storage.read(location) if storage.exists(location) else None
    return documents


def test_the_local_stac_api_answers_with_the_transactions_extension(stac_api: LocalStacApi):
    conforms = Client.open(stac_api.url).get_conforms_to()
    assert "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction" in conforms
    assert "https://api.stacspec.org/v1.0.0/collections/extensions/transaction" in conforms


@pytest.mark.slow
def test_devhost_run_with_stac_api_publishes_and_a_second_run_updates_the_item(
    stac_api: LocalStacApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, value in (
        Settings(
            work_area=str(tmp_path / "work"),
            store_root=str(tmp_path / "stores"),
            catalog=str(tmp_path / "catalog"),
        )
        .to_env()
        .items()
    ):
        monkeypatch.setenv(name, value)
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    name = dataset()
    args = ["run", str(source), "--dataset", name, "--state", str(tmp_path / "state")]
    assert main([*args, "--stac-api", stac_api.url]) == 0

    hits = found(stac_api.url, name, bbox=[-10, -10, 10, 10], datetime=FIRST_DAYS)
    assert [h["id"] for h in hits] == [name]
    item = hits[0]
    assert item["collection"] == name
    assert item["properties"]["start_datetime"].startswith("2024-01-01")
    assert item["properties"]["end_datetime"].startswith("2024-01-03")
    first_run = item["properties"]["version"]
    # the links into the static catalog are the API's own now; the pipeline's others survive
    hrefs = {link["rel"]: link["href"] for link in item["links"]}
    assert hrefs["self"] == f"{stac_api.url}/collections/{name}/items/{name}"
    assert any(link["rel"] == "describedby" for link in item["links"])
    assert item["assets"], "the item's assets (the store) are in the API"
    # its vrt:hrefs name the sources asset of the API's own document (no file name there)
    (ref,) = item["assets"]["data"]["vrt:hrefs"]
    assert urljoin(hrefs["self"], ref["href"]) == hrefs["self"] + "#/assets/sources"
    assert validation_errors(item) == {}
    assert not found(stac_api.url, name, datetime="2023-01-01T00:00:00Z/2023-12-31T00:00:00Z")
    collection = Client.open(stac_api.url).get_collection(name).to_dict()
    assert collection["extent"]["temporal"]["interval"][0][0].startswith("2024-01-01")
    served = requests.get(f"{stac_api.url}/collections/{name}", timeout=30).json()
    assert validation_errors(served) == {}  # as the API serves it, against the released schemas

    # A second run over one more day: the same item, updated (no second item appears).
    write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=3))
    assert main([*args, "--stac-api", stac_api.url]) == 0
    hits = found(stac_api.url, name, datetime="2024-01-04T00:00:00Z/2024-01-04T23:59:59Z")
    assert [h["id"] for h in hits] == [name]
    assert hits[0]["properties"]["version"] != first_run
    assert hits[0]["properties"]["end_datetime"].startswith("2024-01-04")
    assert len(found(stac_api.url, name)) == 1
    # The static item links its versions' snapshots by relative hrefs, which the API would
    # resolve against its own URL to nothing: every link into the API is one of its own.
    into_api = [link["href"] for link in hits[0]["links"] if link["href"].startswith(stac_api.url)]
    assert all(
        href == stac_api.url or href.startswith(f"{stac_api.url}/collections/") for href in into_api
    ), into_api


def test_unpublish_restores_the_previous_version_in_the_api_then_removes_the_item(
    stac_api: LocalStacApi, tmp_path: Path
):
    settings = Settings(
        allow_local_paths=True,
        work_area=str(tmp_path / "work"),
        store_root=str(tmp_path / "stores"),
        catalog=str(tmp_path / "catalog"),
        stac_api_url=stac_api.url,
    )
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    name = dataset()
    request = PipelineRequest.from_dict({"source": str(source), "dataset_id": name})
    first = run_pipeline(request, settings)
    write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=3))
    second = run_pipeline(request, settings)
    assert found(stac_api.url, name)[0]["properties"]["version"] == second.run_id

    storage = Storage(settings)
    back = unpublish(
        dataset_id=name, version=second.run_id, by="gina", reason="bad day 4",
        settings=settings, storage=storage,
    )  # fmt: skip
    assert back.current == first.run_id
    hits = found(stac_api.url, name)
    assert [h["properties"]["version"] for h in hits] == [first.run_id]
    assert not found(stac_api.url, name, datetime="2024-01-04T00:00:00Z/2024-01-04T23:59:59Z")

    gone = unpublish(
        dataset_id=name, version=first.run_id, by="gina", reason="withdrawn",
        settings=settings, storage=storage,
    )  # fmt: skip
    assert gone.current is None
    assert found(stac_api.url, name) == []
    assert call("GET", f"{stac_api.url}/collections/{name}/items/{name}").status == 404
    assert static_documents(settings, name, name)[f"{name}.json"] is None


def local(tmp_path: Path, api: str, **changes: object) -> Settings:
    return Settings(
        allow_local_paths=True,
        work_area=str(tmp_path / "work"),
        store_root=str(tmp_path / "stores"),
        catalog=str(tmp_path / "catalog"),
        stac_api_url=api,
    ).with_changes(**changes)


@pytest.fixture(params=["local", "blob"])
def places(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The work area, stores and catalog on local disk, or in Azurite containers."""
    if request.param == "blob":
        return request.getfixturevalue("blob_settings").with_changes(allow_local_paths=True)
    return local(tmp_path, "")


def test_an_api_that_refuses_the_item_fails_register_naming_it_and_leaves_the_catalog(
    stac_api: LocalStacApi, tmp_path: Path, places: Settings
):
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    name = dataset()
    collection = f"{name}.v1"  # a '.' the pipeline accepts, and the API below refuses
    request = PipelineRequest.from_dict(
        {"source": str(source), "dataset_id": name, "collection": collection}
    )
    current = Layout.from_settings(places).published(name)
    first = run_pipeline(request, places.with_changes(stac_api_url=stac_api.url))
    before = static_documents(places, collection, name)
    published = Storage(places).read(current)

    write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=3))
    # The same database behind an API configured to refuse ids with a '.': a real 400.
    with (
        stac_api.another(INVALID_ID_CHARS='[".", ":", "/"]') as strict,
        pytest.raises(StacApiRejected) as refused,
    ):
        run_pipeline(request, places.with_changes(stac_api_url=strict))
    error = refused.value
    assert not error.retryable
    assert f"collection {collection!r} of the item {name!r}" in error.message
    assert strict in error.message
    assert "400" in error.message and "cannot contain" in error.message  # the API's own words
    assert static_documents(places, collection, name) == before
    assert Storage(places).read(current) == published
    assert [h["properties"]["version"] for h in found(stac_api.url, collection)] == [first.run_id]


def test_a_stopped_database_fails_register_retryably_and_the_run_completes_when_it_is_back(
    stac_api: LocalStacApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    name = dataset()
    request = PipelineRequest.from_dict({"source": str(source), "dataset_id": name})
    settings = local(tmp_path, stac_api.url)
    caplog.set_level(logging.WARNING)

    # Retries exhausted while the database is down: the run fails retryably, nothing is
    # published, in the API or in the static catalog.
    stac_api.stop_database()
    try:
        few = settings.with_changes(retry_first_interval_ms=200, retry_max_attempts=2)
        with pytest.raises(Exception) as failed:
            run_pipeline(request, few)
        assert getattr(failed.value, "retryable", False), failed.value
        assert "STAC API" in str(failed.value) and name in str(failed.value)
        assert static_documents(settings, name, name) == {
            "catalog.json": None, "collection.json": None, f"{name}.json": None,
        }  # fmt: skip
        assert not (tmp_path / "catalog" / name).exists()  # nor the folders it wrote
        assert not (tmp_path / "work" / "datasets" / name / "current.json").exists()

        # The same run again: register fails while the database is down, and the run's
        # retries complete it once the database is back.
        caplog.clear()
        patient = settings.with_changes(retry_first_interval_ms=300, retry_max_attempts=60)
        outcome: dict[str, object] = {}
        runner = threading.Thread(
            target=lambda: outcome.update(run=run_pipeline(request, patient, timeout=120))
        )
        runner.start()
        deadline = time.monotonic() + 90
        while not any("stac_api_unavailable" in r.getMessage() for r in caplog.records):
            assert runner.is_alive() and time.monotonic() < deadline, "register never failed"
            time.sleep(0.05)
    finally:
        stac_api.start_database()
    runner.join(timeout=120)
    assert "run" in outcome, "the run did not complete after the database came back"
    assert [h["id"] for h in found(stac_api.url, name, datetime=FIRST_DAYS)] == [name]
    assert static_documents(settings, name, name)[f"{name}.json"] is not None


class Recorder(http.server.BaseHTTPRequestHandler):
    """An API stand-in that records each request's headers and answers ``status``."""

    seen: ClassVar[list[dict[str, str]]] = []
    status: ClassVar[int] = 201

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Recorder.seen.append(dict(self.headers))
        self.send_response(Recorder.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"code": "Forbidden", "description": "not for you"}')

    def log_message(self, *args: object) -> None:
        pass


def test_a_scope_sends_a_bearer_token_and_a_refusal_never_shows_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """The token service (Entra ID) cannot be reached from here: a stand-in credential gives
    the token, as a managed identity's would (azure.core's get_token protocol)."""
    secret = "eyJ0eXAi.secret-token.sig"

    class Credential:
        def get_token(self, *scopes: str) -> AccessToken:
            assert scopes == ("api://stac/.default",)
            return AccessToken(secret, int(time.time()) + 3600)

    monkeypatch.setattr(stac_api_module, "_credential", Credential())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    api = StacApi(Settings(stac_api_url=url, stac_api_scope="api://stac/.default"))
    try:
        Recorder.seen, Recorder.status = [], 201
        assert api.upsert_collection({"id": "c1", "links": []}) == "created"
        assert Recorder.seen[-1]["Authorization"] == f"Bearer {secret}"
        Recorder.status = 403
        with pytest.raises(StacApiRejected) as refused:
            api.upsert_item({"id": "i1", "collection": "c1", "links": []})
    finally:
        server.shutdown()
        server.server_close()
    assert "'i1'" in refused.value.message and "403" in refused.value.message
    assert "not for you" in refused.value.message
    assert "PIPELINE_STAC_API_SCOPE" in refused.value.remedy
    assert secret not in str(refused.value.to_dict()) and secret not in caplog.text


@pytest.mark.slow
def test_devhost_start_with_stac_api_publishes_from_its_workers_and_unpublish_restores(
    stac_api: LocalStacApi, tmp_path: Path
):
    """`devhost start --stac-api URL`: the activity worker processes publish into the API, and
    an unpublish through the app's HTTP API (the release orchestration) restores the earlier
    version there."""
    source = tmp_path / "netcdf"
    write_sample_files(source, SPEC)
    env = {
        **os.environ,
        "PIPELINE_WORK_AREA": str(tmp_path / "work"),
        "PIPELINE_STORE_ROOT": str(tmp_path / "stores"),
        "PIPELINE_CATALOG": str(tmp_path / "catalog"),
    }
    env.pop("PIPELINE_STAC_API_URL", None)
    host = subprocess.Popen(
        [sys.executable, "-m", "devhost", "start", "--port", "0", "--state",
         str(tmp_path / "state"), "--stac-api", stac_api.url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    name = dataset()
    try:
        assert host.stdout is not None
        base = host.stdout.readline().split(" on ", 1)[1].strip()
        banner = "".join(host.stdout.readline() for _ in range(4))
        assert f"also publishing into the STAC API {stac_api.url}" in banner

        def run() -> dict:
            body = {"source": str(source), "dataset_id": name}
            started = call("POST", f"{base}/api/pipelines", body)
            assert started.status == 202, started.json()
            return finished(started.json()["status_url"])

        def finished(status_url: str) -> dict:
            deadline = time.monotonic() + 120
            while True:
                view = call("GET", status_url).json()
                if view.get("runtime_status") in ("Completed", "Failed", "Terminated"):
                    return view
                assert time.monotonic() < deadline, view
                time.sleep(0.2)

        first = run()
        assert first["runtime_status"] == "Completed", first
        write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=3))
        second = run()
        assert second["runtime_status"] == "Completed", second
        assert found(stac_api.url, name)[0]["properties"]["version"] == second["run_id"]

        answer = call(
            "POST",
            f"{base}/api/datasets/{name}/versions/{second['run_id']}/unpublish",
            {"by": "gina", "reason": "bad day 4"},
        )
        assert answer.status == 200, answer.json()
        assert [h["properties"]["version"] for h in found(stac_api.url, name)] == [first["run_id"]]
    finally:
        host.send_signal(signal.SIGTERM)
        output, _ = host.communicate(timeout=60)
    assert host.returncode == 0, output


def test_devhost_run_with_a_stac_api_that_is_not_a_url_names_the_option_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state = tmp_path / "state"
    args = ["run", str(tmp_path), "--dataset", "tas", "--state", str(state)]
    assert main([*args, "--stac-api", "stac.example.org"]) == 1
    err = capsys.readouterr().err
    assert "--stac-api 'stac.example.org' is not an http(s) URL" in err
    assert "https://stac.example.org" in err  # what to give instead
    assert not state.exists()
