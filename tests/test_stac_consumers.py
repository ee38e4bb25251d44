"""What a consumer can open from our STAC items alone, the way each reader documents it:
xpystac's one-liner for kerchunk JSON (public over HTTP, and signed from a private Azurite
container with consumer.signing), consumer.reader for every format, and what xpystac 0.5.0
refuses (kerchunk Parquet, Icechunk on Azure) with the reason."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import icechunk
import pystac
import pytest
import requests
import xarray as xr

from consumer.reader import open_item
from consumer.signing import Signer
from devhost.samples import SampleSpec, write_sample_files
from shared.catalog.stac.assets import AZURE_PLATFORM
from shared.model.request import FORMATS, PipelineRequest
from tests.helpers import open_sources, run_pipeline
from tests.stac_schemas import schema_urls, validation_errors

SPEC = SampleSpec(files=3, lat=18, lon=36)


def publish_in_azurite(tmp_path, settings, containers, store_format: str):
    paths = write_sample_files(tmp_path / "src", SPEC)
    container = containers.new("private")  # Azurite containers are private unless made public
    containers.upload(container, "tas/daily", paths)
    request = PipelineRequest.from_dict(
        {"source": f"az://{container}/tas/daily", "dataset_id": "tas", "format": store_format}
    )
    return paths, run_pipeline(request, settings)


@pytest.mark.slow
@pytest.mark.azurite
def test_a_signed_kerchunk_item_in_a_private_container_opens_with_the_xpystac_one_liner(
    tmp_path, blob_settings, containers
):
    paths, report = publish_in_azurite(tmp_path, blob_settings, containers, "kerchunk-json")
    item = _fetch_item(report.item_url, blob_settings)
    assert requests.get(item.assets["data"].href).status_code in (401, 403, 404)  # private

    signer = Signer(account_key=blob_settings.account.key)  # Azurite: a key-signed SAS
    signed = signer.sign(item)
    assert "sig=" in signed.assets["data"].href and "sig=" not in item.assets["data"].href
    opened = _open_in_own_process(signed, tmp_path)
    xr.testing.assert_identical(opened, open_sources(paths))

    # the same store as the collection's asset (the Planetary Computer's shape), signed
    collection = _fetch_collection(item, blob_settings)
    key, _ = _latest_store(collection, "tas")
    signed_collection = signer.sign(collection)
    opened = _open_in_own_process(signed_collection, tmp_path, key)
    xr.testing.assert_identical(opened, open_sources(paths))

    # as pystac-client's modifier: signs in place, also a raw item document
    document = item.to_dict(transform_hrefs=False)
    signer(document)
    assert "sig=" in document["assets"]["data"]["href"]
    signer(item)
    assert "sig=" in item.assets["data"].href


ONE_LINER = """
import pickle, sys
import pystac, xarray as xr
stac_object = pystac.read_file(sys.argv[1])  # an item, or a collection
opened = xr.open_dataset(stac_object.assets[sys.argv[3]])  # xpystac's engine: no other argument
plain = {  # numpy arrays and attributes only: no file system travels with them
    "variables": {k: (v.dims, v.to_numpy(), dict(v.attrs)) for k, v in opened.variables.items()},
    "coords": list(opened.coords), "attrs": dict(opened.attrs),
}
pickle.dump(plain, open(sys.argv[2], "wb"))
"""


def _open_in_own_process(
    item: pystac.Item | pystac.Collection, tmp_path: Path, key: str = "data"
) -> xr.Dataset:
    """The one-liner, run in a process of its own, as a user's notebook would. xpystac's
    kerchunk engine reads through adlfs, which closes its clients in a finalizer that holds
    the file system itself (``weakref.finalize(self, sync, self.loop, close_service_client,
    self)`` in adlfs/spec.py): it runs only at exit, after fsspec's loop has stopped, and
    prints "Loop is not running" tracebacks. In its own process that noise is the child's."""
    document, loaded = tmp_path / "signed-item.json", tmp_path / "opened.pickle"
    document.write_text(json.dumps(item.to_dict(transform_hrefs=False)))
    child = subprocess.run(
        [sys.executable, "-c", ONE_LINER, str(document), str(loaded), key],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    with loaded.open("rb") as handle:
        plain = pickle.load(handle)
    variables = {name: xr.Variable(*parts) for name, parts in plain["variables"].items()}
    coords = {name: variables.pop(name) for name in plain["coords"]}
    return xr.Dataset(variables, coords, attrs=plain["attrs"])


def _fetch_item(url: str, settings) -> pystac.Item:
    """The private item, read with a SAS, as pystac.Item.from_file would give it (its own
    URL as its self link, so its relative links resolve)."""
    document = requests.get(_signed_url(url, settings)).json()
    return pystac.Item.from_dict(document, href=url)


def _fetch_collection(item: pystac.Item, settings) -> pystac.Collection:
    """The item's private collection, read with a SAS (as from its own URL)."""
    url = item.get_single_link("collection").get_absolute_href()
    document = requests.get(_signed_url(url, settings)).json()
    return pystac.Collection.from_dict(document, href=url)


def _signed_url(url: str, settings) -> str:
    """The catalog is private too: the test reads the item document with a SAS."""
    container = url.removeprefix(settings.account.endpoint + "/").split("/", 1)[0]
    from consumer.signing import Container

    sas = Signer(account_key=settings.account.key).token(
        Container(settings.account.name, settings.account.endpoint, container)
    )
    return f"{url}?{sas}"


@pytest.mark.slow
@pytest.mark.azurite
def test_a_signed_kerchunk_parquet_item_in_a_private_container_opens_with_the_one_liner(
    tmp_path, blob_settings, containers
):
    """The Parquet store is the Zarr group the kerchunk engine opens (xarray:open_kwargs);
    signed, its SAS travels in xarray:storage_options (the engine reads the record files
    below the href, which a SAS appended to the href would hide)."""
    paths, report = publish_in_azurite(tmp_path, blob_settings, containers, "kerchunk-parquet")
    item = _fetch_item(report.item_url, blob_settings)
    assert requests.get(item.assets["data"].href + "/.zmetadata").status_code in (401, 403, 404)
    signed = Signer(account_key=blob_settings.account.key).sign(item)
    options = signed.assets["data"].extra_fields["xarray:storage_options"]
    assert "sig" in options["target_options"]["params"] and "sig=" not in signed.assets["data"].href
    opened = _open_in_own_process(signed, tmp_path)
    xr.testing.assert_identical(opened, open_sources(paths))


@pytest.mark.azurite
def test_what_xpystac_cannot_open_says_why_and_the_reader_opens_it(
    tmp_path, blob_settings, containers
):
    """Icechunk: xpystac 0.5.0 reads a collection's S3 storage schemes only; the asset's
    description names the opener that works, and the reader opens it."""
    paths, report = publish_in_azurite(tmp_path, blob_settings, containers, "icechunk")
    item = _fetch_item(report.item_url, blob_settings)
    signed = Signer(account_key=blob_settings.account.key).sign(item)
    with pytest.raises(KeyError, match=r"storage:schemes"):
        xr.open_dataset(signed.assets["data"])
    assert "icechunk.Repository.open" in (item.assets["data"].description or "")
    with open_item(report.item_url, blob_settings) as opened:
        xr.testing.assert_identical(opened.load(), open_sources(paths))


@pytest.mark.parametrize("store_format", FORMATS)
def test_items_carry_only_standard_fields(tmp_path, local_settings, store_format):
    paths = write_sample_files(tmp_path / "src", SPEC)
    request = {"source": str(tmp_path / "src"), "dataset_id": "tas", "format": store_format}
    report = run_pipeline(PipelineRequest.from_dict(request), local_settings)
    item = pystac.Item.from_file(report.item_url.removeprefix("file://"))
    document = item.to_dict(transform_hrefs=False)
    fields = [*document["properties"], *(k for a in document["assets"].values() for k in a)]
    prefixes = {f.split(":", 1)[0] for f in fields if ":" in f}
    assert prefixes <= {"cube", "processing", "storage", "zarr", "vrt", "xarray"}, prefixes
    data = item.assets["data"]
    (ref,) = data.extra_fields["vrt:hrefs"]
    assert ref == {"key": "sources", "href": "./tas.json#/assets/sources"}
    assert item.assets["sources"].href == f"file://{tmp_path / 'src'}/"
    with open_item(report.item_url, local_settings) as opened:
        xr.testing.assert_identical(opened.load(), open_sources(paths))


@pytest.mark.parametrize("store_format", FORMATS)
def test_catalog_collection_and_item_validate_against_every_declared_schema_offline(
    tmp_path, local_settings, store_format
):
    """Core STAC 1.1.0 (pystac's schemas) and each declared extension's released schema
    (tests/schemas), resolved offline."""
    write_sample_files(tmp_path / "src", SPEC)
    request = {"source": str(tmp_path / "src"), "dataset_id": "tas", "format": store_format}
    run_pipeline(PipelineRequest.from_dict(request), local_settings)
    catalog = Path(local_settings.catalog)
    for path in (
        catalog / "catalog.json",
        catalog / "tas" / "collection.json",
        catalog / "tas" / "tas" / "tas.json",
    ):
        document = json.loads(path.read_text())
        assert validation_errors(document) == {}, path
        assert len(schema_urls(document)) == 1 + len(document.get("stac_extensions", []))


@pytest.mark.parametrize("store_format", FORMATS)
def test_items_in_azure_blob_storage_validate_against_the_storage_extension(tmp_path, store_format):
    """Stores and sources in an Azure account (built, not written: no I/O) declare the
    storage extension; its ms-azure platform is the one the schema requires."""
    from devhost.samples import open_collection
    from shared.catalog.stac import build_item
    from shared.model.locations import parse_location
    from shared.model.settings import Settings, StorageAccount

    settings = Settings(account=StorageAccount(name="examplestore"))
    suffix = {"kerchunk-json": ".json", "kerchunk-parquet": ".parq", "icechunk": ".icechunk"}
    with open_collection(write_sample_files(tmp_path / "src", SPEC)) as dataset:
        item = build_item(
            dataset=dataset,
            dataset_id="tas",
            collection_id="tas",
            store=parse_location(f"az://stores/tas/run-1{suffix[store_format]}", settings),
            store_format=store_format,
            source_kind="blob",
            settings=settings,
            concat_dim="time",
            source=parse_location("az://sources/tas/", settings),
            virtual_chunk_prefix="az://sources/",
            properties={"created": "2026-11-02T10:00:00+00:00", "version": "run-1"},
        )
    document = item.to_dict(include_self_link=False)
    document.pop("collection")  # not in a catalog here: no collection link to go with it
    assert (
        "https://stac-extensions.github.io/storage/v2.0.0/schema.json"
        in (document["stac_extensions"])
    )
    assert validation_errors(document) == {}


def _latest_store(collection: pystac.Collection, dataset_id: str) -> tuple[str, pystac.Asset]:
    """The collection-level store of one dataset, as VEDA's readers find it: by role."""
    (found,) = [
        (key, asset)
        for key, asset in collection.get_assets(role="latest-version").items()
        if key.startswith(f"{dataset_id}@")
    ]
    return found


def test_an_icechunk_store_is_also_a_collection_asset_that_icechunk_opens(tmp_path, local_settings):
    """VEDA's practice for virtual Icechunk stores (xpystac's reader follows it): a
    collection asset with role latest-version, its virtual chunk container named by
    vrt:hrefs; opened here the way Icechunk documents it. A kerchunk dataset in the same
    collection gets its own, as the Planetary Computer's references assets."""
    for dataset_id, store_format in (("tas", "icechunk"), ("pr", "kerchunk-json")):
        paths = write_sample_files(tmp_path / dataset_id, SPEC)
        request = {
            "source": str(tmp_path / dataset_id), "dataset_id": dataset_id,
            "collection": "climate", "format": store_format,
        }  # fmt: skip
        run = run_pipeline(PipelineRequest.from_dict(request), local_settings)
        if dataset_id == "tas":
            tas_paths, tas_run = paths, run
    location = Path(local_settings.catalog) / "climate" / "collection.json"
    collection = pystac.Collection.from_file(str(location))
    assert validation_errors(json.loads(location.read_text())) == {}
    key, asset = _latest_store(collection, "tas")
    assert key == f"tas@{tas_run.run_id}"
    assert asset.media_type == "application/vnd.zarr+icechunk"
    assert asset.roles == ["data", "references", "virtual", "latest-version"]
    _, references = _latest_store(collection, "pr")
    assert references.media_type == "application/json"
    assert references.roles == ["data", "references", "virtual", "latest-version"]

    container = collection.assets[asset.extra_fields["vrt:hrefs"][0]["key"]].href
    repo = icechunk.Repository.open(
        icechunk.local_filesystem_storage(asset.href.removeprefix("file://")),
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {container: icechunk.credentials.LocalFileSystemAccess}
        ),
    )
    session = repo.readonly_session(branch="main")
    opened = xr.open_zarr(session.store, zarr_format=3, consolidated=False)
    xr.testing.assert_identical(opened.load(), open_sources(tas_paths))


