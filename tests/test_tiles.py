"""What we publish, served: a real TiTiler-xarray app with our reader (in-process client),
for every output format, and xpystac opening a published kerchunk item over loopback HTTP."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attr
import numpy as np
import pystac
import pytest
import xarray as xr
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image
from titiler.xarray.factory import TilerFactory
from titiler.xarray.io import Reader

from consumer.reader import open_item
from consumer.tiles import configure, create_app
from devhost.samples import SampleSpec, open_collection, write_sample_files
from devhost.tiles import (
    DEFAULT_PORT,
    preview_query,
    served_settings,
    store_url_for,
    tile_query,
)
from shared.model.request import FORMATS, PipelineRequest
from tests.helpers import open_sources, run_pipeline

SPEC = SampleSpec(files=3, lat=18, lon=36)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def client(local_settings) -> Iterator[TestClient]:
    configure(local_settings)
    try:
        with TestClient(create_app()) as app:
            yield app
    finally:
        configure(None)


def publish(tmp_path: Path, settings, store_format: str) -> tuple[list[Path], object]:
    paths = write_sample_files(tmp_path / "src", SPEC)
    request = {"source": str(tmp_path / "src"), "dataset_id": "tas", "format": store_format}
    return paths, run_pipeline(PipelineRequest.from_dict(request), settings)


@functools.cache
def _source_folder(src_path: str) -> xr.Dataset:
    return open_collection(sorted(Path(src_path).glob("*.nc"))).load()


def open_source_folder(src_path: str, **_: Any) -> xr.Dataset:
    """TiTiler-xarray opener for a folder of source files, opened by xarray itself (read
    once: a view of it per request, which TiTiler's close leaves alone)."""
    view = _source_folder(src_path).copy(deep=False)
    view.set_close(None)
    return view


@attr.s
class SourceReader(Reader):
    """TiTiler-xarray's own Reader over the source files: no store, none of our code."""

    opener: Any = attr.ib(default=open_source_folder)


@pytest.fixture
def sources_tiler() -> Iterator[TestClient]:
    """The same TiTiler-xarray routes rendering the source files: what a tile of the store
    must equal, pixel for pixel (same rescale, colormap, resampling and PNG encoding)."""
    app = FastAPI()
    app.include_router(TilerFactory(reader=SourceReader).router)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        _source_folder.cache_clear()


def pixels(answer: Response) -> np.ndarray:
    """A PNG tile, decoded: (256, 256, bands + alpha)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png" and answer.content.startswith(PNG)
    return np.asarray(Image.open(io.BytesIO(answer.content)))


DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
# Each variable as a map: tas in colour (rescaled, viridis), pr grey (its missing values are
# transparent). The world (0/0/0), a quadrant and a tile of zoom 2.
RENDER = {"tas": {"rescale": "265,297", "colormap_name": "viridis"}, "pr": {"rescale": "0,20"}}
TILES = ((0, 0, 0), (1, 1, 0), (2, 1, 2))
# Cells whose centres the points ask for (lat index, lon index): the four corners, the
# middle, and others; pr's missing values are found and added in the test.
CELLS = ((0, 0), (0, 35), (17, 0), (17, 35), (8, 17), (3, 30), (12, 5), (15, 22))


@pytest.mark.parametrize("store_format", FORMATS)
def test_titiler_serves_info_tiles_and_points_equal_to_the_sources(
    tmp_path, local_settings, client, sources_tiler, store_format
):
    """Tiles of the store equal tiles of the source files rendered by the same TiTiler
    routes, over every pixel (alpha included), at every time step; points equal the source
    files' values at every time step, as all the steps at once and as one step each."""
    paths, report = publish(tmp_path, local_settings, store_format)
    for url in (report.item_url, report.store_url):  # an item or a store
        keys = client.get("/dataset/keys", params={"url": url})
        assert keys.status_code == 200, keys.text
        assert {"tas", "pr"} <= set(keys.json())
        info = client.get("/info", params={"url": url, "variable": "tas", "show_times": True})
        assert info.status_code == 200, info.text
        times = [d for _, d in info.json()["band_descriptions"]]
        assert [t[:10] for t in times] == list(DAYS)

    sources = open_sources(paths)
    source_url = str(paths[0].parent)
    for variable, render in RENDER.items():
        for day, (z, x, y) in [
            *((day, TILES[0]) for day in DAYS),
            *((DAYS[1], t) for t in TILES[1:]),
        ]:
            query = {"variable": variable, "sel": f"time={day}", **render}
            route = f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
            served = pixels(client.get(route, params={**query, "url": report.item_url}))
            expected = pixels(sources_tiler.get(route, params={**query, "url": source_url}))
            assert served.shape == expected.shape == (256, 256, 4 if variable == "tas" else 2)
            unequal = np.argwhere((served != expected).any(axis=-1))
            where = f"{variable} {day} tile {z}/{x}/{y}"
            assert len(unequal) == 0, f"{where}: {len(unequal)} pixels differ: {unequal[:3]}"
            opaque = expected[..., -1] == 255
            assert opaque.mean() > 0.9  # the tile shows the data,
            assert len(np.unique(expected[opaque][:, :-1], axis=0)) > 20  # in many shades
            if variable == "pr" and z == 0:
                assert not opaque.all()  # and the world's missing values, transparent

    missing = [(int(j), int(i)) for _, j, i in np.argwhere(np.isnan(sources.pr.values))[:3]]
    for j, i in (*CELLS, *missing):
        lon, lat = float(sources.lon[i]), float(sources.lat[j])
        for variable in RENDER:  # every time step at once
            cell = [None if np.isnan(v) else v for v in sources[variable][:, j, i].values.tolist()]
            query = {"url": report.item_url, "variable": variable}
            answer = client.get(f"/point/{lon},{lat}", params=query)
            assert answer.status_code == 200, answer.text
            assert answer.json()["values"] == cell, (variable, lon, lat)
        for t, day in enumerate(DAYS):  # one time step, as a map of that day asks
            query = {"url": report.item_url, "variable": "tas", "sel": f"time={day}"}
            answer = client.get(f"/point/{lon},{lat}", params=query)
            assert answer.status_code == 200, answer.text
            assert answer.json()["values"] == [sources.tas[t, j, i].item()], (lon, lat, day)


def test_a_url_that_is_not_ours_gets_a_clear_error(tmp_path, local_settings, client):
    (tmp_path / "notes.txt").write_text("hello")
    answer = client.get("/info", params={"url": str(tmp_path / "notes.txt"), "variable": "tas"})
    assert answer.status_code == 400
    assert "neither a STAC item nor a store" in answer.text


def test_the_tile_server_opens_the_item_by_the_url_it_serves_it_at(tmp_path, local_settings):
    """`devhost tiles` serves the catalog at /catalog/: that URL of an item is no blob URL
    (it used to be answered 400 "no storage account is configured")."""
    settings = local_settings.with_changes(store_url=store_url_for(DEFAULT_PORT))
    publish(tmp_path, settings, "kerchunk-json")
    catalog, stores = Path(settings.catalog), Path(settings.store_root)
    configure(*served_settings(settings, stores, catalog, DEFAULT_PORT))
    try:
        with TestClient(create_app()) as app:
            url = f"http://127.0.0.1:{DEFAULT_PORT}/catalog/tas/tas/tas.json"
            keys = app.get("/dataset/keys", params={"url": url})
            assert keys.status_code == 200, keys.text
            assert {"tas", "pr"} <= set(keys.json())
            info = app.get("/info", params={"url": url, "variable": "tas"})
            assert info.status_code == 200, info.text
    finally:
        configure(None)


def test_the_demo_tile_shows_the_middle_time_step_as_a_png(tmp_path, local_settings):
    _, report = publish(tmp_path, local_settings, "kerchunk-json")
    query = tile_query(report.item_url, local_settings)
    # the variable and step the preview shows
    assert query["variable"] == "pr" and query["sel"].startswith("time=2024-01-02")
    with open_item(report.item_url, local_settings) as dataset:
        assert preview_query(dataset, report.item_url) == query
    configure(local_settings)
    try:
        with TestClient(create_app()) as app:
            tile = app.get("/tiles/WebMercatorQuad/0/0/0.png", params=query)
    finally:
        configure(None)
    assert tile.status_code == 200, tile.text
    assert tile.content.startswith(PNG)


@pytest.fixture
def served(tmp_path) -> Iterator[str]:
    """The store root over loopback HTTP (as `python -m devhost tiles` serves it); yields
    the URL the store root is served at (PIPELINE_STORE_URL)."""
    root = tmp_path / "stores"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_xpystac_opens_a_published_kerchunk_item_with_one_xarray_call(
    tmp_path, local_settings, served
):
    settings = local_settings.with_changes(store_root=str(tmp_path / "stores"), store_url=served)
    paths, report = publish(tmp_path, settings, "kerchunk-json")
    item = pystac.Item.from_file(report.item_url.removeprefix("file://"))
    asset = item.assets["data"]
    assert asset.href.startswith("http://127.0.0.1:")
    assert asset.media_type == "application/json" and {"references", "data"} <= set(asset.roles)

    opened = xr.open_dataset(asset)  # xpystac's engine: no other argument
    xr.testing.assert_identical(opened.load(), open_sources(paths))

    # the same store as the collection's asset (as the Planetary Computer's references)
    collection = item.get_collection()
    assert collection is not None
    (key,) = collection.get_assets(role="latest-version")
    assert key == f"tas@{item.properties['version']}"
    from_collection = xr.open_dataset(collection.assets[key])
    xr.testing.assert_identical(from_collection.load(), open_sources(paths))
