"""Turn a user's storage string into a typed Location, once, at the edge.

Accepted forms (anything else is refused with a message that lists these):

- a local path or file:///absolute/path        (only where settings allow local paths)
- az://container/prefix
- abfs[s]://container/prefix
- abfs[s]://container@ACCOUNT.dfs.core.windows.net/prefix
- https://ACCOUNT.blob.core.windows.net/container/prefix   (also .dfs.)
- http://127.0.0.1:10000/devstoreaccount1/container/prefix (the configured emulator only)

Blob locations must be in the configured storage account (and, when set, in one of the
allowed containers). Everything after this module trusts the Location type.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from shared.errors import BadRequest, LocationNotAllowed
from shared.settings import Settings

_CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_ACCEPTED = (
    "a local folder, file:///path, az://container/prefix, abfs://container/prefix, or "
    "https://ACCOUNT.blob.core.windows.net/container/prefix"
)


@dataclass(frozen=True, order=True)
class Location:
    """A file or prefix in local storage or in the deployment's blob storage account."""

    kind: Literal["local", "blob"]
    container: str  # "" for local
    path: str  # local: absolute POSIX path; blob: key or prefix, no leading/trailing "/"

    @property
    def url(self) -> str:
        """Canonical URL: file:///abs/path or az://container/key (what references carry)."""
        if self.kind == "local":
            return "file://" + self.path
        return f"az://{self.container}/{self.path}" if self.path else f"az://{self.container}"

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def join(self, *parts: str) -> Location:
        extra = [p.strip("/") for p in parts if p and p.strip("/")]
        for part in extra:
            if any(seg in ("..", ".") for seg in part.split("/")):
                raise BadRequest(f"Path part {part!r} may not contain '.' or '..' segments.")
        path = posixpath.join(self.path, *extra) if self.path else posixpath.join(*extra)
        if self.kind == "local" and not path.startswith("/"):
            path = "/" + path
        return Location(self.kind, self.container, path)

    def relative_to(self, base: Location) -> str:
        """This location's path below ``base`` ("" when equal)."""
        if (self.kind, self.container) != (base.kind, base.container):
            raise ValueError(f"{self.url} is not below {base.url}")
        if self.path == base.path:
            return ""
        prefix = base.path.rstrip("/") + "/" if base.path else ""
        if not self.path.startswith(prefix):
            raise ValueError(f"{self.url} is not below {base.url}")
        return self.path[len(prefix) :]

    def __str__(self) -> str:
        return self.url


def parse_location(text: object, settings: Settings, *, what: str = "location") -> Location:
    """Parse and authorise a user-supplied storage string, or raise a clear error naming it."""
    if not isinstance(text, str):
        raise BadRequest(f"The {what} must be a string, not {type(text).__name__}.")
    raw = text.strip()
    if not raw:
        raise BadRequest(f"The {what} is empty: give {_ACCEPTED}.")
    if "\x00" in raw or any(ord(c) < 32 for c in raw):
        raise BadRequest(f"The {what} {raw!r} contains control characters.")
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        return _local(
            raw, parts.path if scheme == "file" else raw, settings, what, scheme == "file"
        )
    if parts.query or parts.fragment:
        raise LocationNotAllowed(f"The {what} {raw!r} has a query or fragment; give a plain path.")
    if scheme in ("az", "abfs", "abfss"):
        container, _, account = parts.netloc.partition("@")
        if account:
            _check_account(account.split(".", 1)[0], raw, settings, what)
        else:
            _require_account(raw, settings, what)
        return _blob(container, parts.path, raw, settings, what)
    if scheme in ("https", "http"):
        return _blob_from_http(raw, parts.netloc, parts.path, scheme, settings, what)
    raise LocationNotAllowed(
        f"The {what} {raw!r} uses the scheme {scheme!r}, which this pipeline does not read.",
        remedy=f"Give {_ACCEPTED}.",
    )


