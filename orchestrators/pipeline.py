"""The pipeline orchestrator and its batch sub-orchestrator. They only decide: no I/O, no
clock but context.current_utc_datetime, no settings (everything arrives in the input).

    pipeline(input)
      scan                                          -> manifest URL, file count, run id
      waves of `pipeline_batch` sub-orchestrations  -> validate the files of each batch
      gate                                          -> stop with the report if a file is unsuitable
      waves of `pipeline_batch` sub-orchestrations  -> generate the references of each batch
      combine                                       -> store URL: one combine_store activity,
                                                       or above combine_spread_files files
                                                       `combine_wave` sub-orchestrations (each
                                                       a wave of merge_batch activities, one
                                                       partial per batch), then join_partials
      waves of `verify_batch` sub-orchestrations    -> compare the files of each batch
      verify_decide                                 -> the verdict on all of them
      register                                      -> STAC item URL
      prune                                         -> stores of old versions removed
      record                                        -> the run report in the work area

Activities return {"ok": true, ...} or {"ok": false, "error": {...}}; they raise only for
transient (retryable) failures, which are the only thing the retry options retry. A finding
or a bad file is an answer, not an exception, and is never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, NoReturn

import azure.durable_functions as df

from shared.model.claims import MAX_REPORTED
from shared.model.plan import (
    BatchPolicy,
    PipelineInput,
    RunPolicy,
    batch_instance_id,
    batches,
)
from shared.model.request import PipelineRequest
from shared.model.status import AWAITING_APPROVAL, MAX_ERRORS, RunStatus
from shared.model.telemetry import emit
from shared.model.versions import version_of
from shared.model.wire import (
    BatchInput,
    BatchSummary,
    CombineAnswer,
    CombineInput,
    CombineWaveInput,
    DecideInput,
    ErrorInfo,
    FilesAnswer,
    FilesInput,
    GateAnswer,
    GateInput,
    JoinInput,
    MergeBatchInput,
    PartialAnswer,
    PruneAnswer,
    PruneInput,
    RecordAnswer,
    RecordInput,
    RegisterAnswer,
    RegisterInput,
    RunPlan,
    ScanInput,
    VerifyAnswer,
    VerifyBatchInput,
    VerifyFilesInput,
    VerifyTally,
    Wire,
    answer,
    failure,
    success,
)

log = logging.getLogger(__name__)
bp = df.Blueprint()

APPROVAL_EVENT = "approval"  # {"decision": "approve"|"reject", "by", "reason", "at"}
BATCH_ACTIVITY = {"validate": "validate_files", "generate": "generate_files"}

# A step of an orchestrator: it yields Durable tasks and returns a value.
Step = Generator[Any, Any, Any]


class PipelineFailed(Exception):
    """Ends the orchestration as Failed; the details are in the custom status."""


def child_version(context: df.DurableOrchestrationContext) -> str | None:
    """A run's batches run the run's own orchestration version, so a run started by an
    earlier release replays its children with that release's branch too (docs/versioning.md).
    None for a run started before versioning: the extension then stamps host.json's
    defaultVersion, and the children read the run's input the way today's release does."""
    return version_of(context) or None


def _retry(policy: RunPolicy | BatchPolicy) -> df.RetryOptions:
    return df.RetryOptions(policy.retry_first_interval_ms, policy.retry_max_attempts)


@bp.orchestration_trigger(context_name="context")
def pipeline(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    run = Run.of(context)
    plan: RunPlan = yield from scan(run)
    yield from stage_batches(run, "validate", plan)
    yield from gate(run, plan)
    yield from stage_batches(run, "generate", plan)
    combined: CombineAnswer = yield from combine(run, plan)
    yield from verify(run, plan, combined)
    approved: bool = yield from await_approval(run)
    if approved:
        yield from register(run, plan, combined)
        yield from prune(run)
    yield from record(run)
    return run.status.to_dict()


@dataclass
class Run:
    """One run inside the orchestrator: its input and the status every step updates."""

    context: df.DurableOrchestrationContext
    request: PipelineRequest
    policy: RunPolicy
    status: RunStatus

    @classmethod
    def of(cls, context: df.DurableOrchestrationContext) -> Run:
        given = PipelineInput.from_dict(context.get_input())
        status = RunStatus(
            dataset_id=given.request.dataset_id, orchestration_version=version_of(context)
        )
        return cls(context, given.request, given.policy, status)

    @property
    def fields(self) -> dict[str, str]:
        """Every activity input names the run, so its log records do (telemetry)."""
        return {"dataset": self.request.dataset_id, "instance_id": self.context.instance_id}

    def collection(self, plan: RunPlan) -> dict[str, Any]:
        """How the request combines the collection (GateInput, the verify inputs), for this
        run."""
        request = self.request
        return {
            "manifest_url": plan.manifest_url,
            "concat_dim": request.concat_dim,
            "format": request.format,
            "drop_variables": request.drop_variables,
            "static_differs": request.static_differs,
            **self.fields,
        }

    def show(self) -> None:
        self.context.set_custom_status(self.status.custom_status())

    def begin(self, phase: str) -> None:
        now = self.context.current_utc_datetime
        self.status.begin(phase, now)
        self.status.estimate_remaining(now)
        self.show()
        self.note("stage begins", stage=phase)

    def note(self, message: str, level: int = logging.INFO, **fields: Any) -> None:
        """A structured log record, once (not again on every replay)."""
        if not self.context.is_replaying:
            emit(log, message, level, **{**fields, **self.fields})


def call[W: Wire](run: Run, name: str, payload: Wire, kind: type[W]) -> Step:
    """One activity with the transient-error retries, its answer read as ``kind``; retries
    that run out are an error answer like any other (so the run fails with its status, log
    record and report)."""
    try:
        result = yield run.context.call_activity_with_retry(
            name, _retry(run.policy), payload.to_dict()
        )
    except Exception as exc:  # the retries ran out (or the activity timed out each time)
        return retries_exhausted(name, run.policy, exc)
    return answer(kind, result)


def succeeded[W: Wire](run: Run, result: W | ErrorInfo) -> Generator[Any, Any, W]:
    """The result, or the run fails with the error."""
    if isinstance(result, ErrorInfo):
        yield from fail(run, result)
    assert not isinstance(result, ErrorInfo)
    return result


def scan(run: Run) -> Generator[Any, Any, RunPlan]:
    run.begin("scan")
    scanned = yield from call(
        run, "scan_files", ScanInput(request=run.request, **run.fields), RunPlan
    )
    plan: RunPlan = yield from succeeded(run, scanned)
    status = run.status
    status.run_id = plan.run_id
    status.files_total = plan.file_count
    status.files_reused = plan.reused
    status.bytes_total = plan.total_bytes
    status.outputs["manifest_url"] = plan.manifest_url
    # Only new and changed files are validated and generated (shared/stages/increment.py);
    # the gate and combine work on every file of the manifest.
    if plan.work_manifest_url != plan.manifest_url:
        status.outputs["work_manifest_url"] = plan.work_manifest_url
    return plan


def waves(ranges: list[tuple[int, int]], policy: RunPolicy) -> list[list[tuple[int, int]]]:
    """Batches in waves of ``parallel_batches``: one wave runs at a time."""
    step = policy.parallel_batches
    return [ranges[i : i + step] for i in range(0, len(ranges), step)]


def stage_batches(run: Run, stage: str, plan: RunPlan) -> Step:
    """Validate or generate the files to process, in waves of batch sub-orchestrations."""
    run.begin(stage)
    context, policy, status = run.context, run.policy, run.status
    ranges = batches(plan.work_count, policy.batch_size)
    done = 0
    for wave in waves(ranges, policy):
        status.batch = {"stage": stage, "current": done + len(wave), "total": len(ranges)}
        run.show()
        children = [
            context.call_sub_orchestrator(
                "pipeline_batch",
                BatchInput(
                    stage=stage,
                    manifest_url=plan.work_manifest_url,
                    start=start,
                    stop=stop,
                    concat_dim=run.request.concat_dim,
                    policy=policy.for_batches(),
                    refresh=bool(run.request.options.get("full")),
                    errors_wanted=max(MAX_ERRORS - len(status.errors), 0),
                    **run.fields,
                ).to_dict(),
                batch_instance_id(context.instance_id, stage, done + position),
                version=child_version(context),
            )
            for position, (start, stop) in enumerate(wave)
        ]
        try:
            answers = yield context.task_all(children)
        except Exception as exc:  # a batch's activity ran out of retries
            yield from fail(run, retries_exhausted(f"the {stage} batches", policy, exc))
        done += len(wave)
        summaries = [BatchSummary.from_dict(a) for a in answers]
        for summary in summaries:
            status.add_errors(summary.errors)
            status.bytes_read[stage] = status.bytes_read.get(stage, 0) + summary.bytes_read
            if stage == "validate":
                status.files_validated += summary.files
                status.files_unsuitable += summary.unsuitable
            else:
                status.files_generated += summary.files
        status.estimate_remaining(context.current_utc_datetime)
        run.show()
        failed = [s.error for s in summaries if s.error is not None]
        if failed:
            yield from fail(run, failed[0])


def gate(run: Run, plan: RunPlan) -> Step:
    """The collection's verdict; a refusal keeps the gate report's links and first errors."""
    run.begin("gate")
    gated = yield from call(
        run,
        "gate_files",
        GateInput(**run.collection(plan)),
        GateAnswer,
    )
    status = run.status
    if isinstance(gated, ErrorInfo):
        report: Mapping[str, Any] = gated.context.get("gate") or {}
        for key in ("report_url", "summary_url"):
            if report.get(key):
                status.outputs[f"gate_{key}"] = report[key]
        status.errors = []
        status.add_errors(report.get("first_errors") or [])
        yield from fail(run, gated)
    assert not isinstance(gated, ErrorInfo)
    status.outputs["gate_report_url"] = gated.report_url
    status.outputs["gate_summary_url"] = gated.summary_url


def combine(run: Run, plan: RunPlan) -> Generator[Any, Any, CombineAnswer]:
    """Every file into the run's store: one combine_store activity, or spread over
    activities above ``combine_spread_files`` files (combine_spread); the same answer."""
    run.begin("combine")
    given = CombineInput(
        manifest_url=plan.manifest_url,
        request=run.request,
        run_id=run.status.run_id,
        **run.fields,
    )
    if plan.file_count > run.policy.combine_spread_files:
        combined = yield from combine_spread(run, plan, given)
    else:
        combined = yield from call(run, "combine_store", given, CombineAnswer)
    store: CombineAnswer = yield from succeeded(run, combined)
    run.status.outputs["store_url"] = store.store_url
    run.status.store = {
        "mode": store.mode,
        "bytes": store.store_bytes,
        "references": store.reference_count,
        "dims": store.dims,
        "peak_memory_bytes": store.peak_memory_bytes,
        "chunks": store.chunks,
    }
    return store


def combine_spread(run: Run, plan: RunPlan, given: CombineInput) -> Step:
    """Combine spread over activities (shared/stages/spread.py): merge_batch activities,
    each merging ``combine_batch_files`` files into a partial in the work area, in waves of
    ``parallel_batches`` (one combine_wave sub-orchestration per wave, named
    ``<run id>:combine:NNNN``, so this history holds one child per wave); then
    join_partials, which orders and checks all files and writes the store through combine
    (so reusing a verified store and the Icechunk append behave as on one activity).
    Answers the join's answer or the first error."""
    context, policy, status = run.context, run.policy, run.status
    ranges = batches(plan.file_count, policy.combine_batch_files)
    rounds = waves(ranges, policy)
    for index, wave in enumerate(rounds):
        status.batch = {"stage": "combine", "current": index + 1, "total": len(rounds)}
        run.show()
        child = context.call_sub_orchestrator(
            "combine_wave",
            CombineWaveInput(
                combine=given, ranges=[list(r) for r in wave], policy=policy.for_batches()
            ).to_dict(),
            batch_instance_id(context.instance_id, "combine", index),
            version=child_version(context),
        )
        try:
            result = yield child
        except Exception as exc:  # a merge ran out of retries
            return retries_exhausted("the combine batches", policy, exc)
        merged = answer(PartialAnswer, result)
        if isinstance(merged, ErrorInfo):
            return merged
    joined = JoinInput.from_dict({**given.to_dict(), "starts": [start for start, _ in ranges]})
    return (yield from call(run, "join_partials", joined, CombineAnswer))


