import json
import re
from dataclasses import replace
from functools import reduce
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.io.stores import open_store
from shared.model.errors import SourceChanged, VerifyMismatch
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.model.wire import VerifyTally
from shared.stages.combine import combine
from shared.stages.references import generate_batch
from shared.stages.verify import (
    compare_files,
    decide,
    keep_claims,
    open_source,
    reading,
    restore_claims,
    verify,
)
from shared.stages.verify.compare import _compare, float32_rounding
from tests.helpers import durable_host, open_sources, run_pipeline, scanned, submit
from tests.matrix_cases import CASES, Case, satellite_shorts_float32_packed


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


@pytest.mark.parametrize(
    "small_source_bytes", [reading.SMALL_SOURCE_BYTES, 0], ids=["read-whole", "ranged"]
)
def test_sample_mode_also_catches_a_wrong_chunk(
    sample_files, local_settings, monkeypatch, small_source_bytes
):
    """Small files are read whole even when sampled; with the threshold at 0 the same files
    are opened with h5netcdf, as a large file is."""
    monkeypatch.setattr(reading, "SMALL_SOURCE_BYTES", small_source_bytes)
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


@pytest.mark.parametrize("fmt", ["kerchunk-json", "kerchunk-parquet", "icechunk"])
def test_a_store_written_again_is_opened_again_not_taken_from_the_process(
    tmp_path, local_settings, fmt
):
    """Verify keeps the store it opened for the next activity in the process (compare.
    opened_store), keyed by the store's objects: the same store written again with other
    content (a repeated run, here another collection under the same run id) is read anew."""
    write_sample_files(tmp_path / "a", SampleSpec(files=2, lat=4, lon=6))
    write_sample_files(tmp_path / "b", SampleSpec(files=3, lat=4, lon=6))
    manifest_a, store_url = build(tmp_path / "a", local_settings, fmt)
    verify(manifest_a, store_url, fmt, "time", local_settings)  # opened and kept
    for marker in Path(local_settings.store_root).rglob("*.verified.json"):
        marker.unlink()  # else combine reuses the verified store and writes nothing
    _, again = build(tmp_path / "b", local_settings, fmt)
    assert again == store_url  # the same run id: the same store, written again
    with pytest.raises(VerifyMismatch, match=r"the store has 3 steps but the files account for 2"):
        verify(manifest_a, store_url, fmt, "time", local_settings)


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


# -- verify in batches: compare_files per batch, then one decide on every tally --------------
def in_batches(manifest_url, store_url, settings, ranges):
    """What the pipeline's verify_files and verify_decide activities do, called directly."""
    tallies = [
        compare_files(manifest_url, store_url, "kerchunk-json", "time", settings, start=a, stop=b)
        for a, b in ranges
    ]
    return decide(tallies, manifest_url, store_url, "time", settings)


def test_a_store_verified_in_batches_is_verified_as_in_one(sample_files, local_settings):
    manifest_url, store_url = build(sample_files[0].parent, local_settings)
    whole = verify(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    batched = in_batches(manifest_url, store_url, local_settings, [(0, 1), (1, 3), (3, 4)])
    assert (batched.files_checked, batched.variables_checked, batched.values_compared) == (
        whole.files_checked,
        whole.variables_checked,
        whole.values_compared,
    )


@pytest.mark.parametrize("batched", ["travelled", "kept"])
def test_files_in_two_batches_claiming_the_same_steps_are_caught_naming_both(
    tmp_path, local_settings, batched
):
    """As test_a_source_overwritten_with_another_files_content_is_caught, but the two files
    are in different batches: only the verdict on every batch's claims sees it, whether the
    claims travelled in the tallies or were kept in the work area (kept_in_batches)."""
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=3, lat=4, lon=6))
    _, store_url = build(tmp_path / "src", local_settings)
    paths[1].write_bytes(paths[0].read_bytes())
    _, rescanned = scanned(str(tmp_path / "src"), local_settings)
    with pytest.raises(
        VerifyMismatch,
        match=r"tas_day_20240102\.nc, variable 'time': its steps are also another file's "
        r"\(steps 0:1, also held by .*tas_day_20240101\.nc\)",
    ):
        in_batch = in_batches if batched == "travelled" else kept_in_batches
        in_batch(rescanned.manifest_url, store_url, local_settings, [(0, 1), (1, 3)])