def _local(raw: str, path_text: str, settings: Settings, what: str, is_url: bool) -> Location:
    if not settings.allow_local_paths:
        raise LocationNotAllowed(
            f"The {what} {raw!r} is a local path, and this deployment only reads blob storage.",
            remedy=f"Give {_ACCEPTED.split(', ', 2)[2]}.",
        )
    path_text = unquote(path_text) if is_url else path_text
    if is_url and not path_text.startswith("/"):
        raise BadRequest(f"The {what} {raw!r} is not an absolute file:// URL (file:///abs/path).")
    resolved = Path(path_text).expanduser().resolve()
    return Location("local", "", resolved.as_posix())


def _require_account(raw: str, settings: Settings, what: str) -> None:
    if settings.account is None:
        raise LocationNotAllowed(
            f"The {what} {raw!r} is in blob storage, but no storage account is configured.",
            remedy="Set PIPELINE_STORAGE_ACCOUNT (managed identity) or "
            "PIPELINE_STORAGE_CONNECTION_STRING.",
        )


def _check_account(account: str, raw: str, settings: Settings, what: str) -> None:
    _require_account(raw, settings, what)
    assert settings.account is not None
    if account.lower() != settings.account.name.lower():
        raise LocationNotAllowed(
            f"The {what} {raw!r} is in storage account {account!r}; this deployment works only "
            f"in {settings.account.name!r}.",
            remedy="Copy the files into the configured account, or deploy with that account.",
        )


def _blob_from_http(
    raw: str, netloc: str, path: str, scheme: str, settings: Settings, what: str
) -> Location:
    _require_account(raw, settings, what)
    assert settings.account is not None
    endpoint = urlsplit(settings.account.endpoint)
    host = netloc.lower()
    if host.endswith((".blob.core.windows.net", ".dfs.core.windows.net")):
        if scheme != "https":
            raise LocationNotAllowed(f"The {what} {raw!r} must use https.")
        _check_account(host.split(".", 1)[0], raw, settings, what)
        return _blob_path(path, raw, settings, what)
    # Emulator style: http://host:port/ACCOUNT/container/prefix, only for the configured one.
    if host == endpoint.netloc.lower() and scheme == endpoint.scheme:
        account_path = endpoint.path.strip("/")
        stripped = path.lstrip("/")
        if account_path and not stripped.startswith(account_path + "/"):
            raise LocationNotAllowed(
                f"The {what} {raw!r} is not under the configured endpoint "
                f"{settings.account.endpoint}."
            )
        return _blob_path(stripped[len(account_path) :], raw, settings, what)
    raise LocationNotAllowed(
        f"The {what} {raw!r} is not a blob URL of the configured storage account "
        f"({settings.account.endpoint}).",
        remedy=f"Give {_ACCEPTED}.",
    )


def _blob_path(path: str, raw: str, settings: Settings, what: str) -> Location:
    container, _, rest = path.lstrip("/").partition("/")
    return _blob(container, rest, raw, settings, what)


def _blob(container: str, path: str, raw: str, settings: Settings, what: str) -> Location:
    container = container.strip()
    if not container:
        raise BadRequest(f"The {what} {raw!r} names no container.")
    if not _CONTAINER_RE.match(container):
        raise BadRequest(
            f"The {what} {raw!r} names the container {container!r}, which is not a valid "
            "container name (3-63 lowercase letters, digits and single hyphens)."
        )
    if settings.allowed_containers and container not in settings.allowed_containers:
        raise LocationNotAllowed(
            f"The {what} {raw!r} is in container {container!r}, which this deployment may not "
            f"use (allowed: {', '.join(settings.allowed_containers)}).",
            remedy="Use one of the allowed containers, or ask the operator to add it to "
            "PIPELINE_ALLOWED_CONTAINERS.",
        )
    key = unquote(path).strip("/")
    segments = [s for s in key.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise LocationNotAllowed(f"The {what} {raw!r} contains '.' or '..' path segments.")
    return Location("blob", container, "/".join(segments))


def http_url(location: Location, settings: Settings) -> str:
    """The location as a URL a browser or HTTP client can use (https://ACCOUNT.blob...),
    or file:///... for local locations. Carries no credentials."""
    if location.is_local:
        return location.url
    if settings.account is None:
        raise LocationNotAllowed(
            f"{location.url} is in blob storage, but no account is configured."
        )
    from urllib.parse import quote

    return f"{settings.account.endpoint}/{location.container}/{quote(location.path)}"