def verify(run: Run, plan: RunPlan, combined: CombineAnswer) -> Step:
    """Compare every file of the manifest with the store, in waves of verify_batch
    sub-orchestrations, folding their tallies as they answer (a fold stays small: the
    steps the files hold merge into one claim when nothing is wrong); then verify_decide
    judges the tally of every file and marks the store verified. Once MAX_REPORTED findings
    are in, no further wave starts: the verdict is already known."""
    run.begin("verify")
    context, policy, status = run.context, run.policy, run.status
    # the claims of this verify, kept in the work area (wire.VerifyInput.claims_key)
    claims_key = f"{plan.run_id}-{context.current_utc_datetime:%Y%m%dT%H%M%S%f}"
    collection = {
        "store_url": combined.store_url,
        "claims_key": claims_key,
        **run.collection(plan),
    }
    ranges = batches(plan.file_count, policy.batch_size)
    tally: VerifyTally | None = None
    done = 0
    for wave in waves(ranges, policy):
        status.batch = {"stage": "verify", "current": done + len(wave), "total": len(ranges)}
        run.show()
        children = [
            context.call_sub_orchestrator(
                "verify_batch",
                VerifyBatchInput(
                    files=VerifyFilesInput(start=start, stop=stop, **collection),
                    policy=policy.for_batches(),
                ).to_dict(),
                batch_instance_id(context.instance_id, "verify", done + position),
                version=child_version(context),
            )
            for position, (start, stop) in enumerate(wave)
        ]
        try:
            answers = yield context.task_all(children)
        except Exception as exc:  # a batch's activity ran out of retries
            yield from fail(run, retries_exhausted("the verify batches", policy, exc))
        done += len(wave)
        for result in answers:
            batch: VerifyTally = yield from succeeded(run, answer(VerifyTally, result))
            tally = batch if tally is None else tally.fold(batch)
        status.estimate_remaining(context.current_utc_datetime)
        run.show()
        if tally is not None and tally.findings >= MAX_REPORTED:
            break
    if tally is None:
        yield from fail(run, ErrorInfo(code="internal_error", message="verify had no files"))
    assert tally is not None
    decided = yield from call(
        run, "verify_decide", DecideInput(tally=tally, **collection), VerifyAnswer
    )
    yield from succeeded(run, decided)


