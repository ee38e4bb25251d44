"""The pipeline through the Durable orchestrator on devhost: real files, real SDK replay,
activities in worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr

from consumer.reader import open_item
from devhost.samples import SampleSpec, write_bytes, write_sample_files
from shared.model.request import PipelineRequest
from tests.helpers import durable_host, open_sources, run_pipeline, submit

SPEC = SampleSpec(files=5, lat=6, lon=10)


@pytest.mark.slow
def test_a_run_through_devhost_equals_the_core_path(tmp_path, local_settings, monkeypatch):
    paths = write_sample_files(tmp_path / "src", SPEC)
    core_settings = local_settings.with_changes(
        work_area=str(tmp_path / "core" / "work"),
        store_root=str(tmp_path / "core" / "stores"),
        catalog=str(tmp_path / "core" / "catalog"),
    )
    core = run_pipeline(
        PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "tas"}),
        core_settings,
    )
    settings = local_settings.with_changes(batch_size=2, files_per_activity=1)
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        instance_id = submit(host, settings, source=str(tmp_path / "src"))
        status = host.wait_for(instance_id, timeout=180)
    assert status["runtimeStatus"] == "Completed", status
    output = status["output"]
    assert output["phase"] == "succeeded"
    assert output["run_id"] == core.run_id
    assert output["files"] == {
        "total": 5,
        "bytes": core.total_bytes,
        "validated": 5,
        "unsuitable": 0,
        "generated": 5,
        "reused": 0,
    }
    assert set(output["stages"]) == {
        "scan",
        "validate",
        "gate",
        "generate",
        "combine",
        "verify",
        "register",
    }
    durable_store = json.loads(
        Path(output["outputs"]["store_url"].removeprefix("file://")).read_text()
    )
    core_store = json.loads(Path(core.store_url.removeprefix("file://")).read_text())
    assert durable_store == core_store
    with open_item(output["outputs"]["item_url"], settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


@pytest.mark.slow
@pytest.mark.azurite
def test_a_run_through_devhost_on_azurite_is_published_equal_to_its_sources(
    tmp_path, blob_settings, containers, monkeypatch
):
    paths = write_sample_files(tmp_path / "src", SPEC)
    container = containers.new("nc")
    containers.upload(container, "daily", paths)
    settings = blob_settings.with_changes(batch_size=2)
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        instance_id = submit(host, settings, source=f"abfs://{container}/daily", format="icechunk")
        status = host.wait_for(instance_id, timeout=180)
    assert status["runtimeStatus"] == "Completed", status
    with open_item(status["output"]["outputs"]["item_url"], settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


@pytest.mark.slow
def test_a_bad_file_ends_the_run_at_the_gate_without_retries(tmp_path, local_settings, monkeypatch):
    write_sample_files(tmp_path / "src", SPEC)
    write_bytes(tmp_path / "src" / "broken.nc", b"<html>not a netcdf file</html>")
    settings = local_settings.with_changes(
        batch_size=3, files_per_activity=1, retry_first_interval_ms=50
    )
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        instance_id = submit(host, settings, source=str(tmp_path / "src"))
        status = host.wait_for(instance_id, timeout=180)
        executions = host.executions()
    assert status["runtimeStatus"] == "Failed"
    custom = status["customStatus"]
    assert custom["phase"] == "failed"
    assert custom["error"]["code"] == "unsuitable_collection"
    assert custom["errors"][0]["url"].endswith("broken.nc")
    assert custom["errors"][0]["code"] == "not_netcdf"
    assert Path(custom["outputs"]["gate_report_url"].removeprefix("file://")).exists()
    summary = custom["outputs"]["gate_summary_url"]
    assert custom["error"]["message"].endswith(f"Full report: {summary}")
    assert "broken.nc" in custom["error"]["message"].split("Full report")[0]
    assert Path(custom["outputs"]["run_report"].removeprefix("file://")).exists()
    validations = [e for e in executions if e[2] == "validate_files"]
    assert len(validations) == 6  # one per file, none retried
    assert len({(e[0], e[1]) for e in validations}) == 6
    assert not [e for e in executions if e[2] == "generate_files"]
    assert not Path(settings.catalog).exists()


@pytest.mark.slow
def test_a_transient_failure_is_retried_and_the_run_succeeds(tmp_path, local_settings, monkeypatch):
    paths = write_sample_files(tmp_path / "src", SPEC)
    monkeypatch.setenv("PIPELINE_TEST_FAULT_COUNTER", str(tmp_path / "fault-calls"))
    settings = local_settings.with_changes(
        batch_size=5, files_per_activity=5, retry_first_interval_ms=50
    )
    with durable_host(
        tmp_path / "state", settings, monkeypatch, "tests.flaky_pipeline_app"
    ) as host:
        instance_id = submit(host, settings, source=str(tmp_path / "src"))
        status = host.wait_for(instance_id, timeout=180)
        executions = host.executions()
        history = host.history(f"{instance_id}:validate:0000")  # the first validate batch
        children = [i for i in host.instances() if i.startswith(f"{instance_id}:")]
    assert status["runtimeStatus"] == "Completed", status
    # Every batch sub-orchestration is named by the run, its stage and its position, so that
    # `instanceIdPrefix=<run id>:` finds them on Azure as here (docs/runbooks/stuck-run.md).
    stages = ("generate", "validate", "verify")
    assert sorted(children) == [f"{instance_id}:{stage}:0000" for stage in stages]
    assert (tmp_path / "fault-calls").read_text() == "2"
    validations = [e for e in executions if e[2] == "validate_files"]
    assert len(validations) == 2  # the failed attempt and its retry
    failed = [e for e in history if e["EventType"] == 6]
    assert "injected: connection reset by peer" in failed[0]["Reason"]
    with open_item(status["output"]["outputs"]["item_url"], settings) as published:
        xr.testing.assert_identical(published.load(), open_sources(paths))


@pytest.mark.slow
def test_retries_that_run_out_fail_the_run_with_its_status_and_report(
    tmp_path, local_settings, monkeypatch
):
    write_sample_files(tmp_path / "src", SPEC)
    monkeypatch.setenv("PIPELINE_TEST_FAULT_COUNTER", str(tmp_path / "fault-calls"))
    monkeypatch.setenv("PIPELINE_TEST_FAULTS", "100")
    settings = local_settings.with_changes(
        batch_size=5, files_per_activity=5, retry_first_interval_ms=50, retry_max_attempts=2
    )
    with durable_host(
        tmp_path / "state", settings, monkeypatch, "tests.flaky_pipeline_app"
    ) as host:
        instance_id = submit(host, settings, source=str(tmp_path / "src"))
        status = host.wait_for(instance_id, timeout=180)
    assert status["runtimeStatus"] == "Failed"
    custom = status["customStatus"]
    assert custom["phase"] == "failed" and custom["stages"]["validate"]["seconds"] is not None
    assert custom["error"]["code"] == "retries_exhausted"
    assert "failed 2 times" in custom["error"]["message"]
    assert "injected: connection reset by peer" in custom["error"]["message"]
    assert Path(custom["outputs"]["run_report"].removeprefix("file://")).exists()
    assert Path(custom["outputs"]["run_summary"].removeprefix("file://")).exists()
