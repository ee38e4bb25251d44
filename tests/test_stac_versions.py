"""A dataset's versions in the catalog, as the STAC version extension links them: the item
is the current version; earlier published versions are snapshots beside it (deprecated, not
listed by the collection), linked latest-version / predecessor-version / successor-version;
unpublishing and pruning keep the links true."""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest
from pystac.extensions.version import DeprecatedWarning

from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.model.request import PipelineRequest
from shared.stages.release import prune, unpublish
from tests.helpers import run_pipeline
from tests.stac_schemas import validation_errors

SPEC = SampleSpec(files=2, lat=6, lon=10)


def _publish(source: Path, settings) -> str:
    request = PipelineRequest.from_dict({"source": str(source), "dataset_id": "tas"})
    return run_pipeline(request, settings).run_id


def _add_day(source: Path, index: int) -> Path:
    write_sample_files(source, SampleSpec(files=1, lat=6, lon=10, first_index=index))
    return source


def _three_versions(tmp_path: Path, settings) -> tuple[str, str, str]:
    """Three published versions: the sample files, then one more day, then another."""
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    first = _publish(source, settings)
    _add_day(source, 2)
    second = _publish(source, settings)
    _add_day(source, 3)
    return first, second, _publish(source, settings)


def _folder(settings) -> Path:
    return Path(settings.catalog) / "tas" / "tas"


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _links(document: dict) -> dict[str, str]:
    return {
        link["rel"]: link["href"] for link in document["links"] if link["rel"].endswith("-version")
    }


def _snapshots(settings) -> list[str]:
    return sorted(p.stem for p in (_folder(settings) / "versions").glob("*.json"))


@pytest.mark.slow
def test_each_run_links_the_versions_and_unpublish_keeps_them_true(tmp_path, local_settings):
    settings = local_settings.with_changes(keep_versions=5)
    source = tmp_path / "src"
    write_sample_files(source, SPEC)
    first = _publish(source, settings)
    item = _read(_folder(settings) / "tas.json")
    assert item["properties"]["version"] == first
    assert _links(item) == {"latest-version": "./tas.json"}
    assert _snapshots(settings) == []
    assert _publish(source, settings) == first  # the same files: the same version, no snapshot
    assert _snapshots(settings) == []

    second = _publish(_add_day(source, 2), settings)
    third = _publish(_add_day(source, 3), settings)
    item = _read(_folder(settings) / "tas.json")
    assert item["properties"]["version"] == third and "deprecated" not in item["properties"]
    assert _links(item) == {
        "latest-version": "./tas.json",
        "predecessor-version": f"./versions/{second}.json",
    }
    assert _snapshots(settings) == sorted([first, second])
    oldest = _read(_folder(settings) / "versions" / f"{first}.json")
    middle = _read(_folder(settings) / "versions" / f"{second}.json")
    assert oldest["properties"]["version"] == first and oldest["properties"]["deprecated"] is True
    assert _links(oldest) == {
        "latest-version": "../tas.json",
        "successor-version": f"./{second}.json",
    }
    assert _links(middle) == {
        "latest-version": "../tas.json",
        "predecessor-version": f"./{first}.json",
        "successor-version": "../tas.json",
    }
    for document in (item, oldest, middle):
        assert validation_errors(document) == {}
    # each names its own sources asset by its own file name (vrt:hrefs)
    for document, name in ((item, "tas"), (oldest, first), (middle, second)):
        (ref,) = document["assets"]["data"]["vrt:hrefs"]
        assert ref == {"key": "sources", "href": f"./{name}.json#/assets/sources"}

    # a reader walks from the item to the oldest version and back, with pystac; the
    # snapshots' own links (collection, root) still resolve from one folder deeper
    current = pystac.Item.from_file(str(_folder(settings) / "tas.json"))
    with pytest.warns(DeprecatedWarning, match="'tas' is deprecated"):  # pystac says so
        walked = current.get_single_link("predecessor-version").resolve_stac_object().target
        walked = walked.get_single_link("predecessor-version").resolve_stac_object().target
    assert walked.properties["version"] == first
    assert walked.get_collection().id == "tas"
    assert walked.get_single_link("latest-version").resolve_stac_object().target.id == "tas"
    # the collection lists one item per dataset, never a snapshot
    collection = pystac.Collection.from_file(
        str(Path(settings.catalog) / "tas" / "collection.json")
    )
    assert [i.properties["version"] for i in collection.get_items()] == [third]

    storage = Storage(settings)
    answer = unpublish(
        dataset_id="tas", version=third, by="ann", reason="bad day", settings=settings,
        storage=storage,
    )  # fmt: skip
    assert answer.current == second  # restored: its snapshot is the item again
    item = _read(_folder(settings) / "tas.json")
    assert item["properties"]["version"] == second
    assert _links(item) == {
        "latest-version": "./tas.json",
        "predecessor-version": f"./versions/{first}.json",
    }
    assert _snapshots(settings) == [first]  # the withdrawn version is gone, not deprecated
    assert _links(_read(_folder(settings) / "versions" / f"{first}.json")) == {
        "latest-version": "../tas.json",
        "successor-version": "../tas.json",
    }

    unpublish(
        dataset_id="tas", version=first, by="ann", reason="old", settings=settings,
        storage=storage,
    )  # fmt: skip
    assert _snapshots(settings) == []
    assert _links(_read(_folder(settings) / "tas.json")) == {"latest-version": "./tas.json"}

    unpublish(
        dataset_id="tas", version=second, by="ann", reason="all", settings=settings,
        storage=storage,
    )  # fmt: skip
    assert not _folder(settings).exists() or list(_folder(settings).rglob("*.json")) == []


@pytest.mark.slow
def test_pruned_versions_leave_the_version_links(tmp_path, local_settings):
    settings = local_settings.with_changes(keep_versions=2)
    first, second, third = _three_versions(tmp_path, settings)
    prune("tas", third, settings, Storage(settings))  # as the pipeline's step after register
    assert _snapshots(settings) == [second]
    assert first not in json.dumps(_read(_folder(settings) / "versions" / f"{second}.json"))
    assert _links(_read(_folder(settings) / "tas.json"))["predecessor-version"] == (
        f"./versions/{second}.json"
    )
