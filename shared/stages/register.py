"""Register: describe the verified store as a STAC item and put it in the catalog."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pystac
import xarray as xr

from shared.catalog.ledger import published_versions, record_version, write_published
from shared.catalog.stac.catalog import (
    RegisterResult,
    load_collection_template,
    register_item,
)
from shared.catalog.stac.collection import CollectionFields, collection_fields
from shared.catalog.stac.item import build_item
from shared.catalog.stac_api import published_in_api
from shared.io.storage import Storage, storage_faults
from shared.io.stores import open_store, virtual_container_prefix
from shared.model.errors import SourceNotFound
from shared.model.layout import Layout, digest, writer_versions
from shared.model.locations import Location, parse_location, public_store_url
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.combine import source_root
from shared.stages.preview import add_preview
from shared.stages.runreport import summary_location
from shared.stages.scan import ScanManifest, check_unchanged, load_manifest
from shared.stages.validate.batch import load_report

log = logging.getLogger(__name__)


# The gate's report as the item links it: a copy beside the store (the work area's own is
# the gate's record), so every link of the item is under the store root's URL, served or not.
GATE_COPIES = (
    ("md", "text/markdown", "Gate report on the source files"),
    ("json", "application/json", "Gate report (JSON)"),
)


def gate_report_copies(
    dataset_id: str, run_id: str, manifest_digest: str, settings: Settings, storage: Storage
) -> list[tuple[Location, str, str]]:
    """Copy the gate's report on the run's files (Markdown and JSON) beside the store as
    {stores}/{dataset}/{run id}.gate.{md,json} (pruned with the run's store); returns each
    copy with its media type and title. A report no longer in the work area (an earlier
    version registered again after its reports were pruned) is left out, and logged."""
    layout = Layout.from_settings(settings)
    copies = []
    for suffix, media_type, title in GATE_COPIES:
        original = layout.gate_report(dataset_id, manifest_digest, suffix)
        try:
            data = storage.read(original)
        except SourceNotFound:
            log.warning("no gate report %s: the item does not link it", original.url)
            continue
        copy = layout.stores.join(dataset_id, f"{run_id}.gate.{suffix}")
        storage.write(copy, data, media_type)
        copies.append((copy, media_type, title))
    return copies


def add_run_links(
    item: pystac.Item,
    dataset_id: str,
    run_id: str,
    manifest_digest: str,
    settings: Settings,
    storage: Storage,
) -> None:
    """Where the item came from, for a person: the run's summary (every file, its verdict
    and timings) and the gate's report on the files, both beside the store, under the URL
    the store has (one scheme for every link of the item: docs/stac.md)."""
    summary = summary_location(dataset_id, run_id, settings)
    links = [(summary, "text/markdown", "Run summary: every file")]
    links += gate_report_copies(dataset_id, run_id, manifest_digest, settings, storage)
    for location, media_type, title in links:
        href = public_store_url(location, settings)
        item.add_link(pystac.Link("describedby", href, media_type=media_type, title=title))


def file_dtypes(
    manifest: ScanManifest, dataset: xr.Dataset, settings: Settings, storage: Storage
) -> dict[str, str]:
    """The variables of the store that the source files decode to another dtype (packed
    with float32 scale_factor/add_offset: float32 from the files, float64 from the store),
    with the files' dtype, as the first file's validation report says (the gate made the
    packing values of every file agree). Empty when that report is gone (an old version
    registered again after its reports were pruned): the item then says nothing of it."""
    if not manifest.files:
        return {}
    first = manifest.files[0]
    try:
        report = load_report(first.url, first.etag, settings, storage, group=manifest.group)
    except (SourceNotFound, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "no validation report of %s (%s): the item says no decoded dtypes", first.url, exc
        )
        return {}
    return {
        name: in_files
        for name, (in_files, in_store) in report.decoded_dtypes().items()
        if name in dataset.variables and str(dataset.variables[name].dtype) == in_store
    }


def register(
    manifest_url: str,
    request: PipelineRequest,
    run_id: str,
    store_url: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    approval: dict[str, Any] | None = None,
    record: bool = True,
) -> RegisterResult:
    """Describe the verified store as the dataset's STAC item, make it the current version,
    and (``record``) add it to the dataset's versions (shared.catalog.ledger) with its approval;
    a rollback by unpublish re-registers an earlier version with ``record`` off."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    manifest = load_manifest(manifest_url, settings, storage)
    # The sources must still be the bytes the store points into (kerchunk has no checksum).
    check_unchanged(manifest, settings, storage, "the store was built")
    store = parse_location(store_url, settings, what="store")
    now = datetime.now(UTC).isoformat()
    source = source_root(manifest, settings)
    # a change to any source file (ETag) changes this digest
    etag_digest = digest(*(f"{f.url} {f.etag}" for f in manifest.files))
    template = load_collection_template(request.collection_id, settings, storage)
    with (
        storage_faults(f"opening the store {store_url}"),
        open_store(store, request.format, source, settings) as dataset,
    ):
        item = build_item(
            dataset=dataset,
            dataset_id=request.dataset_id,
            collection_id=request.collection_id,
            store=store,
            store_format=request.format,
            source_kind="local" if source.is_local else "blob",
            settings=settings,
            concat_dim=request.concat_dim,
            source=source,
            virtual_chunk_prefix=(
                virtual_container_prefix(source) if request.format == "icechunk" else None
            ),
            file_dtypes=file_dtypes(manifest, dataset, settings, storage),
            properties={
                "run_id": run_id,
                "source": manifest.source,
                "source_file_count": len(manifest.files),
                "source_bytes": manifest.total_bytes,
                "source_etag_digest": etag_digest,
                "store_format": request.format,
                "concat_dim": request.concat_dim,
                "libraries": writer_versions(request.format),
                "created": now,
                "updated": now,
                "version": run_id,
            },
        )
        fields = collection_fields(
            template,
            dataset.attrs,
            settings.stac_license,
            {str(name): dataset[name].attrs for name in dataset.data_vars},
        )
        add_preview(
            item,
            dataset,
            run_id=run_id,
            concat_dim=request.concat_dim,
            settings=settings,
            storage=storage,
        )
    add_run_links(item, request.dataset_id, run_id, manifest.digest, settings, storage)
    warnings = license_warnings(item, fields)
    # The static catalog, then the STAC API when one is set (put back as it was if the API
    # fails: shared.catalog.stac_api), then the records that make the version current.
    with published_in_api(request.collection_id, item.id, settings, storage):
        result = register_item(
            item,
            collection_id=request.collection_id,
            settings=settings,
            storage=storage,
            fields=fields,
            versions=published_versions(request.dataset_id, settings, storage),
        )
    published = write_published(
        request=request,
        run_id=run_id,
        manifest_url=manifest_url,
        listing_digest=manifest.digest,
        file_count=len(manifest.files),
        store_url=store_url,
        item_url=result.item_url,
        settings=settings,
        storage=storage,
    )
    if record:
        record_version(
            request=request,
            published=published,
            properties={
                "created": now,
                "source_etag_digest": etag_digest,
                "approval": approval,
            },
            settings=settings,
            storage=storage,
        )
    emit(
        log,
        "register done",
        stage="register",
        dataset=request.dataset_id,
        item_id=item.id,
        item_url=result.item_url,
        store_url=store_url,
        seconds=round(time.perf_counter() - started, 3),
    )
    return replace(result, warnings=warnings)


def license_warnings(item: pystac.Item, fields: CollectionFields) -> list[dict[str, str]]:
    """When no license a reader can act on is known (shared.catalog.stac.licenses): the
    item's description says why, and the warning goes to the run report and status."""
    resolved = fields.license
    if resolved.warning is None:
        return []
    if resolved.note:
        text = item.properties.get("description") or ""
        item.properties["description"] = f"{text} {resolved.note}".strip()
    emit(
        log,
        f"license warning: {resolved.warning['message']}",
        logging.WARNING,
        stage="register",
        dataset=item.id,
        code=resolved.warning["code"],
    )
    return [dict(resolved.warning)]
