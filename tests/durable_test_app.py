"""A small Function App that exercises every part of the replay protocol devhost speaks:
fan-out, sub-orchestrations, retries, timers and external events. Used by test_durable.py."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import azure.durable_functions as df

from activities.stages import Payload

app = df.DFApp()


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    doubled = yield context.task_all([context.call_activity("double", i) for i in range(count)])
    total = yield context.call_activity("double", sum(doubled))
    return {"doubled": doubled, "total": total}


@app.orchestration_trigger(context_name="context")
def with_sub(context: df.DurableOrchestrationContext):
    result = yield context.call_sub_orchestrator("fan_out", context.get_input())
    return result["total"]


@app.orchestration_trigger(context_name="context")
def with_retry(context: df.DurableOrchestrationContext):
    options = context.get_input()
    retry = df.RetryOptions(
        first_retry_interval_in_milliseconds=50, max_number_of_attempts=options["attempts"]
    )
    return (yield context.call_activity_with_retry("flaky", retry, options))


@app.orchestration_trigger(context_name="context")
def with_timer(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + timedelta(milliseconds=200))
    return "fired"


@app.orchestration_trigger(context_name="context")
def with_event(context: df.DurableOrchestrationContext):
    context.set_custom_status("waiting for approval")
    decision = yield context.wait_for_external_event("approve")
    return {"decision": decision}


@app.activity_trigger(input_name="value")
def double(value: int) -> int:
    return 2 * value


@app.activity_trigger(input_name="options")
def flaky(options: Payload) -> str:
    """Fails the first `fail_times` calls (counted in a file: calls run in other processes)."""
    counter = Path(options["counter"])
    calls = json.loads(counter.read_text()) if counter.exists() else 0
    counter.write_text(json.dumps(calls + 1))
    if calls < options["fail_times"]:
        raise ConnectionResetError(f"injected transient failure {calls + 1}")
    return f"succeeded on call {calls + 1}"


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    """Continues as new until the count reaches 3, keeping each history short."""
    count = context.get_input()
    if count >= 3:
        return count
    yield context.call_activity("double", count)
    context.continue_as_new(count + 1)


@app.orchestration_trigger(context_name="context")
def with_long_timer(context: df.DurableOrchestrationContext):
    """A timer of `seconds`: longer than the host's maximum short timer, the SDK makes it a
    chain of timers of at most the long-timer interval."""
    seconds = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))
    return "fired"


@app.orchestration_trigger(context_name="context")
def collect(context: df.DurableOrchestrationContext):
    """Waits for `count` "item" events, one after the other; returns them."""
    items = []
    for _ in range(context.get_input()):
        items.append((yield context.wait_for_external_event("item")))
    return items


@app.orchestration_trigger(context_name="context")
def relay(context: df.DurableOrchestrationContext):
    """Continues as new at every "tick" event, until the count reaches 2."""
    count = context.get_input()
    if count >= 2:
        return count
    yield context.wait_for_external_event("tick")
    context.continue_as_new(count + 1)


@app.orchestration_trigger(context_name="context")
def restart_while_busy(context: df.DurableOrchestrationContext):
    """Generation 0 starts a slow activity (task 0) and continues as new on "restart"
    without waiting for it; generation 1's own task 0 doubles 21."""
    generation = context.get_input()
    if generation == 0:
        slow = context.call_activity("sleepy", 1.5)
        restart = context.wait_for_external_event("restart")
        yield context.task_any([slow, restart])
        context.continue_as_new(1)
        return None
    return (yield context.call_activity("double", 21))


@app.orchestration_trigger(context_name="context")
def spawner(context: df.DurableOrchestrationContext):
    """Starts the sub-orchestration `child` under a fixed instance id."""
    return (yield context.call_sub_orchestrator("child_waits", context.get_input(), "child"))


@app.orchestration_trigger(context_name="context")
def child_waits(context: df.DurableOrchestrationContext):
    yield context.wait_for_external_event("go")
    return context.get_input()


@app.activity_trigger(input_name="seconds")
def sleepy(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slept"


@app.orchestration_trigger(context_name="context")
def big_status(context: df.DurableOrchestrationContext):
    """Sets a custom status of `chars` ASCII characters (JSON string), then completes."""
    context.set_custom_status("x" * context.get_input())
    yield context.call_activity("double", 1)
    return "done"


@app.orchestration_trigger(context_name="context")
def slow_mark(context: df.DurableOrchestrationContext):
    """One activity that marks its start, sleeps, then appends to a file."""
    return (yield context.call_activity("sleep_then_mark", context.get_input()))


@app.activity_trigger(input_name="options")
def sleep_then_mark(options: Payload) -> str:
    import os
    import time

    Path(options["started"]).write_text(str(os.getpid()))
    time.sleep(options["seconds"])
    with Path(options["marker"]).open("a") as out:
        out.write(f"{os.getpid()}\n")
    return "marked"
