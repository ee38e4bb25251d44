"""HTTP API for the operator page (api/page.py serves it): what an operator looks at, in a
few reads, with the API's own auth (function level).

    GET /api/runs?days=N                 every dataset's latest run created in the last N
                                         days (1-90, default 7) and every run in flight,
                                         newest first, each as GET /api/pipelines/{id}
                                         answers it; "complete": false (and a note) when
                                         the Durable API's first page of failed or running
                                         instances was full; 400 for a bad N
    GET /api/datasets                    every dataset that has a version: its versions,
                                         newest first, and which is current (as GET
                                         /api/datasets/{dataset_id} answers each)
    GET /api/pipelines/{instance_id}/reports/{report}
                                         the run's report for a person, as plain text:
                                         "summary" (the run summary, Markdown) or "gate"
                                         (the gate's report, Markdown); 404 when the run
                                         has none (yet)
    GET /api/datasets/{dataset_id}/versions/{version}/preview
                                         the version's preview (PNG: the STAC item's
                                         thumbnail); 404 when it has none

Read only. The decisions (approve, reject, unpublish) go through their own endpoints
(api/releases.py), with their checks, whoever calls them. Every document is one the pipeline
wrote; what it names is read through shared.io.storage only when it lies in the work area or
the store root, and is answered as text or PNG, never as HTML.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from api.http import INSTANCE_ID, _json
from api.releases import _dataset_id, _error, _version
from api.runs import IN_PROGRESS, runtime_status
from shared.catalog.ledger import dataset_view
from shared.io.storage import Storage
from shared.model.errors import BadRequest, NotFound, PipelineError
from shared.model.layout import Layout
from shared.model.locations import Location, parse_location, show_value
from shared.model.plan import PIPELINE_PREFIX, dataset_of, instance_id_for, is_pipeline_instance
from shared.model.settings import Settings
from shared.model.status import pipeline_view

log = logging.getLogger(__name__)
bp = df.Blueprint()

DEFAULT_DAYS, MAX_DAYS = 7, 90
# The Durable HTTP API lists instances 100 a page, and the Python SDK's get_status_by reads
# the first page only: a full page may hide more, and the answer says so.
DURABLE_PAGE = 100
# report name -> the output of the run's status that holds its location
REPORTS = {"summary": "run_summary", "gate": "gate_summary_url"}
# what an answer that carries a stored document says to a browser: take the type as given
# (never sniff HTML in a report), keep it out of caches, send no referrer
DOCUMENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


def _days(req: func.HttpRequest) -> int:
    text = req.params.get("days")
    if text is None:
        return DEFAULT_DAYS
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise BadRequest(
            f"Query parameter 'days' is {show_value(text)}; it must be a whole number of days "
            f"from 1 to {MAX_DAYS}.",
            remedy=f"Leave it out for the last {DEFAULT_DAYS} days.",
        )
    return int(text)


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def list_runs(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """A dataset has one run instance, pipeline-<dataset>: its datasets are found in the
    work area (every run past its scan wrote a manifest there) and, for runs in flight or
    failed, in the Durable API; then each dataset's run is asked for by its id. Listing the
    instances by the prefix pipeline- would not do: the batch sub-orchestrations'
    ids (pipeline-<dataset>:validate:0000) share it, and the listing's first page, all the
    Python SDK reads, would be mostly theirs."""
    try:
        days = _days(req)
        settings = Settings.from_env()
        known = set(run_dataset_ids(settings, Storage(settings)))
    except PipelineError as exc:
        return _error(exc)
    since = datetime.now(UTC) - timedelta(days=days)
    ended_badly = await client.get_status_by(
        created_time_from=since,
        runtime_status=[df.OrchestrationRuntimeStatus(s) for s in ("Failed", "Terminated")],
        instance_id_prefix=PIPELINE_PREFIX,
    )
    in_flight = await client.get_status_by(
        runtime_status=[df.OrchestrationRuntimeStatus(s) for s in IN_PROGRESS],
        instance_id_prefix=PIPELINE_PREFIX,
    )
    for status in [*ended_badly, *in_flight]:
        instance_id = status.instance_id or ""
        # Only the pipeline's own instances, by their exact form (a batch's id never is).
        if INSTANCE_ID.fullmatch(instance_id) and is_pipeline_instance(instance_id):
            known.add(dataset_of(instance_id))
    statuses = await asyncio.gather(
        *(client.get_status(instance_id_for(d), show_input=False) for d in sorted(known))
    )
    runs = []
    for status in statuses:
        runtime = runtime_status(status)
        created = status.created_time if runtime is not None else None
        if runtime in IN_PROGRESS or (created is not None and _aware(created) >= since):
            runs.append(pipeline_view(status.to_json()))
    runs.sort(key=lambda v: str(v.get("created") or ""), reverse=True)
    answer: dict[str, Any] = {"days": days, "since": since.isoformat(), "runs": runs}
    answer["complete"] = len(ended_badly) < DURABLE_PAGE and len(in_flight) < DURABLE_PAGE
    if not answer["complete"]:
        answer["note"] = (
            f"The Durable API answered a full page ({DURABLE_PAGE} instances) of failed or "
            "running instances: runs that have not written a manifest yet may be missing. "
            "Look one up by its id (GET /api/pipelines/pipeline-<dataset>)."
        )
    return _json(200, answer)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_dataset_ids(settings: Settings, storage: Storage) -> list[str]:
    """Every dataset a run has scanned ({work}/manifests/{dataset}/...)."""
    folder = Layout.from_settings(settings).work.join("manifests")
    found = {info.url[len(folder.url) + 1 :].split("/", 1)[0] for info in storage.list(folder)}
    return sorted(found)


def dataset_ids(settings: Settings, storage: Storage) -> list[str]:
    """Every dataset with a version record ({work}/datasets/{dataset}/versions.json)."""
    folder = Layout.from_settings(settings).work.join("datasets")
    found = set()
    for info in storage.list(folder):
        relative = info.url[len(folder.url) + 1 :]
        dataset, _, name = relative.partition("/")
        if name == "versions.json":
            found.add(dataset)
    return sorted(found)


@bp.route(route="datasets", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_datasets(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = Settings.from_env()
        storage = Storage(settings)
        datasets = []
        for dataset_id in dataset_ids(settings, storage):
            try:
                datasets.append(dataset_view(dataset_id, settings, storage))
            except NotFound:  # a record with no version yet: not a dataset to show
                continue
        return _json(200, {"datasets": datasets})
    except PipelineError as exc:
        return _error(exc)


def _own_document(url: str, settings: Settings) -> Location:
    """The location of a document the pipeline wrote (a run's report): it must lie in the
    work area or the store root, whatever the status says."""
    layout = Layout.from_settings(settings)
    location = parse_location(url, settings, what="report")
    for area in (layout.work, layout.stores):
        if location.url.startswith(area.url.rstrip("/") + "/"):
            return location
    raise NotFound(f"The report {show_value(url)} is outside the pipeline's own areas.")


def _text(body: bytes) -> func.HttpResponse:
    return func.HttpResponse(
        body,
        status_code=200,
        mimetype="text/plain",
        charset="utf-8",
        headers=DOCUMENT_HEADERS,
    )


@bp.route(
    route="pipelines/{instance_id}/reports/{report}",
    methods=["GET"],
    auth_level=func.AuthLevel.FUNCTION,
)
@bp.durable_client_input(client_name="client")
async def run_report(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    report = req.route_params.get("report", "")
    try:
        if report not in REPORTS:
            raise NotFound(
                f"There is no report {show_value(report)}.",
                remedy=f"Ask for one of: {', '.join(REPORTS)}.",
            )
        exact = INSTANCE_ID.fullmatch(instance_id) and is_pipeline_instance(instance_id)
        status = await client.get_status(instance_id, show_input=False) if exact else None
        if status is None or runtime_status(status) is None:
            raise NotFound(
                f"There is no pipeline run {show_value(instance_id)}.",
                remedy="Use the instance_id returned by POST /api/pipelines.",
            )
        view = pipeline_view(status.to_json())
        url = view.get(REPORTS[report])
        if not isinstance(url, str) or not url:
            raise NotFound(
                f"Run {instance_id} has no {report} report (yet).",
                remedy="The gate report exists once the gate has run; the run summary once "
                "the run has ended.",
            )
        settings = Settings.from_env()
        storage = Storage(settings)
        return _text(storage.read(_own_document(url, settings)))
    except PipelineError as exc:
        if exc.code == "source_not_found":
            return _error(NotFound(f"The {report} report of {instance_id} is gone (pruned?)."))
        return _error(exc)


@bp.route(
    route="datasets/{dataset_id}/versions/{version}/preview",
    methods=["GET"],
    auth_level=func.AuthLevel.FUNCTION,
)
def version_preview(req: func.HttpRequest) -> func.HttpResponse:
    try:
        dataset_id = _dataset_id(req)
        version = _version(req, dataset_id)
        settings = Settings.from_env()
        from shared.stages.preview import PREVIEW_SUFFIX  # xarray and pystac: on first use

        location = Layout.from_settings(settings).stores.join(
            dataset_id, f"{version}{PREVIEW_SUFFIX}"
        )
        body = Storage(settings).read(location)
    except PipelineError as exc:
        if exc.code == "source_not_found":
            return _error(
                NotFound(
                    f"Version {version} of {dataset_id!r} has no preview.",
                    remedy="The register stage draws it; a store cleaned up loses it too.",
                )
            )
        return _error(exc)
    return func.HttpResponse(body, status_code=200, mimetype="image/png", headers=DOCUMENT_HEADERS)
