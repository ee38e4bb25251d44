"""A local stand-in for the Durable Functions extension: it drives the real
azure-functions-durable SDK with the host's replay protocol (docs/devhost.md).

For every orchestration step ("episode") it builds the history JSON the extension would
build (the stored events marked IsPlayed, a new OrchestratorStarted, the batch of new
events), calls the registered orchestrator's handle, reads the actions it returns, and
appends the scheduling events with the sequence numbers the extension would give them.
Activities run in a process pool (HDF5 parsing holds a lock inside one process) through the
worker's own ActivityTriggerConverter. Retries, timers (long timers included),
sub-orchestrations, external events and continue-as-new follow the extension's event layout
and the Azure Storage backend's rules: every execution has its own id, and what was sent to
an earlier execution (a completion, a fired timer) is discarded.

Everything is kept in SQLite under the state folder, and every episode and every activity
completion is one transaction: a killed host restarts where it stopped, and an activity
whose completion was recorded is never run again (one whose completion was not is run
again: activities are at-least-once, as in Azure).

Events reach an instance in batches (up to BATCH_SIZE due events per episode, as the
extension dequeues a control queue's messages). Numbering inside a batch follows the order
in which the extension processes the events: the orchestrator is called once per run of
ordinary events, and once more at each event that moves a retry (a failed attempt, a fired
retry timer), after that retry's timer or task has taken its number.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.progress import QUIET_ENV, install_stage_failures_filter
from shared.model.errors import PipelineError

log = logging.getLogger(__name__)

# History event types (DurableTask.Core EventType).
EXECUTION_STARTED, EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_TERMINATED = 0, 1, 2, 3
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = 7, 8, 9
TIMER_CREATED, TIMER_FIRED = 10, 11
ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 12, 13
EVENT_SENT, EVENT_RAISED, CONTINUE_AS_NEW = 14, 15, 16

# Action types in the orchestrator's answer.
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY = 0, 1
CALL_SUB, CALL_SUB_WITH_RETRY = 2, 3
ACTION_CONTINUE_AS_NEW, CREATE_TIMER, WAIT_FOR_EVENT = 4, 5, 6
WHEN_ANY, WHEN_ALL = 11, 12

UPPER_SCHEMA_VERSION, UPPER_SCHEMA_VERSION_NEW = 1, 2
ERROR_MARKER = "$OutOfProcData$:"
TERMINAL = ("Completed", "Failed", "Terminated")
# What a purge by filter may delete (DTFx Azure Storage keeps only these of the statuses given).
PURGEABLE = ("Completed", "Failed", "Terminated", "Canceled")
# The Azure Storage backend's timer limits, as the extension announces them to the SDK
# (AzureStorageDurabilityProvider: MaximumDelayTime 6 days, LongRunningTimerIntervalLength 3
# days). The SDK turns a longer timer into a chain of timers of at most the interval.
MAX_SHORT_TIMER = timedelta(days=6)
LONG_TIMER_INTERVAL = timedelta(days=3)
HTTP_POLL_MILLISECONDS = 30_000  # defaultHttpAsyncRequestSleepTimeMillseconds
BATCH_SIZE = 32  # messages an episode takes at most (controlQueueBatchSize)
SCHEMA_VERSION = 2

# inbox.execution_id: the execution a message was sent to (a completion, a fired timer, a
# start); NULL for what goes to whichever execution is current (raised events, terminate).
SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, input TEXT, status TEXT NOT NULL,
    output TEXT, custom_status TEXT, parent_id TEXT, parent_task INTEGER,
    parent_execution TEXT, execution_id TEXT NOT NULL, created TEXT NOT NULL,
    updated TEXT NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,
    actions_seen INTEGER NOT NULL DEFAULT 0, episodes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, position INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, position));
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, event TEXT NOT NULL,
    due REAL NOT NULL, execution_id TEXT);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL, task_id INTEGER NOT NULL, name TEXT NOT NULL, input TEXT,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retries (
    instance_id TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, input TEXT,
    first_interval_ms INTEGER NOT NULL, max_attempts INTEGER NOT NULL, attempt INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key));
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, task_id INTEGER NOT NULL,
    name TEXT NOT NULL, started REAL NOT NULL, finished REAL, ok INTEGER,
    input_bytes INTEGER, output_bytes INTEGER);
CREATE INDEX IF NOT EXISTS inbox_due ON inbox (due);
CREATE INDEX IF NOT EXISTS work_state ON work (state);
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timespan(span: timedelta) -> str:
    """A duration as .NET's TimeSpan "c" format ([d.]hh:mm:ss[.fffffff]), as the extension
    serialises it (the SDK's parse_timespan_attrib reads it back)."""
    total = int(span.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    ticks = span.microseconds * 10
    if ticks:
        text += f".{ticks:07d}"
    return f"{days}.{text}" if days else text


def new_execution_id() -> str:
    return uuid.uuid4().hex


def event(
    event_type: int, event_id: int = -1, timestamp: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "EventType": event_type,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": iso(timestamp or utc_now()),
        **fields,
    }


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


# -- activity workers (run in the process pool) -------------------------------------------
CLIENT = "durableClient"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WORKER_MODULE = "function_app"
_WORKER_LOOPS = threading.local()  # one event loop per activity thread (one in a worker)


def _worker_init(module: str, host_pid: int, parent_death_signal: bool) -> None:
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


# -- the host -----------------------------------------------------------------------------
class DurableHost:
    """Runs orchestrations of one app. start() launches the dispatcher thread and the pool."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        app_module: str = "function_app",
        workers: int = 2,
        task_hub: str = "VirtualZarrPipeline",
        max_short_timer: timedelta = MAX_SHORT_TIMER,
        long_timer_interval: timedelta = LONG_TIMER_INTERVAL,
        in_process: bool = False,
    ) -> None:
        """``in_process`` runs activities on threads of this process instead of worker
        processes: the same orchestrator replay, the same activity functions and converter,
        without the workers' start-up (for tests that drive many short runs). Process-level
        behaviour (a worker that dies, HDF5's per-process lock) needs the default."""
        self.state_dir = Path(state_dir)
        self.in_process = in_process
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.app_module = app_module
        self.workers = workers
        self.task_hub = task_hub
        self.max_short_timer = max_short_timer
        self.long_timer_interval = long_timer_interval
        # The durableClient binding data for activities that take a client (set by the HTTP
        # front end, DevServer, which serves the API the client talks to).
        self.client_binding: str | None = None
        self.index = index_app(app_module)
        self._db_path = self.state_dir / "durable.sqlite"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self._db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._check_schema()
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: Executor | None = None
        self._running: dict[Future[Any], int] = {}

    def _check_schema(self) -> None:
        """A state folder written by a devhost with another schema: set aside when none of
        its runs is in progress (its history is of no further use), else refused."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        (tables,) = self._db.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'instances'"
        ).fetchone()
        if not tables or version == SCHEMA_VERSION:
            return
        placeholders = ",".join("?" * len(TERMINAL))
        (busy,) = self._db.execute(
            f"SELECT COUNT(*) FROM instances WHERE status NOT IN ({placeholders})", TERMINAL
        ).fetchone()
        self._db.close()
        if busy:
            raise StateOutdated(
                f"The state in {self.state_dir} was written by another version of devhost "
                f"(schema {version}; this one reads {SCHEMA_VERSION}) and has {busy} run(s) in "
                "progress, which this version cannot resume.",
                remedy="Finish them with the devhost version that started them, or delete "
                "that folder (or pass another --state folder) to give them up.",
            )
        aside = self._db_path.with_name(f"durable.schema{version}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{self._db_path}{suffix}")
            if old.exists():
                old.replace(Path(f"{aside}{suffix}"))
        log.warning(
            "devhost state of schema %s set aside as %s (no run in progress)", version, aside
        )
        self._db = sqlite3.connect(self._db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> DurableHost:
        with self._tx() as db:  # activities that were running when the host died run again
            db.execute("UPDATE work SET state = 'queued' WHERE state = 'running'")
        self._pool = self._start_pool()
        self._thread = threading.Thread(target=self._loop, name="durable-host", daemon=True)
        self._thread.start()
        return self

    def _start_pool(self) -> Executor:
        if self.in_process:
            return ThreadPoolExecutor(self.workers, thread_name_prefix="devhost-activity")
        main_thread = threading.current_thread() is threading.main_thread()
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(self.app_module, os.getpid(), main_thread),
        )
        if main_thread:
            # Start every worker now, from this (long-lived) thread: the parent-death signal
            # is tied to the thread that starts a process, and the pool would otherwise start
            # them from the dispatcher thread, which ends before the pool is shut down.
            for _ in range(self.workers):
                pool.submit(_started)
        return pool

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._db.close()

    def __enter__(self) -> DurableHost:
        return self.start()

    @contextmanager
    def holding_episodes(self) -> Iterator[None]:
        """Run no orchestrator episode while inside: activities go on, and the events that
        come due meanwhile reach their instance as one batch afterwards (for tests of what
        happens when events share a batch, as they do on Azure)."""
        self._held.set()
        try:
            yield
        finally:
            self._held.clear()
            self._wake.set()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- client API (what the webhook endpoints call) ----------------------------------
    def start_new(self, name: str, instance_id: str, input_json: str | None) -> str:
        """Start (or restart a finished) orchestration. Raises InstanceExists while one with
        this id is pending or running."""
        if name not in self.index.orchestrators:
            raise KeyError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                f"function."
            )
        now = utc_now()
        with self._tx() as db:
            row = db.execute("SELECT status FROM instances WHERE id = ?", (instance_id,)).fetchone()
            if row is not None and row[0] not in TERMINAL:
                raise InstanceExists(instance_id, row[0])
            self._new_execution(db, instance_id, name, input_json, now)
        self._wake.set()
        return instance_id

    def _new_execution(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        name: str,
        input_json: str | None,
        now: datetime,
        parent: tuple[str, int, str] | None = None,
    ) -> str:
        """A new execution of ``instance_id`` (a new execution id) replacing whatever ran
        under that id before; ``parent`` is (parent id, task id, parent execution id) for a
        sub-orchestration. Messages sent to the replaced execution are discarded when they
        arrive (by execution id); raised events not yet delivered go to the new one, and
        sub-orchestrations the replaced one started are left to run, as on Azure."""
        execution_id = new_execution_id()
        db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
        self._end_execution(db, instance_id)
        parent_id, parent_task, parent_execution = parent or (None, None, None)
        db.execute(
            "INSERT INTO instances (id, name, input, status, parent_id, parent_task, "
            "parent_execution, execution_id, created, updated) VALUES (?, ?, ?, 'Pending', ?, ?, "
            "?, ?, ?, ?)",
            (
                instance_id,
                name,
                input_json,
                parent_id,
                parent_task,
                parent_execution,
                execution_id,
                iso(now),
                iso(now),
            ),
        )
        started = _execution_started(instance_id, execution_id, name, input_json)
        if parent_id is not None:
            started["ParentInstance"] = {
                "OrchestrationInstance": {"InstanceId": parent_id, "ExecutionId": parent_execution},
                "TaskScheduleId": parent_task,
            }
        self._send_first(db, instance_id, started, execution_id)
        return execution_id

    def get_status(
        self, instance_id: str, show_history: bool = False, show_input: bool = True
    ) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, input, status, output, custom_status, created, updated FROM "
                "instances WHERE id = ?",
                (instance_id,),
            ).fetchone()
            history = self._history(instance_id) if show_history and row else None
        if row is None:
            return None
        name, input_json, status, output, custom, created, updated = row
        body: dict[str, Any] = {
            "name": name,
            "instanceId": instance_id,
            "runtimeStatus": status,
            "input": _loads(input_json) if show_input else None,
            "customStatus": _loads(custom),
            "output": _loads(output),
            "createdTime": created,
            "lastUpdatedTime": updated,
        }
        if history is not None:
            body["historyEvents"] = history
        return body

    def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        with self._tx() as db:
            row = db.execute("SELECT status FROM instances WHERE id = ?", (instance_id,)).fetchone()
            if row is None:
                raise KeyError(instance_id)
            if row[0] in TERMINAL:
                raise InstanceGone(instance_id, row[0])
            self._send(db, instance_id, event(EVENT_RAISED, Name=name, Input=data_json))
        self._wake.set()

    def terminate(self, instance_id: str, reason: str) -> None:
        now = utc_now()
        with self._tx() as db:
            row = db.execute("SELECT status FROM instances WHERE id = ?", (instance_id,)).fetchone()
            if row is None:
                raise KeyError(instance_id)
            if row[0] in TERMINAL:
                raise InstanceGone(instance_id, row[0])
            self._finish(db, instance_id, "Terminated", json.dumps(reason), now)
            self._append(
                db,
                instance_id,
                [event(EXECUTION_TERMINATED, timestamp=now, Input=json.dumps(reason))],
            )

    def purge(self, instance_id: str) -> int:
        """Delete an instance's status, history and messages, whatever its status (as the
        Azure Storage backend's purge by id does). Returns the number of instances deleted."""
        with self._tx() as db:
            found = db.execute("SELECT 1 FROM instances WHERE id = ?", (instance_id,)).fetchone()
            self._forget(db, instance_id)
        return 1 if found else 0

    def purge_by(
        self,
        created_from: datetime,
        created_to: datetime | None = None,
        statuses: list[str] | None = None,
    ) -> int:
        """Purge every instance created in [created_from, created_to] with one of
        ``statuses``. As DTFx's Azure Storage backend does, only Completed, Failed,
        Terminated and Canceled of the statuses given count, and when none is left (no
        status given, or only running ones) the status is not a filter at all: every
        instance in the time range is purged, running ones included. Pass terminal statuses."""
        until = created_to or utc_now()
        kept = [s for s in statuses if s in PURGEABLE] if statuses is not None else []
        with self._tx() as db:
            rows = db.execute("SELECT id, status, created FROM instances").fetchall()
            doomed = [
                instance_id
                for instance_id, status, created in rows
                if created_from <= _parse_time(created) <= until and (not kept or status in kept)
            ]
            for instance_id in doomed:
                self._forget(db, instance_id)
        return len(doomed)

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._history(instance_id)

    def instances(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM instances ORDER BY created")]

    def executions(self) -> list[tuple[str, int, str, float | None]]:
        """Every activity execution ever started: (instance, task id, name, finished)."""
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT instance_id, task_id, name, finished FROM executions ORDER BY id"
                )
            )

    def payload_sizes(self) -> dict[str, int]:
        """Largest activity input and output, sub-orchestration input and output, custom
        status and history (bytes), over everything this host has run."""
        with self._lock:
            db = self._db
            (activity_in, activity_out) = db.execute(
                "SELECT COALESCE(MAX(input_bytes), 0), COALESCE(MAX(output_bytes), 0) "
                "FROM executions"
            ).fetchone()
            (custom,) = db.execute(
                "SELECT COALESCE(MAX(LENGTH(custom_status)), 0) FROM instances"
            ).fetchone()
            sub_in = sub_out = 0
            for (text,) in db.execute("SELECT event FROM history"):
                found = json.loads(text)
                if found["EventType"] == SUB_CREATED:
                    sub_in = max(sub_in, len((found.get("Input") or "").encode()))
                elif found["EventType"] == SUB_COMPLETED:
                    sub_out = max(sub_out, len((found.get("Result") or "").encode()))
            (history,) = db.execute(
                "SELECT COALESCE(MAX(total), 0) FROM (SELECT SUM(LENGTH(event)) AS total "
                "FROM history GROUP BY instance_id)"
            ).fetchone()
            (events,) = db.execute(
                "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM history "
                "GROUP BY instance_id)"
            ).fetchone()
        return {
            "activity_input": int(activity_in),
            "activity_output": int(activity_out),
            "sub_orchestration_input": sub_in,
            "sub_orchestration_output": sub_out,
            "custom_status": int(custom),
            "history_bytes": int(history),
            "history_events": int(events),
        }

    def wait_for(
        self, instance_id: str, timeout: float = 600.0, poll: float = 0.1
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_status(instance_id)
            if status is not None and status["runtimeStatus"] in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"{instance_id} did not finish within {timeout} s: {status}")
            time.sleep(poll)

    # -- storage helpers ---------------------------------------------------------------
    def _history(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY position", (instance_id,)
        )
        return [json.loads(r[0]) for r in rows]

    def _append(
        self, db: sqlite3.Connection, instance_id: str, events: list[dict[str, Any]]
    ) -> None:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM history WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        db.executemany(
            "INSERT INTO history (instance_id, position, event) VALUES (?, ?, ?)",
            [(instance_id, count + i, json.dumps(e)) for i, e in enumerate(events)],
        )

    def _send(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        new_event: dict[str, Any],
        due: float = 0.0,
        execution_id: str | None = None,
    ) -> None:
        """Queue a message for an instance: for one execution of it (``execution_id``: a
        completion, a fired timer), or for whichever is current (None: a raised event)."""
        db.execute(
            "INSERT INTO inbox (instance_id, event, due, execution_id) VALUES (?, ?, ?, ?)",
            (instance_id, json.dumps(new_event), due, execution_id),
        )

    def _send_first(
        self, db: sqlite3.Connection, instance_id: str, started: dict[str, Any], execution_id: str
    ) -> None:
        """Queue an ExecutionStarted ahead of every waiting message (the extension puts the
        start of an execution first in its batch: DTFx EnsureExecutionStartedIsFirst)."""
        db.execute(
            "INSERT INTO inbox (id, instance_id, event, due, execution_id) VALUES ((SELECT "
            "COALESCE(MIN(id), 1) - 1 FROM inbox), ?, ?, 0, ?)",
            (instance_id, json.dumps(started), execution_id),
        )

    def _forget(self, db: sqlite3.Connection, instance_id: str) -> None:
        """Delete everything of one instance (purge). Its sub-orchestrations stay."""
        for table, column in (
            ("instances", "id"),
            ("history", "instance_id"),
            ("inbox", "instance_id"),
            ("work", "instance_id"),
            ("retries", "instance_id"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (instance_id,))

    def _finish(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        status: str,
        output_json: str | None,
        now: datetime,
    ) -> None:
        db.execute(
            "UPDATE instances SET status = ?, output = ?, updated = ? WHERE id = ?",
            (status, output_json, iso(now), instance_id),
        )
        db.execute("DELETE FROM work WHERE instance_id = ? AND state = 'queued'", (instance_id,))
        parent = db.execute(
            "SELECT parent_id, parent_task, parent_execution FROM instances WHERE id = ?",
            (instance_id,),
        ).fetchone()
        if parent and parent[0]:
            if status == "Completed":
                done = event(SUB_COMPLETED, TaskScheduledId=parent[1], Result=output_json)
            else:
                done = event(
                    SUB_FAILED,
                    TaskScheduledId=parent[1],
                    Reason=_loads(output_json) if output_json else status,
                    Details=None,
                )
            self._send(db, parent[0], done, execution_id=parent[2])

    # -- the dispatcher ------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._run_due_episodes()
                busy = self._dispatch_work() or busy
                busy = self._collect_finished() or busy
            except Exception:  # keep the host alive; the failure is in the log
                log.exception("durable host loop failed")
                busy = False
            if not busy:
                self._wake.wait(timeout=self._idle_timeout())
                self._wake.clear()

    def _idle_timeout(self) -> float:
        if self._running:
            return 0.05
        with self._lock:
            row = self._db.execute("SELECT MIN(due) FROM inbox").fetchone()
        if row and row[0]:
            return max(0.01, min(1.0, row[0] - time.time()))
        return 0.5

    def _run_due_episodes(self) -> bool:
        """One episode for every instance that has due messages (a batch of them)."""
        if self._held.is_set():
            return False
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT instance_id FROM inbox WHERE due <= ? GROUP BY instance_id "
                "ORDER BY MIN(id)",
                (now,),
            ).fetchall()
        for (instance_id,) in rows:
            self._episode(instance_id, now)
        return bool(rows)

    def _episode(self, instance_id: str, due_by: float) -> None:
        now = utc_now()
        with self._tx() as db:
            row = db.execute(
                "SELECT name, input, status, parent_id, next_seq, actions_seen, execution_id "
                "FROM instances WHERE id = ?",
                (instance_id,),
            ).fetchone()
            batch = db.execute(
                "SELECT id, event, execution_id FROM inbox WHERE instance_id = ? AND due <= ? "
                "ORDER BY id LIMIT ?",
                (instance_id, due_by, BATCH_SIZE),
            ).fetchall()
            db.executemany("DELETE FROM inbox WHERE id = ?", [(b[0],) for b in batch])
            if row is None:
                return  # no such instance (purged): its messages are dropped
            name, input_json, status, parent_id, next_seq, actions_seen, execution_id = row
            if status in TERMINAL:
                return  # e.g. an activity that finished after the instance failed
            # Messages for an earlier execution (before continue-as-new, or of an execution
            # that a new start replaced) are discarded, as DTFx does by execution id.
            events = [json.loads(e) for _, e, target in batch if target in (None, execution_id)]
            if len(events) < len(batch):
                log.debug("%s: %d stale message(s) dropped", instance_id, len(batch) - len(events))
            if not events:
                return
            stored = self._history(instance_id)
            for old in stored:
                old["IsPlayed"] = True
            started = event(ORCHESTRATOR_STARTED, timestamp=now)
            sequence = _Sequence(next_seq)
            scheduled: list[dict[str, Any]] = []
            delivered: list[dict[str, Any]] = []
            state: dict[str, Any] = {}
            error: str | None = None
            continue_as_new: dict[str, Any] | None = None
            for segment in self._segments(db, instance_id, events):
                self._retry_bookkeeping(db, instance_id, segment[0], sequence, scheduled, now)
                delivered += segment
                context = {
                    "history": [*stored, started, *delivered],
                    "instanceId": instance_id,
                    "isReplaying": bool(stored),
                    "parentInstanceId": parent_id,
                    "input": input_json,
                    "upperSchemaVersion": UPPER_SCHEMA_VERSION,
                    "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
                    "maximumShortTimerDuration": timespan(self.max_short_timer),
                    "longRunningTimerIntervalDuration": timespan(self.long_timer_interval),
                    "defaultHttpAsyncRequestSleepTimeMillseconds": HTTP_POLL_MILLISECONDS,
                }
                state, error = self._call_orchestrator(name, context)
                error = error or _custom_status_refused(state.get("customStatus"))
                actions = state.get("actions") or [[]]
                actions = actions[0] if actions and isinstance(actions[0], list) else actions
                for action in actions[actions_seen:]:
                    continue_as_new = (
                        self._schedule(
                            db, instance_id, execution_id, action, sequence, scheduled, now
                        )
                        or continue_as_new
                    )
                actions_seen = len(actions)
                if error is not None or state.get("isDone") or continue_as_new is not None:
                    break  # the rest of the batch is dropped with this execution
            custom = state.get("customStatus")
            db.execute(
                "UPDATE instances SET status = 'Running', next_seq = ?, actions_seen = ?, "
                "custom_status = ?, updated = ?, episodes = episodes + 1 WHERE id = ?",
                (
                    sequence.next,
                    actions_seen,
                    json.dumps(custom) if custom is not None else None,
                    iso(now),
                    instance_id,
                ),
            )
            completed_events: list[dict[str, Any]] = []
            if error is not None:
                completed_events.append(
                    event(EXECUTION_FAILED, timestamp=now, Reason=error, Details=None)
                )
            elif state.get("isDone") and continue_as_new is None:
                output = json.dumps(state.get("output"))
                completed_events.append(event(EXECUTION_COMPLETED, timestamp=now, Result=output))
            self._append(
                db,
                instance_id,
                [
                    started,
                    *events,
                    *scheduled,
                    event(ORCHESTRATOR_COMPLETED, timestamp=now),
                    *completed_events,
                ],
            )
            if error is not None:
                self._finish(db, instance_id, "Failed", json.dumps(error), now)
            elif continue_as_new is not None:
                self._continue_as_new(db, instance_id, name, continue_as_new.get("input"), now)
            elif state.get("isDone"):
                self._finish(db, instance_id, "Completed", json.dumps(state.get("output")), now)

    def _segments(
        self, db: sqlite3.Connection, instance_id: str, events: list[dict[str, Any]]
    ) -> Iterator[list[dict[str, Any]]]:
        """The batch cut where the extension's numbering needs it: a run of ordinary events
        is one orchestrator call; an event that moves a retry (a failed attempt of a task
        with retry options, the firing of a retry timer) starts a segment of its own, whose
        retry timer or rescheduled task takes its number before the actions that follow."""
        run: list[dict[str, Any]] = []
        for new_event in events:
            if self._moves_retry(db, instance_id, new_event) and run:
                yield run
                run = []
            run.append(new_event)
        if run:
            yield run

    def _moves_retry(
        self, db: sqlite3.Connection, instance_id: str, new_event: dict[str, Any]
    ) -> bool:
        kind = new_event["EventType"]
        if kind == TASK_FAILED:
            return self._retry(db, instance_id, f"task:{new_event['TaskScheduledId']}") is not None
        if kind == TIMER_FIRED:
            return self._retry(db, instance_id, f"timer:{new_event['TimerId']}") is not None
        return False

    def _call_orchestrator(
        self, name: str, context: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        handle = self.index.orchestrators[name]
        try:
            return json.loads(handle(json.dumps(context))), None
        except Exception as exc:
            text = str(exc)
            if ERROR_MARKER in text:
                message, _, state_json = text.partition(ERROR_MARKER)
                state = json.loads(state_json)
                return state, state.get("error") or message.strip()
            return {"actions": [[]], "isDone": False}, f"{type(exc).__name__}: {exc}"

    def _retry_bookkeeping(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        new_event: dict[str, Any],
        sequence: _Sequence,
        scheduled: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        """A failed task with retry options gets a timer (next number); when that timer fires
        and attempts remain, the task is scheduled again (next number). After the last failed
        attempt there is one more timer, which fires at once, then the task fails (DTFx
        RetryInterceptor: "a timer that fires immediately", kept for replay compatibility)."""
        kind = new_event["EventType"]
        if kind == TASK_FAILED:
            retry = self._retry(db, instance_id, f"task:{new_event['TaskScheduledId']}")
            if retry is None:
                return
            last_attempt = retry[4] >= retry[3]
            fire_at = now if last_attempt else now + timedelta(milliseconds=retry[2])
            timer_id = self._create_timer(db, instance_id, sequence, scheduled, fire_at, now)
            db.execute(
                "INSERT OR REPLACE INTO retries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (instance_id, f"timer:{timer_id}", *retry),
            )
        elif kind == TIMER_FIRED:
            retry = self._retry(db, instance_id, f"timer:{new_event['TimerId']}")
            if retry is None or retry[4] >= retry[3]:
                return
            name, input_json, interval, attempts, attempt = retry
            task_id = sequence.take()
            scheduled.append(event(TASK_SCHEDULED, task_id, now, Name=name, Input=input_json))
            self._queue_activity(db, instance_id, task_id, name, input_json)
            db.execute(
                "INSERT OR REPLACE INTO retries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (instance_id, f"task:{task_id}", name, input_json, interval, attempts, attempt + 1),
            )

    @staticmethod
    def _retry(db: sqlite3.Connection, instance_id: str, key: str) -> tuple[Any, ...] | None:
        """(name, input, first interval ms, max attempts, attempt) of a retried task or timer."""
        row = db.execute(
            "SELECT name, input, first_interval_ms, max_attempts, attempt FROM retries "
            "WHERE instance_id = ? AND key = ?",
            (instance_id, key),
        ).fetchone()
        return tuple(row) if row is not None else None

    def _create_timer(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        sequence: _Sequence,
        scheduled: list[dict[str, Any]],
        fire_at: datetime,
        now: datetime,
    ) -> int:
        """TimerCreated (next number) now, and its TimerFired due at ``fire_at``, for the
        instance's current execution."""
        timer_id = sequence.take()
        scheduled.append(event(TIMER_CREATED, timer_id, now, FireAt=iso(fire_at)))
        fired = event(TIMER_FIRED, timestamp=fire_at, TimerId=timer_id, FireAt=iso(fire_at))
        self._send(
            db,
            instance_id,
            fired,
            due=fire_at.timestamp(),
            execution_id=self._execution(db, instance_id),
        )
        return timer_id

    @staticmethod
    def _execution(db: sqlite3.Connection, instance_id: str) -> str | None:
        row = db.execute(
            "SELECT execution_id FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
        return row[0] if row else None

    def _schedule(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        execution_id: str,
        action: dict[str, Any],
        sequence: _Sequence,
        scheduled: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any] | None:
        """Turn one new action into history events and work; returns a continue-as-new action."""
        kind = action["actionType"]
        if kind in (WHEN_ALL, WHEN_ANY):
            found = None
            for child in action.get("compoundActions", []):
                found = (
                    self._schedule(db, instance_id, execution_id, child, sequence, scheduled, now)
                    or found
                )
            return found
        if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            task_id = sequence.take()
            name, input_json = action["functionName"], action.get("input")
            if name not in self.index.activities:
                scheduled.append(event(TASK_SCHEDULED, task_id, now, Name=name, Input=input_json))
                self._send(
                    db,
                    instance_id,
                    event(
                        TASK_FAILED,
                        TaskScheduledId=task_id,
                        Reason=f"The function '{name}' doesn't exist, is disabled, or is not "
                        "an activity function.",
                        Details=None,
                    ),
                    execution_id=execution_id,
                )
                return None
            scheduled.append(event(TASK_SCHEDULED, task_id, now, Name=name, Input=input_json))
            self._queue_activity(db, instance_id, task_id, name, input_json)
            if kind == CALL_ACTIVITY_WITH_RETRY:
                options = action["retryOptions"]
                db.execute(
                    "INSERT OR REPLACE INTO retries VALUES (?, ?, ?, ?, ?, ?, 1)",
                    (
                        instance_id,
                        f"task:{task_id}",
                        name,
                        input_json,
                        int(options["firstRetryIntervalInMilliseconds"]),
                        int(options["maxNumberOfAttempts"]),
                    ),
                )
            return None
        if kind in (CALL_SUB, CALL_SUB_WITH_RETRY):
            if kind == CALL_SUB_WITH_RETRY:
                raise NotImplementedError(
                    "devhost does not implement sub-orchestrations with retry yet"
                )
            task_id = sequence.take()
            # An unnamed child is "<parent execution id>:<n>", as DTFx names it
            # (TaskOrchestrationContext.CreateSubOrchestrationInstanceCore).
            child_id = action.get("instanceId") or f"{execution_id}:{task_id}"
            name, input_json = action["functionName"], action.get("input")
            scheduled.append(
                event(SUB_CREATED, task_id, now, Name=name, Input=input_json, InstanceId=child_id)
            )
            # No de-duplication: the Azure Storage backend de-duplicates only client starts,
            # so a child whose id is in use starts a new execution that replaces the running
            # one (whose own parent then never hears back). Name children uniquely.
            self._new_execution(
                db, child_id, name, input_json, now, parent=(instance_id, task_id, execution_id)
            )
            return None
        if kind == CREATE_TIMER:
            self._create_timer(
                db, instance_id, sequence, scheduled, _parse_time(action["fireAt"]), now
            )
            return None
        if kind == WAIT_FOR_EVENT:
            return None  # no number; EventRaised is matched by name and kept until awaited
        if kind == ACTION_CONTINUE_AS_NEW:
            return action
        raise NotImplementedError(f"devhost does not implement action type {kind}: {action}")

    def _continue_as_new(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        name: str,
        input_json: str | None,
        now: datetime,
    ) -> None:
        """Start the instance again, as a new execution with a fresh history and the new
        input. What the old execution was sent (completions of activities still running,
        timers) is discarded when it arrives; events raised after the batch that ended the
        old execution go to the new one; events of that batch, and events the old execution
        had received but not consumed, are gone (the out-of-process shim continues as new
        without preserveUnprocessedEvents)."""
        execution_id = new_execution_id()
        self._end_execution(db, instance_id)
        db.execute(
            "UPDATE instances SET input = ?, status = 'Running', next_seq = 0, actions_seen = 0, "
            "execution_id = ?, updated = ? WHERE id = ?",
            (input_json, execution_id, iso(now), instance_id),
        )
        first = _execution_started(instance_id, execution_id, name, input_json)
        self._send_first(db, instance_id, first, execution_id)

    @staticmethod
    def _end_execution(db: sqlite3.Connection, instance_id: str) -> None:
        """Forget the current execution's history and pending work; messages already sent to
        it are discarded by execution id (queued ones here, running activities' when they
        finish). Raised events waiting for the instance stay, for the next execution."""
        db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
        db.execute("DELETE FROM retries WHERE instance_id = ?", (instance_id,))
        db.execute("DELETE FROM work WHERE instance_id = ? AND state = 'queued'", (instance_id,))
        db.execute(
            "DELETE FROM inbox WHERE instance_id = ? AND execution_id IS NOT NULL", (instance_id,)
        )

    # -- activities --------------------------------------------------------------------
    def _queue_activity(
        self,
        db: sqlite3.Connection,
        instance_id: str,
        task_id: int,
        name: str,
        input_json: str | None,
    ) -> None:
        db.execute(
            "INSERT INTO work (instance_id, execution_id, task_id, name, input, state) VALUES "
            "(?, (SELECT execution_id FROM instances WHERE id = ?), ?, ?, ?, 'queued')",
            (instance_id, instance_id, task_id, name, input_json),
        )

    def _dispatch_work(self) -> bool:
        if self._pool is None:
            return False
        capacity = self.workers * 2 - len(self._running)
        if capacity <= 0:
            return False
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, instance_id, task_id, name, input FROM work WHERE state = 'queued' "
                "ORDER BY id LIMIT ?",
                (capacity,),
            ).fetchall()
            for work_id, instance_id, task_id, name, input_json in rows:
                db.execute("UPDATE work SET state = 'running' WHERE id = ?", (work_id,))
                db.execute(
                    "INSERT INTO executions (instance_id, task_id, name, started, input_bytes) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (instance_id, task_id, name, time.time(), len((input_json or "").encode())),
                )
        for work_id, _instance_id, _task_id, name, input_json in rows:
            future = self._pool.submit(
                run_activity, name, input_json, self.client_binding, self.app_module
            )
            future.add_done_callback(lambda _f: self._wake.set())
            self._running[future] = work_id
        return bool(rows)

    def _collect_finished(self) -> bool:
        if not self._running:
            return False
        done, _ = wait(list(self._running), timeout=0, return_when=FIRST_COMPLETED)
        for future in sorted(done, key=lambda f: self._running[f]):  # completion order: by task
            work_id = self._running.pop(future)
            if self._stop.is_set():
                continue  # stopping: left 'running', so it runs again at the next start
            try:
                ok, value, details = future.result()
            except BaseException as exc:  # the worker process died: the task failed (retry applies)
                ok, value, details = (
                    False,
                    f"The activity worker process failed: {exc}",
                    traceback.format_exc(),
                )
            with self._tx() as db:
                row = db.execute(
                    "SELECT instance_id, task_id, execution_id FROM work WHERE id = ?", (work_id,)
                ).fetchone()
                if row is None:
                    continue  # the instance was purged while the activity ran
                instance_id, task_id, execution_id = row
                db.execute("DELETE FROM work WHERE id = ?", (work_id,))
                db.execute(
                    "UPDATE executions SET finished = ?, ok = ?, output_bytes = ? WHERE id = "
                    "(SELECT MAX(id) FROM executions WHERE instance_id = ? AND task_id = ?)",
                    (time.time(), int(ok), len(value.encode()) if ok else 0, instance_id, task_id),
                )
                if ok:
                    done = event(TASK_COMPLETED, TaskScheduledId=task_id, Result=value)
                else:
                    done = event(
                        TASK_FAILED, TaskScheduledId=task_id, Reason=value, Details=details
                    )
                self._send(db, instance_id, done, execution_id=execution_id)
        return bool(done)

    def history_sizes(self) -> dict[str, int]:
        """Bytes of stored history per instance (what a replay has to read)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT instance_id, SUM(LENGTH(event)) FROM history GROUP BY instance_id"
            )
            return {r[0]: int(r[1]) for r in rows}


class _Sequence:
    """The extension's per-instance counter for TaskScheduled, SubOrchestrationInstanceCreated
    and TimerCreated, in the order it processes them."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self) -> int:
        value = self.next
        self.next += 1
        return value


class InstanceExists(Exception):
    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(
            f"An orchestration instance {instance_id!r} with the status {status} already exists."
        )
        self.instance_id, self.status = instance_id, status


class StateOutdated(PipelineError):
    """The state folder was written by a devhost with another schema, with runs in progress."""

    code = "devhost_state_outdated"


class InstanceGone(Exception):
    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"Instance {instance_id!r} is {status}.")
        self.instance_id, self.status = instance_id, status


def _execution_started(
    instance_id: str, execution_id: str, name: str, input_json: str | None
) -> dict[str, Any]:
    return event(
        EXECUTION_STARTED,
        Name=name,
        Input=input_json,
        Version="",
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
    )


def _custom_status_refused(custom: Any) -> str | None:
    """The extension's refusal of a custom status over its limit (MessagePayloadDataConverter
    .Serialize, 16 KB: it fails when floor(UTF-16 bytes of the compact JSON / 1024) > 16),
    which fails the orchestration; None when it fits."""
    if custom is None:
        return None
    text = json.dumps(custom, separators=(",", ":"), ensure_ascii=False)
    size_kb = len(text.encode("utf-16-le")) // 1024
    if size_kb <= 16:
        return None
    return (
        "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. The current "
        f"payload size is {size_kb} KB."
    )


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parse_time(text: str) -> datetime:
    from dateutil.parser import isoparse

    moment = isoparse(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
