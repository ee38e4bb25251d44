"""Register stage: the STAC item built from a real dataset, and the static catalog it lands in
(a local folder, and a container in Azurite)."""

from __future__ import annotations

import ast
import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import icechunk
import netCDF4
import numpy as np
import pystac
import pytest
import xarray as xr
from obspec_utils.registry import ObjectStoreRegistry
from obstore.store import LocalStore
from virtualizarr import open_virtual_dataset
from virtualizarr.parsers import HDFParser

from consumer.reader import read_item
from devhost.samples import SampleSpec, open_collection, write_sample_files
from shared.catalog.stac import (
    StorageStacIO,
    build_item,
    coordinate_kind,
    normalize_longitudes,
    register_item,
    time_step,
)
from shared.io.storage import Storage
from shared.model.errors import CatalogError
from shared.model.locations import Location, parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import AZURITE_KEY, Settings
from tests.helpers import run_pipeline
from tests.matrix_cases import packed_single_precision
from tests.stac_schemas import validation_errors

PROPERTIES = {
    "run_id": "run-1",
    "source_file_count": 4,
    "source_etag_digest": "0123abcd",
    "libraries": {"virtualizarr": "2.8.0"},
    "created": "2026-11-02T10:00:00+00:00",
}


# -- datasets written in the test ----------------------------------------------------------
def write_grid_files(
    folder: Path,
    *,
    lats: np.ndarray,
    lons: np.ndarray,
    days: int = 3,
    start: date = date(2024, 1, 1),
    lon_units: str = "degrees_east",
) -> list[Path]:
    """Daily files of one variable on a lat/lon grid (any longitude convention)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(days):
        path = folder / f"grid_{start + timedelta(days=i):%Y%m%d}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("lat", len(lats))
            ds.createDimension("lon", len(lons))
            time = ds.createVariable("time", "f8", ("time",))
            time.units = f"days since {start:%Y-%m-%d}"
            time.standard_name = "time"
            time[:] = [i]
            lat = ds.createVariable("lat", "f4", ("lat",))
            lat.units = "degrees_north"
            lat[:] = lats
            lon = ds.createVariable("lon", "f4", ("lon",))
            lon.units = lon_units
            lon[:] = lons
            sst = ds.createVariable("sst", "f4", ("time", "lat", "lon"))
            sst.long_name = "Sea surface temperature"
            sst.units = "degC"
            sst[:] = np.full((1, len(lats), len(lons)), 15.0, dtype="f4")
        paths.append(path)
    return paths


def write_station_files(folder: Path, days: int = 3) -> list[Path]:
    """River gauges: time x station, no latitude or longitude anywhere."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(days):
        path = folder / f"flow_{i:02d}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("station", 5)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = "hours since 2024-03-01 00:00"
            time[:] = [6 * i]
            flow = ds.createVariable("flow", "f4", ("time", "station"))
            flow.long_name = "River discharge"
            flow.units = "m3 s-1"
            flow[:] = np.arange(5, dtype="f4")[None, :]
        paths.append(path)
    return paths


@pytest.fixture
def sample_dataset(sample_files: list[Path]) -> xr.Dataset:
    return open_collection(sample_files)


def item_for(
    dataset: xr.Dataset,
    settings: Settings,
    *,
    dataset_id: str = "tas-daily",
    store_format: str = "kerchunk-json",
    source_kind: str = "local",
    store: Location | None = None,
    virtual_chunk_prefix: str | None = None,
) -> pystac.Item:
    if store is None:
        suffix = {"kerchunk-json": ".json", "kerchunk-parquet": ".parq", "icechunk": ".icechunk"}
        store = parse_location(
            f"{settings.store_root}/{dataset_id}/run-1{suffix[store_format]}", settings
        )
    return build_item(
        dataset=dataset,
        dataset_id=dataset_id,
        collection_id="climate",
        store=store,
        store_format=store_format,  # type: ignore[arg-type]
        source_kind=source_kind,  # type: ignore[arg-type]
        settings=settings,
        concat_dim="time",
        properties=PROPERTIES,
        virtual_chunk_prefix=virtual_chunk_prefix,
    )


