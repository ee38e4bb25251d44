"""The run's custom status: the estimate of time remaining, from the orchestrator's own
deterministic clock (pure: no host needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.ingest.watch import WatchState
from shared.model.status import (
    CUSTOM_STATUS_BUDGET_UTF16,
    CUSTOM_STATUS_LIMIT_UTF16,
    SECONDS_PER_FILE,
    RunStatus,
    custom_status_size,
    fit_custom_status,
    pipeline_view,
)

START = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def running(files: int = 1000, reused: int = 0) -> RunStatus:
    status = RunStatus(dataset_id="tas", files_total=files, files_reused=reused)
    status.begin("scan", START)
    status.begin("validate", START + timedelta(seconds=2))
    return status


def test_the_estimate_is_unknown_until_a_file_is_done():
    status = running()
    status.estimate_remaining(START + timedelta(seconds=5))
    assert status.estimate["stage_remaining_seconds"] is None
    assert status.estimate["run_remaining_seconds"] is None


def test_the_estimate_follows_the_rate_of_the_current_fan_out_and_the_stages_after_it():
    status = running(files=1000, reused=200)
    status.files_validated = 200  # of 800 to process, in 20 s: 0.1 s a file
    status.estimate_remaining(START + timedelta(seconds=22))
    assert status.estimate["stage_remaining_seconds"] == 60.0
    later = 800 * 0.1 + 1000 * sum(SECONDS_PER_FILE.values())  # generate, then the rest
    assert status.estimate["run_remaining_seconds"] == round(60.0 + later, 1)


def test_generate_is_estimated_from_validate_before_its_first_file():
    status = running(files=100)
    status.files_validated = 100
    status.begin("gate", START + timedelta(seconds=12))
    status.begin("generate", START + timedelta(seconds=13))
    status.estimate_remaining(START + timedelta(seconds=13))
    assert status.estimate["stage_remaining_seconds"] == 10.0  # validate took 10 s for 100


def test_the_status_view_shows_the_estimate_and_drops_it_when_the_run_ends():
    status = running()
    status.files_validated = 10
    status.estimate_remaining(START + timedelta(seconds=3))
    view = pipeline_view({"runtimeStatus": "Running", "customStatus": status.to_dict()})
    assert view["estimate"]["stage_remaining_seconds"] == 99.0
    status.succeed(START + timedelta(seconds=60))
    assert status.to_dict()["estimate"] == {}


def long_blob_url(name: str) -> str:
    """A blob URL at its longest: a 1,024-character blob name (Azure's maximum)."""
    return f"az://netcdf-archive/{name}/" + "d" * (1024 - len(name) - 4) + ".nc"


def worst_case() -> RunStatus:
    status = running()
    status.run_id = "0123456789abcdef"
    for key in (
        "manifest_url",
        "work_manifest_url",
        "gate_report_url",
        "gate_summary_url",
        "store_url",
        "item_url",
        "catalog_url",
        "run_report",
        "run_summary",
    ):
        status.outputs[key] = long_blob_url(key)
    status.add_errors(
        [
            {
                "url": long_blob_url(f"bad-{i}"),
                "code": "truncated_file",
                "message": f"The file ends early: température é {i} " + "x" * 600,
            }
            for i in range(5)
        ]
    )
    status.fail({"code": "unsuitable_collection", "message": "m" * 900, "remedy": "r" * 400}, START)
    return status


def test_a_worst_case_status_is_fitted_to_azures_custom_status_limit():
    """Long blob URLs in every output and error: as is, the extension would refuse it (and
    fail the run); fitted, it is within 16 KB of UTF-16 and still names phase, counts and
    every erroneous file by the start and end of its URL."""
    status = worst_case()
    assert custom_status_size(status.to_dict()) > CUSTOM_STATUS_LIMIT_UTF16
    shown = status.custom_status()
    assert custom_status_size(shown) <= CUSTOM_STATUS_BUDGET_UTF16
    assert "16 KB" in shown["trimmed"]
    assert shown["phase"] == "failed" and shown["run_id"] == "0123456789abcdef"
    assert shown["files"] == status.to_dict()["files"]
    assert [e["code"] for e in shown["errors"]] == ["truncated_file"] * 5
    assert all(e["url"].endswith("dddd.nc") for e in shown["errors"])
    assert shown["error"]["code"] == "unsuitable_collection"


def test_a_small_status_is_shown_whole():
    status = running()
    assert status.custom_status() == status.to_dict()
    assert "trimmed" not in status.custom_status()


def test_the_watchers_status_is_fitted_too():
    state = WatchState(
        config={"request": {"dataset_id": "ds"}, "quiet_seconds": 300, "max_wait_seconds": 3600}
    )
    state.last_check = {"at": "x", "examples": [long_blob_url(f"new-{i}") for i in range(10)]}
    state.last_run = {"item_url": long_blob_url("item"), "error": "e" * 500}
    shown = fit_custom_status(state.status("idle", START))
    assert custom_status_size(shown) <= CUSTOM_STATUS_BUDGET_UTF16
    assert shown["phase"] == "idle" and shown["dataset_id"] == "ds"
