"""The NetCDF3 classic header reader: variables, dimensions and attributes from the header,
coordinate and static values from their byte ranges, and truncation against the sizes the
header describes."""

from __future__ import annotations

import math
import re

import numpy as np

# NetCDF3: we reuse VirtualiZarr's header reader (private, but virtualizarr is pinned to
# 2.8.0 in requirements.txt) rather than writing our own, so validation reads the header
# exactly as the Generate stage's NetCDF3Parser will. If an upgrade moves it, the import
# fails loudly here and in the tests.
from virtualizarr.parsers.netcdf3 import _Header as NetCDF3Header
from virtualizarr.parsers.netcdf3 import _parse_header as parse_netcdf3_header
from virtualizarr.parsers.netcdf3 import _resolve_streaming_numrecs
from virtualizarr.parsers.netcdf3 import _Variable as NetCDF3Variable

from shared.io.formats import NETCDF3_VERSIONS
from shared.model.errors import PipelineError
from shared.stages.validate.coordinates import (
    is_dimension_coordinate,
    is_static,
    summarize_coordinate,
    summarize_static,
)
from shared.stages.validate.model import (
    PACKING_ATTRIBUTES,
    FileHeader,
    Finding,
    VariableInfo,
)
from shared.stages.validate.reading import (
    GuardedReader,
    cf_encoding,
    json_attributes,
    truncated,
    unreadable,
)


def read_netcdf3(
    url: str, size: int, reader: GuardedReader, limit: int, block_size: int
) -> tuple[FileHeader | None, list[Finding]]:
    """(header, []), or (None, [the finding that says why not]) for a header that cannot be
    read or a file shorter than its header says."""
    reader.refuse_past_end = True
    try:
        parsed = parse_netcdf3_header(reader)
    except PipelineError:
        raise
    except Exception as exc:  # the parser raises ValueError/KeyError/UnicodeError on bad input
        reader.raise_failure(exc)
        if "truncated" in str(exc):
            return None, [truncated(url, "netcdf3", size, None, "inside its NetCDF3 header")]
        return None, [unreadable(url, "netcdf3", exc)]
    header_end = reader.tell()
    if parsed.numrecs == -1:  # streaming: the writer never recorded the record count
        parsed.numrecs = _resolve_streaming_numrecs(parsed, size)
    expected = _netcdf3_data_end(parsed)
    if size < expected:
        return None, [truncated(url, "netcdf3", size, expected)]
    header = FileHeader(
        url=url,
        size=size,
        format="netcdf3",
        format_detail=NETCDF3_VERSIONS[parsed.version],
        dimensions={
            name: (parsed.numrecs if n == 0 else n) for name, n in parsed.dimensions.items()
        },
        attributes=json_attributes(parsed.attributes.items()),
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
                encoding=cf_encoding(var.attributes.items()),
                nbytes=math.prod(shape) * var.dtype.itemsize,
                attribute_types=packing.get(var.name, {}),
            )
        )
    for var, info in zip(parsed.variables, header.variables, strict=True):
        if is_dimension_coordinate(info):
            values, complete = _netcdf3_values(var, parsed, reader, limit, block_size)
            header.coordinates[info.name] = summarize_coordinate(info, values, complete)
    for var, info in zip(parsed.variables, header.variables, strict=True):
        if not is_static(info, header) or var.is_record:
            continue
        static: np.ndarray | None = None
        if info.nbytes <= limit:
            reader.seek(var.begin)
            data = reader.read(info.nbytes)
            if len(data) == info.nbytes:
                static = np.frombuffer(data, dtype=var.dtype).reshape(info.shape)
        header.statics[info.name] = summarize_static(info, static)
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
    var: NetCDF3Variable, parsed: NetCDF3Header, reader: GuardedReader, limit: int, block_size: int
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


def _netcdf3_read_at(reader: GuardedReader, offsets: list[int], dtype: np.dtype) -> np.ndarray:
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
