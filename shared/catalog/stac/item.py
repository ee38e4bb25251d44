"""What the item says, pure: the STAC Item for a combined store (datacube fields, footprint,
time range, one asset that xarray-side tools can open), the catalog and collection as first
created, and a collection's extent from its items. Data in, pystac objects out; no storage.

The item carries no credential, ever: readers bring their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import pystac
import xarray as xr
from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable
from pystac.extensions.xarray_assets import XarrayAssetsExtension
from pystac.utils import datetime_to_str, str_to_datetime

from shared.catalog.stac.cf import (
    cube_dimensions,
    cube_variables,
    dataset_text,
    describe_footprint,
    describe_time,
    to_utc,
)
from shared.model.errors import CatalogError
from shared.model.jsonsafe import json_safe
from shared.model.locations import Location, public_store_url
from shared.model.request import StoreFormat
from shared.model.settings import Settings

SourceKind = Literal["local", "blob"]

CATALOG_ID = "virtual-zarr"
CATALOG_TITLE = "Virtual Zarr stores"
CATALOG_DESCRIPTION = (
    "Collections of NetCDF/HDF5 files published as virtual Zarr stores: kerchunk or Icechunk "
    "references to byte ranges of the original files, no data copied."
)
COLLECTION_LICENSE = "other"
# A new collection's time extent: open at both ends until items give it one.
OPEN_INTERVAL: list[list[datetime | None]] = [[None, None]]
VERSION_EXTENSION = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
# Our own fields live under this prefix (a value in "properties" may not start with
# "kerchunk:": xpystac would then try to read the item as inline kerchunk references).
PIPELINE_PREFIX = "pipeline:"
STORE_ASSET_KEY = "data"
ICECHUNK_BRANCH = "main"


STORE_MEDIA_TYPES: dict[str, str] = {
    # xpystac opens a kerchunk asset only as application/json with role references/index.
    "kerchunk-json": pystac.MediaType.JSON,
    "kerchunk-parquet": pystac.MediaType.VND_APACHE_PARQUET,
    "icechunk": "application/vnd.zarr+icechunk",
}
STORE_ROLES: dict[str, list[str]] = {
    "kerchunk-json": ["data", "references"],
    "kerchunk-parquet": ["data", "references"],
    "icechunk": ["data", "references", "virtual"],  # as VEDA publishes its Icechunk stores
}
_FORMAT_WORDS = {
    "kerchunk-json": "kerchunk references (JSON)",
    "kerchunk-parquet": "kerchunk references (Parquet)",
    "icechunk": "Icechunk repository of virtual references",
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


def build_item(
    *,
    dataset: xr.Dataset,
    dataset_id: str,
    collection_id: str,
    store: Location,
    store_format: StoreFormat,
    source_kind: SourceKind,
    settings: Settings,
    concat_dim: str,
    properties: Mapping[str, Any],
    virtual_chunk_prefix: str | None = None,
) -> pystac.Item:
    """The STAC Item for one combined store (no I/O: ``dataset`` is already open).

    ``properties`` (source file count, ETag digest, run id, library versions, created, ...)
    are added under the ``pipeline:`` prefix; ``created`` and ``updated`` go to STAC's
    common metadata and ``version`` to the Version extension.
    ``virtual_chunk_prefix`` is the URL prefix the Icechunk repository declares as its
    virtual chunk container (``shared.io.stores.virtual_container_prefix``); Icechunk needs it.
    """
    check_id(dataset_id, "dataset id", store)
    check_id(collection_id, "collection id", store)
    if store_format not in STORE_MEDIA_TYPES:
        raise CatalogError(
            f"Cannot describe {store.url}: unknown store format {store_format!r} "
            f"(expected one of {', '.join(STORE_MEDIA_TYPES)})."
        )

    footprint = describe_footprint(dataset)
    extra: dict[str, Any] = {}
    created = properties.get("created")
    times = describe_time(dataset, concat_dim)
    if times is not None:
        item_datetime = None
        extra["start_datetime"] = datetime_to_str(times.start)
        extra["end_datetime"] = datetime_to_str(times.end)
    elif created:
        item_datetime = to_utc(str_to_datetime(str(created)))
        extra[PIPELINE_PREFIX + "datetime_note"] = (
            f"The data has no time coordinate ({concat_dim!r} is not a time): "
            "datetime is the time the store was created."
        )
    else:
        raise CatalogError(
            f"Cannot date the item for {store.url}: the concat dimension {concat_dim!r} is "
            "not a time coordinate, no other time coordinate was found, and no 'created' "
            "property was given.",
            remedy="Pass properties['created'] to build_item, or give the data a time coordinate.",
        )

    extra.update(dataset_text(dataset))
    for key in ("created", "updated"):  # STAC common metadata, not ours
        if properties.get(key):
            extra[key] = datetime_to_str(to_utc(str_to_datetime(str(properties[key]))))
    if properties.get("version"):
        extra["version"] = str(properties["version"])  # the Version extension's field
    for key, value in properties.items():
        if key in ("created", "updated", "version"):
            continue
        name = key if key.startswith(PIPELINE_PREFIX) else PIPELINE_PREFIX + key
        extra[name] = json_safe(value)
    extra[PIPELINE_PREFIX + "store_format"] = store_format
    extra[PIPELINE_PREFIX + "concat_dim"] = concat_dim
    if footprint.note:
        extra[PIPELINE_PREFIX + "geometry_note"] = footprint.note

    item = pystac.Item(
        id=dataset_id,
        geometry=footprint.geometry,
        bbox=footprint.bbox,
        datetime=item_datetime,
        properties=extra,
        collection=collection_id,
    )
    DatacubeExtension.ext(item, add_if_missing=True).apply(
        dimensions={
            name: Dimension.from_dict(fields)
            for name, fields in cube_dimensions(dataset, footprint, times).items()
        },
        variables={name: Variable(fields) for name, fields in cube_variables(dataset).items()},
    )
    item.add_asset(
        STORE_ASSET_KEY,
        store_asset(
            store=store,
            store_format=store_format,
            source_kind=source_kind,
            settings=settings,
            title=f"{dataset_id}: virtual Zarr store",
            virtual_chunk_prefix=virtual_chunk_prefix,
        ),
    )
    XarrayAssetsExtension.add_to(item)
    if "version" in extra:
        item.stac_extensions.append(VERSION_EXTENSION)
    _refuse_secrets(item, settings)
    return item


def _refuse_secrets(item: pystac.Item, settings: Settings) -> None:
    """Last guard: an item that would publish the account key is never returned."""
    key = settings.account.key if settings.account is not None else None
    if key and key in json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)):
        raise CatalogError(
            f"Refusing to describe {item.id!r}: the item would contain the storage account key.",
            remedy="Remove the credential from the properties given to build_item; published "
            "items carry account names only.",
        )


def store_asset(
    *,
    store: Location,
    store_format: StoreFormat,
    source_kind: SourceKind,
    settings: Settings,
    title: str | None = None,
    virtual_chunk_prefix: str | None = None,
) -> pystac.Asset:
    """The asset for the store: href, media type, roles, and how to open it with xarray.

    kerchunk (JSON or Parquet): ``xr.open_dataset(href, **open_kwargs,
    storage_options=storage_options)`` with kerchunk's xarray engine. The same fields work
    for xpystac, which downloads the JSON itself and calls that engine with the references
    (so ``fo`` must not be in the storage options, and nothing the engine sets itself,
    ``consolidated`` / ``zarr_format``, may be in the open options).

    Icechunk: open the repository named by ``icechunk:storage``, authorising the virtual
    chunk containers in ``icechunk:virtual_chunk_containers``, then
    ``xr.open_zarr(session.store, **open_kwargs)``.
    """
    href = public_store_url(store, settings)
    asset = pystac.Asset(
        href=href,
        title=title,
        description=f"{_FORMAT_WORDS[store_format]} to the source NetCDF/HDF5 files; "
        "no data was copied.",
        media_type=STORE_MEDIA_TYPES[store_format],
        roles=list(STORE_ROLES[store_format]),
    )
    account = settings.account.name if settings.account is not None else None
    if source_kind == "blob" and account is None:
        raise CatalogError(
            f"Cannot describe {store.url}: its sources are in blob storage but no storage "
            "account is configured."
        )
    if store_format == "icechunk":
        if not virtual_chunk_prefix:
            raise CatalogError(
                f"Cannot describe the Icechunk store {store.url}: the virtual chunk "
                "container prefix of its source files was not given.",
                remedy="Pass virtual_chunk_prefix (shared.io.stores.virtual_container_prefix).",
            )
        asset.extra_fields["icechunk:storage"] = _icechunk_storage(store, settings)
        asset.extra_fields["icechunk:branch"] = ICECHUNK_BRANCH
        asset.extra_fields["icechunk:virtual_chunk_containers"] = {
            virtual_chunk_prefix: (
                {"type": "azure", "account": account}
                if source_kind == "blob"
                else {"type": "local_filesystem"}
            )
        }
        open_kwargs: dict[str, Any] = {"engine": "zarr", "zarr_format": 3, "consolidated": False}
        storage_options: dict[str, Any] | None = None
    else:
        open_kwargs = {"engine": "kerchunk"}
        storage_options = {"remote_protocol": "az" if source_kind == "blob" else "file"}
        if source_kind == "blob":
            storage_options["remote_options"] = {"account_name": account}
    xarray_fields = XarrayAssetsExtension.ext(asset)
    # properties of pystac's AssetXarrayAssetsExtension, which ext()'s annotation hides
    xarray_fields.open_kwargs = open_kwargs  # type: ignore[attr-defined]
    xarray_fields.storage_options = storage_options  # type: ignore[attr-defined]
    return asset


def _icechunk_storage(store: Location, settings: Settings) -> dict[str, Any]:
    if store.is_local:
        return {"type": "local_filesystem", "path": store.path}
    assert settings.account is not None  # http_url has already required it
    fields: dict[str, Any] = {
        "type": "azure",
        "account": settings.account.name,
        "container": store.container,
        "prefix": store.path,
    }
    if settings.account.blob_endpoint:  # an emulator or a sovereign cloud: say where
        fields["endpoint"] = settings.account.endpoint
    return fields


def check_id(value: str, what: str, store: Location) -> None:
    """An id names a catalog folder: refuse one that could not (or could leave the catalog)."""
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value):
        raise CatalogError(
            f"Cannot register {store.url}: the {what} {value!r} cannot name a catalog "
            "folder (use letters, digits, '.', '_' and '-', starting with a letter or digit).",
            remedy="Correct the id in the request and submit it again.",
        )


def new_catalog() -> pystac.Catalog:
    """The catalog root as first created: this pipeline's id, title and description."""
    return pystac.Catalog(
        id=CATALOG_ID,
        title=CATALOG_TITLE,
        description=CATALOG_DESCRIPTION,
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )


