"""The pipeline orchestrator and its batch sub-orchestrator. They only decide: no I/O, no
clock but context.current_utc_datetime, no settings (everything arrives in the input).

    pipeline(input)
      scan                                          -> manifest URL, file count, run id
      waves of `pipeline_batch` sub-orchestrations  -> validate the files of each batch
      gate                                          -> stop with the report if a file is unsuitable
      waves of `pipeline_batch` sub-orchestrations  -> generate the references of each batch
      combine -> verify -> register                 -> store URL, STAC item URL
      record                                        -> the run report in the work area

Activities return {"ok": true, ...} or {"ok": false, "error": {...}}; they raise only for
transient (retryable) failures, which are the only thing the retry options retry. A finding
or a bad file is an answer, not an exception, and is never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.plan import PipelineInput, batches
from shared.status import RunStatus

log = logging.getLogger(__name__)
bp = df.Blueprint()

MAX_BATCH_ERRORS = 5


class PipelineFailed(Exception):
    """Ends the orchestration as Failed; the details are in the custom status."""


def _retry(policy: dict[str, Any]) -> df.RetryOptions:
    return df.RetryOptions(policy["retry_first_interval_ms"], policy["retry_max_attempts"])


@bp.orchestration_trigger(context_name="context")
def pipeline(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    run = PipelineInput.from_dict(context.get_input())
    request, policy = run.request, run.policy.to_dict()
    retry = _retry(policy)
    status = RunStatus(dataset_id=request.dataset_id)

    def begin(phase: str) -> None:
        status.begin(phase, context.current_utc_datetime)
        context.set_custom_status(status.to_dict())
        if not context.is_replaying:
            log.info(
                "pipeline %s: %s",
                context.instance_id,
                phase,
                extra={
                    "stage": phase,
                    "dataset": request.dataset_id,
                    "instance_id": context.instance_id,
                },
            )

    def fail(error: dict[str, Any]) -> Generator[Any, Any, None]:
        status.fail(error, context.current_utc_datetime)
        context.set_custom_status(status.to_dict())
        if status.run_id:
            recorded = yield context.call_activity_with_retry(
                "record_run", retry, _record_input(request.dataset_id, status)
            )
            if recorded.get("ok"):
                status.outputs["run_report"] = recorded["run_report"]
                context.set_custom_status(status.to_dict())
        raise PipelineFailed(f"[{error.get('code')}] {error.get('message')}")

    def stage_batches(stage: str, manifest_url: str, total: int) -> Generator[Any, Any, None]:
        ranges = batches(total, policy["batch_size"])
        waves = [
            ranges[i : i + policy["parallel_batches"]]
            for i in range(0, len(ranges), policy["parallel_batches"])
        ]
        done = 0
        for wave in waves:
            status.batch = {"stage": stage, "current": done + len(wave), "total": len(ranges)}
            context.set_custom_status(status.to_dict())
            results = yield context.task_all(
                [
                    context.call_sub_orchestrator(
                        "pipeline_batch",
                        {
                            "stage": stage,
                            "manifest_url": manifest_url,
                            "start": start,
                            "stop": stop,
                            "concat_dim": request.concat_dim,
                            "policy": policy,
                        },
                    )
                    for start, stop in wave
                ]
            )
            done += len(wave)
            for result in results:
                status.add_errors(result["errors"])
                status.bytes_read[stage] = status.bytes_read.get(stage, 0) + result["bytes_read"]
                if stage == "validate":
                    status.files_validated += result["files"]
                    status.files_unsuitable += result["unsuitable"]
                else:
                    status.files_generated += result["files"]
            context.set_custom_status(status.to_dict())
            failed = [r for r in results if r["error"] is not None]
            if failed:
                yield from fail(failed[0]["error"])

    begin("scan")
    scanned = yield context.call_activity_with_retry(
        "scan_files", retry, {"request": request.to_dict()}
    )
    if not scanned["ok"]:
        yield from fail(scanned["error"])
    manifest_url = scanned["manifest_url"]
    # Only new and changed files are validated and generated (shared/increment.py); the
    # gate and combine work on every file of the manifest.
    work_manifest_url, work_count = scanned["work_manifest_url"], scanned["work_count"]
    status.run_id = scanned["run_id"]
    status.files_total = scanned["file_count"]
    status.files_reused = scanned["reused"]
    status.bytes_total = scanned["total_bytes"]
    status.outputs["manifest_url"] = manifest_url

    begin("validate")
    yield from stage_batches("validate", work_manifest_url, work_count)

    begin("gate")
    gated = yield context.call_activity_with_retry(
        "gate_files",
        retry,
        {"manifest_url": manifest_url, "concat_dim": request.concat_dim, "format": request.format},
    )
    if not gated["ok"]:
        gate_report = (gated["error"].get("context") or {}).get("gate") or {}
        for key in ("report_url", "summary_url"):
            if gate_report.get(key):
                status.outputs[f"gate_{key}"] = gate_report[key]
        status.errors = []
        status.add_errors(gate_report.get("first_errors") or [])
        yield from fail(gated["error"])
    status.outputs["gate_report_url"] = gated["report_url"]
    status.outputs["gate_summary_url"] = gated["summary_url"]

    begin("generate")
    yield from stage_batches("generate", work_manifest_url, work_count)

    begin("combine")
    combined = yield context.call_activity_with_retry(
        "combine_store",
        retry,
        {"manifest_url": manifest_url, "request": request.to_dict(), "run_id": status.run_id},
    )
    if not combined["ok"]:
        yield from fail(combined["error"])
    status.outputs["store_url"] = combined["store_url"]

    begin("verify")
    verified = yield context.call_activity_with_retry(
        "verify_store",
        retry,
        {
            "manifest_url": manifest_url,
            "store_url": combined["store_url"],
            "format": request.format,
            "concat_dim": request.concat_dim,
        },
    )
    if not verified["ok"]:
        yield from fail(verified["error"])

    begin("register")
    registered = yield context.call_activity_with_retry(
        "register_item",
        retry,
        {
            "manifest_url": manifest_url,
            "request": request.to_dict(),
            "run_id": status.run_id,
            "store_url": combined["store_url"],
        },
    )
    if not registered["ok"]:
        yield from fail(registered["error"])
    status.outputs["item_url"] = registered["item_url"]
    status.outputs["catalog_url"] = registered["catalog_url"]
    status.succeed(context.current_utc_datetime)

    recorded = yield context.call_activity_with_retry(
        "record_run", retry, _record_input(request.dataset_id, status)
    )
    if recorded.get("ok"):
        status.outputs["run_report"] = recorded["run_report"]
    context.set_custom_status(status.to_dict())
    return status.to_dict()


def _record_input(dataset_id: str, status: RunStatus) -> dict[str, Any]:
    return {"dataset_id": dataset_id, "run_id": status.run_id, "status": status.to_dict()}


@bp.orchestration_trigger(context_name="context")
def pipeline_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Validate or generate one batch of files: one activity per few files, all at once."""
    batch = context.get_input()
    policy = batch["policy"]
    activity = {"validate": "validate_files", "generate": "generate_files"}[batch["stage"]]
    ranges = batches(batch["stop"] - batch["start"], policy["files_per_activity"])
    results = yield context.task_all(
        [
            context.call_activity_with_retry(
                activity,
                _retry(policy),
                {
                    "manifest_url": batch["manifest_url"],
                    "start": batch["start"] + start,
                    "stop": batch["start"] + stop,
                    "concat_dim": batch["concat_dim"],
                },
            )
            for start, stop in ranges
        ]
    )
    summary: dict[str, Any] = {
        "stage": batch["stage"],
        "start": batch["start"],
        "stop": batch["stop"],
        "files": 0,
        "unsuitable": 0,
        "bytes_read": 0,
        "errors": [],
        "error": None,
    }
    for result in results:
        if not result["ok"]:
            summary["error"] = summary["error"] or result["error"]
            continue
        summary["files"] += result["files"]
        summary["bytes_read"] += result["bytes_read"]
        summary["unsuitable"] += result.get("verdicts", {}).get("unsuitable", 0)
        room = MAX_BATCH_ERRORS - len(summary["errors"])
        summary["errors"].extend(result.get("errors", [])[: max(room, 0)])
    return summary
