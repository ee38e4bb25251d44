"""Turn a user's storage string into a typed Location, once, at the edge.

Accepted forms (anything else is refused with a message that names the value and lists
these):

- a local path or file:///absolute/path        (only where settings allow local paths)
- az://container/prefix
- abfs[s]://container/prefix
- abfs[s]://container@ACCOUNT.dfs.core.windows.net/prefix
- https://ACCOUNT.blob.core.windows.net/container/prefix   (also .dfs.)
- http://127.0.0.1:10000/devstoreaccount1/container/prefix (the configured emulator only)

Blob locations must be in the configured storage account and, when set, in one of the
allowed containers; a local source must be below one of the local roots (PIPELINE_LOCAL_ROOTS)
and is never a system folder (/, /proc, /sys, /dev). No source, blob or local, may be inside
or above the pipeline's own work area, store root or catalog, nor (local) the local host's
state folder. Hostile input is refused before anything reads or writes: other hosts,
schemes, ports and user:password@ parts; query strings (SAS tokens) and fragments; '.' and
'..' segments, backslashes and percent-encoded dots, slashes, backslashes or percents;
control, invisible and bidi characters; over-long values and segments. The rules, with
examples, are in docs/security.md ("Hostile input"). Everything after this module trusts
the Location type.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit

from shared.model.errors import BadRequest, LocationNotAllowed, PipelineError
from shared.model.settings import Settings

MAX_LOCATION_CHARS = 1024  # Azure's limit for a blob name; a whole URL longer is refused
MAX_SEGMENT_BYTES = 255  # one path segment, UTF-8 encoded (file systems and ADLS Gen2)
SHOWN_CHARS = 100  # a longer value is cut to this many characters in messages

# \Z, not '$': '$' also matches before a trailing newline.
_CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}\Z")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_PRODUCTION_SUFFIXES = (".blob.core.windows.net", ".dfs.core.windows.net")
# Percent-encoded, these would change how the path splits or decodes again further on.
_ENCODED_REFUSED = {".": "'.'", "/": "'/'", "\\": "a backslash", "%": "'%' (double encoding)"}
# Unicode categories refused anywhere in a location, id or pattern: control (Cc: NUL, CR, LF,
# DEL, C1), surrogates (Cs: a JSON "\ud800" decodes to one and cannot be encoded again),
# format (Cf: zero-width, bidi overrides and isolates, BOM, soft hyphen), unassigned (Cn),
# line and paragraph separators (Zl, Zp), and spaces (Zs) other than U+0020.
_REFUSED_CATEGORIES = {"Cc": "control characters", "Cs": "a lone surrogate"}
_INVISIBLE_CATEGORIES = ("Cf", "Cn", "Zl", "Zp")

_Role = Literal["source", "internal", "setting"]

# Pseudo file systems (devices, kernel and process interfaces: endless, blocking or looping
# "files", never NetCDF collections) and the file-system root: never a local source, whatever
# PIPELINE_LOCAL_ROOTS says. Listing one used to fail as a "transient" storage fault.
_SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")

# The local host's state folder: devhost keeps its Durable history there (durable.sqlite, with
# every run's input and the host's keys), so no source may read it. It is not a pipeline
# setting: in Azure the Functions host keeps that state in its own storage (AzureWebJobsStorage),
# which no source can name, and only devhost knows its --state folder. So the devhost default,
# .devhost in the current folder, is always refused, and a host started with another folder
# names it with host_state() (devhost/local.py), for the process that checks every request's
# source before any work starts (the HTTP and Event Grid functions run in the host's process).
DEFAULT_HOST_STATE = ".devhost"
_host_states: list[str] = []


@contextmanager
def host_state(folder: str | os.PathLike[str]) -> Iterator[None]:
    """While in the block, refuse local sources inside or above ``folder`` (the local host's
    state folder) in this process, as the pipeline's own areas are refused."""
    path = _resolved(os.fspath(folder))
    _host_states.append(path)
    try:
        yield
    finally:
        _host_states.remove(path)