def new_collection(
    collection_id: str, title: str | None = None, description: str | None = None
) -> pystac.Collection:
    """A collection as first created, before any item: the whole world, no time range."""
    return pystac.Collection(
        id=collection_id,
        title=title or collection_id,
        description=description
        or f"Virtual Zarr stores of the {collection_id!r} collection of NetCDF/HDF5 files.",
        extent=pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent(OPEN_INTERVAL),
        ),
        license=COLLECTION_LICENSE,
    )


def collection_extent(items: Iterable[Mapping[str, Any]]) -> pystac.Extent:
    """Union of the items' bboxes and time ranges (item dicts as written to the catalog).

    With no bbox at all the spatial extent is the whole world (STAC requires one); a bbox
    crossing the antimeridian widens the longitudes to -180..180.
    """
    bboxes: list[Sequence[float]] = []
    starts: list[datetime] = []
    ends: list[datetime] = []
    for document in items:
        bbox = document.get("bbox")
        if bbox and len(bbox) >= 4:
            bboxes.append([float(v) for v in bbox])
        props = document.get("properties", {})
        start = props.get("start_datetime") or props.get("datetime")
        end = props.get("end_datetime") or props.get("datetime")
        if start:
            starts.append(to_utc(str_to_datetime(start)))
        if end:
            ends.append(to_utc(str_to_datetime(end)))
    if bboxes:
        dims = len(bboxes[0]) // 2  # 2-D bboxes only here
        crosses = any(b[0] > b[dims] for b in bboxes)
        west = -180.0 if crosses else min(b[0] for b in bboxes)
        east = 180.0 if crosses else max(b[dims] for b in bboxes)
        south = min(b[1] for b in bboxes)
        north = max(b[dims + 1] for b in bboxes)
        overall = [west, south, east, north]
    else:
        overall = [-180.0, -90.0, 180.0, 90.0]
    interval = [min(starts) if starts else None, max(ends) if ends else None]
    return pystac.Extent(pystac.SpatialExtent([overall]), pystac.TemporalExtent([interval]))
