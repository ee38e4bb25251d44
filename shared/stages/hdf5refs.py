"""A file's VirtualiZarr ManifestGroup from the h5py file validate already opened.

Validate reads every HDF5/NetCDF4 file's header with h5py; VirtualiZarr's HDFParser then
opened the same bytes again and walked the same objects, and most of its time was h5py's
per-call cost (each attribute read by name, each object looked up twice) and zarr building
the same array metadata for every file of a collection. Here the parser's result is built
from the open file, in one walk, with VirtualiZarr's own functions for every decision it
makes (chunk shape, codecs, fill value, dimension names, attribute cleaning, chunk
manifest), so the references are the parser's, byte for byte. Two things are faster:

- attributes are read once each, for validate and here (shared.io.hdf5attrs: by position,
  the internal ones named but not read; the values and order are h5py's);
- the Zarr array metadata is made once per distinct description (shape, dtype, chunks,
  fill value, codecs, dimension names, attributes) and shared: a collection's files
  describe their variables alike.

What this walk does not cover it declines (None), and the caller uses HDFParser as before:
sub-groups, soft and external links, variable-length strings,
object references and compound types, a dataset h5py cannot describe.
tests/test_hdf5refs.py holds the result equal to HDFParser's over every layout the suite
writes."""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
from virtualizarr.codecs import zarr_codec_config_to_v3
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.utils import create_v3_array_metadata
from virtualizarr.parsers.hdf import hdf as vz_hdf
from virtualizarr.parsers.hdf.filters import codecs_from_dataset
from virtualizarr.parsers.utils import encode_cf_fill_value
from zarr.core.metadata import ArrayV3Metadata

from shared.io.hdf5attrs import Attributes, HeaderReads, Unreadable


class Declined(Exception):
    """This walk does not cover the file: HDFParser reads it."""


class _Attributes:
    """What VirtualiZarr's _extract_attrs reads of an object (``.attrs.items()``)."""

    def __init__(self, attributes: Attributes) -> None:
        if any(isinstance(v, Unreadable) for v in attributes.values.values()):
            raise Declined("an attribute is unreadable")  # HDFParser says which
        self.attrs = dict(attributes.values)


def manifest_group(
    group: h5py.Group, filepath: str, reads: HeaderReads | None = None
) -> ManifestGroup:
    """HDFParser(group=...)(filepath)'s ManifestGroup, from the open ``group`` (attributes
    through ``reads``, shared with validate); raises Declined for what this walk does not
    cover."""
    reads = reads or HeaderReads()
    members = reads.members(group)
    for name, obj in members:
        if not isinstance(obj, h5py.Dataset):
            raise Declined(f"{name} is a {type(obj).__name__}")  # sub-groups, datatypes
    group_name = str(group.name)
    arrays = {}
    for name, dataset in members:
        attributes = reads.attributes(dataset)
        if "_Netcdf4Dimid" in attributes.names and _stores_no_data(dataset):
            continue  # VirtualiZarr drops a netCDF dimension without a coordinate variable
        arrays[name] = _manifest_array(filepath, dataset, group_name, attributes)
    return ManifestGroup(
        arrays=arrays,
        groups={},
        attributes=vz_hdf._extract_attrs(_Attributes(reads.attributes(group))),
    )


def _stores_no_data(dataset: h5py.Dataset) -> bool:
    """VirtualiZarr's _find_non_coord_dimension_vars, for one dataset."""
    if dataset.chunks is not None and callable(getattr(dataset.id, "chunk_iter", None)):
        return dataset.id.chunk_iter(lambda chunk: True) is None
    return dataset.id.get_storage_size() == 0


def _manifest_array(
    filepath: str, dataset: h5py.Dataset, group: str, attributes: Attributes
) -> ManifestArray:
    """VirtualiZarr's _construct_manifest_array for a dataset of a plain dtype."""
    dtype = dataset.dtype
    if dtype.kind == "O" or dtype.names is not None:
        raise Declined(f"{dataset.name} has the dtype {dtype}")
    chunks = vz_hdf._chunk_shape(dataset)
    codecs = codecs_from_dataset(dataset)
    attrs = vz_hdf._extract_attrs(_Attributes(attributes))
    if "_FillValue" in attrs and dtype.kind not in ("S", "U", "O", "T"):
        attrs["_FillValue"] = encode_cf_fill_value(attrs["_FillValue"], dtype)
    codec_configs = [zarr_codec_config_to_v3(codec.get_config()) for codec in codecs]
    fill_value = vz_hdf._get_fill_value(dataset)
    dims = tuple(vz_hdf._dataset_dims(dataset, group=group))
    metadata = _array_metadata(
        tuple(dataset.shape), dtype, tuple(chunks), fill_value, codec_configs, dims, attrs
    )
    manifest = vz_hdf._dataset_chunk_manifest(filepath, dataset, chunks=chunks)
    return ManifestArray(metadata=metadata, chunkmanifest=manifest)


# The metadata made so far, by description (cleared whole when full: a collection has few).
_made: dict[str, ArrayV3Metadata] = {}
_MADE_KEPT = 4096


def _array_metadata(
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    fill_value: Any,
    codecs: list[dict[str, Any]],
    dims: tuple[str, ...],
    attrs: dict[str, Any],
) -> ArrayV3Metadata:
    """create_v3_array_metadata(...), made once per distinct description: the key is every
    argument, spelled so that values equal in Python but stored differently (1, 1.0, True;
    0.0 and -0.0; float32 and float64) are different keys."""
    key = json.dumps(
        [shape, dtype.str, dtype.descr, chunks, _spelled(fill_value), codecs, dims, attrs],
        default=_spelled,
        allow_nan=True,
    )
    found = _made.get(key)
    if found is None:
        found = create_v3_array_metadata(
            shape=shape,
            data_type=dtype,
            chunk_shape=chunks,
            fill_value=fill_value,
            codecs=codecs,
            dimension_names=dims,
            attributes=attrs,
        )
        if len(_made) >= _MADE_KEPT:
            _made.clear()
        _made[key] = found
    return found


def _spelled(value: Any) -> str:
    """A value that JSON does not know, spelled with its type."""
    if isinstance(value, np.generic | np.ndarray):
        return f"{type(value).__name__}:{np.asarray(value).dtype.str}:{value!r}"
    return f"{type(value).__name__}:{value!r}"
