"""The run's custom status: the estimate of time remaining, from the orchestrator's own
deterministic clock (pure: no host needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.status import SECONDS_PER_FILE, RunStatus, pipeline_view

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