@pytest.mark.azurite
def test_a_private_collection_icechunk_asset_opens_from_its_fields_where_xpystac_stops(
    tmp_path, blob_settings, containers
):
    """xpystac 0.5.0 reads a collection's Icechunk asset from the collection's storage
    schemes (ours are there) and then accepts aws-s3 only: it stops at that check, not at
    a missing field. Icechunk opens it from the same fields, as its docs say: Azure storage
    at the scheme's platform and account, the virtual chunk container the vrt:hrefs asset
    names (the account key stands in for the reader's Azure identity on Azurite)."""
    paths, report = publish_in_azurite(tmp_path, blob_settings, containers, "icechunk")
    item = _fetch_item(report.item_url, blob_settings)
    collection = _fetch_collection(item, blob_settings)
    assert collection.extra_fields["storage:schemes"] == item.properties["storage:schemes"]
    _, asset = _latest_store(collection, "tas")
    with pytest.raises(ValueError, match="Only S3 buckets are currently supported"):
        xr.open_dataset(asset)

    (ref,) = asset.extra_fields["storage:refs"]
    scheme = collection.extra_fields["storage:schemes"][ref]
    endpoint = scheme["platform"].replace("{account}", scheme["account"])
    container, prefix = asset.href.removeprefix(endpoint + "/").split("/", 1)
    key = blob_settings.account.key
    storage = icechunk.azure_storage(
        account=scheme["account"], container=container, prefix=prefix, access_key=key,
        config={"endpoint": endpoint, "allow_http": "true"},
    )  # fmt: skip
    sources = collection.assets[asset.extra_fields["vrt:hrefs"][0]["key"]].href
    repo = icechunk.Repository.open(
        storage,
        authorize_virtual_chunk_access=icechunk.containers_credentials(
            {sources: icechunk.azure_credentials(access_key=key)}
        ),
    )
    opened = xr.open_zarr(repo.readonly_session(branch="main").store, consolidated=False)
    xr.testing.assert_identical(opened.load(), open_sources(paths))


@pytest.mark.azurite
def test_against_azurite_the_one_schema_error_is_the_ms_azure_platform(
    tmp_path, blob_settings, containers
):
    """The known exception (docs/stac.md): the storage extension v2.0.0 fixes an ms-azure
    scheme's platform to https://{account}.blob.core.windows.net; an emulator's scheme names
    the endpoint a reader must call instead. Every other rule of every declared schema holds."""
    _, report = publish_in_azurite(tmp_path, blob_settings, containers, "kerchunk-json")
    document = requests.get(_signed_url(report.item_url, blob_settings)).json()
    (key,) = document["properties"]["storage:schemes"]
    platform = document["properties"]["storage:schemes"][key]["platform"]
    assert platform == blob_settings.account.endpoint.replace("devstoreaccount1", "{account}")
    storage = "https://stac-extensions.github.io/storage/v2.0.0/schema.json"
    assert list(validation_errors(document)) == [storage]
    document["properties"]["storage:schemes"][key]["platform"] = AZURE_PLATFORM
    assert validation_errors(document) == {}  # that platform is the only deviation
