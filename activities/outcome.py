"""The one place an activity's result or failure becomes its JSON answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from shared.errors import DependencyMissing, PipelineError, describe
from shared.settings import Settings

log = logging.getLogger(__name__)


def outcome(stage: str, run: Callable[[Settings], dict[str, Any]]) -> dict[str, Any]:
    """Run one stage call: {"ok": True, **result}, or {"ok": False, "error": ...} for a
    failure that trying again cannot fix. A retryable failure is raised, so the
    orchestrator's retry options (transient storage errors only) apply to it."""
    started = time.perf_counter()
    try:
        result = run(Settings.from_env())
    except PipelineError as exc:
        if exc.retryable:
            log.warning("%s failed, will be retried: %s", stage, exc, extra={"stage": stage})
            raise
        log.error("%s failed: %s", stage, exc, extra={"stage": stage, "code": exc.code})
        return {"ok": False, "error": describe(exc)}
    except ImportError as exc:  # a broken install: say which module, never retry
        error = DependencyMissing(
            f"The {stage} activity cannot run: the module {exc.name or exc!s} failed to import "
            f"({exc}).",
            module=exc.name,
        )
        log.error("%s", error, extra={"stage": stage, "code": error.code})
        return {"ok": False, "error": error.to_dict()}
    except Exception as exc:  # a bug: never retried, reported with its type and message
        log.exception("%s failed with an unexpected error", stage, extra={"stage": stage})
        return {"ok": False, "error": describe(exc)}
    log.debug(
        "%s done", stage, extra={"stage": stage, "seconds": round(time.perf_counter() - started, 3)}
    )
    return {"ok": True, **result}
