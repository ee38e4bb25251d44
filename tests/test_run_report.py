"""The Markdown run report: written beside the store at the end of every run that got past the
scan, naming every file with its verdict, and its path handed to the operator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import activities.stages as stages
from devhost.commands import print_summary
from devhost.samples import SampleSpec, write_bytes, write_sample_files
from shared.io.storage import ObjectInfo
from shared.model.errors import UnsuitableCollection
from shared.model.layout import Layout
from shared.model.request import PipelineRequest
from shared.stages.runreport import FileVerdict, render_run_report
from shared.stages.scan import ScanManifest
from tests.helpers import run_pipeline
from tests.matrix_cases import packed_single_precision, satellite_shorts_float32_packed

SPEC = SampleSpec(files=3, lat=6, lon=10)
STAGES = ("scan", "validate", "gate", "generate", "combine", "verify", "register")
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def run(source: Path, settings):
    request = PipelineRequest.from_dict({"source": str(source), "dataset_id": "tas"})
    return run_pipeline(request, settings, batch_size=2)


def read(url: str) -> str:
    return Path(url.removeprefix("file://")).read_text()


def row_of(text: str, name: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith("| ") and f" {name} |" in line]
    assert len(rows) == 1, (name, rows)
    return rows[0]


def cells(row: str) -> list[str]:
    return [c.strip() for c in UNESCAPED_PIPE.split(row)[1:-1]]


def test_a_successful_run_writes_a_report_beside_the_store_naming_every_file(
    tmp_path, local_settings
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    report = run(tmp_path / "src", local_settings)
    assert report.summary_url.endswith(f"/tas/{report.run_id}.report.md")
    assert (
        Path(report.summary_url.removeprefix("file://")).parent
        == Path(report.store_url.removeprefix("file://")).parent
    )
    text = read(report.summary_url)
    assert text.startswith(f"# Run report: tas, run {report.run_id}\n\n**Succeeded.**")
    for path in paths:
        row = cells(row_of(text, path.name))
        assert row[4] == "suitable"
        assert row[2] == f"{path.stat().st_size:,}"
    for stage in STAGES:
        assert re.search(rf"^\| {stage} \| \d+\.\d\d \|$", text, re.MULTILINE), stage
    assert "| **total** |" in text
    assert f"- STAC item: {report.item_url}" in text
    outputs = report.output["outputs"]
    assert f"- gate report (JSON): {outputs['gate_report_url']}" in text
    assert f"- gate report (Markdown): {outputs['gate_summary_url']}" in text
    assert f"- run report (JSON): {report.report_url}" in text
    assert "| store format | kerchunk-json |" in text
    assert "| store mode | recombine |" in text
    assert "| bytes read to validate |" in text
    assert "Decoded dtypes" not in text  # every variable decodes as in the files
    assert "decoded_dtypes" not in json.loads(read(report.report_url))


def test_a_run_stopped_by_the_gate_writes_a_report_naming_the_bad_file_as_unsuitable(
    tmp_path, local_settings
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    write_bytes(tmp_path / "src" / "notes.nc", b"just some text\n")
    with pytest.raises(UnsuitableCollection) as refused:
        run(tmp_path / "src", local_settings)
    summary_url = refused.value.context["run_summary"]
    text = read(summary_url)
    assert "**Failed at gate** [unsuitable_collection]: 1 of 4 files cannot be combined" in text
    assert "What to do: " in text
    bad = cells(row_of(text, "notes.nc"))
    assert bad[4] == "unsuitable"
    assert bad[5].startswith("not_netcdf (") and "notes.nc is neither" in bad[5]
    assert all(cells(row_of(text, p.name))[4] == "suitable" for p in paths)
    assert "| files | 4 |" in text and "| unsuitable | 1 |" in text
    assert re.search(r"^\| .*notes\.nc \| not_netcdf \| ", text, re.MULTILINE)  # first errors
    assert "- gate report (Markdown): file://" in text
    assert "- store:" not in text and "store format" not in text  # none was built
    assert not re.search(r"^\| (generate|combine) \|", text, re.MULTILINE)


def test_a_failed_runs_report_is_pruned_with_its_run_once_a_later_run_publishes(
    tmp_path, local_settings
):
    write_sample_files(tmp_path / "src", SPEC)
    write_bytes(tmp_path / "src" / "notes.nc", b"just some text\n")
    with pytest.raises(UnsuitableCollection) as refused:
        run(tmp_path / "src", local_settings)
    failed = Path(refused.value.context["run_summary"].removeprefix("file://"))
    assert failed.exists()
    (tmp_path / "src" / "notes.nc").unlink()
    published = run(tmp_path / "src", local_settings)
    assert not failed.exists()
    assert Path(published.summary_url.removeprefix("file://")).exists()


def synthetic(urls: list[str]) -> tuple[dict, ScanManifest]:
    files = tuple(
        ObjectInfo(url, 1000, f'"etag-{i}"', "2024-01-01T00:00:00+00:00")
        for i, url in enumerate(urls)
    )
    manifest = ScanManifest("tas", "az://nc/tas", ("*.nc",), files)
    status = {
        "dataset_id": "tas",
        "phase": "failed",
        "run_id": "r1",
        "files": {"total": len(urls), "bytes": 1000 * len(urls), "validated": 1, "unsuitable": 1},
        "bytes_read": {"validate": 500},
        "stages": {"scan": {"seconds": 1.5}, "validate": {"seconds": 2.25}},
        "errors": [{"url": urls[0], "code": "odd", "message": "a | b\nc"}],
        "outputs": {"manifest_url": "az://work/manifests/tas/m.json"},
        "store": {},
        "error": {"code": "storage_unavailable", "message": "down", "remedy": "retry later"},
    }
    return status, manifest


def test_the_report_escapes_pipes_and_line_breaks_in_finding_messages_and_names(tmp_path):
    status, manifest = synthetic(["az://nc/tas/a|b.nc", "az://nc/tas/c.nc"])
    verdicts = {
        "az://nc/tas/a|b.nc": FileVerdict("unsuitable", ("odd",), "the value | is odd\nreally")
    }
    text = render_run_report(status, manifest, verdicts)
    row = row_of(text, "a\\|b.nc")
    assert cells(row) == [
        "1",
        "a\\|b.nc",
        "1,000",
        '"etag-0"',
        "unsuitable",
        "odd (the value \\| is odd really)",
    ]
    errors = row_of(text, "odd")
    assert cells(errors) == ["az://nc/tas/a\\|b.nc", "odd", "a \\| b c"]
    assert "**Failed at validate** [storage_unavailable]: down" in text
    assert "What to do: retry later" in text


def test_a_file_without_a_stored_report_is_listed_as_not_validated():
    status, manifest = synthetic(["az://nc/tas/a.nc", "az://nc/tas/b.nc"])
    text = render_run_report(status, manifest, {"az://nc/tas/a.nc": FileVerdict("suitable")})
    assert cells(row_of(text, "b.nc"))[4] == "not validated"
    assert "| verdicts | 1 suitable, 1 not validated |" in text


def test_the_reuse_column_appears_only_when_the_status_says_which_files_were_processed():
    status, manifest = synthetic(["az://nc/tas/a.nc", "az://nc/tas/b.nc"])
    verdicts = {url: FileVerdict("suitable") for url in ("az://nc/tas/a.nc", "az://nc/tas/b.nc")}
    assert len(cells(row_of(render_run_report(status, manifest, verdicts), "a.nc"))) == 6
    text = render_run_report(status, manifest, verdicts, processed={"az://nc/tas/b.nc"})
    assert cells(row_of(text, "a.nc"))[5] == "reused"
    assert cells(row_of(text, "b.nc"))[5] == "processed"


def test_the_record_run_activity_writes_both_reports_and_returns_their_urls(
    tmp_path, local_settings, monkeypatch
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    report = run(tmp_path / "src", local_settings)
    Path(report.summary_url.removeprefix("file://")).unlink()
    for name, value in local_settings.to_env().items():
        monkeypatch.setenv(name, value)
    status = json.loads(json.dumps(report.output))  # the orchestrator's final status
    # A full run: its work manifest is the whole manifest, so every file was processed.
    status["outputs"]["work_manifest_url"] = status["outputs"]["manifest_url"]
    record_run = stages.record_run._function.get_user_function()
    answer = record_run(
        {
            "dataset": "tas",
            "instance_id": "pipeline-tas",
            "dataset_id": "tas",
            "run_id": report.run_id,
            "status": status,
        }
    )
    layout = Layout.from_settings(local_settings)
    assert answer == {
        "ok": True,
        "run_report": layout.run_report("tas", report.run_id).url,
        "run_summary": report.summary_url,
    }
    assert json.loads(read(answer["run_report"]))["kind"] == "run-report"
    text = read(answer["run_summary"])
    for path in paths:
        assert cells(row_of(text, path.name))[4:6] == ["suitable", "processed"]
    assert f"- STAC item: {report.item_url}" in text


def test_both_reports_say_which_variables_the_store_decodes_to_float64(tmp_path, local_settings):
    """Shorts packed with float32 attributes (tests/matrix_cases.py): float32 from the files,
    float64 from the store."""
    satellite_shorts_float32_packed(tmp_path / "src")
    request = PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "lst"})
    report = run_pipeline(request, local_settings)
    record = json.loads(read(report.report_url))
    assert record["decoded_dtypes"] == {
        "lst": {
            "store": "float64",
            "files": "float32",
            "file_count": 3,
            "code": "packed_single_precision",
        }
    }
    text = read(report.summary_url)
    assert "## Decoded dtypes\n\nThe store decodes `lst` to float64, where netCDF4" in text
    assert "within float32 rounding (one float32 ulp at |value| + |add_offset|)" in text
    assert cells(row_of(text, "`lst`")) == ["`lst`", "float64", "float32", "3"]
    for i in range(3):
        row = cells(row_of(text, f"lst_{i}.nc"))
        assert row[4:6] == ["suitable-with-warnings", "packed_single_precision"]


def test_a_float32_packed_variable_the_request_drops_is_in_neither_report(tmp_path, local_settings):
    packed_single_precision(tmp_path / "src")  # pr packed with float32 attributes, and tas
    request = PipelineRequest.from_dict(
        {
            "source": str(tmp_path / "src"),
            "dataset_id": "tas",
            "options": {"drop_variables": ["pr"]},
        }
    )
    report = run_pipeline(request, local_settings)
    assert "decoded_dtypes" not in json.loads(read(report.report_url))
    assert "Decoded dtypes" not in read(report.summary_url)


def test_the_command_line_prints_where_the_run_summary_is(capsys):
    print_summary(
        {
            "dataset_id": "tas",
            "files": {"total": 1, "bytes": 10},
            "run_report": "file:///w/runs/tas/r1.json",
            "run_summary": "file:///s/tas/r1.report.md",
        }
    )
    out = capsys.readouterr().out
    assert "run report   file:///w/runs/tas/r1.json" in out
    assert "run summary  file:///s/tas/r1.report.md" in out
