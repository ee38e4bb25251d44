"""Releases: the published versions of a dataset, approval decisions, and unpublishing.

    {work}/datasets/{dataset}/versions.json        every version ever published, newest last
    {work}/datasets/{dataset}/current.json         the version the STAC item points at
    {work}/decisions/{dataset}/{run id}.json       the approve/reject decision of one build

A version is one verified, published build: its id is the run id (a digest of the files,
ETags, format and concat dimension), so the same files give the same version. Unpublishing
takes a version out of the catalog (the STAC item goes back to the newest earlier version
that is still published and whose sources are unchanged, or is removed when there is none)
and records who and why; it never touches the source files, and the store's artifacts stay
until the explicit cleanup (PIPELINE_KEEP_VERSIONS pruning).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import BadRequest, Conflict, NotFound, PipelineError, SourceChanged
from shared.increment import read_published
from shared.layout import Layout
from shared.request import PipelineRequest
from shared.settings import Settings
from shared.storage import Storage

DECISIONS = ("approve", "reject")
MAX_REASON_CHARS = 1000
MAX_NAME_CHARS = 200


def _now() -> str:
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


def _write_versions(
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
    _write_versions(request.dataset_id, versions, settings, storage)
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
    record = {"decision": decision, "by": by, "reason": reason, "at": _now(), "run_id": run_id}
    location = _decision_location(dataset_id, run_id, settings)
    if not storage.create_json(location, record):
        raise already_decided(dataset_id, run_id, storage.read_json(location))
    return record


def unpublish(
    *, dataset_id: str, version: str, by: str, reason: str, settings: Settings, storage: Storage
) -> dict[str, Any]:
    """Take ``version`` out of publication. When it is the current one, the item goes back
    to the newest earlier published version whose sources are unchanged (re-registered from
    its kept store), or is removed from the catalog when there is none."""
    from shared.register import register
    from shared.stac import remove_item

    versions = read_versions(dataset_id, settings, storage)
    found = next((v for v in versions if v["version"] == version), None)
    if found is None:
        raise NotFound(
            f"Dataset {dataset_id!r} has no version {version!r}.",
            remedy=f"GET /api/datasets/{dataset_id} lists its versions.",
        )
    if found["state"] == "unpublished":
        done = found["unpublished"]
        raise Conflict(
            f"Version {version} of {dataset_id!r} was already unpublished by {done['by']} at "
            f"{done['at']}."
        )
    found["state"] = "unpublished"
    found["unpublished"] = {"by": by, "reason": reason, "at": _now()}
    current = read_published(dataset_id, settings, storage)
    now_current: str | None = current.get("run_id") if current else None
    skipped: list[dict[str, str]] = []
    if now_current == version:
        now_current = None
        request = PipelineRequest.from_dict(found["request"])
        for earlier in reversed(versions):
            if earlier["state"] != "published" or earlier["version"] == version:
                continue
            if not storage.exists(
                Layout.from_settings(settings).verified_marker(dataset_id, earlier["version"])
            ):
                skipped.append({"version": earlier["version"], "why": "its store was removed"})
                continue
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
                skipped.append({"version": earlier["version"], "why": exc.message})
                continue
            now_current = earlier["version"]
            break
        if now_current is None:
            remove_item(
                dataset_id,
                collection_id=request.collection_id,
                settings=settings,
                storage=storage,
            )
            storage.delete([Layout.from_settings(settings).published(dataset_id)])
    _write_versions(dataset_id, versions, settings, storage)
    return {
        "dataset_id": dataset_id,
        "version": version,
        "state": "unpublished",
        "unpublished": found["unpublished"],
        "current": now_current,
        "skipped": skipped,
    }


def cleanup(
    *, dataset_id: str, version: str, settings: Settings, storage: Storage
) -> dict[str, Any]:
    """The explicit last step after unpublish: delete the version's store. Refused for a
    version that is still published (unpublish it first). Sources are never touched."""
    from shared.versions import remove_run_store

    found = next(
        (v for v in read_versions(dataset_id, settings, storage) if v["version"] == version), None
    )
    if found is None:
        raise NotFound(f"Dataset {dataset_id!r} has no version {version!r}.")
    if found["state"] != "unpublished":
        raise Conflict(
            f"Version {version} of {dataset_id!r} is published; its store is in use.",
            remedy=f"Unpublish it first: POST /api/datasets/{dataset_id}/versions/{version}/"
            "unpublish.",
        )
    removed = remove_run_store(dataset_id, version, settings, storage)
    return {"dataset_id": dataset_id, "version": version, "objects_removed": removed}
