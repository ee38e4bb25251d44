"""Register: describe the verified store as a STAC Item and add it to a static catalog.

Two halves, as in stactools packages:

- ``build_item`` is pure: from the combined store opened with xarray it builds an Item with
  the datacube extension (dimensions and variables), a footprint from the latitude and
  longitude coordinates, the time range of the concat dimension, and one asset for the
  store whose media type, roles and ``xarray:*`` fields let xarray-side tools open it.
  It carries no credential, ever: readers bring their own.
- ``register_item`` does the I/O: it adds (or replaces) the item in a self-contained static
  catalog that lives wherever the settings say (a local folder or a blob container), read
  and written through ``Storage`` by ``StorageStacIO``::

      {catalog}/catalog.json
      {catalog}/{collection}/collection.json
      {catalog}/{collection}/{item}/{item}.json

All links are relative, so the folder or container can be moved or served over HTTP as is.
The collection's item links and extent are rebuilt from the item files present below it on
every registration: registering the same dataset again replaces its item (never a
duplicate), and a collection.json that lost an update heals on the next registration.
"""

from __future__ import annotations

import calendar
import itertools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pystac
import xarray as xr
from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable
from pystac.extensions.xarray_assets import XarrayAssetsExtension
from pystac.stac_io import StacIO
from pystac.utils import HREF, datetime_to_str, str_to_datetime

from shared.io.storage import Storage
from shared.model.errors import CatalogError, PipelineError, StorageUnavailable
from shared.model.jsonsafe import json_safe
from shared.model.layout import Layout
from shared.model.locations import Location, http_url, parse_location, public_store_url
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)

StoreFormat = Literal["kerchunk-json", "kerchunk-parquet", "icechunk"]
SourceKind = Literal["local", "blob"]

CATALOG_ID = "virtual-zarr"
CATALOG_TITLE = "Virtual Zarr stores"
CATALOG_DESCRIPTION = (
    "Collections of NetCDF/HDF5 files published as virtual Zarr stores: kerchunk or Icechunk "
    "references to byte ranges of the original files, no data copied."
)
COLLECTION_LICENSE = "other"
# Our own fields live under this prefix (a value in "properties" may not start with
# "kerchunk:": xpystac would then try to read the item as inline kerchunk references).
VERSION_EXTENSION = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
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

_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen"}
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese", "degreee"}
_VERTICAL_NAMES = {
    "height", "depth", "altitude", "air_pressure", "atmosphere_sigma_coordinate",
    "atmosphere_hybrid_sigma_pressure_coordinate", "model_level_number",
}  # fmt: skip
_AUXILIARY_ATTRS = ("grid_mapping", "bounds", "climatology")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")
_READ_WORKERS = 8
HIERARCHY_RELS = ("root", "parent", "collection", "item", "self")


# =========================================================================================
# Building the item (pure)
# =========================================================================================
@dataclass(frozen=True)
class Footprint:
    """Where the data is: a WGS84 bbox and GeoJSON geometry, or None and why not."""

    bbox: list[float] | None
    geometry: dict[str, Any] | None
    lat_name: str | None = None
    lon_name: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class TimeRange:
    """When the data is: first and last instant (UTC) and the step if it is regular."""

    coordinate: str
    start: datetime
    end: datetime
    step: str | None  # ISO 8601 duration ("P1D", "PT6H", "P1M"), None if irregular
    calendar: str


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
    _check_id(dataset_id, "dataset id", store)
    _check_id(collection_id, "collection id", store)
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
        item_datetime = _to_utc(str_to_datetime(str(created)))
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

    extra.update(_dataset_text(dataset))
    for key in ("created", "updated"):  # STAC common metadata, not ours
        if properties.get(key):
            extra[key] = datetime_to_str(_to_utc(str_to_datetime(str(properties[key]))))
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
    xarray_fields.open_kwargs = open_kwargs
    xarray_fields.storage_options = storage_options
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


def _check_id(value: str, what: str, store: Location) -> None:
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value):
        raise CatalogError(
            f"Cannot register {store.url}: the {what} {value!r} cannot name a catalog "
            "folder (use letters, digits, '.', '_' and '-', starting with a letter or digit).",
            remedy="Correct the id in the request and submit it again.",
        )


