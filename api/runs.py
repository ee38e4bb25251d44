"""Starting a dataset's pipeline run: one rule for every way a run starts.

A run is the orchestration instance ``pipeline-<dataset>``, and a dataset has at most one in
progress. Every start, from the HTTP starter or from a dataset's upload watcher, is a
*client* start (DurableOrchestrationClient.start_new), because that is the only start the
Durable extension de-duplicates: with ``overridableExistingInstanceStates`` at its default,
NonRunningStates, it refuses a client start of an instance that is still running, while a
sub-orchestration started over a running id is not refused on the Azure Storage backend: it
replaces the running run. So the rule is: look first (a run in progress answers "busy"), then
start; when two starts race past the look, the extension refuses the second, which is
reported as "busy" too.
"""

from __future__ import annotations

import azure.durable_functions as df

from shared.model.plan import PipelineInput, instance_id_for
from shared.model.wire import RunStatusAnswer, StartRunAnswer

ORCHESTRATOR = "pipeline"
IN_PROGRESS = ("Running", "Pending", "ContinuedAsNew", "Suspended")
FINISHED = ("Completed", "Failed", "Terminated", "Canceled")


def runtime_status(status: df.DurableOrchestrationStatus | None) -> str | None:
    runtime = status.runtime_status if status is not None else None
    return runtime.value if runtime is not None else None


# What happened to a start: started, or refused because a run is in progress (then with
# that run's runtime status). The watcher's start_run activity answers it as it is.
RunStart = StartRunAnswer


async def start_run(client: df.DurableOrchestrationClient, run: PipelineInput) -> RunStart:
    """Start the dataset's run unless one is in progress (then: not started, with its status).
    Raises what the client raises for anything else (the Durable API unreachable, ...)."""
    instance_id = instance_id_for(run.request.dataset_id)
    existing = runtime_status(await client.get_status(instance_id))
    if existing in IN_PROGRESS:
        return RunStart(instance_id=instance_id, started=False, runtime_status=existing)
    try:
        await client.start_new(ORCHESTRATOR, instance_id, run.to_dict())
    except Exception:
        # Two starts raced past the look: the extension refuses the second one.
        raced = runtime_status(await client.get_status(instance_id))
        if raced in IN_PROGRESS:
            return RunStart(instance_id=instance_id, started=False, runtime_status=raced)
        raise
    return RunStart(instance_id=instance_id, started=True)


async def run_state(client: df.DurableOrchestrationClient, instance_id: str) -> RunStatusAnswer:
    """Where a run stands, in a few fields: its runtime status and, from its custom status,
    phase, run id, file counts, item URL and error (what a watcher records as its last run)."""
    status = await client.get_status(instance_id, show_input=False)
    runtime = runtime_status(status)
    custom = status.custom_status if status is not None else None
    custom = custom if isinstance(custom, dict) else {}
    files = custom.get("files") or {}
    error = custom.get("error")
    if error is None and runtime in ("Failed", "Terminated"):
        error = {"code": f"orchestration_{runtime.lower()}", "message": str(status.output)[:500]}
    return RunStatusAnswer(
        instance_id=instance_id,
        runtime_status=runtime,
        finished=runtime in FINISHED or runtime is None,
        phase=custom.get("phase"),
        run_id=custom.get("run_id") or None,
        files=files.get("total"),
        reused=files.get("reused"),
        item_url=(custom.get("outputs") or {}).get("item_url"),
        error=error,
    )