def test_the_verdict_refuses_a_store_with_a_step_no_file_holds(tmp_path, local_settings):
    """The store was built from three files; the third is gone from the manifest (removed,
    then rescanned): every file compares equal, but the store's last step is no file's."""
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=3, lat=4, lon=6))
    _, store_url = build(tmp_path / "src", local_settings)
    paths[2].unlink()
    _, rescanned = scanned(str(tmp_path / "src"), local_settings)
    manifest_url = rescanned.manifest_url
    tallies = [
        compare_files(
            manifest_url, store_url, "kerchunk-json", "time", local_settings, start=a, stop=b
        )
        for a, b in [(0, 1), (1, 2)]
    ]
    assert [t.mismatches for t in tallies] == [[], []]
    with pytest.raises(
        VerifyMismatch,
        match=r"variable 'time': the store has 3 steps but the files account for 2 "
        r"\(none holds steps 2:3\)",
    ):
        decide(tallies, manifest_url, store_url, "time", local_settings)
    assert not list(Path(local_settings.store_root).rglob("*.verified.json"))


def test_the_verdict_refuses_batches_that_saw_different_step_counts(sample_files, local_settings):
    manifest_url, store_url = build(sample_files[0].parent, local_settings)
    tallies = [
        compare_files(
            manifest_url, store_url, "kerchunk-json", "time", local_settings, start=a, stop=b
        )
        for a, b in [(0, 2), (2, 4)]
    ]
    tallies[1] = replace(tallies[1], steps=5)
    with pytest.raises(VerifyMismatch, match=r"saw 5 steps in the store, the others 4"):
        decide(tallies, manifest_url, store_url, "time", local_settings)


# -- claims kept in the work area (what the pipeline's verify activities do since 1.0.0's
# successor: shared/model/wire.py VerifyInput.run_id) ------------------------------------------
def kept_in_batches(manifest_url, store_url, settings, ranges, travel=(), key="run1-1"):
    """verify_files per range keeping its claims (except the ranges in ``travel``, as an
    orchestration of an earlier release sent them), the orchestrator's fold, then
    verify_decide restoring them."""
    storage = Storage(settings)
    tallies = []
    for a, b in ranges:
        tally = compare_files(
            manifest_url, store_url, "kerchunk-json", "time", settings, start=a, stop=b
        )
        if (a, b) not in travel:
            tally = keep_claims(tally, "tas", key, settings, storage)
            assert tally.claims == []
        tallies.append(tally)
    folded = reduce(VerifyTally.fold, tallies)
    restored = restore_claims(folded, "tas", key, settings, storage)
    return decide([restored], manifest_url, store_url, "time", settings, storage)


def test_claims_kept_in_the_work_area_give_the_verdict_of_claims_that_travelled(
    sample_files, local_settings
):
    manifest_url, store_url = build(sample_files[0].parent, local_settings)
    travelled = in_batches(manifest_url, store_url, local_settings, [(0, 1), (1, 3), (3, 4)])
    kept = kept_in_batches(manifest_url, store_url, local_settings, [(0, 1), (1, 3), (3, 4)])
    assert kept.files_checked == travelled.files_checked == 4
    mixed = kept_in_batches(
        manifest_url, store_url, local_settings, [(0, 2), (2, 4)], [(0, 2)], "run1-2"
    )
    assert mixed.values_compared == travelled.values_compared


def test_a_range_whose_kept_claims_are_missing_is_an_error_naming_the_folder(
    sample_files, local_settings
):
    manifest_url, store_url = build(sample_files[0].parent, local_settings)
    storage = Storage(local_settings)
    tallies = [
        keep_claims(
            compare_files(
                manifest_url, store_url, "kerchunk-json", "time", local_settings, start=a, stop=b
            ),
            "tas", "run2-1", local_settings, storage,
        )
        for a, b in [(0, 2), (2, 4)]
    ]  # fmt: skip
    folder = Path(local_settings.work_area) / "partials" / "tas" / "verify" / "run2-1"
    (folder / f"{2:09d}.json").unlink()
    with pytest.raises(
        ValueError, match=r"verify/run2-1 cover the files \[\(0, 2\)\], not \[0, 4\)"
    ):
        restore_claims(reduce(VerifyTally.fold, tallies), "tas", "run2-1", local_settings, storage)


