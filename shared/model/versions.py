"""Orchestration versions: which release an orchestration instance was started by.

Every orchestration instance carries, for its whole life, the version the Durable extension
stamped on it when it was created: host.json's ``extensions.durableTask.defaultVersion`` of
the release that created it (a client start, a sub-orchestration), kept across
continue-as-new (DTFx TaskOrchestrationDispatcher: ``NewVersion ?? runtimeState.Version``),
so an eternal watcher keeps the version it was first started with. Instances started before
the app had a defaultVersion carry the empty version (``LEGACY``).

The extension only runs an instance on a worker whose defaultVersion is the instance's or
newer (``versionMatchStrategy: CurrentOrOlder``); an older worker leaves it in the queue
(``versionFailureStrategy: Reject``). So today's code must replay every version in
``RELEASED``: where a change would break the replay of an older instance (a new or removed
step, a renamed activity, an input or answer that no longer reads the same), the
orchestrator branches on ``context.version`` with ``at_least`` (docs/versioning.md).

``CURRENT`` is the app's version: pyproject.toml's ``[project] version`` and host.json's
defaultVersion are the same string (tests/test_versioning.py holds all three together).
"""

from __future__ import annotations

import re
from typing import Any

# Instances started before host.json had a defaultVersion: the extension gives them "".
LEGACY = ""
# This release's version: host.json defaultVersion, pyproject.toml [project] version.
CURRENT = "1.0.0"
# Every version an instance still in flight may carry, oldest first: the orchestrators
# replay each of them (tests/fixtures/histories/ holds one recorded history set per release
# before this one; tools/record_histories.py refreshes them).
RELEASED: tuple[str, ...] = (LEGACY, CURRENT)

_DOTNET_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")


def compare_versions(source: str | None, other: str | None) -> int:
    """-1, 0 or 1 as ``source`` is older than, the same as or newer than ``other``, by the
    rules of DTFx ``VersioningSettings.CompareVersions``, which the extension applies to
    ``versionMatchStrategy``: empty (or None) versions are equal and older than any defined
    one; two System.Version strings (2 to 4 numbers) compare by their numbers, a missing
    component being older than 0 ("1.0" < "1.0.0"); anything else compares as text,
    ignoring case (so "10" < "9": use dotted numbers)."""
    left, right = (source or "").strip(), (other or "").strip()
    if not left and not right:
        return 0
    if not left:
        return -1
    if not right:
        return 1
    if _DOTNET_VERSION.match(left) and _DOTNET_VERSION.match(right):
        a, b = _components(left), _components(right)
        return (a > b) - (a < b)
    lower_left, lower_right = left.lower(), right.lower()
    return (lower_left > lower_right) - (lower_left < lower_right)


def _components(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [-1] * (4 - len(parts)))


def at_least(version: str | None, minimum: str) -> bool:
    """Whether an instance of ``version`` was started by release ``minimum`` or a later
    one: the branch an orchestrator takes for the behaviour ``minimum`` introduced."""
    return compare_versions(version, minimum) >= 0


def version_of(context: Any) -> str:
    """The version of the orchestration instance ``context`` runs (the empty string for an
    instance started before versioning)."""
    return str(getattr(context, "version", None) or "")