def await_approval(run: Run) -> Generator[Any, Any, bool]:
    """With options.approval, wait for a decision (or the deadline). True when the run may
    publish; a rejected or expired run ends here, publishing nothing (the verified store
    stays for inspection until pruned)."""
    if not run.request.options.get("approval"):
        return True
    context, status = run.context, run.status
    deadline = context.current_utc_datetime + timedelta(seconds=run.policy.approval_timeout_seconds)
    status.approval = {"required": True, "state": "awaiting", "deadline": deadline.isoformat()}
    run.begin(AWAITING_APPROVAL)
    decision = context.wait_for_external_event(APPROVAL_EVENT)
    timer = context.create_timer(deadline)
    winner = yield context.task_any([decision, timer])
    if winner is decision:
        timer.cancel()
        approval = dict(decision.result or {})
    else:
        approval = {"decision": "expire", "by": "timeout", "reason": "no decision in time"}
    outcome = {"approve": "approved", "reject": "rejected"}.get(approval.get("decision") or "")
    status.approval.update(
        state=outcome or "expired",
        by=approval.get("by"),
        reason=approval.get("reason"),
        at=approval.get("at") or context.current_utc_datetime.isoformat(),
    )
    if outcome == "approved":
        return True
    status.end_unpublished(outcome or "expired", context.current_utc_datetime)
    run.note(
        f"run {status.phase}: nothing published",
        stage=AWAITING_APPROVAL,
        decided_by=status.approval.get("by"),
        reason=status.approval.get("reason"),
    )
    return False


