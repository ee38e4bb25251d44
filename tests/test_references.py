import json

import numpy as np
import pytest
import xarray as xr
from virtualizarr.manifests import ManifestStore

from devhost.samples import SampleSpec, write_bytes, write_sample_files
from shared.io.storage import Storage
from shared.model.errors import ReferencesFailed, SourceChanged
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.stages.references import build_references, generate_batch, generate_file, manifest_group
from shared.stages.scan import load_manifest
from tests.helpers import scanned


def first_file(paths, settings):
    _, result = scanned(str(paths[0].parent), settings)
    return load_manifest(result.manifest_url, settings).files[0]


def reopen(document, settings, loadable=("time", "crs")):
    group = manifest_group(json.loads(json.dumps(document)))
    source = parse_location(document["source"]["url"], settings)
    store = ManifestStore(group=group, registry=Storage(settings).registry([source]))
    return store.to_virtual_dataset(loadable_variables=list(loadable))


@pytest.mark.parametrize("with_value", [False, True])
def test_references_read_back_every_variable_exactly_including_scalars(
    tmp_path, local_settings, with_value
):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=1, lat=5, lon=7))
    if with_value:  # a grid mapping with a value written (kerchunk turns this one into NaN)
        import netCDF4

        with netCDF4.Dataset(paths[0], "a") as ds:
            ds["crs"].assignValue(4326)
    info = first_file(paths, local_settings)
    document = build_references(info, local_settings, Storage(local_settings))
    group = manifest_group(json.loads(json.dumps(document)))
    store = ManifestStore(
        group=group,
        registry=Storage(local_settings).registry([parse_location(info.url, local_settings)]),
    )
    from_refs = xr.open_zarr(store, consolidated=False, zarr_format=3).load()
    with xr.open_dataset(paths[0]) as source:
        xr.testing.assert_identical(from_refs, source.load())


def test_concat_coordinate_and_scalars_are_inlined_as_raw_bytes(sample_files, local_settings):
    info = first_file(sample_files, local_settings)
    document = build_references(info, local_settings, Storage(local_settings))
    assert document["arrays"]["time"]["inline"]
    assert document["arrays"]["tas"]["inline"] == {}
    assert document["arrays"]["tas"]["paths"] is None  # every chunk is in this file
    assert document["source"] == info.to_dict()


def test_netcdf3_classic_files_get_references(tmp_path, local_settings):
    paths = write_sample_files(
        tmp_path / "src", SampleSpec(files=1, lat=5, lon=7, netcdf_format="NETCDF3_CLASSIC")
    )
    info = first_file(paths, local_settings)
    document = build_references(info, local_settings, Storage(local_settings))
    assert document["file_format"] == "netcdf3"
    virtual = reopen(document, local_settings)
    assert virtual["time"].values[0] == np.datetime64("2024-01-01")


def test_generate_writes_once_and_reuses_references_for_the_same_file_and_etag(
    sample_files, local_settings
):
    info = first_file(sample_files, local_settings)
    storage = Storage(local_settings)
    location, reused, size = generate_file(info, local_settings, storage)
    assert not reused and size > 0
    assert location == Layout.from_settings(local_settings).references(info.url, info.etag)
    assert generate_file(info, local_settings, storage)[1] is True


def test_a_file_changed_after_scan_is_refused_naming_both_etags(sample_files, local_settings):
    info = first_file(sample_files, local_settings)
    sample_files[0].write_bytes(sample_files[0].read_bytes())  # same bytes, new ETag
    with pytest.raises(SourceChanged) as error:
        generate_file(info, local_settings, Storage(local_settings))
    assert info.etag in error.value.message and info.url in error.value.message


def test_a_file_that_is_not_netcdf_is_refused_naming_what_it_is(tmp_path, local_settings):
    write_bytes(tmp_path / "src" / "fake.nc", b"%PDF-1.7 not a netcdf file at all")
    info = first_file([tmp_path / "src" / "fake.nc"], local_settings)
    with pytest.raises(ReferencesFailed, match=r"fake\.nc is neither HDF5.*a PDF document"):
        build_references(info, local_settings, Storage(local_settings))


def test_generating_references_reads_a_small_share_of_a_large_file(tmp_path, local_settings):
    spec = SampleSpec(files=1, steps_per_file=400, lat=90, lon=180, compression=False)
    paths = write_sample_files(tmp_path / "src", spec)
    size = paths[0].stat().st_size
    _, result = scanned(str(tmp_path / "src"), local_settings)
    batch = generate_batch(result.manifest_url, 0, 1, local_settings)
    assert size > 30_000_000
    assert batch.generated == 1
    assert batch.bytes_read < 0.05 * size, f"read {batch.bytes_read} of {size} bytes"
