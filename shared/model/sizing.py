"""How much memory a memory-heavy activity (combine) may use, from the plan.

On the Elastic Premium plan every instance has a fixed amount of memory (EP1 3.5 GB, EP2 7 GB,
EP3 14 GB), and FUNCTIONS_WORKER_PROCESS_COUNT Python worker processes share it. The host
hands activities to any of its processes, so two combines of two datasets could run side by
side on one instance. So:

- one memory-heavy activity at a time per instance: ``heavy_slot`` is a lock every process of
  the instance can see (a file lock in the instance's local temporary folder; each instance
  has its own), and a second heavy activity waits for it;
- its ceiling is what the instance has, less a margin, less what the other processes need for
  the light activities (validate, generate, gate, register) they run meanwhile:

      ceiling = instance memory x HEADROOM - (processes - 1) x LIGHT_PROCESS_BYTES

A process that runs a heavy activity checks its resident memory against the ceiling as it goes
(shared/io/memory.py) and stops with ``memory_limit`` before the operating system would kill it.
docs/host-settings.md has the table for every plan and process count (bench/sizing.py
measures LIGHT_PROCESS_BYTES).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from shared.model.errors import BadRequest, PipelineError

GB = 1_000_000_000
# Memory per instance of the Elastic Premium plans (learn.microsoft.com, "Premium plan":
# EP1 3.5 GB, EP2 7 GB, EP3 14 GB).
PLAN_MEMORY = {"EP1": 3_500_000_000, "EP2": 7_000_000_000, "EP3": 14_000_000_000}
DEFAULT_PLAN = "EP1"
HEADROOM = 0.85  # of the instance's memory: the host, the runtime and the page cache need some
# A worker process running light activities. bench/sizing.py measured 148 MB at its peak
# (imports included) for a validate and a generate activity of 10 sample files; 400 MB leaves
# room for files with thousands of chunks and for a long-lived process's fragmentation.
LIGHT_PROCESS_BYTES = 400_000_000
MIN_CEILING = 500_000_000  # below this a heavy activity cannot do useful work
HEAVY_LOCK_NAME = "virtual-zarr-pipeline-heavy.lock"


def instance_memory(env: Mapping[str, str]) -> int:
    """The instance's memory: PIPELINE_INSTANCE_MEMORY_BYTES, else the plan named by
    PIPELINE_PLAN (EP1, EP2, EP3), else EP1's (the smallest Premium instance)."""
    explicit = env.get("PIPELINE_INSTANCE_MEMORY_BYTES", "").strip()
    if explicit:
        return _positive(explicit, "PIPELINE_INSTANCE_MEMORY_BYTES")
    plan = env.get("PIPELINE_PLAN", "").strip().upper() or DEFAULT_PLAN
    if plan not in PLAN_MEMORY:
        raise BadRequest(
            f"Setting PIPELINE_PLAN={plan!r}; it must be one of {', '.join(PLAN_MEMORY)} (or set "
            "PIPELINE_INSTANCE_MEMORY_BYTES to the instance's memory in bytes).",
            setting="PIPELINE_PLAN",
        )
    return PLAN_MEMORY[plan]


def worker_processes(env: Mapping[str, str]) -> int:
    """FUNCTIONS_WORKER_PROCESS_COUNT (the Functions host's setting; 1 when unset)."""
    value = env.get("FUNCTIONS_WORKER_PROCESS_COUNT", "").strip()
    return _positive(value, "FUNCTIONS_WORKER_PROCESS_COUNT") if value else 1


def heavy_ceiling(memory: int, processes: int) -> int:
    """The memory ceiling of the one heavy activity of an instance."""
    return max(MIN_CEILING, int(memory * HEADROOM) - (processes - 1) * LIGHT_PROCESS_BYTES)


def memory_limit(env: Mapping[str, str]) -> int:
    """PIPELINE_MEMORY_LIMIT_BYTES when set, else the ceiling derived from the plan."""
    explicit = env.get("PIPELINE_MEMORY_LIMIT_BYTES", "").strip()
    if explicit:
        return _positive(explicit, "PIPELINE_MEMORY_LIMIT_BYTES")
    return heavy_ceiling(instance_memory(env), worker_processes(env))


def _positive(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise BadRequest(f"Setting {name}={value!r} is not a positive whole number.", setting=name)
    return number


class HeavySlotBusy(PipelineError):
    """Another memory-heavy activity held this instance's slot for too long. Retryable: the
    orchestrator runs the activity again after its retry interval, maybe on another instance."""

    code = "instance_busy"
    retryable = True
    default_remedy = (
        "Nothing to do: the activity is retried. If it keeps happening, combine runs of "
        "several datasets overlap on too few instances: raise the plan's maximum "
        "instance count, or PIPELINE_HEAVY_WAIT_SECONDS."
    )


@contextlib.contextmanager
def heavy_slot(stage: str, wait_seconds: float, folder: str | None = None) -> Iterator[None]:
    """Hold this instance's one slot for a memory-heavy activity while inside; wait up to
    ``wait_seconds`` for it, then raise HeavySlotBusy (retryable). The lock is released by
    the operating system if the process dies."""
    path = Path(folder or tempfile.gettempdir()) / HEAVY_LOCK_NAME
    deadline = time.monotonic() + wait_seconds
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HeavySlotBusy(
                        f"The {stage} activity waited {wait_seconds:.0f} s for this instance's "
                        "memory-heavy slot (one combine activity at a time per instance) and "
                        "gave up.",
                        stage=stage,
                        pid=os.getpid(),
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