def register(run: Run, plan: RunPlan, combined: CombineAnswer) -> Step:
    run.begin("register")
    status = run.status
    registered = yield from call(
        run,
        "register_item",
        RegisterInput(
            manifest_url=plan.manifest_url,
            request=run.request,
            run_id=status.run_id,
            store_url=combined.store_url,
            approval=status.approval or None,
            **run.fields,
        ),
        RegisterAnswer,
    )
    item: RegisterAnswer = yield from succeeded(run, registered)
    status.outputs["item_url"] = item.item_url
    status.outputs["catalog_url"] = item.catalog_url
    for warning in item.warnings:
        status.warnings.append(dict(warning))
        run.note(f"warning: {warning.get('message')}", logging.WARNING, stage="register",
                 code=warning.get("code"))  # fmt: skip
    status.succeed(run.context.current_utc_datetime)
    run.note(
        "run succeeded",
        stage="register",
        run_id=status.run_id,
        file_count=status.files_total,
        reused=status.files_reused,
        stage_seconds={k: v.get("seconds") for k, v in status.stages.items()},
        item_url=status.outputs.get("item_url"),
    )


def prune(run: Run) -> Step:
    """After a publication, the stores of versions beyond the number kept are removed. The
    run has published: a prune that fails is logged (the next run prunes again), never a
    failure of the run."""
    pruned = yield from call(
        run,
        "prune_versions",
        PruneInput(dataset_id=run.request.dataset_id, run_id=run.status.run_id, **run.fields),
        PruneAnswer,
    )
    if isinstance(pruned, ErrorInfo):
        run.note("old versions not pruned", logging.WARNING, stage="register", code=pruned.code,
                 error_message=pruned.message)  # fmt: skip


