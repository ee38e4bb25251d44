"""The real Function App with faults injected: the first call (or the first
PIPELINE_TEST_FAULTS calls) of validate_files raises
StorageUnavailable, as a throttled or dropped storage connection would. This is a mock of a
fault we cannot provoke for real here yet (issue 5 adds a fault-injecting proxy in front of
Azurite); everything else is the real orchestrator and the real activities."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.durable_functions as df

import activities.releases as releases
import activities.stages as stages
from orchestrators.pipeline import bp as orchestrators
from shared.model.errors import StorageUnavailable

FAULT_COUNTER = "PIPELINE_TEST_FAULT_COUNTER"  # a file: calls run in other processes
FAULTS = "PIPELINE_TEST_FAULTS"  # how many calls fail (default 1)


def _failing_first_call(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(payload: dict[str, Any]) -> dict[str, Any]:
        counter = Path(os.environ[FAULT_COUNTER])
        calls = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(calls + 1))
        if calls < int(os.environ.get(FAULTS, "1")):
            raise StorageUnavailable("Storage did not answer (injected: connection reset by peer).")
        return function(payload)

    return wrapper


def real_app_with(wrappers: dict[str, Callable[[Any], Any]]) -> df.DFApp:
    """The real orchestrators and activities, the activities named in ``wrappers`` wrapped."""
    activities = df.Blueprint()
    for builder in [*stages.bp._function_builders, *releases.bp._function_builders]:
        name = builder._function.get_function_name()
        user_function = builder._function.get_user_function()
        if name in wrappers:
            user_function = wrappers[name](user_function)
        activities.activity_trigger(input_name="payload", activity=name)(user_function)
    real = df.DFApp()
    real.register_functions(orchestrators)
    real.register_functions(activities)
    return real


app = real_app_with({"validate_files": _failing_first_call})
