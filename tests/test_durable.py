"""devhost speaks the Durable extension's replay protocol to the real SDK. These tests pin
the event layout, the task numbering and the retry sequence, so an SDK upgrade that changes
any of them fails here, loudly."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from devhost.durable import DurableHost, InstanceExists, index_app
from tests.helpers import timer_links

APP = "tests.durable_test_app"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with DurableHost(tmp_path_factory.mktemp("state"), app_module=APP, workers=1) as running:
        yield running


def layout(host: DurableHost, instance_id: str) -> list[tuple]:
    """The history as (event type, event id or the id it refers to) per event."""
    names = {
        0: "ExecutionStarted",
        1: "ExecutionCompleted",
        2: "ExecutionFailed",
        4: "TaskScheduled",
        5: "TaskCompleted",
        6: "TaskFailed",
        7: "SubOrchestrationInstanceCreated",
        8: "SubOrchestrationInstanceCompleted",
        10: "TimerCreated",
        11: "TimerFired",
        12: "OrchestratorStarted",
        13: "OrchestratorCompleted",
        15: "EventRaised",
    }
    out = []
    for e in host.history(instance_id):
        name = names[e["EventType"]]
        ref = e.get("TaskScheduledId", e.get("TimerId"))
        if name in ("TaskScheduled", "SubOrchestrationInstanceCreated", "TimerCreated"):
            out.append((name, e["EventId"]))
        elif ref is not None:
            out.append((name, ref))
        elif name == "EventRaised":
            out.append((name, e["Name"]))
        else:
            out.append((name,))
    return out


def run(host: DurableHost, name: str, instance_id: str, value) -> dict:
    host.start_new(name, instance_id, json.dumps(value))
    return host.wait_for(instance_id, timeout=60)


def wait_until(host: DurableHost, instance_id: str, check, timeout: float = 10) -> dict:
    """The instance's status once ``check`` holds for it; fails when it never does."""
    deadline = time.monotonic() + timeout
    status = host.get_status(instance_id)
    while status is None or not check(status):
        assert time.monotonic() < deadline, f"{instance_id} never got there: {status}"
        time.sleep(0.05)
        status = host.get_status(instance_id)
    return status


def without_episodes(events: list[tuple]) -> list[tuple]:
    """The layout without the episode markers: how events fell into batches depends on
    timing (completions due together share an episode, as on Azure); their order does not."""
    return [e for e in events if e[0] not in ("OrchestratorStarted", "OrchestratorCompleted")]


def test_fan_out_is_numbered_in_order_of_the_actions(host):
    status = run(host, "fan_out", "fan", 2)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"doubled": [0, 2], "total": 4}
    assert without_episodes(layout(host, "fan")) == [
        ("ExecutionStarted",),
        ("TaskScheduled", 0),
        ("TaskScheduled", 1),
        ("TaskCompleted", 0),
        ("TaskCompleted", 1),
        ("TaskScheduled", 2),
        ("TaskCompleted", 2),
        ("ExecutionCompleted",),
    ]


def test_an_unnamed_sub_orchestration_is_named_after_the_parent_execution_id(host):
    """Imitates DTFx TaskOrchestrationContext.CreateSubOrchestrationInstanceCore: an unnamed
    child is "<parent execution id>:<sequence number>", not "<parent instance id>:<n>"."""
    status = run(host, "with_sub", "parent", 3)
    assert status["output"] == 12
    assert layout(host, "parent") == [
        ("OrchestratorStarted",),
        ("ExecutionStarted",),
        ("SubOrchestrationInstanceCreated", 0),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("SubOrchestrationInstanceCompleted", 0),
        ("OrchestratorCompleted",),
        ("ExecutionCompleted",),
    ]
    history = host.history("parent")
    execution_id = history[1]["OrchestrationInstance"]["ExecutionId"]
    assert len(execution_id) == 32
    assert history[2]["InstanceId"] == f"{execution_id}:0"
    assert host.get_status(f"{execution_id}:0")["runtimeStatus"] == "Completed"
    assert host.get_status("parent:0") is None


def test_a_failed_task_with_retry_gets_a_timer_then_is_scheduled_again(host, tmp_path):
    options = {"attempts": 3, "fail_times": 1, "counter": str(tmp_path / "calls")}
    status = run(host, "with_retry", "retry-once", options)
    assert status["output"] == "succeeded on call 2"
    assert layout(host, "retry-once") == [
        ("OrchestratorStarted",),
        ("ExecutionStarted",),
        ("TaskScheduled", 0),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TaskFailed", 0),
        ("TimerCreated", 1),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TimerFired", 1),
        ("TaskScheduled", 2),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TaskCompleted", 2),
        ("OrchestratorCompleted",),
        ("ExecutionCompleted",),
    ]