# -- verify in batches through the real orchestrator -------------------------------------------
SIX = SampleSpec(files=6, lat=4, lon=6)


def test_a_collection_over_several_verify_batches_verifies_and_publishes(tmp_path, local_settings):
    paths = write_sample_files(tmp_path / "src", SIX)
    settings = local_settings.with_changes(files_per_activity=1)
    request = PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "tas"})
    run = run_pipeline(request, settings, batch_size=2)  # 3 verify batches of 2 activities
    assert run.status == "succeeded" and run.stages["verify"]["seconds"] is not None
    assert list(Path(settings.store_root).rglob(f"{run.run_id}.verified.json"))
    with open_item(run.item_url, settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


def tampered_run(tmp_path, settings, monkeypatch, change):
    """A run of six files in verify batches of two, the store or the sources changed just
    after combine (tests/tamper_app.py); its final status."""
    write_sample_files(tmp_path / "src", SIX)
    monkeypatch.setenv("PIPELINE_TEST_TAMPER", json.dumps(change))
    settings = settings.with_changes(batch_size=2, files_per_activity=1)
    with durable_host(tmp_path / "state", settings, monkeypatch, "tests.tamper_app") as host:
        instance_id = submit(host, settings, source=str(tmp_path / "src"))
        status = host.wait_for(instance_id, timeout=180)
        children = [i for i in host.instances() if i.startswith(f"{instance_id}:verify:")]
    assert status["runtimeStatus"] == "Failed", status
    custom = status["customStatus"]
    assert custom["stages"]["verify"]["failed"] and not custom["outputs"].get("item_url")
    assert custom["error"]["code"] == "verify_mismatch"
    return custom, children


@pytest.mark.slow
def test_a_mismatch_in_a_file_of_the_second_batch_names_file_variable_and_index(
    tmp_path, local_settings, monkeypatch
):
    custom, children = tampered_run(
        tmp_path, local_settings, monkeypatch, {"swap": ["tas/2.0.0", "tas/3.0.0"]}
    )
    assert re.search(
        r"tas_day_20240103\.nc, variable 'tas': \d+ of \d+ values differ; first at index "
        r"\(0, 0, 0\)",
        custom["error"]["message"],
    ), custom["error"]
    assert sorted(children) == [f"pipeline-tas:verify:{i:04d}" for i in range(3)]


@pytest.mark.slow
def test_two_files_in_different_verify_batches_claiming_the_same_steps_fail_the_run_naming_the_file(
    tmp_path, local_settings, monkeypatch
):
    custom, _ = tampered_run(tmp_path, local_settings, monkeypatch, {"copy": [0, 3]})
    assert re.search(
        r"tas_day_20240104\.nc, variable 'time': its steps are also another file's \(steps 0:1, "
        r"also held by .*tas_day_20240101\.nc",
        custom["error"]["message"],
    ), custom["error"]


def _attrs_alike(found: dict, expected: dict) -> bool:
    """The same names, and values of the same shape, kind and content (NaN equals NaN)."""
    if set(found) != set(expected):
        return False
    for name, value in expected.items():
        a, b = np.asarray(found[name]), np.asarray(value)
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return False
        if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            return False
    return True


def _opened_by(ds: xr.Dataset) -> str:
    """The xarray store a dataset was opened through (its close method's owner)."""
    return type(ds._close.__self__).__name__  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.outcome == "equal"], ids=lambda c: c.name.replace(" ", "-")
)
def test_a_source_read_whole_opens_as_it_does_through_ranges(
    tmp_path, local_settings, monkeypatch, case: Case
):
    """Verify reads a small file (or every file, in full mode) whole and opens it with the
    netCDF-C library, a large sampled one with h5netcdf over ranged reads: for every file of
    the correctness matrix that publishes, both give the same variables, dtypes, attributes
    (down to their shapes), chunk shapes and values. (The threshold is set to 0 so that these
    small files take the ranged path too.)"""
    monkeypatch.setattr(reading, "SMALL_SOURCE_BYTES", 0)
    paths = case.build(tmp_path / "src")
    group = case.options.get("group")
    assert group is None or isinstance(group, str)
    storage = Storage(local_settings)
    for path in paths:
        info = storage.head(parse_location(str(path), local_settings, what="source file"))
        with (
            open_source(info, local_settings, storage, group, whole=True) as whole,
            open_source(info, local_settings, storage, group) as ranged,
        ):
            assert _opened_by(whole) == "NetCDF4DataStore"
            if _opened_by(ranged) != "H5NetCDFStore":  # NetCDF3: read whole either way
                continue
            xr.testing.assert_identical(whole.load(), ranged.load())
            assert _attrs_alike(whole.attrs, ranged.attrs)
            for name, variable in ranged.variables.items():
                alike = whole.variables[name]
                assert alike.dtype == variable.dtype, name
                assert _attrs_alike(alike.attrs, variable.attrs), name
                assert reading.chunk_shape(alike) == reading.chunk_shape(variable), name


