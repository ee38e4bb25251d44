"""A dataset's release operations, one step per function (the release orchestration,
orchestrators/release.py, calls each as an activity):

    unpublish a version   check_unpublish -> [restore_version of the newest earlier version
                          that can be, or withdraw_item] -> finish_unpublish
    clean up its store    cleanup (an unpublished version only)
    prune old stores      prune (after a publication; keeps settings.keep_versions)

Unpublishing takes a version out of publication: when it is the current one the STAC item
goes back to the newest earlier version that is still published, whose store is kept and
whose sources are unchanged (re-registered from its kept store), or is removed from the
catalog when there is none; who and why are recorded. The source files are never touched.
Records live in the ledger (shared.catalog.ledger); the ledger's version list is written
last, so an operation stopped half-way leaves the version published and can be repeated.
"""

from __future__ import annotations

from typing import Any

from shared.catalog.ledger import (
    now_text,
    prune_versions,
    read_published,
    read_versions,
    remove_run_store,
    write_versions,
)
from shared.catalog.stac.catalog import remove_item, withdraw_versions
from shared.catalog.stac_api import withdraw_from_api
from shared.io.storage import Storage
from shared.model.errors import Conflict, NotFound, SourceChanged
from shared.model.layout import Layout
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.wire import CleanupAnswer, Done, RestoreAnswer, UnpublishAnswer, UnpublishPlan


def _version(dataset_id: str, version: str, settings: Settings, storage: Storage) -> dict[str, Any]:
    found = next(
        (v for v in read_versions(dataset_id, settings, storage) if v["version"] == version), None
    )
    if found is None:
        raise NotFound(
            f"Dataset {dataset_id!r} has no version {version!r}.",
            remedy=f"GET /api/datasets/{dataset_id} lists its versions.",
        )
    return found


def check_unpublish(
    dataset_id: str, version: str, settings: Settings, storage: Storage
) -> UnpublishPlan:
    """Whether ``version`` can be unpublished (NotFound, Conflict when it was already), and
    what the item falls back to: the earlier published versions whose stores are kept,
    newest first (their sources are checked when one is restored)."""
    found = _version(dataset_id, version, settings, storage)
    if found["state"] == "unpublished":
        done = found["unpublished"]
        raise Conflict(
            f"Version {version} of {dataset_id!r} was already unpublished by {done['by']} at "
            f"{done['at']}."
        )
    current = read_published(dataset_id, settings, storage)
    published = current.get("run_id") if current else None
    layout = Layout.from_settings(settings)
    candidates: list[str] = []
    skipped: list[dict[str, str]] = []
    if published == version:
        for earlier in reversed(read_versions(dataset_id, settings, storage)):
            if earlier["state"] != "published" or earlier["version"] == version:
                continue
            if storage.exists(layout.verified_marker(dataset_id, earlier["version"])):
                candidates.append(earlier["version"])
            else:
                skipped.append({"version": earlier["version"], "why": "its store was removed"})
    return UnpublishPlan(
        current=published == version, published=published, candidates=candidates, skipped=skipped
    )


def restore_version(
    dataset_id: str, version: str, settings: Settings, storage: Storage
) -> RestoreAnswer:
    """Make an earlier version current again: its kept store re-registered as the item (not
    recorded as a new version). Not restored when its sources changed since it was built."""
    # Loaded here: register opens the store with xarray, and the app must load without it.
    from shared.stages.register import register

    earlier = _version(dataset_id, version, settings, storage)
    try:
        register(
            earlier["manifest_url"],
            PipelineRequest.from_dict(earlier["request"]),
            earlier["version"],
            earlier["store_url"],
            settings,
            storage,
            record=False,
        )
    except SourceChanged as exc:
        return RestoreAnswer(restored=False, why=exc.message)
    return RestoreAnswer(restored=True)


def withdraw_item(dataset_id: str, version: str, settings: Settings, storage: Storage) -> Done:
    """No earlier version can stand in: the item leaves the catalog, and the dataset has no
    published version."""
    found = _version(dataset_id, version, settings, storage)
    request = PipelineRequest.from_dict(found["request"])
    withdraw_from_api(request.collection_id, dataset_id, settings)  # the API first: repeatable
    remove_item(dataset_id, collection_id=request.collection_id, settings=settings, storage=storage)
    storage.delete([Layout.from_settings(settings).published(dataset_id)])
    return Done()