def show_value(value: str) -> str:
    """A user's value as messages quote it: repr() (so control and invisible characters
    show escaped, never raw), cut to SHOWN_CHARS characters with the full length added."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def unsafe_character(text: str) -> str | None:
    """Describe the first character of ``text`` that no location, id or pattern may hold
    (control, invisible, bidi, lone surrogate, unusual space), or None when there is none."""
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            kind = _REFUSED_CATEGORIES[category]
            return f"{kind} (U+{ord(char):04X} at position {position})"
        if category in _INVISIBLE_CATEGORIES or (category == "Zs" and char != " "):
            name = unicodedata.name(char, "unnamed")
            return (
                f"an invisible or formatting character (U+{ord(char):04X} {name} at "
                f"position {position})"
            )
    return None


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
    """Parse and authorise a user-supplied storage string, or raise a clear error naming it.

    ``what`` names the value in messages. A request's source (``what="source"``) may be only
    in the allowed containers or, local, below the local roots and never a system folder;
    it may not overlap the pipeline's own work area, store root or catalog (nor, local, the
    local host's state folder); other locations (the pipeline's own, and URLs it derives)
    may also be in the containers of those three settings."""
    if not isinstance(text, str):
        raise BadRequest(f"The {what} must be a string, not {type(text).__name__}.")
    role: _Role = "source" if what == "source" else "internal"
    location = _parse(text, settings, what, role)
    if role == "source":
        if location.is_local:
            _refuse_outside_roots(location.path, text.strip(), settings, what)
        _refuse_own_areas(location, text.strip(), settings, what)
    return location


def check_local_source_file(path: str, settings: Settings) -> None:
    """Refuse a file listed below a local source when it is a symbolic link (or under one)
    that leads where the source itself could not be: a system folder, outside the local
    roots, or into the pipeline's own areas or the local host's state."""
    real = os.path.realpath(path)  # a link loop stays unresolved: listing reports it
    if real == path:
        return
    subject = (
        f"The source file {show_value(path)} leads (a symbolic link) to {show_value(real)}, which"
    )
    try:
        _refuse_outside_roots(real, path, settings, "source file", subject=subject)
        _refuse_own_areas(Location("local", "", real), path, settings, "source file", subject)
    except LocationNotAllowed as exc:
        exc.remedy = "Remove or correct that link, or move the file it points to. " + exc.remedy
        raise


def _parse(text: str, settings: Settings, what: str, role: _Role) -> Location:
    raw = text.strip()
    if not raw:
        raise BadRequest(f"The {what} is empty.", remedy=_remedy(settings))
    shown = show_value(raw)
    if len(raw) > MAX_LOCATION_CHARS:
        raise BadRequest(
            f"The {what} {shown} is too long: at most {MAX_LOCATION_CHARS} characters.",
            remedy=_remedy(settings),
        )
    problem = unsafe_character(raw)
    if problem:
        raise BadRequest(f"The {what} {shown} contains {problem}.", remedy=_remedy(settings))
    if "?" in raw or "#" in raw:
        raise LocationNotAllowed(
            f"The {what} {shown} has a query string or fragment ('?' or '#'); a SAS token or "
            "any other parameter is never accepted.",
            remedy="Give a plain path: the app reaches storage with its own identity. "
            + _remedy(settings),
        )
    if "\\" in raw:
        raise LocationNotAllowed(
            f"The {what} {shown} contains a backslash; paths use '/' between segments.",
            remedy=_remedy(settings),
        )
    try:
        parts = urlsplit(raw)
    except ValueError as exc:
        raise BadRequest(
            f"The {what} {shown} is not a valid URL ({exc}).", remedy=_remedy(settings)
        ) from None
    scheme = parts.scheme.lower()
    if scheme == "":
        return _local(raw, raw, settings, what, is_url=False)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise LocationNotAllowed(
                f"The {what} {shown} names the host {parts.netloc!r}: a file URL must be "
                "file:///absolute/path.",
                remedy=_remedy(settings),
            )
        return _local(raw, parts.path, settings, what, is_url=True)
    if scheme in ("az", "abfs", "abfss"):
        container = _container_from_netloc(parts.netloc, scheme, raw, settings, what)
        return _blob(container, parts.path, raw, settings, what, role)
    if scheme in ("https", "http"):
        return _blob_from_http(raw, parts, scheme, settings, what, role)
    raise LocationNotAllowed(
        f"The {what} {shown} uses the scheme {scheme!r}, which this pipeline does not read.",
        remedy=_remedy(settings),
    )


def _remedy(settings: Settings) -> str:
    """What is accepted, for this deployment (its account and allowed containers)."""
    account = settings.account.name if settings.account is not None else "ACCOUNT"
    forms = [
        "az://CONTAINER/prefix",
        "abfss://CONTAINER@" + account + ".dfs.core.windows.net/prefix",
        "https://" + account + ".blob.core.windows.net/CONTAINER/prefix",
    ]
    if settings.account is not None and settings.account.is_emulator:
        forms.append(settings.account.endpoint + "/CONTAINER/prefix")
    if settings.allow_local_paths:
        forms.insert(0, "a local folder or file:///absolute/path")
    text = "Give " + ", ".join(forms[:-1]) + " or " + forms[-1]
    if settings.allowed_containers:
        text += f" (CONTAINER one of: {', '.join(settings.allowed_containers)})"
    return text + "; no query string, no '..', no backslash, no percent-encoded '.', '/' or '%'."


def _local(raw: str, path_text: str, settings: Settings, what: str, is_url: bool) -> Location:
    shown = show_value(raw)
    if not settings.allow_local_paths:
        raise LocationNotAllowed(
            f"The {what} {shown} is a local path, and this deployment only reads blob storage.",
            remedy=_remedy(settings),
        )
    if is_url:
        path_text = _decode(path_text, raw, settings, what)
        if not path_text.startswith("/"):
            raise BadRequest(
                f"The {what} {shown} is not an absolute file:// URL (file:///abs/path).",
                remedy=_remedy(settings),
            )
    # '..' and symbolic links are resolved rather than refused: what a source may read is
    # decided on the resolved path (local roots, system folders, own areas: parse_location).
    _check_segments(path_text.split("/"), raw, settings, what, dots=False)
    try:
        resolved = _resolved(path_text)
    except RuntimeError:  # Python 3.12: Path.resolve() raises it for a symbolic link loop
        raise BadRequest(
            f"The {what} {shown} cannot be resolved: a symbolic link on its path leads back "
            "to itself (a link loop).",
            remedy="Correct or remove the link (`ls -l` shows where each link points), or "
            "give the real folder. Trying again does not help.",
        ) from None
    return Location("local", "", resolved)


def _resolved(path: str) -> str:
    """The absolute path with '~', '..' and symbolic links resolved (RuntimeError: a loop)."""
    return Path(path).expanduser().resolve().as_posix()


def _require_account(raw: str, settings: Settings, what: str) -> None:
    if settings.account is None:
        raise LocationNotAllowed(
            f"The {what} {show_value(raw)} is in blob storage, but no storage account is "
            "configured.",
            remedy="Set PIPELINE_STORAGE_ACCOUNT (managed identity) or "
            "PIPELINE_STORAGE_CONNECTION_STRING.",
        )


def _check_account(account: str, raw: str, settings: Settings, what: str) -> None:
    _require_account(raw, settings, what)
    assert settings.account is not None
    if account.lower() != settings.account.name.lower():
        raise LocationNotAllowed(
            f"The {what} {show_value(raw)} is in storage account {account!r}; this deployment "
            f"works only in {settings.account.name!r}.",
            remedy="Copy the files into the configured account, or deploy with that account.",
        )


def _container_from_netloc(
    netloc: str, scheme: str, raw: str, settings: Settings, what: str
) -> str:
    """az://CONTAINER and abfs[s]://CONTAINER[@ACCOUNT.dfs.core.windows.net]: the part
    before '@' is the container (not a user name); no password, no port."""
    shown = show_value(raw)
    if ":" in netloc:
        raise LocationNotAllowed(
            f"The {what} {shown} has a ':' in {netloc!r} (a password or a port); "
            f"{scheme}:// takes a container and, for abfs, @ACCOUNT.dfs.core.windows.net.",
            remedy=_remedy(settings),
        )
    container, at, host = netloc.partition("@")
    if not at:
        _require_account(raw, settings, what)
        return container
    if "@" in host or not host.lower().endswith(_PRODUCTION_SUFFIXES):
        raise LocationNotAllowed(
            f"The {what} {shown} has {host!r} after '@'; only CONTAINER@ACCOUNT.dfs.core."
            "windows.net (or .blob.) is accepted there, never a user name or another host.",
            remedy=_remedy(settings),
        )
    account, _, domain = host.lower().partition(".")
    if "." + domain not in _PRODUCTION_SUFFIXES:
        raise LocationNotAllowed(
            f"The {what} {shown} names the host {host!r}, which is not a storage account "
            "endpoint (ACCOUNT.dfs.core.windows.net).",
            remedy=_remedy(settings),
        )
    _check_account(account, raw, settings, what)
    return container


def _blob_from_http(
    raw: str, parts: SplitResult, scheme: str, settings: Settings, what: str, role: _Role
) -> Location:
    shown = show_value(raw)
    if "@" in parts.netloc:
        raise LocationNotAllowed(
            f"The {what} {shown} carries a user name or password (user:password@host); "
            "credentials never travel in a location.",
            remedy=_remedy(settings),
        )
    _require_account(raw, settings, what)
    assert settings.account is not None
    endpoint = urlsplit(settings.account.endpoint)
    host = parts.netloc.lower()
    if host.partition(":")[0].endswith(_PRODUCTION_SUFFIXES):
        if ":" in host:
            raise LocationNotAllowed(
                f"The {what} {shown} names a port; storage account endpoints take none.",
                remedy=_remedy(settings),
            )
        if scheme != "https":
            raise LocationNotAllowed(
                f"The {what} {shown} must use https.", remedy=_remedy(settings)
            )
        account, _, domain = host.partition(".")
        if "." + domain not in _PRODUCTION_SUFFIXES:
            raise LocationNotAllowed(
                f"The {what} {shown} names the host {host!r}, which is not a storage account "
                "endpoint (ACCOUNT.blob.core.windows.net).",
                remedy=_remedy(settings),
            )
        _check_account(account, raw, settings, what)
        return _blob_path(parts.path, raw, settings, what, role)
    # Emulator style: http://host:port/ACCOUNT/container/prefix, only for the configured one.
    if host == endpoint.netloc.lower() and scheme == endpoint.scheme:
        account_path = endpoint.path.strip("/")
        stripped = parts.path.lstrip("/")
        if account_path and not stripped.startswith(account_path + "/"):
            raise LocationNotAllowed(
                f"The {what} {shown} is not under the configured endpoint "
                f"{settings.account.endpoint}.",
                remedy=_remedy(settings),
            )
        return _blob_path(stripped[len(account_path) :], raw, settings, what, role)
    raise LocationNotAllowed(
        f"The {what} {shown} is not a blob URL of the configured storage account "
        f"({settings.account.endpoint}).",
        remedy=_remedy(settings),
    )


def _blob_path(path: str, raw: str, settings: Settings, what: str, role: _Role) -> Location:
    container, _, rest = path.lstrip("/").partition("/")
    return _blob(container, rest, raw, settings, what, role)


def _blob(
    container: str, path: str, raw: str, settings: Settings, what: str, role: _Role
) -> Location:
    shown = show_value(raw)
    if not container:
        raise BadRequest(f"The {what} {shown} names no container.", remedy=_remedy(settings))
    if not _CONTAINER_RE.fullmatch(container):
        raise BadRequest(
            f"The {what} {shown} names the container {show_value(container)}, which is not a "
            "valid container name (3-63 lowercase letters, digits and single hyphens).",
            remedy=_remedy(settings),
        )
    allowed = _allowed_containers(settings, role)
    if allowed and container not in allowed:
        raise LocationNotAllowed(
            f"The {what} {shown} is in container {container!r}, which this deployment may not "
            f"use (allowed: {', '.join(allowed)}).",
            remedy="Use one of the allowed containers, or ask the operator to add it to "
            "PIPELINE_ALLOWED_CONTAINERS.",
        )
    key = _decode(path, raw, settings, what)
    segments = [s for s in key.split("/") if s]  # empty segments ('a//b', '/a/') are dropped
    _check_segments(segments, raw, settings, what, dots=True)
    return Location("blob", container, "/".join(segments))


def _decode(path: str, raw: str, settings: Settings, what: str) -> str:
    """Percent-decode a path once, refusing encodings that would change how it splits or
    decodes further on: '.', '/', backslash, '%' (double encoding, checked at every level),
    control characters, and bytes that are not UTF-8."""
    shown = show_value(raw)
    level = path
    for _ in range(4):  # decoding can build new escapes: "%%32%65" decodes to "%2e"
        for escape in _ESCAPE_RE.finditer(level):
            byte = int(escape.group(1), 16)
            if byte >= 0x80:
                continue  # part of a UTF-8 sequence: the decoded text is checked below
            if unicodedata.category(chr(byte)) == "Cc":
                raise BadRequest(
                    f"The {what} {shown} percent-encodes control characters (U+{byte:04X} as "
                    f"{escape.group(0)!r}).",
                    remedy=_remedy(settings),
                )
            refused = _ENCODED_REFUSED.get(chr(byte))
            if refused is not None:
                raise LocationNotAllowed(
                    f"The {what} {shown} percent-encodes {refused} as {escape.group(0)!r}; "
                    "write '/' and names as they are, and never encode '.', '/', '\\' or '%'.",
                    remedy=_remedy(settings),
                )
        decoded = unquote(level, errors="replace")
        if decoded == level:
            break
        level = decoded
    try:
        key = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(
            f"The {what} {shown} has percent-encoded bytes that are not UTF-8 text.",
            remedy=_remedy(settings),
        ) from None
    problem = unsafe_character(key)
    if problem:
        raise BadRequest(
            f"The {what} {shown} decodes to {show_value(key)}, which contains {problem}.",
            remedy=_remedy(settings),
        )
    return key


def _check_segments(
    segments: list[str], raw: str, settings: Settings, what: str, *, dots: bool
) -> None:
    shown = show_value(raw)
    for segment in segments:
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise BadRequest(
                f"The {what} {shown} has a path segment of {len(segment.encode('utf-8'))} "
                f"bytes ({show_value(segment)}); at most {MAX_SEGMENT_BYTES} bytes.",
                remedy=_remedy(settings),
            )
        if not dots:
            continue
        if segment in (".", ".."):
            raise LocationNotAllowed(
                f"The {what} {shown} contains a {segment!r} path segment; give a path "
                "without '.' or '..' segments.",
                remedy=_remedy(settings),
            )
        # U+2025 TWO DOT LEADER, fullwidth dots and solidus... read as '..' or '/' once
        # normalised (NFKC) by some tool further on: refused like the characters they mimic.
        folded = unicodedata.normalize("NFKC", segment)
        if folded in (".", "..") or "/" in folded or "\\" in folded:
            raise LocationNotAllowed(
                f"The {what} {shown} has the segment {show_value(segment)}, which reads as "
                f"{folded!r} once Unicode-normalised (NFKC): a '..' or '/' in disguise.",
                remedy=_remedy(settings),
            )


def _allowed_containers(settings: Settings, role: _Role) -> tuple[str, ...]:
    """The container allow-list for a role; empty means any container in the account.

    The work area, store root and catalog come from the operator's settings, not from users:
    their containers need not be listed, and are allowed for the pipeline's own locations
    (and the URLs it derives), never for a request's source."""
    if role == "setting" or not settings.allowed_containers:
        return ()
    if role == "source":
        return settings.allowed_containers
    own = [area.container for _, area in _own_areas(settings) if not area.is_local]
    return tuple(dict.fromkeys([*settings.allowed_containers, *own]))


