"""DurableHost: the Durable extension's part of the host for one app. Its dispatcher thread
runs the episodes that are due (replay.py), hands queued activities to the worker pool
(workers.py) and records their completions; its client API is what the extension's HTTP API
and the Durable client binding call (start, raise an event, terminate, purge, status)."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.durable.instances import finish, new_execution
from devhost.durable.protocol import (
    EVENT_RAISED,
    EXECUTION_TERMINATED,
    LONG_TIMER_INTERVAL,
    MAX_SHORT_TIMER,
    PURGEABLE,
    TERMINAL,
    event,
    loads,
    parse_time,
    utc_now,
)
from devhost.durable.replay import Replayer
from devhost.durable.store import (
    Store,
    append_history,
    claim_work,
    complete_work,
    created_times,
    forget,
    requeue_running,
    send,
    status_of,
)
from devhost.durable.versioning import Versioning
from devhost.durable.workers import app_folder, index_app, run_activity, start_pool

log = logging.getLogger(__name__)


class InstanceExists(Exception):
    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(
            f"An orchestration instance {instance_id!r} with the status {status} already exists."
        )
        self.instance_id, self.status = instance_id, status


class InstanceGone(Exception):
    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"Instance {instance_id!r} is {status}.")
        self.instance_id, self.status = instance_id, status


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
        versioning: Versioning | None = None,
    ) -> None:
        """``in_process`` runs activities on threads of this process instead of worker
        processes: the same orchestrator replay, the same activity functions and converter,
        without the workers' start-up (for tests that drive many short runs). Process-level
        behaviour (a worker that dies, HDF5's per-process lock) needs the default.
        ``versioning``: the orchestration versioning settings; by default the app folder's
        host.json ones (defaultVersion, versionMatchStrategy, versionFailureStrategy)."""
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
        self.versioning = versioning or Versioning.of_app(app_folder(app_module))
        self.store = Store(self.state_dir)
        self._replayer = Replayer(
            self.index.orchestrators,
            self.index.activities,
            max_short_timer,
            long_timer_interval,
            self.versioning,
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: Executor | None = None
        self._running: dict[Future[Any], int] = {}

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> DurableHost:
        with self.store.transaction() as db:
            requeue_running(db)
        self._pool = start_pool(self.app_module, self.workers, self.in_process)
        self._thread = threading.Thread(target=self._loop, name="durable-host", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

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

    # -- client API (what the webhook endpoints call) ----------------------------------
    def start_new(
        self, name: str, instance_id: str, input_json: str | None, version: str | None = None
    ) -> str:
        """Start (or restart a finished) orchestration, stamped with ``version`` or else
        host.json's defaultVersion. Raises InstanceExists while one with this id is pending
        or running."""
        if name not in self.index.orchestrators:
            raise KeyError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                f"function."
            )
        now = utc_now()
        with self.store.transaction() as db:
            status = status_of(db, instance_id)
            if status is not None and status not in TERMINAL:
                raise InstanceExists(instance_id, status)
            new_execution(
                db, instance_id, name, input_json, now, version=self.versioning.stamp(version)
            )
        self._wake.set()
        return instance_id

    def get_status(
        self, instance_id: str, show_history: bool = False, show_input: bool = True
    ) -> dict[str, Any] | None:
        row, history = self.store.status(instance_id, show_history)
        if row is None:
            return None
        name, input_json, status, output, custom, created, updated = row
        body: dict[str, Any] = {
            "name": name,
            "instanceId": instance_id,
            "runtimeStatus": status,
            "input": loads(input_json) if show_input else None,
            "customStatus": loads(custom),
            "output": loads(output),
            "createdTime": created,
            "lastUpdatedTime": updated,
        }
        if history is not None:
            body["historyEvents"] = history
        return body

    def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        with self.store.transaction() as db:
            self._check_running(db, instance_id)
            send(db, instance_id, event(EVENT_RAISED, Name=name, Input=data_json))
        self._wake.set()

    def terminate(self, instance_id: str, reason: str) -> None:
        now = utc_now()
        with self.store.transaction() as db:
            self._check_running(db, instance_id)
            finish(db, instance_id, "Terminated", json.dumps(reason), now)
            append_history(
                db,
                instance_id,
                [event(EXECUTION_TERMINATED, timestamp=now, Input=json.dumps(reason))],
            )

    @staticmethod
    def _check_running(db: sqlite3.Connection, instance_id: str) -> None:
        """Raises KeyError for an unknown instance, InstanceGone for a finished one."""
        status = status_of(db, instance_id)
        if status is None:
            raise KeyError(instance_id)
        if status in TERMINAL:
            raise InstanceGone(instance_id, status)

    def purge(self, instance_id: str) -> int:
        """Delete an instance's status, history and messages, whatever its status (as the
        Azure Storage backend's purge by id does). Returns the number of instances deleted."""
        with self.store.transaction() as db:
            found = status_of(db, instance_id) is not None
            forget(db, instance_id)
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
        with self.store.transaction() as db:
            doomed = [
                instance_id
                for instance_id, status, created in created_times(db)
                if created_from <= parse_time(created) <= until and (not kept or status in kept)
            ]
            for instance_id in doomed:
                forget(db, instance_id)
        return len(doomed)

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        return self.store.history(instance_id)

    def instances(self) -> list[str]:
        return self.store.instance_ids()

    def executions(self) -> list[tuple[str, int, str, float | None]]:
        """Every activity execution ever started: (instance, task id, name, finished)."""
        return self.store.executions()

    def payload_sizes(self) -> dict[str, int]:
        """Largest activity input and output, sub-orchestration input and output, custom
        status and history (bytes), over everything this host has run."""
        return self.store.payload_sizes()

    def history_sizes(self) -> dict[str, int]:
        """Bytes of stored history per instance (what a replay has to read)."""
        return self.store.history_sizes()

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
        due = self.store.next_due()
        if due:
            return max(0.01, min(1.0, due - time.time()))
        return 0.5

    def _run_due_episodes(self) -> bool:
        """One episode for every instance that has due messages (a batch of them)."""
        if self._held.is_set():
            return False
        now = time.time()
        due = self.store.due_instances(now)
        for instance_id in due:
            self._replayer.episode(self.store, instance_id, now)
        return bool(due)

    def _dispatch_work(self) -> bool:
        if self._pool is None:
            return False
        capacity = self.workers * 2 - len(self._running)
        if capacity <= 0:
            return False
        with self.store.transaction() as db:
            rows = claim_work(db, capacity)
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
            with self.store.transaction() as db:
                complete_work(db, work_id, ok, value, details)
        return bool(done)