def record(run: Run) -> Step:
    """The run report (JSON in the work area, Markdown beside the store), then the final
    custom status with their URLs."""
    status = run.status
    recorded = yield from call(
        run,
        "record_run",
        RecordInput(
            dataset_id=run.request.dataset_id,
            run_id=status.run_id,
            status=status.to_dict(),
            drop_variables=run.request.drop_variables,
            **run.fields,
        ),
        RecordAnswer,
    )
    if isinstance(recorded, RecordAnswer):
        status.outputs["run_report"] = recorded.run_report
        if recorded.run_summary:
            status.outputs["run_summary"] = recorded.run_summary
    run.show()


def fail(run: Run, error: ErrorInfo) -> Generator[Any, Any, NoReturn]:
    """The run fails with ``error``: the status says so, one log record names the file and
    the code, the run report is written (once the run has an id), and the orchestration
    ends as Failed."""
    status = run.status
    failed_stage = status.phase
    status.fail(error.to_dict(), run.context.current_utc_datetime)
    run.show()
    first = status.errors[0] if status.errors else {}
    run.note(
        "run failed",
        logging.ERROR,
        stage=failed_stage,
        code=error.code,
        error_message=error.message,
        url=first.get("url") or error.context.get("url"),
        finding=first.get("code"),
    )
    if status.run_id:
        yield from record(run)
    raise PipelineFailed(f"[{error.code}] {error.message}")


