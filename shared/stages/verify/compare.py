"""Verify's comparison of source files with the store, one batch of files at a time.

Each file of the batch is opened as a user would (reading.open_source) and compared with the
slice of the store it should have become: same variables, dtypes, attributes and values (NaN
equals NaN), same decoded times; a float32-packed variable float64 in the store, within
float32 rounding (_compare). Small collections (total size up to
PIPELINE_VERIFY_FULL_MAX_BYTES) are compared in full; larger ones on a deterministic sample
(see the package's docstring). A batch answers a VerifyTally: the steps of the store its
files hold (claims), what differs (at most MAX_REPORTED mismatches) and counts; the deciding
step (decide.py) judges the tallies of all batches.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from shared.io.memory import MemoryWatch
from shared.io.storage import ObjectInfo, Storage, classify, storage_faults
from shared.io.stores import open_store
from shared.model.claims import MAX_REPORTED, Claim, fold_claims
from shared.model.errors import SourceNotFound
from shared.model.locations import Location, parse_location
from shared.model.request import StoreFormat
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.model.wire import VerifyTally
from shared.stages.combine import source_root
from shared.stages.scan import (
    ScanManifest,
    check_unchanged,
    load_manifest_slice,
    manifest_totals,
)
from shared.stages.validate.model import PACKING_ATTRIBUTES
from shared.stages.verify.reading import (
    open_source,
    reads_whole,
    source_decodes,
    source_opens,
    still_as_scanned,
    store_decodes,
    store_opens,
)

log = logging.getLogger(__name__)

# When a variable is not chunked, a sample covers one step and at most this many elements
# along each other dimension.
UNCHUNKED_SAMPLE_EDGE = 512


@dataclass(frozen=True)
class Mismatch:
    url: str
    variable: str
    what: str

    def sentence(self) -> str:
        return f"{self.url}, variable {self.variable!r}: {self.what}"


def _digest_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\n".join(parts).encode()).digest()[:8], "big")


def _sample_regions(
    var: xr.DataArray, concat_dim: str, url: str, count: int
) -> list[dict[str, slice]]:
    """Deterministic chunk-aligned regions of a source variable to compare."""
    chunks = var.encoding.get("chunksizes") or var.encoding.get("chunks")
    if chunks is None or len(chunks) != var.ndim:
        chunks = tuple(
            1 if dim == concat_dim else min(size, UNCHUNKED_SAMPLE_EDGE)
            for dim, size in zip(var.dims, var.shape, strict=True)
        )
    grid = [int(np.ceil(size / c)) for size, c in zip(var.shape, chunks, strict=True)]
    total = int(np.prod(grid)) if grid else 1
    picks = {0, total - 1} if count >= 2 else set()
    seed = _digest_int(url, str(var.name))
    while len(picks) < min(count, total):
        picks.add(seed % total)
        seed = _digest_int(str(seed))
    regions = []
    for flat in sorted(picks)[: max(count, 1)]:
        index = np.unravel_index(flat, grid) if grid else ()
        regions.append(
            {
                str(dim): slice(int(i) * c, min((int(i) + 1) * c, size))
                for dim, i, c, size in zip(var.dims, index, chunks, var.shape, strict=True)
            }
        )
    return regions


def _compare(expected: xr.Variable, found: xr.Variable) -> str | None:
    """None if identical (dims, dtype, attrs, values with NaN == NaN), else why not.

    One difference is accepted, and only it: a variable the file packs with float32
    scale_factor/add_offset decodes as float32 from the file and as float64 from the store
    (float32_packing); its values must then agree within float32 rounding (float32_rounding)
    and be missing in the same places."""
    if expected.dims != found.dims:
        return f"dimensions {found.dims} in the store, {expected.dims} in the file"
    expected, found = _same_dates(expected, found)
    widened = False
    if expected.dtype != found.dtype:
        widened = found.dtype == np.float64 and float32_packing(expected) is not None
        if not widened:
            return f"dtype {found.dtype} in the store, {expected.dtype} in the file"
    if expected.shape != found.shape:
        return f"shape {found.shape} in the store, {expected.shape} in the file"
    if not _attrs_equal(expected.attrs, found.attrs):
        differing = sorted(
            k
            for k in set(expected.attrs) | set(found.attrs)
            if not _value_equal(expected.attrs.get(k), found.attrs.get(k))
        )
        return "attributes differ: " + ", ".join(
            f"{k}={found.attrs.get(k)!r} in the store, {expected.attrs.get(k)!r} in the file"
            for k in differing[:3]
        )
    a, b = np.asarray(expected.values), np.asarray(found.values)
    if widened:
        offset = float(np.abs(expected.encoding.get("add_offset", 0.0)))
        bound = float32_rounding(a, offset)
        equal = (a == b) | (np.abs(b - a.astype(np.float64)) <= bound) | (_isnan(a) & _isnan(b))
    else:
        equal = a == b
        if a.dtype.kind in "fc" or a.dtype.kind == "M":
            equal |= _isnan(a) & _isnan(b)
    if bool(np.all(equal)):
        return None
    where = tuple(int(i) for i in np.argwhere(~np.asarray(equal))[0])
    count = int(np.size(equal) - np.count_nonzero(equal))
    if widened:
        return (
            f"{count} of {np.size(equal)} values differ by more than float32 rounding (the "
            "file packs it with float32 scale_factor/add_offset and decodes float32, the "
            f"store float64); first at index {where}: {_show(b[where])} in the store, "
            f"{_show(a[where])} in the file, at most {_show(bound[where])} apart allowed"
        )
    return (
        f"{count} of {np.size(equal)} values differ; first at index {where}: "
        f"{_show(b[where])} in the store, {_show(a[where])} in the file"
    )


def float32_packing(variable: xr.Variable) -> dict[str, np.float32] | None:
    """The packing attributes (scale_factor, add_offset) of a source variable that decodes as
    float32 because they are stored as float32, read from the variable's encoding (where
    xarray keeps them with their stored type); None for any other variable. Only such a
    variable may decode as float64 from a store, which keeps attributes as JSON numbers."""
    from xarray.coding.variables import _choose_float_dtype

    if variable.dtype != np.float32 or "dtype" not in variable.encoding:
        return None
    packing = {k: variable.encoding[k] for k in PACKING_ATTRIBUTES if k in variable.encoding}
    if not packing or not all(isinstance(v, np.float32) for v in packing.values()):
        return None
    if np.dtype(_choose_float_dtype(np.dtype(variable.encoding["dtype"]), packing)) != np.float32:
        return None
    return packing


def float32_rounding(values: np.ndarray, add_offset: float) -> np.ndarray:
    """How far apart a float64 decode of float32-packed data may be from the file's float32
    decode, per value of the file's (``values``): one float32 ulp at |value| + |add_offset|.

    The file computes r = fl32(fl32(x * s) + o) from the stored x: two float32 roundings, of
    half an ulp each, of operands of magnitude at most about |r| + |o|; the store computes
    x * s + o in float64, within 2**-52 of the exact value. The magnitude is rounded up to a
    float32 (so a magnitude just below a power of two takes the ulp above it: x * s may round
    up to that power), and np.spacing of a power of two is the ulp above it. NaN where the
    file's value is NaN or infinite (compared for identity, not within a bound)."""
    magnitude = np.abs(values.astype(np.float64)) + abs(add_offset)
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = magnitude.astype(np.float32)
        up = np.nextafter(nearest, np.float32(np.inf))
        rounded = np.where(nearest.astype(np.float64) < magnitude, up, nearest)
        return np.asarray(np.spacing(rounded), dtype=np.float64)


