"""Collections a catalog operator would accept: license and its link, providers, keywords,
title and description from the collection template or the data's global attributes;
summaries, item_assets and datacube fields from the items; all valid offline against the
schemas they declare. A collection whose license nothing names is published with a warning
in the run report and status, never a silent "other"."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.catalog.stac.collection import collection_fields, template_for
from shared.catalog.stac.licenses import resolve_license, spdx_of
from shared.model.errors import BadRequest
from shared.model.request import PipelineRequest
from shared.model.status import pipeline_view
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
    # the files' license attribute names CC BY 4.0 in a sentence, as CMIP6 files do
    assert collection["license"] == "CC-BY-4.0"
    licenses = [link for link in collection["links"] if link["rel"] == "license"]
    assert [link["href"] for link in licenses] == [
        "https://spdx.org/licenses/CC-BY-4.0.html",
        "https://creativecommons.org/licenses/by/4.0/",
    ]
    assert all(link.get("title") for link in collection["links"] if link["rel"] != "self")
    assert collection["keywords"] == ["air_temperature", "precipitation_amount"]  # CF names
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
    fields = collection_fields({}, attrs, "MIT")
    assert (fields.title, fields.description) == ("A title", "What it is.")
    assert fields.license.license == "CC0-1.0"  # the data's own, before the setting
    assert fields.license.origin == "data" and fields.license.warning is None
    assert fields.keywords == ["air temperature", "EARTH SCIENCE > ATMOSPHERE"]
    assert fields.providers == [{"name": "Met Office", "roles": ["producer"]}]
    without = {k: v for k, v in attrs.items() if k != "license"}
    assert collection_fields({}, without, "MIT").license.license == "MIT"  # then the setting
    # free text naming a URL of its terms: "other", linked to it, no warning
    text = collection_fields({}, {"license": "See https://example.org/terms."}, "")
    assert (text.license.license, text.license.warning) == ("other", None)
    assert [link.href for link in text.license.links] == ["https://example.org/terms"]
    # a producer's web page, when the data gives one (ACDD creator_url)
    linked = collection_fields({}, {**attrs, "creator_url": "https://www.metoffice.gov.uk"})
    assert linked.providers[0]["url"] == "https://www.metoffice.gov.uk"
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


def test_a_collection_with_no_license_anywhere_is_published_with_a_warning_not_silently(
    tmp_path, local_settings
):
    """No template, no license attribute, no PIPELINE_STAC_LICENSE: the collection says
    'other' (STAC requires a license), and the item, the run report (JSON and Markdown) and
    the run's status say that no license is known."""
    write_sample_files(tmp_path / "tas", replace(SPEC, license=None))
    request = {"source": str(tmp_path / "tas"), "dataset_id": "tas"}
    run = run_pipeline(PipelineRequest.from_dict(request), local_settings)

    collection = json.loads((Path(local_settings.catalog) / "tas" / "collection.json").read_text())
    assert collection["license"] == "other"
    assert [link for link in collection["links"] if link["rel"] == "license"] == []
    (warning,) = run.output["warnings"]  # the status the orchestrator ends with
    assert warning["code"] == "license_unknown" and "no rights granted" in warning["message"]
    assert "PIPELINE_STAC_COLLECTION_TEMPLATE" in warning["remedy"]
    view = pipeline_view({"customStatus": run.output, "runtimeStatus": "Completed"})
    assert view["warnings"] == [warning]  # GET /api/pipelines/{id}
    record = json.loads(Path(run.report_url.removeprefix("file://")).read_text())
    assert record["warnings"] == [warning]
    page = Path(run.summary_url.removeprefix("file://")).read_text()
    assert "## Warnings" in page and "**license_unknown**" in page
    item = json.loads(Path(run.item_url.removeprefix("file://")).read_text())
    assert "License unknown" in item["properties"]["description"]
    assert validation_errors(item) == {} and validation_errors(collection) == {}


def test_a_license_in_words_that_name_no_license_and_no_url_is_warned_as_unlinked(
    tmp_path, local_settings
):
    spec = replace(SPEC, license="Free for research use; ask the authors otherwise.")
    write_sample_files(tmp_path / "tas", spec)
    request = {"source": str(tmp_path / "tas"), "dataset_id": "tas"}
    run = run_pipeline(PipelineRequest.from_dict(request), local_settings)
    (warning,) = run.output["warnings"]
    assert warning["code"] == "license_unlinked" and "Free for research use" in warning["message"]
    item = json.loads(Path(run.item_url.removeprefix("file://")).read_text())
    assert "License not machine-readable" in item["properties"]["description"]


@pytest.mark.parametrize(
    ("text", "spdx"),
    [
        ("CC-BY-4.0", "CC-BY-4.0"),
        ("cc0-1.0", "CC0-1.0"),
        (
            "CMIP6 model data produced by NCAR is licensed under a Creative Commons Attribution"
            " 4.0 International License (https://creativecommons.org/licenses/by/4.0/).",
            "CC-BY-4.0",
        ),
        (
            "CMIP6 model data produced by MOHC is licensed under a Creative Commons "
            "Attribution-ShareAlike 4.0 International License (https://creativecommons.org/"
            "licenses). Consult https://pcmdi.llnl.gov/CMIP6/TermsOfUse for terms of use.",
            "CC-BY-SA-4.0",
        ),
        ("Creative Commons Attribution-NonCommercial-ShareAlike 4.0", "CC-BY-NC-SA-4.0"),
        ("CC BY-SA 3.0", "CC-BY-SA-3.0"),
        ("https://creativecommons.org/licenses/by-nc-nd/4.0/", "CC-BY-NC-ND-4.0"),
        ("Public domain (CC0)", "CC0-1.0"),
        ("Open Data Commons ODbL-1.0", None),  # words around an id: not guessed
        ("CC-BY 4.0 or CC-BY-SA 4.0", None),  # two licenses: not one
        ("Proprietary", None),
    ],
)
def test_a_license_attribute_maps_to_the_spdx_id_it_names(text, spdx):
    assert spdx_of(text) == spdx


def test_the_template_then_the_data_then_the_setting_give_the_license_and_its_links():
    cmip6 = {
        "license": "Licensed under a Creative Commons Attribution 4.0 International License "
        "(https://creativecommons.org/licenses/by/4.0/). See https://pcmdi.llnl.gov/CMIP6/"
        "TermsOfUse."
    }
    from_data = resolve_license({}, cmip6, "MIT")
    assert (from_data.license, from_data.origin, from_data.warning) == ("CC-BY-4.0", "data", None)
    assert [link.href for link in from_data.links] == [
        "https://spdx.org/licenses/CC-BY-4.0.html",
        "https://creativecommons.org/licenses/by/4.0/",
        "https://pcmdi.llnl.gov/CMIP6/TermsOfUse",
    ]
    template = resolve_license({"license": "other", "license_href": "https://x.org/t"}, cmip6)
    assert (template.license, [link.href for link in template.links]) == (
        "other",
        ["https://x.org/t"],
    )
    assert resolve_license({}, {}, "ODbL-1.0").license == "ODbL-1.0"
    unlinked = resolve_license({"license": "other"}, cmip6)
    assert unlinked.warning is not None and unlinked.warning["code"] == "license_unlinked"
