"""The STAC documents as the community's own tools judge them, and the judges as released.

The demo's catalog in all three formats, served on loopback as `python -m devhost tiles`
serves it, must be valid for the released schemas (unmodified, formats asserted), for
stac-validator and for stac-check (pinned, offline: tests/stac_schemas.py), with every link
resolvable and in one scheme, and open with xpystac's one-liner where xpystac can (kerchunk
JSON and Parquet); where it cannot (Icechunk), the opener the asset's description names
opens it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

import icechunk
import pystac
import pytest
import uvicorn
import xarray as xr
from starlette.applications import Starlette

from devhost.cli import main
from devhost.samples import SampleSpec
from devhost.tiles import mount_files
from shared.catalog.stac_api import for_api
from shared.model.request import FORMATS
from tests.helpers import open_sources
from tests.stac_schemas import (
    SCHEMAS,
    schema_map,
    stac_check_findings,
    stac_validator_errors,
    validation_errors,
)

PYSTAC = Path(pystac.__file__).parent
DEMO_FILES = 3
# stac-check's best-practice findings our items keep, and why (docs/stac.md, "Judges"):
ALLOWED_ITEM_FINDINGS = {
    # an item of a time range gives start_datetime and end_datetime, and datetime null as
    # STAC 1.1 asks: one instant would misstate a month of data (pgstac and pystac-client
    # search the range)
    "datetime_null",
    # stac-check takes any bbox wider than 180 degrees for a bad antimeridian crossing; a
    # global grid is -180..180 (RFC 7946), checked below to be the data's own extent
    "check_bbox_antimeridian",
}


# -- the judges are the released files ---------------------------------------------------
def test_the_stored_schemas_are_the_released_files_byte_for_byte():
    """The STAC 1.1.0 core and GeoJSON schemas as pystac ships them, the xarray-assets
    schema as pystac's extension package ships it (tests/schemas/README.md), the PROJJSON
    v0.4 schema as PROJ 8.2 ships it in pyproj 3.3.1's wheel; none patched."""
    shipped = PYSTAC / "validation" / "jsonschemas"
    stored = SCHEMAS / "stac-spec" / "v1.1.0"
    for path in sorted(stored.rglob("*.json")):
        assert path.read_bytes() == (shipped / "stac-spec" / "v1.1.0" / path.name).read_bytes()
    for name in ("Feature.json", "Geometry.json"):
        geojson = (shipped / "geojson" / name).read_bytes()
        assert (SCHEMAS / "geojson" / name).read_bytes() == geojson
    xarray_assets = PYSTAC / "extensions" / "json-schema" / "xarray-assets" / "v1.0.0.json"
    assert (SCHEMAS / "xarray-assets/v1.0.0/schema.json").read_bytes() == xarray_assets.read_bytes()
    projjson = (SCHEMAS / "projjson/v0.4/projjson.schema.json").read_bytes()
    assert hashlib.sha256(projjson).hexdigest() == (
        "aa44f4d23fb649dad5ab7fae6736607e6a9a8e4d6c8ae2e0bbb74cb3995b0cfd"
    )
    assert all(path.is_file() for path in schema_map().values())


def _minimal_item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "tas",
        "geometry": None,
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "links": [{"rel": "describedby", "href": "./tas.report.md", "title": "Run summary"}],
        "assets": {"sources": {"href": "file:///data/tas/", "roles": ["source"]}},
    }
    item.update(changes)
    return item


def test_the_validator_asserts_formats_a_bad_datetime_or_an_href_that_is_no_iri_fails():
    assert validation_errors(_minimal_item()) == {}
    bad_time = _minimal_item(properties={"datetime": "2026-13-45T99:00:00Z"})
    assert "is not a 'date-time'" in json.dumps(validation_errors(bad_time))
    bad_href = _minimal_item(links=[{"rel": "describedby", "href": "no iri with spaces"}])
    assert "is not a 'iri-reference'" in json.dumps(validation_errors(bad_href))


