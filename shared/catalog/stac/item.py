"""What the item says, pure: the STAC Item for a combined store (datacube fields, footprint,
time range, the store and sources assets of ``assets``), the catalog and collection as first
created, and a collection's extent from its items. Data in, pystac objects out; no storage.

The item carries no credential, ever: readers bring their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import pystac
import xarray as xr
from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable
from pystac.utils import datetime_to_str, str_to_datetime

from shared.catalog.stac.assets import (
    FORMAT_WORDS,
    STORE_ASSET_KEY,
    asset_extensions,
    store_assets,
)
from shared.catalog.stac.cf import (
    cube_dimensions,
    cube_variables,
    dataset_text,
    describe_footprint,
    describe_time,
)
from shared.catalog.stac.documents import check_id, to_utc
from shared.model.errors import CatalogError, PipelineError
from shared.model.jsonsafe import json_safe
from shared.model.locations import Location, parse_location
from shared.model.request import StoreFormat
from shared.model.settings import Settings

SourceKind = Literal["local", "blob"]

VERSION_EXTENSION = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
# What build_item's ``properties`` may hold, and where each goes (all standard fields):
# created/updated (common metadata), version (version extension), libraries
# (processing:software), the rest into processing:lineage and the sources asset.
_LINEAGE_KEYS = ("run_id", "source", "source_file_count", "source_bytes", "source_etag_digest")
_IMPLIED_KEYS = ("store_format", "concat_dim")  # said by the asset type and cube:dimensions


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
    file_dtypes: Mapping[str, str] | None = None,
) -> pystac.Item:
    """The STAC Item for one combined store (no I/O: ``dataset`` is already open).

    ``properties``: ``created``/``updated`` go to STAC's common metadata, ``version`` to the
    Version extension, ``libraries`` (every library that wrote the store, with its version:
    shared.model.layout.writer_versions) to ``processing:software``; the run id, source, file
    count, bytes and ETag digest are said in ``processing:lineage`` (and the sources asset).
    ``source`` is the folder the sources live in (the sources asset); without it, the
    ``source`` property's URL, else the store's folder. ``virtual_chunk_prefix`` is the URL
    prefix the Icechunk repository declares as its virtual chunk container
    (``shared.io.stores.virtual_container_prefix``); Icechunk needs it. ``file_dtypes``: the
    variables the source files decode to another dtype than the store (float32-packed ones),
    with the files' dtype, said in their ``cube:variables`` description.
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
        variables={
            name: Variable(fields) for name, fields in cube_variables(dataset, file_dtypes).items()
        },
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
        document=f"{dataset_id}.json",
    )
    for key, asset in assets.items():
        item.add_asset(key, asset)
    store_asset = assets[STORE_ASSET_KEY]  # the STAC best practices' link to a Zarr store
    item.add_link(pystac.Link("store", store_asset.href, store_asset.media_type, store_asset.title))
    if schemes:
        item.properties["storage:schemes"] = schemes
    item.stac_extensions += [*asset_extensions(schemes, store_format), PROCESSING_EXTENSION]
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
