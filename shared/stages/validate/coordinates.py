"""Coordinate and static summaries: what a file's 1-D dimension coordinates and its variables
that do not run along time hold, from their raw values, so the gate can compare grids and
order files without reading any file again (docs/findings.md, "Coordinate summaries")."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import replace
from typing import Any

import cftime
import numpy as np

from shared.model.jsonsafe import json_safe
from shared.model.settings import Settings
from shared.stages.validate.model import (
    CoordinateSummary,
    FileHeader,
    Monotonic,
    StaticSummary,
    VariableInfo,
)

# Coordinates up to this many stored bytes are read whole (digest, order, duplicates); larger
# ones only at their two ends. A multiple of inline_max_bytes: 1 MiB with the defaults.
COORDINATE_READ_FACTOR = 16

# "<unit> since <reference date>": the CF form of a time coordinate's units.
_TIME_UNITS = re.compile(r"^\s*[A-Za-z]+\s+since\s+\S", re.IGNORECASE)

# A variable with up to this many values shows them in its summary (scalars, small vectors).
STATIC_VALUES_SHOWN = 8


def coordinate_read_limit(settings: Settings) -> int:
    """Coordinates of up to this many stored bytes are read whole; larger ones at their ends."""
    return settings.inline_max_bytes * COORDINATE_READ_FACTOR


def is_dimension_coordinate(var: VariableInfo) -> bool:
    """A 1-D variable whose only dimension has its own name (time, lat, lon, level, ...)."""
    return var.dimensions == (var.name,) and len(var.shape) == 1


def summarize_coordinate(
    var: VariableInfo, values: np.ndarray, complete: bool
) -> CoordinateSummary:
    """The summary of one coordinate from its raw values (all of them when ``complete``, else
    its first and last)."""
    values = np.asarray(values).reshape(-1)
    first = _raw_value(values[0]) if values.size else None
    last = _raw_value(values[-1]) if values.size else None
    monotonic: Monotonic | None = None
    duplicates: bool | None = None
    digest: str | None = None
    if complete:
        digest = hashlib.sha256(_canonical_bytes(values)).hexdigest()
        monotonic, duplicates = _order(values)
    units = var.encoding.get("units")
    calendar = var.encoding.get("calendar")
    summary = CoordinateSummary(
        size=int(var.shape[0]),
        dtype=var.dtype,
        first=first,
        last=last,
        digest=digest,
        monotonic=monotonic,
        duplicates=duplicates,
        units=None if units is None else str(units),
        calendar=None if calendar is None else str(calendar),
    )
    if summary.units is None or not _TIME_UNITS.match(summary.units) or not values.size:
        return summary
    return replace(
        summary,
        first_decoded=_decoded_time(values[0], var.encoding),
        last_decoded=_decoded_time(values[-1], var.encoding),
    )


def _raw_value(value: Any) -> Any:
    """A stored value as JSON: numbers as they are (float32 widens exactly), strings as text."""
    return json_safe(value.item() if isinstance(value, np.generic) else value)


def _canonical_bytes(values: np.ndarray) -> bytes:
    """The values as little-endian bytes of their dtype; strings as (length, UTF-8) pairs."""
    if values.dtype.kind in "biufcmMSUV":
        little = values.astype(values.dtype.newbyteorder("<"), copy=False)
        return np.ascontiguousarray(little).tobytes()
    parts = []
    for value in values:
        text = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts += [len(text).to_bytes(8, "little"), text]
    return b"".join(parts)


def _order(values: np.ndarray) -> tuple[Monotonic, bool]:
    """(strict monotonicity, any value repeated). NaN compares as neither up nor down."""
    if values.size < 2:
        return "increasing", False
    before, after = values[:-1], values[1:]
    with np.errstate(invalid="ignore"):
        if bool(np.all(after > before)):
            return "increasing", False
        if bool(np.all(after < before)):
            return "decreasing", False
        monotonic: Monotonic = "constant" if bool(np.all(after == before)) else "no"
    try:
        duplicates = int(np.unique(values).size) < values.size  # NaNs count as equal
    except TypeError:  # values numpy cannot sort (mixed objects): compare as text
        duplicates = len({str(v) for v in values}) < values.size
    return monotonic, duplicates


def _decoded_time(raw: Any, encoding: dict[str, Any]) -> str | None:
    """One raw time value as an ISO date in the coordinate's calendar, decoded as xarray does
    (missing values masked, then scale_factor/add_offset, then cftime); None if it cannot be."""
    number = raw.item() if isinstance(raw, np.generic) else raw
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    if (isinstance(number, float) and math.isnan(number)) or number in _missing_values(encoding):
        return None
    scale, offset = encoding.get("scale_factor"), encoding.get("add_offset")
    if isinstance(scale, int | float):
        number = number * scale
    if isinstance(offset, int | float):
        number = number + offset
    calendar = str(encoding.get("calendar") or "standard").lower()
    try:
        # Real-world calendars give Python datetimes where they can, the others cftime dates;
        # both print the same way (_iso).
        date = cftime.num2date(
            number, str(encoding["units"]), calendar=calendar, only_use_cftime_datetimes=False
        )
    except Exception:  # cftime raises ValueError/TypeError/OverflowError on bad units or dates
        return None
    return _iso(date)


def _missing_values(encoding: dict[str, Any]) -> list[int | float]:
    found: list[int | float] = []
    for key in ("_FillValue", "missing_value"):
        value = encoding.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int | float) and not isinstance(item, bool):
                found.append(item)
    return found


def _iso(date: Any) -> str:
    """YYYY-MM-DDTHH:MM:SS[.ffffff] for datetime and cftime dates alike (sorts as text for
    years 0-9999)."""
    text = (
        f"{date.year:04d}-{date.month:02d}-{date.day:02d}"
        f"T{date.hour:02d}:{date.minute:02d}:{date.second:02d}"
    )
    return text + (f".{date.microsecond:06d}" if date.microsecond else "")


# -- variables that do not run along time -------------------------------------------------------
def summarize_static(var: VariableInfo, values: np.ndarray | None) -> StaticSummary:
    if values is None:
        return StaticSummary(var.shape, var.dtype, var.nbytes, None)
    flat = np.asarray(values).reshape(-1)
    shown = [_raw_value(v) for v in flat] if flat.size <= STATIC_VALUES_SHOWN else None
    digest = hashlib.sha256(_canonical_bytes(flat)).hexdigest()
    return StaticSummary(var.shape, var.dtype, var.nbytes, digest, shown)


def is_static(var: VariableInfo, header: FileHeader) -> bool:
    """A variable that runs along no time coordinate and is not a dimension coordinate: the
    same in every file of a collection concatenated along time (the gate checks it)."""
    if is_dimension_coordinate(var):
        return False
    times = {
        name
        for name, c in header.coordinates.items()
        if c.units is not None and _TIME_UNITS.match(c.units)
    }
    return not times.intersection(var.dimensions)
