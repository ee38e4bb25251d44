"""The validation data model: findings, what a file's header says (variables, coordinate and
static summaries), one file's stored report, a batch's summary, and the verdict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.io.formats import FileFormat

Severity = Literal["error", "warning"]
Verdict = Literal["suitable", "suitable_with_warnings", "unsuitable"]
StorageLayout = Literal["chunked", "contiguous", "compact", "virtual", "classic"]
Monotonic = Literal["increasing", "decreasing", "constant", "no"]

REPORT_KIND = "validation-report"
# Bump when a rule is added or changed: stored reports of another version are redone.
# 2: coordinate summaries; unchunked-size rules; variable-length strings and plain HDF5 are
# errors.
# 4: packed_single_precision is a warning for float32-packed variables (published: the store
# decodes float64, verify holds it to float32 rounding).
# 5: the unchunked-size rules apply to compressed variables only (plain ones are cut).
REPORT_VERSION = 5

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

    def decoded_dtypes(self) -> dict[str, tuple[str, str]]:
        """Variables a store decodes to another dtype than the file does, with (the file's,
        the store's): those packed with float32 scale_factor/add_offset (the warning
        packed_single_precision), float32 from the file and float64 from the store."""
        return {
            f.variable: (str(f.details["file_dtype"]), str(f.details["store_dtype"]))
            for f in self.warnings
            if f.code == "packed_single_precision" and f.variable
        }

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


def size_text(nbytes: int) -> str:
    """A byte count for people: "512 B", "1.5 MB" (the rules' messages and the text report)."""
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"