def test_the_released_virtual_assets_schema_refuses_a_bare_fragment_and_takes_the_file_form():
    """virtual-assets v1.0.0 gives an href as oneOf [iri-reference, "^#.*$"]: "#/assets/x"
    matches both and fails, as released; our documents name their own file."""
    extension = "https://stac-extensions.github.io/virtual-assets/v1.0.0/schema.json"

    def with_href(href: str) -> dict[str, Any]:
        item = _minimal_item(stac_extensions=[extension])
        item["assets"]["data"] = {
            "href": "./store.json",
            "roles": ["data", "virtual"],
            "vrt:hrefs": [{"key": "sources", "href": href}],
        }
        return item

    assert list(validation_errors(with_href("#/assets/sources"))) == [extension]
    assert validation_errors(with_href("./tas.json#/assets/sources")) == {}


def test_in_a_stac_api_the_vrt_hrefs_name_the_document_by_its_api_path():
    """/collections/{id}/items/{item} and /collections/{id} have no file name: the API's
    copies name their own assets by the last path segment."""
    item = _minimal_item(collection="climate")
    item["assets"]["data"] = {
        "href": "https://example.org/tas.json",
        "vrt:hrefs": [{"key": "sources", "href": "./tas.json#/assets/sources"}],
    }
    collection = {
        "type": "Collection",
        "id": "climate",
        "links": [],
        "assets": {
            "tas@v1": {
                "href": "https://example.org/tas.json",
                "vrt:hrefs": [
                    {"key": "tas@sources", "href": "./collection.json#/assets/tas@sources"}
                ],
            }
        },
    }
    before = copy.deepcopy(item)
    assert for_api(item)["assets"]["data"]["vrt:hrefs"][0]["href"] == "./tas#/assets/sources"
    assert item == before  # the static catalog's document is not changed
    refs = for_api(collection)["assets"]["tas@v1"]["vrt:hrefs"]
    assert refs == [{"key": "tas@sources", "href": "./climate#/assets/tas@sources"}]
    base = "https://api.example.org/collections/climate/items/tas"
    assert urljoin(base, "./tas#/assets/sources") == base + "#/assets/sources"


# -- the demo's catalog ------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """`python -m devhost demo --format all`, then its stores and catalog served on
    loopback as `python -m devhost tiles` serves them (devhost.tiles.mount_files), at the
    port the demo was told."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    args = ["demo", "--out", str(out), "--files", str(DEMO_FILES), "--format", "all"]
    assert main([*args, "--port", str(port)]) == 0
    app = Starlette()
    mount_files(app, out / "stores", out / "catalog")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the file server did not start"
            time.sleep(0.05)
        yield out, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _documents(out: Path) -> list[Path]:
    return sorted((out / "catalog").rglob("*.json"))


@pytest.mark.slow
def test_the_demo_catalog_passes_the_schemas_stac_validator_and_stac_check(demo):
    out, _ = demo
    documents = _documents(out)
    kinds = [json.loads(p.read_text())["type"] for p in documents]
    assert kinds.count("Feature") == len(FORMATS) and kinds.count("Collection") == len(FORMATS)
    for path in documents:
        document = json.loads(path.read_text())
        assert validation_errors(document) == {}, path
        assert stac_validator_errors(path) == [], path
        found = stac_check_findings(path)
        assert found["valid"], (path, found["error"])
        allowed = ALLOWED_ITEM_FINDINGS if document["type"] == "Feature" else set()
        assert set(found["best_practices"]) <= allowed, (path, found["best_practices"])
        if "check_bbox_antimeridian" in found["best_practices"]:
            assert document["bbox"] == [-180.0, -90.0, 180.0, 90.0]  # the sample's global grid
            assert found["geometry"]  # said as a geometry finding, nothing else
        else:
            assert found["geometry"] == [], path


# A store that is a folder is read by its members (a file server lists no folder).
FOLDER_MEMBER = {".parq": "/.zmetadata", ".icechunk": "/repo"}