def test_after_the_last_attempt_there_is_one_more_timer_then_the_task_fails(host, tmp_path):
    options = {"attempts": 2, "fail_times": 9, "counter": str(tmp_path / "calls")}
    status = run(host, "with_retry", "retry-exhausted", options)
    assert status["runtimeStatus"] == "Failed"
    assert "injected transient failure 2" in json.dumps(status["output"])
    assert layout(host, "retry-exhausted") == [
        ("OrchestratorStarted",),
        ("ExecutionStarted",),
        ("TaskScheduled", 0),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TaskFailed", 0),
        ("TimerCreated", 1),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TimerFired", 1),
        ("TaskScheduled", 2),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TaskFailed", 2),
        ("TimerCreated", 3),
        ("OrchestratorCompleted",),
        ("OrchestratorStarted",),
        ("TimerFired", 3),
        ("OrchestratorCompleted",),
        ("ExecutionFailed",),
    ]
    assert (tmp_path / "calls").read_text() == "2"


def test_a_timer_fires_at_its_time_never_before(host):
    """Imitates: the Azure Storage backend sending a timer's TimerFired to the control queue
    invisible until its FireAt (DTFx TaskHubQueue.GetVisibilityDelay: FireAt - UtcNow, never
    less than zero), so the episode that delivers it starts at FireAt or later; FireAt is the
    time the orchestrator asked for (with_timer: its current time + 200 ms)."""
    started = time.monotonic()
    status = run(host, "with_timer", "timer", None)
    elapsed = time.monotonic() - started
    assert status["output"] == "fired"
    history = host.history("timer")
    created, fired = history[2], history[5]
    assert created["EventType"] == 10 and fired["EventType"] == 11
    assert fired["TimerId"] == created["EventId"] == 0
    assert fired["FireAt"] == created["FireAt"]
    (link,) = timer_links(history)
    assert link.fire_at == link.created_in + timedelta(milliseconds=200)
    assert link.delivered_in is not None and link.delivered_in >= link.fire_at
    assert elapsed >= 0.2


def test_an_external_event_completes_the_wait_and_custom_status_is_kept(host):
    host.start_new("with_event", "approval", "null")
    waiting = wait_until(host, "approval", lambda s: s["customStatus"] == "waiting for approval")
    assert waiting["runtimeStatus"] == "Running"
    host.raise_event("approval", "approve", json.dumps("yes"))
    done = host.wait_for("approval", timeout=30)
    assert done["output"] == {"decision": "yes"}
    assert done["customStatus"] == "waiting for approval"  # kept after the orchestration ends
    assert ("EventRaised", "approve") in layout(host, "approval")


def test_a_running_instance_id_cannot_be_started_again(host):
    host.start_new("with_event", "busy", "null")
    with pytest.raises(InstanceExists):
        host.start_new("with_event", "busy", "null")
    host.terminate("busy", "test over")
    assert host.get_status("busy")["runtimeStatus"] == "Terminated"


def test_replaying_a_finished_history_gives_the_same_actions_and_output(host):
    run(host, "fan_out", "replayed", 3)
    history = host.history("replayed")
    for e in history:
        e["IsPlayed"] = True
    handle = index_app(APP).orchestrators["fan_out"]
    context = {
        "history": history,
        "instanceId": "replayed",
        "isReplaying": True,
        "parentInstanceId": None,
        "input": "3",
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
    }
    state = json.loads(handle(json.dumps(context)))
    assert state["isDone"] is True
    assert state["output"] == host.get_status("replayed")["output"]
    scheduled = [(e["Name"], e["Input"]) for e in history if e["EventType"] == 4]
    actions = state["actions"][0]
    replayed = [(c["functionName"], c["input"]) for c in actions[0]["compoundActions"]]
    replayed.append((actions[1]["functionName"], actions[1]["input"]))
    assert replayed == scheduled


def test_continue_as_new_restarts_with_the_new_input_and_a_fresh_history(host):
    status = run(host, "counter", "counter", 0)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 3
    assert layout(host, "counter") == [
        ("OrchestratorStarted",),
        ("ExecutionStarted",),
        ("OrchestratorCompleted",),
        ("ExecutionCompleted",),
    ]
    assert host.history("counter")[1]["Input"] == "3"


def old_state(folder, status: str) -> None:
    """A state folder as an older devhost (schema 0) left it, with one instance."""
    import sqlite3

    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / "durable.sqlite")
    db.execute(
        "CREATE TABLE instances (id TEXT PRIMARY KEY, name TEXT, status TEXT, generation INT)"
    )
    db.execute("INSERT INTO instances VALUES ('pipeline-x', 'pipeline', ?, 0)", (status,))
    db.commit()
    db.close()


def test_a_state_folder_of_an_older_devhost_is_set_aside_when_no_run_is_in_progress(tmp_path):
    old_state(tmp_path / "state", "Completed")
    with DurableHost(tmp_path / "state", app_module=APP, workers=1) as fresh:
        assert fresh.instances() == []
    assert (tmp_path / "state" / "durable.schema0.sqlite").exists()


def test_a_state_folder_of_an_older_devhost_with_a_run_in_progress_is_refused(tmp_path):
    from devhost.durable import StateOutdated

    old_state(tmp_path / "state", "Running")
    with pytest.raises(StateOutdated, match="1 run\\(s\\) in progress"):
        DurableHost(tmp_path / "state", app_module=APP, workers=1)
