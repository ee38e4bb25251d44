"""Task hub upkeep: a nightly purge of finished orchestration instances.

    purge_history   timer, 03:30 UTC every day: deletes the status and history of every
                    pipeline, batch and watcher instance that finished (Completed, Failed,
                    Terminated) more than PIPELINE_HISTORY_RETENTION_DAYS days ago (30; 0
                    keeps them). Runs in progress are never touched.

The Durable task hub keeps every instance's history in Azure Storage tables until it is
purged; at thousands of runs a night it grows without bound and makes listing instances slow.
What an operator needs after that is kept elsewhere: every run's report (JSON) and summary
(Markdown) stay in the work area and beside the store.

The runtime statuses are always given: the Azure Storage backend treats a purge by time with
no terminal status as a purge of *every* instance in the time range, running ones included.
Run it by hand (Functions admin API, with the master key; devhost needs no key):

    curl -X POST "$BASE/admin/functions/purge_history?code=$MASTER_KEY" \\
         -H 'Content-Type: application/json' -d '{"input": ""}'
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)
bp = df.Blueprint()

SCHEDULE = "0 30 3 * * *"  # NCRONTAB (seconds first): 03:30 UTC every day
PURGED_STATUSES = [
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.Failed,
    df.OrchestrationRuntimeStatus.Terminated,
]
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def purge_history(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    days = Settings.from_env().history_retention_days
    if days == 0:
        emit(log, "history purge skipped: PIPELINE_HISTORY_RETENTION_DAYS is 0", stage="purge")
        return
    before = datetime.now(UTC) - timedelta(days=days)
    result = await client.purge_instance_history_by(
        created_time_from=EPOCH, created_time_to=before, runtime_status=PURGED_STATUSES
    )
    emit(
        log,
        "history purged",
        stage="purge",
        instances_deleted=result.instances_deleted,
        created_before=before.isoformat(),
        past_due=timer.past_due,
    )
