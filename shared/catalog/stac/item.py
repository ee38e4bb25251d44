"""What the item says, pure: the STAC Item for a combined store (datacube fields, footprint,
time range, the store and sources assets of ``assets``), the catalog and collection as first
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
from pystac.utils import datetime_to_str, str_to_datetime

from shared.catalog.stac.assets import FORMAT_WORDS, asset_extensions, store_assets
from shared.catalog.stac.cf import (
    cube_dimensions,
    cube_variables,
    dataset_text,
    describe_footprint,
    describe_time,
    to_utc,
)
from shared.model.errors import CatalogError, PipelineError
from shared.model.jsonsafe import json_safe
from shared.model.locations import Location, parse_location
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
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
# What build_item's ``properties`` may hold, and where each goes (all standard fields):
# created/updated (common metadata), version (version extension), libraries
# (processing:software), the rest into processing:lineage and the sources asset.
_LINEAGE_KEYS = ("run_id", "source", "source_file_count", "source_bytes", "source_etag_digest")
_IMPLIED_KEYS = ("store_format", "concat_dim")  # said by the asset type and cube:dimensions
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
    source: Location | None = None,
) -> pystac.Item:
    """The STAC Item for one combined store (no I/O: ``dataset`` is already open).

    ``properties``: ``created``/``updated`` go to STAC's common metadata, ``version`` to the
    Version extension, ``libraries`` to ``processing:software``; the run id, source, file
    count, bytes and ETag digest are said in ``processing:lineage`` (and the sources asset).
    ``source`` is the folder the sources live in (the sources asset); without it, the
    ``source`` property's URL, else the store's folder. ``virtual_chunk_prefix`` is the URL
    prefix the Icechunk repository declares as its virtual chunk container
    (``shared.io.stores.virtual_container_prefix``); Icechunk needs it.
    """
    check_id(dataset_id, "dataset id", store)
    check_id(collection_id, "collection id", store)
    footprint = describe_footprint(dataset)
    extra: dict[str, Any] = {}
    notes: list[str] = []
    created = properties.get("created")
    times = describe_time(dataset, concat_dim)
    if times is not None:
        item_datetime = None
        extra["start_datetime"] = datetime_to_str(times.start)
        extra["end_datetime"] = datetime_to_str(times.end)
    elif created:
        item_datetime = to_utc(str_to_datetime(str(created)))
        notes.append(
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
    if footprint.note:
        notes.append(footprint.note)

    extra.update(dataset_text(dataset))
    if notes:
        extra["description"] = " ".join([extra.get("description", ""), *notes]).strip()
    for key in ("created", "updated"):  # STAC common metadata
        if properties.get(key):
            extra[key] = datetime_to_str(to_utc(str_to_datetime(str(properties[key]))))
    if properties.get("version"):
        extra["version"] = str(properties["version"])  # the Version extension's field
    extra["processing:lineage"] = lineage(properties, store_format, concat_dim)
    if properties.get("libraries"):
        extra["processing:software"] = {str(k): str(v) for k, v in properties["libraries"].items()}
    if extra.get("created"):
        extra["processing:datetime"] = extra["created"]

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
    if source is None:
        source = _source_of(properties, store, settings)
    assets, schemes = store_assets(
        store=store,
        store_format=store_format,
        source=source,
        settings=settings,
        title=f"{dataset_id}: virtual Zarr store",
        virtual_chunk_prefix=virtual_chunk_prefix,
        sources_description=_sources_words(properties),
    )
    for key, asset in assets.items():
        item.add_asset(key, asset)
    if schemes:
        item.properties["storage:schemes"] = schemes
    item.stac_extensions += [*asset_extensions(schemes), PROCESSING_EXTENSION]
    if "version" in extra:
        item.stac_extensions.append(VERSION_EXTENSION)
    _refuse_secrets(item, settings)
    return item


def lineage(properties: Mapping[str, Any], store_format: StoreFormat, concat_dim: str) -> str:
    """``processing:lineage``: how the store was made, in words (run, files, ETag digest)."""
    words = [
        f"{FORMAT_WORDS[store_format]} to the source files, combined along {concat_dim!r}"
        if store_format in FORMAT_WORDS
        else f"Combined along {concat_dim!r}"
    ]
    if properties.get("run_id"):
        words.append(f"by pipeline run {properties['run_id']}")
    if properties.get("source_file_count") is not None:
        words.append(f"from {properties['source_file_count']} file(s)")
    if properties.get("source"):
        words.append(f"under {properties['source']}")
    text = " ".join(words) + "."
    if properties.get("source_etag_digest"):
        text += f" Source ETag digest: {properties['source_etag_digest']}."
    others = {
        k: v
        for k, v in properties.items()
        if k not in (*_LINEAGE_KEYS, *_IMPLIED_KEYS, "created", "updated", "version", "libraries")
    }
    if others:
        text += " " + "; ".join(f"{k}: {json.dumps(json_safe(v))}" for k, v in others.items())
    return text


def _sources_words(properties: Mapping[str, Any]) -> str | None:
    count, size = properties.get("source_file_count"), properties.get("source_bytes")
    if count is None:
        return None
    text = f"The {count} NetCDF/HDF5 file(s) the store's references point into"
    if size is not None:
        text += f" ({int(size):,} bytes)"
    return text + ", read in place, never copied."


def _source_of(properties: Mapping[str, Any], store: Location, settings: Settings) -> Location:
    """Where the sources are when the caller did not say: the ``source`` property, or (for
    a builder called without either) the store's own folder in the sources' storage."""
    text = properties.get("source")
    if isinstance(text, str) and text:
        try:
            return parse_location(text, settings, what="source")
        except PipelineError:
            pass
    return Location(store.kind, store.container, store.path.rsplit("/", 1)[0])


def _refuse_secrets(item: pystac.Item, settings: Settings) -> None:
    """Last guard: an item that would publish the account key is never returned."""
    key = settings.account.key if settings.account is not None else None
    if key and key in json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)):
        raise CatalogError(
            f"Refusing to describe {item.id!r}: the item would contain the storage account key.",
            remedy="Remove the credential from the properties given to build_item; published "
            "items carry account names only.",
        )


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
