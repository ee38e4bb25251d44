import pytest
import xarray as xr

from devhost.samples import SampleSpec, write_sample_files
from shared.io.stores import open_store
from shared.model.errors import CombineFailed
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.stages.combine import combine, source_root
from shared.stages.references import generate_batch
from shared.stages.scan import load_manifest
from tests.helpers import open_sources, scanned


def build(source, settings, **fields):
    request, result = scanned(str(source), settings, **fields)
    generate_batch(result.manifest_url, 0, result.file_count, settings)
    combined = combine(result.manifest_url, request, "run-1", settings)
    manifest = load_manifest(result.manifest_url, settings)
    store = open_store(
        parse_location(combined.store_url, settings),
        request.format,
        source_root(manifest, settings),
        settings,
    )
    return combined, store.load()


def test_files_with_different_time_units_combine_to_the_right_times(tmp_path, local_settings):
    paths = write_sample_files(
        tmp_path / "src", SampleSpec(files=4, lat=4, lon=6, per_file_time_units=True)
    )
    combined, store = build(tmp_path / "src", local_settings)
    assert combined.dims == {"time": 4, "lat": 4, "lon": 6}
    xr.testing.assert_identical(store, open_sources(paths))


def test_files_are_ordered_by_time_not_by_name(tmp_path, local_settings):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=3, lat=4, lon=6))
    renamed = [p.rename(p.with_name(f"{9 - i}_{p.name}")) for i, p in enumerate(paths)]
    _, store = build(tmp_path / "src", local_settings)
    assert str(store.time.values[0])[:10] == "2024-01-01"
    xr.testing.assert_identical(store, open_sources(renamed).sortby("time"))


def test_overlapping_files_are_refused_naming_both(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=4, lon=6))
    write_sample_files(tmp_path / "src", SampleSpec(files=1, lat=4, lon=6, prefix="copy"))
    with pytest.raises(
        CombineFailed, match=r"copy_20240101\.nc and .*tas_day_20240101\.nc overlap"
    ):
        build(tmp_path / "src", local_settings)


def test_a_wrong_concat_dimension_names_the_file_and_its_dimensions(sample_files, local_settings):
    with pytest.raises(CombineFailed, match=r"no coordinate variable 'level'.*lat, lon, time"):
        build(sample_files[0].parent, local_settings, concat_dim="level")


def test_missing_references_say_to_run_generate_again(sample_files, local_settings):
    request, result = scanned(str(sample_files[0].parent), local_settings)
    with pytest.raises(CombineFailed, match=r"references of .* are missing") as error:
        combine(result.manifest_url, request, "run-1", local_settings)
    assert "generate" in error.value.remedy


@pytest.mark.parametrize("fmt", ["kerchunk-json", "kerchunk-parquet", "icechunk"])
def test_combining_twice_rewrites_the_same_store(sample_files, local_settings, fmt):
    first, _ = build(sample_files[0].parent, local_settings, format=fmt)
    second, store = build(sample_files[0].parent, local_settings, format=fmt)
    assert first.store_url == second.store_url
    assert (
        first.store_url == Layout.from_settings(local_settings).store("tas-daily", "run-1", fmt).url
    )
    xr.testing.assert_identical(store, open_sources(sample_files))
