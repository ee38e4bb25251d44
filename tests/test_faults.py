"""Transient storage faults: a run through a fault-injecting proxy in front of Azurite
(tests/fault_proxy.py: 503s, 500s, dropped connections, delays, responses cut off midway),
at 10% and 30% of requests, completes, and what it publishes is identical to a fault-free
run's, in all three output formats.

Which layer absorbs what (docs/faults.md): the storage clients' own retries (obstore for our
reads and writes and for kerchunk readers, Icechunk's Rust client for its repository and
virtual chunks) absorb nearly every fault. What they do not retry (a list response or an
error response whose body is cut off, an outage longer than their retries) surfaces as
StorageUnavailable and the Durable retry options run the activity again: so the runs go
through the orchestrated path (devhost), the core path alone would fail.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import xarray as xr
from azure.storage.blob import BlobServiceClient

from consumer.reader import open_item
from devhost.durable import DurableHost
from devhost.samples import SampleSpec, write_sample_files
from shared.io.storage import Storage
from shared.io.stores import open_icechunk_repository
from shared.model.errors import PipelineError
from shared.model.locations import parse_location
from shared.model.plan import PipelineInput, RunPolicy, instance_id_for
from shared.model.request import PipelineRequest
from shared.model.settings import AZURITE_ACCOUNT, AZURITE_KEY, Settings, StorageAccount
from shared.stages.verify import verify
from tests.fault_proxy import FAULT_KINDS, FaultPlan, FaultProxy
from tests.helpers import open_sources, run_pipeline

pytestmark = pytest.mark.azurite

SPEC = SampleSpec(files=4, lat=6, lon=10)
# Seeded: the same draws every run. With seed 1 the 10% run meets its 5th random fault by
# request ~60 of ~115, so every kind is injected (seeds 2-6 also pass, a few with <5 at 10%).
SEED = 1
TASK_FAILED = 6


@dataclass(frozen=True)
class Collection:
    container: str
    paths: list[Path]

    @property
    def source(self) -> str:
        return f"abfs://{self.container}/daily"


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, blob_service: BlobServiceClient):
    """Four small NetCDF files in a container of their own, shared by this module's runs."""
    paths = write_sample_files(tmp_path_factory.mktemp("faults") / "src", SPEC)
    container = f"nc-{uuid.uuid4().hex[:10]}"
    blob_service.create_container(container)
    for path in paths:
        blob_service.get_blob_client(container, f"daily/{path.name}").upload_blob(path.read_bytes())
    yield Collection(container, paths)
    with contextlib.suppress(Exception):
        blob_service.delete_container(container)


@pytest.fixture
def proxy_for(azurite_account: StorageAccount):
    """Start a fault proxy in front of Azurite: proxy_for(rate, **plan) -> FaultProxy."""
    target = azurite_account.endpoint.split("//", 1)[1].split("/", 1)[0]
    with contextlib.ExitStack() as stack:

        def start(rate: float, **plan: Any) -> FaultProxy:
            proxy = FaultProxy(target, FaultPlan(rate=rate, seed=SEED, **plan))
            return stack.enter_context(proxy.running())

        yield start


def through(proxy: FaultProxy, settings: Settings) -> Settings:
    """The same settings with the account endpoint pointing at the proxy."""
    return settings.with_changes(
        account=StorageAccount(AZURITE_ACCOUNT, AZURITE_KEY, f"{proxy.address}/{AZURITE_ACCOUNT}")
    )


def request(collection: Collection, store_format: str) -> PipelineRequest:
    return PipelineRequest.from_dict(
        {"source": collection.source, "dataset_id": "tas", "format": store_format}
    )


def fresh_areas(settings: Settings, containers: Any) -> Settings:
    """Work area, stores and catalog in new containers (for a second run in one test)."""
    return settings.with_changes(
        work_area=f"az://{containers.new('work')}/runs",
        store_root=f"az://{containers.new('stores')}",
        catalog=f"az://{containers.new('catalog')}/stac",
    )


def store_content(store_url: str, store_format: str, settings: Settings) -> Any:
    """What a store holds, comparable between runs: the kerchunk JSON document, every
    object of a Parquet store by name, or an Icechunk store's virtual chunk locations."""
    storage = Storage(settings)
    store = parse_location(store_url, settings, what="store")
    if store_format == "kerchunk-json":
        return storage.read_json(store)
    if store_format == "kerchunk-parquet":
        names = [info.url.removeprefix(store.url + "/") for info in storage.list(store)]
        return {name: storage.read(store.join(name)) for name in names}
    repo = open_icechunk_repository(store, settings)
    return sorted(repo.readonly_session("main").all_virtual_chunk_locations())


