"""Activities of the release operations (orchestrators/release.py) and of pruning after a
publication: each decodes its input, makes one call into shared.stages.release, answers.

The stage module is imported inside each activity, as in activities/stages.py: register
(which restoring an earlier version runs) needs the heavy libraries, and the app must load
without them.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.outcome import outcome
from activities.stages import Payload
from shared.model.settings import Settings
from shared.model.wire import (
    CleanupAnswer,
    FinishInput,
    PruneAnswer,
    PruneInput,
    UnpublishAnswer,
    VersionInput,
    Wire,
)

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def prune_versions(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> PruneAnswer:
        from shared.io.storage import Storage
        from shared.stages.release import prune

        given = PruneInput.from_dict(payload)
        removed = prune(given.dataset_id, given.run_id, settings, Storage(settings))
        return PruneAnswer(removed=removed)

    return outcome("prune", run, payload)


@bp.activity_trigger(input_name="payload")
def check_unpublish(payload: Payload) -> dict[str, Any]:
    return _version_step("check_unpublish", payload)


@bp.activity_trigger(input_name="payload")
def restore_version(payload: Payload) -> dict[str, Any]:
    return _version_step("restore_version", payload)


@bp.activity_trigger(input_name="payload")
def withdraw_item(payload: Payload) -> dict[str, Any]:
    return _version_step("withdraw_item", payload)


def _version_step(name: str, payload: Payload) -> dict[str, Any]:
    """One step of an unpublish on one version: shared.stages.release.<name>."""

    def run(settings: Settings) -> Wire:
        import importlib

        from shared.io.storage import Storage

        step = getattr(importlib.import_module("shared.stages.release"), name)
        given = VersionInput.from_dict(payload)
        answer: Wire = step(given.dataset_id, given.version, settings, Storage(settings))
        return answer

    return outcome("unpublish", run, payload)


@bp.activity_trigger(input_name="payload")
def finish_unpublish(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> UnpublishAnswer:
        from shared.io.storage import Storage
        from shared.stages.release import finish_unpublish as finish

        given = FinishInput.from_dict(payload)
        return finish(
            dataset_id=given.dataset_id,
            version=given.version,
            by=given.by,
            reason=given.reason,
            current=given.current,
            skipped=given.skipped,
            settings=settings,
            storage=Storage(settings),
        )

    return outcome("unpublish", run, payload)


@bp.activity_trigger(input_name="payload")
def cleanup_store(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> CleanupAnswer:
        from shared.io.storage import Storage
        from shared.stages.release import cleanup

        given = VersionInput.from_dict(payload)
        return cleanup(
            dataset_id=given.dataset_id,
            version=given.version,
            settings=settings,
            storage=Storage(settings),
        )

    return outcome("cleanup", run, payload)
