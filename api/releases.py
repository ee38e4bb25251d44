"""HTTP API for the release lifecycle: approve or reject a built store, list a dataset's
versions, unpublish a version, clean up an unpublished version's store.

    POST /api/pipelines/{instance_id}/approve   {"by"?, "reason"?}     202 / 404 / 409
    POST /api/pipelines/{instance_id}/reject    {"by"?, "reason"}      202 / 404 / 409
    GET  /api/datasets/{dataset_id}             versions, newest first; which is current
    POST /api/datasets/{dataset_id}/versions/{version}/unpublish  {"by"?, "reason"}
    POST /api/datasets/{dataset_id}/versions/{version}/cleanup     delete an unpublished store
                   both: 200 with the result, or 202 and GET /api/pipelines/release-<dataset>
                   when the operation (orchestrators/release.py) takes longer than 20 s

Who decides: the signed-in principal App Service authentication passes
(X-MS-CLIENT-PRINCIPAL-NAME) when there is one, otherwise the body's "by". A decision is
recorded once (a create-only write): a second decision for the same build gets 409, as does
a decision for a run that is not waiting for one. Translation only: the rules are in
shared/catalog/ledger.py and shared/stages/release.py, the waiting in orchestrators/pipeline.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from api.http import INSTANCE_ID, _json, _status_url
from api.runs import FINISHED, IN_PROGRESS, runtime_status
from orchestrators.pipeline import APPROVAL_EVENT
from shared.catalog.ledger import (
    already_decided,
    check_person,
    check_reason,
    dataset_view,
    read_decision,
    record_decision,
)
from shared.io.storage import Storage
from shared.model.errors import BadRequest, Conflict, NotFound, PipelineError
from shared.model.locations import show_value
from shared.model.plan import (
    dataset_of,
    instance_id_for,
    is_pipeline_instance,
    release_instance_id,
)
from shared.model.request import identifier, read_body
from shared.model.settings import Settings
from shared.model.status import AWAITING_APPROVAL, release_view
from shared.model.wire import ReleaseInput

bp = df.Blueprint()

VERSION = re.compile(r"^[0-9a-f]{16}\Z")  # \Z, not $, as INSTANCE_ID
PRINCIPAL_HEADER = "x-ms-client-principal-name"
STATUS_FOR = {BadRequest: 400, NotFound: 404, Conflict: 409}
# An unpublish or cleanup is answered with its result when it ends within this time (most
# take well under a second); after it, with 202 and the status URL to follow.
RELEASE_WAIT_SECONDS = 20.0


def _error(exc: PipelineError) -> func.HttpResponse:
    status = next((code for kind, code in STATUS_FOR.items() if isinstance(exc, kind)), None)
    if status is None:
        status = 503 if exc.retryable else 500
    return _json(status, {"error": exc.to_dict()})


def _decision_body(req: func.HttpRequest, *, reason_required: bool) -> tuple[str, str]:
    body = req.get_body()
    data: Any = read_body(body) if body.strip() else {}
    if not isinstance(data, dict) or set(data) - {"by", "reason"}:
        raise BadRequest(
            'The body must be a JSON object with "by" and "reason" (and nothing else).'
        )
    principal = req.headers.get(PRINCIPAL_HEADER)
    by = check_person(principal or data.get("by"), "Field 'by' (who decides)")
    return by, check_reason(data.get("reason"), required=reason_required)


async def _decide(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, decision: str
) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    try:
        # Only pipeline instances, by their exact form: never pass anything else to the client.
        exact = INSTANCE_ID.fullmatch(instance_id) and is_pipeline_instance(instance_id)
        status = await client.get_status(instance_id) if exact else None
        if status is None or runtime_status(status) is None:
            raise NotFound(
                f"There is no pipeline run {show_value(instance_id)}.",
                remedy="Use the instance_id returned by POST /api/pipelines.",
            )
        custom = status.custom_status if isinstance(status.custom_status, dict) else {}
        phase = custom.get("phase")
        waiting = runtime_status(status) == "Running" and phase == AWAITING_APPROVAL
        by, reason = _decision_body(req, reason_required=decision == "reject")
        settings = Settings.from_env()
        storage = Storage(settings)
        dataset_id = custom.get("dataset_id") or dataset_of(instance_id)
        run_id = custom.get("run_id") or ""
        if not waiting:  # refused before anything is recorded
            earlier = read_decision(dataset_id, run_id, settings, storage) if run_id else None
            if earlier is not None:
                raise already_decided(dataset_id, run_id, earlier)
            raise Conflict(
                f"Run {instance_id} is not waiting for a decision: it is "
                f"{runtime_status(status)}, phase {phase!r}.",
                remedy="Only a run whose status shows phase 'awaiting_approval' can be decided.",
            )
        try:
            record = record_decision(
                dataset_id=dataset_id,
                run_id=run_id,
                decision=decision,
                by=by,
                reason=reason,
                settings=settings,
                storage=storage,
            )
        except Conflict:
            # Recorded before, but its event may never have arrived: deliver it again (the
            # orchestrator takes the first), and still refuse this second decision.
            earlier = read_decision(dataset_id, run_id, settings, storage)
            await client.raise_event(instance_id, APPROVAL_EVENT, earlier)
            raise
        await client.raise_event(instance_id, APPROVAL_EVENT, record)
    except PipelineError as exc:
        return _error(exc)
    return _json(
        202,
        {
            "instance_id": instance_id,
            "decision": record,
            "status_url": _status_url(req, instance_id),
        },
    )


@bp.route(
    route="pipelines/{instance_id}/approve", methods=["POST"], auth_level=func.AuthLevel.FUNCTION
)
@bp.durable_client_input(client_name="client")
async def approve_pipeline(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _decide(req, client, "approve")


@bp.route(
    route="pipelines/{instance_id}/reject", methods=["POST"], auth_level=func.AuthLevel.FUNCTION
)
@bp.durable_client_input(client_name="client")
async def reject_pipeline(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _decide(req, client, "reject")


def _dataset_id(req: func.HttpRequest) -> str:
    value = req.route_params.get("dataset_id", "")
    try:
        return identifier(value, "The dataset id")
    except BadRequest:
        raise NotFound(
            f"There is no dataset {show_value(value)}.",
            remedy="Check the dataset id (the dataset_id of POST /api/pipelines: lowercase "
            "letters, digits, '.', '_' or '-'); a dataset appears here once a run has "
            "published it.",
        ) from None


def _version(req: func.HttpRequest, dataset_id: str) -> str:
    value = req.route_params.get("version", "")
    if not VERSION.fullmatch(value):
        raise NotFound(
            f"Dataset {dataset_id!r} has no version {show_value(value)}.",
            remedy=f"GET /api/datasets/{dataset_id} lists its versions (16 hex digits).",
        )
    return value


@bp.route(route="datasets/{dataset_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dataset_versions(req: func.HttpRequest) -> func.HttpResponse:
    try:
        dataset_id = _dataset_id(req)
        settings = Settings.from_env()
        return _json(200, dataset_view(dataset_id, settings, Storage(settings)))
    except PipelineError as exc:
        return _error(exc)


@bp.route(
    route="datasets/{dataset_id}/versions/{version}/unpublish",
    methods=["POST"],
    auth_level=func.AuthLevel.FUNCTION,
)
@bp.durable_client_input(client_name="client")
async def unpublish_version(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    try:
        dataset_id = _dataset_id(req)
        version = _version(req, dataset_id)
        by, reason = _decision_body(req, reason_required=True)
        run = await client.get_status(instance_id_for(dataset_id))
        custom = run.custom_status if run and isinstance(run.custom_status, dict) else {}
        if runtime_status(run) == "Running" and custom.get("phase") == "register":
            raise Conflict(
                f"A run of {dataset_id!r} is publishing right now.",
                remedy="Try again when GET /api/pipelines/pipeline-"
                f"{dataset_id} shows it finished.",
            )
        settings = Settings.from_env()
        from shared.stages.release import check_unpublish  # the STAC libraries: on first use

        check_unpublish(dataset_id, version, settings, Storage(settings))
        given = _release_input("unpublish", dataset_id, version, settings, by, reason)
        return await _run_release(req, client, given)
    except PipelineError as exc:
        return _error(exc)


@bp.route(
    route="datasets/{dataset_id}/versions/{version}/cleanup",
    methods=["POST"],
    auth_level=func.AuthLevel.FUNCTION,
)
@bp.durable_client_input(client_name="client")
async def cleanup_version(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    try:
        dataset_id = _dataset_id(req)
        version = _version(req, dataset_id)
        settings = Settings.from_env()
        from shared.stages.release import check_cleanup  # the STAC libraries: on first use

        check_cleanup(dataset_id, version, settings, Storage(settings))
        given = _release_input("cleanup", dataset_id, version, settings)
        return await _run_release(req, client, given)
    except PipelineError as exc:
        return _error(exc)


def _release_input(
    operation: str,
    dataset_id: str,
    version: str,
    settings: Settings,
    by: str = "",
    reason: str = "",
) -> ReleaseInput:
    return ReleaseInput(
        operation=operation,
        dataset_id=dataset_id,
        version=version,
        by=by,
        reason=reason,
        retry_first_interval_ms=settings.retry_first_interval_ms,
        retry_max_attempts=settings.retry_max_attempts,
    )


async def _run_release(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, given: ReleaseInput
) -> func.HttpResponse:
    """Start the dataset's release orchestration (one at a time) and answer with its result
    when it ends within RELEASE_WAIT_SECONDS: 200, or the error's status. Otherwise 202 with
    the URL of its status (GET /api/pipelines/release-<dataset>), which has the result
    once it has ended."""
    instance_id = release_instance_id(given.dataset_id)
    status_url = _status_url(req, instance_id)
    if runtime_status(await client.get_status(instance_id)) in IN_PROGRESS:
        raise Conflict(
            f"Another release operation on {given.dataset_id!r} is in progress.",
            remedy=f"Follow it at {status_url}, then ask again.",
        )
    await client.start_new("release_version", instance_id, given.to_dict())
    deadline = time.monotonic() + RELEASE_WAIT_SECONDS
    pause = 0.05
    while time.monotonic() < deadline:
        status = await client.get_status(instance_id)
        if runtime_status(status) in FINISHED:
            view = release_view(status.to_json())
            if "result" in view:
                return _json(200, view["result"])
            raise PipelineError.from_dict(view.get("error") or {"code": "internal_error"})
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
    return _json(
        202,
        {
            "instance_id": instance_id,
            "phase": "running",
            "status_url": status_url,
            "message": f"The {given.operation} of {given.dataset_id} {given.version} goes on; "
            "its status URL has the result when it has ended.",
        },
        headers={"Location": status_url},
    )
