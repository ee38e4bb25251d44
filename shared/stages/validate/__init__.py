"""Validate: read each file's header (never its data chunks) and say whether it can be combined.

Per file: sniff the format from the first bytes, read the header (h5py for HDF5/NetCDF4,
VirtualiZarr's NetCDF3 header reader for classic files), describe every variable (dtype,
shape, dimensions, storage layout, chunks, filters, CF encoding), then run the rules. A
rule is one small function that looks at the parsed header and yields findings; adding a
check means writing one function and decorating it with ``@rule`` (see rules.py).

Each report also summarises every 1-D dimension coordinate (time, lat, lon, level, ...): its
raw first and last values, a digest of all its values, whether it is ordered, and for time
its first and last dates, so the gate can compare grids and order files across the collection
without reading any file again (see "Coordinate summaries" in docs/findings.md).

Findings never hide a storage failure: ``PipelineError`` (and so the retryable
``StorageUnavailable``) always propagates, even when raised inside h5py's file callbacks.

The finding codes are stable and documented in docs/findings.md.

The modules, each importing only those before it:
- model: findings, variable and coordinate descriptions, the stored report, the verdict;
- coordinates: coordinate and static summaries from raw values;
- reading: what both readers share (guarded reader, attributes, unreadable/truncated);
- netcdf3, hdf5: the two header readers;
- rules: the ``@rule`` checks, in report order;
- file: one file (sniff, read, check); batch: a manifest batch and stored reports;
- report: a report as text for people.

This package re-exports the public names, so ``from shared.stages.validate import X`` works.
"""

from shared.stages.validate.batch import load_report, validate_batch
from shared.stages.validate.coordinates import (
    COORDINATE_READ_FACTOR,
    STATIC_VALUES_SHOWN,
    coordinate_read_limit,
    is_dimension_coordinate,
    summarize_coordinate,
    summarize_static,
)
from shared.stages.validate.file import validate_file
from shared.stages.validate.model import (
    ENCODING_ATTRIBUTES,
    FILTER_NAMES,
    PACKING_ATTRIBUTES,
    REPORT_KIND,
    REPORT_VERSION,
    SUPPORTED_FILTERS,
    CoordinateSummary,
    FileHeader,
    FileReport,
    Finding,
    Monotonic,
    Severity,
    StaticSummary,
    StorageLayout,
    ValidationBatch,
    VariableInfo,
    Verdict,
    verdict_of,
)
from shared.stages.validate.report import render_report
from shared.stages.validate.rules import RULES, VLEN_STRING_FORMATS, Rule, data_variables, rule

__all__ = [
    "COORDINATE_READ_FACTOR",
    "ENCODING_ATTRIBUTES",
    "FILTER_NAMES",
    "PACKING_ATTRIBUTES",
    "REPORT_KIND",
    "REPORT_VERSION",
    "RULES",
    "STATIC_VALUES_SHOWN",
    "SUPPORTED_FILTERS",
    "VLEN_STRING_FORMATS",
    "CoordinateSummary",
    "FileHeader",
    "FileReport",
    "Finding",
    "Monotonic",
    "Rule",
    "Severity",
    "StaticSummary",
    "StorageLayout",
    "ValidationBatch",
    "VariableInfo",
    "Verdict",
    "coordinate_read_limit",
    "data_variables",
    "is_dimension_coordinate",
    "load_report",
    "render_report",
    "rule",
    "summarize_coordinate",
    "summarize_static",
    "validate_batch",
    "validate_file",
    "verdict_of",
]
