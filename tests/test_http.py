"""The HTTP API over real HTTP: devhost's DevServer in front of a DurableHost running the real
app, so the real HTTP functions and the real DurableOrchestrationClient talk to it unchanged.

One host per module (its worker processes take ~2 s to spawn); each test uses its own
dataset ids. The worker processes read the settings from the environment when they spawn,
so the module's environment is set before the host starts."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableHost
from devhost.samples import SampleSpec, write_sample_files
from devhost.server import DevServer
from shared.model.plan import PipelineInput, RunPolicy
from shared.model.request import PipelineRequest
from tests.helpers import Answer, call

SPEC = SampleSpec(files=3, lat=6, lon=10)
STAGES = {"scan", "validate", "gate", "generate", "combine", "verify", "register"}


# -- plumbing ----------------------------------------------------------------------------
def wait_for_run(server: DevServer, instance_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll GET /api/pipelines/{id} until the run has finished."""
    deadline = time.monotonic() + timeout
    while True:
        view = call("GET", f"{server.base_url}/api/pipelines/{instance_id}").json()
        if view["runtime_status"] in ("Completed", "Failed", "Terminated"):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance_id} still {view['runtime_status']}: {view}")
        time.sleep(0.1)


def pipeline_input(source: str, dataset_id: str) -> dict[str, Any]:
    request = PipelineRequest.from_dict({"source": source, "dataset_id": dataset_id})
    return PipelineInput(request, RunPolicy()).to_dict()


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("http")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("PIPELINE_")]:
            env.delenv(name)
        env.setenv("PIPELINE_ALLOW_LOCAL_PATHS", "true")
        env.setenv("PIPELINE_WORK_AREA", str(root / "work"))
        env.setenv("PIPELINE_STORE_ROOT", str(root / "stores"))
        env.setenv("PIPELINE_CATALOG", str(root / "catalog"))
        yield root


@pytest.fixture(scope="module")
def source(area: Path) -> str:
    write_sample_files(area / "source", SPEC)
    return str(area / "source")


@pytest.fixture(scope="module")
def server(area: Path) -> Iterator[DevServer]:
    with DurableHost(area / "state", workers=2) as host, DevServer(host) as running:
        yield running


@dataclass
class FirstRun:
    started: Answer
    duplicate: Answer
    early_status: Answer


@pytest.fixture(scope="module")
def first_run(server: DevServer, source: str) -> FirstRun:
    """One run, a second request for the same dataset right after it, and its status right
    away. batch_size 1 puts each file in its own sub-orchestration: the validate activities
    run in parallel, so both worker processes are spawned by this run."""
    body = {"source": source, "dataset_id": "http-first", "options": {"batch_size": 1}}
    started = call("POST", f"{server.base_url}/api/pipelines", body)
    duplicate = call("POST", f"{server.base_url}/api/pipelines", body)
    early = call("GET", f"{server.base_url}/api/pipelines/pipeline-http-first")
    return FirstRun(started, duplicate, early)


# -- starting a run ----------------------------------------------------------------------
def test_post_starts_a_run_and_answers_202_with_its_status_url(server, first_run):
    answer = first_run.started
    assert answer.status == 202, answer.body
    body = answer.json()
    assert body == {
        "instance_id": "pipeline-http-first",
        "status_url": f"{server.base_url}/api/pipelines/pipeline-http-first",
    }
    assert answer.headers["Location"] == body["status_url"]
    assert answer.headers["Content-Type"].startswith("application/json")
    everything = answer.body.decode() + json.dumps(answer.headers)
    assert "code=" not in everything
    assert server.system_key not in everything


def test_a_second_post_while_the_dataset_runs_is_409_with_the_running_status_url(server, first_run):
    answer = first_run.duplicate
    assert answer.status == 409, answer.body
    body = answer.json()
    assert body["error"]["code"] == "already_running"
    assert "http-first" in body["error"]["message"]
    assert body["instance_id"] == "pipeline-http-first"
    assert body["status_url"] == f"{server.base_url}/api/pipelines/pipeline-http-first"
    assert "code=" not in answer.body.decode() + json.dumps(answer.headers)