# -- geometry and time ----------------------------------------------------------------------
def test_bbox_geometry_and_time_range_come_from_the_coordinates(tmp_path, local_settings):
    # cell centres 30..50 N every 1 degree, 10 W..30 E every 2 degrees: cells add half a step
    paths = write_grid_files(
        tmp_path / "grid", lats=np.arange(30.0, 51.0, 1.0), lons=np.arange(-10.0, 31.0, 2.0)
    )
    item = item_for(open_collection(paths), local_settings)

    assert item.bbox == [-11.0, 29.5, 31.0, 50.5]
    assert item.geometry == {
        "type": "Polygon",
        "coordinates": [[[-11.0, 29.5], [31.0, 29.5], [31.0, 50.5], [-11.0, 50.5], [-11.0, 29.5]]],
    }
    assert item.datetime is None
    assert item.to_dict()["properties"]["datetime"] is None
    assert item.properties["start_datetime"] == "2024-01-01T00:00:00Z"
    assert item.properties["end_datetime"] == "2024-01-03T00:00:00Z"


def test_a_global_grid_covers_the_whole_world(sample_dataset, local_settings):
    item = item_for(sample_dataset, local_settings)
    assert item.bbox == [-180.0, -90.0, 180.0, 90.0]
    assert item.properties["start_datetime"] == "2024-01-01T00:00:00Z"
    assert item.properties["end_datetime"] == "2024-01-04T00:00:00Z"


def test_longitudes_0_to_360_are_normalised_to_minus_180_180(tmp_path, local_settings):
    lats = np.arange(-10.0, 11.0, 5.0)
    whole = write_grid_files(tmp_path / "global", lats=lats, lons=np.arange(0.0, 360.0, 2.5))
    atlantic = write_grid_files(tmp_path / "east", lats=lats, lons=np.arange(280.0, 341.0, 2.0))
    pacific = write_grid_files(tmp_path / "pacific", lats=lats, lons=np.arange(150.0, 211.0, 2.0))

    assert item_for(open_collection(whole), local_settings).bbox == [-180.0, -12.5, 180.0, 12.5]
    assert item_for(open_collection(atlantic), local_settings).bbox == [-81.0, -12.5, -19.0, 12.5]
    # across the antimeridian: west > east (RFC 7946), and the footprint split in two
    crossing = item_for(open_collection(pacific), local_settings)
    assert crossing.bbox == [149.0, -12.5, -149.0, 12.5]
    assert crossing.geometry["type"] == "MultiPolygon"
    west_part, east_part = crossing.geometry["coordinates"]
    assert {x for x, _ in west_part[0]} == {149.0, 180.0}
    assert {x for x, _ in east_part[0]} == {-180.0, -149.0}


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.0, 360.0, (-180.0, 180.0)),
        (-180.0, 180.0, (-180.0, 180.0)),
        (10.0, 170.0, (10.0, 170.0)),
        (190.0, 350.0, (-170.0, -10.0)),
        (100.0, 180.0, (100.0, 180.0)),
        (170.0, 190.0, (170.0, -170.0)),
    ],
)
def test_longitude_intervals_in_any_convention_become_west_and_east(low, high, expected):
    assert normalize_longitudes(low, high) == expected


def test_a_dataset_without_lat_lon_has_no_geometry_and_says_why(tmp_path, local_settings):
    item = item_for(open_collection(write_station_files(tmp_path / "gauges")), local_settings)

    assert item.geometry is None
    assert item.bbox is None
    assert "No latitude and longitude coordinate was recognised" in (item.properties["description"])
    assert item.properties["start_datetime"] == "2024-03-01T00:00:00Z"
    assert item.properties["end_datetime"] == "2024-03-01T12:00:00Z"
    station = item.properties["cube:dimensions"]["station"]
    assert station == {
        "type": "other",
        "extent": [0, 4],
        "description": "index (no coordinate variable)",
    }
    assert "recognised" not in str(
        item_for(
            open_collection(write_grid_files(tmp_path / "g", lats=[1.0, 2.0], lons=[1.0, 2.0])),
            local_settings,
        ).properties.get("description")
    )


