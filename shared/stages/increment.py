"""Incremental runs: what changed since the dataset's published version, and which files a
run must validate and generate.

The published record ({work}/datasets/{dataset}/current.json, written by register) names the
manifest of the version the dataset's STAC item points at. A file is reused when its URL and
ETag are in that manifest: its report and references (keyed by URL and ETag, shared.model.layout)
were written and checked for that version. A changed file has a new ETag, hence a new key:
its old report and references are never reused. The gate and combine always work on every
file of the new manifest, so the new files are checked against the existing ones and the
store is rebuilt from all of them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from shared.catalog.ledger import read_published
from shared.io.storage import Storage
from shared.model.errors import PipelineError
from shared.model.layout import Layout, rebuild_salt, run_id_for
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.model.wire import RunPlan
from shared.stages.scan import ScanManifest, list_source, load_manifest, scan

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5


def _published_files(
    request: PipelineRequest, settings: Settings, storage: Storage
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The published record and its files (url -> etag), when it can serve as the base of
    an incremental run of ``request``."""
    record = read_published(request.dataset_id, settings, storage)
    if record is None or record.get("concat_dim") != request.concat_dim:
        return record, {}
    try:
        manifest = load_manifest(record["manifest_url"], settings, storage)
    except PipelineError as exc:
        if exc.retryable:
            raise
        log.warning(
            "published manifest unreadable: every file is processed again",
            extra={"stage": "scan", "dataset": request.dataset_id, "error_message": exc.message},
        )
        return record, {}
    return record, {f.url: f.etag for f in manifest.files}


@dataclass(frozen=True)
class Increment:
    """The files of a run that must be validated and generated (the others are reused)."""

    work_manifest_url: str
    work_count: int
    reused: int
    base_run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_increment(
    manifest: ScanManifest,
    manifest_url: str,
    request: PipelineRequest,
    settings: Settings,
    storage: Storage,
) -> Increment:
    """Write the manifest of the files to process (new or changed since the published
    version) and say how many were reused. ``options.full`` processes every file."""
    if request.options.get("full"):
        return Increment(manifest_url, len(manifest.files), 0, None)
    record, published = _published_files(request, settings, storage)
    todo = tuple(f for f in manifest.files if published.get(f.url) != f.etag)
    base = record.get("run_id") if record and published else None
    if len(todo) == len(manifest.files):
        return Increment(manifest_url, len(todo), 0, base)
    work = manifest.subset(todo)
    location = Layout.from_settings(settings).manifest(manifest.dataset_id, work.digest)
    storage.write_json(location, {**work.to_dict(), "part_of": manifest_url})
    return Increment(location.url, len(todo), len(manifest.files) - len(todo), base)


def plan_run(request: PipelineRequest, settings: Settings, storage: Storage) -> RunPlan:
    """Everything a run starts from, in one call: scan the source (the manifest), plan the
    increment (the files to process anew) and name the run (the same files, format and
    concat dimension give the same run id; a full run adds the library versions)."""
    scanned = scan(request, settings, storage)
    manifest = load_manifest(scanned.manifest_url, settings, storage)
    increment = plan_increment(manifest, scanned.manifest_url, request, settings, storage)
    rebuild = rebuild_salt() if request.options.get("full") else ""
    return RunPlan(
        manifest_url=scanned.manifest_url,
        file_count=scanned.file_count,
        total_bytes=scanned.total_bytes,
        work_manifest_url=increment.work_manifest_url,
        work_count=increment.work_count,
        reused=increment.reused,
        base_run_id=increment.base_run_id,
        run_id=run_id_for(manifest.digest, request.format, request.concat_dim, rebuild),
    )


@dataclass(frozen=True)
class ChangeCheck:
    """What a listing of the source finds against the published version."""

    file_count: int
    new: int
    modified: int
    removed: int
    examples: list[str]
    listing_digest: str
    published_run: str | None
    rebuild: bool = False  # the format or concat dimension differs from the published one

    @property
    def changed(self) -> bool:
        return bool(self.new or self.modified or self.removed or self.rebuild)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def check_changes(request: PipelineRequest, settings: Settings, storage: Storage) -> ChangeCheck:
    """List the source (no manifest written) and compare it with the published version."""
    source = parse_location(request.source, settings, what="source")
    files = list_source(source, request.patterns, storage, settings.max_files)
    listing = ScanManifest(
        request.dataset_id, source.url, request.patterns, tuple(files), request.group
    )
    record = read_published(request.dataset_id, settings, storage)
    published: dict[str, str] = {}
    if record is not None:
        published = {
            f.url: f.etag for f in load_manifest(record["manifest_url"], settings, storage).files
        }
    new = [f.url for f in files if f.url not in published]
    modified = [f.url for f in files if f.url in published and published[f.url] != f.etag]
    current = {f.url for f in files}
    removed = [url for url in published if url not in current]
    # The registry may have changed how the dataset is built: that is a change too.
    rebuilt = record is not None and (record.get("format"), record.get("concat_dim")) != (
        request.format,
        request.concat_dim,
    )
    check = ChangeCheck(
        file_count=len(files),
        new=len(new),
        modified=len(modified),
        removed=len(removed),
        examples=(new + modified + removed)[:MAX_EXAMPLES],
        listing_digest=listing.digest,
        published_run=record.get("run_id") if record else None,
        rebuild=rebuilt,
    )
    emit(
        log,
        "change check",
        stage="watch",
        dataset=request.dataset_id,
        file_count=check.file_count,
        new=check.new,
        modified=check.modified,
        removed=check.removed,
    )
    return check