# -- float32-packed variables: float64 in the store, held to float32 rounding ----------------
def _packed_store(tmp_path, settings):
    """Shorts flagged _Unsigned, packed with float32 scale_factor/add_offset and a fill
    value (tests/matrix_cases.py), combined without the gate: the manifest, the store."""
    satellite_shorts_float32_packed(tmp_path / "src")
    return build(tmp_path / "src", settings)


@pytest.mark.parametrize(
    "small_source_bytes", [reading.SMALL_SOURCE_BYTES, 0], ids=["read-whole", "ranged"]
)
@pytest.mark.parametrize("full_limit", [10**12, 0], ids=["full", "sample"])
def test_a_float32_packed_variable_verifies_as_float64_within_float32_rounding(
    tmp_path, local_settings, monkeypatch, full_limit, small_source_bytes
):
    monkeypatch.setattr(reading, "SMALL_SOURCE_BYTES", small_source_bytes)
    settings = local_settings.with_changes(verify_full_max_bytes=full_limit)
    manifest_url, store_url = _packed_store(tmp_path, settings)
    result = verify(manifest_url, store_url, "kerchunk-json", "time", settings)
    assert result.files_checked == 3 and result.values_compared > 0
    # the difference verify let through is real: float64 values, not all the files' float32
    files = open_sources(sorted((tmp_path / "src").glob("*.nc")))
    store, source = parse_location(store_url, settings), parse_location(str(tmp_path), settings)
    with open_store(store, "kerchunk-json", source, settings) as stored_dataset:
        assert (stored_dataset["lst"].dtype, files["lst"].dtype) == (np.float64, np.float32)
        stored, decoded = stored_dataset["lst"].values, files["lst"].values
        assert np.array_equal(np.isnan(stored), np.isnan(decoded)) and np.isnan(decoded).any()
        assert (stored != decoded)[~np.isnan(decoded)].any()


def test_a_float32_packed_store_off_by_more_than_float32_rounding_is_refused(
    tmp_path, local_settings
):
    manifest_url, store_url = _packed_store(tmp_path, local_settings)
    largest = np.float32(np.iinfo("u2").max * np.float32(0.002) + 2 * np.float32(250.0))

    def shift_add_offset(refs):  # by four ulps at the largest magnitude: every value moves
        attrs = json.loads(refs["refs"]["lst/.zattrs"])
        attrs["add_offset"] += 4 * float(np.spacing(largest))
        refs["refs"]["lst/.zattrs"] = json.dumps(attrs)

    edit_refs(store_url, shift_add_offset)
    with pytest.raises(
        VerifyMismatch,
        match=r"lst_0\.nc, variable 'lst': 22 of 24 values differ by more than float32 "
        r"rounding .* first at index \(0, 0, 1\)",
    ):
        verify(manifest_url, store_url, "kerchunk-json", "time", local_settings)


def test_a_float32_packed_store_with_other_values_is_refused(tmp_path, local_settings):
    manifest_url, store_url = _packed_store(tmp_path, local_settings)

    def swap(refs):
        chunks = refs["refs"]
        chunks["lst/0.0.0"], chunks["lst/1.0.0"] = chunks["lst/1.0.0"], chunks["lst/0.0.0"]

    edit_refs(store_url, swap)
    with pytest.raises(
        VerifyMismatch, match=r"lst_0\.nc, variable 'lst': .* differ by more than float32 rounding"
    ):
        verify(manifest_url, store_url, "kerchunk-json", "time", local_settings)


