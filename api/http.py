"""HTTP API: start a pipeline, read its status, check health. Translation only: the request
is validated by shared/, the run is decided by the orchestrator.

    POST /api/pipelines                 {source, dataset_id, concat_dim?, format?, options?}
        202 {instance_id, status_url} + Location    400 names the bad field
        409 when the dataset already has a run in progress (with that run's status URL)
    GET  /api/pipelines/{instance_id}   phase, counts, batch, first errors, outputs, timings;
                                        also a dataset's upload watcher (watch-<dataset>)
    GET  /api/health                    library versions; 503 naming a module that fails

The Durable management URLs (which carry the system key) are never handed out; operators
who hold the key keep the built-in /runtime/webhooks/durabletask API.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from api.runs import runtime_status, start_run
from shared.io.health import dependency_report
from shared.model.errors import PipelineError
from shared.model.locations import parse_location, show_value
from shared.model.plan import PipelineInput, RunPolicy, is_release_instance, is_watcher_instance
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.status import pipeline_view, release_view, watcher_view

bp = df.Blueprint()

# Anchored by \Z, not '$' (which also matches before a trailing newline: "pipeline-x\n"
# would answer for pipeline-x), and used with fullmatch.
INSTANCE_ID = re.compile(r"^(pipeline|watch|release)-[a-z0-9][a-z0-9._-]{0,62}\Z")


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=1), status_code=status, mimetype="application/json", headers=headers
    )


def _status_url(req: func.HttpRequest, instance_id: str) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api/pipelines/{instance_id}"


@bp.route(route="pipelines", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def start_pipeline(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    try:
        settings = Settings.from_env()
        request = PipelineRequest.from_body(req.get_body())
        parse_location(request.source, settings, what="source")  # refuse before any work
        policy = RunPolicy.from_request(request, settings)
    except PipelineError as exc:
        return _json(400, {"error": exc.to_dict()})
    started = await start_run(client, PipelineInput(request, policy))
    status_url = _status_url(req, started.instance_id)
    if not started.started:
        return _already_running(request.dataset_id, started.instance_id, status_url)
    return _json(
        202,
        {"instance_id": started.instance_id, "status_url": status_url},
        headers={"Location": status_url, "Retry-After": "5"},
    )


def _already_running(dataset_id: str, instance_id: str, status_url: str) -> func.HttpResponse:
    return _json(
        409,
        {
            "error": {
                "code": "already_running",
                "message": f"Dataset {dataset_id!r} already has a run in progress ({instance_id}).",
                "remedy": "Wait for it to finish (follow status_url), then submit again.",
            },
            "instance_id": instance_id,
            "status_url": status_url,
        },
        headers={"Location": status_url},
    )


@bp.route(route="pipelines/{instance_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def pipeline_status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    # Only pipeline instances, by their exact form: never pass anything else to the client.
    status = await client.get_status(instance_id) if INSTANCE_ID.fullmatch(instance_id) else None
    if status is None or runtime_status(status) is None:
        return _json(
            404,
            {
                "error": {
                    "code": "not_found",
                    "message": f"There is no pipeline run {show_value(instance_id)}.",
                    "remedy": "Use the instance_id or status_url returned by POST /api/pipelines.",
                }
            },
        )
    view = (
        watcher_view
        if is_watcher_instance(instance_id)
        else release_view
        if is_release_instance(instance_id)
        else pipeline_view
    )
    return _json(200, view(status.to_json()))


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = dependency_report()
    return _json(200 if report["ok"] else 503, report)