def test_the_status_while_running_names_the_phase(first_run):
    assert first_run.early_status.status == 200
    view = first_run.early_status.json()
    assert view["instance_id"] == "pipeline-http-first"
    assert view["runtime_status"] in ("Pending", "Running")
    assert view["phase"] in ("pending", "starting", "scan", "validate")
    assert "code=" not in first_run.early_status.body.decode()


@pytest.mark.slow
def test_the_status_after_the_run_has_the_outputs_and_stage_timings(server, first_run):
    view = wait_for_run(server, "pipeline-http-first")
    assert view["runtime_status"] == "Completed", view
    assert view["phase"] == "succeeded"
    assert view["dataset_id"] == "http-first"
    assert {k: view["files"][k] for k in ("total", "validated", "unsuitable", "generated")} == {
        "total": 3,
        "validated": 3,
        "unsuitable": 0,
        "generated": 3,
    }
    assert set(view["stages"]) == STAGES
    assert all(seconds is not None for seconds in view["stages"].values())
    assert view["store_url"].startswith("file://")
    assert Path(view["item_url"].removeprefix("file://")).is_file()
    assert "error" not in view


@pytest.mark.slow
def test_a_finished_dataset_can_be_submitted_again(server, first_run, source):
    wait_for_run(server, "pipeline-http-first")
    body = {"source": source, "dataset_id": "http-first"}
    again = call("POST", f"{server.base_url}/api/pipelines", body)
    assert again.status == 202, again.body
    assert wait_for_run(server, "pipeline-http-first")["phase"] == "succeeded"


# -- bad requests ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b'{"source": "/data", "dataset_id": ', ["not valid JSON"]),
        ([], ["JSON object", "list"]),
        ({"dataset_id": "http-bad"}, ["'source'", "missing"]),
        ({"source": "SOURCE", "dataset_id": 5}, ["'dataset_id'", "string", "int"]),
        ({"source": "SOURCE", "dataset_id": ""}, ["'dataset_id'", "empty"]),
        ({"source": "SOURCE", "dataset_id": "Bad Id"}, ["'dataset_id'", "'Bad Id'"]),
        ({"source": "SOURCE", "dataset_id": "http-bad", "format": "zarr3"}, ["'format'", "zarr3"]),
        ({"source": "s3://bucket/x", "dataset_id": "http-bad"}, ["s3://bucket/x", "'s3'"]),
        (
            {"source": "SOURCE", "dataset_id": "http-bad", "options": {"batch_size": "all"}},
            ["'batch_size'", "'all'"],
        ),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "missing-source",
        "wrong-type",
        "empty-dataset-id",
        "invalid-dataset-id",
        "unknown-format",
        "source-outside-storage",
        "wrong-option-type",
    ],
)
def test_a_bad_request_is_400_naming_the_field_and_value(server, source, body, fragments):
    if isinstance(body, dict) and body.get("source") == "SOURCE":
        body = {**body, "source": source}
    answer = call("POST", f"{server.base_url}/api/pipelines", body)
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert error["code"] in ("bad_request", "location_not_allowed")
    for fragment in fragments:
        assert fragment in error["message"], error
    assert error["remedy"]
    assert server.host.get_status("pipeline-http-bad") is None


def test_a_local_source_is_refused_where_local_paths_are_not_allowed(
    server, source, monkeypatch, tmp_path
):
    """A deployed app reads blob storage only. The check reads the environment on each
    request; a separate host without workers serves it, so no worker process can spawn
    while the setting is off."""
    monkeypatch.setenv("PIPELINE_ALLOW_LOCAL_PATHS", "false")
    host = DurableHost(tmp_path / "state")  # never started: no worker processes
    try:
        with DevServer(host) as deployed:
            answer = call(
                "POST",
                f"{deployed.base_url}/api/pipelines",
                {"source": source, "dataset_id": "http-local"},
            )
    finally:
        host.stop()
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert error["code"] == "location_not_allowed"
    assert source in error["message"]
    assert "local path" in error["message"]


# -- other routes ------------------------------------------------------------------------
def test_an_unknown_run_is_404(server):
    answer = call("GET", f"{server.base_url}/api/pipelines/pipeline-never-started")
    assert answer.status == 404
    error = answer.json()["error"]
    assert error["code"] == "not_found"
    assert "pipeline-never-started" in error["message"]


