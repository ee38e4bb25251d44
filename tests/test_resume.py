"""Kill -9 the local host in the middle of a fan-out, start it again on the same state
folder, and the run completes: activities whose completion was recorded are not run again,
and the result is the same as an uninterrupted run's."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.model.request import PipelineRequest
from tests.helpers import HostProcess, run_pipeline


@pytest.mark.slow
def test_a_killed_host_resumes_without_redoing_finished_activities(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SampleSpec(files=30, lat=6, lon=10))
    settings = local_settings.with_changes(batch_size=6, files_per_activity=1, parallel_batches=2)
    request = PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "tas"})
    host = HostProcess(tmp_path, settings)

    def finished() -> set[tuple[str, int]]:
        return {(e[0], e[1]) for e in host.executions() if e[3] is not None}

    host.kill_when(host.start(request), lambda: len(finished()) >= 8)
    done_before_kill = finished()

    status = host.resume()
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["files"]["generated"] == 30
    runs = Counter((e[0], e[1]) for e in host.executions())
    assert done_before_kill, "nothing had finished before the kill"
    assert all(runs[task] == 1 for task in done_before_kill), "a finished activity ran again"
    assert len(runs) > len(done_before_kill), "the kill came after the fan-out"

    uninterrupted = run_pipeline(
        request,
        settings.with_changes(
            work_area=str(tmp_path / "core" / "work"),
            store_root=str(tmp_path / "core" / "stores"),
            catalog=str(tmp_path / "core" / "catalog"),
        ),
    )
    resumed_store = Path(status["output"]["outputs"]["store_url"].removeprefix("file://"))
    assert json.loads(resumed_store.read_text()) == json.loads(
        Path(uninterrupted.store_url.removeprefix("file://")).read_text()
    )
