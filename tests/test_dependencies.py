"""A broken dependency is named, not discovered by the first activity that trips over it: the
app still loads (and logs a missing package as it does), /api/health answers 503 naming the
module, and an activity that needs it fails at once with dependency_missing, naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
sys.modules["virtualizarr"] = None  # what a broken install looks like: import fails
import azure.functions as func
import function_app
from devhost.durable import index_app

functions = {f.get_function_name(): f.get_user_function() for f in index_app().functions}
request = func.HttpRequest(method="GET", url="/api/health", body=b"", headers={})
health = functions["health"](request)
generated = functions["generate_files"](
    {"manifest_url": "file:///nowhere.json", "start": 0, "stop": 1, "concat_dim": "time"}
)
print(json.dumps({"health_status": health.status_code, "health": json.loads(health.get_body()),
                  "generate": generated}))
"""


@pytest.mark.slow
def test_a_missing_module_is_reported_by_health_and_named_by_the_activities_that_need_it():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["health_status"] == 503
    assert answer["health"]["libraries"]["virtualizarr"]["ok"] is False
    assert answer["health"]["libraries"]["h5py"]["ok"] is True
    generate = answer["generate"]
    assert generate["ok"] is False
    assert generate["error"]["code"] == "dependency_missing"
    assert "virtualizarr" in generate["error"]["message"]
    assert "dependency virtualizarr is not installed" in result.stderr
