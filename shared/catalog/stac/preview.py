"""The preview a person reads, pure: one time step of the dataset's main data variable drawn
as a map with a title (the dataset, the variable's long name, the time step), a colour bar
and its units, as a PNG; and the ``thumbnail`` asset and ``preview`` link that show it (STAC
best practices: a thumbnail asset on the item and the collection, the same URL as a
``preview`` link for clients that read no assets).

Memory stays small: one 2-D slice is read, every dimension but the two horizontal ones at a
single index, and those strided down to at most ``MAX_SIDE`` values each. matplotlib is
imported inside ``draw_preview`` (its Agg canvas, no pyplot and no global state), so the
Function App loads without it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import xarray as xr

from shared.catalog.stac.cf import describe_footprint
from shared.catalog.stac.collection import PNG, THUMBNAIL_ASSET_KEY

MAX_SIDE = 720  # values per horizontal dimension read and drawn
FIGURE_INCHES = (7.2, 4.2)
FIGURE_DPI = 100  # 720 x 420 pixels


class NothingToDraw(Exception):
    """Why the data gets no preview (the item is published without a thumbnail)."""


@dataclass(frozen=True)
class Preview:
    """The PNG and what it shows."""

    png: bytes
    variable: str
    when: str | None
    title: str


def main_variable(dataset: xr.Dataset) -> tuple[str, str, str] | None:
    """The data variable a map shows: the largest one over both horizontal coordinates (the
    CF latitude and longitude; of equal ones, the first by name), with those coordinates'
    names; None when the data has no such variable."""
    footprint = describe_footprint(dataset)
    lat, lon = footprint.lat_name, footprint.lon_name
    if lat is None or lon is None:
        return None
    horizontal = set(dataset[lat].dims) | set(dataset[lon].dims)
    candidates = [
        (array.size, str(name))
        for name, array in dataset.data_vars.items()
        if horizontal <= set(array.dims)
        and len(horizontal) == 2
        and np.issubdtype(array.dtype, np.number)
    ]
    if not candidates:
        return None
    # the largest; of equal ones the first by name (each store format lists variables in
    # its own order, and every format's preview should show the same variable)
    return min(candidates, key=lambda c: (-c[0], c[1]))[1], lat, lon


def _step_text(value: Any) -> str:
    """A time step as a person reads it: 2024-01-15 12:00 (cftime dates as they print)."""
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="m")).replace("T", " ")
    return str(value)[:16]


def _slice(
    dataset: xr.Dataset, variable: str, lat: str, lon: str, concat_dim: str
) -> tuple[xr.DataArray, str | None, list[str]]:
    """The one 2-D slice drawn: the middle step of the concat dimension, the first index of
    any other non-horizontal dimension, the horizontal ones strided to MAX_SIDE."""
    array = dataset[variable]
    horizontal = set(dataset[lat].dims) | set(dataset[lon].dims)
    selection: dict[Hashable, Any] = {}
    when: str | None = None
    others: list[str] = []
    for dim in array.dims:
        size = array.sizes[dim]
        if dim in horizontal:
            selection[dim] = slice(None, None, max(1, math.ceil(size / MAX_SIDE)))
            continue
        index = size // 2 if dim == concat_dim else 0
        selection[dim] = index
        label = dataset[dim].values[index] if dim in dataset.coords else index
        if dim == concat_dim:
            when = _step_text(label)
        else:
            others.append(f"{dim}={_step_text(label)}")
    return array.isel(selection), when, others


def draw_preview(dataset: xr.Dataset, dataset_id: str, concat_dim: str = "time") -> Preview:
    """Draw one time step of the main data variable. NothingToDraw when the data has no
    variable on a latitude/longitude grid, the step drawn has no finite value, or matplotlib
    cannot draw its coordinates (a picture never stops a publication; reading the slice is
    the store's, and its errors are the store's)."""
    found = main_variable(dataset)
    if found is None:
        raise NothingToDraw("no numeric data variable on a latitude/longitude grid")
    variable, lat, lon = found
    picked, when, others = _slice(dataset, variable, lat, lon, concat_dim)
    values = np.asarray(picked.values, dtype="float64")
    if not np.isfinite(values).any():
        raise NothingToDraw(f"{variable} has no finite value at the step drawn ({when})")
    lats = np.asarray(picked[lat].values, dtype="float64")
    lons = np.asarray(picked[lon].values, dtype="float64")
    if picked[lat].ndim == 1 and picked.dims.index(picked[lat].dims[0]) > picked.dims.index(
        picked[lon].dims[0]
    ):
        values = values.T  # rows must follow latitude
    attrs = dataset[variable].attrs
    long_name = str(attrs.get("long_name") or attrs.get("standard_name") or variable)
    units = str(attrs.get("units") or "").strip()
    name = str(dataset.attrs.get("title") or dataset_id).strip()
    subtitle = f"{long_name} ({variable})" + (f", {when}" if when else "")
    if others:
        subtitle += f", {', '.join(others)}"
    try:
        png = _draw(lons, lats, values, title=f"{name}\n{subtitle}", units=units, lat=lat, lon=lon)
    except Exception as exc:  # e.g. coordinates with gaps: pcolormesh refuses NaN in x or y
        raise NothingToDraw(f"matplotlib could not draw {variable}: {exc}") from exc
    return Preview(png=png, variable=variable, when=when, title=f"{name}: {subtitle}")


def _draw(
    lons: np.ndarray,
    lats: np.ndarray,
    values: np.ndarray,
    *,
    title: str,
    units: str,
    lat: str,
    lon: str,
) -> bytes:
    # Imported here: the Function App loads without matplotlib (tests/test_function_app.py).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    finite = values[np.isfinite(values)]
    mesh = axes.pcolormesh(
        lons,
        lats,
        np.ma.masked_invalid(values),
        shading="auto",
        cmap="viridis",
        vmin=float(finite.min()),
        vmax=float(finite.max()),
    )
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(f"{lon} (degrees east)")
    axes.set_ylabel(f"{lat} (degrees north)")
    bar = figure.colorbar(mesh, ax=axes, shrink=0.9)
    bar.set_label(units or "(no units given)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def thumbnail_asset(href: str, preview: Preview) -> pystac.Asset:
    """The item's (or collection's) ``thumbnail`` asset for a preview at ``href``."""
    return pystac.Asset(
        href=href,
        title=f"Preview: {preview.title}",
        media_type=PNG,
        roles=[THUMBNAIL_ASSET_KEY],
    )


def preview_link(href: str, title: str | None) -> pystac.Link:
    """The ``preview`` link to the same picture, for clients that read links only."""
    return pystac.Link("preview", href, media_type=PNG, title=title)
