"""Small helpers shared by tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest
import xarray as xr

from devhost.durable import DurableHost
from devhost.local import exported
from devhost.samples import open_collection
from shared.model.errors import PipelineError
from shared.model.plan import PipelineInput, RunPolicy, instance_id_for
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.stages.scan import ScanResult, scan

# .ci/run installs every tool and library feature the suite needs, then sets this: there a
# missing one fails its tests; elsewhere they are skipped, saying what to install.
REQUIRE_TOOLS = "PIPELINE_TEST_REQUIRE_TOOLS"


def missing_tool(message: str) -> NoReturn:
    """What a test needs is not on this machine: a failure under PIPELINE_TEST_REQUIRE_TOOLS=1
    (CI), a skip with ``message`` elsewhere. Every skip for a missing tool goes through here
    (tests/test_skips.py holds the suite to it)."""
    if os.environ.get(REQUIRE_TOOLS):
        pytest.fail(f"{message} ({REQUIRE_TOOLS} is set: .ci/run installs it)")
    pytest.skip(message)


def rewrite_same_size(path: Path) -> None:
    """Another version of a file: same size, its last byte changed, modified a minute later
    (another upload over it: a new ETag, local or in blob storage once uploaded again)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, (stat.st_atime + 60, stat.st_mtime + 60))


def open_sources(paths: list[Path]) -> xr.Dataset:
    """What a user gets from xarray itself: the reference answer every store must equal."""
    return open_collection(paths).load()


@dataclass(frozen=True)
class Run:
    """A run that succeeded, as the pipeline orchestrator's output describes it."""

    output: dict[str, Any]
    instance_id: str

    @property
    def run_id(self) -> str:
        return self.output["run_id"]

    @property
    def status(self) -> str:
        return self.output["phase"]

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.output["stages"]

    @property
    def store(self) -> dict[str, Any]:
        """What combine built: mode, bytes, references, dims, peak memory."""
        return self.output["store"]

    @property
    def errors(self) -> list[dict[str, str]]:
        return self.output["errors"]

    @property
    def total_bytes(self) -> int:
        return self.output["files"]["bytes"]

    def _output(self, key: str) -> str:
        return self.output["outputs"].get(key, "")

    manifest_url = property(lambda self: self._output("manifest_url"))
    gate_report_url = property(lambda self: self._output("gate_report_url"))
    store_url = property(lambda self: self._output("store_url"))
    item_url = property(lambda self: self._output("item_url"))
    catalog_url = property(lambda self: self._output("catalog_url"))
    report_url = property(lambda self: self._output("run_report"))
    summary_url = property(lambda self: self._output("run_summary"))


def run_pipeline(
    request: PipelineRequest,
    settings: Settings,
    *,
    batch_size: int | None = None,
    timeout: float = 300,
    app_module: str = "function_app",
) -> Run:
    """One run through the real pipeline orchestrator (the Durable SDK's replay on devhost,
    activities on threads of this process), as the HTTP starter starts it. Returns the
    finished run; a failed run raises the PipelineError its status names, with the run
    report and, when the gate stopped it, the gate report in its context."""
    if batch_size is not None:
        settings = settings.with_changes(batch_size=batch_size)
    instance_id = instance_id_for(request.dataset_id)
    run = PipelineInput(request, RunPolicy.from_request(request, settings))
    with (
        tempfile.TemporaryDirectory(prefix="devhost-state-") as state,
        exported(settings),
        DurableHost(state, app_module=app_module, in_process=True) as host,
    ):
        host.start_new("pipeline", instance_id, json.dumps(run.to_dict()))
        durable = host.wait_for(instance_id, timeout=timeout)
    if durable["runtimeStatus"] == "Completed":
        return Run(durable["output"], instance_id)
    status = durable.get("customStatus") or {}
    if not isinstance(status, dict) or not status.get("error"):
        raise AssertionError(f"the orchestration ended {durable['runtimeStatus']}: {durable}")
    outputs = status.get("outputs") or {}
    context: dict[str, Any] = {"instance_id": instance_id, "errors": status.get("errors") or []}
    for key in ("run_report", "run_summary"):
        if outputs.get(key):
            context[key] = outputs[key]
    if outputs.get("gate_report_url"):
        context["gate"] = {
            "report_url": outputs["gate_report_url"],
            "summary_url": outputs.get("gate_summary_url"),
            "first_errors": status.get("errors") or [],
        }
    raise PipelineError.from_dict({**status["error"], "context": context})


