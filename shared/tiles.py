"""Serve what we publish with TiTiler-xarray: a Reader whose opener opens our stores.

TiTiler-xarray's default reader opens Zarr stores only; ours are kerchunk references (JSON
or Parquet) and Icechunk repositories whose chunks point into the source NetCDF files. The
opener takes what a TiTiler request's ``url`` names and opens it with shared.reader:

- a STAC item of ours (its "data" asset: the store, its format, how to open it);
- a store: ``.json`` (kerchunk JSON), ``.parq`` (kerchunk Parquet) or ``.icechunk``;

given as a local path or file:// URL (where local paths are allowed), az://, abfs[s]://
or https://ACCOUNT.blob.core.windows.net/... (and Azurite's URL). Credentials come from
the deployment (PIPELINE_STORAGE_ACCOUNT with managed identity, or a connection string),
never from the request. A TiTiler deployment needs three lines (docs/tiles.md):

    from titiler.xarray.factory import TilerFactory
    from shared.tiles import PublishedReader
    app.include_router(TilerFactory(reader=PublishedReader).router, prefix="/md")

This module imports nothing from the Function App.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import attr
import xarray as xr
from titiler.xarray.io import Reader

from shared.errors import BadRequest
from shared.locations import Location, parse_location
from shared.reader import ASSET_KEY, open_asset, read_item
from shared.settings import Settings
from shared.storage import Storage
from shared.stores import open_icechunk_repository, open_store

FORMAT_BY_SUFFIX = {".json": "kerchunk-json", ".parq": "kerchunk-parquet", ".icechunk": "icechunk"}
OPEN_CACHE_SIZE = 32  # datasets kept open (each holds references, not data)
_LOCK = threading.Lock()


_CONFIGURED: list[Settings] = []


def configure(settings: Settings | None) -> None:
    """Use these settings instead of the environment's (the local tile server and the demo
    pass theirs); None goes back to the environment. Datasets opened before are dropped."""
    with _LOCK:
        _CONFIGURED[:] = [settings] if settings is not None else []
        _open_cached.cache_clear()
        _settings.cache_clear()


def settings_for_tiles() -> Settings:
    """The deployment's settings (read once per process: a tile server answers many
    requests). Local paths follow PIPELINE_ALLOW_LOCAL_PATHS, as everywhere."""
    return _CONFIGURED[0] if _CONFIGURED else _settings()


@functools.cache
def _settings() -> Settings:
    return Settings.from_env()


def open_published(
    src_path: str,
    group: str | None = None,
    decode_times: bool = True,
    decode_coords: str = "all",
    **_: Any,
) -> xr.Dataset:
    """TiTiler-xarray opener for our stores and items (see the module docstring)."""
    if group is not None:
        raise BadRequest(f"{src_path}: our stores have no groups (group={group!r}).")
    with _LOCK:
        shared = _open_cached(src_path, decode_times, decode_coords)
    # TiTiler closes what its opener returns after every request: hand out a view of the
    # cached dataset (same lazy arrays) whose close does nothing.
    view = shared.copy(deep=False)
    view.set_close(None)
    return view


@functools.lru_cache(maxsize=OPEN_CACHE_SIZE)
def _open_cached(src_path: str, decode_times: bool, decode_coords: str) -> xr.Dataset:
    settings = settings_for_tiles()
    dataset = open_published_dataset(src_path, settings)
    if not decode_times or decode_coords != "all":
        dataset = xr.decode_cf(
            dataset, decode_times=decode_times, decode_coords=decode_coords or False
        )
    return dataset


def open_published_dataset(src_path: str, settings: Settings) -> xr.Dataset:
    """Open a published item or store lazily, whatever the format."""
    location = parse_location(src_path, settings, what="dataset url")
    suffix = _suffix(location)
    if suffix == ".json" and _is_item(location, settings):
        item = read_item(location.url, settings)
        asset = item.assets.get(ASSET_KEY)
        if asset is None:
            raise BadRequest(f"The STAC item {src_path} has no {ASSET_KEY!r} asset.")
        return open_asset(asset, settings)
    store_format = FORMAT_BY_SUFFIX.get(suffix)
    if store_format is None:
        raise BadRequest(
            f"{src_path} is neither a STAC item nor a store of ours "
            f"({', '.join(FORMAT_BY_SUFFIX)}).",
            remedy="Pass the item URL (item_url of the run) or the store URL (store_url).",
        )
    if store_format == "icechunk":
        session = open_icechunk_repository(location, settings).readonly_session("main")
        return xr.open_zarr(session.store, consolidated=False, chunks=None)
    # open_store needs the sources' kind only (local or blob): a store lives with them.
    return open_store(location, store_format, location, settings)


def _suffix(location: Location) -> str:
    name = location.name
    return name[name.rfind(".") :] if "." in name else ""


def _is_item(location: Location, settings: Settings) -> bool:
    """A STAC document names its version in its first lines; kerchunk references never do."""
    return b'"stac_version"' in Storage(settings).read_range(location, 0, 4096)


@attr.s
class PublishedReader(Reader):
    """TiTiler-xarray's Reader, opening our published stores and items."""

    opener: Any = attr.ib(default=open_published)


def create_app(*, title: str = "virtual-zarr-pipeline tiles") -> Any:
    """A TiTiler-xarray application with our reader (what `python -m devhost tiles` serves).
    Routes: /info, /tiles/{tms}/{z}/{x}/{y}.png, /point/{lon},{lat}, /WebMercatorQuad/map.html,
    ... each taking ?url=<item or store>&variable=<name>&sel=time=<value>; /dataset/keys
    (the variables) and /dataset/dict take ?url= only."""
    from fastapi import FastAPI
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.xarray.extensions import DatasetMetadataExtension
    from titiler.xarray.factory import TilerFactory

    app = FastAPI(title=title)
    factory = TilerFactory(
        reader=PublishedReader,
        extensions=[DatasetMetadataExtension(dataset_opener=open_published)],
    )
    app.include_router(factory.router, tags=["Published stores"])
    add_exception_handlers(app, {**DEFAULT_STATUS_CODES, BadRequest: 400})
    return app
