"""The ledger of a dataset's releases: what is published, every version ever published, the
decision on every build, and the pruning of old stores.

    {work}/datasets/{dataset}/current.json         the version the STAC item points at
    {work}/datasets/{dataset}/versions.json        every version ever published, newest last
    {work}/decisions/{dataset}/{run id}.json       the approve/reject decision of one build

A version is one verified, published build: its id is the run id (a digest of the files,
ETags, format and concat dimension), so the same files give the same version.

A store is written under a run-specific name ({stores}/{dataset}/{run id}.json|.parq|.icechunk)
and gets a "verified" marker only after verify passes; the dataset's STAC item switches to
it only after that. So at any time the current item points at a complete, verified store,
and a run that fails at any point leaves the previous version untouched. After a successful
registration, stores beyond PIPELINE_KEEP_VERSIONS (the current one included) are removed,
and so are the leftovers of failed runs. The stores of unpublished versions are kept until
their explicit cleanup (shared.stages.release.cleanup).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import BadRequest, Conflict, NotFound, PipelineError, SourceNotFound
from shared.model.layout import Layout
from shared.model.locations import Location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)


# -- the published pointer ------------------------------------------------------------------
def read_published(dataset_id: str, settings: Settings, storage: Storage) -> dict[str, Any] | None:
    """The dataset's published record, or None before its first publication."""
    location = Layout.from_settings(settings).published(dataset_id)
    try:
        return storage.read_json(location)
    except SourceNotFound:
        return None


def write_published(
    *,
    request: PipelineRequest,
    run_id: str,
    manifest_url: str,
    listing_digest: str,
    file_count: int,
    store_url: str,
    item_url: str,
    settings: Settings,
    storage: Storage,
) -> dict[str, Any]:
    record = {
        "kind": "published",
        "dataset_id": request.dataset_id,
        "run_id": run_id,
        "format": request.format,
        "concat_dim": request.concat_dim,
        "manifest_url": manifest_url,
        "listing_digest": listing_digest,
        "file_count": file_count,
        "store_url": store_url,
        "item_url": item_url,
        "published": datetime.now(UTC).isoformat(),
    }
    storage.write_json(Layout.from_settings(settings).published(request.dataset_id), record)
    return record


# -- versions and decisions -----------------------------------------------------------------
DECISIONS = ("approve", "reject")
MAX_REASON_CHARS = 1000
MAX_NAME_CHARS = 200


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def _versions_location(dataset_id: str, settings: Settings) -> Any:
    return Layout.from_settings(settings).work.join("datasets", dataset_id, "versions.json")


def read_versions(dataset_id: str, settings: Settings, storage: Storage) -> list[dict[str, Any]]:
    try:
        document = storage.read_json(_versions_location(dataset_id, settings))
    except PipelineError as exc:
        if exc.code == "source_not_found":
            return []
        raise
    return list(document.get("versions") or [])


def published_versions(dataset_id: str, settings: Settings, storage: Storage) -> list[str]:
    """The versions that are published, in publication order (the STAC version links')."""
    return [
        v["version"]
        for v in read_versions(dataset_id, settings, storage)
        if v["state"] == "published"
    ]


def write_versions(
    dataset_id: str, versions: list[dict[str, Any]], settings: Settings, storage: Storage
) -> None:
    storage.write_json(
        _versions_location(dataset_id, settings),
        {"kind": "dataset-versions", "dataset_id": dataset_id, "versions": versions},
    )


def record_version(
    *,
    request: PipelineRequest,
    published: dict[str, Any],
    properties: dict[str, Any],
    settings: Settings,
    storage: Storage,
) -> dict[str, Any]:
    """Add (or refresh) the version a registration just published."""
    versions = read_versions(request.dataset_id, settings, storage)
    version = {
        "version": published["run_id"],
        "state": "published",
        "built": properties.get("created"),
        "published": published["published"],
        "file_count": published["file_count"],
        "source_etag_digest": properties.get("source_etag_digest"),
        "store_url": published["store_url"],
        "item_url": published["item_url"],
        "manifest_url": published["manifest_url"],
        "format": request.format,
        "concat_dim": request.concat_dim,
        "request": request.to_dict(),
        "approval": properties.get("approval"),
        "unpublished": None,
    }
    versions = [v for v in versions if v["version"] != version["version"]] + [version]
    write_versions(request.dataset_id, versions, settings, storage)
    return version


def dataset_view(dataset_id: str, settings: Settings, storage: Storage) -> dict[str, Any]:
    """What GET /api/datasets/{dataset_id} answers: every version, newest first, and which
    one is current. NotFound when the dataset was never published."""
    versions = read_versions(dataset_id, settings, storage)
    if not versions:
        raise NotFound(
            f"Dataset {dataset_id!r} has no published version.",
            remedy="Check the dataset id; a dataset appears here once a run has published it.",
        )
    current = read_published(dataset_id, settings, storage)
    current_id = current.get("run_id") if current else None
    shown = [
        {
            **{k: v for k, v in version.items() if k != "request"},
            "current": version["version"] == current_id,
        }
        for version in reversed(versions)
    ]
    return {"dataset_id": dataset_id, "current": current_id, "versions": shown}


