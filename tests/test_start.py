"""What the README shows: `python -m devhost start`, POST a folder with curl, poll the status
URL to the end, get the STAC item; then SIGTERM stops the host cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devhost.samples import SampleSpec, write_sample_files

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_start_then_post_then_poll_to_the_stac_item(tmp_path):
    write_sample_files(tmp_path / "netcdf", SampleSpec(files=3, lat=6, lon=10))
    env = {
        **os.environ,
        "PIPELINE_WORK_AREA": str(tmp_path / "work"),
        "PIPELINE_STORE_ROOT": str(tmp_path / "stores"),
        "PIPELINE_CATALOG": str(tmp_path / "catalog"),
    }
    host = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "start",
            "--port",
            "0",
            "--state",
            str(tmp_path / "state"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = host.stdout.readline()
        assert first.startswith("devhost: serving function_app on http://127.0.0.1:"), first
        base = first.split(" on ", 1)[1].strip()
        body = json.dumps({"source": str(tmp_path / "netcdf"), "dataset_id": "tas-daily"}).encode()
        request = urllib.request.Request(
            f"{base}/api/pipelines",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
            status_url = json.loads(response.read())["status_url"]
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(status_url, timeout=30) as response:
                view = json.loads(response.read())
            if view["runtime_status"] in ("Completed", "Failed", "Terminated"):
                break
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        assert view["runtime_status"] == "Completed", view
        item = json.loads(Path(view["item_url"].removeprefix("file://")).read_text())
        assert item["id"] == "tas-daily"
        assert item["assets"]["data"]["href"] == view["store_url"]
    finally:
        host.send_signal(signal.SIGTERM)
        output, _ = host.communicate(timeout=60)
    assert host.returncode == 0, output
    assert output.rstrip().endswith("stopped.")
