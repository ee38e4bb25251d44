"""The register stage's preview: drawn from the verified store (one time step of the main
data variable: shared.catalog.stac.preview), written beside the store and the run summary::

    {stores}/{dataset}/{run id}.preview.png

(the run id comes before the first '.', so shared.catalog.ledger prunes the picture with its
run's store), and shown by the item's ``thumbnail`` asset and ``preview`` link.
"""

from __future__ import annotations

import logging

import pystac
import xarray as xr

from shared.catalog.stac.preview import (
    THUMBNAIL_ASSET_KEY,
    NothingToDraw,
    draw_preview,
    preview_link,
    thumbnail_asset,
)
from shared.io.storage import Storage
from shared.model.layout import Layout
from shared.model.locations import Location, public_store_url
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)
PREVIEW_SUFFIX = ".preview.png"


def preview_location(dataset_id: str, run_id: str, settings: Settings) -> Location:
    """{stores}/{dataset}/{run id}.preview.png, beside the store and its run summary."""
    return Layout.from_settings(settings).stores.join(dataset_id, f"{run_id}{PREVIEW_SUFFIX}")


def add_preview(
    item: pystac.Item,
    dataset: xr.Dataset,
    *,
    run_id: str,
    concat_dim: str,
    settings: Settings,
    storage: Storage,
) -> str | None:
    """Draw the preview, write it beside the store, and give the item its ``thumbnail``
    asset and ``preview`` link; returns the picture's URL, or None (and says why in the
    log, event ``no preview``) when there is nothing to draw (NothingToDraw)."""
    try:
        preview = draw_preview(dataset, item.id, concat_dim)
    except NothingToDraw as nothing:
        emit(log, "no preview", stage="register", dataset=item.id, why=str(nothing))
        return None
    location = preview_location(item.id, run_id, settings)
    storage.write(location, preview.png, "image/png")
    href = public_store_url(location, settings)
    item.add_asset(THUMBNAIL_ASSET_KEY, thumbnail_asset(href, preview))
    item.add_link(preview_link(href, f"Preview: {preview.title}"))
    return href