def check_person(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string.")
    text = value.strip()
    if len(text) > MAX_NAME_CHARS:
        raise BadRequest(f"{what} is longer than {MAX_NAME_CHARS} characters.")
    return text


def check_reason(value: Any, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest("Field 'reason' must be a non-empty string: say why.")
    if len(value) > MAX_REASON_CHARS:
        raise BadRequest(f"Field 'reason' is longer than {MAX_REASON_CHARS} characters.")
    return value.strip()


def _decision_location(dataset_id: str, run_id: str, settings: Settings) -> Any:
    return Layout.from_settings(settings).work.join("decisions", dataset_id, f"{run_id}.json")


def read_decision(
    dataset_id: str, run_id: str, settings: Settings, storage: Storage
) -> dict[str, Any] | None:
    """The decision recorded for a build, or None."""
    try:
        return storage.read_json(_decision_location(dataset_id, run_id, settings))
    except PipelineError as exc:
        if exc.code == "source_not_found":
            return None
        raise


def already_decided(dataset_id: str, run_id: str, earlier: dict[str, Any]) -> Conflict:
    return Conflict(
        f"The build {run_id} of {dataset_id!r} was already decided: {earlier['decision']} "
        f"by {earlier['by']} at {earlier['at']}.",
        remedy="A decision cannot be changed; submit the run again to build anew.",
    )


def record_decision(
    *,
    dataset_id: str,
    run_id: str,
    decision: str,
    by: str,
    reason: str,
    settings: Settings,
    storage: Storage,
) -> dict[str, Any]:
    """Record the one decision a build gets; Conflict when it was decided already (the
    first of two concurrent decisions wins, by a create-only write)."""
    if decision not in DECISIONS:
        raise BadRequest(f"The decision must be one of {', '.join(DECISIONS)}.")
    record = {"decision": decision, "by": by, "reason": reason, "at": now_text(), "run_id": run_id}
    location = _decision_location(dataset_id, run_id, settings)
    if not storage.create_json(location, record):
        raise already_decided(dataset_id, run_id, storage.read_json(location))
    return record


# -- pruning old stores ---------------------------------------------------------------------
MARKER_SUFFIX = ".verified.json"


def _run_of(relative: str) -> str:
    return relative.split("/", 1)[0].split(".", 1)[0]


def prune_versions(
    dataset_id: str, current_run: str, settings: Settings, storage: Storage
) -> list[str]:
    """Remove every run's store except the current one and the newest other verified ones,
    up to settings.keep_versions in all, and the dataset's combine partials. Returns the run
    ids whose stores were removed."""
    folder = Layout.from_settings(settings).stores.join(dataset_id)
    objects: dict[str, list[ObjectInfo]] = defaultdict(list)
    verified: dict[str, str] = {}
    for info in storage.list(folder):
        relative = info.url[len(folder.url) + 1 :]
        run = _run_of(relative)
        objects[run].append(info)
        if relative.endswith(MARKER_SUFFIX) and "/" not in relative:
            verified[run] = info.last_modified
    newest = sorted(
        (r for r in verified if r != current_run), key=lambda r: verified[r], reverse=True
    )
    keep = {current_run, *newest[: max(settings.keep_versions - 1, 0)]}
    # An unpublished version's store stays for inspection until its explicit cleanup.
    keep |= {
        v["version"]
        for v in read_versions(dataset_id, settings, storage)
        if v["state"] == "unpublished"
    }
    # A spread combine's partials are read once, by its join: once a version is published
    # they are never needed again (nor those a failed run left behind: one run at a time).
    partials = Layout.from_settings(settings).partials(dataset_id)
    if storage.count_below(partials, limit=1):
        storage.delete_prefix(partials)
    removed = []
    for run, infos in sorted(objects.items()):
        if run in keep:
            continue
        storage.delete([_location(folder, info) for info in infos])
        removed.append(run)
    if removed:
        emit(
            log,
            "old versions removed",
            stage="register",
            dataset=dataset_id,
            removed_runs=removed,
            kept_runs=sorted(keep),
        )
    return removed


def _location(folder: Location, info: ObjectInfo) -> Location:
    return folder.join(info.url[len(folder.url) + 1 :])


def remove_run_store(dataset_id: str, run_id: str, settings: Settings, storage: Storage) -> int:
    """Delete every object of one run's store (and its markers and run summary); returns
    how many objects were deleted."""
    folder = Layout.from_settings(settings).stores.join(dataset_id)
    doomed = [
        _location(folder, info)
        for info in storage.list(folder)
        if _run_of(info.url[len(folder.url) + 1 :]) == run_id
    ]
    storage.delete(doomed)
    return len(doomed)
