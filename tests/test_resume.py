"""Kill -9 the local host in the middle of a fan-out, start it again on the same state
folder, and the run completes: activities whose completion was recorded are not run again,
and the result is the same as an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from devhost.runner import run_pipeline
from shared.plan import PipelineInput, RunPolicy
from shared.request import PipelineRequest
from shared.samples import SampleSpec, write_sample_files

ROOT = Path(__file__).resolve().parent.parent
HOST_SCRIPT = """
import json, sys
from devhost.durable import DurableHost

def main():
    state, instance_id = sys.argv[1], sys.argv[2]
    host = DurableHost(state, workers=1).start()
    if len(sys.argv) > 3:
        host.start_new("pipeline", instance_id, open(sys.argv[3]).read())
    status = host.wait_for(instance_id, timeout=300)
    print(json.dumps(status))
    host.stop()

if __name__ == "__main__":
    main()
"""


def finished_tasks(state: Path) -> set[tuple[str, int]]:
    if not (state / "durable.sqlite").exists():
        return set()
    db = sqlite3.connect(state / "durable.sqlite", timeout=10)
    try:
        rows = db.execute("SELECT instance_id, task_id FROM executions WHERE finished IS NOT NULL")
        return {(r[0], r[1]) for r in rows}
    except sqlite3.OperationalError:
        return set()
    finally:
        db.close()


def test_a_killed_host_resumes_without_redoing_finished_activities(tmp_path, local_settings):
    write_sample_files(tmp_path / "src", SampleSpec(files=30, lat=6, lon=10))
    settings = local_settings.with_changes(batch_size=6, files_per_activity=1, parallel_batches=2)
    request = PipelineRequest.from_dict({"source": str(tmp_path / "src"), "dataset_id": "tas"})
    run_input = tmp_path / "input.json"
    run_input.write_text(
        json.dumps(PipelineInput(request, RunPolicy.from_request(request, settings)).to_dict())
    )
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    state = tmp_path / "state"

    first = subprocess.Popen(
        [sys.executable, str(script), str(state), "pipeline-tas", str(run_input)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(finished_tasks(state)) < 8:
        assert first.poll() is None, (
            f"the host ended before it could be killed: {first.communicate()}"
        )
        assert time.monotonic() < deadline, "no activity finished in time"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the host and its worker processes, at once
    first.wait()
    done_before_kill = finished_tasks(state)

    second = subprocess.run(
        [sys.executable, str(script), str(state), "pipeline-tas"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    status = json.loads(second.stdout.strip().splitlines()[-1])
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["files"]["generated"] == 30

    db = sqlite3.connect(state / "durable.sqlite")
    runs = {}
    for instance_id, task_id in db.execute("SELECT instance_id, task_id FROM executions"):
        runs[(instance_id, task_id)] = runs.get((instance_id, task_id), 0) + 1
    db.close()
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
