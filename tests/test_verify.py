import json
from pathlib import Path

import netCDF4
import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.model.errors import SourceChanged, VerifyMismatch
from shared.stages.combine import combine
from shared.stages.references import generate_batch
from shared.stages.verify import verify
from tests.helpers import scanned


def edit_refs(store_url, change):
    path = Path(store_url.removeprefix("file://"))
    refs = json.loads(path.read_text())
    change(refs)
    path.write_text(json.dumps(refs))


def build(source, settings, fmt="kerchunk-json"):
    request, result = scanned(str(source), settings, format=fmt)
    generate_batch(result.manifest_url, 0, result.file_count, settings)
    combined = combine(result.manifest_url, request, "run-1", settings)
    return result.manifest_url, combined.store_url


@pytest.mark.parametrize("fmt", ["kerchunk-json", "kerchunk-parquet", "icechunk"])
@pytest.mark.parametrize("full_limit", [10**12, 0], ids=["full", "sample"])
def test_a_correct_store_passes_in_full_and_in_sample_mode(
    sample_files, local_settings, fmt, full_limit
):
    settings = local_settings.with_changes(verify_full_max_bytes=full_limit)
    manifest_url, store_url = build(sample_files[0].parent, settings, fmt)
    result = verify(manifest_url, store_url, fmt, "time", settings)
    assert result.mode == ("full" if full_limit else "sample")
    assert result.files_checked == 4
    assert result.values_compared > 0


def test_swapped_chunk_references_are_caught_naming_file_and_variable(sample_files, local_settings):
    manifest_url, store_url = build(sample_files[0].parent, local_settings)

    def swap(refs):
        chunks = refs["refs"]
        chunks["tas/1.0.0"], chunks["tas/2.0.0"] = chunks["tas/2.0.0"], chunks["tas/1.0.0"]

    edit_refs(store_url, swap)
    with pytest.raises(
        VerifyMismatch, match=r"tas_day_20240102\.nc, variable 'tas': .* values differ"
    ) as error:
        verify(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    assert "Nothing was published" in error.value.remedy


def test_sample_mode_also_catches_a_wrong_chunk(sample_files, local_settings):
    settings = local_settings.with_changes(verify_full_max_bytes=0, verify_sample_chunks=1)
    manifest_url, store_url = build(sample_files[0].parent, settings)
    edit_refs(store_url, lambda refs: refs["refs"].update({"pr/3.0.0": refs["refs"]["pr/0.0.0"]}))
    with pytest.raises(VerifyMismatch, match=r"tas_day_20240104\.nc, variable 'pr'"):
        verify(manifest_url, store_url, "kerchunk-json", "time", settings)


def test_a_source_rewritten_in_place_after_combine_is_caught(tmp_path, local_settings):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=4, lon=6))
    manifest_url, store_url = build(tmp_path / "src", local_settings)
    with netCDF4.Dataset(paths[1], "a") as ds:  # same layout, new values
        ds["tas"][:] = ds["tas"][:] + 1.0
    # Its ETag changed: verify says so before comparing any value.
    with pytest.raises(SourceChanged, match=r"tas_day_20240102\.nc changed after"):
        verify(manifest_url, store_url, "kerchunk-json", "time", local_settings)


def test_a_variable_missing_from_the_store_is_caught(sample_files, local_settings):
    manifest_url, store_url = build(sample_files[0].parent, local_settings)

    def drop_pr(refs):
        refs["refs"] = {k: v for k, v in refs["refs"].items() if not k.startswith("pr/")}

    edit_refs(store_url, drop_pr)
    with pytest.raises(VerifyMismatch, match="variable 'pr': is missing from the store"):
        verify(manifest_url, store_url, "kerchunk-json", "time", local_settings)


@pytest.mark.parametrize("full_limit", [10**12, 0], ids=["full", "sample"])
def test_a_source_overwritten_with_another_files_content_is_caught(
    tmp_path, local_settings, full_limit
):
    """The store was built from three files; then the second is replaced by a copy of the
    first. Read again, every file's values exist in the store, but two files claim the
    same steps and one step has no file: verify must refuse (a rescan gives a manifest with
    the new ETag, so nothing else would notice)."""
    settings = local_settings.with_changes(verify_full_max_bytes=full_limit)
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=3, lat=4, lon=6))
    _, store_url = build(tmp_path / "src", settings)
    paths[1].write_bytes(paths[0].read_bytes())
    _, rescanned = scanned(str(tmp_path / "src"), settings)
    with pytest.raises(VerifyMismatch, match=r"tas_day_20240102\.nc.*also another file's"):
        verify(rescanned.manifest_url, store_url, "kerchunk-json", "time", settings)
