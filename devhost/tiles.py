"""`python -m devhost tiles`: TiTiler-xarray with our reader on 127.0.0.1, over the local
catalog, so a browser can show a map of a published dataset and a notebook can open it.

    python -m devhost tiles [--port 8080] [--store-root DIR] [--catalog DIR]

Serves the TiTiler-xarray routes (consumer.tiles.create_app: /info, /tiles/..., /point/...,
/WebMercatorQuad/map.html) and, as plain files, the store root at /stores/ (where
PIPELINE_STORE_URL points: xpystac downloads kerchunk JSON over HTTP) and the catalog at
/catalog/. Prints a map URL for every item in the catalog.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from shared.model.errors import BadRequest
from shared.model.settings import Settings

DEFAULT_PORT = 8080
STORE_PATH = "/stores"
CATALOG_PATH = "/catalog"


def store_url_for(port: int) -> str:
    return f"http://127.0.0.1:{port}{STORE_PATH}"


def catalog_url_for(port: int) -> str:
    return f"http://127.0.0.1:{port}{CATALOG_PATH}"


def add_tiles_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "tiles", help="serve TiTiler-xarray with our reader over the local catalog"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1")
    parser.add_argument("--store-root", help="the local store root (default: the setting)")
    parser.add_argument("--catalog", help="the local catalog (default: the setting)")


def preview_query(dataset: Any, item_url: str) -> dict[str, str]:
    """Query parameters for a picture of ``dataset``: the variable and time step the
    pipeline's preview shows (shared.catalog.stac.preview: the main variable at the middle
    time step), stretched to the values of that step."""
    from shared.catalog.stac.preview import main_variable

    found = main_variable(dataset)
    if found is None or "time" not in dataset[found[0]].dims:
        raise BadRequest(f"{item_url} has no variable on a latitude/longitude grid over time.")
    variable = found[0]
    times = dataset["time"].values
    when = times[len(times) // 2]
    step = dataset[variable].sel(time=when).values
    low, high = float(np.nanmin(step)), float(np.nanmax(step))
    return {
        "url": item_url,
        "variable": variable,
        "sel": f"time={str(when)[:19]}",
        "rescale": f"{low:.6g},{high:.6g}",
        "colormap_name": "viridis",
    }


def tile_url(base: str, query: dict[str, str], z: int = 0, x: int = 0, y: int = 0) -> str:
    return f"{base}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{urlencode(query)}"


def map_url(base: str, query: dict[str, str]) -> str:
    return f"{base}/WebMercatorQuad/map.html?{urlencode(query)}"


def tile_query(item_url: str, settings: Settings) -> dict[str, str]:
    """The query of a tile and map of the item (preview_query) for the URLs the demo prints.
    The preview picture itself is the pipeline's: the item's ``thumbnail`` asset."""
    from consumer.reader import open_item

    with open_item(item_url, settings) as dataset:
        return preview_query(dataset, item_url)


def served_settings(
    settings: Settings, store_root: Path, catalog: Path, port: int
) -> tuple[Settings, dict[str, str]]:
    """What the tile server reads with: local paths allowed, store hrefs under its /stores/,
    and the URLs it serves as files (/stores/, /catalog/) mapped to those files, so a
    request may name an item by the URL this server gives it."""
    return (
        settings.with_changes(
            allow_local_paths=True,
            store_root=str(store_root),
            catalog=str(catalog),
            store_url=store_url_for(port),
            catalog_url=catalog_url_for(port),
        ),
        {store_url_for(port): str(store_root), catalog_url_for(port): str(catalog)},
    )


def mount_files(app: Any, store_root: Path, catalog: Path) -> None:
    """Serve the store root at /stores/ and the catalog at /catalog/ as plain files (with
    HTTP range requests, which Icechunk's HTTP storage needs)."""
    from starlette.staticfiles import StaticFiles

    if store_root.is_dir():
        app.mount(STORE_PATH, StaticFiles(directory=store_root), name="stores")
    if catalog.is_dir():
        app.mount(CATALOG_PATH, StaticFiles(directory=catalog), name="catalog")


def tiles_command(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from consumer.tiles import configure, create_app

    store_root = Path(args.store_root or settings.store_root).resolve()
    catalog = Path(args.catalog or settings.catalog).resolve()
    base = f"http://127.0.0.1:{args.port}"
    configure(*served_settings(settings, store_root, catalog, args.port))
    app = create_app()
    mount_files(app, store_root, catalog)
    try:  # the port first: a busy one is said plainly, before anything else is printed
        listening = socket.create_server(("127.0.0.1", args.port))
    except OSError as exc:
        print(
            f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}). Stop what "
            "uses it (another `devhost tiles`?), or pass --port with another port.",
            file=sys.stderr,
        )
        return 1
    print(f"TiTiler-xarray with the pipeline's reader on {base} (docs: {base}/docs)")
    print(f"  stores  {store_root} at {base}{STORE_PATH}/   catalog {catalog} at {base}/catalog/")
    for item in sorted(catalog.glob("*/*/*.json")) if catalog.is_dir() else []:
        if json.loads(item.read_text()).get("type") == "Feature":
            url = f"{base}{CATALOG_PATH}/{item.relative_to(catalog).as_posix()}"
            print(f"  map of {item.stem}: {base}/WebMercatorQuad/map.html?url={url}&variable=...")
    print("Press Ctrl+C to stop.", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listening])
    return 0
