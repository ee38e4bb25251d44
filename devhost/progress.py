"""A small progress display for the command line (stderr; no extra dependency).

On a terminal it redraws one bar per stage; otherwise (CI logs, pipes) it prints one line
when a stage starts and one when it ends, so logs stay readable.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

# Set by the command line for the host's worker processes: they install StageFailures too.
QUIET_ENV = "DEVHOST_QUIET_STAGE_FAILURES"


class StageFailures(logging.Filter):
    """Leaves out the log records of a stage's failure (a structured record with an error
    code, WARNING or above): a command that follows a run prints the error itself, with what
    to do, after the progress display. With -v or --debug they are shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = getattr(record, "structured", False) and getattr(record, "code", None)
        return not (failure and record.levelno >= logging.WARNING)


@contextmanager
def quiet_stage_failures(enabled: bool = True) -> Iterator[None]:
    """Inside: StageFailures on this process's log handlers, and the host's worker processes
    (which inherit the environment) asked to do the same. Undone on the way out, so a command
    run inside a longer-lived process (a test, a notebook) leaves its logging as it found it."""
    if not enabled:
        yield
        return
    saved = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1"
    installed = install_stage_failures_filter()
    try:
        yield
    finally:
        for handler, quiet in installed:
            handler.removeFilter(quiet)
        if saved is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = saved


def install_stage_failures_filter() -> list[tuple[logging.Handler, StageFailures]]:
    installed = [(handler, StageFailures()) for handler in logging.getLogger().handlers]
    for handler, quiet in installed:
        handler.addFilter(quiet)
    return installed


WIDTH = 28


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = enabled and self.stream.isatty()
        self.stage = ""
        self.total = 0
        self.done = 0
        self.started = 0.0
        self.remaining: float | None = None  # the run's estimate of time left, when known

    def start(self, stage: str, total: int = 0) -> None:
        self.stage, self.total, self.done, self.started = stage, total, 0, time.perf_counter()
        if self.enabled and not self.interactive:
            left = f"; about {self.remaining:.0f} s left" if self.remaining is not None else ""
            self._write(
                f"{stage:<9} started" + (f" ({total} files)" if total else "") + left + "\n"
            )
        self._draw()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._draw()

    def finish(self, note: str = "", seconds: float | None = None, failed: bool = False) -> float:
        """End the stage; ``seconds`` overrides the time measured here (e.g. the
        orchestrator's own timing of the stage); a ``failed`` stage says so."""
        if seconds is None:
            seconds = time.perf_counter() - self.started
        if self.enabled:
            if self.interactive:
                self._write("\r\033[K")
            bar = self._bar() if self.total else ""
            ended = "FAILED after" if failed else "done in"
            self._write(f"{self.stage:<9} {bar}{ended} {seconds:6.2f} s  {note}\n")
        return seconds

    def _bar(self) -> str:
        filled = int(WIDTH * self.done / self.total) if self.total else WIDTH
        return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} "

    def _draw(self) -> None:
        if self.interactive:
            elapsed = time.perf_counter() - self.started
            bar = self._bar() if self.total else ""
            left = f", about {self.remaining:.0f} s left" if self.remaining is not None else ""
            self._write(f"\r\033[K{self.stage:<9} {bar}{elapsed:6.1f} s{left}")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
