"""Activities that start and follow a dataset's pipeline run, for the upload watcher.

They take a Durable client binding (an activity may, like any function), so that the watcher
starts runs the one way the HTTP starter does: a client start under the rule of api/runs.py.
A client that cannot reach the Durable API raises, and the watcher's retry options apply.

    start_run   StartRunInput   -> StartRunAnswer   (shared.model.wire)
    run_status  RunStatusInput  -> RunStatusAnswer
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.stages import Payload
from api.runs import run_state
from api.runs import start_run as start_pipeline_run
from shared.model.telemetry import run_context
from shared.model.wire import RunStatusInput, StartRunInput, success

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def start_run(payload: Payload, client: df.DurableOrchestrationClient) -> dict[str, Any]:
    given = StartRunInput.from_dict(payload)
    dataset = given.run.request.dataset_id
    with run_context(stage="watch", dataset=dataset, instance_id=given.instance_id):
        started = await start_pipeline_run(client, given.run)
    return success(started)


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def run_status(payload: Payload, client: df.DurableOrchestrationClient) -> dict[str, Any]:
    given = RunStatusInput.from_dict(payload)
    return success(await run_state(client, given.run_instance_id))
