"""The app loads on Azure: the Azure Functions Python worker's own loader indexes it.

These tests run the worker's code, not ours: the loader of azure-functions-runtime (the worker
library from PyPI, installed by ./dev setup into .worker/). devhost calls the same checks
before it serves an app, so an app that Azure would refuse is refused here too.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devhost.durable import DurableHost
from devhost.worker import (
    WORKER_DIR_ENV,
    AppRefused,
    check_functions,
    index_app_like_azure,
    worker_dir,
    worker_version,
)

ROOT = Path(__file__).resolve().parent.parent

# Every function of function_app.py: its trigger, and the name of every binding. A function
# added to the app must be added here, with the bindings Azure will see.
EXPECTED = {
    "pipeline": ("orchestrationTrigger", {"context"}),
    "pipeline_batch": ("orchestrationTrigger", {"context"}),
    "verify_batch": ("orchestrationTrigger", {"context"}),
    "combine_wave": ("orchestrationTrigger", {"context"}),
    "dataset_watcher": ("orchestrationTrigger", {"context"}),
    "scan_files": ("activityTrigger", {"payload"}),
    "validate_files": ("activityTrigger", {"payload"}),
    "gate_files": ("activityTrigger", {"payload"}),
    "generate_files": ("activityTrigger", {"payload"}),
    "combine_store": ("activityTrigger", {"payload"}),
    "merge_batch": ("activityTrigger", {"payload"}),
    "join_partials": ("activityTrigger", {"payload"}),
    "verify_files": ("activityTrigger", {"payload"}),
    "verify_decide": ("activityTrigger", {"payload"}),
    "register_item": ("activityTrigger", {"payload"}),
    "check_changes": ("activityTrigger", {"payload"}),
    "record_run": ("activityTrigger", {"payload"}),
    "start_run": ("activityTrigger", {"payload", "client"}),
    "run_status": ("activityTrigger", {"payload", "client"}),
    "start_pipeline": ("httpTrigger", {"req", "client", "$return"}),
    "pipeline_status": ("httpTrigger", {"req", "client", "$return"}),
    "health": ("httpTrigger", {"req", "$return"}),
    "approve_pipeline": ("httpTrigger", {"req", "client", "$return"}),
    "reject_pipeline": ("httpTrigger", {"req", "client", "$return"}),
    "dataset_versions": ("httpTrigger", {"req", "$return"}),
    "unpublish_version": ("httpTrigger", {"req", "client", "$return"}),
    "cleanup_version": ("httpTrigger", {"req", "client", "$return"}),
    "release_version": ("orchestrationTrigger", {"context"}),
    "prune_versions": ("activityTrigger", {"payload"}),
    "check_unpublish": ("activityTrigger", {"payload"}),
    "restore_version": ("activityTrigger", {"payload"}),
    "withdraw_item": ("activityTrigger", {"payload"}),
    "finish_unpublish": ("activityTrigger", {"payload"}),
    "cleanup_store": ("activityTrigger", {"payload"}),
    "list_runs": ("httpTrigger", {"req", "client", "$return"}),
    "list_datasets": ("httpTrigger", {"req", "$return"}),
    "run_report": ("httpTrigger", {"req", "client", "$return"}),
    "version_preview": ("httpTrigger", {"req", "$return"}),
    "operator_page": ("httpTrigger", {"req", "$return"}),
    "openapi": ("httpTrigger", {"req", "$return"}),
    "blob_created": ("eventGridTrigger", {"event", "client"}),
    "purge_history": ("timerTrigger", {"timer", "client"}),
}

REFUSED_APP = """
from typing import Any

import azure.durable_functions as df

app = df.DFApp()


@app.activity_trigger(input_name="payload")
def annotated(payload: dict[str, Any]) -> dict[str, Any]:
    return payload
"""


def test_the_worker_library_is_installed_where_devhost_looks():
    assert worker_version() == "1.3.0"  # requirements-worker.txt


def test_the_functions_worker_loads_every_function_of_the_app_with_its_bindings():
    """Imitates: the worker's start-up (WorkerInitRequest, FunctionsMetadataRequest) on the
    app folder, in a fresh process, with the worker's own loader."""
    functions = index_app_like_azure(ROOT)
    found = {}
    for function in functions:
        bindings = function["bindings"]
        triggers = [b["type"] for b in bindings if b["type"].endswith("Trigger")]
        assert len(triggers) == 1, function
        found[function["name"]] = (triggers[0], {b["name"] for b in bindings})
    assert found == EXPECTED


def test_every_http_function_loads_with_the_apis_auth_level_as_the_worker_reads_it():
    """What Azure enforces is the authLevel the worker hands the host: function keys on every
    route (the operator page, its reads and the OpenAPI document included), /health alone
    anonymous."""
    levels = {
        function["name"]: binding["authLevel"]
        for function in index_app_like_azure(ROOT)
        for binding in function["bindings"]
        if binding["type"] == "httpTrigger"
    }
    assert levels.pop("health") == "ANONYMOUS"
    assert set(levels.values()) == {"FUNCTION"}
    assert {"operator_page", "openapi", "list_runs", "list_datasets"} <= set(levels)


def write_app(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function_app.py").write_text(textwrap.dedent(source))
    return folder


def test_the_worker_refuses_an_app_with_a_parameterised_annotation_on_a_binding(tmp_path):
    """The check is live: the loader refuses what it refused in this app before (an activity
    input annotated dict[str, Any]), and says which function and why."""
    with pytest.raises(AppRefused) as refused:
        index_app_like_azure(write_app(tmp_path / "app", REFUSED_APP))
    message = str(refused.value)
    assert "cannot load the annotated function" in message
    assert "invalid non-type annotation" in message


def test_the_durable_host_refuses_an_app_that_the_worker_refuses(tmp_path, monkeypatch):
    """devhost is not more lenient than Azure: the host indexes with the worker's checks."""
    write_app(tmp_path / "refused_pkg", REFUSED_APP)
    (tmp_path / "refused_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AppRefused, match="invalid non-type annotation"):
        DurableHost(tmp_path / "state", app_module="refused_pkg.function_app")


def test_devhost_start_refuses_to_serve_an_app_the_worker_refuses(tmp_path):
    """`python -m devhost start` in the folder of an app that Azure would not load: it exits
    1 with the worker's message and never starts serving. The child gets a bare environment
    but for where the worker is (a clone without .worker/ names it in DEVHOST_WORKER_DIR)."""
    app = write_app(tmp_path / "app", REFUSED_APP)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", WORKER_DIR_ENV: str(worker_dir())}
    done = subprocess.run(
        [sys.executable, "-m", "devhost", "start", "--port", "0", "--state", str(tmp_path / "s")],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no function of this app would load" in done.stderr
    assert "cannot load the annotated function" in done.stderr
    assert "serving" not in done.stdout


def test_the_per_function_check_names_the_function_and_binding(tmp_path, monkeypatch):
    """check_functions (what DurableHost runs) is the worker's process_indexed_function."""
    write_app(tmp_path / "checked_pkg", REFUSED_APP)
    (tmp_path / "checked_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("checked_pkg.function_app")
    with pytest.raises(AppRefused, match="cannot load the annotated function: binding payload"):
        check_functions(module.app.get_functions(), tmp_path / "checked_pkg")