def _dataset_text(dataset: xr.Dataset) -> dict[str, str]:
    """Title and description from the global attributes (ACDD title, summary), if any."""
    text: dict[str, str] = {}
    title = dataset.attrs.get("title")
    description = dataset.attrs.get("summary")
    if isinstance(title, str) and title.strip():
        text["title"] = title.strip()
    if isinstance(description, str) and description.strip():
        text["description"] = description.strip()
    return text


# -- space ---------------------------------------------------------------------------------
def coordinate_kind(
    name: str, variable: xr.Variable | xr.DataArray
) -> Literal["lat", "lon"] | None:
    """Whether a variable is latitude or longitude, by CF standard_name, units, or name.

    ``lat``/``latitude`` and ``lon``/``longitude`` count on their name unless their units
    say otherwise; any other name (``y``, ``x``, ``nav_lat``) needs the standard name or
    degrees_north/degrees_east units. Rotated-pole and projected coordinates are not lat/lon.
    """
    standard_name = str(variable.attrs.get("standard_name", "")).strip().lower()
    units = str(variable.attrs.get("units", "")).strip().lower().replace(" ", "_")
    if standard_name == "latitude" or units in _LAT_UNITS:
        return "lat"
    if standard_name == "longitude" or units in _LON_UNITS:
        return "lon"
    if standard_name or units not in ("", "degrees", "degree"):
        return None  # described as something else (grid_latitude, projection_y_coordinate, m)
    lowered = name.lower()
    if lowered in ("lat", "latitude"):
        return "lat"
    if lowered in ("lon", "long", "longitude"):
        return "lon"
    return None


def _find_coordinate(dataset: xr.Dataset, kind: str) -> str | None:
    """The best lat (or lon) variable: a dimension coordinate, then 1-D, then 2-D."""
    candidates = [
        str(name)
        for name, variable in dataset.variables.items()
        if variable.ndim in (1, 2)
        and variable.dtype.kind in "fiu"
        and coordinate_kind(str(name), variable) == kind
    ]

    def rank(name: str) -> tuple[int, int, str]:
        variable = dataset.variables[name]
        is_dimension = variable.dims == (name,)
        return (0 if is_dimension else 1, variable.ndim, name)

    return min(candidates, key=rank) if candidates else None


def describe_footprint(dataset: xr.Dataset) -> Footprint:
    """WGS84 bbox and geometry from the lat/lon coordinates (longitudes in -180..180).

    Regular 1-D coordinates count their outer half cells (CF bounds variables are used when
    present), so a global grid gets [-180, -90, 180, 90]. A region that crosses the
    antimeridian gets west > east in the bbox and a MultiPolygon (RFC 7946).
    """
    lat_name = _find_coordinate(dataset, "lat")
    lon_name = _find_coordinate(dataset, "lon")
    if lat_name is None or lon_name is None:
        missing = " and ".join(
            what for what, found in (("latitude", lat_name), ("longitude", lon_name)) if not found
        )
        return Footprint(
            bbox=None,
            geometry=None,
            lat_name=lat_name,
            lon_name=lon_name,
            note=f"No {missing} coordinate was recognised (looked for standard_name "
            "latitude/longitude, units degrees_north/degrees_east, or the names lat, latitude, "
            "lon, longitude), so the item has no geometry.",
        )
    lat_low, lat_high = _coordinate_span(dataset, lat_name)
    lon_low, lon_high = _coordinate_span(dataset, lon_name)
    if not all(np.isfinite([lat_low, lat_high, lon_low, lon_high])):
        return Footprint(
            bbox=None,
            geometry=None,
            lat_name=lat_name,
            lon_name=lon_name,
            note=f"The coordinates {lat_name!r}/{lon_name!r} hold no finite values, so the "
            "item has no geometry.",
        )
    south, north = max(-90.0, lat_low), min(90.0, lat_high)
    west, east = normalize_longitudes(lon_low, lon_high)
    bbox = [_round(west), _round(south), _round(east), _round(north)]
    return Footprint(bbox=bbox, geometry=bbox_geometry(bbox), lat_name=lat_name, lon_name=lon_name)


def _coordinate_span(dataset: xr.Dataset, name: str) -> tuple[float, float]:
    """Lowest and highest value covered, including half cells of a regular 1-D axis."""
    variable = dataset.variables[name]
    bounds_name = variable.attrs.get("bounds") or variable.encoding.get("bounds")
    if isinstance(bounds_name, str) and bounds_name in dataset.variables:
        values = _finite(dataset.variables[bounds_name].values)
        if values.size:
            return float(values.min()), float(values.max())
    values = _finite(variable.values)
    if not values.size:
        return float("nan"), float("nan")
    low, high = float(values.min()), float(values.max())
    step = regular_step(variable.values) if variable.ndim == 1 else None
    if step is not None:
        low, high = low - abs(step) / 2, high + abs(step) / 2
    return low, high


