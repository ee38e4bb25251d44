"""Validate: read each file's header (never its data chunks) and say whether it can be combined.

Per file: sniff the format from the first bytes, read the header (h5py for HDF5/NetCDF4,
VirtualiZarr's NetCDF3 header reader for classic files), describe every variable (dtype,
shape, dimensions, storage layout, chunks, filters, CF encoding), then run the rules. A
rule is one small function that looks at the parsed header and yields findings; adding a
check means writing one function and decorating it with ``@rule`` (see "Rules" below).

Each report also summarises every 1-D dimension coordinate (time, lat, lon, level, ...): its
raw first and last values, a digest of all its values, whether it is ordered, and for time
its first and last dates, so the gate can compare grids and order files across the collection
without reading any file again (see "Coordinate summaries" in docs/findings.md).

Findings never hide a storage failure: ``PipelineError`` (and so the retryable
``StorageUnavailable``) always propagates, even when raised inside h5py's file callbacks.

The finding codes are stable and documented in docs/findings.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cftime
import h5py
import numpy as np
from obspec_utils.readers import BlockStoreReader
from obspec_utils.wrappers import RequestTrace

# NetCDF3: we reuse VirtualiZarr's header reader (private, but virtualizarr is pinned to
# 2.8.0 in requirements.txt) rather than writing our own, so validation reads the header
# exactly as the Generate stage's NetCDF3Parser will. If an upgrade moves it, the import
# fails loudly here and in the tests.
from virtualizarr.parsers.netcdf3 import _Header as NetCDF3Header
from virtualizarr.parsers.netcdf3 import _parse_header as parse_netcdf3_header
from virtualizarr.parsers.netcdf3 import _resolve_streaming_numrecs
from virtualizarr.parsers.netcdf3 import _Variable as NetCDF3Variable

from shared.io.formats import (
    HDF5_SIGNATURE,
    HDF5_SIGNATURE_OFFSETS,
    NETCDF3_VERSIONS,
    FileFormat,
    describe_magic,
    sniff,
)
from shared.io.storage import (
    ObjectInfo,
    Storage,
    storage_errors,  # the one place storage errors are mapped
)
from shared.model.errors import BadRequest, PipelineError, SourceNotFound
from shared.model.jsonsafe import json_safe
from shared.model.layout import Layout
from shared.model.locations import Location, parse_location
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.scan import load_manifest

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
Verdict = Literal["suitable", "suitable_with_warnings", "unsuitable"]
StorageLayout = Literal["chunked", "contiguous", "compact", "virtual", "classic"]
Monotonic = Literal["increasing", "decreasing", "constant", "no"]

REPORT_KIND = "validation-report"
# Bump when a rule is added or changed: stored reports of another version are redone.
# 2: coordinate summaries; unchunked-size rules; variable-length strings and plain HDF5 are
# errors.
REPORT_VERSION = 3

# Coordinates up to this many stored bytes are read whole (digest, order, duplicates); larger
# ones only at their two ends. A multiple of inline_max_bytes: 1 MiB with the defaults.
COORDINATE_READ_FACTOR = 16
# The formats that were checked end to end with a variable-length string variable: all of them
# read the strings back with the right values but another dtype (see variable_length_strings).
VLEN_STRING_FORMATS = ("kerchunk-json", "kerchunk-parquet", "icechunk")
# The chunk size the unchunked-variable findings suggest: a few MB per read.
_SUGGESTED_CHUNK_BYTES = 8 * 1024 * 1024
# "<unit> since <reference date>": the CF form of a time coordinate's units.
_TIME_UNITS = re.compile(r"^\s*[A-Za-z]+\s+since\s+\S", re.IGNORECASE)

# CF attributes that change how stored values decode; kept per variable in the report.
ENCODING_ATTRIBUTES = (
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    "units",
    "calendar",
    "bounds",
    "climatology",
)
# Packing attributes whose numeric type decides the decoded dtype (xarray, netCDF4).
PACKING_ATTRIBUTES = ("scale_factor", "add_offset")
# A variable with up to this many values shows them in its summary (scalars, small vectors).
STATIC_VALUES_SHOWN = 8

# HDF5 filters whose chunks VirtualiZarr 2.8 turns into codecs that zarr 3 then decodes.
# Read off virtualizarr/parsers/hdf/filters.py (_filter_to_codec) and checked end to end
# (write with h5py/hdf5plugin, parse with HDFParser, read back through zarr, compare):
#   1 deflate -> zlib, 2 shuffle, 3 fletcher32: numcodecs, exact.
#   32001 blosc, 32015 zstd: via hdf5plugin's filter name, numcodecs, exact.
# Everything else fails. filters.py does name lzf (32000), bzip2 (307) and lz4 (32004), but
# as numcodecs.imagecodecs_* codecs that zarr 3 has no implementation for, so reading fails
# ("An implementation for codec 'numcodecs.imagecodecs_lzf' is not available"); szip (4),
# scaleoffset (6), bitshuffle (32008), blosc2, zfp, sz and sz3 raise UnknownCodecError, and
# ids hdf5plugin does not know (nbit 5, anything unregistered) raise "ValueError: Unknown
# filter". Kerchunk silently drops such variables (docs/correctness.md), so the gate must stop them.
SUPPORTED_FILTERS: dict[int, str] = {
    1: "deflate",
    2: "shuffle",
    3: "fletcher32",
    32001: "blosc",
    32015: "zstd",
}

FILTER_NAMES: dict[int, str] = {
    **SUPPORTED_FILTERS,
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    307: "bzip2",
    32000: "lzf",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32017: "sz",
    32018: "fcidecomp",
    32024: "sz3",
    32026: "blosc2",
    32028: "sperr",
    32033: "htj2k",
}

# Attributes the HDF5 dimension-scale and netCDF-4 machinery keeps for itself.
_INTERNAL_ATTRIBUTES = frozenset(
    {
        "REFERENCE_LIST",
        "CLASS",
        "DIMENSION_LIST",
        "NAME",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_nc3_strict",
        "_NCProperties",
    }
)
_NETCDF_DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"
_HDF5_LAYOUTS: dict[int, StorageLayout] = {
    h5py.h5d.CHUNKED: "chunked",
    h5py.h5d.CONTIGUOUS: "contiguous",
    h5py.h5d.COMPACT: "compact",
    h5py.h5d.VIRTUAL: "virtual",
}
_HDF5_TRUNCATED = re.compile(
    r"truncated file: eof = (\d+), sblock->base_addr = \d+, stored_eof = (\d+)"
)
# No complete HDF5 superblock plus root group fits in fewer bytes: a shorter file with the
# HDF5 signature was cut inside its superblock (h5py then says "bad superblock version").
_HDF5_MIN_FILE = 96
_SUMMARY_ERRORS = 5
_SUMMARY_MESSAGE_CHARS = 400


# -- data model ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One thing wrong (error) or worth knowing (warning) about one file."""

    code: str
    severity: Severity
    message: str
    variable: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "variable": self.variable,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            code=str(data["code"]),
            severity=data["severity"],
            message=str(data["message"]),
            variable=data.get("variable"),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class VariableInfo:
    """What the header says about one variable. ``nbytes`` is the uncompressed size;
    ``chunks`` is the stored chunk shape (None for contiguous, compact and classic
    non-record variables; one record per chunk for classic record variables)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    dimensions: tuple[str, ...]
    layout: StorageLayout
    chunks: tuple[int, ...] | None
    filters: tuple[dict[str, Any], ...]
    encoding: dict[str, Any]
    nbytes: int
    # The stored numeric type of scale_factor and add_offset ("float32", "float64", ...):
    # JSON keeps their value, not their precision, and the precision decides the decoded dtype.
    attribute_types: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "dimensions": list(self.dimensions),
            "layout": self.layout,
            "chunks": None if self.chunks is None else list(self.chunks),
            "filters": [dict(f) for f in self.filters],
            "encoding": self.encoding,
            "nbytes": self.nbytes,
            "attribute_types": dict(self.attribute_types),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariableInfo:
        chunks = data.get("chunks")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            shape=tuple(int(n) for n in data["shape"]),
            dimensions=tuple(str(d) for d in data["dimensions"]),
            layout=data["layout"],
            chunks=None if chunks is None else tuple(int(n) for n in chunks),
            filters=tuple(dict(f) for f in data.get("filters") or ()),
            encoding=dict(data.get("encoding") or {}),
            nbytes=int(data["nbytes"]),
            attribute_types=dict(data.get("attribute_types") or {}),
        )


@dataclass(frozen=True)
class StaticSummary:
    """What one file holds in one variable that does not run along time (a scalar coordinate
    such as height, a grid mapping, a land mask, cell areas): the gate checks it is the same
    in every file, since a store keeps one copy. ``digest`` is the sha256 of the raw stored
    values (as CoordinateSummary's), null when the variable is above the read limit or could
    not be read; ``values`` are the raw values of a variable of up to STATIC_VALUES_SHOWN
    elements (for messages), else null."""

    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    digest: str | None
    values: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "nbytes": self.nbytes,
            "digest": self.digest,
            "values": self.values,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StaticSummary:
        values = data.get("values")
        return cls(
            shape=tuple(int(n) for n in data.get("shape") or ()),
            dtype=str(data["dtype"]),
            nbytes=int(data["nbytes"]),
            digest=data.get("digest"),
            values=None if values is None else list(values),
        )


def summarize_static(var: VariableInfo, values: np.ndarray | None) -> StaticSummary:
    if values is None:
        return StaticSummary(var.shape, var.dtype, var.nbytes, None)
    flat = np.asarray(values).reshape(-1)
    shown = [_raw_value(v) for v in flat] if flat.size <= STATIC_VALUES_SHOWN else None
    digest = hashlib.sha256(_canonical_bytes(flat)).hexdigest()
    return StaticSummary(var.shape, var.dtype, var.nbytes, digest, shown)


@dataclass(frozen=True)
class CoordinateSummary:
    """What one file says about one 1-D dimension coordinate (a variable whose only dimension
    has its own name): the gate compares grids and orders files with it.

    ``first``/``last`` are the raw stored values (before scale_factor, add_offset or time
    decoding; NaN as "NaN"); null for an empty coordinate. ``digest`` is the sha256 of all raw
    values as little-endian bytes of their dtype (strings: each value's UTF-8 bytes after its
    length as 8 little-endian bytes), so equal grids have equal digests whatever the file's
    byte order. A coordinate above the read limit is read at its two ends only: ``digest``,
    ``monotonic`` and ``duplicates`` are then null. ``monotonic`` is strict ("increasing"
    needs every step to go up); 0 or 1 values count as "increasing". For time-like units
    ("<unit> since <date>") ``first_decoded``/``last_decoded`` are ISO 8601 dates in the
    coordinate's calendar (YYYY-MM-DDTHH:MM:SS[.ffffff]); null otherwise, for a missing value,
    or when the units cannot be decoded."""

    size: int
    dtype: str
    first: Any
    last: Any
    digest: str | None
    monotonic: Monotonic | None
    duplicates: bool | None
    units: str | None = None
    calendar: str | None = None
    first_decoded: str | None = None
    last_decoded: str | None = None

    @property
    def complete(self) -> bool:
        """Were all values read (digest, monotonic and duplicates known)?"""
        return self.digest is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "dtype": self.dtype,
            "first": self.first,
            "last": self.last,
            "digest": self.digest,
            "monotonic": self.monotonic,
            "duplicates": self.duplicates,
            "units": self.units,
            "calendar": self.calendar,
            "first_decoded": self.first_decoded,
            "last_decoded": self.last_decoded,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordinateSummary:
        duplicates = data.get("duplicates")
        return cls(
            size=int(data["size"]),
            dtype=str(data["dtype"]),
            first=data.get("first"),
            last=data.get("last"),
            digest=data.get("digest"),
            monotonic=data.get("monotonic"),
            duplicates=None if duplicates is None else bool(duplicates),
            units=data.get("units"),
            calendar=data.get("calendar"),
            first_decoded=data.get("first_decoded"),
            last_decoded=data.get("last_decoded"),
        )


@dataclass(frozen=True)
class FileReport:
    """One file's validation report: written to Layout.report(url, etag) as JSON."""

    url: str
    etag: str
    size: int
    format: FileFormat | None
    format_detail: str
    verdict: Verdict
    findings: tuple[Finding, ...]
    variables: tuple[VariableInfo, ...]
    dimensions: dict[str, int]
    attributes: dict[str, Any]
    bytes_read: int
    requests: int
    # Every 1-D dimension coordinate whose values could be read, by name, in file order.
    coordinates: dict[str, CoordinateSummary] = field(default_factory=dict)
    # Every variable that does not run along a time coordinate (see StaticSummary).
    statics: dict[str, StaticSummary] = field(default_factory=dict)
    # The file's groups below the root, by path ("/science"), with their variables' names.
    groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    def variable(self, name: str) -> VariableInfo:
        for info in self.variables:
            if info.name == name:
                return info
        raise KeyError(f"{self.url} has no variable {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": REPORT_KIND,
            "version": REPORT_VERSION,
            "url": self.url,
            "etag": self.etag,
            "size": self.size,
            "format": self.format,
            "format_detail": self.format_detail,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "variables": [v.to_dict() for v in self.variables],
            "dimensions": dict(self.dimensions),
            "coordinates": {name: c.to_dict() for name, c in self.coordinates.items()},
            "statics": {name: c.to_dict() for name, c in self.statics.items()},
            "groups": {path: list(names) for path, names in self.groups.items()},
            "attributes": self.attributes,
            "bytes_read": self.bytes_read,
            "requests": self.requests,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileReport:
        if data.get("kind", REPORT_KIND) != REPORT_KIND:
            raise ValueError(f"not a validation report: kind {data.get('kind')!r}")
        return cls(
            url=str(data["url"]),
            etag=str(data["etag"]),
            size=int(data["size"]),
            format=data.get("format"),
            format_detail=str(data.get("format_detail") or ""),
            verdict=data["verdict"],
            findings=tuple(Finding.from_dict(f) for f in data.get("findings") or ()),
            variables=tuple(VariableInfo.from_dict(v) for v in data.get("variables") or ()),
            dimensions={str(k): int(v) for k, v in (data.get("dimensions") or {}).items()},
            attributes=dict(data.get("attributes") or {}),
            bytes_read=int(data.get("bytes_read", 0)),
            requests=int(data.get("requests", 0)),
            coordinates={
                str(name): CoordinateSummary.from_dict(summary)
                for name, summary in (data.get("coordinates") or {}).items()
            },
            statics={
                str(name): StaticSummary.from_dict(summary)
                for name, summary in (data.get("statics") or {}).items()
            },
            groups={str(k): list(v) for k, v in (data.get("groups") or {}).items()},
        )


@dataclass(frozen=True)
class ValidationBatch:
    """What one validate activity returns: small JSON whatever the batch size."""

    manifest_url: str
    start: int
    stop: int
    files: int
    reused: int
    verdicts: dict[str, int]
    findings: dict[str, int]
    bytes_read: int
    requests: int
    seconds: float
    errors: tuple[tuple[str, str, str], ...]  # the first few (url, code, message)
    error_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_url": self.manifest_url,
            "start": self.start,
            "stop": self.stop,
            "files": self.files,
            "reused": self.reused,
            "verdicts": dict(self.verdicts),
            "findings": dict(self.findings),
            "bytes_read": self.bytes_read,
            "requests": self.requests,
            "seconds": self.seconds,
            "errors": [{"url": u, "code": c, "message": m} for u, c, m in self.errors],
            "error_count": self.error_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationBatch:
        return cls(
            manifest_url=str(data["manifest_url"]),
            start=int(data["start"]),
            stop=int(data["stop"]),
            files=int(data["files"]),
            reused=int(data["reused"]),
            verdicts={str(k): int(v) for k, v in data["verdicts"].items()},
            findings={str(k): int(v) for k, v in data["findings"].items()},
            bytes_read=int(data["bytes_read"]),
            requests=int(data["requests"]),
            seconds=float(data["seconds"]),
            errors=tuple((e["url"], e["code"], e["message"]) for e in data["errors"]),
            error_count=int(data["error_count"]),
        )


def verdict_of(findings: Iterable[Finding]) -> Verdict:
    severities = {f.severity for f in findings}
    if "error" in severities:
        return "unsuitable"
    return "suitable_with_warnings" if "warning" in severities else "suitable"


# -- the parsed header the rules look at -----------------------------------------------------
@dataclass
class FileHeader:
    """Everything read from one file's header: the input of every rule."""

    url: str
    size: int
    format: FileFormat
    format_detail: str
    variables: list[VariableInfo] = field(default_factory=list)
    dimensions: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    # HDF5 only: does any dataset use HDF5 dimension scales (what makes HDF5 a NetCDF4 file)?
    dimension_scales: bool = True
    groups: list[str] = field(default_factory=list)  # sub-groups of the root group
    # Every group below the root, by path, with its variables' names (for messages).
    group_variables: dict[str, list[str]] = field(default_factory=dict)
    # Variables whose dtype needs special handling: "vlen_string", "vlen", "reference", "object".
    special_dtypes: dict[str, str] = field(default_factory=dict)
    external_storage: list[str] = field(default_factory=list)  # raw data in another file
    # Dimensions whose length differs between variables (phony dimensions of plain HDF5).
    dimension_clashes: dict[str, list[int]] = field(default_factory=dict)
    # Problems met while reading (a variable whose header could not be read).
    problems: list[Finding] = field(default_factory=list)
    # Summaries of the 1-D dimension coordinates whose values could be read.
    coordinates: dict[str, CoordinateSummary] = field(default_factory=dict)
    # Summaries of the variables that do not run along a time coordinate.
    statics: dict[str, StaticSummary] = field(default_factory=dict)


Rule = Callable[[FileHeader, Settings], Iterable[Finding]]
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    """Register a rule: a function (header, settings) -> findings. Runs in definition order."""
    RULES.append(function)
    return function


# -- validating one file ------------------------------------------------------------------
def validate_file(
    info: ObjectInfo, settings: Settings, storage: Storage, *, group: str | None = None
) -> FileReport:
    """Validate one file from its header (the variables of ``group``, default the root
    group). Findings describe the file; storage failures (PipelineError, e.g.
    StorageUnavailable) propagate so the activity can retry."""
    location = parse_location(info.url, settings, what="file")
    storage, trace = _traced(storage)
    first_request = len(trace.requests)
    header, findings, fmt, detail = _read_header(info, location, storage, group)
    if header is not None:
        findings = list(header.problems)
        for check in RULES:
            findings.extend(check(header, settings))
    reads = trace.requests[first_request:]
    return FileReport(
        url=info.url,
        etag=info.etag,
        size=info.size,
        format=fmt,
        format_detail=detail,
        verdict=verdict_of(findings),
        findings=tuple(findings),
        variables=tuple(header.variables) if header is not None else (),
        dimensions=dict(header.dimensions) if header is not None else {},
        attributes=dict(header.attributes) if header is not None else {},
        bytes_read=sum(r.length for r in reads),
        requests=len(reads),
        coordinates=dict(header.coordinates) if header is not None else {},
        statics=dict(header.statics) if header is not None else {},
        groups=dict(header.group_variables) if header is not None else {},
    )


def coordinate_read_limit(settings: Settings) -> int:
    """Coordinates of up to this many stored bytes are read whole; larger ones at their ends."""
    return settings.inline_max_bytes * COORDINATE_READ_FACTOR


def _traced(storage: Storage) -> tuple[Storage, RequestTrace]:
    """The storage itself when it counts requests, else a counting one with the same settings."""
    if storage.trace is not None:
        return storage, storage.trace
    traced = storage.traced()
    assert traced.trace is not None
    return traced, traced.trace


def _read_header(
    info: ObjectInfo, location: Location, storage: Storage, group: str | None = None
) -> tuple[FileHeader | None, list[Finding], FileFormat | None, str]:
    """(header, [], format, detail), or (None, [the finding that says why not], format, detail)."""
    if info.size == 0:
        return None, [_empty_file(info.url)], None, ""
    reader = _GuardedReader(storage.reader(location, size=info.size), location, info.size)
    try:
        head = reader.read(min(info.size, storage.settings.read_block_size))
        fmt = _sniff(reader, head, info.size)
        if fmt is None:
            return None, [_not_netcdf(info.url, head)], None, ""
        reader.seek(0)
        limit = coordinate_read_limit(storage.settings)
        if fmt == "netcdf3":
            detail = NETCDF3_VERSIONS.get(head[3], "NetCDF3")
            if group:
                return (
                    None,
                    [_group_missing(info.url, group, {}, "a NetCDF3 classic file")],
                    fmt,
                    detail,
                )
            header, findings = _read_netcdf3(
                info.url, info.size, reader, limit, storage.settings.read_block_size
            )
        else:
            header, findings = _read_hdf5(info.url, info.size, reader, limit, group)
            detail = "HDF5"
    finally:
        # h5py's file access list holds the reader (a C reference, invisible to the garbage
        # collector); the reader must not hold the exception, whose traceback holds that list,
        # or the cycle is never freed and HDF5 crashes the process at exit while freeing it.
        reader.failure = None
        reader.close()
    return header, findings, fmt, header.format_detail if header is not None else detail


def _empty_file(url: str) -> Finding:
    return Finding(
        "empty_file",
        "error",
        f"{url} is empty (0 bytes): upload the file again, or remove it from the source.",
    )


def _not_netcdf(url: str, head: bytes) -> Finding:
    looks_like = describe_magic(head[:64])
    return Finding(
        "not_netcdf",
        "error",
        f"{url} is neither NetCDF4/HDF5 nor NetCDF3 classic (it looks like {looks_like}): "
        "remove it from the source or narrow the file patterns.",
        details={"looks_like": looks_like, "first_bytes": head[:16].hex(" ")},
    )


def _sniff(reader: _GuardedReader, head: bytes, size: int) -> FileFormat | None:
    """sniff() on the first block, then the later user-block offsets HDF5 allows (only files
    that are not NetCDF at offset 0 pay for those few extra reads)."""
    fmt = sniff(head)
    if fmt is not None:
        return fmt
    for offset in HDF5_SIGNATURE_OFFSETS:
        if len(head) < offset + len(HDF5_SIGNATURE) <= size:
            reader.seek(offset)
            if reader.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return "hdf5"
    return None


class _GuardedReader:
    """A file-like reader that turns storage client errors into ours and remembers the first
    one, so that a library reading through it (h5py) can never turn a storage failure into a
    finding. With ``refuse_past_end``, a read that would run past the end returns b"" without
    fetching anything (a corrupt NetCDF3 length must not make us read the whole file)."""

    def __init__(self, inner: BlockStoreReader, location: Location, size: int) -> None:
        self._inner = inner
        self._location = location
        self.size = size
        self.refuse_past_end = False
        self.failure: PipelineError | None = None

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


def _library_message(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def _unreadable(
    url: str,
    fmt: FileFormat,
    error: BaseException,
    variable: str | None = None,
    what: Literal["header", "values"] = "header",
) -> Finding:
    kind = "NetCDF3 classic" if fmt == "netcdf3" else "HDF5/NetCDF4"
    where = f"variable {variable!r} in {url}" if variable else url
    message = _library_message(error)
    check = "`ncdump -h`" if what == "header" else f"`ncdump -v {variable}`"
    return Finding(
        "unreadable",
        "error",
        f"The {kind} {what} of {where} cannot be read ({message}): check the file with "
        f"{check}, and replace it with a good copy.",
        variable=variable,
        details={"format": fmt, "error": message, "exception": type(error).__name__},
    )


def _truncated(
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


# -- NetCDF3 classic ----------------------------------------------------------------------------
def _read_netcdf3(
    url: str, size: int, reader: _GuardedReader, limit: int, block_size: int
) -> tuple[FileHeader | None, list[Finding]]:
    reader.refuse_past_end = True
    try:
        parsed = parse_netcdf3_header(reader)
    except PipelineError:
        raise
    except Exception as exc:  # the parser raises ValueError/KeyError/UnicodeError on bad input
        reader.raise_failure(exc)
        if "truncated" in str(exc):
            return None, [_truncated(url, "netcdf3", size, None, "inside its NetCDF3 header")]
        return None, [_unreadable(url, "netcdf3", exc)]
    header_end = reader.tell()
    if parsed.numrecs == -1:  # streaming: the writer never recorded the record count
        parsed.numrecs = _resolve_streaming_numrecs(parsed, size)
    expected = _netcdf3_data_end(parsed)
    if size < expected:
        return None, [_truncated(url, "netcdf3", size, expected)]
    header = FileHeader(
        url=url,
        size=size,
        format="netcdf3",
        format_detail=NETCDF3_VERSIONS[parsed.version],
        dimensions={
            name: (parsed.numrecs if n == 0 else n) for name, n in parsed.dimensions.items()
        },
        attributes=_json_attributes(parsed.attributes.items()),
    )
    reader.seek(0)
    packing = _netcdf3_packing_types(reader.read(header_end), parsed)
    for var in parsed.variables:
        shape = (parsed.numrecs, *var.shape[1:]) if var.is_record else var.shape
        header.variables.append(
            VariableInfo(
                name=var.name,
                dtype=var.dtype.str,
                shape=tuple(shape),
                dimensions=tuple(var.dimensions),
                layout="classic",
                chunks=(1, *var.shape[1:]) if var.is_record else None,
                filters=(),
                encoding=_encoding(var.attributes.items()),
                nbytes=math.prod(shape) * var.dtype.itemsize,
                attribute_types=packing.get(var.name, {}),
            )
        )
    for var, info in zip(parsed.variables, header.variables, strict=True):
        if _is_dimension_coordinate(info):
            values, complete = _netcdf3_values(var, parsed, reader, limit, block_size)
            header.coordinates[info.name] = summarize_coordinate(info, values, complete)
    for var, info in zip(parsed.variables, header.variables, strict=True):
        if not _is_static(info, header) or var.is_record:
            continue
        values = None
        if info.nbytes <= limit:
            reader.seek(var.begin)
            data = reader.read(info.nbytes)
            if len(data) == info.nbytes:
                values = np.frombuffer(data, dtype=var.dtype).reshape(info.shape)
        header.statics[info.name] = summarize_static(info, values)
    return header, []


_NC3_TYPES = {1: "int8", 3: "int16", 4: "int32", 5: "float32", 6: "float64", 7: "uint8",
              8: "uint16", 9: "uint32", 10: "int64", 11: "uint64"}  # fmt: skip


def _netcdf3_packing_types(raw: bytes, parsed: NetCDF3Header) -> dict[str, dict[str, str]]:
    """The stored types of scale_factor and add_offset per variable, from the raw header
    (the parser gives attribute values as Python numbers). Each attribute is its name
    (length, bytes, padding to 4) followed by its nc_type; the occurrences of a name follow
    the order of the variables that have it. Nothing is said when the count does not match."""
    width = 8 if parsed.version == 5 else 4
    found: dict[str, dict[str, str]] = {}
    for attribute in PACKING_ATTRIBUTES:
        name = attribute.encode()
        needle = len(name).to_bytes(width, "big") + name + b"\x00" * (-len(name) % 4)
        positions = [m.end() for m in re.finditer(re.escape(needle), raw)]
        owners = ["/"] if attribute in parsed.attributes else []
        owners += [v.name for v in parsed.variables if attribute in v.attributes]
        if len(positions) != len(owners):
            continue
        for owner, at in zip(owners, positions, strict=True):
            kind = _NC3_TYPES.get(int.from_bytes(raw[at : at + 4], "big"))
            if kind is not None:
                found.setdefault(owner, {})[attribute] = kind
    return found


def _netcdf3_values(
    var: NetCDF3Variable, parsed: NetCDF3Header, reader: _GuardedReader, limit: int, block_size: int
) -> tuple[np.ndarray, bool]:
    """(values, True), or (the first and last value, False) when reading them all would cost
    more than ``limit`` bytes. A non-record coordinate is contiguous at ``begin``. A record
    coordinate (time) has one value per record, ``recsize`` bytes apart, between the other
    record variables' slices: read the records' whole span in one request when it is small,
    else value by value (one block each) when few, else only the two ends."""
    dtype = var.dtype
    count = parsed.numrecs if var.is_record else (var.shape[0] if var.shape else 0)
    stride = parsed.recsize if var.is_record else dtype.itemsize
    if count == 0:
        return np.empty(0, dtype=dtype), True
    span = (count - 1) * stride + dtype.itemsize
    if span <= limit:
        reader.seek(var.begin)
        data = reader.read(span)
        values = np.ndarray((count,), dtype=dtype, buffer=data, strides=(stride,))
        return values.copy(), True
    if var.is_record and count * dtype.itemsize <= limit and count * block_size <= limit:
        return _netcdf3_read_at(reader, [var.begin + i * stride for i in range(count)], dtype), True
    return _netcdf3_read_at(reader, [var.begin, var.begin + (count - 1) * stride], dtype), False


def _netcdf3_read_at(reader: _GuardedReader, offsets: list[int], dtype: np.dtype) -> np.ndarray:
    parts = []
    for offset in offsets:
        reader.seek(offset)
        parts.append(reader.read(dtype.itemsize))
    return np.frombuffer(b"".join(parts), dtype=dtype)


def _netcdf3_data_end(parsed: NetCDF3Header) -> int:
    """The least file size that holds every variable's data (trailing padding not required)."""
    end = 0
    records = [v for v in parsed.variables if v.is_record]
    for var in parsed.variables:
        if not var.is_record and 0 not in var.shape:
            end = max(end, var.begin + math.prod(var.shape) * var.dtype.itemsize)
    if records and parsed.numrecs > 0:
        last_record = (parsed.numrecs - 1) * parsed.recsize
        for var in records:
            nbytes = math.prod(var.shape[1:]) * var.dtype.itemsize
            end = max(end, var.begin + last_record + nbytes)
    return end


# -- HDF5 / NetCDF4 ---------------------------------------------------------------------------
def _group_missing(url: str, group: str, groups: dict[str, list[str]], kind: str) -> Finding:
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


def _read_hdf5(
    url: str, size: int, reader: _GuardedReader, limit: int, group: str | None = None
) -> tuple[FileHeader | None, list[Finding]]:
    try:
        h5file = h5py.File(reader, "r")
    except PipelineError:
        raise
    except Exception as exc:
        reader.raise_failure(exc)
        match = _HDF5_TRUNCATED.search(str(exc))
        if match:
            return None, [_truncated(url, "hdf5", size, int(match.group(2)))]
        if size < _HDF5_MIN_FILE:
            return None, [_truncated(url, "hdf5", size, None, "inside its HDF5 superblock")]
        return None, [_unreadable(url, "hdf5", exc)]
    try:
        with h5file:
            chosen = h5file.get(group or "/")
            if not isinstance(chosen, h5py.Group):
                groups = _group_variables(h5file, limit=50)
                groups.pop("/", None)
                return None, [_group_missing(url, str(group), groups, "an HDF5 file")]
            header = _describe_hdf5(url, size, h5file, reader, chosen)
            _read_hdf5_coordinates(header, chosen, reader, limit)
            _read_hdf5_statics(header, chosen, reader, limit)
            return header, []
    except PipelineError:
        raise
    except Exception as exc:
        reader.raise_failure(exc)
        return None, [_unreadable(url, "hdf5", exc)]


def _describe_hdf5(
    url: str, size: int, f: h5py.File, reader: _GuardedReader, group: h5py.Group
) -> FileHeader:
    """The header of one group of the file (the root group unless another was chosen): its
    variables, their dimensions as VirtualiZarr will name them, its sub-groups."""
    root_attrs = set(f.attrs.keys())
    header = FileHeader(
        url=url,
        size=size,
        format="hdf5",
        format_detail="",
        attributes=_json_attributes(_hdf5_attributes(group.attrs)),
    )
    scales = False
    lengths: dict[str, list[int]] = {}  # every length each dimension has, in file order
    for name in group:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            continue  # soft and external links: not variables of this file
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            header.groups.append(name)
            header.group_variables.update(_group_variables(obj))
            continue
        if not isinstance(obj, h5py.Dataset):
            continue  # a committed datatype
        try:
            is_scale = h5py.h5ds.is_scale(obj.id)
            scales = scales or is_scale or "DIMENSION_LIST" in obj.attrs
            if is_scale and _is_dimension_only(obj):
                lengths.setdefault(name, []).append(int(obj.shape[0]) if obj.shape else 0)
                continue
            variable = _hdf5_variable(name, obj, is_scale, header, str(group.name))
        except PipelineError:
            raise
        except Exception as exc:
            reader.raise_failure(exc)
            header.problems.append(_unreadable(url, "hdf5", exc, variable=name))
            continue
        header.variables.append(variable)
        for dim, length in zip(variable.dimensions, variable.shape, strict=True):
            lengths.setdefault(dim, []).append(length)
    # An unlimited dimension is as long as its longest variable (netCDF-4 does not keep a
    # dimension-only scale's own length up to date); other differences are clashes.
    header.dimensions = {dim: max(found) for dim, found in lengths.items()}
    header.dimension_clashes = {d: sorted(set(v)) for d, v in lengths.items() if len(set(v)) > 1}
    header.dimension_scales = scales
    if "_NCProperties" in root_attrs or "_nc3_strict" in root_attrs:
        model = " classic model" if "_nc3_strict" in root_attrs else ""
        header.format_detail = f"NetCDF4{model} (HDF5)"
    elif scales:
        header.format_detail = "HDF5 with netCDF dimension scales"
    else:
        header.format_detail = "HDF5 without netCDF dimension scales"
    return header


def _group_variables(group: h5py.Group, limit: int = 50) -> dict[str, list[str]]:
    """A group and the groups below it, by path, with the names of their variables (the
    datasets that are not netCDF dimension-only scales), at most ``limit`` groups."""
    found: dict[str, list[str]] = {}
    pending = [group]
    while pending and len(found) < limit:
        current = pending.pop(0)
        names = []
        for name in current:
            obj = current.get(name)
            if isinstance(obj, h5py.Group):
                pending.append(obj)
            elif isinstance(obj, h5py.Dataset) and not _is_dimension_only(obj):
                names.append(name)
        found[str(current.name)] = names
    return found


def _read_hdf5_statics(
    header: FileHeader, f: h5py.File, reader: _GuardedReader, limit: int
) -> None:
    """Summarise each variable that does not run along a time coordinate from its values
    (read whole, through the same reader, up to ``limit`` bytes)."""
    for var in header.variables:
        if not _is_static(var, header):
            continue
        values = None
        readable = all(spec["id"] in SUPPORTED_FILTERS for spec in var.filters)
        local = var.layout != "virtual" and var.name not in header.external_storage
        if var.nbytes <= limit and readable and local and var.name not in header.special_dtypes:
            try:
                values = np.asarray(f[var.name][()])
            except PipelineError:
                raise
            except Exception as exc:
                reader.raise_failure(exc)
                values = None
        header.statics[var.name] = summarize_static(var, values)


def _is_static(var: VariableInfo, header: FileHeader) -> bool:
    """A variable that runs along no time coordinate and is not a dimension coordinate: the
    same in every file of a collection concatenated along time (the gate checks it)."""
    if _is_dimension_coordinate(var):
        return False
    times = {
        name
        for name, c in header.coordinates.items()
        if c.units is not None and _TIME_UNITS.match(c.units)
    }
    return not times.intersection(var.dimensions)


def _read_hdf5_coordinates(
    header: FileHeader, f: h5py.Group, reader: _GuardedReader, limit: int
) -> None:
    """Summarise each dimension coordinate from its values (read through the same reader)."""
    for var in header.variables:
        if not _is_dimension_coordinate(var):
            continue
        if var.layout == "virtual" or var.name in header.external_storage:
            continue  # h5py would read other files (of this host); unsupported_layout says why
        dataset = f[var.name]
        try:
            if var.nbytes <= limit:
                values, complete = dataset[()], True
            else:  # the two ends only: one chunk (or a few bytes) each
                values, complete = np.concatenate([dataset[:1], dataset[-1:]]), False
        except PipelineError:
            raise
        except Exception as exc:  # e.g. a filter this h5py cannot decode
            reader.raise_failure(exc)
            # With a filter outside SUPPORTED_FILTERS, unsupported_filter already says why.
            if all(spec["id"] in SUPPORTED_FILTERS for spec in var.filters):
                header.problems.append(
                    _unreadable(header.url, "hdf5", exc, variable=var.name, what="values")
                )
            continue
        header.coordinates[var.name] = summarize_coordinate(var, np.asarray(values), complete)


def _is_dimension_only(dataset: h5py.Dataset) -> bool:
    """A netCDF-4 dimension without a coordinate variable (no data, not a variable)."""
    name = dataset.attrs.get("NAME")
    return isinstance(name, bytes | np.bytes_) and bytes(name).startswith(_NETCDF_DIMENSION_ONLY)


def _hdf5_variable(
    name: str, ds: h5py.Dataset, is_scale: bool, header: FileHeader, group: str = "/"
) -> VariableInfo:
    plist = ds.id.get_create_plist()
    layout = _HDF5_LAYOUTS.get(plist.get_layout(), "contiguous")
    if plist.get_external_count() > 0:
        header.external_storage.append(name)
    special = _special_dtype(ds.dtype)
    if special:
        header.special_dtypes[name] = special
    filters = []
    for i in range(plist.get_nfilters()):
        code, _flags, _values, stored_name = plist.get_filter(i)
        label = FILTER_NAMES.get(code) or stored_name.decode(errors="replace") or "unknown"
        filters.append({"id": int(code), "name": label})
    shape = tuple(int(n) for n in ds.shape)
    return VariableInfo(
        name=name,
        dtype=ds.dtype.str,
        shape=shape,
        dimensions=_hdf5_dimensions(ds, is_scale, group),
        layout=layout,
        chunks=tuple(int(n) for n in ds.chunks) if layout == "chunked" and ds.chunks else None,
        filters=tuple(filters),
        encoding=_encoding(_hdf5_attributes(ds.attrs, only=ENCODING_ATTRIBUTES)),
        nbytes=math.prod(shape) * ds.dtype.itemsize,
        attribute_types={
            name: np.asarray(value).dtype.name
            for name, value in _hdf5_attributes(ds.attrs, only=PACKING_ATTRIBUTES)
            if isinstance(value, np.ndarray | np.generic)
        },
    )


def _hdf5_dimensions(ds: h5py.Dataset, is_scale: bool, group: str = "/") -> tuple[str, ...]:
    """Dimension names as VirtualiZarr's HDF parser will give them (_dataset_dims: the scale's
    path without the group's prefix)."""
    names = []
    prefix = "" if group == "/" else group

    def local(path: str) -> str:
        return path.removeprefix(prefix).lstrip("/")

    for axis in range(ds.ndim):
        attached = ds.dims[axis]
        if len(attached) == 1:
            names.append(local(str(attached[0].name)))
        elif is_scale:
            names.append(local(str(ds.name)))
        elif len(attached) == 0:
            names.append(f"phony_dim_{axis}")
        else:
            raise ValueError(
                f"axis {axis} has {len(attached)} dimension scales attached; "
                "readers need exactly one"
            )
    return tuple(names)


def _special_dtype(dtype: np.dtype) -> str | None:
    if h5py.check_vlen_dtype(dtype) in (str, bytes):
        return "vlen_string"
    if dtype.kind != "O":
        return None  # compound types with string fields are read at parse time: fine
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "vlen"
    return "object"


def _hdf5_attributes(
    attrs: h5py.AttributeManager, only: tuple[str, ...] | None = None
) -> Iterator[tuple[str, Any]]:
    """(name, value) of the attributes that are not HDF5/netCDF-4 internals."""
    names = [n for n in attrs if n in only] if only is not None else list(attrs)
    for name in names:
        if name in _INTERNAL_ATTRIBUTES:
            continue
        try:
            value = attrs[name]
        except PipelineError:
            raise
        except Exception as exc:  # e.g. an attribute type h5py cannot convert
            value = f"<unreadable attribute: {_library_message(exc)}>"
        yield name, value


def _attribute_value(value: Any) -> Any:
    """A JSON-safe attribute value; a one-element array is a scalar (as netCDF reads it)."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    return json_safe(value)


def _json_attributes(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {str(name): _attribute_value(value) for name, value in items}


def _encoding(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {name: _attribute_value(value) for name, value in items if name in ENCODING_ATTRIBUTES}


# -- coordinate summaries -----------------------------------------------------------------------
def _is_dimension_coordinate(var: VariableInfo) -> bool:
    """A 1-D variable whose only dimension has its own name (time, lat, lon, level, ...)."""
    return var.dimensions == (var.name,) and len(var.shape) == 1


def summarize_coordinate(
    var: VariableInfo, values: np.ndarray, complete: bool
) -> CoordinateSummary:
    """The summary of one coordinate from its raw values (all of them when ``complete``, else
    its first and last)."""
    values = np.asarray(values).reshape(-1)
    first = _raw_value(values[0]) if values.size else None
    last = _raw_value(values[-1]) if values.size else None
    monotonic: Monotonic | None = None
    duplicates: bool | None = None
    digest: str | None = None
    if complete:
        digest = hashlib.sha256(_canonical_bytes(values)).hexdigest()
        monotonic, duplicates = _order(values)
    units = var.encoding.get("units")
    calendar = var.encoding.get("calendar")
    summary = CoordinateSummary(
        size=int(var.shape[0]),
        dtype=var.dtype,
        first=first,
        last=last,
        digest=digest,
        monotonic=monotonic,
        duplicates=duplicates,
        units=None if units is None else str(units),
        calendar=None if calendar is None else str(calendar),
    )
    if summary.units is None or not _TIME_UNITS.match(summary.units) or not values.size:
        return summary
    return replace(
        summary,
        first_decoded=_decoded_time(values[0], var.encoding),
        last_decoded=_decoded_time(values[-1], var.encoding),
    )


def _raw_value(value: Any) -> Any:
    """A stored value as JSON: numbers as they are (float32 widens exactly), strings as text."""
    return json_safe(value.item() if isinstance(value, np.generic) else value)


def _canonical_bytes(values: np.ndarray) -> bytes:
    """The values as little-endian bytes of their dtype; strings as (length, UTF-8) pairs."""
    if values.dtype.kind in "biufcmMSUV":
        little = values.astype(values.dtype.newbyteorder("<"), copy=False)
        return np.ascontiguousarray(little).tobytes()
    parts = []
    for value in values:
        text = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts += [len(text).to_bytes(8, "little"), text]
    return b"".join(parts)


def _order(values: np.ndarray) -> tuple[Monotonic, bool]:
    """(strict monotonicity, any value repeated). NaN compares as neither up nor down."""
    if values.size < 2:
        return "increasing", False
    before, after = values[:-1], values[1:]
    with np.errstate(invalid="ignore"):
        if bool(np.all(after > before)):
            return "increasing", False
        if bool(np.all(after < before)):
            return "decreasing", False
        monotonic: Monotonic = "constant" if bool(np.all(after == before)) else "no"
    try:
        duplicates = int(np.unique(values).size) < values.size  # NaNs count as equal
    except TypeError:  # values numpy cannot sort (mixed objects): compare as text
        duplicates = len({str(v) for v in values}) < values.size
    return monotonic, duplicates


def _decoded_time(raw: Any, encoding: dict[str, Any]) -> str | None:
    """One raw time value as an ISO date in the coordinate's calendar, decoded as xarray does
    (missing values masked, then scale_factor/add_offset, then cftime); None if it cannot be."""
    number = raw.item() if isinstance(raw, np.generic) else raw
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    if (isinstance(number, float) and math.isnan(number)) or number in _missing_values(encoding):
        return None
    scale, offset = encoding.get("scale_factor"), encoding.get("add_offset")
    if isinstance(scale, int | float):
        number = number * scale
    if isinstance(offset, int | float):
        number = number + offset
    calendar = str(encoding.get("calendar") or "standard").lower()
    try:
        # Real-world calendars give Python datetimes where they can, the others cftime dates;
        # both print the same way (_iso).
        date = cftime.num2date(
            number, str(encoding["units"]), calendar=calendar, only_use_cftime_datetimes=False
        )
    except Exception:  # cftime raises ValueError/TypeError/OverflowError on bad units or dates
        return None
    return _iso(date)


def _missing_values(encoding: dict[str, Any]) -> list[int | float]:
    found: list[int | float] = []
    for key in ("_FillValue", "missing_value"):
        value = encoding.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int | float) and not isinstance(item, bool):
                found.append(item)
    return found


def _iso(date: Any) -> str:
    """YYYY-MM-DDTHH:MM:SS[.ffffff] for datetime and cftime dates alike (sorts as text for
    years 0-9999)."""
    text = (
        f"{date.year:04d}-{date.month:02d}-{date.day:02d}"
        f"T{date.hour:02d}:{date.minute:02d}:{date.second:02d}"
    )
    return text + (f".{date.microsecond:06d}" if date.microsecond else "")


# -- rules --------------------------------------------------------------------------------------
# Each rule looks at one parsed header and yields findings. Messages name the file, the
# variable and the value, and say what to do; codes are documented in docs/findings.md.


@rule
def no_variables(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    if header.variables or header.problems:
        return
    if header.group_variables:
        yield Finding(
            "no_variables",
            "error",
            f"{header.url} has no variables in its root group; its groups hold "
            f"{_groups_listing(header)}. If the data sit in a group, submit with the option "
            '"group" naming it; else remove the file from the source.',
            details={"groups": list(header.groups), "group_variables": header.group_variables},
        )
        return
    yield Finding(
        "no_variables",
        "error",
        f"{header.url} has no variables in its root group: check that this is the file "
        "you meant, or remove it from the source.",
        details={"groups": list(header.groups)},
    )


@rule
def unsupported_filter(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    for var in header.variables:
        for spec in var.filters:
            if spec["id"] in SUPPORTED_FILTERS:
                continue
            yield Finding(
                "unsupported_filter",
                "error",
                f"Variable {var.name!r} in {header.url} is stored with an HDF5 filter "
                f"({spec['name']}, id {spec['id']}) that the reference readers cannot decode: "
                "rewrite the file with deflate (zlib) compression, e.g. "
                "`h5repack -f GZIP=4 IN.nc OUT.nc`.",
                variable=var.name,
                details={"filter_id": spec["id"], "filter_name": spec["name"]},
            )


@rule
def unsupported_layout(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    # VirtualiZarr 2.8 gives such variables no chunk references: they read back as fill values.
    for var in header.variables:
        if var.layout == "compact":
            how = "HDF5 compact storage (its values live inside the header)"
        elif var.layout == "virtual":
            how = "an HDF5 virtual dataset (its values live in other datasets or files)"
        elif var.name in header.external_storage:
            how = "HDF5 external storage (its values live in a separate raw file)"
        else:
            continue
        yield Finding(
            "unsupported_layout",
            "error",
            f"Variable {var.name!r} in {header.url} uses {how}, which byte-range references "
            "cannot point to, so it would read back as fill values: rewrite the file with "
            f"contiguous or chunked storage, e.g. `h5repack -l {var.name}:CONTI IN.nc OUT.nc`.",
            variable=var.name,
            details={"layout": var.layout, "external": var.name in header.external_storage},
        )


@rule
def unchunked_variable(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    """A variable stored in one piece is read whole: a warning above unchunked_warn_bytes,
    unsuitable above unchunked_max_bytes. Data variables and coordinates alike."""
    for var in header.variables:
        if var.name in header.special_dtypes or var.layout in ("compact", "virtual"):
            continue  # other rules refuse these; a vlen size says nothing about the strings
        piece = _one_piece(var)
        if piece is None:
            continue
        nbytes, how = piece
        if nbytes > settings.unchunked_max_bytes:
            code, severity, limit, setting = (
                "unchunked_variable_too_large",
                "error",
                settings.unchunked_max_bytes,
                "PIPELINE_UNCHUNKED_MAX_BYTES",
            )
        elif nbytes > settings.unchunked_warn_bytes:
            code, severity, limit, setting = (
                "large_unchunked_variable",
                "warning",
                settings.unchunked_warn_bytes,
                "PIPELINE_UNCHUNKED_WARN_BYTES",
            )
        else:
            continue
        chunks = _suggested_chunks(
            var, min(_SUGGESTED_CHUNK_BYTES, settings.unchunked_warn_bytes // 2)
        )
        consequence = (
            "which is too much to fetch for every read"
            if severity == "error"
            else "so every read, even of a single value, fetches all of it"
        )
        yield Finding(
            code,
            severity,
            f"Variable {var.name!r} in {header.url} is {how} of {_size(nbytes)} (above "
            f"{setting}, {_size(limit)}), {consequence}: rechunk it, e.g. "
            f"{_rechunk_command(header, var, chunks)}, or raise {setting} if reading "
            "that much at a time is acceptable.",
            variable=var.name,
            details={
                "bytes": nbytes,
                "layout": var.layout,
                "limit": limit,
                "suggested_chunks": list(chunks),
            },
        )


def _one_piece(var: VariableInfo) -> tuple[int, str] | None:
    """(bytes, how) of the piece every read of ``var`` fetches whole, when that piece is all
    of the variable (or, for a NetCDF3 record variable, all of one record); else None."""
    if var.nbytes == 0:
        return None
    if var.layout == "contiguous":
        return var.nbytes, "stored contiguously (unchunked), one piece"
    if var.layout == "chunked" and var.chunks is not None:
        if all(c >= n for c, n in zip(var.chunks, var.shape, strict=True)):
            return var.nbytes, "stored as a single chunk"
        return None
    if var.layout == "classic" and var.chunks is None:
        return var.nbytes, "a NetCDF3 variable, stored in one piece"
    if var.layout == "classic":
        # A NetCDF3 record variable is never read whole: its values are interleaved record by
        # record with the other record variables, and the references point at one record of
        # it per chunk. What every read fetches whole is one record (one step along the
        # unlimited dimension), so the thresholds apply to that; with one record it is all of
        # the variable.
        return var.nbytes // var.shape[0], (
            f"a NetCDF3 record variable whose every step along {var.dimensions[0]} is one piece"
        )
    return None


def _suggested_chunks(var: VariableInfo, target: int) -> tuple[int, ...]:
    """A chunk shape of at most ``target`` bytes where the trailing axes allow it: 1 along the
    leading axes, whole trailing axes."""
    itemsize = var.nbytes // math.prod(var.shape) if math.prod(var.shape) else 1
    chunks = list(var.shape)
    for axis in range(len(chunks)):
        inner = itemsize * math.prod(chunks[axis + 1 :])
        if inner * chunks[axis] <= target:
            break
        chunks[axis] = max(1, target // inner)
    return tuple(chunks)


def _rechunk_command(header: FileHeader, var: VariableInfo, chunks: tuple[int, ...]) -> str:
    """How to rewrite the file with ``chunks`` for ``var``, as commands in backquotes."""
    spec = ",".join(f"{d}/{c}" for d, c in zip(var.dimensions, chunks, strict=True))
    if header.format == "netcdf3":  # chunking needs netCDF-4 output
        return f"`nccopy -k nc4 -c {spec} IN.nc OUT.nc`"
    h5repack = f"`h5repack -l {var.name}:CHUNK={'x'.join(map(str, chunks))} IN.nc OUT.nc`"
    if any(d.startswith("phony_dim_") for d in var.dimensions):
        return h5repack  # nccopy needs dimension names
    return f"`nccopy -c {spec} IN.nc OUT.nc` or {h5repack}"


@rule
def unsupported_dtype(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    # VirtualiZarr 2.8's HDF parser raises NotImplementedError for object dtypes other than
    # variable-length strings (vlen arrays, object and region references).
    kinds = {
        "vlen": "variable-length arrays",
        "reference": "HDF5 object references",
        "object": "an HDF5 object type",
    }
    for name, special in header.special_dtypes.items():
        if special not in kinds:
            continue
        yield Finding(
            "unsupported_dtype",
            "error",
            f"Variable {name!r} in {header.url} holds {kinds[special]}, which VirtualiZarr "
            "cannot reference: remove the variable from the file or store it with a "
            "fixed-size type.",
            variable=name,
            details={"kind": special},
        )


@rule
def variable_length_strings(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    # Checked end to end (tests/test_validate.py, virtualizarr 2.8.0, xarray 2026.9, zarr 3.4):
    # VirtualiZarr copies the strings into the references and every format reads the right
    # text back, but as another dtype than xarray reads from the file (<U6 there; object in
    # kerchunk JSON and Parquet, numpy StringDType in Icechunk). Verify compares dtypes, so the
    # run would fail after generating and combining everything; stop it here instead. Fixed-
    # length character arrays (NC_CHAR with a string-length dimension) publish exactly.
    formats = " and ".join(VLEN_STRING_FORMATS)
    for name, special in header.special_dtypes.items():
        if special != "vlen_string":
            continue
        yield Finding(
            "variable_length_strings",
            "error",
            f"Variable {name!r} in {header.url} holds variable-length strings, which no output "
            f"format publishes as the file holds them ({formats} all read the text back with "
            "another dtype, so Verify refuses the store): store the variable as fixed-length "
            f"characters instead (xarray: encoding={{{name!r}: {{'dtype': 'S1'}}}}; netCDF4: "
            "a char variable with a string-length dimension), or remove it "
            f"(`ncks -x -v {name} IN.nc OUT.nc`).",
            variable=name,
            details={"formats": list(VLEN_STRING_FORMATS)},
        )


@rule
def not_netcdf_hdf5(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    # Without dimension scales no dimension has a name. VirtualiZarr's HDF parser names each
    # variable's axes phony_dim_0, phony_dim_1, ... by position, so time, lat and lon all
    # become phony_dim_0 and clash, while xarray and netCDF-C number the same axes by their
    # lengths: the two do not even agree on one file. Checked end to end in every format:
    # with concat_dim "time" or "phony_dim_0" the combine fails (no coordinate variable to
    # concatenate along, or conflicting sizes). Refuse here, saying how to name dimensions.
    if header.format != "hdf5" or header.dimension_scales:
        return
    shaped = [var for var in header.variables if var.dimensions]
    if not shaped:
        return  # only scalars: there is nothing to name
    clashes = "; ".join(
        f"{dim} has lengths {', '.join(map(str, lengths))}"
        for dim, lengths in header.dimension_clashes.items()
    )
    example = max(shaped, key=lambda var: len(var.shape))
    coordinate = next(
        (
            var.name
            for var in shaped
            if var is not example and len(var.shape) == 1 and var.shape[0] == example.shape[0]
        ),
        "time",
    )
    yield Finding(
        "not_netcdf_hdf5",
        "error",
        f"{header.url} is plain HDF5, not NetCDF4: it has no dimension scales, so none of its "
        "dimensions has a name and there is no named dimension to concatenate along (readers "
        "make up phony_dim_0, phony_dim_1, ..., and VirtualiZarr and xarray number them "
        "differently"
        + (f"; here they also clash: {clashes}" if clashes else "")
        + "). Write the file with netCDF4 (or xarray) and named dimensions, or add dimension "
        f"scales with h5py: f[{coordinate!r}].make_scale({coordinate!r}); "
        f"f[{example.name!r}].dims[0].attach_scale(f[{coordinate!r}]), and so on for each "
        "axis of each variable (create float datasets with fillvalue=np.nan: with h5py's "
        "default fill value 0, kerchunk stores read real zeros as missing).",
        details={
            "dimensions": dict(header.dimensions),
            "clashes": dict(header.dimension_clashes),
        },
    )


def data_variables(header: FileHeader) -> list[str]:
    """Variables that hold data: not dimension coordinates, not the bounds or climatology of
    a coordinate, and with at least one dimension (a grid mapping is not data)."""
    bounds = {
        str(var.encoding.get(key))
        for var in header.variables
        for key in ("bounds", "climatology")
        if var.encoding.get(key)
    }
    return [
        var.name
        for var in header.variables
        if var.shape and not _is_dimension_coordinate(var) and var.name not in bounds
    ]


def _groups_listing(header: FileHeader, limit: int = 6) -> str:
    shown = [
        f"{path} ({', '.join(names[:8]) or 'no variables'}{', ...' if len(names) > 8 else ''})"
        for path, names in list(header.group_variables.items())[:limit]
    ]
    more = len(header.group_variables) - limit
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


@rule
def no_data_variables(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    """Nothing is ever published with zero data variables: a file whose (chosen) group holds
    coordinates only is refused, naming the groups that hold the data."""
    if not header.variables or header.problems or data_variables(header):
        return
    where = f"; its groups hold {_groups_listing(header)}" if header.group_variables else ""
    yield Finding(
        "no_data_variables",
        "error",
        f"{header.url} has no data variable in its root group, only "
        f"{', '.join(v.name for v in header.variables)}{where}. A store of it would hold "
        'coordinates only. If the data sit in a group, submit with the option "group" '
        "naming it; else remove the file from the source.",
        details={"variables": [v.name for v in header.variables], "groups": header.group_variables},
    )


@rule
def packed_single_precision(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    """Packed data (scale_factor/add_offset) decode to the float type the attributes' own
    type implies (xarray: _choose_float_dtype). A virtual store keeps attribute values in
    JSON, without their precision, so its readers decode float32-packed data as float64:
    other values than the file's. Refused, with the one-line fix."""
    from xarray.coding.variables import _choose_float_dtype

    for var in header.variables:
        types = var.attribute_types
        packing = {k: var.encoding[k] for k in PACKING_ATTRIBUTES if k in var.encoding}
        if not packing or not types:
            continue
        stored = np.dtype(var.dtype)
        in_file = {k: np.dtype(types.get(k, "float64")).type(v) for k, v in packing.items()}
        in_store = {k: float(v) for k, v in packing.items()}
        try:
            file_dtype = np.dtype(_choose_float_dtype(stored, in_file))
            store_dtype = np.dtype(_choose_float_dtype(stored, in_store))
        except (TypeError, ValueError):
            continue
        if file_dtype == store_dtype:
            continue
        fix = " ".join(f"-a {k},{var.name},m,d,{var.encoding[k]!r}" for k in packing)
        described = ", ".join(f"{k} ({types.get(k, 'of unknown type')})" for k in packing)
        yield Finding(
            "packed_single_precision",
            "error",
            f"{var.name} in {header.url} is packed with {described}: "
            f"netCDF4 and xarray decode it as {file_dtype}, but a virtual store keeps attributes "
            f"as JSON numbers, so its readers would decode it as {store_dtype}, with other "
            f"values. Store the packing attributes as double (ncatted {fix} FILE), or publish "
            "the variable from files written that way.",
            variable=var.name,
            details={
                "attribute_types": dict(types),
                "file_dtype": str(file_dtype),
                "store_dtype": str(store_dtype),
            },
        )


@rule
def subgroups_ignored(header: FileHeader, settings: Settings) -> Iterator[Finding]:
    if not header.groups or not (header.variables or header.problems):
        return  # no_variables already names the groups
    if not data_variables(header):
        return  # no_data_variables names them
    yield Finding(
        "subgroups_ignored",
        "warning",
        f"{header.url} has the groups {', '.join(header.groups)}, whose variables are not "
        "combined (only the root group is): move them to the root group if they are needed.",
        details={"groups": list(header.groups)},
    )


# -- batches and stored reports -----------------------------------------------------------------
def validate_batch(
    manifest_url: str,
    start: int,
    stop: int,
    settings: Settings,
    storage: Storage | None = None,
    *,
    refresh: bool = False,
) -> ValidationBatch:
    """Validate manifest files [start, stop), write each report, return a small summary.

    A report already stored for (url, ETag) is reused (activities run at least once), unless
    ``refresh`` (a full run: after a library upgrade, validate with the new code)."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    manifest = load_manifest(manifest_url, settings, storage)
    if start < 0 or stop < start:
        raise BadRequest(f"The batch [{start}, {stop}) of {manifest_url} is not a valid range.")
    files = manifest.files[start:stop]
    layout = Layout.from_settings(settings)
    reading, _ = _traced(storage)
    verdicts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    errors: list[tuple[str, str, str]] = []
    error_count = reused = bytes_read = requests = 0
    for info in files:
        file_started = time.perf_counter()
        target = layout.report(info.url, info.etag, manifest.group)
        report = None if refresh else _stored_report(target, storage)
        was_reused = report is not None
        if report is None:
            report = validate_file(info, settings, reading, group=manifest.group)
            storage.write_json(target, report.to_dict())
            bytes_read += report.bytes_read
            requests += report.requests
        else:
            reused += 1
        verdicts[report.verdict] += 1
        codes.update(f.code for f in report.findings)
        for finding in report.errors:
            error_count += 1
            if len(errors) < _SUMMARY_ERRORS:
                errors.append((info.url, finding.code, finding.message[:_SUMMARY_MESSAGE_CHARS]))
        emit(
            log,
            "file validated",
            logging.DEBUG,
            stage="validate",
            dataset=manifest.dataset_id,
            url=info.url,
            verdict=report.verdict,
            codes=[f.code for f in report.findings],
            bytes=0 if was_reused else report.bytes_read,
            seconds=round(time.perf_counter() - file_started, 3),
            reused=was_reused,
        )
    summary = ValidationBatch(
        manifest_url=manifest_url,
        start=start,
        stop=start + len(files),
        files=len(files),
        reused=reused,
        verdicts={v: verdicts[v] for v in ("suitable", "suitable_with_warnings", "unsuitable")},
        findings=dict(sorted(codes.items())),
        bytes_read=bytes_read,
        requests=requests,
        seconds=round(time.perf_counter() - started, 3),
        errors=tuple(errors),
        error_count=error_count,
    )
    emit(
        log,
        "validate batch done",
        stage="validate",
        dataset=manifest.dataset_id,
        batch=[summary.start, summary.stop],
        file_count=summary.files,
        reused=summary.reused,
        bytes=summary.bytes_read,
        requests=summary.requests,
        seconds=summary.seconds,
        verdicts=summary.verdicts,
        findings=summary.findings,
    )
    return summary


def _stored_report(location: Location, storage: Storage) -> FileReport | None:
    """The report already written at ``location``, or None (absent, unreadable or written by
    an older set of rules: redo it)."""
    try:
        document = storage.read_json(location)
        if document.get("version") != REPORT_VERSION:
            return None
        return FileReport.from_dict(document)
    except SourceNotFound:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring an unreadable stored report %s; validating again", location.url)
        return None


def load_report(
    url: str,
    etag: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    group: str | None = None,
) -> FileReport:
    """The stored report of one file at one ETag (raises SourceNotFound if there is none)."""
    storage = storage or Storage(settings)
    location = Layout.from_settings(settings).report(url, etag, group)
    return FileReport.from_dict(storage.read_json(location))


# -- text for people ------------------------------------------------------------------------------
_VERDICT_TEXT = {
    "suitable": "SUITABLE",
    "suitable_with_warnings": "SUITABLE WITH WARNINGS",
    "unsuitable": "UNSUITABLE",
}
_MAX_ROWS = 25


def render_report(report: FileReport) -> str:
    """A compact text block: verdict first, then findings, then a short variable table."""
    lines = [f"{_VERDICT_TEXT.get(report.verdict, report.verdict.upper())}  {report.url}"]
    kind = report.format_detail or (report.format or "unknown format")
    lines.append(
        f"  {kind}, {_size(report.size)}; read {_size(report.bytes_read)} "
        f"in {report.requests} request{'s' if report.requests != 1 else ''}"
    )
    for finding in report.findings:
        lines.append(f"  {finding.severity.upper():7} {finding.code}: {finding.message}")
    if report.dimensions:
        lines.append("  dimensions: " + ", ".join(f"{k}={v}" for k, v in report.dimensions.items()))
    for name, summary in report.coordinates.items():
        first, last = summary.first_decoded or summary.first, summary.last_decoded or summary.last
        order = summary.monotonic or "ends only"
        repeats = ", duplicates" if summary.duplicates else ""
        lines.append(
            f"  coordinate {name}: {summary.size} values {first} .. {last} ({order}{repeats})"
        )
    if report.variables:
        rows = [
            ("variable", "dtype", "shape", "dimensions", "layout", "chunks", "filters", "encoding")
        ]
        for var in report.variables[:_MAX_ROWS]:
            rows.append(
                (
                    var.name,
                    var.dtype,
                    "x".join(map(str, var.shape)) or "scalar",
                    ",".join(var.dimensions) or "-",
                    var.layout,
                    "x".join(map(str, var.chunks)) if var.chunks else "-",
                    ",".join(f["name"] for f in var.filters) or "-",
                    " ".join(f"{k}={_short(v)}" for k, v in var.encoding.items()) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
        if len(report.variables) > _MAX_ROWS:
            lines.append(f"  ... and {len(report.variables) - _MAX_ROWS} more variables")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.7g}" if isinstance(value, float) else str(value)


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"
