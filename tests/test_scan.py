import json
from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_bytes, write_sample_files
from shared.io.storage import Storage
from shared.model.errors import EmptySource, SourceNotFound, TooManyFiles
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.stages import scan as scan_module
from shared.stages.scan import load_manifest, load_manifest_slice, scan


def request(source: str, **extra) -> PipelineRequest:
    return PipelineRequest.from_dict({"source": source, "dataset_id": "tas-daily", **extra})


def test_scan_lists_matching_files_sorted_with_size_and_etag(sample_files, local_settings):
    write_bytes(sample_files[0].parent / "README.txt", b"not data")
    result = scan(request(str(sample_files[0].parent)), local_settings)
    manifest = load_manifest(result.manifest_url, local_settings)
    assert result.file_count == 4
    assert [Path(f.url.removeprefix("file://")) for f in manifest.files] == sorted(sample_files)
    assert result.total_bytes == sum(p.stat().st_size for p in sample_files)
    assert all(f.etag and f.size > 0 and f.last_modified for f in manifest.files)


def test_scan_manifest_name_is_deterministic_and_changes_when_a_file_changes(
    sample_files, local_settings
):
    first = scan(request(str(sample_files[0].parent)), local_settings)
    again = scan(request(str(sample_files[0].parent)), local_settings)
    assert first.manifest_url == again.manifest_url
    sample_files[0].write_bytes(sample_files[0].read_bytes() + b"\0")
    changed = scan(request(str(sample_files[0].parent)), local_settings)
    assert changed.manifest_url != first.manifest_url


def test_scan_finds_files_in_subfolders_and_honours_custom_patterns(tmp_path, local_settings):
    write_bytes(tmp_path / "src" / "2024" / "a.nc", b"x")
    write_bytes(tmp_path / "src" / "2025" / "b.h5", b"x")
    write_bytes(tmp_path / "src" / "2025" / "c.grib", b"x")
    default = load_manifest(
        scan(request(str(tmp_path / "src")), local_settings).manifest_url, local_settings
    )
    assert [f.url.rsplit("/", 2)[-2:] for f in default.files] == [
        ["2024", "a.nc"],
        ["2025", "b.h5"],
    ]
    custom = scan(request(str(tmp_path / "src"), options={"patterns": ["2025/*"]}), local_settings)
    assert custom.file_count == 2


def test_a_single_file_source_is_a_one_file_collection(sample_files, local_settings):
    assert scan(request(str(sample_files[1])), local_settings).file_count == 1


def test_empty_folder_is_refused_saying_there_are_no_files(tmp_path, local_settings):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptySource, match="There are no files under"):
        scan(request(str(tmp_path / "empty")), local_settings)


def test_folder_without_matching_files_names_what_it_found(tmp_path, local_settings):
    write_bytes(tmp_path / "src" / "notes.txt", b"hello")
    with pytest.raises(EmptySource, match=r"found only notes\.txt"):
        scan(request(str(tmp_path / "src")), local_settings)


def test_missing_source_folder_is_named(tmp_path, local_settings):
    with pytest.raises(SourceNotFound, match="does-not-exist"):
        scan(request(str(tmp_path / "does-not-exist")), local_settings)


def test_more_files_than_the_limit_is_refused_with_the_limit(
    sample_files, local_settings: Settings
):
    settings = local_settings.with_changes(max_files=3)
    with pytest.raises(TooManyFiles, match="more than 3 matching files"):
        scan(request(str(sample_files[0].parent)), settings)


@pytest.mark.azurite
def test_scan_of_a_blob_prefix_records_etags(sample_files, blob_settings, containers):
    container = containers.new("src")
    containers.upload(container, "daily/tas", sample_files)
    containers.upload(container, "other", sample_files[:1])
    result = scan(request(f"abfs://{container}/daily/tas"), blob_settings)
    manifest = load_manifest(result.manifest_url, blob_settings)
    assert result.file_count == 4
    assert manifest.files[0].url == f"az://{container}/daily/tas/{sample_files[0].name}"
    assert all(f.etag and '"' not in f.etag for f in manifest.files)
    assert result.manifest_url.startswith(blob_settings.work_area)


def _every_slice_reads_as_the_whole_manifest_sliced(url: str, settings: Settings) -> None:
    whole = load_manifest(url, settings)
    count = len(whole.files)
    for start in range(count + 1):
        for stop in range(start, count + 1):
            got, total = load_manifest_slice(url, start, stop, settings)
            assert total == count
            assert got == whole.subset(whole.files[start:stop]), (start, stop)


def _drop_index(url: str, settings: Settings) -> None:
    """As a manifest written before indexes: no index beside it."""
    location = scan_module.index_location(parse_location(url, settings))
    Path(location.path).unlink()