def test_projected_or_rotated_coordinates_are_not_taken_for_lat_lon():
    def var(**attrs: str) -> xr.Variable:
        return xr.Variable(("n",), [1.0, 2.0], attrs=attrs)

    assert coordinate_kind("y", var(units="degrees_north")) == "lat"
    assert coordinate_kind("x", var(standard_name="longitude")) == "lon"
    assert coordinate_kind("latitude", var()) == "lat"
    assert coordinate_kind("lon", var(units="degrees")) == "lon"
    assert coordinate_kind("y", var(units="m", standard_name="projection_y_coordinate")) is None
    assert coordinate_kind("lat", var(units="m")) is None
    assert coordinate_kind("rlat", var(standard_name="grid_latitude", units="degrees")) is None
    assert coordinate_kind("y", var()) is None


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        (xr.date_range("2024-01-01", periods=5, freq="6h"), "PT6H"),
        (xr.date_range("2024-01-01", periods=4, freq="D"), "P1D"),
        (xr.date_range("2024-01-01", periods=14, freq="MS"), "P1M"),
        (xr.date_range("2000-01-01", periods=3, freq="YS"), "P1Y"),
        (xr.date_range("2024-01-01", periods=3, freq="90min"), "PT1H30M"),
        (np.array(["2024-01-01", "2024-01-02", "2024-01-05"], dtype="datetime64[ns]"), None),
        (xr.date_range("2024-01-01", periods=1, freq="D"), None),
        (
            xr.date_range("2001-01-01", periods=3, freq="D", calendar="noleap", use_cftime=True),
            "P1D",
        ),
    ],
)
def test_time_step_is_an_iso_duration_when_regular(times, expected):
    assert time_step(xr.Variable(("time",), times)) == expected


def test_times_in_a_360_day_calendar_give_real_dates(local_settings):
    times = xr.date_range("2001-02-29", periods=2, freq="D", calendar="360_day", use_cftime=True)
    dataset = xr.Dataset(
        {"v": (("time",), [1.0, 2.0])}, coords={"time": times, "lat": 1.0, "lon": 1.0}
    )
    item = item_for(dataset, local_settings)
    # 29 and 30 February do not exist: the last day of February stands in for both
    assert item.properties["start_datetime"] == "2001-02-28T00:00:00Z"
    assert item.properties["end_datetime"] == "2001-02-28T00:00:00Z"


# -- datacube and pipeline fields ------------------------------------------------------------
def test_datacube_fields_describe_dimensions_and_variables(sample_dataset, local_settings):
    item = item_for(sample_dataset, local_settings)
    dims = item.properties["cube:dimensions"]
    variables = item.properties["cube:variables"]

    assert dims["time"] == {
        "type": "temporal",
        "extent": ["2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"],
        "step": "P1D",
        "description": "time",
    }
    assert dims["lat"]["type"] == "spatial" and dims["lat"]["axis"] == "y"
    assert dims["lat"]["extent"] == [-89.0, 89.0]
    assert dims["lat"]["reference_system"] == 4326
    assert dims["lon"]["type"] == "spatial" and dims["lon"]["axis"] == "x"
    assert dims["lon"]["extent"] == [-179.0, 179.0]
    assert dims["lon"]["step"] == pytest.approx(358.0 / 35, rel=1e-5)

    assert set(variables) == {"tas", "pr", "crs"}  # dimension coordinates are dimensions
    tas = variables["tas"]
    assert {k: v for k, v in tas.items() if k != "attrs"} == {
        "dimensions": ["time", "lat", "lon"],
        "type": "data",
        "description": "Near-Surface Air Temperature",
        "unit": "K",
        "shape": [sample_dataset.sizes["time"], 18, 36],
    }
    assert tas["attrs"]["units"] == "K" and tas["attrs"] == json.loads(json.dumps(tas["attrs"]))
    assert variables["pr"]["unit"] == "mm" and variables["pr"]["type"] == "data"
    crs = variables["crs"]  # the grid mapping
    assert crs["dimensions"] == [] and crs["type"] == "auxiliary" and crs["shape"] == []
    assert pystac.extensions.datacube.SCHEMA_URI in item.stac_extensions


def test_pipeline_properties_go_to_standard_fields(sample_dataset, local_settings):
    item = item_for(sample_dataset, local_settings)
    props = item.properties

    assert props["processing:software"] == {"virtualizarr": "2.8.0"}  # as given
    lineage = props["processing:lineage"]
    for words in ("run run-1", "from 4 file(s)", "ETag digest: 0123abcd", "along 'time'"):
        assert words in lineage
    assert props["created"] == "2026-11-02T10:00:00Z"  # STAC's own field
    assert props["processing:datetime"] == props["created"]
    assert props["title"] == "Synthetic daily near-surface air temperature and precipitation"
    assert "https://stac-extensions.github.io/processing/v1.2.0/schema.json" in (
        item.stac_extensions
    )
    # no field of a prefix no declared extension defines (pipeline:, icechunk:, xarray:)
    # and, for xpystac, no property name with "kerchunk:" (it reads those as inline references)
    assert {k.split(":")[0] for k in props if ":" in k} <= {"cube", "processing"}


