"""A dataset's release operations: unpublish a version (the STAC item goes back to the
newest earlier version that is still published and whose sources are unchanged, or is
removed when there is none, and who and why are recorded; the source files are never
touched) and clean up an unpublished version's store. Records live in the ledger
(shared.catalog.ledger)."""

from __future__ import annotations

from typing import Any

from shared.catalog.ledger import (
    now_text,
    read_published,
    read_versions,
    remove_run_store,
    write_versions,
)
from shared.catalog.stac.catalog import remove_item
from shared.io.storage import Storage
from shared.model.errors import Conflict, NotFound, SourceChanged
from shared.model.layout import Layout
from shared.model.request import PipelineRequest
from shared.model.settings import Settings


def unpublish(
    *, dataset_id: str, version: str, by: str, reason: str, settings: Settings, storage: Storage
) -> dict[str, Any]:
    """Take ``version`` out of publication. When it is the current one, the item goes back
    to the newest earlier published version whose sources are unchanged (re-registered from
    its kept store), or is removed from the catalog when there is none."""

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
    found["unpublished"] = {"by": by, "reason": reason, "at": now_text()}
    current = read_published(dataset_id, settings, storage)
    now_current: str | None = current.get("run_id") if current else None
    skipped: list[dict[str, str]] = []
    if now_current == version:
        # Loaded here, not with the module: register opens the store with xarray, and the
        # app (which imports this module for its release API) must load without those.
        from shared.stages.register import register

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
    write_versions(dataset_id, versions, settings, storage)
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
