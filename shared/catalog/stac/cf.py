"""CF conventions -> STAC fields, pure: from an opened dataset, where it is (footprint), when
(time range and step), what it holds (datacube ``cube:dimensions`` and ``cube:variables``) and
what it is called (title, description). No pystac objects and no I/O: plain values and dicts.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from pystac.utils import datetime_to_str

from shared.catalog.stac.documents import to_utc
from shared.model.jsonsafe import json_safe

_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen"}
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese", "degreee"}
_VERTICAL_NAMES = {
    "height", "depth", "altitude", "air_pressure", "atmosphere_sigma_coordinate",
    "atmosphere_hybrid_sigma_pressure_coordinate", "model_level_number",
}  # fmt: skip
_AUXILIARY_ATTRS = ("grid_mapping", "bounds", "climatology")


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


# -- text ----------------------------------------------------------------------------------
def dataset_text(dataset: xr.Dataset) -> dict[str, str]:
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
        return [to_utc(s.to_pydatetime()) for s in stamps]
    return [_cftime_to_datetime(v) for v in values if v is not None]


def _cftime_to_datetime(value: Any) -> datetime:
    """A real-calendar UTC datetime for a cftime date; days a real calendar lacks (30 Feb in
    a 360-day calendar) become the last day of that month."""
    year = min(max(int(value.year), 1), 9999)
    month = int(value.month)
    day = min(int(value.day), calendar.monthrange(year, month)[1])
    return datetime(year, month, day, value.hour, value.minute, value.second, tzinfo=UTC)


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


def cube_variables(
    dataset: xr.Dataset, file_dtypes: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``cube:variables``: every variable that is not a dimension coordinate. Data variables
    are "data"; coordinates and what CF attributes point at (grid_mapping, bounds,
    climatology) are "auxiliary". ``file_dtypes`` names the variables the source files
    decode to another dtype than the store does (packed with float32 attributes: float32
    from the files, float64 from the store): their description says so (datacube v2.2.0 has
    no field for a variable's data type; v2.3.0's ``data_type`` would hold it)."""
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
            "shape": [int(n) for n in variable.shape],  # as xstac gives it
            "attrs": json_safe(dict(variable.attrs)),
        }
        description = variable.attrs.get("long_name")
        if isinstance(description, str) and description.strip():
            fields["description"] = description.strip()
        in_files = (file_dtypes or {}).get(name)
        if in_files and in_files != str(variable.dtype):
            said = decoded_dtype_sentence(str(variable.dtype), in_files)
            before = fields.get("description")
            fields["description"] = f"{before.rstrip('.')}. {said}" if before else said
        units = variable.attrs.get("units")
        if isinstance(units, str) and units.strip() and not _is_time(variable):
            fields["unit"] = units.strip()
        variables[name] = fields
    return variables


def decoded_dtype_sentence(in_store: str, in_files: str) -> str:
    """What a variable's description says when the store decodes it to another dtype than
    the source files (packed with float32 scale_factor/add_offset)."""
    return (
        f"Decodes to {in_store} from this store; the source files, packed with {in_files} "
        f"scale_factor/add_offset, decode to {in_files} (netCDF4, xarray). The values agree "
        f"within {in_files} rounding, as verified before publishing."
    )


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