# -- the store asset -------------------------------------------------------------------------
def test_kerchunk_json_asset_is_what_xpystac_and_xarray_recognise(sample_dataset, blob_settings):
    store = parse_location(f"{blob_settings.store_root}/tas-daily/run-1.json", blob_settings)
    item = item_for(sample_dataset, blob_settings, store=store, source_kind="blob")
    asset = item.assets["data"].to_dict()
    endpoint = blob_settings.account.endpoint
    scheme = "ms-azure-devstoreaccount1"

    assert asset["href"] == f"{endpoint}/{store.container}/tas-daily/run-1.json"
    assert asset["type"] == "application/json"
    assert asset["roles"] == ["data", "references", "virtual"]
    assert asset["zarr:zarr_format"] == 2 and asset["zarr:consolidated"] is False
    assert asset["storage:refs"] == [scheme]
    # by the item's own file name: the released virtual-assets schema refuses "#/assets/..."
    assert asset["vrt:hrefs"] == [{"key": "sources", "href": "./tas-daily.json#/assets/sources"}]
    assert item.properties["storage:schemes"] == {
        scheme: {
            "type": "ms-azure",
            "platform": endpoint.replace("devstoreaccount1", "{account}"),
            "account": "devstoreaccount1",
        }
    }
    sources = item.assets["sources"]
    assert sources.href == f"az://{store.container}/tas-daily/"  # no source given: its folder
    assert sources.roles == ["source"] and sources.extra_fields["storage:refs"] == [scheme]
    assert sources.media_type is None  # a folder: no file media type
    assert not [k for k in asset if k.startswith("xarray:")]
    assert "xpystac" in asset["description"] and "engine='kerchunk'" in asset["description"]
    for extension in ("storage/v2.0.0", "zarr/v1.0.0", "virtual-assets/v1.0.0"):
        assert f"https://stac-extensions.github.io/{extension}/schema.json" in (
            item.stac_extensions
        )


def test_a_kerchunk_parquet_store_is_a_zarr_group_the_kerchunk_engine_opens(
    sample_dataset, local_settings
):
    """A folder of Parquet record files is no application/vnd.apache.parquet file: it is
    published as the Zarr group it presents, with the engine that opens it
    (xarray-assets), and without the zarr fields xpystac would pass the engine twice."""
    item = item_for(sample_dataset, local_settings, store_format="kerchunk-parquet")
    asset = item.assets["data"]

    assert asset.media_type == "application/vnd.zarr"
    assert asset.roles == ["data", "references", "virtual"]
    assert asset.extra_fields["xarray:open_kwargs"] == {"engine": "kerchunk"}
    assert asset.extra_fields["zarr:node_type"] == "group"
    assert "zarr:zarr_format" not in asset.extra_fields
    assert "zarr:consolidated" not in asset.extra_fields
    assert "Zarr v2" in (asset.description or "")
    assert "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json" in (
        item.stac_extensions
    )
    assert asset.href == f"file://{local_settings.store_root}/tas-daily/run-1.parq"
    assert "storage:refs" not in asset.extra_fields
    assert "storage:schemes" not in item.properties


def test_icechunk_asset_names_its_storage_and_its_virtual_chunk_container(
    sample_dataset, blob_settings
):
    store = parse_location(f"{blob_settings.store_root}/tas-daily/run-1.icechunk", blob_settings)
    item = item_for(
        sample_dataset,
        blob_settings,
        store=store,
        store_format="icechunk",
        source_kind="blob",
        virtual_chunk_prefix="az://sources/",
    )
    asset = item.assets["data"].to_dict()

    assert asset["type"] == "application/vnd.zarr+icechunk"
    assert asset["roles"] == ["data", "references", "virtual"]
    assert (
        asset["href"]
        == f"{blob_settings.account.endpoint}/{store.container}/tas-daily/run-1.icechunk"
    )
    assert asset["zarr:zarr_format"] == 3
    assert asset["storage:refs"] == ["ms-azure-devstoreaccount1"]
    assert asset["vrt:hrefs"] == [{"key": "sources", "href": "./tas-daily.json#/assets/sources"}]
    assert item.assets["sources"].href == "az://sources/"  # the virtual chunk container
    assert not [k for k in asset if k.startswith(("icechunk:", "xarray:"))]
    # xpystac 0.5 cannot open it: the description names what can
    assert "icechunk.Repository.open" in asset["description"]


