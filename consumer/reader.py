"""Open a published store from its STAC item, the way a user's code would.

Only the item's own, standard fields are used (the store asset's href and media type, the
sources asset it names in ``vrt:hrefs``); the one thing added is the reader's credentials for
blob storage, which are never in the item. This opens every format (kerchunk JSON and
Parquet, Icechunk on Azure or local), which xpystac cannot all do (docs/tiles.md). The demo's
proof, the TiTiler reader (consumer.tiles) and the tests open stores through this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pystac
import xarray as xr

from shared.catalog.stac.catalog import StorageStacIO
from shared.io.storage import Storage
from shared.io.stores import kerchunk_references, open_icechunk_repository, remote_filesystem
from shared.model.errors import CatalogError
from shared.model.locations import Location, store_location
from shared.model.settings import Settings

ASSET_KEY = "data"
ICECHUNK_BRANCH = "main"


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
    if asset.media_type == "application/vnd.zarr+icechunk":
        # the repository declares its virtual chunk containers; the reader authorises them
        repo = open_icechunk_repository(store, settings)
        session = repo.readonly_session(ICECHUNK_BRANCH)
        return xr.open_zarr(session.store, consolidated=False, chunks=None)
    # The references point into the sources; the reader brings the credentials (never in
    # an item) and reads them through our own clients.
    options = remote_filesystem(_sources_are_local(asset, store), settings)
    if "fs" in options:
        options["fs"] = options["fs"]["az"]  # kerchunk's engine takes one filesystem
    references = kerchunk_references(store, settings)
    return xr.open_dataset(references, engine="kerchunk", chunks=None, storage_options=options)


def _sources_are_local(asset: pystac.Asset, store: Location) -> bool:
    """Whether the references point at local files: the sources asset named in the store
    asset's ``vrt:hrefs`` says (file:// or not); an item without one, the store's kind."""
    owner = asset.owner
    for ref in asset.extra_fields.get("vrt:hrefs") or []:
        key = ref.get("key") if isinstance(ref, dict) else None
        sources = owner.assets.get(key) if isinstance(owner, pystac.Item) and key else None
        if sources is not None:
            return sources.href.startswith("file://")
    return store.is_local
