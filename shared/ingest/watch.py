"""The dataset watcher's state: debounce and deduplication of upload events (pure data, no
I/O, no clock: the orchestrator passes its own deterministic time in).

Events only say "this dataset changed"; the run itself lists the source prefix, so a lost
or collapsed event can delay a run but never drop a file from it. What the state does:

- a window opens with the first new change; a run is due when no new change came for
  ``quiet_seconds``, or ``max_wait_seconds`` after the window opened, whichever is first;
- a change for a blob already seen in the window with the same ETag, or with an older
  sequencer, is a duplicate: it changes nothing (not even the quiet period);
- the first MAX_TRACKED blobs of a window are tracked for deduplication (by digest, so the
  state stays a few KB); beyond that changes are only counted;
- after every run a change check is owed (``recheck``): events that arrived during the run
  may have been folded into one by the runtime, so the listing decides, not the events;
- ``running`` is the run the watcher started and follows (polled every ``poll_seconds``),
  kept in the state so that it survives a continue-as-new.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.ingest.events import FileChange
from shared.model.layout import digest

MAX_TRACKED = 100
MAX_POLL_SECONDS = 60  # how often a run in progress is polled, at most


def _newer(first: str, second: str) -> bool:
    """Whether sequencer ``first`` comes after ``second`` (fixed-width hex in Azure)."""
    return (len(first), first) > (len(second), second)


@dataclass
class WatchState:
    config: dict[str, Any]  # {"request", "policy", "quiet_seconds", "max_wait_seconds"}
    tracked: dict[str, list[str]] = field(default_factory=dict)  # url key -> [etag key, seq]
    untracked: int = 0
    recheck: bool = False
    first_at: str | None = None
    last_at: str | None = None
    received: int = 0
    duplicates: int = 0
    runs: int = 0
    checks_without_change: int = 0
    last_run: dict[str, Any] | None = None
    last_check: dict[str, Any] | None = None
    failed_listing: str | None = None  # listing digest of the last failed run
    running: dict[str, Any] | None = None  # {"instance_id", "started", "listing_digest"}
    last_start: dict[str, Any] | None = None  # {"at", "started", "busy"?, "error"?}

    @property
    def dataset_id(self) -> str:
        return str(self.config["request"]["dataset_id"])

    @property
    def pending(self) -> int:
        return len(self.tracked) + self.untracked

    @property
    def owed(self) -> bool:
        return self.pending > 0 or self.recheck

    @property
    def poll_seconds(self) -> int:
        """How often the run in progress is polled: the quiet period, at most a minute."""
        return max(1, min(MAX_POLL_SECONDS, int(self.config["quiet_seconds"])))

    def absorb(self, change: FileChange, now: datetime) -> str:
        """Take one change in: "new", "duplicate" or "older" (out of order)."""
        self.received += 1
        url_key = digest(change.url, length=12)
        etag_key = digest(change.etag, length=12)
        seen = self.tracked.get(url_key)
        if seen is not None:
            if seen[0] == etag_key:
                self.duplicates += 1
                return "duplicate"
            if change.sequencer and seen[1] and not _newer(change.sequencer, seen[1]):
                self.duplicates += 1
                return "older"
            self.tracked[url_key] = [etag_key, change.sequencer]
        elif len(self.tracked) < MAX_TRACKED:
            self.tracked[url_key] = [etag_key, change.sequencer]
        else:
            self.untracked += 1
        self._touch(now)
        return "new"

    def _touch(self, now: datetime) -> None:
        stamp = now.isoformat()
        if self.first_at is None:
            self.first_at = stamp
        self.last_at = stamp

    def due(self) -> datetime:
        """When the window's check is due (the window must be open: ``owed``)."""
        assert self.first_at is not None and self.last_at is not None
        quiet = datetime.fromisoformat(self.last_at) + timedelta(
            seconds=self.config["quiet_seconds"]
        )
        longest = datetime.fromisoformat(self.first_at) + timedelta(
            seconds=self.config["max_wait_seconds"]
        )
        return min(quiet, longest)

    def close_window(self, now: datetime, *, recheck: bool) -> None:
        """Forget the window's changes; with ``recheck``, open a new window at ``now`` that
        owes one change check (after a run)."""
        self.tracked = {}
        self.untracked = 0
        self.received = 0
        self.duplicates = 0
        self.first_at = self.last_at = None
        self.recheck = recheck
        if recheck:
            self._touch(now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchState:
        return cls(**data)

    def status(self, phase: str, now: datetime) -> dict[str, Any]:
        """The watcher's custom status: small, whatever the number of events."""
        return {
            "kind": "watcher",
            "dataset_id": self.dataset_id,
            "phase": phase,
            "pending_changes": self.pending,
            "events_in_window": self.received,
            "duplicates_in_window": self.duplicates,
            "recheck": self.recheck,
            "window_opened": self.first_at,
            "last_change": self.last_at,
            "due": self.due().isoformat() if self.owed else None,
            "runs": self.runs,
            "checks_without_change": self.checks_without_change,
            "running": self.running,
            "last_start": self.last_start,
            "last_run": self.last_run,
            "last_check": self.last_check,
            "updated": now.isoformat(),
        }