def as_dates_of(values: np.ndarray, like: Any) -> np.ndarray:
    """Numpy datetimes as the cftime dates of ``like`` (an array or index), when ``like``
    holds cftime dates; else ``values`` as they are. A standard-calendar collection that
    crosses 2262 decodes to numpy datetimes from the files whose dates fit and to cftime
    dates from the others, and from the store to either, by the range read (xarray decides
    per array, and per slice when decoding lazily): the same instants either way."""
    import cftime
    from xarray.coding.calendar_ops import convert_times

    dates = np.asarray(like)
    if values.dtype.kind != "M" or dates.dtype != object or not dates.size:
        return values
    if not isinstance(dates.flat[0], cftime.datetime):
        return values

    flat = np.asarray(values).ravel()
    return np.asarray(convert_times(flat, type(dates.flat[0]))).reshape(values.shape)


def _same_dates(expected: xr.Variable, found: xr.Variable) -> tuple[xr.Variable, xr.Variable]:
    """The two as the same type of dates, when one holds numpy datetimes and the other cftime
    dates (as_dates_of); else as they are."""
    if expected.dtype.kind == "M" and found.dtype == object:
        return expected.copy(data=as_dates_of(expected.values, found.values)), found
    if found.dtype.kind == "M" and expected.dtype == object:
        return expected, found.copy(data=as_dates_of(found.values, expected.values))
    return expected, found