def test_icechunk_without_its_virtual_chunk_prefix_is_refused(sample_dataset, local_settings):
    with pytest.raises(CatalogError, match="virtual chunk container prefix"):
        item_for(sample_dataset, local_settings, store_format="icechunk")


def test_item_json_carries_no_secret(sample_dataset, blob_settings):
    assert blob_settings.account.key == AZURITE_KEY  # the settings do hold a key
    for store_format, prefix in (("kerchunk-json", None), ("icechunk", "az://sources/")):
        item = item_for(
            sample_dataset,
            blob_settings,
            store_format=store_format,
            source_kind="blob",
            virtual_chunk_prefix=prefix,
        )
        text = json.dumps(item.to_dict())
        assert AZURITE_KEY not in text
        assert AZURITE_KEY[:20] not in text
        for word in ("AccountKey", "account_key", "connection_string", "sas_token", "sig="):
            assert word not in text

    # and a key slipped into the properties by a caller is refused, never published
    leaky = {**PROPERTIES, "connection": f"AccountKey={AZURITE_KEY}"}
    with pytest.raises(CatalogError, match="account key"):
        build_item(
            dataset=sample_dataset,
            dataset_id="tas-daily",
            collection_id="climate",
            store=parse_location(f"{blob_settings.store_root}/t/run-1.json", blob_settings),
            store_format="kerchunk-json",
            source_kind="blob",
            settings=blob_settings,
            concat_dim="time",
            properties=leaky,
        )


@pytest.fixture
def local_stores(tmp_path: Path, local_settings: Settings) -> dict[str, object]:
    """The three store formats built for real from sample files, as combine builds them."""
    paths = write_sample_files(
        tmp_path / "source", SampleSpec(files=4, lat=18, lon=36, with_crs=False)
    )
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    virtual = [
        open_virtual_dataset(
            f"file://{p}", registry=registry, parser=HDFParser(), loadable_variables=["time"]
        )
        for p in paths
    ]
    combined = xr.concat(
        virtual, dim="time", data_vars="minimal", coords="minimal", compat="override",
        combine_attrs="override", join="exact",
    )  # fmt: skip
    root = Path(local_settings.store_root) / "tas-daily"
    root.mkdir(parents=True)
    combined.vz.to_kerchunk(str(root / "run-1.json"), format="json")
    combined.vz.to_kerchunk(str(root / "run-1.parq"), format="parquet")
    prefix = f"file://{tmp_path / 'source'}/"
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(
        icechunk.VirtualChunkContainer(prefix, icechunk.local_filesystem_store(str(tmp_path)))
    )
    repo = icechunk.Repository.create(
        icechunk.local_filesystem_storage(str(root / "run-1.icechunk")),
        config,
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {prefix: icechunk.credentials.LocalFileSystemAccess}
        ),
    )
    session = repo.writable_session("main")
    combined.vz.to_icechunk(session.store)
    session.commit("test store")
    return {"sources": open_collection(paths).load(), "prefix": prefix}


@pytest.mark.parametrize("store_format", ["kerchunk-json", "kerchunk-parquet"])
def test_kerchunk_assets_open_with_the_kerchunk_engine_from_their_href(
    local_stores, local_settings, store_format
):
    """What kerchunk documents: the references' path to its xarray engine; the chunks'
    protocol comes from the references themselves (local paths here)."""
    sources = local_stores["sources"]
    asset = item_for(sources, local_settings, store_format=store_format).assets["data"]

    opened = xr.open_dataset(asset.href.removeprefix("file://"), engine="kerchunk")
    xr.testing.assert_equal(opened.tas, sources.tas)
    xr.testing.assert_equal(opened.time, sources.time)


def test_kerchunk_json_asset_opens_the_way_xpystac_opens_it(local_stores, local_settings):
    """xpystac downloads the JSON itself, then calls the kerchunk engine with the references
    (xpystac/core.py, 0.5.0); the item needs no open hints for local sources."""
    sources = local_stores["sources"]
    asset = item_for(sources, local_settings).assets["data"]
    references = json.loads(Path(asset.href.removeprefix("file://")).read_text())

    opened = xr.open_dataset(references, engine="kerchunk")
    xr.testing.assert_equal(opened.pr, sources.pr)


