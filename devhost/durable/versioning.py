"""The extension's orchestration versioning, as devhost imitates it.

host.json ``extensions.durableTask``: ``defaultVersion`` (stamped on every instance a client
or an orchestrator creates without a version of its own), ``versionMatchStrategy`` (None,
Strict, CurrentOrOlder; default CurrentOrOlder) and ``versionFailureStrategy`` (Reject,
Fail; default Reject), which the extension hands to DTFx as ``VersioningSettings``.

Before an episode, DTFx ``TaskOrchestrationDispatcher`` compares the instance's version with
the worker's: Strict refuses any other version, CurrentOrOlder a newer one
(``VersioningSettings.CompareVersions(instance, worker) > 0``). A refused episode is never
run: with Reject the work item is abandoned (its messages go back to the control queue,
invisible for 2^n seconds, n the times it was dequeued, at most 600 s: DTFx
``TaskHubQueue.AbandonMessageAsync``); with Fail the orchestration ends Failed with
``VersionMismatch``, "Orchestration version did not comply with Worker Versioning".
Pure: no SQLite here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.model.versions import compare_versions

MATCH_STRATEGIES = ("None", "Strict", "CurrentOrOlder")
FAILURE_STRATEGIES = ("Reject", "Fail")
MISMATCH_REASON = "VersionMismatch"
MISMATCH_MESSAGE = "Orchestration version did not comply with Worker Versioning"
MAX_ABANDON_SECONDS = 600


@dataclass(frozen=True)
class Versioning:
    default_version: str = ""
    match: str = "CurrentOrOlder"
    failure: str = "Reject"

    def __post_init__(self) -> None:
        if self.match not in MATCH_STRATEGIES:
            raise ValueError(
                f"versionMatchStrategy {self.match!r} is not one of {', '.join(MATCH_STRATEGIES)}"
            )
        if self.failure not in FAILURE_STRATEGIES:
            raise ValueError(
                f"versionFailureStrategy {self.failure!r} is not one of "
                f"{', '.join(FAILURE_STRATEGIES)}"
            )

    @classmethod
    def from_host_json(cls, durable: dict[str, Any]) -> Versioning:
        """The settings of host.json's ``extensions.durableTask`` object (enum names are
        read without regard to case, as .NET's configuration binder reads them)."""

        def pick(key: str, choices: tuple[str, ...], default: str) -> str:
            given = str(durable.get(key) or default)
            return next((c for c in choices if c.lower() == given.lower()), given)

        return cls(
            default_version=str(durable.get("defaultVersion") or ""),
            match=pick("versionMatchStrategy", MATCH_STRATEGIES, "CurrentOrOlder"),
            failure=pick("versionFailureStrategy", FAILURE_STRATEGIES, "Reject"),
        )

    @classmethod
    def of_app(cls, app_folder: Path) -> Versioning:
        """The app folder's host.json settings; none (no host.json: a test app) means no
        version is stamped and every instance matches."""
        path = app_folder / "host.json"
        if not path.is_file():
            return cls()
        host = json.loads(path.read_text())
        return cls.from_host_json((host.get("extensions") or {}).get("durableTask") or {})

    def refuses(self, instance_version: str | None) -> bool:
        """Whether this worker may not run an instance of ``instance_version``."""
        if self.match == "Strict":
            return (instance_version or "") != self.default_version
        if self.match == "CurrentOrOlder":
            return compare_versions(instance_version, self.default_version) > 0
        return False

    def stamp(self, requested: str | None) -> str:
        """The version a new instance gets: the one asked for, else defaultVersion."""
        return requested if requested else self.default_version


def abandon_delay(abandons: int) -> float:
    """Seconds an abandoned work item's messages stay invisible: 2^n, n the times they were
    dequeued (the first abandon is the first dequeue), at most 600."""
    return float(min(2 ** max(abandons, 1), MAX_ABANDON_SECONDS))
