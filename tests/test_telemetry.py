"""Telemetry: the records every stage logs carry the documented fields (docs/telemetry.md),
per-file records stay at DEBUG, the message itself carries the fields for the Functions
worker's path, and an exporter is attached only when configured (no network: loopback)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import index_app
from devhost.samples import SampleSpec, write_bytes, write_sample_files
from shared.model import telemetry
from shared.model.telemetry import FILE_RECORDS, STAGE_RECORDS, configure_exporter, detach_exporter
from shared.model.wire import VerifyTally
from tests.helpers import durable_host, submit

DOCS = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"
INSTANCE = "pipeline-telemetry"


def activity(name: str) -> Any:
    """The app's activity function as the worker calls it (the app indexed once, as devhost
    indexes it)."""
    return index_app("function_app").activities[name]


def structured(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "structured", False)]


@pytest.fixture
def pipeline_records(tmp_path, local_settings, monkeypatch, caplog) -> list[logging.LogRecord]:
    """Every stage's activity, called in-process the way the orchestrator calls it (six
    files in two batches of three), with the log captured at DEBUG."""
    for name, value in local_settings.to_env().items():
        monkeypatch.setenv(name, value)
    write_sample_files(tmp_path / "src", SampleSpec(files=6, lat=4, lon=6))
    run = {"dataset": "telemetry", "instance_id": INSTANCE}
    request = {
        "source": str(tmp_path / "src"),
        "dataset_id": "telemetry",
        "concat_dim": "time",
        "format": "kerchunk-json",
        "patterns": ["*.nc"],
        "collection": None,
        "options": {},
    }
    with caplog.at_level(logging.DEBUG):
        scanned = activity("scan_files")({"request": request, **run})
        manifest = scanned["manifest_url"]
        batch = {"manifest_url": manifest, "concat_dim": "time", **run}
        for start, stop in ((0, 3), (3, 6)):
            assert activity("validate_files")({**batch, "start": start, "stop": stop})["ok"]
        gate = {"manifest_url": manifest, "concat_dim": "time", "format": "kerchunk-json"}
        assert activity("gate_files")({**gate, **run})["ok"]
        for start, stop in ((0, 3), (3, 6)):
            assert activity("generate_files")({**batch, "start": start, "stop": stop})["ok"]
        stage = {"manifest_url": manifest, "request": request, "run_id": scanned["run_id"], **run}
        combined = activity("combine_store")(stage)
        verify = {"manifest_url": manifest, "store_url": combined["store_url"], **gate, **run}
        tallies = [
            activity("verify_files")({**verify, "start": start, "stop": stop})
            for start, stop in ((0, 3), (3, 6))
        ]
        assert all(t["ok"] for t in tallies)
        tally = VerifyTally.from_dict(tallies[0]).fold(VerifyTally.from_dict(tallies[1]))
        assert activity("verify_decide")({**verify, "tally": tally.to_dict()})["ok"]
        assert activity("register_item")({**stage, "store_url": combined["store_url"]})["ok"]
    return structured(caplog)


def test_every_stage_logs_its_documented_fields_with_the_run_context(pipeline_records):
    for stage, (message, fields) in STAGE_RECORDS.items():
        found = [r for r in pipeline_records if r.getMessage().startswith(message + " {")]
        assert found, f"no {message!r} record"
        for record in found:
            assert record.levelno == logging.INFO
            missing = [
                f for f in (*fields, "dataset", "instance_id", "stage") if not hasattr(record, f)
            ]
            assert not missing, f"{message}: missing {missing}"
            assert (record.dataset, record.instance_id, record.stage) == (
                "telemetry",
                INSTANCE,
                stage,
            )


def test_validate_and_generate_log_one_info_record_per_batch_and_files_at_debug(
    pipeline_records,
):
    info = Counter(r.getMessage().split(" {")[0] for r in pipeline_records if r.levelno == 20)
    assert info["validate batch done"] == 2 and info["generate batch done"] == 2
    for stage, (message, fields) in FILE_RECORDS.items():
        per_file = [r for r in pipeline_records if r.getMessage().startswith(message + " {")]
        assert len(per_file) == 6, stage
        assert all(r.levelno == logging.DEBUG for r in per_file)
        assert all(all(hasattr(r, f) for f in fields) for r in per_file)
    validate = next(r for r in pipeline_records if r.getMessage().startswith("validate batch"))
    assert validate.verdicts == {"suitable": 3, "suitable_with_warnings": 0, "unsuitable": 0}
    assert isinstance(validate.findings, dict)
    generate = next(r for r in pipeline_records if r.getMessage().startswith("generate batch"))
    assert generate.reference_bytes > 0 and "virtualizarr" in generate.libraries


def test_the_message_carries_the_fields_as_json_for_the_functions_worker(pipeline_records):
    combine = next(r for r in pipeline_records if r.getMessage().startswith("combine done"))
    fields = json.loads(re.search(r"(\{.*\})$", combine.getMessage()).group(1))
    assert fields["source_count"] == 6 and fields["dims"]["time"] == 6
    assert fields["instance_id"] == INSTANCE and fields["stage"] == "combine"
    assert combine.custom_dimensions == fields  # what the opencensus handler sends


def test_the_documented_fields_are_the_ones_the_code_emits():
    text = DOCS.read_text()
    for records in (STAGE_RECORDS, FILE_RECORDS):
        for message, fields in records.values():
            row = next((line for line in text.splitlines() if f"`{message}`" in line), None)
            assert row is not None, f"docs/telemetry.md does not document {message!r}"
            for field in fields:
                assert f"`{field}`" in row, f"{message}: {field} is not documented"


@pytest.mark.slow
def test_a_failed_run_logs_the_failing_file_and_code_by_instance_id(
    tmp_path, local_settings, monkeypatch, caplog
):
    write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=4, lon=6))
    write_bytes(tmp_path / "src" / "broken.nc", b"<html>not a netcdf file</html>")
    with (
        caplog.at_level(logging.INFO, logger="orchestrators"),
        durable_host(tmp_path / "state", local_settings, monkeypatch) as host,
    ):
        instance_id = submit(host, local_settings, source=str(tmp_path / "src"))
        host.wait_for(instance_id, timeout=120)
    failed = [r for r in structured(caplog) if r.getMessage().startswith("run failed")]
    assert len(failed) == 1  # logged once, not on every replay
    record = failed[0]
    assert record.levelno == logging.ERROR
    assert (record.instance_id, record.code, record.finding) == (
        instance_id,
        "unsuitable_collection",
        "not_netcdf",
    )
    assert record.url.endswith("broken.nc") and record.stage == "gate"


def test_no_exporter_is_attached_by_default():
    assert configure_exporter("functions", "") is None
    for name in telemetry.APP_LOGGERS:
        logger = logging.getLogger(name)
        assert logger.propagate and not logger.handlers


def test_an_exporter_setting_that_cannot_work_says_what_is_missing():
    with pytest.raises(ValueError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
        configure_exporter("opencensus", "")
    with pytest.raises(ValueError, match="one of functions, opencensus, opentelemetry"):
        configure_exporter("statsd", "InstrumentationKey=x")
    assert telemetry.configure_from_env({"PIPELINE_LOG_EXPORTER": "opencensus"}) is None


def test_the_opencensus_exporter_is_attached_when_configured_and_sends_the_fields(monkeypatch):
    # Loopback ingestion endpoint on a closed port, and no statsbeat (opencensus's own usage
    # reporting to Microsoft): nothing leaves the machine.
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    connection = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/"
    )
    handler = configure_exporter("opencensus", connection)
    try:
        from opencensus.ext.azure.log_exporter import AzureLogHandler

        assert isinstance(handler, AzureLogHandler)
        for name in telemetry.APP_LOGGERS:
            logger = logging.getLogger(name)
            assert handler in logger.handlers and not logger.propagate
        record = logging.LogRecord(
            "shared.stages.scan", logging.INFO, __file__, 1, "scan done", (), None
        )
        record.custom_dimensions = {"dataset": "tas", "file_count": 3}
        envelope = handler.log_record_to_envelope(record)
        assert envelope.data.baseData.properties["dataset"] == "tas"
        assert envelope.data.baseData.properties["file_count"] == 3
    finally:
        detach_exporter()
        handler.close(timeout=0.1)
    assert all(logging.getLogger(n).propagate for n in telemetry.APP_LOGGERS)
