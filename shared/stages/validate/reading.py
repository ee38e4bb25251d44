"""What both header readers share: a guarded reader that never lets a storage failure become
a finding, request counting, JSON-safe attributes, and the findings for a file that cannot be
read (unreadable, truncated, a missing group)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import h5py
import numpy as np
from obspec_utils.wrappers import RequestTrace

from shared.io.formats import FileFormat
from shared.io.readers import AdaptiveReader
from shared.io.storage import (
    Storage,
    storage_errors,  # the one place storage errors are mapped
)
from shared.model.errors import PipelineError
from shared.model.jsonsafe import json_safe
from shared.model.locations import Location
from shared.stages.validate.model import ENCODING_ATTRIBUTES, Finding


def traced_storage(storage: Storage) -> tuple[Storage, RequestTrace]:
    """The storage itself when it counts requests, else a counting one with the same settings."""
    if storage.trace is not None:
        return storage, storage.trace
    traced = storage.traced()
    assert traced.trace is not None
    return traced, traced.trace


class GuardedReader:
    """A file-like reader that turns storage client errors into ours and remembers the first
    one, so that a library reading through it (h5py) can never turn a storage failure into a
    finding. With ``refuse_past_end``, a read that would run past the end returns b"" without
    fetching anything (a corrupt NetCDF3 length must not make us read the whole file)."""

    def __init__(
        self, inner: AdaptiveReader, location: Location, size: int, close: bool = True
    ) -> None:
        self._inner = inner
        self._location = location
        self.size = size
        self.refuse_past_end = False
        self.failure: PipelineError | None = None
        self._close = close  # False: the caller's reader, which the caller closes

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            with storage_errors(self._location, "read"):
                yield
        except PipelineError as exc:
            self.failure = self.failure or exc
            raise

    def read(self, size: int = -1, /) -> bytes:
        if self.refuse_past_end and size >= 0 and self._inner.tell() + size > self.size:
            return b""
        with self._guard():
            return self._inner.read(size)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        with self._guard():
            return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        if self._close:
            self._inner.close()

    def raise_failure(self, error: BaseException) -> None:
        """Re-raise a storage failure that a library turned into its own exception."""
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, PipelineError):
                raise cause
            cause = cause.__cause__ or cause.__context__
        if self.failure is not None:
            raise self.failure


# -- findings for what cannot be read --------------------------------------------------------
def library_message(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def unreadable(
    url: str,
    fmt: FileFormat,
    error: BaseException,
    variable: str | None = None,
    what: Literal["header", "values"] = "header",
) -> Finding:
    kind = "NetCDF3 classic" if fmt == "netcdf3" else "HDF5/NetCDF4"
    where = f"variable {variable!r} in {url}" if variable else url
    message = library_message(error)
    check = "`ncdump -h`" if what == "header" else f"`ncdump -v {variable}`"
    return Finding(
        "unreadable",
        "error",
        f"The {kind} {what} of {where} cannot be read ({message}): check the file with "
        f"{check}, and replace it with a good copy.",
        variable=variable,
        details={"format": fmt, "error": message, "exception": type(error).__name__},
    )


def truncated(
    url: str, fmt: FileFormat, size: int, expected: int | None, where: str = ""
) -> Finding:
    if expected is not None:
        share = f"{size / expected:.0%}"
        what = f"it has {size:,} of the {expected:,} bytes its header describes ({share})"
    else:
        what = f"it ends after {size:,} bytes, {where}"
    return Finding(
        "truncated",
        "error",
        f"{url} is truncated: {what}; upload the complete file again.",
        details={"format": fmt, "size": size, "expected_size": expected},
    )


def group_missing(url: str, group: str, groups: dict[str, list[str]], kind: str) -> Finding:
    listing = "; ".join(
        f"{path} ({', '.join(names[:8]) or 'no variables'})"
        for path, names in list(groups.items())[:6]
    )
    has = f" Its groups: {listing}." if listing else " It has no groups."
    return Finding(
        "group_missing",
        "error",
        f"{url} has no group {group!r} ({kind}).{has} Give the group that holds the data "
        '(the option "group"), or remove the file from the source.',
        details={"group": group, "groups": groups},
    )


# -- attributes as JSON -----------------------------------------------------------------------
def _attribute_value(value: Any) -> Any:
    """A JSON-safe attribute value; a one-element array is a scalar (as netCDF reads it)."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    return json_safe(value)


def json_attributes(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {str(name): _attribute_value(value) for name, value in items}


def cf_encoding(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {name: _attribute_value(value) for name, value in items if name in ENCODING_ATTRIBUTES}
