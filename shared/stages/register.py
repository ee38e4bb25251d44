"""Register: describe the verified store as a STAC item and put it in the catalog."""

from __future__ import annotations

import logging
import time
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
from shared.catalog.stac.collection import collection_fields
from shared.catalog.stac.item import build_item
from shared.catalog.stac_api import published_in_api
from shared.io.storage import Storage, storage_faults
from shared.io.stores import open_store, virtual_container_prefix
from shared.model.errors import SourceNotFound
from shared.model.layout import Layout, digest, library_versions
from shared.model.locations import http_url, parse_location, public_store_url
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.combine import source_root
from shared.stages.preview import add_preview
from shared.stages.runreport import summary_location
from shared.stages.scan import ScanManifest, check_unchanged, load_manifest
from shared.stages.validate.batch import load_report

log = logging.getLogger(__name__)


def add_run_links(
    item: pystac.Item, dataset_id: str, run_id: str, manifest_digest: str, settings: Settings
) -> None:
    """Where the item came from, for a person: the run's summary (every file, its verdict
    and timings; beside the store) and the gate's report on the files (in the work area)."""
    summary = summary_location(dataset_id, run_id, settings)
    gate = Layout.from_settings(settings).gate_report
    gate_md, gate_json = gate(dataset_id, manifest_digest, "md"), gate(dataset_id, manifest_digest)
    links = [
        (public_store_url(summary, settings), "text/markdown", "Run summary: every file"),
        (http_url(gate_md, settings), "text/markdown", "Gate report on the source files"),
        (http_url(gate_json, settings), "application/json", "Gate report (JSON)"),
    ]
    for href, media_type, title in links:
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
                "libraries": library_versions(),
                "created": now,
                "updated": now,
                "version": run_id,
            },
        )
        fields = collection_fields(template, dataset.attrs, settings.stac_license)
        add_preview(
            item,
            dataset,
            run_id=run_id,
            concat_dim=request.concat_dim,
            settings=settings,
            storage=storage,
        )
    add_run_links(item, request.dataset_id, run_id, manifest.digest, settings)
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
    return result
