"""The one place an activity's result or failure becomes its JSON answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.model.errors import DependencyMissing, PipelineError, describe
from shared.model.settings import Settings
from shared.model.telemetry import emit, run_context
from shared.model.wire import Wire, failure, success

# What a stage call returns: a typed answer (shared.model.wire) or a stage result's to_dict().
Result = Wire | Mapping[str, Any]

log = logging.getLogger(__name__)


def outcome(
    stage: str, run: Callable[[Settings], Result], payload: Mapping[str, Any]
) -> dict[str, Any]:
    """Run one stage call: {"ok": True, **result}, or {"ok": False, "error": ...} for a
    failure that trying again cannot fix. A retryable failure is raised, so the
    orchestrator's retry options (transient storage errors only) apply to it. Every record
    logged meanwhile carries the run's dataset, instance id and stage (shared.model.telemetry)."""
    with run_context(stage=stage, **run_of(payload)):
        return _outcome(stage, run)


def run_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset and orchestration instance an activity works for, from its input."""
    given = payload.get("request")
    request: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    return {
        "dataset": payload.get("dataset") or payload.get("dataset_id") or request.get("dataset_id"),
        "instance_id": payload.get("instance_id"),
    }


def _outcome(stage: str, run: Callable[[Settings], Result]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = run(Settings.from_env())
    except PipelineError as exc:
        if exc.retryable:
            emit(log, f"{stage} failed, will be retried: {exc}", logging.WARNING, code=exc.code)
            raise
        emit(
            log,
            f"{stage} failed: {exc}",
            logging.ERROR,
            code=exc.code,
            url=exc.context.get("url"),
        )
        return failure(describe(exc))
    except ImportError as exc:  # a broken install: say which module, never retry
        error = DependencyMissing(
            f"The {stage} activity cannot run: the module {exc.name or exc!s} failed to import "
            f"({exc}).",
            module=exc.name,
        )
        emit(log, str(error), logging.ERROR, code=error.code, dependency=exc.name)
        return failure(error.to_dict())
    except Exception as exc:  # a bug: never retried, reported with its type and message
        log.exception("%s failed with an unexpected error", stage)
        emit(log, f"{stage} failed: internal error", logging.ERROR, code="internal_error")
        return failure(describe(exc))
    emit(log, "activity done", logging.DEBUG, seconds=round(time.perf_counter() - started, 3))
    return success(result)
