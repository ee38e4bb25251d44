"""The catalog's own documents, as first created, and what keeps them valid: the catalog
root, a new collection, a collection's extent from its items, the ids that name catalog
folders. pystac only (no xarray): the catalog I/O (catalog.py) and the release operations
import this without the item builder's libraries, so the Function App starts fast
(bench/cold_start.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pystac
from pystac.utils import str_to_datetime

from shared.model.errors import CatalogError
from shared.model.locations import Location

CATALOG_ID = "virtual-zarr"
CATALOG_TITLE = "Virtual Zarr stores"
CATALOG_DESCRIPTION = (
    "Collections of NetCDF/HDF5 files published as virtual Zarr stores: kerchunk or Icechunk "
    "references to byte ranges of the original files, no data copied."
)
COLLECTION_LICENSE = "other"
# A new collection's time extent: open at both ends until items give it one.
OPEN_INTERVAL: list[list[datetime | None]] = [[None, None]]
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


def to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