def test_a_slice_of_the_manifest_read_in_small_pieces_is_the_slice_of_the_whole(
    sample_files, local_settings, monkeypatch
):
    """Without an index (a manifest written before them), load_manifest_slice reads the
    manifest a piece at a time: pieces of 7 bytes cut every key, string and number of it
    somewhere."""
    monkeypatch.setattr(scan_module, "MANIFEST_PIECE", 7)
    result = scan(request(str(sample_files[0].parent)), local_settings)
    _drop_index(result.manifest_url, local_settings)
    _every_slice_reads_as_the_whole_manifest_sliced(result.manifest_url, local_settings)


def test_a_slice_read_with_the_index_is_the_slice_of_the_whole_and_reads_only_its_lines(
    tmp_path, local_settings, monkeypatch
):
    """The index gives every INDEX_EVERY-th entry's offset (3 here, over 10 files): a slice
    reads the header and the lines of its blocks, nothing else."""
    monkeypatch.setattr(scan_module, "INDEX_EVERY", 3)
    write_sample_files(tmp_path / "src", SampleSpec(files=10, lat=2, lon=3))
    result = scan(request(str(tmp_path / "src")), local_settings)
    _every_slice_reads_as_the_whole_manifest_sliced(result.manifest_url, local_settings)
    storage = Storage(local_settings).traced()
    load_manifest_slice(result.manifest_url, 9, 10, local_settings, storage)
    manifest = parse_location(result.manifest_url, local_settings).path
    ranges = [r for r in storage.trace.requests if r.path.endswith(Path(manifest).name)]
    whole = Path(manifest).stat().st_size
    assert sum(r.length for r in ranges) < whole / 3  # the header and the last line


def test_a_manifest_changed_after_its_index_is_read_without_it(
    tmp_path, local_settings, monkeypatch
):
    """An index that no longer matches its manifest (another size) is not used: the slice
    is still the slice of the manifest as it is."""
    monkeypatch.setattr(scan_module, "INDEX_EVERY", 3)
    write_sample_files(tmp_path / "src", SampleSpec(files=5, lat=2, lon=3))
    result = scan(request(str(tmp_path / "src")), local_settings)
    path = Path(parse_location(result.manifest_url, local_settings).path)
    document = json.loads(path.read_text())
    document["files"] = document["files"][1:] + document["files"][:1]  # rewritten by hand
    path.write_text(json.dumps(document))
    _every_slice_reads_as_the_whole_manifest_sliced(result.manifest_url, local_settings)


def test_a_manifests_index_is_read_and_checked_once_a_process_until_scan_writes_it_again(
    tmp_path, local_settings, monkeypatch
):
    """Every validate, generate and verify batch slices the same manifest: its index is read
    (and the manifest's size checked against it) by the first, then taken from memory; a
    manifest scan writes is read again (its name is the digest of what it lists)."""
    write_sample_files(tmp_path / "src", SampleSpec(files=4, lat=2, lon=3))
    result = scan(request(str(tmp_path / "src")), local_settings)
    asked: list[str] = []
    read_json, head = Storage.read_json, Storage.head

    def spied_read_json(storage, location):
        asked.append(f"read {Path(location.path).name}")
        return read_json(storage, location)

    def spied_head(storage, location):
        asked.append(f"head {Path(location.path).name}")
        return head(storage, location)

    monkeypatch.setattr(Storage, "read_json", spied_read_json)
    monkeypatch.setattr(Storage, "head", spied_head)
    for start in range(4):
        load_manifest_slice(result.manifest_url, start, start + 1, local_settings)
    name = Path(parse_location(result.manifest_url, local_settings).path).name
    index = name.removesuffix(".json") + ".index.json"
    assert asked.count(f"read {index}") == 1 and asked.count(f"head {name}") == 1
    scan(request(str(tmp_path / "src")), local_settings)  # writes the same manifest again
    asked.clear()
    load_manifest_slice(result.manifest_url, 0, 1, local_settings)
    assert asked.count(f"read {index}") == 1


@pytest.mark.azurite
def test_a_slice_of_a_blob_manifest_is_read_in_ranges(
    sample_files, blob_settings, containers, monkeypatch
):
    monkeypatch.setattr(scan_module, "MANIFEST_PIECE", 64)
    container = containers.new("src")
    containers.upload(container, "daily/tas", sample_files)
    result = scan(request(f"abfs://{container}/daily/tas"), blob_settings)
    _every_slice_reads_as_the_whole_manifest_sliced(result.manifest_url, blob_settings)
    index = scan_module.index_location(parse_location(result.manifest_url, blob_settings))
    Storage(blob_settings).delete([index])  # without it: in pieces of 64 bytes
    _every_slice_reads_as_the_whole_manifest_sliced(result.manifest_url, blob_settings)


@pytest.mark.azurite
def test_blob_prefix_with_nothing_under_it_is_empty(blob_settings, containers):
    container = containers.new("src")
    with pytest.raises(EmptySource, match="There are no files under"):
        scan(request(f"az://{container}/nothing-here"), blob_settings)


@pytest.mark.azurite
def test_missing_container_is_named(blob_settings):
    with pytest.raises(SourceNotFound, match="no-such-container"):
        scan(request("az://no-such-container/x"), blob_settings)
