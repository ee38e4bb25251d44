"""Blob-created events: what an Event Grid delivery says, and which dataset it concerns.

Event Grid delivers Microsoft.Storage.BlobCreated at least once, possibly duplicated and out
of order. Nothing here trusts an event further than the blob URL it names: the URL goes
through shared.model.locations.parse_location (account, allowed containers, hostile input), and
the file's dataset comes from the registry (shared.ingest.datasets). Every event gets a decision:
routed to a dataset, or ignored with a reason an operator can read in the log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shared.ingest.datasets import DatasetConfig, DatasetRegistry
from shared.model.errors import PipelineError
from shared.model.locations import parse_location, show_value
from shared.model.settings import Settings

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
# On accounts with a hierarchical namespace (ADLS Gen2) a file upload emits CreateFile (an
# empty file) and then FlushWithClose (the content): only the second one means "uploaded".
IGNORED_APIS = ("CreateFile",)


@dataclass(frozen=True)
class FileChange:
    """One uploaded file, as the watcher orchestration receives it (small JSON)."""

    url: str  # canonical location URL (az://container/path or file:///path)
    etag: str
    size: int | None
    sequencer: str  # orders events for one blob (string comparison)
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileChange:
        return cls(
            url=str(data["url"]),
            etag=str(data.get("etag") or ""),
            size=data.get("size"),
            sequencer=str(data.get("sequencer") or ""),
            event_id=str(data.get("event_id") or ""),
        )


@dataclass(frozen=True)
class Decision:
    """Where one event goes: a dataset and the file change, or nowhere and why."""

    event_id: str
    action: str  # "route" or "ignore"
    reason: str  # a code: routed, not_blob_created, not_uploaded, malformed,
    #                outside_storage, unknown_dataset, pattern_mismatch, registry_missing
    message: str
    dataset: DatasetConfig | None = None
    change: FileChange | None = None
    url: str | None = None  # as the event gave it (for the log, also when ignored)

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "stage": "events",
            "event_id": self.event_id,
            "event_action": self.action,
            "event_reason": self.reason,
        }
        if self.dataset is not None:
            fields["dataset"] = self.dataset.dataset_id
        if self.change is not None:
            fields["url"] = self.change.url
        elif self.url:
            fields["url"] = self.url[:300]
        return fields


def unregistered(event_id: str, data: Any, reason: str, message: str) -> Decision:
    """An event that cannot be routed because the registry document is missing
    (``registry_missing``): acknowledged and logged, not delivered again (retrying cannot
    make the document appear; the watcher lists the whole source when the next upload
    reaches it, so this file is not lost)."""
    raw_url = data.get("url") if isinstance(data, dict) else None
    url = raw_url if isinstance(raw_url, str) else None
    return Decision(event_id, "ignore", reason, message, url=url)


def decide(
    *,
    event_id: str,
    event_type: str,
    data: Any,
    registry: DatasetRegistry,
    settings: Settings,
) -> Decision:
    """Route one Event Grid event to its dataset, or say why it is ignored."""

    raw_url = data.get("url") if isinstance(data, dict) else None

    def ignore(reason: str, message: str, dataset: DatasetConfig | None = None) -> Decision:
        url = raw_url if isinstance(raw_url, str) else None
        return Decision(event_id, "ignore", reason, message, dataset, url=url)

    if event_type != BLOB_CREATED:
        return ignore("not_blob_created", f"Event type {show_value(event_type)} is not handled.")
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return ignore("malformed", "The event has no data.url; it is not a BlobCreated event.")
    url = data["url"]
    if data.get("api") in IGNORED_APIS:
        return ignore(
            "not_uploaded",
            f"{show_value(url)}: {data['api']} creates an empty file; the upload's own event "
            "(FlushWithClose) follows.",
        )
    try:
        location = parse_location(url, settings, what="uploaded blob")
    except PipelineError as exc:
        return ignore("outside_storage", f"{show_value(url)} is not in the allowed storage: {exc}")
    dataset = registry.under(location)
    if dataset is None:
        return ignore(
            "unknown_dataset",
            f"{location.url} is below no registered dataset's source prefix "
            f"({len(registry.datasets)} datasets registered).",
        )
    if not dataset.owns(location):
        return ignore(
            "pattern_mismatch",
            f"{location.url} is in dataset {dataset.dataset_id!r}'s prefix but matches none of "
            f"its patterns ({', '.join(dataset.request.patterns)}).",
            dataset,
        )
    size = data.get("contentLength")
    change = FileChange(
        url=location.url,
        etag=str(data.get("eTag") or "").strip('"'),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        sequencer=str(data.get("sequencer") or ""),
        event_id=event_id,
    )
    return Decision(
        event_id,
        "route",
        "routed",
        f"{location.url} belongs to dataset {dataset.dataset_id!r}.",
        dataset,
        change,
    )
