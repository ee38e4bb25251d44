"""devhost's activity workers die with their host: a host killed with -9 leaves no worker
finishing (and writing) what it had started while the restarted host runs the same
activity again. Imitates what the Functions host guarantees: a worker process belongs to
its host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

HOST = """
import json, sys
from devhost.durable import DurableHost

if __name__ == "__main__":
    state, options = sys.argv[1], sys.argv[2]
    with DurableHost(state, app_module="tests.durable_test_app", workers=1) as host:
        if host.get_status("marked") is None:
            host.start_new("slow_mark", "marked", options)
        status = host.wait_for("marked", timeout=120)
        print(json.dumps(status["output"]))
"""


def start_host(tmp_path: Path, options: dict) -> subprocess.Popen[bytes]:
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(HOST))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "state"), json.dumps(options)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, host: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert host.poll() is None, host.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_workers_die_with_a_killed_host_and_the_activity_runs_once_more(tmp_path):
    options = {
        "seconds": 3,
        "started": str(tmp_path / "started"),
        "marker": str(tmp_path / "marker"),
    }
    host = start_host(tmp_path, options)
    wait_for(tmp_path / "started", host)
    worker = psutil.Process(int((tmp_path / "started").read_text()))
    family = [worker, *psutil.Process(host.pid).children(recursive=True)]
    os.kill(host.pid, signal.SIGKILL)  # the host alone, not its process group
    host.wait()
    _, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, f"still running after the host died: {alive}"
    time.sleep(options["seconds"] + 0.5)
    assert not (tmp_path / "marker").exists(), "an orphan worker finished the activity"

    (tmp_path / "started").unlink()
    again = start_host(tmp_path, options)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err.decode()[-2000:]
    assert json.loads(out.decode().strip().splitlines()[-1]) == "marked"
    assert len((tmp_path / "marker").read_text().splitlines()) == 1  # run once, after restart