def scanned(source: str, settings: Settings, **fields) -> tuple[PipelineRequest, ScanResult]:
    request = PipelineRequest.from_dict({"source": source, "dataset_id": "tas-daily", **fields})
    return request, scan(request, settings)


HOST_SCRIPT = """
import json, sys
from devhost.durable import DurableHost

def main():
    state, instance_id = sys.argv[1], sys.argv[2]
    host = DurableHost(state, workers=1).start()
    if len(sys.argv) > 3:
        host.start_new("pipeline", instance_id, open(sys.argv[3]).read())
    print(json.dumps(host.wait_for(instance_id, timeout=300)))
    host.stop()

if __name__ == "__main__":
    main()
"""
ROOT = Path(__file__).resolve().parent.parent


class HostProcess:
    """devhost's Durable host in a process group of its own: started, killed with -9 (the
    host and its worker processes at once), then resumed on the same state folder."""

    def __init__(self, folder: Path, settings: Settings, instance_id: str = "pipeline-tas") -> None:
        self.folder, self.settings, self.instance_id = folder, settings, instance_id
        self.state = folder / "state"
        self.script = folder / "host.py"
        self.script.write_text(HOST_SCRIPT)
        self.env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}

    def start(self, request: PipelineRequest) -> subprocess.Popen[bytes]:
        run_input = self.folder / "input.json"
        policy = RunPolicy.from_request(request, self.settings)
        run_input.write_text(json.dumps(PipelineInput(request, policy).to_dict()))
        return subprocess.Popen(
            [sys.executable, str(self.script), str(self.state), self.instance_id, str(run_input)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def kill_when(self, process: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not ready():
            assert process.poll() is None, f"the host ended first: {process.communicate()}"
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.005)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def resume(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(self.script), str(self.state), self.instance_id],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def executions(self) -> list[tuple[str, int, str, float | None]]:
        """(instance, task id, activity, finished) of every activity run so far."""
        if not (self.state / "durable.sqlite").exists():
            return []
        db = sqlite3.connect(self.state / "durable.sqlite", timeout=10)
        try:
            return list(db.execute("SELECT instance_id, task_id, name, finished FROM executions"))
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request; a dict or list body is sent as JSON, bytes as they are."""
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


@contextmanager
def durable_host(
    state: Path, settings: Settings, monkeypatch: Any, app_module: str = "function_app"
) -> Iterator[DurableHost]:
    """A devhost whose worker processes see these settings (they read the environment)."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    with DurableHost(state, app_module=app_module, workers=2) as host:
        yield host


def submit(host: DurableHost, settings: Settings, **body) -> str:
    """What the HTTP starter does: validate the request, fix the run's policy, start."""
    request = PipelineRequest.from_dict({"dataset_id": "tas", **body})
    instance_id = instance_id_for(request.dataset_id)
    run = PipelineInput(request, RunPolicy.from_request(request, settings))
    host.start_new("pipeline", instance_id, json.dumps(run.to_dict()))
    return instance_id


def stores_written(store_root: str | Path) -> list[Path]:
    """Every file below the store root except run summaries (`{run}.report.md`, which a
    failed run writes too): what "no store was written" checks."""
    root = Path(store_root)
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".report.md")]


@dataclass(frozen=True)
class TimerLink:
    """One durable timer in an instance's history: when it was asked to fire (FireAt), when
    the episode that created it started (the orchestrator's current_utc_datetime then) and
    when the episode that delivered its TimerFired started (None: not fired)."""

    timer_id: int
    fire_at: datetime
    created_in: datetime
    delivered_in: datetime | None


def timer_links(history: list[dict[str, Any]]) -> list[TimerLink]:
    """Every timer of a history, in the order they were created."""
    created: dict[int, tuple[datetime, datetime]] = {}
    delivered: dict[int, datetime] = {}
    episode: datetime | None = None
    for e in history:
        if e["EventType"] == 12:  # OrchestratorStarted
            episode = datetime.fromisoformat(e["Timestamp"])
        elif e["EventType"] == 10:  # TimerCreated
            assert episode is not None
            created[e["EventId"]] = (datetime.fromisoformat(e["FireAt"]), episode)
        elif e["EventType"] == 11:  # TimerFired
            assert episode is not None
            delivered[e["TimerId"]] = episode
    return [
        TimerLink(timer_id, fire_at, created_in, delivered.get(timer_id))
        for timer_id, (fire_at, created_in) in created.items()
    ]
