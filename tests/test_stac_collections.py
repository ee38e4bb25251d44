"""Collections a catalog operator would accept: license and its link, providers, keywords,
title and description from the collection template or the data's global attributes;
summaries, item_assets and datacube fields from the items; all valid offline against the
schemas they declare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.catalog.stac.collection import collection_fields, template_for
from shared.model.errors import BadRequest
from shared.model.request import PipelineRequest
from tests.helpers import run_pipeline
from tests.stac_schemas import validation_errors

SPEC = SampleSpec(files=3, lat=18, lon=36)
TEMPLATE = {
    "license": "CC-BY-4.0",
    "providers": [{"name": "Example Agency", "roles": ["host"], "url": "https://example.org"}],
    "keywords": ["climate"],
    "collections": {"tas": {"title": "Daily air temperature", "description": "Daily tas."}},
}


def publish(tmp_path: Path, settings, dataset_id: str = "tas") -> dict:
    write_sample_files(tmp_path / dataset_id, SPEC)
    request = {"source": str(tmp_path / dataset_id), "dataset_id": dataset_id, "collection": "tas"}
    run_pipeline(PipelineRequest.from_dict(request), settings)
    return json.loads((Path(settings.catalog) / "tas" / "collection.json").read_text())


def test_the_collection_template_gives_what_the_pipeline_cannot_infer(tmp_path, local_settings):
    settings = local_settings.with_changes(stac_collection_template=json.dumps(TEMPLATE))
    collection = publish(tmp_path, settings)

    assert collection["title"] == "Daily air temperature"
    assert collection["description"] == "Daily tas."
    assert collection["license"] == "CC-BY-4.0"
    license = next(link for link in collection["links"] if link["rel"] == "license")
    assert license["href"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert collection["providers"] == TEMPLATE["providers"]
    assert collection["keywords"] == ["climate"]
    assert validation_errors(collection) == {}


def test_without_a_template_the_data_and_the_settings_speak(tmp_path, local_settings):
    collection = publish(tmp_path, local_settings)

    assert collection["title"] == "Synthetic daily near-surface air temperature and precipitation"
    assert collection["providers"] == [
        {"name": "virtual-zarr-pipeline samples", "roles": ["producer"]}
    ]
    assert collection["license"] == "other"  # PIPELINE_STAC_LICENSE's default
    assert set(collection["item_assets"]) == {"data", "sources", "thumbnail"}
    assert collection["item_assets"]["data"]["roles"] == ["data", "references", "virtual"]
    assert set(collection["cube:variables"]) >= {"tas", "pr"}
    assert "shape" not in collection["cube:variables"]["tas"]  # per item, not per collection
    assert collection["summaries"]["version"]
    assert validation_errors(collection) == {}


def test_collection_fields_fall_back_from_template_to_attributes_to_settings():
    attrs = {
        "title": " A title ",
        "comment": "What it is.",
        "institution": "Met Office",
        "keywords": "air temperature, EARTH SCIENCE > ATMOSPHERE, air temperature",
        "license": "CC0-1.0",
    }
    fields = collection_fields({}, attrs, "other")
    assert (fields.title, fields.description) == ("A title", "What it is.")
    assert fields.license == "CC0-1.0"
    assert fields.keywords == ["air temperature", "EARTH SCIENCE > ATMOSPHERE"]
    assert fields.providers == [{"name": "Met Office", "roles": ["producer"]}]
    # an operator's setting wins over the data; free text is no SPDX id
    assert collection_fields({}, attrs, "MIT").license == "MIT"
    text = {"license": "https://example.org/terms"}
    assert collection_fields({}, text, "other").license_href == "https://example.org/terms"
    own = template_for(TEMPLATE, "tas")
    assert own["title"] == "Daily air temperature" and own["license"] == "CC-BY-4.0"
    assert "title" not in template_for(TEMPLATE, "other-collection")


@pytest.mark.parametrize(
    "template",
    [{"license": "Creative Commons"}, {"keywords": "a, b"}, {"providers": [{"url": "x"}]}],
)
def test_a_bad_template_is_refused_with_what_is_wrong(template):
    with pytest.raises(BadRequest, match="STAC collection template"):
        template_for(template, "tas")


@pytest.mark.parametrize("store_format", ["kerchunk-json", "icechunk"])
def test_a_collection_of_azure_stores_carries_their_storage_schemes_and_validates(
    tmp_path, store_format
):
    """Stores and sources in an Azure account (items built, not written: no I/O): the
    collection's store assets refer to the items' storage schemes, which it carries."""
    from devhost.samples import open_collection
    from shared.catalog.stac import build_item
    from shared.catalog.stac.collection import describe_items
    from shared.catalog.stac.documents import new_collection
    from shared.model.locations import parse_location
    from shared.model.settings import Settings, StorageAccount

    settings = Settings(account=StorageAccount(name="examplestore"))
    suffix = {"kerchunk-json": ".json", "icechunk": ".icechunk"}[store_format]
    with open_collection(write_sample_files(tmp_path / "src", SPEC)) as dataset:
        item = build_item(
            dataset=dataset, dataset_id="tas", collection_id="tas",
            store=parse_location(f"az://stores/tas/run-1{suffix}", settings),
            store_format=store_format, source_kind="blob", settings=settings,
            concat_dim="time", source=parse_location("az://sources/tas/", settings),
            virtual_chunk_prefix="az://sources/",
            properties={"created": "2026-11-02T10:00:00+00:00", "version": "run-1"},
        )  # fmt: skip
    collection = new_collection("tas")
    describe_items(collection, [item.to_dict(include_self_link=False)])
    document = collection.to_dict(include_self_link=False)
    store = document["assets"]["tas@run-1"]
    assert store["storage:refs"] == ["ms-azure-examplestore"]
    assert document["storage:schemes"] == item.properties["storage:schemes"]
    assert document["assets"]["tas@sources"]["href"].startswith("az://sources/")
    assert validation_errors(document) == {}
