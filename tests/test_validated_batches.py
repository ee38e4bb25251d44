"""Validate's batch documents (shared.stages.validated): one document a validate call holds
its files' reports and the size of the references it wrote, so the gate and the run report
read a document a batch instead of a report a file, and generate takes the references a
document vouches for without asking storage about each file. Whatever no document covers
(none written, one unreadable, one of other libraries, a file at another ETag) is read file
by file as before, with the same answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.model.layout import Layout, library_versions
from shared.model.locations import Location
from shared.model.settings import Settings
from shared.stages.gate import gate
from shared.stages.references import generate_batch
from shared.stages.runreport import read_verdicts
from shared.stages.scan import ScanManifest, load_manifest
from shared.stages.validate import validate_batch
from shared.stages.validated import stored_reports
from tests.helpers import scanned

SPEC = SampleSpec(files=6, steps_per_file=2, lat=4, lon=6)
PER_BATCH = 3
DATASET = "tas-daily"


class Asked:
    """Which objects the code under test read or asked about (a spy on Storage's own read
    and head: they still run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read: list[str] = []
        self.head: list[str] = []
        read, head = Storage.read, Storage.head

        def spied_read(storage: Storage, location: Location, **kwargs: object) -> bytes:
            self.read.append(location.url)
            return read(storage, location, **kwargs)  # type: ignore[arg-type]

        def spied_head(storage: Storage, location: Location):  # type: ignore[no-untyped-def]
            self.head.append(location.url)
            return head(storage, location)

        monkeypatch.setattr(Storage, "read", spied_read)
        monkeypatch.setattr(Storage, "head", spied_head)

    def reports_read(self) -> int:
        return sum("/reports/" in url for url in self.read)

    def clear(self) -> None:
        self.read.clear()
        self.head.clear()


@pytest.fixture
def validated(tmp_path: Path, local_settings: Settings) -> Iterator[tuple[str, ScanManifest]]:
    write_sample_files(tmp_path / "src", SPEC)
    _, result = scanned(str(tmp_path / "src"), local_settings)
    for start in range(0, SPEC.files, PER_BATCH):
        validate_batch(result.manifest_url, start, start + PER_BATCH, local_settings)
    yield result.manifest_url, load_manifest(result.manifest_url, local_settings)


def _document_path(settings: Settings, manifest_url: str, start: int) -> Path:
    layout = Layout.from_settings(settings)
    return Path(layout.validated_batch(DATASET, manifest_url, start, start + PER_BATCH).path)


def _remove_documents(settings: Settings, manifest_url: str) -> None:
    for start in range(0, SPEC.files, PER_BATCH):
        _document_path(settings, manifest_url, start).unlink()


def test_validate_writes_one_document_a_batch_with_each_files_report_and_references(
    validated: tuple[str, ScanManifest], local_settings: Settings
) -> None:
    manifest_url, manifest = validated
    layout = Layout.from_settings(local_settings)
    storage = Storage(local_settings)
    for start in range(0, SPEC.files, PER_BATCH):
        document = json.loads(_document_path(local_settings, manifest_url, start).read_text())
        files = manifest.files[start : start + PER_BATCH]
        assert document["kind"] == "validated-batch"
        assert document["libraries"] == library_versions()
        assert document["concat_dim"] == "time"
        assert [f["url"] for f in document["files"]] == [info.url for info in files]
        for entry, info in zip(document["files"], files, strict=True):
            assert entry["etag"] == info.etag
            assert entry["report"] == storage.read_json(layout.report(info.url, info.etag))
            references = Path(layout.references(info.url, info.etag).path)
            assert entry["references"] == references.stat().st_size


def test_generate_takes_the_references_a_document_vouches_for_without_asking_per_file(
    validated: tuple[str, ScanManifest], local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_url, _ = validated
    asked = Asked(monkeypatch)
    batch = generate_batch(manifest_url, 0, PER_BATCH, local_settings)
    assert (batch.reused, batch.generated) == (PER_BATCH, 0)
    # neither a source's ETag nor whether its references exist (the manifest's slice is read
    # as before)
    assert [url for url in asked.head if "/manifests/" not in url] == []


def test_generate_without_a_document_checks_each_file_as_before(
    validated: tuple[str, ScanManifest], local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_url, manifest = validated
    _remove_documents(local_settings, manifest_url)
    asked = Asked(monkeypatch)
    batch = generate_batch(manifest_url, 0, PER_BATCH, local_settings)
    assert (batch.reused, batch.generated) == (PER_BATCH, 0)
    sources = {info.url for info in manifest.files[:PER_BATCH]}
    assert sources <= set(asked.head)  # each file's ETag checked, its references asked for


def test_a_document_written_by_other_libraries_vouches_for_nothing(
    validated: tuple[str, ScanManifest], local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_url, manifest = validated
    path = _document_path(local_settings, manifest_url, 0)
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "libraries": {"virtualizarr": "0.0.1"}}))
    asked = Asked(monkeypatch)
    generate_batch(manifest_url, 0, PER_BATCH, local_settings)
    assert {info.url for info in manifest.files[:PER_BATCH]} <= set(asked.head)


def test_the_gate_reads_a_document_a_batch_and_decides_as_from_each_report(
    validated: tuple[str, ScanManifest], local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_url, _ = validated
    asked = Asked(monkeypatch)
    from_documents = gate(manifest_url, local_settings).to_dict()
    assert asked.reports_read() == 0
    _remove_documents(local_settings, manifest_url)
    asked.clear()
    from_reports = gate(manifest_url, local_settings).to_dict()
    assert asked.reports_read() == SPEC.files
    for answer in (from_documents, from_reports):
        answer.pop("seconds")
    assert from_documents == from_reports


def test_the_run_report_reads_the_same_verdicts_from_documents_as_from_each_report(
    validated: tuple[str, ScanManifest], local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_url, manifest = validated
    storage = Storage(local_settings)
    asked = Asked(monkeypatch)
    from_documents = read_verdicts(manifest_url, manifest, local_settings, storage)
    assert asked.reports_read() == 0 and len(from_documents) == SPEC.files
    _remove_documents(local_settings, manifest_url)
    assert read_verdicts(manifest_url, manifest, local_settings, storage) == from_documents


def test_an_unreadable_document_is_passed_over_and_its_files_reports_read_instead(
    validated: tuple[str, ScanManifest], local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_url, _ = validated
    _document_path(local_settings, manifest_url, 0).write_text('{"kind": "validated-batch", ')
    asked = Asked(monkeypatch)
    gate(manifest_url, local_settings)
    assert asked.reports_read() == PER_BATCH  # the broken document's files, on their own
    batch = generate_batch(manifest_url, 0, PER_BATCH, local_settings)
    assert batch.reused == PER_BATCH


def test_a_report_at_another_etag_than_the_manifests_is_not_taken_from_a_document(
    validated: tuple[str, ScanManifest], local_settings: Settings
) -> None:
    manifest_url, manifest = validated
    storage = Storage(local_settings)
    other = replace(manifest.files[0], etag="other")
    changed = manifest.subset((other, *manifest.files[1:]))
    stored = stored_reports(manifest_url, DATASET, changed.files, local_settings, storage)
    assert manifest.files[0].url not in stored
    assert set(stored) == {info.url for info in manifest.files[1:]}


def test_background_writes_are_all_done_when_wait_returns_and_a_failed_one_is_raised(
    tmp_path: Path, local_settings: Settings
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from shared.io.storage import Writes
    from shared.model.errors import PipelineError
    from shared.model.locations import parse_location

    storage = Storage(local_settings)
    targets = [
        parse_location(str(tmp_path / "out" / f"{i}.json"), local_settings) for i in range(20)
    ]
    with ThreadPoolExecutor(4) as pool:
        with Writes(storage, pool) as writes:
            for i, target in enumerate(targets):
                writes.write(target, str(i).encode())
        assert [Path(t.path).read_text() for t in targets] == [str(i) for i in range(20)]
        (tmp_path / "blocked").write_text("a file where a folder must be")
        refused = parse_location(str(tmp_path / "blocked" / "x.json"), local_settings)
        writes = Writes(storage, pool)
        writes.write(refused, b"{}")
        with pytest.raises(PipelineError):
            writes.wait()
