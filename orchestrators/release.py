"""The release operations as an orchestration: unpublish a version, or clean up its store.

One instance per dataset (``release-<dataset>``, shared.model.plan): the HTTP API starts it,
answers with its result when it ends within a few seconds and with its status URL when not.
Each step is an activity (activities/releases.py) with the transient-error retries, so a
slow re-registration or a storage outage does not hold an HTTP request open, and a step
stopped half-way is repeated, not half-done. It only decides: no I/O, no clock.

    unpublish   check_unpublish -> restore_version (earlier versions, newest first, until
                one can be restored) or withdraw_item -> finish_unpublish (the record)
    cleanup     cleanup_store

Its output is the operation's answer: {"ok": true, ...result} or {"ok": false, "error"}.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.model.telemetry import emit
from shared.model.wire import (
    CleanupAnswer,
    Done,
    ErrorInfo,
    FinishInput,
    ReleaseInput,
    RestoreAnswer,
    UnpublishAnswer,
    UnpublishPlan,
    VersionInput,
    Wire,
    answer,
    failure,
    success,
)

log = logging.getLogger(__name__)
bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context")
def release_version(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    given = ReleaseInput.from_dict(context.get_input())
    release = _Release(context, given)
    if given.operation == "cleanup":
        result: Wire | ErrorInfo = yield from release.call(
            "cleanup_store", release.version(), CleanupAnswer
        )
    else:
        result = yield from unpublish(release)
    return release.end(result)


def unpublish(release: _Release) -> Generator[Any, Any, Wire | ErrorInfo]:
    given = release.given
    plan = yield from release.call("check_unpublish", release.version(), UnpublishPlan)
    if isinstance(plan, ErrorInfo):
        return plan
    assert isinstance(plan, UnpublishPlan)
    current, skipped = plan.published, list(plan.skipped)
    if plan.current:
        current = None
        for candidate in plan.candidates:
            restored = yield from release.call(
                "restore_version", release.version(candidate), RestoreAnswer
            )
            if isinstance(restored, ErrorInfo):
                return restored
            assert isinstance(restored, RestoreAnswer)
            if restored.restored:
                current = candidate
                break
            skipped.append({"version": candidate, "why": restored.why})
        if current is None:
            withdrawn = yield from release.call("withdraw_item", release.version(), Done)
            if isinstance(withdrawn, ErrorInfo):
                return withdrawn
    finished: Wire | ErrorInfo = yield from release.call(
        "finish_unpublish",
        FinishInput(
            dataset_id=given.dataset_id,
            version=given.version,
            by=given.by,
            reason=given.reason,
            current=current,
            skipped=skipped,
            **release.fields,
        ),
        UnpublishAnswer,
    )
    return finished


class _Release:
    """One release operation: its input, its steps' retries, its custom status."""

    def __init__(self, context: df.DurableOrchestrationContext, given: ReleaseInput) -> None:
        self.context, self.given = context, given
        self.retry = df.RetryOptions(given.retry_first_interval_ms, given.retry_max_attempts)
        self.fields = {"dataset": given.dataset_id, "instance_id": context.instance_id}
        self.show("running")

    def version(self, version: str | None = None) -> VersionInput:
        return VersionInput(
            dataset_id=self.given.dataset_id, version=version or self.given.version, **self.fields
        )

    def show(self, phase: str, step: str = "", error: ErrorInfo | None = None) -> None:
        given = self.given
        self.context.set_custom_status(
            {
                "kind": "release",
                "operation": given.operation,
                "dataset_id": given.dataset_id,
                "version": given.version,
                "phase": phase,
                "step": step,
                "error": error.to_dict() if error else None,
            }
        )

    def call(
        self, name: str, payload: Wire, kind: type[Wire]
    ) -> Generator[Any, Any, Wire | ErrorInfo]:
        self.show("running", name)
        try:
            result = yield self.context.call_activity_with_retry(
                name, self.retry, payload.to_dict()
            )
        except Exception as exc:  # the retries ran out
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "failed"
            return ErrorInfo(
                code="retries_exhausted",
                message=f"{name} failed {self.given.retry_max_attempts} times with transient "
                f"errors; the last: {detail}",
                remedy="Check the health of what the last error names (the storage account, "
                "or the STAC API: docs/stac-api.md), then ask again: a step that was done is "
                "not done twice.",
                retryable=True,
            )
        return answer(kind, result)

    def end(self, result: Wire | ErrorInfo) -> dict[str, Any]:
        given = self.given
        if isinstance(result, ErrorInfo):
            self.show("failed", error=result)
            if not self.context.is_replaying:
                emit(
                    log,
                    f"{given.operation} failed",
                    logging.WARNING,
                    stage=given.operation,
                    code=result.code,
                    version=given.version,
                    **self.fields,
                )
            return failure(result)
        self.show("succeeded")
        if not self.context.is_replaying:
            emit(log, f"{given.operation} done", stage=given.operation, version=given.version,
                 **self.fields)  # fmt: skip
        return success(result)
