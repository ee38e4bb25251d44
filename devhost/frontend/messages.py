"""One request as devhost's handlers see it, the answers they give, and the values they
read from requests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Incoming:
    """One request: the method, the target as sent (path and query, percent-escapes kept:
    handlers unescape each path segment themselves, so an escaped '/' stays inside its
    segment), the headers and the body."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes

    @cached_property
    def path(self) -> str:
        return urlsplit(self.target).path

    @cached_property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        return header(self.headers, name)


@dataclass
class Reply:
    """One HTTP answer: status, headers and body bytes."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(
        status,
        json.dumps(body, indent=1).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def error_reply(status: int, code: str, message: str, **extra: Any) -> Reply:
    """Our own errors: {"error": {"code", "message"}}. The Durable endpoints also carry the
    extension's "Message"/"ExceptionMessage" keys, which the SDK client reads."""
    return json_reply(status, {"error": {"code": code, "message": message}, **extra})


def durable_error(status: int, code: str, message: str) -> Reply:
    return error_reply(status, code, message, Message=message, ExceptionMessage=message)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value by its lowercase name (None: not sent)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone); None for none or not a time."""
    if not text:
        return None
    try:
        from dateutil.parser import isoparse

        moment = isoparse(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
