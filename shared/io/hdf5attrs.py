"""An HDF5 object's attributes, each read once, by position.

h5py's ``obj.attrs[name]`` opens an attribute by name (a search of the object's attribute
index) and builds its value; ``attrs.items()`` does that for every name. Validate and the
references read the same attributes of the same objects, and a typical NetCDF4 variable
has more attributes that the netCDF-4 and dimension-scale machinery keeps for itself
(``REFERENCE_LIST``, ``DIMENSION_LIST``, ``_Netcdf4Coordinates``...) than attributes a
reader sees. Here each attribute is opened by its position and the internal ones are named
but not read: about a third of the time ``attrs.items()`` takes on CF files, read once
for both stages. The values are exactly h5py's (AttributeManager.__getitem__'s steps, in
its iteration order): tests/test_hdf5refs.py compares them on every file the suite writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from shared.model.errors import PipelineError

# What the HDF5 dimension-scale and netCDF-4 machinery keeps for itself (VirtualiZarr's
# HDF parser hides the same names).
INTERNAL_ATTRIBUTES = frozenset(
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


@dataclass(frozen=True)
class Unreadable:
    """An attribute h5py could not read (the value stands for the failure)."""

    error: Exception


@dataclass(frozen=True)
class Attributes:
    """One object's attributes: every name (internal ones too), and the values of the
    others in h5py's order (an Unreadable where h5py failed)."""

    names: frozenset[str | bytes]
    values: dict[str | bytes, Any]


def read_attributes(obj: h5py.HLObject) -> Attributes:
    """The attributes of ``obj`` (a File stands for its root group)."""
    oid = (obj["/"] if isinstance(obj, h5py.File) else obj).id
    plist = oid.get_create_plist()
    try:
        tracked = plist.get_attr_creation_order() & h5py.h5p.CRT_ORDER_TRACKED
    finally:
        plist.close()
    index_type = h5py.h5.INDEX_CRT_ORDER if tracked else h5py.h5.INDEX_NAME
    names: list[str | bytes] = []
    values: dict[str | bytes, Any] = {}
    for position in range(h5py.h5a.get_num_attrs(oid)):
        attr = h5py.h5a.open(oid, index=position, index_type=index_type)
        raw = attr.name
        try:
            name: str | bytes = raw.decode("utf8")
        except UnicodeDecodeError:
            name = raw
        names.append(name)
        if name in INTERNAL_ATTRIBUTES:
            continue
        try:
            values[name] = attribute_value(attr)
        except PipelineError:
            raise
        except Exception as exc:  # e.g. a type h5py cannot convert
            values[name] = Unreadable(exc)
    return Attributes(frozenset(names), values)


def attribute_value(attr: Any) -> Any:
    """h5py.AttributeManager.__getitem__ after its h5a.open (h5py 3)."""
    shape = attr.shape
    if shape is None:  # an empty dataspace
        return h5py.Empty(attr.dtype)
    dtype = attr.dtype
    htype = h5py.h5t.py_create(dtype)
    if dtype.subdtype is not None:  # a top-level array type: numpy's shape and dtype
        subdtype, subshape = dtype.subdtype
        shape = attr.shape + subshape
        dtype = subdtype
    arr = np.zeros(shape, dtype=dtype, order="C")
    attr.read(arr, mtype=htype)
    string_info = h5py.h5t.check_string_dtype(dtype)
    if string_info and string_info.length is None:
        arr = np.array(
            [b.decode("utf-8", "surrogateescape") for b in arr.flat], dtype=dtype
        ).reshape(arr.shape)
    if arr.ndim == 0:
        return arr[()]
    return arr


class HeaderReads:
    """What a walk of one file's header read, each once: the attributes of its objects
    (keyed by path) and the members of its groups."""

    def __init__(self) -> None:
        self._attributes: dict[str, Attributes] = {}
        self._members: dict[str, list[tuple[str, Any]]] = {}

    def attributes(self, obj: h5py.HLObject) -> Attributes:
        key = str(obj.name)
        found = self._attributes.get(key)
        if found is None:
            found = self._attributes[key] = read_attributes(obj)
        return found

    def members(self, group: h5py.Group) -> list[tuple[str, Any]]:
        """(name, object) of the group's members in h5py's order; the object is the link
        (h5py.SoftLink, h5py.ExternalLink) for a member that is not a hard link."""
        key = str(group.name)
        found = self._members.get(key)
        if found is None:
            found = []
            for name in group:
                link = group.get(name, getlink=True)
                found.append((name, group.get(name) if isinstance(link, h5py.HardLink) else link))
            self._members[key] = found
        return found