def _load(variable: xr.Variable, region: Mapping[str, slice]) -> xr.Variable:
    """The values of ``region`` of a lazily opened variable, read now (the variable itself
    keeps no data)."""
    part = variable.isel(dict(region)) if region else variable.copy(deep=False)
    return part.load()


def _in_store(
    region: Mapping[str, slice], window: Mapping[str, slice], stored: xr.Variable
) -> dict[str, slice]:
    """A region of one file's variable, as a region of the store's variable: the file's
    steps are ``window`` of the store's."""
    placed = dict(window)
    for dim, part in region.items():
        if dim in window:
            offset = window[dim].start
            start, stop, _ = part.indices(window[dim].stop - offset)
            placed[dim] = slice(offset + start, offset + stop)
        else:
            placed[dim] = part
    return {d: r for d, r in placed.items() if d in stored.dims}


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _isnan(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "M":
        return np.isnat(values)
    return np.isnan(values)


def _attrs_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(_value_equal(a[k], b[k]) for k in a)


def _value_equal(x: Any, y: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def _static_positions(manifest_url: str, count: int, mode: str) -> set[int] | range:
    """The files (manifest positions) whose variables without the concat dimension are
    compared: every file in full mode, else the first, the last and one picked by the
    manifest's own name (a digest of its files), alike in every batch."""
    if mode == "full" or count <= 3:
        return range(count)
    return {0, count - 1, 1 + _digest_int(manifest_url) % (count - 2)}


def verify_mode(total_bytes: int, settings: Settings) -> str:
    """Full comparison for a collection of up to PIPELINE_VERIFY_FULL_MAX_BYTES, else sampled."""
    return "full" if total_bytes <= settings.verify_full_max_bytes else "sample"


# The stores opened in this process, newest last. Every verify_files activity of a run
# compares its files with the same store, and opening it parses every file's references
# (about 36 ms at 1,000 files, ten times that at 10,000): opened once per worker process, not
# once per activity, verify no longer grows with the square of the files. Keyed by what the
# store is made of (its objects' URLs, ETags and sizes), so a store written again is opened
# again, and by the settings it is read with (another endpoint or credential); never closed
# here (another activity may be reading one): dropped, the garbage collector closes it.
_OPENED: OrderedDict[tuple[Any, ...], xr.Dataset] = OrderedDict()
_OPENED_KEPT = 2
_OPENED_LOCK = threading.Lock()


def opened_store(
    store: Location,
    store_format: StoreFormat,
    manifest: ScanManifest,
    settings: Settings,
    storage: Storage,
) -> xr.Dataset:
    """The store opened lazily with xarray, as a user would (shared.io.stores.open_store),
    once per process for each state of the store."""
    source = source_root(manifest, settings)
    with storage_faults(f"reading the properties of the store {store.url}"):
        try:
            made_of: tuple[ObjectInfo, ...] = (storage.head(store),)
        except SourceNotFound:  # a folder: Parquet references, an Icechunk repository
            made_of = tuple(storage.list(store))
    # the settings too: another endpoint or credential reads the same store another way
    key = (
        store.url,
        store_format,
        source.url,
        settings,
        tuple((i.url, i.etag, i.size) for i in made_of),
    )
    with _OPENED_LOCK:
        found = _OPENED.get(key)
        if found is not None:
            _OPENED.move_to_end(key)
            return found
    with (
        storage_faults(f"opening the store {store.url}"),
        store_opens(store, store_format, manifest, settings),
    ):
        found = open_store(store, store_format, source, settings)
    with _OPENED_LOCK:
        _OPENED[key] = found
        while len(_OPENED) > _OPENED_KEPT:
            _OPENED.popitem(last=False)
    return found


# In full mode the store's values are read for a group of files at once: per variable along
# the concat dimension, one read of the store's steps the group's files hold (one per run of
# consecutive steps), not one per file and variable. Each read is a round trip through zarr's
# event loop, about half of verify's time for small files. A group holds at most GROUPED_FILES
# files (their sources are open meanwhile) and GROUPED_READ_BYTES (at most a sixteenth of the
# memory limit) of the store's decoded values and of the files' own sizes; a file above that is
# compared alone, as every file is in sample mode. A grouped read that fails is not explained:
# the group's files are read one by one instead, as alone, so that bytes that do not decode are
# named for the file whose steps they are.
GROUPED_READ_BYTES = 64 * 1024 * 1024
GROUPED_FILES = 32

# Whole source files in blob storage are read a few files ahead of the one being opened (a
# storage round trip each, waited for one after the other before): at most so many files
# and bytes in flight, on a pool the process's verify batches share.
AHEAD_FILES = 4
AHEAD_BYTES = 32 * 1024 * 1024
_AHEAD = ThreadPoolExecutor(AHEAD_FILES, thread_name_prefix="verify-ahead")


class _ReadAhead:
    """The bytes of the batch's files that open_source reads whole, requested ahead (each
    still bound to the scanned ETag: Storage.read's If-Match)."""

    def __init__(
        self, files: Sequence[ObjectInfo], start: int, whole: bool, remote: bool,
        settings: Settings, storage: Storage,
    ) -> None:  # fmt: skip
        self._files, self._start, self._whole = files, start, whole
        self._remote, self._settings, self._storage = remote, settings, storage
        self._next = 0
        self._pending: dict[int, tuple[int, Future[bytes]]] = {}

    def fetched(self, position: int) -> Callable[[], bytes] | None:
        """What opening the file at ``position`` waits for, or None (it reads for itself:
        local, read in ranges, or opened again after a failure)."""
        if not self._remote:
            return None
        index = position - self._start
        self._next = max(self._next, index)
        while self._next < len(self._files) and self._next <= index + AHEAD_FILES:
            info = self._files[self._next]
            if (
                self._pending
                and sum(s for s, _ in self._pending.values()) + info.size > AHEAD_BYTES
            ):
                break
            if reads_whole(info, self._whole):
                location = parse_location(info.url, self._settings, what="source file")
                future = _AHEAD.submit(self._storage.read, location, etag=info.etag)
                self._pending[self._next] = (info.size, future)
            self._next += 1
        found = self._pending.pop(index, None)
        return found[1].result if found else None


@dataclass(frozen=True)
class _Opened:
    """A source file of the batch, open, and the store's steps its concat values are at."""

    position: int  # in the manifest
    info: ObjectInfo
    source: xr.Dataset
    closing: ExitStack  # closes the source
    positions: np.ndarray

    def window(self) -> slice | None:
        """The store's steps the file holds, when they all are in the store, in order."""
        p = self.positions
        if not p.size or (p < 0).any() or not np.array_equal(p, np.arange(p[0], p[-1] + 1)):
            return None
        return slice(int(p[0]), int(p[-1]) + 1)


def _groups(
    files: Sequence[ObjectInfo],
    start: int,
    open_one: Callable[[int, ObjectInfo], _Opened],
    step_bytes: int,
    budget: int,
    most: int,
) -> Iterator[list[_Opened]]:
    """The files opened, in manifest order, in groups of at most ``most`` files whose sizes
    and store values (``step_bytes`` a step) stay within ``budget`` (a larger file alone). A
    file that fails to open ends the group before it: the group is compared first, then the
    file is opened again, alone, so its failure comes after the files before it, as when
    every file was compared alone."""
    group: list[_Opened] = []
    cost = 0
    for position, info in enumerate(files, start=start):
        if group and (len(group) >= most or cost + info.size > budget):
            yield group
            group, cost = [], 0
        try:
            item = open_one(position, info)
        except Exception:
            if not group:
                raise
            yield group
            group, cost = [], 0
            item = open_one(position, info)
        size = info.size + item.positions.size * step_bytes
        if group and cost + size > budget:
            yield group
            group, cost = [], 0
        group.append(item)
        cost += size
    if group:
        yield group


def _step_bytes(combined: xr.Dataset, concat_dim: str, dropped: set[str]) -> int:
    """The decoded size of one step of the store's variables along the concat dimension."""
    total = 0
    for name, var in combined.variables.items():
        if name in dropped or concat_dim not in var.dims:
            continue
        other = int(np.prod([n for d, n in var.sizes.items() if d != concat_dim]))
        total += other * (64 if var.dtype == object else var.dtype.itemsize)
    return total


def _runs(windows: Sequence[slice]) -> list[slice]:
    """The windows as runs of consecutive steps (overlapping or adjacent windows joined)."""
    runs: list[slice] = []
    for window in sorted(windows, key=lambda w: w.start):
        if runs and window.start <= runs[-1].stop:
            runs[-1] = slice(runs[-1].start, max(runs[-1].stop, window.stop))
        else:
            runs.append(window)
    return runs


# per variable, the runs of the store's steps read and their values
_GroupRead = dict[str, list[tuple[slice, xr.Variable]]]


def _read_together(
    group: Sequence[_Opened], combined: xr.Dataset, concat_dim: str, dropped: set[str]
) -> _GroupRead:
    """The store's values of the group's files, for every variable along the concat
    dimension: one read per run of consecutive steps. Empty for fewer than two files, or if
    a read fails (the files are then read one by one, which names the file that fails)."""
    windows = {item.position: item.window() for item in group}
    if sum(w is not None for w in windows.values()) < 2:
        return {}
    names = {
        str(name)
        for item in group
        if windows[item.position] is not None
        for name, var in item.source.variables.items()
        if name not in dropped
        and concat_dim in var.dims
        and name in combined.variables
        and concat_dim in combined.variables[name].dims
    }
    runs = _runs([w for w in windows.values() if w is not None])
    try:
        return {
            name: [(run, _load(combined.variables[name], {concat_dim: run})) for run in runs]
            for name in sorted(names)
        }
    except Exception:
        log.debug("reading the store for %d files at once failed", len(group), exc_info=True)
        return {}


def _read_for(read: _GroupRead, name: str, window: slice, concat_dim: str) -> xr.Variable | None:
    """A file's steps (``window``) of a variable read with its group's, if they were."""
    for run, values in read.get(name, ()):
        if run.start <= window.start and window.stop <= run.stop:
            part = slice(window.start - run.start, window.stop - run.start)
            return values.isel({concat_dim: part})
    return None


def compare_files(
    manifest_url: str,
    store_url: str,
    store_format: StoreFormat,
    concat_dim: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    start: int = 0,
    stop: int | None = None,
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> VerifyTally:
    """Compare the files [start, stop) of the manifest (all of them by default) with the
    store. Variables the request dropped are not in the store and not compared; with
    static_differs "keep-first", a variable without the concat dimension is compared with
    the file that holds the first steps only (the store keeps that file's). Whether values
    are compared in full or sampled, and which files the variables without the concat
    dimension are compared for, is decided from the whole manifest, so every batch decides
    alike. In full mode the store's values are read for groups of files at once
    (GROUPED_READ_BYTES).

    A file changed since the scan is SourceChanged, before its values are compared: a local
    file is checked against the manifest (ETag and size) first, a file in blob storage is
    read only as the version scanned (If-Match), and a file whose values differ from the
    store's is checked again (the store's references read it unconditionally). Bytes that do
    not decode, in a file or where the store points, are CorruptChunk naming the file,
    variable and chunk. What differs is in the answer, not raised: the deciding step
    raises."""
    started = time.perf_counter()
    dropped = set(drop_variables)
    storage = storage or Storage(settings)
    totals = manifest_totals(manifest_url, settings, storage)
    stop = totals.file_count if stop is None else min(stop, totals.file_count)
    manifest, _ = load_manifest_slice(manifest_url, start, stop, settings, storage)
    files = manifest.files
    mode = verify_mode(totals.total_bytes, settings)
    whole = mode == "full"  # every value is compared: each file is read in one request
    store: Location = parse_location(store_url, settings, what="store")
    source_is_local = parse_location(manifest.source, settings, what="source").is_local
    if source_is_local:
        check_unchanged(manifest.subset(files), settings, storage, "it was scanned")
    combined = opened_store(store, store_format, manifest, settings, storage)
    index = combined.get_index(concat_dim)
    static_check = _static_positions(manifest_url, totals.file_count, mode)
    memory = MemoryWatch(settings.memory_limit_bytes, "verify")
    mismatches: list[Mismatch] = []
    variables_checked = values_compared = 0
    # Which steps of the store these files account for: each at most once. Across batches,
    # the deciding step checks the claims (each step exactly once, all of them).
    steps = int(combined.sizes[concat_dim])
    claimed = np.zeros(steps, dtype=bool)
    claims: list[Claim] = []
    # the store's values read for several files: a group's (full mode), and the variables
    # without the concat dimension, the same for every file (read for the first that needs
    # them; within the byte budget)
    budget = min(GROUPED_READ_BYTES, settings.memory_limit_bytes // 16)
    statics: dict[str, xr.Variable] = {}

    ahead = _ReadAhead(files, start, whole, not source_is_local, settings, storage)

    def open_one(position: int, info: ObjectInfo, opened: ExitStack) -> _Opened:
        closing = ExitStack()
        opened.callback(closing.close)
        with source_opens(info, manifest, settings, storage, whole=whole):
            try:
                source = closing.enter_context(
                    open_source(
                        info,
                        settings,
                        storage,
                        manifest.group,
                        whole=whole,
                        fetched=ahead.fetched(position),
                    )
                )
                positions = index.get_indexer(as_dates_of(source[concat_dim].values, index))
            except BaseException:
                closing.close()
                raise
        return _Opened(position, info, source, closing, positions)

    def compare_one(item: _Opened, read: _GroupRead) -> bool:
        """Compare one opened file; False if its steps are not the store's to compare."""
        nonlocal variables_checked, values_compared
        position, info, source, positions = item.position, item.info, item.source, item.positions
        if (positions < 0).any():
            missing = source[concat_dim].values[positions < 0][:3]
            mismatches.append(
                Mismatch(info.url, concat_dim, f"values {missing} are not in the store")
            )
            return False
        if not np.array_equal(positions, np.arange(positions[0], positions[-1] + 1)):
            mismatches.append(
                Mismatch(info.url, concat_dim, "its steps are not contiguous in the store")
            )
            return False
        if claimed[positions].any():
            twice = also_another_files(concat_dim)
            mismatches.append(Mismatch(info.url, concat_dim, twice))
            return False
        claimed[positions] = True
        claims.append([int(positions[0]), int(positions[-1]) + 1, position, position])
        window = {concat_dim: slice(int(positions[0]), int(positions[-1]) + 1)}
        extra = sorted(map(str, set(combined.variables) - set(source.variables)))
        if extra and position == 0:
            mismatches.append(Mismatch(info.url, extra[0], "is in the store but not in the file"))
        holds_first = int(positions[0]) == 0
        for name, var in source.variables.items():
            if name in dropped:
                continue
            if name not in combined.variables:
                mismatches.append(Mismatch(info.url, str(name), "is missing from the store"))
                continue
            along = concat_dim in var.dims
            if not along and static_differs == "keep-first":
                if not holds_first:
                    continue  # the store keeps the first file's, on purpose
            elif not along and position not in static_check:
                continue
            stored = combined.variables[name]
            if mode == "full" or not along:
                regions: list[dict[str, slice]] = [{}]
            else:
                regions = _sample_regions(
                    source[name], concat_dim, info.url, settings.verify_sample_chunks
                )
            for region in regions:
                in_store = _in_store(region, window if along else {}, stored)
                with source_decodes(info, manifest, settings, storage, str(name), var, region):
                    expected = _load(var, region)
                if along:
                    found = (
                        _read_for(read, str(name), window[concat_dim], concat_dim)
                        if not region
                        else None
                    )
                else:
                    found = statics.get(str(name))
                if found is None:
                    with store_decodes(
                        info,
                        manifest,
                        store,
                        store_format,
                        str(name),
                        stored,
                        in_store,
                        settings,
                        storage,
                    ):
                        found = _load(stored, in_store)
                    if not along and found.nbytes <= budget:
                        statics[str(name)] = found
                why = _compare(expected, found)
                values_compared += int(np.size(expected))
                if why:
                    where = f" (region {region})" if region else ""
                    mismatches.append(Mismatch(info.url, str(name), why + where))
                    break
            variables_checked += 1
        return True

    try:
        with ExitStack() as opened:  # closes the files still open when leaving early
            groups = _groups(
                files,
                start,
                lambda position, info: open_one(position, info, opened),
                _step_bytes(combined, concat_dim, dropped),
                budget,
                GROUPED_FILES if whole else 1,
            )
            for group in groups:
                read = _read_together(group, combined, concat_dim, dropped)
                for item in group:
                    with source_opens(item.info, manifest, settings, storage, whole=whole):
                        try:
                            checked = compare_one(item, read)
                        finally:
                            item.closing.close()
                    if not checked:
                        continue
                    if len(mismatches) >= MAX_REPORTED:
                        break
                    memory.check(f"after comparing {item.info.url}")
                else:
                    continue
                break
    except Exception as exc:
        classified = classify(exc, f"comparing the store {store_url} with its sources")
        if classified is exc:
            raise
        raise classified from exc
    for url in dict.fromkeys(m.url for m in mismatches):  # differs, or changed meanwhile?
        still_as_scanned(url, manifest, settings, storage)
    folded, _ = fold_claims(claims)  # disjoint: a file claiming a step twice is a mismatch
    tally = VerifyTally(
        start=start,
        stop=stop,
        mode=mode,
        steps=steps,
        claims=folded,
        mismatches=[m.__dict__ for m in mismatches[:MAX_REPORTED]],
        files_checked=len(files),
        variables_checked=variables_checked,
        values_compared=values_compared,
        seconds=time.perf_counter() - started,
    )
    emit(
        log,
        "verify batch done",
        stage="verify",
        dataset=manifest.dataset_id,
        store_url=store_url,
        mode=mode,
        batch=[start, stop],
        file_count=len(files),
        mismatches=len(tally.mismatches),
        values_compared=values_compared,
        seconds=round(tally.seconds, 3),
    )
    return tally


def also_another_files(concat_dim: str, other: str = "") -> str:
    """Why a file whose steps another file holds too fails verify."""
    return (
        f"its steps are also another file's{other}: two files hold the same {concat_dim} "
        "values (was a file overwritten with another's content?)"
    )
