"""Event Grid's side of event-driven ingestion, locally: Microsoft.Storage.BlobCreated events
(Event Grid schema) for files that are already there, built as Azure Storage emits them,
and posted to a running app's Event Grid webhook (`python -m devhost start`, or `func start`).

    python -m devhost events SOURCE [--url http://127.0.0.1:7071] [--function blob_created]
                                    [--pattern GLOB ...] [--shuffle] [--repeat N] [--seed S]

Event Grid delivers at least once and in no guaranteed order, so an app must cope with both:
--repeat posts every event N times (each copy with a new id and the same data) and
--shuffle mixes the order (repeatably with --seed). A blob's events order by
data.sequencer, as in Azure: here it grows with the file's last-modified time.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import PipelineError
from shared.model.locations import Location, http_url, parse_location
from shared.model.request import DEFAULT_PATTERNS
from shared.model.settings import Settings
from shared.stages.scan import list_source

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_URL = "http://127.0.0.1:7071"
DEFAULT_FUNCTION = "blob_created"
BATCH_SIZE = 50
POST_TIMEOUT = 300.0  # seconds for one batch: the app calls its function once per event
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
CONTENT_TYPE = "application/x-netcdf"
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/devhost"
    "/providers/Microsoft.Storage/storageAccounts/{account}"
)
LOCAL_ACCOUNT = "local"  # the storage account named in the topic of local files' events


class EventDeliveryFailed(PipelineError):
    """The app did not take a batch of events: not reachable, or it did not answer 2xx."""

    code = "event_delivery_failed"
    retryable = True
    default_remedy = (
        "Start the app (python -m devhost start), or pass --url with the address it serves."
    )


# -- building events ----------------------------------------------------------------------
def blob_created_events(
    source: str, settings: Settings, storage: Storage, patterns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One BlobCreated event per file of the source (a folder, file or blob prefix) that
    matches the patterns (default: the pipeline's, *.nc, *.nc4, *.h5, *.hdf5), in the
    order of their URLs. A source that does not exist or holds no matching file raises the
    pipeline's own error, as a run on it would."""
    location = parse_location(source, settings, what="source")
    files = list_source(location, tuple(patterns or DEFAULT_PATTERNS), storage, sys.maxsize)
    if location.is_local:
        account = LOCAL_ACCOUNT
    else:
        assert settings.account is not None  # parse_location refuses blobs without one
        account = settings.account.name
    topic = TOPIC.format(account=account)
    return [_blob_created(info, _file(info, location), topic, settings) for info in files]


def _file(info: ObjectInfo, source: Location) -> Location:
    """The listed file as a Location (the listing names it by its canonical URL)."""
    if source.is_local:
        return Location("local", "", info.url.removeprefix("file://"))
    return Location("blob", source.container, info.url.removeprefix(f"az://{source.container}/"))


