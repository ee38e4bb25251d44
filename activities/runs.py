"""Activities that start and follow a dataset's pipeline run, for the upload watcher.

They take a Durable client binding (an activity may, like any function), so that the watcher
starts runs the one way the HTTP starter does: a client start under the rule of api/runs.py.
A client that cannot reach the Durable API raises, and the watcher's retry options apply.

    start_run   {"run": PipelineInput}  -> {"ok": true, "instance_id", "started", "runtime_status"}
    run_status  {"instance_id"}         -> {"ok": true, "runtime_status", "finished", "phase", ...}
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.stages import Payload
from api.runs import run_state
from api.runs import start_run as start_pipeline_run
from shared.model.plan import PipelineInput
from shared.model.telemetry import run_context

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def start_run(payload: Payload, client: df.DurableOrchestrationClient) -> dict[str, Any]:
    run = PipelineInput.from_dict(payload["run"])
    with run_context(
        stage="watch", dataset=run.request.dataset_id, instance_id=payload.get("instance_id")
    ):
        started = await start_pipeline_run(client, run)
    return {"ok": True, **started.to_dict()}


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def run_status(payload: Payload, client: df.DurableOrchestrationClient) -> dict[str, Any]:
    return {"ok": True, **await run_state(client, payload["run_instance_id"])}
