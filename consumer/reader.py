"""Open a published store from its STAC item, the way a user's code would.

Only the item's own fields are used (href, xarray:open_kwargs, xarray:storage_options,
icechunk:*); the one thing added is the reader's credentials for blob storage, which are
never in the item. The demo's proof and the tests open stores through this; the TiTiler
reader will build on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pystac
import xarray as xr

from shared.catalog.stac.catalog import StorageStacIO
from shared.io.storage import Storage
from shared.io.stores import kerchunk_references, open_icechunk_repository, remote_filesystem
from shared.model.errors import CatalogError
from shared.model.locations import store_location
from shared.model.settings import Settings

ASSET_KEY = "data"


def read_item(item_url: str, settings: Settings, storage: Storage | None = None) -> pystac.Item:
    stac_io = StorageStacIO(storage or Storage(settings))
    return pystac.Item.from_file(item_url, stac_io=stac_io)


@contextmanager
def open_item(item_url: str, settings: Settings) -> Iterator[xr.Dataset]:
    """Open the dataset a published item describes (lazily); closes it on exit."""
    item = read_item(item_url, settings)
    asset = item.assets.get(ASSET_KEY)
    if asset is None:
        raise CatalogError(f"The item {item_url} has no {ASSET_KEY!r} asset.")
    dataset = open_asset(asset, settings)
    try:
        yield dataset
    finally:
        dataset.close()


def open_asset(asset: pystac.Asset, settings: Settings) -> xr.Dataset:
    href = asset.get_absolute_href() or asset.href
    store = store_location(href, settings)
    open_kwargs: dict[str, Any] = dict(asset.extra_fields.get("xarray:open_kwargs") or {})
    if asset.media_type == "application/vnd.zarr+icechunk":
        repo = open_icechunk_repository(store, settings)
        branch = asset.extra_fields.get("icechunk:branch", "main")
        session = repo.readonly_session(branch)
        # xarray opens a zarr store object; its annotation lists paths and buffers only
        return xr.open_dataset(session.store, chunks=None, **open_kwargs)  # type: ignore[arg-type]
    # The item's storage options name the protocol; the reader brings the credentials
    # (never in an item) and reads through our own clients.
    options: dict[str, Any] = dict(asset.extra_fields.get("xarray:storage_options") or {})
    if options.get("remote_protocol") == "az":
        options.pop("remote_options", None)
        options["fs"] = remote_filesystem(False, settings)["fs"]["az"]  # kerchunk: one fs
    references = kerchunk_references(store, settings)
    return xr.open_dataset(references, chunks=None, storage_options=options, **open_kwargs)
