"""A small Function App with Event Grid functions, for devhost's Event Grid webhook
(test_devhost_events.py): one async function that hands each event to a running collector
orchestration through the Durable client, one sync function that fails on some events.

The DevServer runs in the test's process, so `picky` records what it got in RECEIVED."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

COLLECTOR = "eventgrid-collector"  # the instance blob_created raises its events to
RECEIVED: list[dict[str, Any]] = []  # what picky was given, in order


def event_fields(event: func.EventGridEvent) -> dict[str, Any]:
    """Everything the function was given, as JSON."""
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "event_type": event.event_type,
        "event_time": event.event_time.isoformat() if event.event_time else None,
        "data_version": event.data_version,
        "data": event.get_json(),
        "type": type(event).__name__,
    }


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def blob_created(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    await client.raise_event(COLLECTOR, "blob_created", event_fields(event))


@app.orchestration_trigger(context_name="context")
def collect(context: df.DurableOrchestrationContext):
    """Waits for as many blob_created events as its input says, and returns them."""
    events = []
    for _ in range(context.get_input()):
        events.append((yield context.wait_for_external_event("blob_created")))
    return events


@app.event_grid_trigger(arg_name="event")
def picky(event: func.EventGridEvent) -> None:
    RECEIVED.append(event_fields(event))
    if "boom" in event.subject:
        raise ValueError(f"cannot take {event.subject}")