def test_health_lists_the_library_versions(server):
    answer = call("GET", f"{server.base_url}/api/health")
    assert answer.status == 200
    body = answer.json()
    assert body["ok"] is True
    assert {"virtualizarr", "kerchunk", "h5py", "icechunk"} <= set(body["libraries"])
    assert all(library["version"] for library in body["libraries"].values())


def test_unknown_paths_are_404_and_other_methods_405(server):
    assert call("GET", f"{server.base_url}/api/nothing-here").status == 404
    assert call("GET", f"{server.base_url}/elsewhere").status == 404
    wrong = call("GET", f"{server.base_url}/api/pipelines")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"


# -- the Durable management API ----------------------------------------------------------
def test_the_operator_api_needs_the_system_key(server, first_run):
    url = f"{server.base_url}/runtime/webhooks/durabletask/instances/pipeline-http-first"
    missing = call("GET", url)
    assert missing.status == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = call("GET", f"{url}?code=not-the-key")
    assert wrong.status == 403
    assert wrong.json()["error"]["code"] == "forbidden"

    answer = call("GET", server.status_query_url("pipeline-http-first"))
    assert answer.status in (200, 202)
    status = answer.json()
    assert status["name"] == "pipeline"
    assert status["instanceId"] == "pipeline-http-first"
    assert status["runtimeStatus"] in ("Pending", "Running", "Completed")
    assert status["input"]["request"]["dataset_id"] == "http-first"  # an object, decoded once
    assert {"customStatus", "output", "createdTime", "lastUpdatedTime"} <= set(status)

    by_header = call("GET", url, headers={"x-functions-key": server.system_key})
    assert by_header.status in (200, 202)
    assert by_header.json()["instanceId"] == "pipeline-http-first"
    assert call("GET", server.status_query_url("pipeline-unknown")).status == 404


@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")  # nobody awaits it
def test_terminate_and_raise_event_through_the_operator_api(server, source):
    instance_id = "pipeline-http-terminated"
    started = call(
        "POST",
        f"{server.base_url}/durabletask/orchestrators/pipeline/{instance_id}",
        json.dumps(json.dumps(pipeline_input(source, "http-terminated"))).encode(),
        {"Content-Type": "application/json"},
    )
    assert started.status == 202, started.body
    assert started.json()["id"] == instance_id
    assert started.headers["Location"] == server.status_query_url(instance_id)
    again = call("POST", f"{server.base_url}/durabletask/orchestrators/pipeline/{instance_id}", b"")
    assert again.status == 409
    assert instance_id in again.json()["Message"]

    urls = server.management_urls(instance_id)
    event_url = urls["sendEventPostUri"].replace("{eventName}", "note")
    assert call("POST", event_url, {"any": "thing"}).status == 202
    assert call("POST", event_url, b"x=1", {"Content-Type": "text/plain"}).status == 400
    terminate_url = urls["terminatePostUri"].replace("{text}", "operator%20said%20so")
    assert call("POST", terminate_url, b"").status == 202

    status = call("GET", urls["statusQueryGetUri"])
    assert status.status == 200
    assert status.json()["runtimeStatus"] == "Terminated"
    assert status.json()["output"] == "operator said so"
    assert call("POST", terminate_url, b"").status == 410
    assert call("POST", event_url, {"any": "thing"}).status == 410
    gone = urls["terminatePostUri"].replace(instance_id, "pipeline-unknown")
    assert call("POST", gone.replace("{text}", "x"), b"").status == 404

    view = call("GET", f"{server.base_url}/api/pipelines/{instance_id}").json()
    assert view["runtime_status"] == "Terminated"
    assert view["error"]["code"] == "orchestration_terminated"


