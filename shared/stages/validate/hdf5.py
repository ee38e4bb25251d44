"""The HDF5/NetCDF4 header reader (h5py): one group's variables with their dimensions as
VirtualiZarr will name them, storage layout, chunks, filters and CF encoding, its sub-groups,
and the values of its coordinates and static variables."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import h5py
import numpy as np

from shared.io.hdf5attrs import Attributes, HeaderReads, Unreadable
from shared.model.errors import PipelineError
from shared.stages.validate.coordinates import (
    is_dimension_coordinate,
    is_static,
    summarize_coordinate,
    summarize_static,
)
from shared.stages.validate.model import (
    ENCODING_ATTRIBUTES,
    FILTER_NAMES,
    PACKING_ATTRIBUTES,
    SUPPORTED_FILTERS,
    FileHeader,
    Finding,
    StorageLayout,
    VariableInfo,
)
from shared.stages.validate.reading import (
    GuardedReader,
    cf_encoding,
    group_missing,
    json_attributes,
    library_message,
    truncated,
    unreadable,
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


# Called with the chosen group of a file whose header was read, while the file is open, and
# the attributes read for the header (shared.stages.hdf5refs builds the references from them).
GroupReader = Callable[[h5py.Group, HeaderReads], None]


def read_hdf5(
    url: str,
    size: int,
    reader: GuardedReader,
    limit: int,
    group: str | None = None,
    also: GroupReader | None = None,
) -> tuple[FileHeader | None, list[Finding]]:
    """(header of ``group``, default the root group), or (None, [the finding that says why
    not]) for a file h5py cannot open, a truncated file or a missing group. ``also``: called
    with the open group after a header was read (its failures are its own to keep)."""
    try:
        h5file = h5py.File(reader, "r")
    except PipelineError:
        raise
    except Exception as exc:
        reader.raise_failure(exc)
        match = _HDF5_TRUNCATED.search(str(exc))
        if match:
            return None, [truncated(url, "hdf5", size, int(match.group(2)))]
        if size < _HDF5_MIN_FILE:
            return None, [truncated(url, "hdf5", size, None, "inside its HDF5 superblock")]
        return None, [unreadable(url, "hdf5", exc)]
    try:
        with h5file:
            chosen = h5file.get(group or "/")
            if not isinstance(chosen, h5py.Group):
                groups = _group_variables(h5file, limit=50)
                groups.pop("/", None)
                return None, [group_missing(url, str(group), groups, "an HDF5 file")]
            reads = HeaderReads()
            header = _describe_hdf5(url, size, h5file, reader, chosen, reads)
            _read_hdf5_coordinates(header, chosen, reader, limit)
            _read_hdf5_statics(header, chosen, reader, limit)
            if also is not None:
                also(chosen, reads)
            return header, []
    except PipelineError:
        raise
    except Exception as exc:
        reader.raise_failure(exc)
        return None, [unreadable(url, "hdf5", exc)]


def _describe_hdf5(
    url: str,
    size: int,
    f: h5py.File,
    reader: GuardedReader,
    group: h5py.Group,
    reads: HeaderReads,
) -> FileHeader:
    """The header of one group of the file (the root group unless another was chosen): its
    variables, their dimensions as VirtualiZarr will name them, its sub-groups."""
    root_attrs = set(f.attrs.keys())
    header = FileHeader(
        url=url,
        size=size,
        format="hdf5",
        format_detail="",
        attributes=json_attributes(_attribute_items(reads.attributes(group))),
    )
    scales = False
    lengths: dict[str, list[int]] = {}  # every length each dimension has, in file order
    for name, obj in reads.members(group):
        if isinstance(obj, h5py.SoftLink | h5py.ExternalLink):
            continue  # soft and external links: not variables of this file
        if isinstance(obj, h5py.Group):
            header.groups.append(name)
            header.group_variables.update(_group_variables(obj))
            continue
        if not isinstance(obj, h5py.Dataset):
            continue  # a committed datatype
        try:
            is_scale = h5py.h5ds.is_scale(obj.id)
            attributes = reads.attributes(obj)
            scales = scales or is_scale or "DIMENSION_LIST" in attributes.names
            if is_scale and _is_dimension_only(obj):
                lengths.setdefault(name, []).append(int(obj.shape[0]) if obj.shape else 0)
                continue
            variable = _hdf5_variable(name, obj, is_scale, header, attributes, str(group.name))
        except PipelineError:
            raise
        except Exception as exc:
            reader.raise_failure(exc)
            header.problems.append(unreadable(url, "hdf5", exc, variable=name))
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


def _read_hdf5_statics(header: FileHeader, f: h5py.File, reader: GuardedReader, limit: int) -> None:
    """Summarise each variable that does not run along a time coordinate from its values
    (read whole, through the same reader, up to ``limit`` bytes)."""
    for var in header.variables:
        if not is_static(var, header):
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


def _read_hdf5_coordinates(
    header: FileHeader, f: h5py.Group, reader: GuardedReader, limit: int
) -> None:
    """Summarise each dimension coordinate from its values (read through the same reader)."""
    for var in header.variables:
        if not is_dimension_coordinate(var):
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
                    unreadable(header.url, "hdf5", exc, variable=var.name, what="values")
                )
            continue
        header.coordinates[var.name] = summarize_coordinate(var, np.asarray(values), complete)


def _is_dimension_only(dataset: h5py.Dataset) -> bool:
    """A netCDF-4 dimension without a coordinate variable (no data, not a variable)."""
    name = dataset.attrs.get("NAME")
    return isinstance(name, bytes | np.bytes_) and bytes(name).startswith(_NETCDF_DIMENSION_ONLY)


def _hdf5_variable(
    name: str,
    ds: h5py.Dataset,
    is_scale: bool,
    header: FileHeader,
    attributes: Attributes,
    group: str = "/",
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
        encoding=cf_encoding(_attribute_items(attributes, only=ENCODING_ATTRIBUTES)),
        nbytes=math.prod(shape) * ds.dtype.itemsize,
        attribute_types={
            name: np.asarray(value).dtype.name
            for name, value in _attribute_items(attributes, only=PACKING_ATTRIBUTES)
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


def _attribute_items(
    attributes: Attributes, only: tuple[str, ...] | None = None
) -> Iterator[tuple[str, Any]]:
    """(name, value) of the attributes that are not HDF5/netCDF-4 internals (those of
    ``only``, if given); an attribute h5py could not read says so in its value."""
    for name, value in attributes.values.items():
        if only is not None and name not in only:
            continue
        if isinstance(value, Unreadable):
            value = f"<unreadable attribute: {library_message(value.error)}>"
        yield name, value  # type: ignore[misc]  # h5py's own name: str, or bytes if not UTF-8