def published(item_url: str, settings: Settings) -> xr.Dataset:
    with open_item(item_url, settings) as dataset:
        return dataset.load()


def assert_faults_injected(counts: dict[str, int], *, at_least_each: int) -> None:
    """Every kind was injected (the kinds take turns, so this follows from the total)."""
    for kind in FAULT_KINDS:
        assert counts[kind] >= at_least_each, counts


@contextlib.contextmanager
def durable_host(state: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """A devhost whose worker processes see these settings (they read the environment)."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    with DurableHost(state, workers=2) as host:
        yield host


def submit(host: DurableHost, settings: Settings, source: str, store_format: str) -> str:
    """What the HTTP starter does: validate the request, fix the run's policy, start."""
    request = PipelineRequest.from_dict(
        {"dataset_id": "tas", "source": source, "format": store_format}
    )
    instance_id = instance_id_for(request.dataset_id)
    run = PipelineInput(request, RunPolicy.from_request(request, settings))
    host.start_new("pipeline", instance_id, json.dumps(run.to_dict()))
    return instance_id


def task_failures(host: DurableHost) -> list[str]:
    """The Reason of every failed activity attempt (each one is then retried by Durable)."""
    reasons = []
    for instance_id in host.instances():
        for event in host.history(instance_id):
            if event["EventType"] == TASK_FAILED:
                reasons.append(event.get("Reason") or "")
    return reasons


# -- the proxy itself ----------------------------------------------------------------------
def _exchange(port: int, method: str, path: str) -> tuple[int | None, dict[str, str], str]:
    """One raw request through the proxy: (status, headers, error) with status None when
    the answer was broken or missing (error says how)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"x-ms-version": "2021-08-06"})
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders()), ""
    except (http.client.HTTPException, OSError) as exc:
        return None, {}, type(exc).__name__
    finally:
        connection.close()


def test_the_proxy_injects_each_kind_of_fault_and_counts_it(proxy_for):
    path = f"/{AZURITE_ACCOUNT}?comp=list"  # unauthenticated: Azurite answers 403, a body
    seen: dict[str, tuple[int | None, dict[str, str], str, float]] = {}
    for kind in FAULT_KINDS:
        proxy = proxy_for(1.0, kinds=(kind,))
        started = time.perf_counter()
        status, headers, error = _exchange(proxy.port, "GET", path)
        seen[kind] = (status, headers, error, time.perf_counter() - started)
        assert proxy.snapshot()[kind] == 1
        assert proxy.snapshot()["requests"] == 1
    assert seen["status_503"][0] == 503
    assert seen["status_503"][1]["x-ms-error-code"] == "ServerBusy"
    assert seen["status_503"][1]["Retry-After"] in ("0", "1")
    assert seen["status_500"][0] == 500
    assert seen["drop"][0] is None  # no answer at all
    assert seen["delay"][0] == 403 and seen["delay"][3] >= 0.2  # Azurite's own answer, late
    assert seen["truncate"][0] is None and seen["truncate"][2] == "IncompleteRead"

    clean = proxy_for(0.0)
    assert _exchange(clean.port, "GET", path)[0] == 403
    assert clean.snapshot() | {"passed": 0, "requests": 0} == dict.fromkeys(clean.snapshot(), 0)


def test_the_proxy_keeps_a_heads_content_length(proxy_for, blob_settings):
    """A HEAD answer has no body but says the object's size: the proxy relays that header
    (the stages compare sizes with the manifest; a lost Content-Length reads as 0 bytes)."""
    proxy = proxy_for(0.0)
    storage = Storage(through(proxy, blob_settings))
    target = parse_location(f"{blob_settings.work_area}/sized.bin", blob_settings)
    storage.write(target, b"x" * 12345)
    assert storage.head(target).size == 12345


def test_the_proxy_keeps_shared_key_auth_working(proxy_for, blob_settings):
    """SharedKey does not sign the Host header: the account endpoint can point at the proxy."""
    proxy = proxy_for(0.0)
    storage = Storage(through(proxy, blob_settings))
    target = parse_location(f"{blob_settings.work_area}/probe.json", blob_settings)
    storage.write_json(target, {"probe": 1})
    assert storage.read_json(target) == {"probe": 1}
    assert proxy.snapshot()["passed"] == 2


def test_the_proxy_runs_from_the_command_line(azurite_account: StorageAccount):
    target = azurite_account.endpoint.split("//", 1)[1].split("/", 1)[0]
    command = [sys.executable, "-m", "tests.fault_proxy", "--listen", "0", "--target", target]
    process = subprocess.Popen(
        [*command, "--rate", "1", "--seed", "1", "--kinds", "status_503"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()  # printed once it listens
        assert address.startswith("http://127.0.0.1:")
        status = _exchange(int(address.rsplit(":", 1)[1]), "GET", f"/{AZURITE_ACCOUNT}")[0]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert status == 503
    counts = json.loads(output.strip().splitlines()[-1])  # printed when it stops
    assert counts["status_503"] == counts["requests"] == 1


# -- whole runs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    rate: float
    store_format: str
    at_least_each: int  # faults of each kind the run must have met
    plan: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.rate:.0%}-{self.store_format}"


# The manifest write refused 13 times in a row: the scan's first attempt makes 11 tries
# (obstore: 10 retries) and fails with StorageUnavailable, Durable runs it again, and its
# second attempt gets through after 2 more refusals.
OUTAGE = {"outage_match": "/manifests/", "outage_requests": 13}
CASES = [
    Case(0.1, "kerchunk-json", 1, OUTAGE),
    Case(0.3, "kerchunk-parquet", 4, {}),
    Case(0.3, "icechunk", 4, {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=str)
def test_an_orchestrated_run_through_the_fault_proxy_equals_a_fault_free_run(
    case, tmp_path, collection, proxy_for, blob_settings, containers, monkeypatch
):
    clean_settings = fresh_areas(blob_settings, containers)
    clean = run_pipeline(request(collection, case.store_format), clean_settings)
    proxy = proxy_for(case.rate, **case.plan)
    settings = through(proxy, blob_settings).with_changes(
        batch_size=2, files_per_activity=1, retry_first_interval_ms=200
    )
    started = time.perf_counter()
    with durable_host(tmp_path / "state", settings, monkeypatch) as host:
        instance_id = submit(host, settings, collection.source, case.store_format)
        status = host.wait_for(instance_id, timeout=120)
        failures = task_failures(host)
    seconds = time.perf_counter() - started
    counts = proxy.snapshot()
    proxy.set_rate(0.0)  # read the results back without faults

    assert status["runtimeStatus"] == "Completed", status
    outputs = status["output"]["outputs"]
    assert status["output"]["run_id"] == clean.run_id
    assert store_content(outputs["store_url"], case.store_format, settings) == store_content(
        clean.store_url, case.store_format, clean_settings
    )
    sources = open_sources(collection.paths)
    xr.testing.assert_identical(published(outputs["item_url"], settings), sources)
    xr.testing.assert_identical(published(clean.item_url, clean_settings), sources)
    assert_faults_injected(counts, at_least_each=case.at_least_each)
    # Whatever the clients' retries did not absorb was retried by Durable, and only that.
    assert all("StorageUnavailable" in reason for reason in failures), failures
    if case.plan.get("outage_requests"):
        assert counts["outage"] == case.plan["outage_requests"]
        assert any("/manifests/" in reason for reason in failures), failures
    print(
        f"\n{case}: {seconds:.1f} s, {json.dumps(counts)}, "
        f"Durable retries: {len(failures)} {[r.split(':')[0] for r in failures]}"
    )


# -- known gaps: failures the clients' retries cannot absorb, not classified retryable -------
def test_an_icechunk_storage_error_is_classified_retryable(collection, proxy_for, blob_settings):
    clean = run_pipeline(request(collection, "icechunk"), blob_settings)
    # Opening the repository probes refs/branch.main/ref.json (a 404): its error body cut off
    # is not retried by object_store, so Icechunk raises at once.
    proxy = proxy_for(1.0, kinds=("truncate",), match="/refs/branch.main/ref.json")
    settings = through(proxy, blob_settings)
    with pytest.raises(PipelineError) as raised:
        verify(clean.manifest_url, clean.store_url, "icechunk", "time", settings)
    assert raised.value.retryable
