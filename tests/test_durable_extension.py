"""devhost behaves like the Durable extension on the Azure Storage backend wherever this app
relies on it. Each test names, in its docstring, the extension or DTFx code it imitates (read
in Azure/azure-functions-durable-extension and Azure/durabletask)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devhost.durable import DurableHost, iso, timespan
from devhost.server import DevServer
from tests.helpers import call, timer_links

APP = "tests.durable_test_app"


@pytest.fixture
def host(tmp_path) -> Iterator[DurableHost]:
    with DurableHost(tmp_path / "state", app_module=APP, workers=1) as running:
        yield running


def wait_status(host: DurableHost, instance_id: str, check, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = host.get_status(instance_id)
        if status is not None and check(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{instance_id} never got there: {host.get_status(instance_id)}")


def running(status: dict) -> bool:
    return status["runtimeStatus"] == "Running"


def batches(host: DurableHost, instance_id: str) -> list[list[int]]:
    """The history cut into episodes: the event types between each OrchestratorStarted and
    its OrchestratorCompleted."""
    out: list[list[int]] = []
    for e in host.history(instance_id):
        if e["EventType"] == 12:
            out.append([])
        elif e["EventType"] != 13 and out:
            out[-1].append(e["EventType"])
    return out


def test_timespan_is_the_format_the_extension_serialises():
    """Imitates: JSON.NET's TimeSpan ("c" format) in the orchestration trigger's context
    (OrchestrationTriggerAttributeBindingProvider: maximumShortTimerDuration,
    longRunningTimerIntervalDuration)."""
    assert timespan(timedelta(days=6)) == "6.00:00:00"
    assert timespan(timedelta(days=3)) == "3.00:00:00"
    assert timespan(timedelta(seconds=2)) == "00:00:02"
    assert timespan(timedelta(hours=1, minutes=2, seconds=3, microseconds=5)) == "01:02:03.0000050"


@pytest.mark.slow
def test_a_timer_longer_than_the_maximum_short_timer_is_a_chain_that_fires_at_its_time(tmp_path):
    """Imitates: the extension announcing maximumShortTimerDuration (6 days) and
    longRunningTimerIntervalDuration (3 days) of the Azure Storage provider, the SDK turning a
    longer timer into a chain (LongTimerTask: a timer of the interval while more than the
    maximum remains, then one at the time asked for), and the backend delivering each link
    no earlier than its FireAt (DTFx TaskHubQueue.GetVisibilityDelay). Shortened here to
    2 s and 1 s, for a timer of 3.5 s."""
    short, interval, asked = timedelta(seconds=2), timedelta(seconds=1), timedelta(seconds=3.5)
    with DurableHost(
        tmp_path / "state",
        app_module=APP,
        workers=1,
        max_short_timer=short,
        long_timer_interval=interval,
    ) as host:
        started = time.monotonic()
        host.start_new("with_long_timer", "long", json.dumps(asked.total_seconds()))
        status = host.wait_for("long", timeout=30)
        elapsed = time.monotonic() - started
        history = host.history("long")
    assert status["output"] == "fired"
    links = timer_links(history)
    assert len(links) >= 2  # a chain, not one timer (1 s, 1 s, then the rest here)
    first_episode = datetime.fromisoformat(history[0]["Timestamp"])
    assert links[0].created_in == first_episode
    *chain, last = links
    assert last.fire_at == first_episode + asked  # the last link fires at the time asked for
    assert last.fire_at - last.created_in <= short
    for link in chain:  # the others: one interval each, while more than `short` remained
        assert link.fire_at == link.created_in + interval
        assert first_episode + asked - link.created_in > short
    for link, following in itertools.pairwise(links):
        assert following.created_in == link.delivered_in  # made when the one before fired
    for link in links:
        assert link.delivered_in is not None and link.delivered_in >= link.fire_at, link
    assert elapsed >= asked.total_seconds()


def test_a_short_timer_stays_one_timer(host):
    """The same announcement: a timer within maximumShortTimerDuration is one timer."""
    host.start_new("with_long_timer", "short", json.dumps(0.3))
    host.wait_for("short", timeout=30)
    assert [e["EventType"] for e in host.history("short")].count(10) == 1


def test_the_timer_after_the_last_retry_attempt_fires_at_once(host, tmp_path):
    """Imitates: DTFx RetryInterceptor.Invoke, which after the last failed attempt schedules
    "a timer that fires immediately" (kept for replay compatibility), where the timers
    between attempts wait the retry interval."""
    options = {"attempts": 2, "fail_times": 9, "counter": str(tmp_path / "calls")}
    host.start_new("with_retry", "exhausted", json.dumps(options))
    assert host.wait_for("exhausted", timeout=30)["runtimeStatus"] == "Failed"
    timers = [e for e in host.history("exhausted") if e["EventType"] == 10]
    assert len(timers) == 2
    between, last = (
        datetime.fromisoformat(t["FireAt"]) - datetime.fromisoformat(t["Timestamp"]) for t in timers
    )
    assert between >= timedelta(milliseconds=50)  # the retry interval of with_retry
    assert last < timedelta(milliseconds=5)
    for link in timer_links(host.history("exhausted")):  # neither is delivered before its time
        assert link.delivered_in is not None and link.delivered_in >= link.fire_at, link


def test_events_due_together_reach_the_instance_as_one_batch(host):
    """Imitates: the Azure Storage backend delivering the messages of a control queue that are
    due together in one batch (one OrchestratorStarted, every new event after it)."""
    host.start_new("collect", "collector", json.dumps(3))
    wait_status(host, "collector", lambda s: running(s) and len(batches(host, "collector")) == 1)
    with host.holding_episodes():
        for item in ("a", "b", "c"):
            host.raise_event("collector", "item", json.dumps(item))
        time.sleep(0.3)
    assert host.wait_for("collector", timeout=30)["output"] == ["a", "b", "c"]
    assert batches(host, "collector")[1] == [15, 15, 15, 1]  # three events, completed


def test_an_event_in_the_same_batch_as_continue_as_new_is_dropped(host):
    """Imitates: DTFx dropping the rest of a batch when the orchestration continues as new, and
    the out-of-process shim's ContinueAsNew without preserveUnprocessedEvents (events raised
    but not consumed are gone). An event raised after that batch reaches the new execution."""
    host.start_new("relay", "relay", json.dumps(0))
    wait_status(host, "relay", running)
    with host.holding_episodes():
        host.raise_event("relay", "tick", json.dumps(1))
        host.raise_event("relay", "tick", json.dumps(2))  # same batch: dropped
        time.sleep(0.3)
    status = wait_status(host, "relay", lambda s: s["input"] == 1 and running(s))
    time.sleep(0.5)
    status = host.get_status("relay")
    assert status["runtimeStatus"] == "Running"  # generation 1 still waits for its tick
    assert [e["EventType"] for e in host.history("relay")].count(15) == 0
    host.raise_event("relay", "tick", json.dumps(3))
    assert host.wait_for("relay", timeout=30)["output"] == 2


@pytest.mark.slow
def test_completions_for_an_execution_before_continue_as_new_are_discarded(host):
    """Imitates: DTFx TaskOrchestrationDispatcher.ReconcileMessagesWithState ("ExecutionId of
    event does not match current executionId"): the slow activity of generation 0 finishes
    after generation 1 has scheduled its own task 0, and must not complete it."""
    host.start_new("restart_while_busy", "busy", json.dumps(0))
    wait_status(host, "busy", lambda s: running(s) and len(batches(host, "busy")) == 1)
    host.raise_event("busy", "restart", "null")
    assert host.wait_for("busy", timeout=30)["output"] == 42


def test_a_sub_orchestration_started_over_a_running_id_replaces_it(host):
    """Imitates: the Azure Storage backend de-duplicating only client starts
    (OrchestrationSessionManager.DedupeExecutionStartedMessagesAsync: ParentInstance == null)
    and loading history by the new execution id (AzureTableTrackingStore
    .GetHistoryEventsAsync): a second parent's start of a running child is not refused, it
    starts a new execution, and the first parent never hears back."""
    host.start_new("spawner", "first", json.dumps("one"))
    first_child = wait_status(host, "child", running)
    host.start_new("spawner", "second", json.dumps("two"))
    wait_status(host, "child", lambda s: running(s) and s["input"] == "two")
    assert first_child["input"] == "one"
    host.raise_event("child", "go", "null")
    assert host.wait_for("second", timeout=30)["output"] == "two"
    time.sleep(0.3)
    assert host.get_status("first")["runtimeStatus"] == "Running"  # never completes
    executions = {
        e["OrchestrationInstance"]["ExecutionId"]
        for e in host.history("child")
        if e["EventType"] == 0
    }
    assert len(executions) == 1  # the history is the new execution's only


def test_purge_by_id_and_by_filter_answer_as_the_extension_does(host):
    """Imitates: HttpApiHandler.HandleDeleteHistoryByIdRequestAsync (404 unknown, 200 with
    instancesDeleted) and HandleDeleteHistoryWithFiltersRequestAsync (400 without
    createdTimeFrom, 404 when nothing was deleted), with DTFx's Azure Storage purge keeping
    only terminal statuses of those asked for."""
    host.start_new("fan_out", "done-1", json.dumps(1))
    host.start_new("fan_out", "done-2", json.dumps(1))
    host.start_new("with_event", "waiting", "null")
    host.wait_for("done-1", timeout=30)
    host.wait_for("done-2", timeout=30)
    wait_status(host, "waiting", running)
    with DevServer(host) as server:
        base = f"{server.base_url}/durabletask/instances"
        assert call("DELETE", f"{base}/nobody").status == 404
        answer = call("DELETE", f"{base}/done-1")
        assert (answer.status, answer.json()) == (200, {"instancesDeleted": 1})
        assert host.get_status("done-1") is None
        assert call("DELETE", f"{base}/?runtimeStatus=Completed").status == 400
        since = iso(datetime.now(UTC) - timedelta(hours=1))
        answer = call("DELETE", f"{base}/?createdTimeFrom={since}&runtimeStatus=Completed,Running")
        assert (answer.status, answer.json()) == (200, {"instancesDeleted": 1})
        assert host.get_status("waiting")["runtimeStatus"] == "Running"  # never a running one
        assert (
            call("DELETE", f"{base}/?createdTimeFrom={since}&runtimeStatus=Completed").status == 404
        )


def test_a_custom_status_over_the_extensions_limit_fails_the_orchestration(host):
    """Imitates: MessagePayloadDataConverter.Serialize with MaxCustomStatusPayloadSizeInKB 16,
    which measures the compact JSON in UTF-16 and refuses it when floor(bytes / 1024) > 16:
    about 8,700 ASCII characters, not 16,000."""
    host.start_new("big_status", "fits", json.dumps(8_000))
    assert host.wait_for("fits", timeout=30)["runtimeStatus"] == "Completed"
    host.start_new("big_status", "too-big", json.dumps(9_000))
    status = host.wait_for("too-big", timeout=30)
    assert status["runtimeStatus"] == "Failed"
    assert "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB" in json.dumps(
        status["output"]
    )


@pytest.mark.slow
def test_the_nightly_purge_deletes_old_finished_instances_only(tmp_path, monkeypatch):
    """The app's purge_history timer function, run through the Functions admin API
    (POST /admin/functions/{name}) with the real Durable client: finished instances created
    before the retention period are purged; running ones and recent ones are kept."""
    monkeypatch.setenv("PIPELINE_HISTORY_RETENTION_DAYS", "30")
    state = {"config": {"request": {"dataset_id": "d"}, "policy": {}, "quiet_seconds": 300,
                        "max_wait_seconds": 3600}}  # fmt: skip
    with DurableHost(tmp_path / "state", workers=1) as host, DevServer(host) as server:
        for instance_id in ("watch-old-done", "watch-old-running", "watch-new-done"):
            host.start_new("dataset_watcher", instance_id, json.dumps(state))
            wait_status(host, instance_id, running)
        host.terminate("watch-old-done", "test")
        host.terminate("watch-new-done", "test")
        old = iso(datetime.now(UTC) - timedelta(days=40))
        with host.store.transaction() as db:  # as if they had been created 40 days ago
            db.execute("UPDATE instances SET created = ? WHERE id LIKE 'watch-old-%'", (old,))
        answer = call("POST", f"{server.base_url}/admin/functions/purge_history", {"input": ""})
        assert answer.status == 202
        assert host.get_status("watch-old-done") is None
        assert host.get_status("watch-old-running")["runtimeStatus"] == "Running"
        assert host.get_status("watch-new-done")["runtimeStatus"] == "Terminated"
        assert call("POST", f"{server.base_url}/admin/functions/health", {}).status == 400