def _own_areas(settings: Settings) -> list[tuple[str, Location]]:
    """The work area, store root and catalog (blob or local), and when local paths are
    allowed the local host's state folders, by name."""
    areas = []
    for name, text in (
        ("work area", settings.work_area),
        ("store root", settings.store_root),
        ("catalog", settings.catalog),
    ):
        try:
            area = _parse(text, settings, name, "setting")
        except PipelineError:
            continue  # a broken setting is reported where it is used (Layout.from_settings)
        areas.append((name, area))
    if settings.allow_local_paths:
        try:
            states = dict.fromkeys([_resolved(DEFAULT_HOST_STATE), *_host_states])
        except RuntimeError:  # the current folder is under a link loop: nothing to protect
            states = dict.fromkeys(_host_states)
        areas += [("local host state", Location("local", "", path)) for path in states]
    return areas


def _refuse_own_areas(
    location: Location, raw: str, settings: Settings, what: str, subject: str = ""
) -> None:
    """A source may not be inside the pipeline's own work area, store root or catalog (or,
    local, the local host's state), nor above one of them (listing it would list the
    pipeline's working data)."""
    for name, area in _own_areas(settings):
        if (area.kind, area.container) == (location.kind, location.container) and (
            _is_below(location.path, area.path) or _is_below(area.path, location.path)
        ):
            shown = area.path if area.is_local else area.url
            raise LocationNotAllowed(
                f"{subject or f'The {what} {show_value(raw)}'} overlaps the pipeline's own "
                f"{name} ({shown}); a source may not read the pipeline's working data.",
                remedy="Give the folder that holds the NetCDF files, outside the work area, "
                + (
                    "store root, catalog and local host's state folder."
                    if location.is_local
                    else "store root and catalog."
                ),
            )


