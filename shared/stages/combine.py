"""Combine: concatenate every file's references along the concat dimension into one store.

The concat coordinate, its bounds and the scalar variables are loaded from the raw bytes
inlined in each file's references, decoded with that file's own units and calendar (the
bounds with their coordinate's, as CF says), sorted, and checked to be strictly increasing
with no overlap between files; everything else stays virtual.

An Icechunk run whose new files only extend the published version appends them to a copy
of the published repository as one new commit instead (append_icechunk, docs/events.md).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from kerchunk.df import refs_to_dataframe
from virtualizarr.manifests import ManifestArray, ManifestStore

from shared.catalog.ledger import read_published
from shared.io.memory import MemoryWatch
from shared.io.storage import ObjectInfo, Storage, storage_faults
from shared.io.stores import (
    create_icechunk_repository,
    fix_kerchunk_refs,
    open_icechunk_repository,
    open_store,
    virtual_container_prefix,
)
from shared.model.errors import CombineFailed, PipelineError
from shared.model.layout import Layout, library_versions
from shared.model.locations import Location, parse_location
from shared.model.request import PipelineRequest, StoreFormat
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages import chunkrefs
from shared.stages.chunks import Chunks
from shared.stages.merge import Columns, merge, no_coordinate
from shared.stages.references import concat_bounds, load_references, manifest_group
from shared.stages.scan import (
    ScanManifest,
    load_manifest,
    load_manifest_slice,
    manifest_pieces,
)

log = logging.getLogger(__name__)

READ_WORKERS = 16
ICECHUNK_MESSAGE = "virtual-zarr-pipeline: combined references"


# A spread combine's dataset and, where it left the manifests empty, the chunks (merge).
Joined = tuple[xr.Dataset, dict[str, Chunks] | None]


@dataclass(frozen=True)
class CombineResult:
    store_url: str
    format: str
    run_id: str
    file_count: int
    concat_dim: str
    dims: dict[str, int]
    variables: list[str]
    first: str  # first and last value of the concat coordinate, as text
    last: str
    reference_count: int
    store_bytes: int
    seconds: float
    peak_memory_bytes: int
    libraries: dict[str, str] = field(default_factory=dict)
    # "append": new files added to a copy of the published Icechunk repository as a new
    # commit (reference_count then counts the references added); "recombine": every file.
    mode: str = "recombine"
    # each data variable's chunk shape in the store (shared.stages.grid decided it)
    chunks: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CombineResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def reusable_store(
    layout: Layout, dataset_id: str, run_id: str, storage: Storage
) -> CombineResult | None:
    """What combine said of the run's store, when that store was verified (a repeated run:
    it is reused, never written again, so nothing needs building); else None. A store
    verified before combine kept its result is built again in memory, not written."""
    if not storage.exists(layout.verified_marker(dataset_id, run_id)):
        return None
    try:
        return CombineResult.from_dict(storage.read_json(layout.combine_result(dataset_id, run_id)))
    except PipelineError as exc:
        if exc.retryable:
            raise
        return None
    except TypeError:  # a result of another shape: build it again
        return None


def source_root(manifest: ScanManifest, settings: Settings) -> Location:
    """The folder/prefix all source files live under (the source, or a single file's parent)."""
    source = parse_location(manifest.source, settings, what="source")
    if len(manifest.files) == 1 and manifest.files[0].url == source.url:
        parent = source.path.rsplit("/", 1)[0]
        return Location(source.kind, source.container, parent or ("/" if source.is_local else ""))
    return source


def open_virtual(
    document: dict[str, Any], registry: Any, concat_dim: str, drop: tuple[str, ...] = ()
) -> xr.Dataset:
    group = manifest_group(document)
    url = document["source"]["url"]
    # Loaded (decoded per file, then encoded once): the concat coordinate, its bounds (CF:
    # they take its units and calendar) and the scalars. Everything else stays virtual.
    bounds = concat_bounds(group, concat_dim)
    loadable = [
        name
        for name, array in group.arrays.items()
        if (array.ndim == 0 or (name == concat_dim and array.ndim == 1) or name in bounds)
        and name not in drop
    ]
    if concat_dim not in loadable:
        dims = (d for a in group.arrays.values() for d in (a.metadata.dimension_names or ()))
        raise no_coordinate(url, concat_dim, dims)
    try:
        opened = ManifestStore(group=group, registry=registry).to_virtual_dataset(
            loadable_variables=loadable
        )
        return opened.drop_vars(drop, errors="ignore")  # left out, as the request asks
    except PipelineError:
        raise
    except Exception as exc:
        raise CombineFailed(
            f"Could not open the references of {url}: {type(exc).__name__}: {exc}"
        ) from exc


def reference_loader(
    manifest: ScanManifest, settings: Settings, storage: Storage
) -> Callable[[ObjectInfo], dict[str, Any]]:
    layout = Layout.from_settings(settings)

    def load(info: ObjectInfo) -> dict[str, Any]:
        try:
            return load_references(info, settings, storage, group=manifest.group, layout=layout)
        except PipelineError as exc:
            if exc.retryable:
                raise  # a storage fault: the orchestrator retries the activity
            raise CombineFailed(
                f"The references of {info.url} are missing or unreadable ({exc.message}).",
                remedy="Run the generate stage for this file again.",
            ) from exc

    return load


def read_columns(
    manifest: ScanManifest,
    request: PipelineRequest,
    settings: Settings,
    storage: Storage,
    memory: MemoryWatch,
) -> Columns:
    """The files' references as columns (shared.stages.merge), read ahead in threads."""
    load = reference_loader(manifest, settings, storage)
    columns = Columns(request.concat_dim, tuple(request.drop_variables))
    with ThreadPoolExecutor(READ_WORKERS) as pool:
        for count, document in enumerate(pool.map(load, manifest.files), start=1):
            columns.add(document)
            if count % 100 == 0:
                memory.check(
                    f"after reading {count:,} of {len(manifest.files):,} files' references"
                )
    return columns


def merge_columns(
    columns: Columns,
    manifest: ScanManifest,
    request: PipelineRequest,
    settings: Settings,
    storage: Storage,
    template: Callable[[int], dict[str, Any]] | None = None,
    chunks: dict[str, Chunks] | None = None,
) -> xr.Dataset:
    """The merged dataset; ``template(i)``: file i's references document (default: read);
    ``chunks``: the virtual variables' chunks go there, not into manifests (merge)."""
    registry = storage.registry([source_root(manifest, settings)])
    load = template or (lambda i: reference_loader(manifest, settings, storage)(manifest.files[i]))
    dim, drop = request.concat_dim, tuple(request.drop_variables)

    def opened(i: int) -> xr.Dataset:
        return open_virtual(load(i), registry, dim, drop)

    combined = merge(columns, opened, settings.subchunk_max_bytes, chunks)
    return encodable_times(combined, dim)


def concatenate(
    manifest: ScanManifest,
    request: PipelineRequest,
    settings: Settings,
    storage: Storage,
    memory: MemoryWatch | None = None,
    chunks: dict[str, Chunks] | None = None,
) -> xr.Dataset:
    """Every file's references merged into one dataset (shared.stages.merge); ``chunks``:
    the virtual variables' chunks go there, to be written piece by piece (merge)."""
    memory = memory or MemoryWatch(settings.memory_limit_bytes, "combine")
    columns = read_columns(manifest, request, settings, storage, memory)
    memory.check(f"before merging {len(manifest.files):,} files")
    return merge_columns(columns, manifest, request, settings, storage, chunks=chunks)


_CALENDAR_MONTHS = re.compile(
    r"^\s*(months|years|common_months|common_years)\s+since\s+(.+)$", re.IGNORECASE
)


def encodable_times(dataset: xr.Dataset, concat_dim: str) -> xr.Dataset:
    """Time in "months since" or "years since" (CF allows them in the 360_day calendar, where
    a month is 30 days) decodes in xarray but cannot be encoded again: such a coordinate and
    its bounds are stored in "days since" the same date, which decodes to the same dates."""
    if concat_dim not in dataset.variables:
        return dataset
    names = [concat_dim, *(dataset[concat_dim].attrs.get(k) for k in ("bounds", "climatology"))]
    names += [dataset[concat_dim].encoding.get(k) for k in ("bounds", "climatology")]
    for name in {n for n in names if isinstance(n, str) and n in dataset.variables}:
        encoding = dataset[name].encoding
        found = _CALENDAR_MONTHS.match(str(encoding.get("units") or ""))
        if found:
            encoding["units"] = f"days since {found.group(2).strip()}"
            encoding["dtype"] = np.dtype("float64")
    return dataset


def write_store(
    combined: xr.Dataset,
    target: Location,
    store_format: StoreFormat,
    source: Location,
    settings: Settings,
    storage: Storage,
    chunks: dict[str, Chunks] | None = None,
) -> int:
    """Write the store (replacing a previous write of the same run); returns bytes written.
    ``chunks``: the virtual variables' chunks, written piece by piece (shared.stages.
    chunkrefs) where the dataset's manifests are left empty."""
    if store_format == "icechunk":
        if _has_objects(storage, target):
            storage.delete_prefix(target)
        prefix = virtual_container_prefix(source)
        if chunks is None:
            repo = create_icechunk_repository(target, prefix, settings)
            session = repo.writable_session("main")
            combined.vz.to_icechunk(session.store)
            session.commit(ICECHUNK_MESSAGE)
        else:
            create_icechunk_repository(target, prefix, settings, split=chunkrefs.PIECE)
            repo = open_icechunk_repository(target, settings, cache=False)
            chunkrefs.icechunk(combined, chunks, repo, ICECHUNK_MESSAGE)
        return 0
    refs = fix_kerchunk_refs(combined.vz.to_kerchunk(format="dict"))
    if store_format == "kerchunk-json":
        if chunks is None:
            data = json.dumps(refs, separators=(",", ":")).encode()
            storage.write(target, data, "application/json")
            return len(data)
        pieces = chunkrefs.kerchunk_json(refs, chunks)
        storage.write(target, pieces, "application/json")
        return sum(len(p) for p in pieces)
    if _has_objects(storage, target):
        storage.delete_prefix(target)
    # Parquet is written to a temporary folder by kerchunk, then copied with our own client,
    # so local and blob targets take the same path and no second storage client is needed.
    with tempfile.TemporaryDirectory(prefix="refs-") as folder:
        root = Path(folder) / "refs.parq"
        root.mkdir()
        if chunks is None:
            refs_to_dataframe(refs, str(root))
        else:
            chunkrefs.kerchunk_parquet(refs, chunks, root)
        written = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            storage.write(target.join(path.relative_to(root).as_posix()), data)
            written += len(data)
    return written


def append_icechunk(
    manifest_url: str,
    request: PipelineRequest,
    target: Location,
    settings: Settings,
    storage: Storage,
    memory: MemoryWatch,
) -> int | None:
    """Write the run's Icechunk store as the published version plus one commit that appends
    the new files, when that gives the same store as recombining every file: the published
    version is Icechunk along the same dimension, none of its files changed or went away,
    and every new file comes after its last step. Returns the references appended, or None
    (recombine). The published repository is copied, never written: each version stays its
    own store, so a failed run leaves the published one untouched. Both manifests are read
    a piece at a time (at 1,000,000 files one loaded whole is 700 MB): only the published
    files' ETags are held, and the new files."""
    if request.format != "icechunk" or request.options.get("full"):
        return None
    record = read_published(request.dataset_id, settings, storage)
    if record is None or (record.get("format"), record.get("concat_dim")) != (
        "icechunk",
        request.concat_dim,
    ):
        return None
    published = {
        f.url: f.etag
        for piece in manifest_pieces(record["manifest_url"], settings, storage)
        for f in piece.files
    }
    new: list[ObjectInfo] = []
    unchanged = 0
    for piece in manifest_pieces(manifest_url, settings, storage):
        manifest = piece
        for info in piece.files:
            etag = published.get(info.url)
            if etag is None:
                new.append(info)
            elif etag != info.etag:
                return None  # a file changed: only a recombined store is right
            else:
                unchanged += 1
    if unchanged != len(published) or not new:
        return None  # a published file went away (recombine), or nothing new
    base = parse_location(record["store_url"], settings, what="published store")
    source = source_root(manifest, settings)
    added = concatenate(
        manifest.subset(tuple(new)),
        request,
        settings,
        storage,
        memory,
    )
    with open_store(base, "icechunk", source, settings) as existing:
        last = existing[request.concat_dim].values[-1]
        misfit = _does_not_fit(existing, added, request.concat_dim)
        # the store keeps the first file's global attributes, as a recombine does (per-file
        # ones such as CMIP6's tracking_id would otherwise become the last new file's)
        added.attrs = dict(existing.attrs)
    first = added[request.concat_dim].values[0]
    try:
        extends = bool(first > last)
    except TypeError:
        extends = False
    if not extends or misfit:
        emit(
            log,
            f"new files {misfit or 'do not extend the published store'}: recombining",
            stage="combine",
            dataset=request.dataset_id,
            first_new=str(first),
        )
        return None
    if _has_objects(storage, target):
        storage.delete_prefix(target)
    for info in storage.list(base):
        relative = info.url[len(base.url) + 1 :]
        storage.write(target.join(relative), storage.read(base.join(relative)))
    session = open_icechunk_repository(target, settings).writable_session("main")
    added.vz.to_icechunk(session.store, append_dim=request.concat_dim)
    session.commit(f"virtual-zarr-pipeline: append {len(new)} file(s) to {record['run_id']}")
    emit(
        log,
        "appended to the published store",
        stage="combine",
        dataset=request.dataset_id,
        base_run=record["run_id"],
        files_appended=len(new),
    )
    return int(added.vz.nrefs())


def _does_not_fit(existing: xr.Dataset, added: xr.Dataset, dim: str) -> str | None:
    """Why the new files' store cannot be appended to the published one (None: it can):
    each virtual variable must have the same chunk shape in both (the new files' lengths may
    give another grid, shared.stages.grid), and the published store must end on a whole
    chunk (Icechunk appends after a partial last chunk silently wrong)."""
    for name, variable in added.variables.items():
        if not isinstance(variable.data, ManifestArray) or dim not in variable.dims:
            continue
        grid: Any = variable.data.metadata.chunk_grid
        chunks = tuple(int(c) for c in grid.chunk_shape)
        published = tuple(existing[name].encoding.get("chunks") or ())
        if published != chunks:
            return (
                f"store {name} in chunks of {list(chunks)}, the published store in "
                f"{list(published)}"
            )
        if existing.sizes[dim] % chunks[variable.dims.index(dim)]:
            return f"follow a partial last chunk of {name} in the published store"
    return None


def _has_objects(storage: Storage, prefix: Location) -> bool:
    return bool(storage.count_below(prefix, limit=1))


def combine(
    manifest_url: str,
    request: PipelineRequest,
    run_id: str,
    settings: Settings,
    storage: Storage | None = None,
    joined: Callable[[ScanManifest, MemoryWatch], Joined] | None = None,
) -> CombineResult:
    """Combine every file of the manifest into the run's store (``joined``: the dataset is
    built otherwise, from partials that combine batches wrote; shared.stages.spread: it gets
    the manifest's header and first file only, and gives the dataset with the virtual
    variables' chunks beside it, written piece by piece). A repeated run whose store was
    verified reuses it as it is, and builds nothing (reusable_store)."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    memory = MemoryWatch(settings.memory_limit_bytes, "combine")
    layout = Layout.from_settings(settings)
    before = reusable_store(layout, request.dataset_id, run_id, storage)
    if before is not None:
        result = replace(
            before,
            store_bytes=0,
            mode="recombine",
            seconds=time.perf_counter() - started,
            peak_memory_bytes=memory.peak,
        )
    else:
        result, written = _combine(
            manifest_url, request, run_id, settings, storage, joined, memory, started
        )
        if written:
            storage.write_json(layout.combine_result(request.dataset_id, run_id), result.to_dict())
    emit(
        log,
        "combine done",
        stage="combine",
        dataset=request.dataset_id,
        source_count=result.file_count,
        concat_dim=request.concat_dim,
        dims=result.dims,
        store_url=result.store_url,
        store_bytes=result.store_bytes,
        seconds=round(result.seconds, 3),
        peak_memory_bytes=result.peak_memory_bytes,
        # the ceiling in force: alert 7 watches their ratio (docs/operations.md), and the
        # workbook shows the peak against it
        memory_limit_bytes=memory.limit,
        mode=result.mode,
        chunks=result.chunks,
    )
    return result


def _combine(
    manifest_url: str,
    request: PipelineRequest,
    run_id: str,
    settings: Settings,
    storage: Storage,
    joined: Callable[[ScanManifest, MemoryWatch], Joined] | None,
    memory: MemoryWatch,
    started: float,
) -> tuple[CombineResult, bool]:
    """The run's store built (and written, unless a verified store of the run is there):
    its result, and whether it was written."""
    if joined is None:
        manifest = load_manifest(manifest_url, settings, storage)
        file_count = len(manifest.files)
    else:  # the whole manifest is 700 MB at 1,000,000 files: its header and first file
        manifest, file_count = load_manifest_slice(manifest_url, 0, 1, settings, storage)
    layout = Layout.from_settings(settings)
    target = layout.store(request.dataset_id, run_id, request.format)
    source = source_root(manifest, settings)
    reused = storage.exists(layout.verified_marker(request.dataset_id, run_id))
    appended = None
    if not reused:  # a store verified before (and maybe published) is never written again
        with storage_faults(f"appending to the published store for {target.url}"):
            appended = append_icechunk(manifest_url, request, target, settings, storage, memory)
    store_bytes = 0
    if appended is not None:
        with (
            storage_faults(f"opening the store {target.url}"),
            open_store(target, request.format, source, settings) as opened,
        ):
            combined = opened
            values = opened[request.concat_dim].values
            reference_count = appended
    else:
        chunks: dict[str, Chunks] | None = None
        if joined is not None:
            combined, chunks = joined(manifest, memory)
        else:
            # kerchunk references are written piece by piece (shared.stages.chunkrefs: the
            # same documents as VirtualiZarr's writer, vectorised; 365,000 references of a
            # 1,000-year daily collection in a second, not five); Icechunk's in one session
            chunks = {} if request.format != "icechunk" else None
            combined = concatenate(manifest, request, settings, storage, memory, chunks)
        memory.check("after concatenating")
        if not reused:
            with storage_faults(f"writing the store {target.url}"):
                store_bytes = write_store(
                    combined, target, request.format, source, settings, storage, chunks
                )
        memory.check("after writing the store")
        values = combined[request.concat_dim].values
        reference_count = int(combined.vz.nrefs())
        if chunks:  # their manifests were left with one (missing) chunk each
            reference_count += sum(len(c) - 1 for c in chunks.values())
    result = CombineResult(
        store_url=target.url,
        format=request.format,
        run_id=run_id,
        file_count=file_count,
        concat_dim=request.concat_dim,
        dims={str(k): int(v) for k, v in combined.sizes.items()},
        variables=sorted(str(v) for v in combined.data_vars),
        first=str(values[0]),
        last=str(values[-1]),
        reference_count=reference_count,
        store_bytes=store_bytes,
        seconds=time.perf_counter() - started,
        peak_memory_bytes=memory.peak,
        libraries=library_versions(),
        mode="append" if appended is not None else "recombine",
        chunks=store_chunks(combined),
    )
    return result, not reused


def store_chunks(dataset: xr.Dataset) -> dict[str, list[int]]:
    """Each data variable's chunk shape in the store (virtual, or read from the store)."""
    found = {}
    for name, variable in dataset.data_vars.items():
        if isinstance(variable.data, ManifestArray):
            grid: Any = variable.data.metadata.chunk_grid
            found[str(name)] = [int(c) for c in grid.chunk_shape]
        elif variable.ndim and variable.encoding.get("chunks"):
            found[str(name)] = [int(c) for c in variable.encoding["chunks"]]
    return found
