"""Verify: reopen the combined store with xarray and compare it with the source files.

Nothing is registered unless this passes. Each source file is opened independently of the
reference machinery (h5netcdf over a ranged reader for HDF5, the netCDF-C library for
NetCDF3) with CF decoding on, exactly as a user would open it, and compared with the slice of
the store it should have become: same variables, dtypes, attributes and values (NaN equals
NaN), same decoded times.

Small collections (total size up to PIPELINE_VERIFY_FULL_MAX_BYTES) are compared in full.
Larger ones are compared on a deterministic sample: for every file, every variable along the
concat dimension is checked in PIPELINE_VERIFY_SAMPLE_CHUNKS chunks chosen by a hash of the
file URL and variable name, and variables without the concat dimension are checked in full for
the first and last file and one hashed file in between.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from shared.combine import source_root
from shared.errors import VerifyMismatch
from shared.formats import sniff
from shared.layout import Layout
from shared.locations import Location, parse_location
from shared.memory import MemoryWatch
from shared.scan import load_manifest
from shared.settings import Settings
from shared.storage import ObjectInfo, Storage, classify, storage_faults
from shared.stores import open_store
from shared.telemetry import emit

log = logging.getLogger(__name__)

MAX_REPORTED = 5
# When a variable is not chunked, a sample covers one step and at most this many elements
# along each other dimension.
UNCHUNKED_SAMPLE_EDGE = 512


@dataclass(frozen=True)
class VerifyResult:
    store_url: str
    mode: str  # "full" or "sample"
    files_checked: int
    variables_checked: int
    values_compared: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Mismatch:
    url: str
    variable: str
    what: str

    def sentence(self) -> str:
        return f"{self.url}, variable {self.variable!r}: {self.what}"


@contextmanager
def open_source(
    info: ObjectInfo, settings: Settings, storage: Storage, group: str | None = None
) -> Iterator[xr.Dataset]:
    """Open one source file (one group of it) with xarray, CF decoding on, without the
    reference machinery."""
    location = parse_location(info.url, settings, what="source file")
    head = storage.read_range(location, 0, min(info.size, 8))
    file_format = sniff(head)
    if file_format == "hdf5":
        target: Any = (
            location.path if location.is_local else storage.reader(location, size=info.size)
        )
        with xr.open_dataset(target, engine="h5netcdf", chunks=None, group=group) as ds:
            yield ds
        return
    import netCDF4

    if location.is_local:
        nc = netCDF4.Dataset(location.path, "r")
    else:
        nc = netCDF4.Dataset(location.name, "r", memory=storage.read(location))
    with xr.open_dataset(xr.backends.NetCDF4DataStore(nc), chunks=None) as ds:
        yield ds


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
                dim: slice(int(i) * c, min((int(i) + 1) * c, size))
                for dim, i, c, size in zip(var.dims, index, chunks, var.shape, strict=True)
            }
        )
    return regions


def _compare(expected: xr.Variable, found: xr.Variable) -> str | None:
    """None if identical (dims, dtype, attrs, values with NaN == NaN), else why not."""
    if expected.dims != found.dims:
        return f"dimensions {found.dims} in the store, {expected.dims} in the file"
    if expected.dtype != found.dtype:
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
    equal = a == b
    if a.dtype.kind in "fc" or a.dtype.kind == "M":
        equal |= _isnan(a) & _isnan(b)
    if bool(np.all(equal)):
        return None
    where = tuple(int(i) for i in np.argwhere(~np.asarray(equal))[0])
    count = int(np.size(equal) - np.count_nonzero(equal))
    return (
        f"{count} of {np.size(equal)} values differ; first at index {where}: "
        f"{_show(b[where])} in the store, {_show(a[where])} in the file"
    )


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


def _static_files_to_check(files: tuple[ObjectInfo, ...], mode: str) -> set[str]:
    if mode == "full" or len(files) <= 3:
        return {f.url for f in files}
    middle = files[1 + _digest_int(*(f.url for f in files)) % (len(files) - 2)]
    return {files[0].url, files[-1].url, middle.url}


def verify(
    manifest_url: str,
    store_url: str,
    store_format: str,
    concat_dim: str,
    settings: Settings,
    storage: Storage | None = None,
    *,
    drop_variables: Sequence[str] = (),
    static_differs: str = "refuse",
) -> VerifyResult:
    """Compare the store with every source file. Variables the request dropped are not in
    the store and not compared; with static_differs "keep-first", a variable without the
    concat dimension is compared with the file that holds the first steps only (the store
    keeps that file's)."""
    started = time.perf_counter()
    dropped = set(drop_variables)
    storage = storage or Storage(settings)
    manifest = load_manifest(manifest_url, settings, storage)
    mode = "full" if manifest.total_bytes <= settings.verify_full_max_bytes else "sample"
    store: Location = parse_location(store_url, settings, what="store")
    with storage_faults(f"opening the store {store_url}"):
        combined = open_store(store, store_format, source_root(manifest, settings), settings)
    index = combined.get_index(concat_dim)
    static_check = _static_files_to_check(manifest.files, mode)
    memory = MemoryWatch(settings.memory_limit_bytes, "verify")
    mismatches: list[Mismatch] = []
    variables_checked = values_compared = 0
    # Which steps of the store some file accounts for: each exactly once, all of them.
    claimed = np.zeros(combined.sizes[concat_dim], dtype=bool)
    try:
        for info in manifest.files:
            with open_source(info, settings, storage, manifest.group) as source:
                positions = index.get_indexer(source[concat_dim].values)
                if (positions < 0).any():
                    missing = source[concat_dim].values[positions < 0][:3]
                    mismatches.append(
                        Mismatch(info.url, concat_dim, f"values {missing} are not in the store")
                    )
                    continue
                if not np.array_equal(positions, np.arange(positions[0], positions[-1] + 1)):
                    mismatches.append(
                        Mismatch(info.url, concat_dim, "its steps are not contiguous in the store")
                    )
                    continue
                if claimed[positions].any():
                    mismatches.append(
                        Mismatch(
                            info.url,
                            concat_dim,
                            "its steps are also another file's: two files hold the same "
                            f"{concat_dim} values (was a file overwritten with another's content?)",
                        )
                    )
                    continue
                claimed[positions] = True
                window = {concat_dim: slice(int(positions[0]), int(positions[-1]) + 1)}
                extra = sorted(set(combined.variables) - set(source.variables))
                if extra and info.url == manifest.files[0].url:
                    mismatches.append(
                        Mismatch(info.url, extra[0], "is in the store but not in the file")
                    )
                holds_first = int(positions[0]) == 0
                for name, var in source.variables.items():
                    if name in dropped:
                        continue
                    if name not in combined.variables:
                        mismatches.append(
                            Mismatch(info.url, str(name), "is missing from the store")
                        )
                        continue
                    along = concat_dim in var.dims
                    if not along and static_differs == "keep-first":
                        if not holds_first:
                            continue  # the store keeps the first file's, on purpose
                    elif not along and info.url not in static_check:
                        continue
                    stored = combined[name].isel(window) if along else combined[name]
                    if mode == "full" or not along:
                        regions: list[dict[str, slice]] = [{}]
                    else:
                        regions = _sample_regions(
                            source[name], concat_dim, info.url, settings.verify_sample_chunks
                        )
                    for region in regions:
                        expected = var[region] if region else var
                        found = stored.variable[region] if region else stored.variable
                        why = _compare(expected, found)
                        values_compared += int(np.size(expected))
                        if why:
                            where = f" (region {region})" if region else ""
                            mismatches.append(Mismatch(info.url, str(name), why + where))
                            break
                    variables_checked += 1
            if len(mismatches) >= MAX_REPORTED:
                break
            memory.check(f"after comparing {info.url}")
        if not mismatches and not claimed.all():
            mismatches.append(
                Mismatch(
                    store_url,
                    concat_dim,
                    f"the store has {combined.sizes[concat_dim]} steps but the files account "
                    f"for {int(claimed.sum())}",
                )
            )
    except Exception as exc:
        classified = classify(exc, f"comparing the store {store_url} with its sources")
        if classified is exc:
            raise
        raise classified from exc
    finally:
        combined.close()
    if mismatches:
        raise VerifyMismatch(
            f"The store {store_url} does not read back equal to its sources: "
            + "; ".join(m.sentence() for m in mismatches[:MAX_REPORTED]),
            mismatches=[m.__dict__ for m in mismatches[:MAX_REPORTED]],
        )
    layout = Layout.from_settings(settings)
    dataset_id = manifest.dataset_id
    run_id = store.name.split(".", 1)[0]
    storage.write_json(
        layout.verified_marker(dataset_id, run_id),
        {
            "kind": "verified-store",
            "store_url": store_url,
            "manifest_url": manifest_url,
            "mode": mode,
            "values_compared": values_compared,
        },
    )
    result = VerifyResult(
        store_url=store_url,
        mode=mode,
        files_checked=len(manifest.files),
        variables_checked=variables_checked,
        values_compared=values_compared,
        seconds=time.perf_counter() - started,
    )
    emit(
        log,
        "verify done",
        stage="verify",
        dataset=manifest.dataset_id,
        store_url=store_url,
        mode=mode,
        file_count=len(manifest.files),
        values_compared=values_compared,
        seconds=round(result.seconds, 3),
    )
    return result