def finish_unpublish(
    *,
    dataset_id: str,
    version: str,
    by: str,
    reason: str,
    current: str | None,
    skipped: list[dict[str, str]],
    settings: Settings,
    storage: Storage,
) -> UnpublishAnswer:
    """Record the version as unpublished, by whom and why (the last write of the operation);
    the answer says which version is current now and which were passed over."""
    versions = read_versions(dataset_id, settings, storage)
    found = next((v for v in versions if v["version"] == version), None)
    if found is None:
        raise NotFound(f"Dataset {dataset_id!r} has no version {version!r}.")
    if found["state"] != "unpublished":  # a repeated step keeps the first record
        _unlink_versions(dataset_id, found, [version], versions, settings, storage)
        found["state"] = "unpublished"
        found["unpublished"] = {"by": by, "reason": reason, "at": now_text()}
        write_versions(dataset_id, versions, settings, storage)
    return UnpublishAnswer(
        dataset_id=dataset_id,
        version=version,
        state="unpublished",
        unpublished=found["unpublished"],
        current=current,
        skipped=skipped,
    )


def _unlink_versions(
    dataset_id: str,
    found: dict[str, Any],
    drop: list[str],
    versions: list[dict[str, Any]],
    settings: Settings,
    storage: Storage,
) -> None:
    """The catalog's version links stop showing ``drop`` (shared.catalog.stac.versions)."""
    withdraw_versions(
        dataset_id,
        collection_id=PipelineRequest.from_dict(found["request"]).collection_id,
        drop=drop,
        versions=[v["version"] for v in versions if v["state"] == "published"],
        settings=settings,
        storage=storage,
    )


def unpublish(
    *, dataset_id: str, version: str, by: str, reason: str, settings: Settings, storage: Storage
) -> UnpublishAnswer:
    """The whole operation in one process, step by step as the orchestration runs it (for
    the command line's local use and for tests of the steps together)."""
    plan = check_unpublish(dataset_id, version, settings, storage)
    current, skipped = plan.published, list(plan.skipped)
    if plan.current:
        current = None
        for candidate in plan.candidates:
            restored = restore_version(dataset_id, candidate, settings, storage)
            if restored.restored:
                current = candidate
                break
            skipped.append({"version": candidate, "why": restored.why})
        if current is None:
            withdraw_item(dataset_id, version, settings, storage)
    return finish_unpublish(
        dataset_id=dataset_id,
        version=version,
        by=by,
        reason=reason,
        current=current,
        skipped=skipped,
        settings=settings,
        storage=storage,
    )


def check_cleanup(dataset_id: str, version: str, settings: Settings, storage: Storage) -> None:
    """Only an unpublished version's store may be deleted."""
    found = _version(dataset_id, version, settings, storage)
    if found["state"] != "unpublished":
        raise Conflict(
            f"Version {version} of {dataset_id!r} is published; its store is in use.",
            remedy=f"Unpublish it first: POST /api/datasets/{dataset_id}/versions/{version}/"
            "unpublish.",
        )


def cleanup(
    *, dataset_id: str, version: str, settings: Settings, storage: Storage
) -> CleanupAnswer:
    """The explicit last step after unpublish: delete the version's store. Refused for a
    version that is still published (unpublish it first). Sources are never touched."""
    check_cleanup(dataset_id, version, settings, storage)
    removed = remove_run_store(dataset_id, version, settings, storage)
    return CleanupAnswer(dataset_id=dataset_id, version=version, objects_removed=removed)


def prune(dataset_id: str, current_run: str, settings: Settings, storage: Storage) -> list[str]:
    """After a publication: remove the stores of versions beyond settings.keep_versions
    (never the current one, never an unpublished one awaiting its cleanup); their version
    snapshots leave the catalog with them."""
    removed = prune_versions(dataset_id, current_run, settings, storage)
    versions = read_versions(dataset_id, settings, storage)
    current = next((v for v in versions if v["version"] == current_run), None)
    if removed and current is not None:
        kept = [v for v in versions if v["version"] not in removed]
        _unlink_versions(dataset_id, current, removed, kept, settings, storage)
    return removed