def _blob_created(
    info: ObjectInfo, location: Location, topic: str, settings: Settings
) -> dict[str, Any]:
    modified = _last_modified(info)
    if location.is_local:
        subject = f"/local/files{location.path}"
    else:
        subject = f"/blobServices/default/containers/{location.container}/blobs/{location.path}"
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": subject,
        "eventType": BLOB_CREATED,
        "eventTime": modified.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {
            "api": "PutBlob",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": info.etag,
            "contentType": CONTENT_TYPE,
            "contentLength": info.size,
            "blobType": "BlockBlob",
            "url": http_url(location, settings),
            "sequencer": sequencer(modified),
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def _last_modified(info: ObjectInfo) -> datetime:
    """When the file was written (UTC); now when the listing gave no time (no store this
    pipeline reads does that, but an event must carry a time)."""
    if not info.last_modified:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(info.last_modified)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def sequencer(modified: datetime) -> str:
    """Azure's data.sequencer: 32 hex digits that order the events of one blob when compared
    as strings. Here the microseconds since 1970 of the write, so a later overwrite has a
    larger one (two writes within the store's time resolution, one second on Azurite, get
    the same one)."""
    micros = round(modified.timestamp() * 1_000_000)
    return f"{micros:032x}"


def as_delivered(
    events: Sequence[dict[str, Any]],
    *,
    repeat: int = 1,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """The events as Event Grid may deliver them: each `repeat` times (the copies with new
    ids and the same data, sequencer included), and with `shuffle` in a random order
    (seeded: the same seed gives the same order)."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    delivered = [
        event if n == 0 else {**copy.deepcopy(event), "id": str(uuid.uuid4())}
        for event in events
        for n in range(repeat)
    ]
    if shuffle:
        random.Random(seed).shuffle(delivered)
    return delivered


# -- posting them -------------------------------------------------------------------------
def webhook_url(base_url: str, function: str = DEFAULT_FUNCTION) -> str:
    """The host's Event Grid webhook for one function (what a subscription delivers to)."""
    return f"{base_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName={quote(function)}"


def post_events(
    base_url: str,
    events: Sequence[dict[str, Any]],
    function: str = DEFAULT_FUNCTION,
    batch_size: int = BATCH_SIZE,
    *,
    on_batch: Callable[[int, int, int], object] | None = None,
) -> list[int]:
    """Post the events in batches of `batch_size`, in order, as Event Grid deliveries
    (aeg-event-type Notification); returns each batch's HTTP status. `on_batch(number,
    events, status)` is called after each batch. Raises EventDeliveryFailed, naming the URL,
    when the app is not reachable or a batch is not answered 2xx (later batches are then
    not posted)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    url = webhook_url(base_url, function)
    statuses: list[int] = []
    for start in range(0, len(events), batch_size):
        batch = list(events[start : start + batch_size])
        statuses.append(_post(url, batch, delivered=start))
        if on_batch is not None:
            on_batch(len(statuses), len(batch), statuses[-1])
    return statuses


def _post(url: str, batch: list[dict[str, Any]], delivered: int) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(batch).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
    )
    try:
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as exc:  # URLError, refused connections and timeouts
        reason = getattr(exc, "reason", None) or exc
        raise EventDeliveryFailed(
            f"The app at {url} is not reachable ({reason}); {delivered} event(s) were "
            "delivered before.",
            url=url,
        ) from None
    if 200 <= status < 300:
        return status
    remedy = None
    if status in (400, 404):
        remedy = "Check --function: it must name one of the app's Event Grid functions."
    elif status >= 500:
        remedy = "The app failed on an event: its log says why (Event Grid would deliver again)."
    raise EventDeliveryFailed(
        f"{url} answered {status} to a batch of {len(batch)} event(s) ({delivered} delivered "
        f"before it): {_message(body)}",
        remedy=remedy,
        url=url,
        status=status,
    )


def _message(body: bytes) -> str:
    """The app's error message ({"error": {"message"}}), or the start of its answer."""
    try:
        error = json.loads(body).get("error") or {}
        return str(error["message"])
    except (ValueError, AttributeError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:300] or "(no body)"


# -- the command --------------------------------------------------------------------------
def events_command(args: argparse.Namespace, settings: Settings) -> int:
    """List the source, build one event per file, post them; one line per batch and a
    total. Returns the exit code (errors are raised as PipelineError, for the CLI)."""
    if args.repeat < 1:
        print("error: --repeat must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    events = blob_created_events(args.source, settings, Storage(settings), args.pattern)
    delivered = as_delivered(events, repeat=args.repeat, shuffle=args.shuffle, seed=args.seed)

    def report(number: int, size: int, status: int) -> None:
        print(f"batch {number}: {size} event(s) -> {status}", flush=True)

    statuses = post_events(args.url, delivered, args.function, on_batch=report)
    print(
        f"posted {len(delivered)} event(s) for {len(events)} file(s) in {len(statuses)} "
        f"batch(es) to {webhook_url(args.url, args.function)}"
    )
    return EXIT_OK