def _finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype="float64").ravel()
    return array[np.isfinite(array)]


def regular_step(values: Any) -> float | None:
    """The spacing of a 1-D numeric axis if it is regular (float32 rounding tolerated)."""
    array = np.asarray(values, dtype="float64")
    if array.ndim != 1 or array.size < 2 or not np.all(np.isfinite(array)):
        return None
    steps = np.diff(array)
    step = float(np.median(steps))
    if step == 0 or not np.allclose(steps, step, rtol=1e-4, atol=abs(step) * 1e-4):
        return None
    return step


def normalize_longitudes(low: float, high: float) -> tuple[float, float]:
    """West and east in -180..180 for a longitude interval given in any convention.

    (0.5, 359.5) is global: (-180, 180). (120, 240) crosses the antimeridian: (120, -120).
    """
    if high - low >= 360.0 - 1e-6:
        return -180.0, 180.0
    if low >= -180.0 and high <= 180.0:
        return low, high

    def wrap(value: float, upper: bool) -> float:
        wrapped = ((value + 180.0) % 360.0) - 180.0
        if upper and wrapped == -180.0:
            return 180.0
        return wrapped

    return wrap(low, upper=False), wrap(high, upper=True)


def bbox_geometry(bbox: Sequence[float]) -> dict[str, Any]:
    """GeoJSON for a bbox; split in two at the antimeridian when west > east."""
    west, south, east, north = bbox

    def ring(w: float, e: float) -> list[list[list[float]]]:
        return [[[w, south], [e, south], [e, north], [w, north], [w, south]]]

    if west > east:
        return {"type": "MultiPolygon", "coordinates": [ring(west, 180.0), ring(-180.0, east)]}
    return {"type": "Polygon", "coordinates": ring(west, east)}


def _round(value: float) -> float:
    return round(float(value), 6)


# -- time ----------------------------------------------------------------------------------
def _is_time(variable: xr.Variable | xr.DataArray) -> bool:
    if variable.dtype.kind == "M":
        return True
    if variable.dtype.kind == "O" and variable.size:
        first = np.asarray(variable.values).ravel()[0]
        return hasattr(first, "calendar") and hasattr(first, "year")  # a cftime datetime
    return False


def describe_time(dataset: xr.Dataset, concat_dim: str) -> TimeRange | None:
    """First/last instant and step of the concat dimension (decoded times), else of the
    first other 1-D time coordinate; None when the data has no time coordinate."""
    names = [concat_dim] if concat_dim in dataset.variables else []
    names += [str(n) for n, v in dataset.coords.items() if v.ndim == 1 and str(n) != concat_dim]
    for name in names:
        variable = dataset.variables[name]
        if variable.ndim == 1 and _is_time(variable):
            instants = _instants(variable)
            if instants:
                return TimeRange(
                    coordinate=name,
                    start=min(instants),
                    end=max(instants),
                    step=time_step(variable),
                    calendar=str(
                        variable.encoding.get("calendar")
                        or variable.attrs.get("calendar")
                        or "standard"
                    ),
                )
    return None


def _instants(variable: xr.Variable | xr.DataArray) -> list[datetime]:
    values = np.asarray(variable.values).ravel()
    if variable.dtype.kind == "M":
        stamps = pd.DatetimeIndex(values).dropna()
        return [_to_utc(s.to_pydatetime()) for s in stamps]
    return [_cftime_to_datetime(v) for v in values if v is not None]


def _cftime_to_datetime(value: Any) -> datetime:
    """A real-calendar UTC datetime for a cftime date; days a real calendar lacks (30 Feb in
    a 360-day calendar) become the last day of that month."""
    year = min(max(int(value.year), 1), 9999)
    month = int(value.month)
    day = min(int(value.day), calendar.monthrange(year, month)[1])
    return datetime(year, month, day, value.hour, value.minute, value.second, tzinfo=UTC)


