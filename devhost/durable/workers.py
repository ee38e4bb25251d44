"""The app's functions and where its activities run.

index_app finds the functions a Function App registers the way the Functions worker does.
Activities run in a process pool (HDF5 parsing holds a lock inside one process) of spawned
workers, each started with worker_init and running run_activity: the worker's own
ActivityTriggerConverter decodes the input and encodes the result. A worker dies with its
host. With ``in_process`` the same run_activity runs on threads of the host's own process.

The pool pickles worker_init and run_activity by reference: both must stay importable
top-level functions of this module, and the state they keep (the app module, the event
loops) is this module's, once per worker process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.progress import QUIET_ENV, install_stage_failures_filter

CLIENT = "durableClient"


# -- the app ----------------------------------------------------------------------------
@dataclass
class AppIndex:
    """The functions a Function App registers, found the way the worker finds them."""

    orchestrators: dict[str, Callable[[str], str]]
    activities: dict[str, Callable[..., Any]]
    activity_params: dict[str, str]
    functions: list[Any]
    # activity -> its Durable client parameters (an activity may start orchestrations)
    activity_clients: dict[str, tuple[str, ...]]


_INDEXES: dict[str, AppIndex] = {}


def index_app(module: str = "function_app") -> AppIndex:
    """Import the app module and index its functions once per process (get_functions() may
    be called only once per app instance). Every function goes through the Functions
    worker's own load checks first (devhost.worker): an app that Azure would refuse raises
    AppRefused with the worker's message, here as there."""
    if module not in _INDEXES:
        import importlib

        from devhost.worker import check_functions

        imported = importlib.import_module(module)
        functions = imported.app.get_functions()
        # The worker's own load checks: devhost must refuse what Azure refuses (AppRefused).
        check_functions(functions, Path(imported.__file__ or ".").parent)
        orchestrators, activities, params, clients = {}, {}, {}, {}
        for function in functions:
            trigger = function.get_trigger()
            name = function.get_function_name()
            if trigger is None:
                continue
            if trigger.get_binding_name() == "orchestrationTrigger":
                orchestrators[getattr(trigger, "orchestration", None) or name] = (
                    function.get_user_function()
                )
            elif trigger.get_binding_name() == "activityTrigger":
                activity = getattr(trigger, "activity", None) or name
                activities[activity] = function.get_user_function()
                params[activity] = trigger.name
                clients[activity] = tuple(
                    b.name for b in function.get_bindings() if b.get_binding_name() == CLIENT
                )
        _INDEXES[module] = AppIndex(orchestrators, activities, params, functions, clients)
    return _INDEXES[module]


def app_folder(module: str = "function_app") -> Path:
    """The folder of the app module (where its host.json is)."""
    import importlib

    return Path(importlib.import_module(module).__file__ or ".").resolve().parent


# -- activity workers (run in the process pool) -------------------------------------------
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WORKER_MODULE = "function_app"
_WORKER_LOOPS = threading.local()  # one event loop per activity thread (one in a worker)


def start_pool(app_module: str, workers: int, in_process: bool) -> Executor:
    """The executor activities run on: ``workers`` spawned processes, or threads of this
    process when ``in_process``."""
    if in_process:
        return ThreadPoolExecutor(workers, thread_name_prefix="devhost-activity")
    main_thread = threading.current_thread() is threading.main_thread()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_init,
        initargs=(app_module, os.getpid(), main_thread),
    )
    if main_thread:
        # Start every worker now, from this (long-lived) thread: the parent-death signal
        # is tied to the thread that starts a process, and the pool would otherwise start
        # them from the dispatcher thread, which ends before the pool is shut down.
        for _ in range(workers):
            pool.submit(_started)
    return pool


def worker_init(module: str, host_pid: int, parent_death_signal: bool) -> None:
    global _WORKER_MODULE
    _WORKER_MODULE = module
    _die_with_host(host_pid, parent_death_signal)
    # Ctrl-C in a terminal reaches the whole process group: the host stops the pool itself,
    # and an interrupted activity must not be recorded as a failed one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get(QUIET_ENV):
        install_stage_failures_filter()
    index_app(module)


def _die_with_host(host_pid: int, parent_death_signal: bool) -> None:
    """A worker must not outlive its host: a host killed with -9 would otherwise leave its
    workers finishing (and writing) what they had started, while the restarted host runs the
    same activities again. On Linux the kernel kills the worker when its parent dies
    (PR_SET_PDEATHSIG: when the thread that started it ends, so only for workers started by
    the host's main thread); everywhere a watcher thread exits once the parent is gone."""
    if parent_death_signal and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != host_pid:  # the host died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == host_pid:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="devhost-host-watch", daemon=True).start()


def run_activity(
    name: str, input_json: str | None, client_json: str | None = None, module: str | None = None
) -> tuple[bool, str, str]:
    """Run one activity the way the Python worker does: decode the input with the Durable
    ActivityTriggerConverter from a json Datum, give each Durable client parameter the
    client binding's JSON, call the function (an async one on this process's one event
    loop, as the worker runs them: the SDK keeps one HTTP session per process), encode the
    result. Returns (ok, result JSON or reason, details)."""
    from azure.functions.durable_functions import ActivityTriggerConverter as Converter
    from azure.functions.meta import Datum

    index = index_app(module or _WORKER_MODULE)
    function = index.activities.get(name)
    if function is None:
        return False, f"The activity '{name}' is not registered in the app.", ""
    clients = index.activity_clients.get(name, ())
    if clients and client_json is None:
        return (
            False,
            f"The activity '{name}' takes a Durable client ({', '.join(clients)}), and this "
            "host has no HTTP front end to give it one: run it under a DevServer "
            "(python -m devhost start/run do).",
            "",
        )
    try:
        value = Converter.decode(
            Datum(type="json", value=input_json or "null"), trigger_metadata={}
        )
        kwargs = {index.activity_params[name]: value, **dict.fromkeys(clients, client_json)}
        result = function(**kwargs)
        if inspect.isawaitable(result):
            result = _worker_loop().run_until_complete(result)
        return True, Converter.encode(result, expected_type=None).value, ""
    except Exception as exc:  # the extension records any activity exception as TaskFailed
        return False, f"{type(exc).__name__}: {exc}", traceback.format_exc()


def _started() -> None:
    """A no-op, to start a worker process."""


def _worker_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_WORKER_LOOPS, "loop", None)
    if loop is None:
        loop = _WORKER_LOOPS.loop = asyncio.new_event_loop()
    return loop
