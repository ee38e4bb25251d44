"""Validate one file: sniff its format from the first bytes, read its header with the right
reader, run the rules, and make its report."""

from __future__ import annotations

from shared.io.formats import (
    HDF5_SIGNATURE,
    HDF5_SIGNATURE_OFFSETS,
    NETCDF3_VERSIONS,
    FileFormat,
    describe_magic,
    sniff,
)
from shared.io.readers import AdaptiveReader, first_read
from shared.io.storage import ObjectInfo, Storage
from shared.model.locations import Location, parse_location
from shared.model.settings import Settings
from shared.stages.validate.coordinates import coordinate_read_limit
from shared.stages.validate.hdf5 import GroupReader, read_hdf5
from shared.stages.validate.model import FileHeader, FileReport, Finding, verdict_of
from shared.stages.validate.netcdf3 import read_netcdf3
from shared.stages.validate.reading import GuardedReader, group_missing, traced_storage
from shared.stages.validate.rules import RULES


def validate_file(
    info: ObjectInfo,
    settings: Settings,
    storage: Storage,
    *,
    group: str | None = None,
    reader: AdaptiveReader | None = None,
    also: GroupReader | None = None,
    location: Location | None = None,
) -> FileReport:
    """Validate one file from its header (the variables of ``group``, default the root
    group). Findings describe the file; storage failures (PipelineError, e.g.
    StorageUnavailable) propagate so the activity can retry. ``reader``: read through it
    (and leave it open: the caller builds the file's references from what it holds).
    ``also``: for an HDF5 file whose header was read, called with the open group.
    ``location``: info.url as the caller parsed it already."""
    location = location or parse_location(info.url, settings, what="file")
    storage, trace = traced_storage(storage)
    first_request = len(trace.requests)
    header, findings, fmt, detail = _read_header(info, location, storage, group, reader, also)
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


def _read_header(
    info: ObjectInfo,
    location: Location,
    storage: Storage,
    group: str | None = None,
    given: AdaptiveReader | None = None,
    also: GroupReader | None = None,
) -> tuple[FileHeader | None, list[Finding], FileFormat | None, str]:
    """(header, [], format, detail), or (None, [the finding that says why not], format, detail)."""
    if info.size == 0:
        return None, [_empty_file(info.url)], None, ""
    inner = given if given is not None else storage.reader(location, size=info.size)
    reader = GuardedReader(inner, location, info.size, close=given is None)
    try:
        head = reader.read(first_read(info.size, storage.settings.read_block_size))
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
                    [group_missing(info.url, group, {}, "a NetCDF3 classic file")],
                    fmt,
                    detail,
                )
            header, findings = read_netcdf3(
                info.url, info.size, reader, limit, storage.settings.read_block_size
            )
        else:
            header, findings = read_hdf5(info.url, info.size, reader, limit, group, also)
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


def _sniff(reader: GuardedReader, head: bytes, size: int) -> FileFormat | None:
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