def retries_exhausted(what: str, policy: RunPolicy | BatchPolicy, exc: Exception) -> ErrorInfo:
    """The error of a task whose retries ran out: it names what failed and how often."""
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return ErrorInfo(
        code="retries_exhausted",
        message=f"{what} failed {policy.retry_max_attempts} times with transient "
        f"errors (storage or the STAC API unavailable or throttled, or a timeout); the "
        f"last: {detail}",
        remedy="Check the health and throttling of what the last error names: the storage "
        "account (docs/runbooks/stuck-run.md) or the STAC API (docs/stac-api.md); then submit "
        "the run again: finished work is reused.",
        retryable=True,
    )


@bp.orchestration_trigger(context_name="context")
def pipeline_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Validate or generate one batch of files: one activity per few files, all at once."""
    batch = BatchInput.from_dict(context.get_input())
    ranges = batches(batch.stop - batch.start, batch.policy.files_per_activity)
    results = yield context.task_all(
        [
            context.call_activity_with_retry(
                BATCH_ACTIVITY[batch.stage],
                _retry(batch.policy),
                FilesInput(
                    manifest_url=batch.manifest_url,
                    start=batch.start + start,
                    stop=batch.start + stop,
                    concat_dim=batch.concat_dim,
                    dataset=batch.dataset,
                    instance_id=batch.instance_id,
                    refresh=batch.refresh,
                ).to_dict(),
            )
            for start, stop in ranges
        ]
    )
    files = unsuitable = bytes_read = 0
    errors: list[dict[str, str]] = []
    error: ErrorInfo | None = None
    for result in results:
        files_answer = answer(FilesAnswer, result)
        if isinstance(files_answer, ErrorInfo):
            error = error or files_answer
            continue
        files += files_answer.files
        bytes_read += files_answer.bytes_read
        unsuitable += files_answer.unsuitable
        errors.extend(files_answer.errors[: max(batch.errors_wanted - len(errors), 0)])
    summary = BatchSummary(
        stage=batch.stage,
        start=batch.start,
        stop=batch.stop,
        files=files,
        unsuitable=unsuitable,
        bytes_read=bytes_read,
        errors=errors,
        error=error,
    )
    return summary.to_dict()


@bp.orchestration_trigger(context_name="context")
def verify_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Compare one batch of files with the store: one activity per few files, all at once.
    Answers their folded tally, or the first error one of them answered."""
    batch = VerifyBatchInput.from_dict(context.get_input())
    files = batch.files
    ranges = batches(files.stop - files.start, batch.policy.files_per_activity)
    results = yield context.task_all(
        [
            context.call_activity_with_retry(
                "verify_files",
                _retry(batch.policy),
                replace(files, start=files.start + start, stop=files.start + stop).to_dict(),
            )
            for start, stop in ranges
        ]
    )
    tally: VerifyTally | None = None
    for result in results:
        part = answer(VerifyTally, result)
        if isinstance(part, ErrorInfo):
            return failure(part)
        tally = part if tally is None else tally.fold(part)
    assert tally is not None  # a batch has at least one file
    return success(tally)


@bp.orchestration_trigger(context_name="context")
def combine_wave(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """One wave of a spread combine: a merge_batch activity per batch, all at once. Answers
    the wave's partials summed (files, bytes, the largest peak), or the first error."""
    wave = CombineWaveInput.from_dict(context.get_input())
    common = wave.combine.to_dict()
    results = yield context.task_all(
        [
            context.call_activity_with_retry(
                "merge_batch",
                _retry(wave.policy),
                MergeBatchInput.from_dict({**common, "start": start, "stop": stop}).to_dict(),
            )
            for start, stop in wave.ranges
        ]
    )
    parts: list[PartialAnswer] = []
    for result in results:
        part = answer(PartialAnswer, result)
        if isinstance(part, ErrorInfo):
            return failure(part)
        parts.append(part)
    return success(
        PartialAnswer(
            partial_url=parts[0].partial_url,
            files=sum(p.files for p in parts),
            partial_bytes=sum(p.partial_bytes for p in parts),
            seconds=max(p.seconds for p in parts),
            peak_memory_bytes=max(p.peak_memory_bytes for p in parts),
        )
    )