def test_icechunk_asset_opens_from_its_published_fields(local_stores, local_settings):
    """As VEDA's readers do: the repository at the href, the virtual chunk container the
    sources asset (named by vrt:hrefs) gives, Zarr v3 without consolidated metadata."""
    sources = local_stores["sources"]
    item = item_for(
        sources,
        local_settings,
        store_format="icechunk",
        virtual_chunk_prefix=local_stores["prefix"],
    )
    asset = item.assets["data"]
    container = item.assets[asset.extra_fields["vrt:hrefs"][0]["key"]].href

    repo = icechunk.Repository.open(
        icechunk.local_filesystem_storage(asset.href.removeprefix("file://")),
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {container: icechunk.credentials.LocalFileSystemAccess}
        ),
    )
    session = repo.readonly_session("main")
    opened = xr.open_dataset(
        session.store,
        engine="zarr",
        zarr_format=asset.extra_fields["zarr:zarr_format"],
        consolidated=asset.extra_fields["zarr:consolidated"],
    )
    xr.testing.assert_equal(opened.tas, sources.tas)


# -- the catalog -----------------------------------------------------------------------------
def _links(document: dict) -> list[str]:
    """The catalog's own links (the store link points at the store, outside the catalog)."""
    return [link["href"] for link in document["links"] if link["rel"] != "store"]


def test_local_catalog_rereads_with_pystac_and_walks_to_the_item(
    tmp_path, sample_dataset, local_settings
):
    item = item_for(sample_dataset, local_settings)
    result = register_item(item, collection_id="climate", settings=local_settings)

    root = Path(local_settings.catalog)
    assert result.catalog_url == f"file://{root}/catalog.json"
    assert result.collection_url == f"file://{root}/climate/collection.json"
    assert result.item_url == f"file://{root}/climate/tas-daily/tas-daily.json"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.json")) == [
        "catalog.json",
        "climate/collection.json",
        "climate/tas-daily/tas-daily.json",
    ]
    for path in root.rglob("*.json"):  # self-contained: relative links, but for self
        document = json.loads(path.read_text())
        hierarchy = [link for link in document["links"] if link["rel"] != "self"]
        assert all(href.startswith(("./", "../")) for href in _links({"links": hierarchy})), path
        selfs = [link["href"] for link in document["links"] if link["rel"] == "self"]
        # catalogs and collections give their absolute URL, as stac-check asks; items none
        expected = [] if document["type"] == "Feature" else [f"file://{path}"]
        assert selfs == expected, path

    # moved elsewhere, it still reads and walks down to the item with plain pystac
    moved = shutil.copytree(root, tmp_path / "moved")
    catalog = pystac.Catalog.from_file(str(moved / "catalog.json"))
    assert catalog.id == "virtual-zarr" and catalog.title
    collection = catalog.get_child("climate")
    assert isinstance(collection, pystac.Collection)
    (found,) = list(collection.get_items())
    assert found.id == "tas-daily"
    assert found.collection_id == "climate"
    assert found.assets["data"].href == item.assets["data"].href  # the store, not moved
    assert found.properties["cube:dimensions"] == item.properties["cube:dimensions"]
    assert [i.id for i in catalog.get_items(recursive=True)] == ["tas-daily"]