def _refuse_outside_roots(
    path: str, raw: str, settings: Settings, what: str, *, subject: str = ""
) -> None:
    """A local source (``path``: resolved) must not be a system folder, and must be below
    one of the local roots when any are set (Settings.local_roots)."""
    subject = subject or f"The {what} {show_value(raw)}"
    for folder in ("/", *_SYSTEM_FOLDERS):
        if path == folder or (folder != "/" and _is_below(path, folder)):
            where = "the file-system root" if path == "/" else folder
            raise LocationNotAllowed(
                f"{subject} is {'' if path == folder else 'inside '}{where}: neither the "
                "file-system root nor /proc, /sys or /dev (devices and kernel interfaces) is "
                "ever read as a source.",
                remedy="Give the folder that holds the NetCDF files.",
            )
    roots = _roots(settings)
    if roots and not any(_is_below(path, root) for root in roots):
        raise LocationNotAllowed(
            f"{subject} is outside the folders local sources may be read from "
            f"({', '.join(roots)}).",
            remedy="Give a folder below one of them, or add the folder that holds the files to "
            "PIPELINE_LOCAL_ROOTS (comma-separated folders) where the pipeline runs.",
        )


def _roots(settings: Settings) -> list[str]:
    """The local roots, resolved (a root that cannot be resolved holds nothing)."""
    roots = []
    for root in settings.local_roots:
        try:
            roots.append(_resolved(root))
        except RuntimeError:
            continue
    return roots