def test_the_rpc_api_decodes_the_sdks_double_encoded_input_and_reports_failures(server):
    """The SDK client JSON-encodes the input, then aiohttp encodes that string again: the
    orchestrator must get the original object. This input is not a pipeline input, so the
    orchestrator fails at once (no activity runs)."""
    rpc = f"{server.base_url}/durabletask"
    given = {"not": ["a", "pipeline", "input"]}
    started = call("POST", f"{rpc}/orchestrators/pipeline", json.dumps(json.dumps(given)).encode())
    assert started.status == 202, started.body
    instance_id = started.json()["id"]
    assert len(instance_id) == 32  # a generated uuid4 hex
    deadline = time.monotonic() + 30
    while (status := call("GET", f"{rpc}/instances/{instance_id}")).status == 202:
        assert time.monotonic() < deadline, status.body
        time.sleep(0.05)
    assert status.status == 200
    assert status.json()["input"] == given
    assert status.json()["runtimeStatus"] == "Failed"
    failed = call("GET", f"{rpc}/instances/{instance_id}?returnInternalServerErrorOnFailure=true")
    assert failed.status == 500
    assert call("GET", f"{rpc}/instances/{instance_id}?showInput=false").json()["input"] is None

    unknown = call("POST", f"{rpc}/orchestrators/no_such_orchestrator", b'"{}"')
    assert unknown.status == 400
    assert "no_such_orchestrator" in unknown.json()["ExceptionMessage"]
    missing = call("GET", f"{rpc}/instances/pipeline-unknown")
    assert (missing.status, missing.body) == (404, b"")


# -- the server itself, with a small app of its own ----------------------------------------
SMALL_APP = """
import asyncio
import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaput")


@app.route(route="items/{n:int}", methods=["GET"])
def by_number(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"number {req.route_params['n']}")


@app.route(route="items/{name:alpha}", methods=["GET"])
def by_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"name {req.route_params['name']}")


@app.route(route="echo/{*rest}", methods=["POST", "PUT"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "url": req.url,
        "rest": req.route_params.get("rest"),
        "params": dict(req.params),
        "header": req.headers.get("x-custom"),
        "body": req.get_body().decode(),
        "loop": id(asyncio.get_running_loop()),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Seen": "1"})
"""


@pytest.fixture(scope="module")
def small_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    folder = tmp_path_factory.mktemp("small_app")
    (folder / "devhost_small_http_app.py").write_text(SMALL_APP)
    sys.path.insert(0, str(folder))
    try:
        host = DurableHost(folder / "state", app_module="devhost_small_http_app")  # not started
        try:
            with DevServer(host, system_key="fixed-key") as running:
                yield running
        finally:
            host.stop()
    finally:
        sys.path.remove(str(folder))


def test_a_function_that_raises_is_a_500_json_error_and_the_server_keeps_serving(small_app):
    answer = call("GET", f"{small_app.base_url}/api/boom")
    assert answer.status == 500
    error = answer.json()["error"]
    assert error["code"] == "function_failed"
    assert "RuntimeError: kaput" in error["message"]
    assert call("GET", f"{small_app.base_url}/api/items/7").status == 200


def test_route_templates_and_constraints_fill_route_params(small_app):
    assert call("GET", f"{small_app.base_url}/api/items/42").body == b"number 42"
    assert call("GET", f"{small_app.base_url}/api/items/abc").body == b"name abc"
    assert call("GET", f"{small_app.base_url}/api/ITEMS/abc").body == b"name abc"
    assert call("GET", f"{small_app.base_url}/api/items/a1").status == 404


def test_the_request_reaches_the_function_whole_and_async_functions_share_one_loop(small_app):
    url = f"{small_app.base_url}/api/echo/a/b%20c?x=1&y=two"
    first = call("POST", url, b"payload", {"X-Custom": "hello"})
    assert first.status == 200
    assert first.headers["X-Seen"] == "1"
    assert first.headers["Content-Type"] == "application/json"
    body = first.json()
    assert body["method"] == "POST"
    assert body["url"] == url
    assert body["rest"] == "a/b c"
    assert body["params"] == {"x": "1", "y": "two"}
    assert body["header"] == "hello"
    assert body["body"] == "payload"
    second = call("PUT", f"{small_app.base_url}/api/echo", b"")
    assert second.json()["rest"] is None
    assert second.json()["loop"] == body["loop"]


def test_the_client_binding_points_the_sdk_at_this_server(small_app):
    binding = json.loads(small_app.client_binding())
    assert binding["taskHubName"] == "VirtualZarrPipeline"
    assert binding["rpcBaseUrl"] == f"{small_app.base_url}/durabletask/"
    assert binding["requiredQueryStringParameters"] == "code=fixed-key"
    status_url = binding["managementUrls"]["statusQueryGetUri"]
    assert status_url.startswith(
        f"{small_app.base_url}/runtime/webhooks/durabletask/instances/INSTANCEID?"
    )
    assert status_url.endswith("&code=fixed-key")