def test_registering_again_replaces_the_item_and_recomputes_the_collection_extent(
    tmp_path, local_settings
):
    def dataset(folder: str, days: int, lats: np.ndarray, lons: np.ndarray) -> xr.Dataset:
        return open_collection(write_grid_files(tmp_path / folder, lats=lats, lons=lons, days=days))

    europe = np.arange(40.0, 61.0, 1.0), np.arange(-10.0, 31.0, 1.0)
    africa = np.arange(-30.0, 1.0, 1.0), np.arange(10.0, 41.0, 1.0)

    def register(ds: xr.Dataset, dataset_id: str) -> pystac.Collection:
        register_item(
            item_for(ds, local_settings, dataset_id=dataset_id),
            collection_id="climate",
            settings=local_settings,
        )
        path = Path(local_settings.catalog) / "climate" / "collection.json"
        return pystac.Collection.from_file(str(path))

    first = register(dataset("a", 3, *europe), "sst-europe")
    assert first.extent.spatial.bboxes == [[-10.5, 39.5, 30.5, 60.5]]
    assert first.extent.temporal.to_dict()["interval"] == [
        ["2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"]
    ]

    # the same dataset id again, with more days: one item, extent follows it
    again = register(dataset("b", 6, *europe), "sst-europe")
    assert [link.href for link in again.get_item_links()] == ["./sst-europe/sst-europe.json"]
    assert again.extent.temporal.to_dict()["interval"][0][1] == "2024-01-06T00:00:00Z"

    both = register(dataset("c", 2, *africa), "sst-africa")
    assert sorted(i.id for i in both.get_items()) == ["sst-africa", "sst-europe"]
    assert both.extent.spatial.bboxes == [[-10.5, -30.5, 40.5, 60.5]]

    # replacing an item with a smaller one shrinks the extent (recomputed, not a union)
    smaller = register(dataset("d", 1, *europe), "sst-europe")
    assert smaller.extent.temporal.to_dict()["interval"][0][1] == "2024-01-02T00:00:00Z"
    assert len(list(smaller.get_items())) == 2
    catalog = json.loads((Path(local_settings.catalog) / "catalog.json").read_text())
    assert [link["href"] for link in catalog["links"] if link["rel"] == "child"] == [
        "./climate/collection.json"
    ]


def test_collection_title_and_description_are_kept_or_updated(sample_dataset, local_settings):
    item = item_for(sample_dataset, local_settings)
    register_item(
        item,
        collection_id="climate",
        settings=local_settings,
        collection_title="Daily climate",
        collection_description="Daily fields.",
    )
    register_item(item, collection_id="climate", settings=local_settings)
    collection = pystac.Collection.from_file(f"{local_settings.catalog}/climate/collection.json")
    assert (collection.title, collection.description) == ("Daily climate", "Daily fields.")
    assert collection.license == "other"


def test_a_collection_of_items_without_geometry_still_has_an_extent(tmp_path, local_settings):
    item = item_for(open_collection(write_station_files(tmp_path / "gauges")), local_settings)
    register_item(item, collection_id="gauges", settings=local_settings)
    collection = pystac.Collection.from_file(f"{local_settings.catalog}/gauges/collection.json")
    assert collection.extent.spatial.bboxes == [[-180.0, -90.0, 180.0, 90.0]]
    (found,) = list(collection.get_items())
    assert found.geometry is None and found.bbox is None


def test_catalog_in_azurite_rereads_through_storage_stacio(
    sample_dataset, blob_settings, containers
):
    catalog_root = parse_location(blob_settings.catalog, blob_settings)
    item = item_for(sample_dataset, blob_settings, source_kind="blob")
    result = register_item(item, collection_id="climate", settings=blob_settings)

    endpoint = blob_settings.account.endpoint
    base = f"{endpoint}/{catalog_root.container}/stac"
    assert result.item_url == f"{base}/climate/tas-daily/tas-daily.json"
    assert result.catalog_url == f"{base}/catalog.json"
    assert containers.keys(catalog_root.container) == [
        "stac/catalog.json",
        "stac/climate/collection.json",
        "stac/climate/tas-daily/tas-daily.json",
    ]
    # registering twice is safe and leaves the same three documents
    register_item(item, collection_id="climate", settings=blob_settings)
    assert len(containers.keys(catalog_root.container)) == 3

    stac_io = StorageStacIO(Storage(blob_settings))
    for href in (f"{catalog_root.url}/catalog.json", result.catalog_url):  # az:// and http(s)
        catalog = pystac.Catalog.from_file(href, stac_io=stac_io)
        collection = catalog.get_child("climate")
        (found,) = list(collection.get_items())
        assert found.id == "tas-daily"
        assert found.assets["data"].href == item.assets["data"].href

    documents = {
        key: json.loads(
            containers.service.get_blob_client(catalog_root.container, key)
            .download_blob()
            .readall()
        )
        for key in containers.keys(catalog_root.container)
    }
    assert AZURITE_KEY not in json.dumps(documents)
    for key, document in documents.items():  # relative links in a container too
        hierarchy = [link for link in document["links"] if link["rel"] != "self"]
        assert all(href.startswith(("./", "../")) for href in _links({"links": hierarchy})), key
        selfs = [link["href"] for link in document["links"] if link["rel"] == "self"]
        expected = [] if document["type"] == "Feature" else [f"{base}/{key.removeprefix('stac/')}"]
        assert selfs == expected, key  # catalog and collection: their https URL


