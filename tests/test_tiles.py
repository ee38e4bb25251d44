"""What we publish, served: a real TiTiler-xarray app with our reader (in-process client),
for every output format, and xpystac opening a published kerchunk item over loopback HTTP."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
from fastapi.testclient import TestClient

from consumer.reader import open_item
from consumer.tiles import configure, create_app
from devhost.samples import SampleSpec, write_sample_files
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


@pytest.mark.parametrize("store_format", FORMATS)
def test_titiler_serves_info_tiles_and_points_equal_to_the_sources(
    tmp_path, local_settings, client, store_format
):
    paths, report = publish(tmp_path, local_settings, store_format)
    for url in (report.item_url, report.store_url):  # an item or a store
        keys = client.get("/dataset/keys", params={"url": url})
        assert keys.status_code == 200, keys.text
        assert {"tas", "pr"} <= set(keys.json())
        info = client.get("/info", params={"url": url, "variable": "tas", "show_times": True})
        assert info.status_code == 200, info.text
        times = [d for _, d in info.json()["band_descriptions"]]
        assert [t[:10] for t in times] == ["2024-01-01", "2024-01-02", "2024-01-03"]

    query = {"url": report.item_url, "variable": "tas", "sel": "time=2024-01-02"}
    tile = client.get("/tiles/WebMercatorQuad/1/1/0.png", params={**query, "rescale": "250,310"})
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert tile.content.startswith(PNG)

    with xr.open_dataset(paths[1]) as source:  # the file of 2024-01-02, read directly
        for lon, lat in ((10.5, 20.5), (-120.0, -45.0), (170.0, 80.0)):
            point = client.get(f"/point/{lon},{lat}", params=query)
            assert point.status_code == 200, point.text
            expected = source.tas.isel(time=0).sel(lon=lon, lat=lat, method="nearest")
            assert np.float32(point.json()["values"][0]) == np.float32(expected)


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
