"""Storage: list, read (whole or ranged), write, for local disk and Azure Blob Storage.

One client library (obstore) does all the I/O the stages do themselves; the reference
libraries get the same stores through an ObjectStoreRegistry, and readers of the finished
store (fsspec/adlfs for kerchunk, Icechunk's own client) get options built here from the
same settings. Azurite is reached through its connection string, production through
azure-identity (DefaultAzureCredential) with an account name.

Every obstore error is turned into one of ours in ``storage_errors``: not found, access
denied, unreadable (a local link loop: permanent), or transient (retryable).
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import json
import posixpath
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import obstore
import obstore.exceptions as obx
from obspec_utils.registry import ObjectStoreRegistry
from obspec_utils.wrappers import RequestTrace, TracingReadableStore
from obstore.store import AzureStore, LocalStore

if TYPE_CHECKING:  # typed dicts of obstore's stubs only
    from obstore.store import ClientConfig, RetryConfig

from shared.io.readers import AdaptiveReader
from shared.model.errors import (
    AccessDenied,
    PipelineError,
    SourceChanged,
    SourceNotFound,
    SourceUnreadable,
    StorageMisconfigured,
    StorageUnavailable,
)
from shared.model.locations import Location
from shared.model.settings import Settings, StorageAccount

# obstore retries 5xx, connection errors, timeouts and cut-off response bodies with
# exponential backoff and jitter. 10 retries (object_store's default; Icechunk gets the same
# in shared/io/stores.py): with 6, under 30% injected faults a request still failed at the end
# once in ~20,000, about one run in 150 (docs/faults.md); with 10, once in ~7 million. The
# backoff is capped at 10 s, so one request's retries end well within the 120 s timeout.
_RETRY: RetryConfig = {
    "max_retries": 10,
    "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=10)},
    "retry_timeout": timedelta(seconds=120),
}


# What the local file system (obstore's LocalStore, or Python) says when a path can never be
# read as it is. Anything else local (EIO, ESTALE, a timeout on a network mount) stays
# transient and is retried.
_LOCAL_LOOP = re.compile(r"File system loop found: (.+) points to an ancestor (.+)$")
_LOCAL_IO = re.compile(r"IO error for operation on (.+?): (.+?) \(os error (\d+)\)")
_LOCAL_PERMANENT = {
    errno.ELOOP: "is a symbolic link that leads back to itself (a link loop)",
    errno.ENOTDIR: "goes through something that is not a folder",
    errno.ENAMETOOLONG: "has a name too long for the file system",
}


def _local_fault(location: Location, action: str, exc: BaseException) -> PipelineError | None:
    """The permanent error for a local storage failure, or None when it may be transient."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    loop = _LOCAL_LOOP.search(text)
    if loop:
        return SourceUnreadable(
            f"Cannot {action} {location.url}: {loop.group(1)} is a symbolic link to "
            f"{loop.group(2)}, a folder that holds it (a link loop).",
            url=location.url,
        )
    io = _LOCAL_IO.search(text)
    path, number = (io.group(1), int(io.group(3))) if io else (location.path, None)
    if isinstance(exc, OSError) and exc.errno is not None:
        path, number = exc.filename or location.path, exc.errno
    if number in (errno.EACCES, errno.EPERM):
        return AccessDenied(
            f"Access to {path} was refused (while trying to {action} {location.url}).",
            remedy="Give the user that runs the pipeline read permission on it.",
        )
    if number in _LOCAL_PERMANENT:
        return SourceUnreadable(
            f"Cannot {action} {location.url}: {path} {_LOCAL_PERMANENT[number]}.",
            url=location.url,
        )
    return None


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object, as listed: enough to detect a change later (size + ETag)."""

    url: str
    size: int
    etag: str
    last_modified: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectInfo:
        return cls(
            url=str(data["url"]),
            size=int(data["size"]),
            etag=str(data["etag"]),
            last_modified=str(data["last_modified"]),
        )


@contextmanager
def storage_errors(location: Location, action: str) -> Iterator[None]:
    """Translate storage client errors into pipeline errors that name the location."""
    try:
        yield
    except PipelineError:
        raise
    except obx.NotFoundError:
        if action == "write" and not location.is_local:
            raise SourceNotFound(
                f"Cannot write {location.url}: the container {location.container!r} "
                "does not exist.",
                remedy="Create the container (the pipeline does not create containers), or "
                "correct the setting that names it.",
            ) from None
        raise SourceNotFound(f"{location.url} does not exist (while trying to {action}).") from None
    except (obx.PermissionDeniedError, obx.UnauthenticatedError) as exc:
        raise AccessDenied(
            f"Access to {location.url} was refused (while trying to {action}): {_first_line(exc)}"
        ) from None
    except FileNotFoundError:
        raise SourceNotFound(f"{location.url} does not exist (while trying to {action}).") from None
    except PermissionError:
        raise AccessDenied(
            f"Access to {location.url} was refused (while trying to {action})."
        ) from None
    except (obx.GenericError, OSError, TimeoutError, ConnectionError) as exc:
        fault = _local_fault(location, action, exc) if location.is_local else None
        if fault is not None:
            raise fault from None
        text = str(exc)
        if "Requested range was invalid" in text or "InvalidRange" in text or " 416 " in text:
            raise SourceChanged(
                f"{location.url} is shorter than when it was listed (a read past its end was "
                f"refused while trying to {action} it).",
            ) from None
        if "ContainerNotFound" in text or "The specified container does not exist" in text:
            raise SourceNotFound(
                f"The container {location.container!r} does not exist "
                f"(while trying to {action} {location.url}).",
                remedy="Create the container or correct its name.",
            ) from None
        if "AuthorizationFailure" in text or "AuthenticationFailed" in text or " 403 " in text:
            raise AccessDenied(
                f"Access to {location.url} was refused: {_first_line(exc)}"
            ) from None
        raise StorageUnavailable(
            f"Storage did not answer while trying to {action} {location.url}: {_first_line(exc)}"
        ) from exc


# Icechunk's StorageError carries a stable `kind` (icechunk.ErrorKind). Which kinds are a
# StorageError is icechunk-python/src/errors.rs (classify_storage, classify_virtual); what
# each means is icechunk's StorageErrorKind and VirtualReferenceErrorKind:
# - transient, worth the orchestrator's retry after Icechunk's own retries gave up: the
#   object store failed (a 5xx, a dropped connection: "object-store"), an I/O error on the
#   way ("io"), throttling ("throttled"), its request semaphore ("semaphore-acquire"), and
#   fetching a virtual chunk from a source file ("virtual-chunk-fetch") unless the file is
#   not there;
# - never transient: an object of the repository missing ("object-not-found"), a source
#   file changed or shorter than referenced ("virtual-chunk-modified",
#   "invalid-object-size"), and a storage configuration, URL or redirect it refuses
#   ("storage-config", "cannot-parse-url", "bad-redirect", "storage-other").
ICECHUNK_TRANSIENT = frozenset(
    {"object-store", "io", "throttled", "semaphore-acquire", "virtual-chunk-fetch"}
)
ICECHUNK_CHANGED = frozenset({"virtual-chunk-modified", "invalid-object-size"})
_REFUSED = ("permission", "unauthenticated", "authorizationfailure", "authenticationfailed", " 403")
_MISSING = (" not found", "notfound", "no such file", " 404")


def icechunk_kind(error: BaseException) -> str | None:
    """The ErrorKind of an Icechunk StorageError, None for anything else (an Icechunk without
    kinds gives "" for every StorageError)."""
    try:
        import icechunk
    except ImportError:
        return None
    if not isinstance(error, icechunk.StorageError):
        return None
    return str(getattr(error, "kind", "") or "")


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, obx.GenericError | ConnectionError | TimeoutError):
        return True
    kind = icechunk_kind(error)
    if kind is None:
        return False
    text = str(error).lower()
    if any(w in text for w in _REFUSED) or any(w in text for w in _MISSING):
        return False
    return kind in ICECHUNK_TRANSIENT or kind == ""


def _icechunk_permanent(error: BaseException, what: str) -> PipelineError | None:
    """The pipeline error an Icechunk storage error that no retry can cure stands for."""
    kind = icechunk_kind(error)
    if kind is None or _is_transient(error):
        return None
    words = _first_line(error)
    text = words.lower()
    if any(w in text for w in _REFUSED):
        return AccessDenied(f"Storage refused access while {what}: {words}")
    if kind in ICECHUNK_CHANGED:
        return SourceChanged(
            f"A source file changed after it was referenced, while {what}: {words}"
        )
    if kind == "object-not-found" or any(w in text for w in _MISSING):
        return SourceNotFound(f"Something {what} needs does not exist: {words}")
    return StorageMisconfigured(f"Storage refused the request while {what} ({kind}): {words}")


def classify(exc: BaseException, what: str) -> BaseException:
    """The error to raise for ``exc``: StorageUnavailable when a transient storage fault
    caused it (one that other libraries' clients, xarray over the kerchunk filesystem or
    Icechunk, did not absorb with their own retries), so the orchestrator retries the
    activity; the pipeline error an Icechunk storage error that no retry can cure stands for
    (ICECHUNK_TRANSIENT says which are which); else ``exc`` itself."""
    if isinstance(exc, PipelineError):
        return exc
    seen: BaseException | None = exc
    while seen is not None:
        if _is_transient(seen):
            unavailable = StorageUnavailable(f"Storage failed while {what}: {_first_line(seen)}")
            unavailable.__cause__ = exc
            return unavailable
        permanent = _icechunk_permanent(seen, what)
        if permanent is not None:
            permanent.__cause__ = exc
            return permanent
        seen = seen.__cause__ or seen.__context__
    return exc


@contextmanager
def storage_faults(what: str) -> Iterator[None]:
    """Raise classify(error) for any error in the block (see classify)."""
    try:
        yield
    except Exception as exc:
        classified = classify(exc, what)
        if classified is exc:
            raise
        raise classified from exc


class _IfMatch:
    """The reads an AdaptiveReader makes (get_range, head), each conditional on one ETag (a
    changed object: SourceChanged naming it) and counted in ``trace`` like any other read."""

    def __init__(
        self, store: Any, etag: str, trace: RequestTrace | None, location: Location
    ) -> None:
        self._store = store
        self._etag = etag
        self._trace = trace
        self._location = location

    def get_range(self, path: str, *, start: int, length: int) -> bytes:
        started = time.time()
        try:
            return self._get(path, {"range": (start, start + length)})
        finally:
            if self._trace is not None:
                self._trace.add(path=path, start=start, length=length, timestamp=started,
                                duration=time.time() - started, method="get_range",
                                range_style="length")  # fmt: skip

    def get_all(self, path: str) -> bytes:
        """The whole object, if it is still the version ``etag`` names."""
        started = time.time()
        data = b""
        try:
            data = self._get(path, {})
            return data
        finally:
            if self._trace is not None:
                self._trace.add(path=path, start=0, length=len(data), timestamp=started,
                                duration=time.time() - started, method="get")  # fmt: skip

    def _get(self, path: str, options: dict[str, Any]) -> bytes:
        try:
            result = self._store.get(path, options={**options, "if_match": f'"{self._etag}"'})
            return bytes(result.bytes())
        except obx.PreconditionError:
            raise SourceChanged(
                f"{self._location.url} changed after it was listed: a read of the version "
                f"with ETag {self._etag!r} was refused because the object is now another.",
                url=self._location.url,
                scanned_etag=self._etag,
            ) from None

    def head(self, path: str) -> Any:
        return self._store.head(path)


def normalise_etag(raw: object) -> str:
    """ETags without the quotes or weak marker: listing and HEAD disagree on the quotes."""
    text = str(raw or "").strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def matches_patterns(relative_path: str, patterns: Sequence[str]) -> bool:
    """A pattern with "/" matches the path below the prefix, otherwise the file name."""
    name = posixpath.basename(relative_path)
    for pattern in patterns:
        target = relative_path if "/" in pattern else name
        if fnmatch.fnmatchcase(target, pattern):
            return True
    return False


class Storage:
    """Reads and writes Locations. One instance per activity call; cheap to build (the
    clients it hands out are the process's, shared_azure_store).

    With ``trace`` set, every read through stores handed out by this object (including the
    registry given to VirtualiZarr) is counted, so stages can report bytes and requests.
    """

    def __init__(self, settings: Settings, *, trace: RequestTrace | None = None) -> None:
        self.settings = settings
        self.trace = trace
        self._stores: dict[str, Any] = {}

    def traced(self, trace: RequestTrace | None = None) -> Storage:
        """A Storage that counts its reads in ``trace`` and shares this one's clients."""
        copy = Storage(self.settings, trace=trace or RequestTrace())
        copy._stores = self._stores
        return copy

    # -- stores -----------------------------------------------------------------------
    def _raw_store(self, location: Location) -> Any:
        key = "file" if location.is_local else f"az://{location.container}"
        store = self._stores.get(key)
        if store is None:
            if location.is_local:
                store = LocalStore()
            else:
                store = shared_azure_store(self._account(), location.container)
            self._stores[key] = store
        return store

    def _store(self, location: Location) -> Any:
        store = self._raw_store(location)
        return TracingReadableStore(store, self.trace) if self.trace is not None else store

    def _account(self) -> StorageAccount:
        if self.settings.account is None:
            raise AccessDenied(
                "No storage account is configured.",
                remedy="Set PIPELINE_STORAGE_ACCOUNT or PIPELINE_STORAGE_CONNECTION_STRING.",
            )
        return self.settings.account

    @staticmethod
    def _key(location: Location) -> str:
        return location.path.lstrip("/") if location.is_local else location.path

    def registry(self, locations: Sequence[Location]) -> ObjectStoreRegistry:
        """A registry that resolves the URLs of these locations (file:// and az://container)."""
        stores: dict[str, Any] = {}
        for location in locations:
            prefix = "file://" if location.is_local else f"az://{location.container}"
            stores.setdefault(prefix, self._store(location))
        return ObjectStoreRegistry(stores)

    def reader(
        self,
        location: Location,
        *,
        size: int | None = None,
        prefetch_index: bool = False,
        etag: str | None = None,
    ) -> AdaptiveReader:
        """A seekable file-like reader that fetches about what is asked, with a read-ahead
        that grows on sequential reads (what h5py and the parsers read from; readers.py).
        ``size`` is known from the listing: it saves one HEAD request per file. With
        ``prefetch_index``, the nodes of an HDF5 chunk index are fetched concurrently (for
        a caller that lists every chunk: generate). With ``etag``, every read is conditional
        on it (If-Match): bytes of another version of the object are never returned, a read
        of one is SourceChanged, so no HEAD before or after is needed to know the bytes are
        the ones scanned."""
        store = self._store(location)
        if etag is not None:
            store = _IfMatch(self._raw_store(location), etag, self.trace, location)
        return AdaptiveReader(
            store,
            self._key(location),
            block_size=self.settings.read_block_size,
            size=size,
            prefetch_index=prefetch_index,
            etag=etag,
        )

    def reader_factory(self) -> Any:
        """The reader factory VirtualiZarr's HDF parser takes: (store, path) -> reader."""
        return partial(AdaptiveReader, block_size=self.settings.read_block_size)

    # -- metadata ---------------------------------------------------------------------
    def head(self, location: Location) -> ObjectInfo:
        with storage_errors(location, "read the properties of"):
            meta = self._raw_store(location).head(self._key(location))
        return self._info(location, meta)

    def exists(self, location: Location) -> bool:
        try:
            self.head(location)
        except SourceNotFound:
            return False
        return True

    def list(
        self, prefix: Location, patterns: Sequence[str] = ("*",), *, limit: int | None = None
    ) -> list[ObjectInfo]:
        """Objects below ``prefix`` (recursively) whose name matches one of ``patterns``.

        With ``limit``, stops after ``limit + 1`` matches (enough to say "more than limit").
        """
        key = self._key(prefix)
        list_prefix = (key.rstrip("/") + "/") if key else None
        found: list[ObjectInfo] = []
        with storage_errors(prefix, "list"):
            for batch in obstore.list(self._raw_store(prefix), prefix=list_prefix):
                for meta in batch:
                    relative = meta["path"][len(list_prefix or "") :]
                    if matches_patterns(relative, patterns):
                        found.append(self._info(prefix, meta, relative))
                if limit is not None and len(found) > limit:
                    break
        found.sort(key=lambda info: info.url)
        return found

    def count_below(self, prefix: Location, limit: int = 5) -> builtins.list[str]:
        """Up to ``limit`` names of any objects below ``prefix`` (for "found only ..." messages)."""
        key = self._key(prefix)
        list_prefix = (key.rstrip("/") + "/") if key else None
        names: list[str] = []
        with storage_errors(prefix, "list"):
            for batch in obstore.list(
                self._raw_store(prefix), prefix=list_prefix, chunk_size=limit
            ):
                names.extend(m["path"][len(list_prefix or "") :] for m in batch)
                break
        return names[:limit]

    def _info(self, base: Location, meta: Any, relative: str | None = None) -> ObjectInfo:
        location = base.join(relative) if relative else base
        modified = meta.get("last_modified")
        return ObjectInfo(
            url=location.url,
            size=int(meta["size"]),
            etag=normalise_etag(meta.get("e_tag")),
            last_modified=modified.isoformat() if modified is not None else "",
        )

    # -- reading ----------------------------------------------------------------------
    def read(self, location: Location, *, etag: str | None = None) -> bytes:
        """The whole object; with ``etag``, only if it is still that version (If-Match: a
        read of another is SourceChanged)."""
        with storage_errors(location, "read"):
            if etag is not None:
                store = _IfMatch(self._raw_store(location), etag, self.trace, location)
                return store.get_all(self._key(location))
            return bytes(self._store(location).get(self._key(location)).bytes())

    def read_range(self, location: Location, start: int, length: int) -> bytes:
        with storage_errors(location, "read"):
            return bytes(
                self._store(location).get_range(self._key(location), start=start, length=length)
            )

    def read_ranges(
        self, location: Location, starts: Sequence[int], lengths: Sequence[int]
    ) -> builtins.list[bytes]:
        if not starts:
            return []
        with storage_errors(location, "read"):
            parts = self._store(location).get_ranges(
                self._key(location), starts=list(starts), lengths=list(lengths)
            )
        return [bytes(p) for p in parts]

    def read_json(self, location: Location) -> Any:
        return json.loads(self.read(location))

    # -- writing ----------------------------------------------------------------------
    def write(
        self,
        location: Location,
        data: bytes | builtins.list[bytes],
        content_type: str = "application/octet-stream",
    ) -> None:
        """Write ``data``: bytes, or pieces written one after the other (a large document
        need not be joined in memory; obstore uploads them in parts)."""
        with storage_errors(location, "write"):
            store = self._raw_store(location)
            if location.is_local:
                obstore.put(store, self._key(location), data)
            else:
                obstore.put(
                    store, self._key(location), data, attributes={"Content-Type": content_type}
                )

    def create_json(self, location: Location, document: Any) -> bool:
        """Write ``document`` only if nothing is at ``location`` yet (If-None-Match: * in
        blob storage, an exclusive create on disk): True if this call created it, False if
        it was there already. The first of two concurrent writers wins; the other knows."""
        data = json.dumps(document, indent=1, allow_nan=False).encode()
        store = self._raw_store(location)
        attributes = None if location.is_local else {"Content-Type": "application/json"}
        with storage_errors(location, "create"):
            try:
                obstore.put(store, self._key(location), data, attributes=attributes, mode="create")
            except obx.AlreadyExistsError:
                return False
        return True

    def write_json(self, location: Location, document: Any) -> None:
        data = json.dumps(document, indent=1, sort_keys=False, allow_nan=False).encode()
        self.write(location, data, "application/json")

    def delete(self, locations: Sequence[Location]) -> None:
        """Delete these objects (all in one container or all local)."""
        if not locations:
            return
        with storage_errors(locations[0], "delete"):
            obstore.delete(self._raw_store(locations[0]), [self._key(loc) for loc in locations])

    def delete_prefix(self, prefix: Location) -> int:
        """Delete every object below ``prefix``; returns how many were deleted."""
        key = self._key(prefix)
        store = self._raw_store(prefix)
        deleted = 0
        with storage_errors(prefix, "delete"):
            for batch in obstore.list(store, prefix=key.rstrip("/") + "/"):
                paths = [m["path"] for m in batch]
                obstore.delete(store, paths)
                deleted += len(paths)
        return deleted


# One client per account and container in a process, shared by every Storage (so by every
# activity call the process runs): building one costs about 6 ms (its HTTP client), and a
# shared one keeps its connections open from one call to the next, as Azure's guidance for
# Functions asks (reuse clients across invocations). obstore's stores are thread-safe.
_CLIENTS: dict[tuple[StorageAccount, str], AzureStore] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_azure_store(account: StorageAccount, container: str) -> AzureStore:
    """This process's client for one container (azure_store's, made once)."""
    with _CLIENTS_LOCK:
        store = _CLIENTS.get((account, container))
        if store is None:
            store = _CLIENTS[(account, container)] = azure_store(account, container)
        return store


def azure_store(account: StorageAccount, container: str) -> AzureStore:
    """An obstore AzureStore for one container: key-based for Azurite, identity otherwise."""
    client_options: ClientConfig = {"allow_http": True} if account.is_emulator else {}
    if account.key:
        return AzureStore(
            container_name=container,
            account_name=account.name,
            account_key=account.key,
            endpoint=account.endpoint,
            client_options=client_options,
            retry_config=_RETRY,
        )
    from azure.identity import DefaultAzureCredential
    from obstore.auth.azure import AzureCredentialProvider

    return AzureStore(
        container_name=container,
        account_name=account.name,
        endpoint=account.endpoint if account.blob_endpoint else None,
        client_options=client_options,
        retry_config=_RETRY,
        credential_provider=AzureCredentialProvider(credential=DefaultAzureCredential()),
    )


class Writes:
    """Writes that go on while the caller works: a caller writing several small documents a
    file (validate: a report and references) need not wait a storage round trip for each
    before reading the next file. ``wait`` returns when every write is done and raises the
    first that failed; leaving a ``with`` block early waits for the writes under way
    (nothing is left writing behind an activity that failed) without raising theirs."""

    def __init__(self, storage: Storage, pool: Executor) -> None:
        self._storage = storage
        self._pool = pool
        self._pending: builtins.list[Future[None]] = []

    def write(
        self, location: Location, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self._pending.append(self._pool.submit(self._storage.write, location, data, content_type))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.wait()
            return
        pending, self._pending = self._pending, []
        futures_wait(pending)
