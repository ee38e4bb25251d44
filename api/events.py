"""Event Grid: Microsoft.Storage.BlobCreated events from the source storage account.

    blob_created   one event per call; routed to its dataset through the registry
                   (PIPELINE_DATASETS), then raised on that dataset's watcher orchestration
                   (``watch-<dataset>``, started if it is not running)

An event that is not for us (another event type, container, suffix, or a prefix no dataset
owns) is logged with the reason and acknowledged: retrying it would never help. So is an
event that arrives while the registry document does not exist (``registry_missing``),
loudly: Event Grid would retry it for 24 hours and dead-letter it, and the file is not lost
anyway (the dataset's next upload makes the watcher list the whole source). A registry that
is not valid, a failure to reach the Durable runtime, or storage that refuses or fails to
answer (a role not yet in effect after a deployment, an outage) is raised, so the host
answers Event Grid with an error and Event Grid delivers the event again later, once the
operator has fixed the document (and dead-letters it after its retry policy).
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from api.runs import IN_PROGRESS, runtime_status
from orchestrators.watcher import EVENT
from shared.ingest.datasets import DatasetConfig, load_registry
from shared.ingest.events import decide, unregistered
from shared.ingest.watch import WatchState
from shared.model.errors import SourceNotFound
from shared.model.plan import RunPolicy, watcher_instance_id
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)
bp = df.Blueprint()

WATCHER = "dataset_watcher"
LOUD_REASONS = ("unknown_dataset", "outside_storage", "malformed", "registry_missing")
REGISTRY_REMEDY = (
    "Write the registry document (docs/events.md) at that location; `azd up` writes one "
    "from the `datasets` parameter when it is missing (docs/deploy.md). The next upload into "
    "a dataset's prefix starts its run, which lists the whole source, this file included."
)


def watcher_config(dataset: DatasetConfig, settings: Settings) -> dict[str, Any]:
    """What the watcher needs to run the dataset's pipeline: it travels with every event, so
    a change to the registry applies from the next upload on."""
    return {
        "request": dataset.request.to_dict(),
        "policy": RunPolicy.from_request(dataset.request, settings).to_dict(),
        "quiet_seconds": dataset.quiet_seconds,
        "max_wait_seconds": dataset.max_wait_seconds,
    }


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def blob_created(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    settings = Settings.from_env()
    try:
        registry = load_registry(settings)  # unreachable: raise, Event Grid delivers it again
    except SourceNotFound:
        ignored = unregistered(
            event.id,
            event.get_json(),
            "registry_missing",
            f"The dataset registry {settings.datasets.strip()} (PIPELINE_DATASETS) does not "
            f"exist: no dataset is registered, the upload is not ingested. {REGISTRY_REMEDY}",
        )
        emit(log, f"event ignored: {ignored.message}", logging.WARNING, **ignored.log_fields())
        return
    decision = decide(
        event_id=event.id,
        event_type=event.event_type,
        data=event.get_json(),
        registry=registry,
        settings=settings,
    )
    if decision.dataset is None or decision.change is None:
        level = logging.WARNING if decision.reason in LOUD_REASONS else logging.INFO
        emit(log, f"event ignored: {decision.message}", level, **decision.log_fields())
        return
    config = watcher_config(decision.dataset, settings)
    instance_id = watcher_instance_id(decision.dataset.dataset_id)
    if runtime_status(await client.get_status(instance_id)) not in IN_PROGRESS:
        try:
            await client.start_new(WATCHER, instance_id, WatchState(config=config).to_dict())
            emit(log, "watcher started", **decision.log_fields(), instance_id=instance_id)
        except Exception:
            # Another event started it first (the runtime refuses a second start).
            if runtime_status(await client.get_status(instance_id)) not in IN_PROGRESS:
                raise
    await client.raise_event(
        instance_id, EVENT, {"change": decision.change.to_dict(), "config": config}
    )
    emit(log, f"event routed: {decision.message}", **decision.log_fields())
