"""Published versions of a dataset's store: keep the newest few verified ones, remove the rest.

A store is written under a run-specific name ({stores}/{dataset}/{run id}.json|.parq|.icechunk)
and gets a "verified" marker only after verify passes; the dataset's STAC item switches to
it only after that. So at any time the current item points at a complete, verified store,
and a run that fails at any point leaves the previous version untouched. After a successful
registration, stores beyond PIPELINE_KEEP_VERSIONS (the current one included) are removed,
and so are the leftovers of failed runs. The stores of unpublished versions are kept until
their explicit cleanup (shared.releases.cleanup).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from shared.layout import Layout
from shared.locations import Location
from shared.releases import read_versions
from shared.settings import Settings
from shared.storage import ObjectInfo, Storage
from shared.telemetry import emit

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".verified.json"


def _run_of(relative: str) -> str:
    return relative.split("/", 1)[0].split(".", 1)[0]


def prune_versions(
    dataset_id: str, current_run: str, settings: Settings, storage: Storage
) -> list[str]:
    """Remove every run's store except the current one and the newest other verified ones,
    up to settings.keep_versions in all. Returns the run ids removed."""
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
