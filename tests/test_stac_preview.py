"""The preview a person reads: drawn by the register stage from the verified store (one time
step of the main data variable, with a title, a colour bar and its units), written beside
the store, and shown by the item's and the collection's thumbnail asset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
from matplotlib.image import imread

from devhost.samples import SampleSpec, write_sample_files
from shared.catalog.stac.preview import NothingToDraw, draw_preview, main_variable
from shared.model.request import PipelineRequest
from tests.helpers import run_pipeline
from tests.stac_schemas import validation_errors
from tests.test_stac import write_station_files

SPEC = SampleSpec(files=3, lat=18, lon=36)


def _path(href: str) -> Path:
    return Path(href.removeprefix("file://"))


@pytest.mark.parametrize("store_format", ["kerchunk-json", "icechunk"])
def test_the_item_and_collection_show_a_readable_preview_beside_the_store(
    tmp_path, local_settings, store_format
):
    write_sample_files(tmp_path / "src", SPEC)
    request = {"source": str(tmp_path / "src"), "dataset_id": "tas", "format": store_format}
    run = run_pipeline(PipelineRequest.from_dict(request), local_settings)

    item = pystac.Item.from_file(run.item_url.removeprefix("file://"))
    thumbnail = item.assets["thumbnail"]
    assert (thumbnail.media_type, thumbnail.roles) == ("image/png", ["thumbnail"])
    assert "Daily precipitation (pr), 2024-01-02" in (thumbnail.title or "")
    picture = _path(thumbnail.href)
    assert picture.parent == Path(local_settings.store_root) / "tas"  # beside the store
    assert picture.name == f"{run.run_id}.preview.png"  # pruned with its run's store
    pixels = imread(picture)
    height, width = pixels.shape[:2]
    assert 300 <= height <= 1000 and 500 <= width <= 1500 and pixels.shape[2] in (3, 4)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 50  # a map, not blank
    previews = [link for link in item.links if link.rel == "preview"]
    assert [link.href for link in previews] == [thumbnail.href]

    collection = json.loads((Path(local_settings.catalog) / "tas" / "collection.json").read_text())
    assert collection["assets"]["thumbnail"]["href"] == thumbnail.href
    assert collection["assets"]["thumbnail"]["roles"] == ["thumbnail"]
    published = json.loads(Path(run.item_url.removeprefix("file://")).read_text())
    for document in (published, collection):
        assert validation_errors(document) == {}


def _grid(**variables: tuple[tuple[str, ...], np.ndarray, dict]) -> xr.Dataset:
    return xr.Dataset(
        {name: xr.Variable(dims, data, attrs) for name, (dims, data, attrs) in variables.items()},
        coords={
            "time": ("time", np.array(["2024-01-01", "2024-01-02", "2024-01-03"], "M8[ns]")),
            "lat": ("lat", np.linspace(-60, 60, 5), {"units": "degrees_north"}),
            "lon": ("lon", np.linspace(0, 350, 8), {"units": "degrees_east"}),
        },
    )


def test_the_preview_draws_the_largest_variable_on_the_grid_at_the_middle_step():
    field = np.arange(3 * 5 * 8, dtype="float32").reshape(3, 5, 8)
    dataset = _grid(
        series=(("time",), np.zeros(3), {}),
        sst=(("time", "lat", "lon"), field, {"long_name": "Sea surface temperature"}),
    )
    assert main_variable(dataset) == ("sst", "lat", "lon")
    preview = draw_preview(dataset, "ocean")
    assert preview is not None
    assert (preview.variable, preview.when) == ("sst", "2024-01-02 00:00")
    assert preview.title == "ocean: Sea surface temperature (sst), 2024-01-02 00:00"
    assert preview.png.startswith(b"\x89PNG")


def test_data_with_nothing_to_map_has_no_preview_and_says_why():
    stations = xr.Dataset({"tas": (("time", "station"), np.ones((3, 4)))})
    with pytest.raises(NothingToDraw, match="no numeric data variable on a latitude/longitude"):
        draw_preview(stations, "stations")
    empty = _grid(tas=(("time", "lat", "lon"), np.full((3, 5, 8), np.nan), {}))
    with pytest.raises(NothingToDraw, match="tas has no finite value at the step drawn"):
        draw_preview(empty, "empty")


def test_a_station_dataset_publishes_without_a_thumbnail(tmp_path, local_settings):
    """Data with no latitude/longitude grid: the item is published, with no thumbnail."""
    write_station_files(tmp_path / "stations")
    request = {"source": str(tmp_path / "stations"), "dataset_id": "stations"}
    run = run_pipeline(PipelineRequest.from_dict(request), local_settings)
    item = pystac.Item.from_file(run.item_url.removeprefix("file://"))
    assert "thumbnail" not in item.assets and not item.get_links("preview")
    assert "data" in item.assets
