"""The rules: each looks at one parsed header and yields findings. Adding a check means writing
one function here and decorating it with ``@rule``; rules run in the order they are defined,
which is the order of the findings in a report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from shared.model.request import FORMATS
from shared.model.settings import Settings
from shared.stages.validate.coordinates import is_dimension_coordinate
from shared.stages.validate.model import (
    PACKING_ATTRIBUTES,
    SUPPORTED_FILTERS,
    FileHeader,
    Finding,
    Severity,
    VariableInfo,
    size_text,
)

# The formats that were checked end to end with a variable-length string variable: all of them
# read the strings back with the right values but another dtype (see variable_length_strings).
VLEN_STRING_FORMATS = FORMATS  # none of them stores variable-length strings as NetCDF has them
# The chunk size the unchunked-variable findings suggest: a few MB per read.
_SUGGESTED_CHUNK_BYTES = 8 * 1024 * 1024

Rule = Callable[[FileHeader, Settings], Iterable[Finding]]
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    """Register a rule: a function (header, settings) -> findings. Runs in definition order."""
    RULES.append(function)
    return function


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
    """A compressed variable stored in one chunk is read whole: a warning above
    unchunked_warn_bytes, unsuitable above unchunked_max_bytes. Data variables and
    coordinates alike. Variables stored without filters (contiguous, chunked uncompressed,
    NetCDF3) are not read whole: combine cuts them into chunks of at most
    PIPELINE_SUBCHUNK_MAX_BYTES at computed offsets (shared/stages/grid.py)."""
    for var in header.variables:
        if var.name in header.special_dtypes or var.layout in ("compact", "virtual"):
            continue  # other rules refuse these; a vlen size says nothing about the strings
        if not var.filters:
            continue  # plain bytes: cut into sub-chunks
        piece = _one_piece(var)
        if piece is None:
            continue
        nbytes, how = piece
        severity: Severity
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
            f"Variable {var.name!r} in {header.url} is {how} of {size_text(nbytes)} (above "
            f"{setting}, {size_text(limit)}), {consequence}: rechunk it, e.g. "
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
    """(bytes, how) of a compressed variable stored in one chunk, which every read fetches
    and decompresses whole; else None."""
    if var.nbytes == 0 or var.layout != "chunked" or var.chunks is None:
        return None
    if all(c >= n for c, n in zip(var.chunks, var.shape, strict=True)):
        return var.nbytes, "stored compressed as a single chunk"
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
        if var.shape and not is_dimension_coordinate(var) and var.name not in bounds
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
    JSON, without their precision, so its readers decode float32-packed data as float64.
    Published with a warning: the two decodes agree within float32 rounding, which verify
    checks value by value (verify.compare). Attributes of another type (integer, half
    precision), whose decodes verify cannot hold to a bound, stay an error."""
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
        details = {
            "attribute_types": dict(types),
            "file_dtype": str(file_dtype),
            "store_dtype": str(store_dtype),
        }
        if (file_dtype, store_dtype) == (np.dtype("float32"), np.dtype("float64")):
            yield Finding(
                "packed_single_precision",
                "warning",
                f"{var.name} in {header.url} is packed ({stored}) with {described}: netCDF4 "
                "and xarray decode it as float32, but a virtual store keeps attributes as JSON "
                "numbers, so the store decodes it as float64. The two agree within float32 "
                "rounding (one float32 ulp at |value| + |add_offset|), and verify holds every "
                "value it compares to that, with the same missing values; nothing is published "
                "otherwise. For a store that decodes exactly as the files, store the packing "
                f"attributes as double (ncatted {fix} FILE).",
                variable=var.name,
                details={**details, "tolerance": "float32 rounding"},
            )
            continue
        yield Finding(
            "packed_single_precision",
            "error",
            f"{var.name} in {header.url} is packed with {described}: "
            f"netCDF4 and xarray decode it as {file_dtype}, but a virtual store keeps attributes "
            f"as JSON numbers, so its readers would decode it as {store_dtype}, with other "
            f"values. Store the packing attributes as double (ncatted {fix} FILE), or publish "
            "the variable from files written that way.",
            variable=var.name,
            details=details,
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