def _one_variable(path: Path, dtype: str, values, **attributes) -> Path:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", len(values))
        var = ds.createVariable("v", dtype, ("x",), fill_value=False)
        for name, value in attributes.items():
            var.setncattr(name, value)
        var.set_auto_maskandscale(False)
        var[:] = values
    return path


def test_only_float32_packing_may_decode_as_float64_and_only_within_float32_rounding(tmp_path):
    """_compare on variables read from real files, the second standing for the store."""
    raw = np.array([-32767, -1, 0, 1, 12345, 32767], "i2")

    def packed(name: str, attribute_type: type, offset: float = 100.0) -> xr.Variable:
        path = _one_variable(
            tmp_path / name,
            "i2",
            raw,
            scale_factor=attribute_type(0.01),
            add_offset=attribute_type(offset),
        )
        with xr.open_dataset(path) as ds:
            return ds.variables["v"].load()

    single, double = packed("f4.nc", np.float32), packed("f8.nc", np.float64)
    assert (single.dtype, double.dtype) == (np.float32, np.float64)
    assert not np.array_equal(single.values, double.values)
    assert _compare(single, double) is None  # what a store of the first file holds
    # add_offset four float32 ulps off at the largest |value| + |add_offset|: refused
    ulp = float(np.spacing(np.float32(427.67 + 100)))
    nudged = packed("nudged.nc", np.float64, 100.0 + 4 * ulp)
    assert "6 of 6 values differ by more than float32 rounding" in str(_compare(single, nudged))
    # no other dtype difference is accepted: plain float32 data stored as float64
    values = raw.astype("f4") / 3
    plain = _one_variable(tmp_path / "plain4.nc", "f4", values)
    wide = _one_variable(tmp_path / "plain8.nc", "f8", values.astype("f8"))
    with xr.open_dataset(plain) as a, xr.open_dataset(wide) as b:
        assert a["v"].values.tolist() == b["v"].values.tolist()  # the same values
        assert _compare(a.variables["v"], b.variables["v"]) == (
            "dtype float64 in the store, float32 in the file"
        )
    # nor a float64-packed file against a store of other dtype
    assert _compare(double, single) == "dtype float32 in the store, float64 in the file"


def test_the_float32_rounding_bound_is_one_ulp_at_value_plus_offset_and_rounds_up():
    values = np.array([1.0, -1.0, 300.0, np.nan], "f4")
    assert float32_rounding(values, 0.0)[:3].tolist() == [2.0**-23, 2.0**-23, 2.0**-15]
    assert float32_rounding(values, 270.0)[:3].tolist() == [2.0**-15] * 2 + [2.0**-14]
    assert np.isnan(float32_rounding(values, 0.0)[3])
    # |value| + |offset| just above the largest float32 below 256: the ulp above 256
    below = np.nextafter(np.float32(256), np.float32(0))
    assert float32_rounding(np.array([below]), 0.0)[0] == 2.0**-16
    assert float32_rounding(np.array([below]), 2.0**-30)[0] == 2.0**-15


def test_numpy_and_cftime_dates_compare_as_the_same_instants_and_nothing_looser():
    """A standard-calendar collection crossing 2262: a file whose dates fit decodes to numpy
    datetimes, the store's coordinate (one array) to cftime dates; verify compares the same
    instants, in either direction, and still sees a second's difference."""
    import cftime

    days = np.array([0.5, 1.5, 2.5])
    numpy_dates = xr.Variable(("time",), np.datetime64("2261-12-30", "ns") + (
        days * 86400e9).astype("timedelta64[ns]"))  # fmt: skip
    dates = cftime.num2date(days, "days since 2261-12-30", calendar="standard")
    cftime_dates = xr.Variable(("time",), np.asarray(dates, dtype=object))
    assert _compare(numpy_dates, cftime_dates) is None  # file numpy, store cftime
    assert _compare(cftime_dates, numpy_dates) is None  # and the other way round
    later = cftime.num2date(days + 1 / 86400, "days since 2261-12-30", calendar="standard")
    off = xr.Variable(("time",), np.asarray(later, dtype=object))
    assert "3 of 3 values differ" in str(_compare(numpy_dates, off))
    strings = xr.Variable(("time",), np.array(["a", "b", "c"], dtype=object))
    assert _compare(numpy_dates, strings) == "dtype object in the store, datetime64[ns] in the file"