def test_a_missing_catalog_container_is_a_catalog_error_naming_it(sample_dataset, blob_settings):
    settings = blob_settings.with_changes(catalog="az://no-such-catalog/stac")
    item = item_for(sample_dataset, settings, source_kind="blob")
    with pytest.raises(CatalogError, match="no-such-catalog") as caught:
        register_item(item, collection_id="climate", settings=settings)
    assert caught.value.retryable is False


def test_a_corrupt_catalog_document_is_a_catalog_error_naming_it(sample_dataset, local_settings):
    catalog = Path(local_settings.catalog) / "catalog.json"
    catalog.parent.mkdir(parents=True)
    catalog.write_text("{ not json")
    with pytest.raises(CatalogError, match=r"catalog\.json"):
        register_item(
            item_for(sample_dataset, local_settings),
            collection_id="climate",
            settings=local_settings,
        )


def test_an_id_that_cannot_name_a_folder_is_refused(sample_dataset, local_settings):
    with pytest.raises(CatalogError, match="cannot name a catalog folder"):
        item_for(sample_dataset, local_settings, dataset_id="../escape")


# -- the seam ------------------------------------------------------------------------------
@pytest.mark.parametrize("builder", ["cf", "item", "assets"])
def test_the_builders_import_neither_storage_nor_the_catalog_io(builder):
    """What an item says is built apart from where it is written: the pure modules of
    shared.catalog.stac import no I/O (shared.io) and not the catalog I/O module."""
    path = Path(__file__).resolve().parent.parent / "shared" / "catalog" / "stac" / f"{builder}.py"
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    io = [
        name for name in imported if name.startswith(("shared.io", "shared.catalog.stac.catalog"))
    ]
    assert io == []


def test_the_item_links_its_run_summary_and_gate_report_which_exist(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=6, lon=10))
    request = PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "tas"})
    run = run_pipeline(request, local_settings)

    item = read_item(run.item_url, local_settings)
    described = {link.title: link for link in item.links if link.rel == "describedby"}
    summary = described["Run summary: every file"]
    gate_md = described["Gate report on the source files"]
    gate_json = described["Gate report (JSON)"]
    assert (summary.media_type, gate_md.media_type, gate_json.media_type) == (
        "text/markdown", "text/markdown", "application/json",
    )  # fmt: skip

    def path(link_or_url: pystac.Link | str) -> Path:
        url = link_or_url if isinstance(link_or_url, str) else link_or_url.get_absolute_href()
        return Path((url or "").removeprefix("file://"))

    assert path(summary) == path(run.summary_url)  # written by the run's last step
    # the gate's report, copied beside the store (where every link of the item points)
    assert path(gate_json).read_bytes() == path(run.gate_report_url).read_bytes()
    assert path(gate_json).parent == path(summary).parent == path(run.store_url).parent
    assert path(gate_md).name == f"{run.run_id}.gate.md"
    assert [str(path(link)) for link in described.values() if not path(link).is_file()] == []


def test_a_float32_packed_variable_says_in_cube_variables_that_the_store_decodes_float64(
    tmp_path, local_settings
):
    """The files pack pr with float32 scale_factor/add_offset (tests/matrix_cases.py): the
    store decodes it to float64, the files to float32, and the item says so where a reader
    of cube:variables looks (datacube v2.2.0 has no data type field: the description)."""
    packed_single_precision(tmp_path / "src")
    request = PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "pr"})
    run = run_pipeline(request, local_settings)
    item = read_item(run.item_url, local_settings)
    variables = item.properties["cube:variables"]
    assert variables["pr"]["description"] == (
        "Daily precipitation. Decodes to float64 from this store; the source files, packed "
        "with float32 scale_factor/add_offset, decode to float32 (netCDF4, xarray). The "
        "values agree within float32 rounding, as verified before publishing."
    )
    assert variables["tas"]["description"] == "Near-Surface Air Temperature"  # float32 alike
    published = json.loads(Path(run.item_url.removeprefix("file://")).read_text())
    assert validation_errors(published) == {}
    link = item.get_single_link("collection")
    assert link is not None
    collection = json.loads(Path(str(link.get_absolute_href()).removeprefix("file://")).read_text())
    assert collection["cube:variables"]["pr"]["description"] == variables["pr"]["description"]
    assert validation_errors(collection) == {}
