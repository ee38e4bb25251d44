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
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared.model.plan import PipelineInput, batch_instance_id, batches
from shared.model.status import AWAITING_APPROVAL, RunStatus
from shared.model.telemetry import emit

log = logging.getLogger(__name__)
bp = df.Blueprint()

MAX_BATCH_ERRORS = 5
APPROVAL_EVENT = "approval"  # {"decision": "approve"|"reject", "by", "reason", "at"}


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
    # Every activity input names the run, so its log records do (shared.model.telemetry).
    run_fields = {"dataset": request.dataset_id, "instance_id": context.instance_id}

    def begin(phase: str) -> None:
        status.begin(phase, context.current_utc_datetime)
        status.estimate_remaining(context.current_utc_datetime)
        context.set_custom_status(status.custom_status())
        if not context.is_replaying:
            emit(log, "stage begins", stage=phase, **run_fields)

    def attempt(name: str, payload: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        """One stage activity with the transient-error retries; when they run out, an error
        answer like any other (so the run fails with its status, log record and report)."""
        try:
            result = yield context.call_activity_with_retry(name, retry, payload)
        except Exception as exc:  # the retries ran out (or the activity timed out each time)
            return {"ok": False, "error": retries_exhausted(name, policy, exc)}
        return result

    def record() -> Generator[Any, Any, None]:
        """The run report (JSON in the work area, Markdown beside the store), then the
        final custom status with their URLs."""
        recorded = yield context.call_activity_with_retry(
            "record_run", retry, {**run_fields, **_record_input(request.dataset_id, status)}
        )
        if recorded.get("ok"):
            status.outputs["run_report"] = recorded["run_report"]
            if recorded.get("run_summary"):
                status.outputs["run_summary"] = recorded["run_summary"]
        context.set_custom_status(status.custom_status())

    def fail(error: dict[str, Any]) -> Generator[Any, Any, None]:
        failed_stage = status.phase
        status.fail(error, context.current_utc_datetime)
        context.set_custom_status(status.custom_status())
        if not context.is_replaying:
            first = status.errors[0] if status.errors else {}
            emit(
                log,
                "run failed",
                logging.ERROR,
                stage=failed_stage,
                code=error.get("code"),
                error_message=error.get("message"),
                url=first.get("url") or (error.get("context") or {}).get("url"),
                finding=first.get("code"),
                **run_fields,
            )
        if status.run_id:
            yield from record()
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
            context.set_custom_status(status.custom_status())
            try:
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
                                "refresh": bool(request.options.get("full")),
                                **run_fields,
                            },
                            batch_instance_id(context.instance_id, stage, done + position),
                        )
                        for position, (start, stop) in enumerate(wave)
                    ]
                )
            except Exception as exc:  # a batch's activity ran out of retries
                yield from fail(retries_exhausted(f"the {stage} batches", policy, exc))
            done += len(wave)
            for result in results:
                status.add_errors(result["errors"])
                status.bytes_read[stage] = status.bytes_read.get(stage, 0) + result["bytes_read"]
                if stage == "validate":
                    status.files_validated += result["files"]
                    status.files_unsuitable += result["unsuitable"]
                else:
                    status.files_generated += result["files"]
            status.estimate_remaining(context.current_utc_datetime)
            context.set_custom_status(status.custom_status())
            failed = [r for r in results if r["error"] is not None]
            if failed:
                yield from fail(failed[0]["error"])

    begin("scan")
    scanned = yield from attempt("scan_files", {"request": request.to_dict(), **run_fields})
    if not scanned["ok"]:
        yield from fail(scanned["error"])
    manifest_url = scanned["manifest_url"]
    # Only new and changed files are validated and generated (shared/stages/increment.py); the
    # gate and combine work on every file of the manifest.
    work_manifest_url, work_count = scanned["work_manifest_url"], scanned["work_count"]
    status.run_id = scanned["run_id"]
    status.files_total = scanned["file_count"]
    status.files_reused = scanned["reused"]
    status.bytes_total = scanned["total_bytes"]
    status.outputs["manifest_url"] = manifest_url
    if work_manifest_url != manifest_url:
        status.outputs["work_manifest_url"] = work_manifest_url  # the files processed anew

    begin("validate")
    yield from stage_batches("validate", work_manifest_url, work_count)

    begin("gate")
    gated = yield from attempt(
        "gate_files",
        {
            "manifest_url": manifest_url,
            "concat_dim": request.concat_dim,
            "format": request.format,
            "drop_variables": list(request.drop_variables),
            "static_differs": request.static_differs,
            **run_fields,
        },
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
    combined = yield from attempt(
        "combine_store",
        {
            "manifest_url": manifest_url,
            "request": request.to_dict(),
            "run_id": status.run_id,
            **run_fields,
        },
    )
    if not combined["ok"]:
        yield from fail(combined["error"])
    status.outputs["store_url"] = combined["store_url"]
    status.store = {
        "mode": combined.get("mode"),
        "bytes": combined.get("store_bytes"),
        "references": combined.get("reference_count"),
        "dims": combined.get("dims"),
        "peak_memory_bytes": combined.get("peak_memory_bytes"),
    }

    begin("verify")
    verified = yield from attempt(
        "verify_store",
        {
            "manifest_url": manifest_url,
            "store_url": combined["store_url"],
            "format": request.format,
            "concat_dim": request.concat_dim,
            "drop_variables": list(request.drop_variables),
            "static_differs": request.static_differs,
            **run_fields,
        },
    )
    if not verified["ok"]:
        yield from fail(verified["error"])

    approval: dict[str, Any] | None = None
    if request.options.get("approval"):
        deadline = context.current_utc_datetime + timedelta(
            seconds=policy.get("approval_timeout_seconds", 7 * 86400)
        )
        status.approval = {"required": True, "state": "awaiting", "deadline": deadline.isoformat()}
        begin(AWAITING_APPROVAL)
        decision = context.wait_for_external_event(APPROVAL_EVENT)
        timer = context.create_timer(deadline)
        winner = yield context.task_any([decision, timer])
        if winner is decision:
            timer.cancel()
            approval = dict(decision.result or {})
        else:
            approval = {"decision": "expire", "by": "timeout", "reason": "no decision in time"}
        outcome = {"approve": "approved", "reject": "rejected"}.get(approval.get("decision"))
        status.approval.update(
            state=outcome or "expired",
            by=approval.get("by"),
            reason=approval.get("reason"),
            at=approval.get("at") or context.current_utc_datetime.isoformat(),
        )
        if outcome != "approved":
            # Nothing is published; the verified store stays for inspection until pruned.
            status.end_unpublished(outcome or "expired", context.current_utc_datetime)
            if not context.is_replaying:
                emit(
                    log,
                    f"run {status.phase}: nothing published",
                    stage=AWAITING_APPROVAL,
                    decided_by=status.approval.get("by"),
                    reason=status.approval.get("reason"),
                    **run_fields,
                )
            yield from record()
            return status.to_dict()

    begin("register")
    registered = yield from attempt(
        "register_item",
        {
            "manifest_url": manifest_url,
            "request": request.to_dict(),
            "run_id": status.run_id,
            "store_url": combined["store_url"],
            "approval": status.approval or None,
            **run_fields,
        },
    )
    if not registered["ok"]:
        yield from fail(registered["error"])
    status.outputs["item_url"] = registered["item_url"]
    status.outputs["catalog_url"] = registered["catalog_url"]
    status.succeed(context.current_utc_datetime)
    if not context.is_replaying:
        emit(
            log,
            "run succeeded",
            stage="register",
            run_id=status.run_id,
            file_count=status.files_total,
            reused=status.files_reused,
            stage_seconds={k: v.get("seconds") for k, v in status.stages.items()},
            item_url=status.outputs.get("item_url"),
            **run_fields,
        )

    yield from record()
    return status.to_dict()


def retries_exhausted(what: str, policy: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """The error of a task whose retries ran out: it names what failed and how often."""
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return {
        "code": "retries_exhausted",
        "message": f"{what} failed {policy['retry_max_attempts']} times with transient "
        f"errors (storage unavailable or throttled, or a timeout); the last: {detail}",
        "remedy": "Check the storage account's health and throttling (docs/runbooks/"
        "stuck-run.md), then submit the run again: finished work is reused.",
        "retryable": True,
    }


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
                    "dataset": batch.get("dataset"),
                    "instance_id": batch.get("instance_id"),
                    "refresh": batch.get("refresh", False),
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