def _to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_step(variable: xr.Variable | xr.DataArray) -> str | None:
    """ISO 8601 duration between consecutive times if constant ("P1D", "PT3H"), whole
    months or years when the data is monthly/yearly ("P1M", "P1Y"); None otherwise."""
    values = np.asarray(variable.values).ravel()
    if values.size < 2:
        return None
    if variable.dtype.kind == "M":
        times: list[Any] = list(pd.DatetimeIndex(values))
        if any(pd.isna(t) for t in times):
            return None
    else:
        times = list(values)
    seconds = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(times)}
    if len(seconds) == 1:
        (step,) = seconds
        return iso_duration(step) if step > 0 else None
    same_moment = {(t.day, t.hour, t.minute, t.second) for t in times}
    months = {
        (b.year * 12 + b.month) - (a.year * 12 + a.month) for a, b in itertools.pairwise(times)
    }
    if len(same_moment) == 1 and len(months) == 1:
        (count,) = months
        if count > 0:
            return f"P{count // 12}Y" if count % 12 == 0 else f"P{count}M"
    return None


def iso_duration(seconds: float) -> str:
    """86400 -> "P1D", 21600 -> "PT6H", 90000 -> "P1DT1H", 1.5 -> "PT1.5S"."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = round(seconds - whole, 3)
    text = "P" + (f"{days}D" if days else "")
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if secs or fraction:
        clock += f"{secs + fraction:g}S"
    return text + ("T" + clock if clock else "") if (days or clock) else "PT0S"


# -- datacube ------------------------------------------------------------------------------
def cube_dimensions(
    dataset: xr.Dataset, footprint: Footprint, times: TimeRange | None
) -> dict[str, dict[str, Any]]:
    """``cube:dimensions``: spatial x/y (lat/lon axes), spatial z (vertical), temporal,
    and every other dimension as "other" (extent of its coordinate, or of its index)."""
    dimensions: dict[str, dict[str, Any]] = {}
    horizontal: dict[str, str] = {}
    for name, axis in ((footprint.lon_name, "x"), (footprint.lat_name, "y")):
        if name is not None and dataset.variables[name].dims == (name,):
            horizontal[name] = axis
    for dim, size in dataset.sizes.items():
        name = str(dim)
        variable = dataset.variables.get(name)
        coordinate = variable if variable is not None and variable.dims == (name,) else None
        fields: dict[str, Any] = {}
        description = _description(coordinate)
        if coordinate is not None and _is_time(coordinate):
            instants = _instants(coordinate)
            fields = {
                "type": "temporal",
                "extent": [datetime_to_str(min(instants)), datetime_to_str(max(instants))]
                if instants
                else [None, None],
            }
            step = times.step if times and times.coordinate == name else time_step(coordinate)
            fields["step"] = step
        elif coordinate is not None and name in horizontal:
            fields = {
                "type": "spatial",
                "axis": horizontal[name],
                "extent": _numeric_extent(coordinate),
                "step": regular_step(coordinate.values),
                "reference_system": 4326,
            }
        elif coordinate is not None and _is_vertical(coordinate):
            fields = {
                "type": "spatial",
                "axis": "z",
                "extent": _numeric_extent(coordinate),
                "step": regular_step(coordinate.values),
            }
            if coordinate.attrs.get("units"):
                fields["unit"] = str(coordinate.attrs["units"])
        elif coordinate is not None and coordinate.dtype.kind in "fiu":
            fields = {
                "type": "other",
                "extent": _numeric_extent(coordinate),
                "step": regular_step(coordinate.values),
            }
            if coordinate.attrs.get("units"):
                fields["unit"] = str(coordinate.attrs["units"])
        elif coordinate is not None and coordinate.dtype.kind in "OSU" and size <= 1000:
            fields = {"type": "other", "values": [str(v) for v in np.asarray(coordinate.values)]}
        else:
            fields = {"type": "other", "extent": [0, int(size) - 1]}
            description = description or "index (no coordinate variable)"
        if description:
            fields["description"] = description
        dimensions[name] = fields
    return dimensions


def _is_vertical(variable: xr.Variable | xr.DataArray) -> bool:
    attrs = variable.attrs
    return (
        str(attrs.get("axis", "")).upper() == "Z"
        or str(attrs.get("positive", "")).lower() in ("up", "down")
        or str(attrs.get("standard_name", "")).lower() in _VERTICAL_NAMES
    )


def _numeric_extent(variable: xr.Variable | xr.DataArray) -> list[float | int | None]:
    values = _finite(variable.values)
    if not values.size:
        return [None, None]
    if variable.dtype.kind in "iu":
        return [int(values.min()), int(values.max())]
    return [float(values.min()), float(values.max())]


def _description(variable: xr.Variable | xr.DataArray | None) -> str | None:
    if variable is None:
        return None
    for key in ("long_name", "standard_name"):
        text = variable.attrs.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def cube_variables(dataset: xr.Dataset) -> dict[str, dict[str, Any]]:
    """``cube:variables``: every variable that is not a dimension coordinate. Data variables
    are "data"; coordinates and what CF attributes point at (grid_mapping, bounds,
    climatology) are "auxiliary"."""
    auxiliary = _referenced_variables(dataset)
    variables: dict[str, dict[str, Any]] = {}
    for key, variable in dataset.variables.items():
        name = str(key)
        if variable.dims == (name,):
            continue  # a dimension coordinate: described in cube:dimensions
        is_data = name in dataset.data_vars and name not in auxiliary
        fields: dict[str, Any] = {
            "dimensions": [str(d) for d in variable.dims],
            "type": "data" if is_data else "auxiliary",
        }
        description = variable.attrs.get("long_name")
        if isinstance(description, str) and description.strip():
            fields["description"] = description.strip()
        units = variable.attrs.get("units")
        if isinstance(units, str) and units.strip() and not _is_time(variable):
            fields["unit"] = units.strip()
        variables[name] = fields
    return variables


def _referenced_variables(dataset: xr.Dataset) -> set[str]:
    """Names that CF attributes (grid_mapping, bounds, climatology) point at."""
    names: set[str] = set()
    for variable in dataset.variables.values():
        for attr in _AUXILIARY_ATTRS:
            for source in (variable.attrs, variable.encoding):
                value = source.get(attr)
                if isinstance(value, str):
                    # "crs" or the extended form "crs: lat lon crs2: x y"
                    names.update(t for t in value.replace(":", " : ").split() if t != ":")
    return {n for n in names if n in dataset.variables}


# =========================================================================================
# The catalog (I/O)
# =========================================================================================
class StorageStacIO(StacIO):
    """pystac I/O through ``Storage``: hrefs are local paths, file:// or az:// URLs, or
    https blob URLs of the configured account (the same rules as every other location)."""

    def __init__(self, storage: Storage, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers)
        self.storage = storage

    def location(self, href: HREF) -> Location:
        return parse_location(os.fspath(href), self.storage.settings, what="catalog document")

    def read_text(self, source: HREF, *args: Any, **kwargs: Any) -> str:
        location = self.location(source)
        with _catalog_errors(location, "read"):
            return self.storage.read(location).decode("utf-8")

    def write_text(self, dest: HREF, txt: str, *args: Any, **kwargs: Any) -> None:
        location = self.location(dest)
        with _catalog_errors(location, "write"):
            self.storage.write(location, txt.encode("utf-8"), "application/json")


@contextmanager
def _catalog_errors(location: Location, action: str) -> Iterator[None]:
    """Storage errors become CatalogError naming the location; transient ones stay
    StorageUnavailable (retryable), so the orchestrator tries again."""
    try:
        yield
    except (CatalogError, StorageUnavailable):
        raise
    except PipelineError as exc:
        raise CatalogError(
            f"Could not {action} the catalog document {location.url}: {exc.message}",
            remedy=exc.remedy or None,
        ) from exc
    except Exception as exc:
        raise CatalogError(
            f"Could not {action} the catalog document {location.url}: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class RegisterResult:
    """Where the item, its collection and the catalog root were written (https or file://)."""

    item_url: str
    collection_url: str
    catalog_url: str

    def to_dict(self) -> dict[str, str]:
        return {
            "item_url": self.item_url,
            "collection_url": self.collection_url,
            "catalog_url": self.catalog_url,
        }


@dataclass(frozen=True)
class CatalogPaths:
    """The fixed layout of the static catalog below its root."""

    root: Location
    collection_id: str
    item_id: str

    @property
    def catalog(self) -> Location:
        return self.root.join("catalog.json")

    @property
    def collection_folder(self) -> Location:
        return self.root.join(self.collection_id)

    @property
    def collection(self) -> Location:
        return self.collection_folder.join("collection.json")

    def item(self, item_id: str | None = None) -> Location:
        item_id = item_id or self.item_id
        return self.collection_folder.join(item_id, f"{item_id}.json")


def _href(location: Location) -> str:
    """The href pystac works with: a plain path locally (what its own I/O expects)."""
    return location.path if location.is_local else location.url


def register_item(
    item: pystac.Item,
    *,
    collection_id: str,
    settings: Settings,
    storage: Storage | None = None,
    collection_title: str | None = None,
    collection_description: str | None = None,
) -> RegisterResult:
    """Add (or replace) ``item`` in the static catalog at the settings' catalog location.

    Creates catalog.json and the collection on first use. Writes the item, then rebuilds the
    collection's item links and extent from every item file below the collection, then
    makes sure the catalog links to the collection. Safe to run twice (same files).
    """
    storage = storage or Storage(settings)
    stac_io = StorageStacIO(storage)
    root = Layout.from_settings(settings).catalog
    _check_id(item.id, "item id", root)
    _check_id(collection_id, "collection id", root)
    paths = CatalogPaths(root, collection_id, item.id)

    catalog = _load_catalog(paths.catalog, stac_io)
    collection = _load_collection(
        paths.collection, collection_id, collection_title, collection_description, stac_io
    )

    # Hierarchy in memory: catalog -> collection -> this item (other items by link only).
    catalog.links = [
        link
        for link in catalog.links
        if not (link.rel == pystac.RelType.CHILD and _same(link, paths.collection))
    ]
    _drop_links(collection, HIERARCHY_RELS)
    catalog.add_child(collection, title=collection.title)
    collection.set_self_href(_href(paths.collection))
    item = item.clone()
    _drop_links(item, HIERARCHY_RELS)
    collection.add_item(item)
    item.set_self_href(_href(paths.item()))

    item.save_object(include_self_link=False, dest_href=_href(paths.item()), stac_io=stac_io)

    others = _read_other_items(paths, storage)
    _link_items(collection, paths, others)
    collection.extent = collection_extent([item.to_dict(), *others.values()])
    collection.save_object(
        include_self_link=False, dest_href=_href(paths.collection), stac_io=stac_io
    )
    catalog.save_object(include_self_link=False, dest_href=_href(paths.catalog), stac_io=stac_io)

    result = RegisterResult(
        item_url=http_url(paths.item(), settings),
        collection_url=http_url(paths.collection, settings),
        catalog_url=http_url(paths.catalog, settings),
    )
    emit(
        log,
        "catalog updated",
        stage="register",
        dataset=item.id,
        collection=collection_id,
        items_in_collection=len(others) + 1,
        item_url=result.item_url,
    )
    return result


def remove_item(
    item_id: str, *, collection_id: str, settings: Settings, storage: Storage | None = None
) -> bool:
    """Take ``item_id`` out of the static catalog (unpublish): delete its document, then
    rebuild the collection's item links and extent from the items that remain. Returns
    whether there was an item to remove. The collection stays, even when empty."""
    storage = storage or Storage(settings)
    stac_io = StorageStacIO(storage)
    root = Layout.from_settings(settings).catalog
    _check_id(item_id, "item id", root)
    _check_id(collection_id, "collection id", root)
    paths = CatalogPaths(root, collection_id, item_id)
    if not _exists(paths.item(), storage):
        return False
    with _catalog_errors(paths.item(), "delete"):
        storage.delete([paths.item()])
    if not _exists(paths.collection, storage):
        return True
    collection = _read_object(paths.collection, stac_io, pystac.Collection)
    _drop_links(collection, [pystac.RelType.ITEM])
    others = _read_other_items(paths, storage)
    _link_items(collection, paths, others)
    if others:
        collection.extent = collection_extent(others.values())
    collection.save_object(
        include_self_link=False, dest_href=_href(paths.collection), stac_io=stac_io
    )
    emit(
        log,
        "item removed",
        stage="unpublish",
        dataset=item_id,
        collection=collection_id,
        items_in_collection=len(others),
    )
    return True


def _link_items(
    collection: pystac.Collection, paths: CatalogPaths, others: Mapping[str, Any]
) -> None:
    """Link the collection to the other item documents found below it, in a stable order."""
    for other_id in sorted(others):
        collection.add_link(
            pystac.Link(
                pystac.RelType.ITEM,
                _href(paths.item(other_id)),
                media_type=pystac.MediaType.GEOJSON,
            )
        )
    collection.links.sort(key=_link_order)


def _drop_links(stac_object: pystac.STACObject, rels: Iterable[str]) -> None:
    """Remove links of these relations (they are set again from the catalog layout)."""
    drop = set(rels)
    stac_object.links = [link for link in stac_object.links if str(link.rel) not in drop]


def _same(link: pystac.Link, location: Location) -> bool:
    try:
        return link.get_absolute_href() in (location.path, location.url)
    except Exception:
        return False


def _link_order(link: pystac.Link) -> tuple[int, str]:
    order = {pystac.RelType.ROOT: 0, pystac.RelType.PARENT: 1, pystac.RelType.ITEM: 3}
    return order.get(str(link.rel), 2), (link.get_href(transform_href=False) or "")


def _load_catalog(location: Location, stac_io: StorageStacIO) -> pystac.Catalog:
    if not _exists(location, stac_io.storage):
        catalog = pystac.Catalog(
            id=CATALOG_ID,
            title=CATALOG_TITLE,
            description=CATALOG_DESCRIPTION,
            catalog_type=pystac.CatalogType.SELF_CONTAINED,
        )
    else:
        catalog = _read_object(location, stac_io, pystac.Catalog)
        if type(catalog) is not pystac.Catalog:
            raise CatalogError(
                f"{location.url} is a STAC {type(catalog).__name__}, not a Catalog.",
                remedy="Point PIPELINE_CATALOG at a folder for this pipeline's own catalog.",
            )
    catalog.catalog_type = pystac.CatalogType.SELF_CONTAINED
    catalog.set_self_href(_href(location))
    catalog.set_root(catalog)
    return catalog


def _load_collection(
    location: Location,
    collection_id: str,
    title: str | None,
    description: str | None,
    stac_io: StorageStacIO,
) -> pystac.Collection:
    if not _exists(location, stac_io.storage):
        return pystac.Collection(
            id=collection_id,
            title=title or collection_id,
            description=description
            or f"Virtual Zarr stores of the {collection_id!r} collection of NetCDF/HDF5 files.",
            extent=pystac.Extent(
                pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                pystac.TemporalExtent([[None, None]]),
            ),
            license=COLLECTION_LICENSE,
        )
    collection = _read_object(location, stac_io, pystac.Collection)
    if collection.id != collection_id:
        raise CatalogError(
            f"{location.url} holds the collection {collection.id!r}, not {collection_id!r}.",
            remedy="Move or remove that folder; the catalog layout is {catalog}/{collection id}/.",
        )
    if title:
        collection.title = title
    if description:
        collection.description = description
    return collection


def _read_object[T: pystac.Catalog](location: Location, stac_io: StorageStacIO, kind: type[T]) -> T:
    try:
        return kind.from_file(_href(location), stac_io=stac_io)
    except (CatalogError, StorageUnavailable):
        raise
    except Exception as exc:
        raise CatalogError(
            f"{location.url} is not a readable STAC {kind.__name__}: {type(exc).__name__}: {exc}",
            remedy="Repair or remove the file; the pipeline recreates it when it is missing.",
        ) from exc


def _exists(location: Location, storage: Storage) -> bool:
    with _catalog_errors(location, "check"):
        return storage.exists(location)


def _read_other_items(paths: CatalogPaths, storage: Storage) -> dict[str, dict[str, Any]]:
    """Every item document below the collection except ``paths.item_id``, by id."""
    folder = paths.collection_folder
    with _catalog_errors(folder, "list"):
        listed = storage.list(folder, ("*.json",))
    prefix = folder.url.rstrip("/") + "/"
    found: dict[str, Location] = {}
    for info in listed:
        parts = info.url[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == f"{parts[0]}.json" and parts[0] != paths.item_id:
            found[parts[0]] = paths.item(parts[0])

    def read(location: Location) -> dict[str, Any]:
        with _catalog_errors(location, "read"):
            document = storage.read_json(location)
        if not isinstance(document, dict) or document.get("type") != "Feature":
            raise CatalogError(
                f"{location.url} is not a STAC item.",
                remedy="Repair or remove it; every {item}/{item}.json below a collection is "
                "listed in that collection.",
            )
        return document

    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        documents = list(pool.map(read, found.values()))
    return dict(zip(found, documents, strict=True))


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
            starts.append(_to_utc(str_to_datetime(start)))
        if end:
            ends.append(_to_utc(str_to_datetime(end)))
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