def _hrefs(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, href) of every link and asset of a document."""
    found = [(f"link {link['rel']}", link["href"]) for link in document.get("links", [])]
    found += [(f"asset {key}", asset["href"]) for key, asset in document.get("assets", {}).items()]
    return found


@pytest.mark.slow
def test_every_link_of_the_demo_catalog_is_served_and_resolves(demo):
    """One scheme per document: everything the pipeline wrote is linked under the URL the
    catalog and stores are served at (or relative to the document); only what others
    publish keeps its own URL: license texts (https) and the source files the references
    read (the sources asset, file://, which must be where the data is)."""
    out, base = demo
    for path in _documents(out):
        document = json.loads(path.read_text())
        url = f"{base}/catalog/{path.relative_to(out / 'catalog').as_posix()}"
        for what, href in _hrefs(document):
            if what == "link license":
                assert href.startswith("https://"), (path, what)
            elif what.startswith("asset") and what.endswith("sources"):
                assert href.startswith("file://") and Path(urlsplit(href).path).is_dir()
            else:
                absolute = urljoin(url, href).split("#")[0]
                assert absolute.startswith(base + "/"), (path, what, href)
                with urlopen(absolute + FOLDER_MEMBER.get(Path(absolute).suffix, "")) as answer:
                    assert answer.status == 200, (path, what, href)
        if document["type"] != "Feature":  # self: the URL it is served at
            assert [link["href"] for link in document["links"] if link["rel"] == "self"] == [url]


@pytest.mark.slow
def test_the_demo_publishes_with_a_real_license_and_warns_of_nothing(demo):
    out, _ = demo
    for collection in sorted((out / "catalog").glob("*/collection.json")):
        document = json.loads(collection.read_text())
        assert document["license"] == "CC-BY-4.0"
        licenses = [link for link in document["links"] if link["rel"] == "license"]
        assert licenses[0]["href"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    for report in (out / "work" / "runs").rglob("*.json"):
        assert json.loads(report.read_text())["warnings"] == []


def _demo_sources(out: Path) -> xr.Dataset:
    return open_sources(sorted((out / "source").glob("*.nc")))


@pytest.mark.slow
@pytest.mark.parametrize("store_format", ["kerchunk-json", "kerchunk-parquet"])
def test_xpystac_one_liner_opens_the_demo_item_of_each_kerchunk_format(demo, store_format):
    out, base = demo
    name = f"demo-{store_format}"
    item = pystac.Item.from_file(f"{base}/catalog/{name}/{name}/{name}.json")
    opened = xr.open_dataset(item.assets["data"])  # xpystac's engine: no other argument
    xr.testing.assert_identical(opened.load(), _demo_sources(out))
    collection = item.get_collection()
    assert collection is not None
    (key,) = collection.get_assets(role="latest-version")
    from_collection = xr.open_dataset(collection.assets[key])
    xr.testing.assert_identical(from_collection.load(), _demo_sources(out))


@pytest.mark.slow
def test_the_demo_icechunk_item_names_the_opener_that_works_where_xpystac_stops(demo):
    out, base = demo
    name = "demo-icechunk"
    item = pystac.Item.from_file(f"{base}/catalog/{name}/{name}/{name}.json")
    asset = item.assets["data"]
    with pytest.raises(KeyError, match="storage:schemes"):  # xpystac 0.5: S3 only
        xr.open_dataset(asset)
    assert "icechunk.http_storage" in (asset.description or "")
    sources = item.assets[asset.extra_fields["vrt:hrefs"][0]["key"]].href
    repo = icechunk.Repository.open(
        icechunk.http_storage(asset.href, opts={"allow_http": "true"}),
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {sources: icechunk.credentials.LocalFileSystemAccess}
        ),
    )
    opened = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False)
    xr.testing.assert_identical(opened.load(), _demo_sources(out))


def test_the_demo_samples_carry_a_license_attribute_as_cmip6_files_do():
    assert "Creative Commons Attribution 4.0" in (SampleSpec().license or "")