def _is_below(path: str, base: str) -> bool:
    base = base.rstrip("/")  # a local root "/" holds every path
    return not base or path == base or path.startswith(base + "/")


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


def public_store_url(store: Location, settings: Settings) -> str:
    """The URL a published store is given in its STAC asset: the https blob URL, or for a
    local store under the store root served at PIPELINE_STORE_URL, that URL; otherwise
    its file:// URL."""
    return _served(store, settings.store_root, settings.store_url, "store root", settings)


def public_catalog_url(document: Location, settings: Settings) -> str:
    """The URL a catalog document gives as its self link: the https blob URL, or for a
    local catalog served at PIPELINE_CATALOG_URL, that URL; otherwise its file:// URL."""
    return _served(document, settings.catalog, settings.catalog_url, "catalog location", settings)


def _served(location: Location, root_text: str, url: str, what: str, settings: Settings) -> str:
    if location.is_local and url:
        root = parse_location(root_text, settings, what=what)
        try:
            relative = location.relative_to(root)
        except ValueError:
            return http_url(location, settings)
        from urllib.parse import quote

        return f"{url}/{quote(relative)}"
    return http_url(location, settings)


def store_location(href: str, settings: Settings) -> Location:
    """The inverse of public_store_url: the store a STAC asset's href names."""
    if settings.store_url and href.startswith(settings.store_url + "/"):
        from urllib.parse import unquote

        root = parse_location(settings.store_root, settings, what="store root")
        return root.join(unquote(href[len(settings.store_url) + 1 :]))
    return parse_location(href, settings, what="store href")
