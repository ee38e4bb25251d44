"""Combine spread over activities, for collections too large for one: each batch of files
is merged into a partial (its references as columns, shared.stages.merge, checked and
ordered within the batch) written to the work area; the join reads the partials, orders
all files, checks the boundaries between them and writes the store a piece at a time
(shared.stages.chunkrefs). Neither reads the whole scan manifest: a batch reads its
slice, the join its header (load_manifest_slice). At 1,000,000 files no activity
exceeds 700 MB (docs/benchmarks.md). The join decides each variable's chunk grid from
every file (shared.stages.grid): a batch keeps its files' own chunks, as they are stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from shared.io.memory import MemoryWatch
from shared.io.storage import Storage, storage_faults
from shared.model.layout import Layout
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.model.telemetry import emit
from shared.stages.chunks import Chunks
from shared.stages.combine import (
    CombineResult,
    Joined,
    combine,
    merge_columns,
    read_columns,
    reference_loader,
    reusable_store,
)
from shared.stages.merge import Columns, ordered
from shared.stages.scan import ScanManifest, load_manifest_slice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartialResult:
    partial_url: str
    files: int
    partial_bytes: int
    seconds: float
    peak_memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def merge_batch(
    manifest_url: str,
    start: int,
    stop: int,
    request: PipelineRequest,
    run_id: str,
    settings: Settings,
    storage: Storage | None = None,
) -> PartialResult:
    """Merge the references of manifest files [start, stop) into one partial; none when the
    run's store was verified before (a repeated run: the join reuses that store, as combine
    never writes a verified store again, and reads no partial)."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    layout = Layout.from_settings(settings)
    if reusable_store(layout, request.dataset_id, run_id, storage) is not None:
        emit(log, "combine batch skipped", stage="combine", dataset=request.dataset_id,
             batch=[start, stop], reason="the run's store was verified before: the join "
             "reuses it")  # fmt: skip
        return PartialResult("", stop - start, 0, time.perf_counter() - started, 0)
    # Only this batch's files: the whole manifest is 700 MB at 1,000,000 files.
    batch, _ = load_manifest_slice(manifest_url, start, stop, settings, storage)
    memory = MemoryWatch(settings.memory_limit_bytes, "combine")
    target = layout.partial(request.dataset_id, run_id, start)
    columns = read_columns(batch, request, settings, storage, memory)
    first = int(ordered(columns)[1][0])  # also checks order and overlaps in the batch
    columns.templates = {first: reference_loader(batch, settings, storage)(batch.files[first])}
    data = columns.to_bytes()
    memory.check("after merging the batch")
    with storage_faults(f"writing the partial {target.url}"):
        storage.write(target, data, "application/octet-stream")
    result = PartialResult(
        target.url, len(batch.files), len(data), time.perf_counter() - started, memory.peak
    )
    emit(log, "combine batch merged", stage="combine", dataset=request.dataset_id,
         batch=[start, stop], memory_limit_bytes=memory.limit, **result.to_dict())  # fmt: skip
    return result


def join_partials(
    manifest_url: str,
    starts: list[int],
    request: PipelineRequest,
    run_id: str,
    settings: Settings,
    storage: Storage | None = None,
) -> CombineResult:
    """The run's store from the partials of the batches starting at ``starts``."""
    storage = storage or Storage(settings)
    layout = Layout.from_settings(settings)
    given = storage

    def joined(manifest: ScanManifest, memory: MemoryWatch) -> Joined:
        """The partials joined; the virtual variables' chunks beside the dataset, to be
        written piece by piece (shared.stages.chunkrefs)."""
        parts = []
        for start in starts:
            with storage_faults(f"reading the partial of batch {start}"):
                data = given.read(layout.partial(request.dataset_id, run_id, start))
            parts.append(Columns.from_bytes(data))
            del data
            memory.check(f"after reading {len(parts):,} of {len(starts):,} partials")
        columns = Columns.join(parts)
        del parts
        chunks: dict[str, Chunks] = {}
        template = columns.templates.__getitem__
        dataset = merge_columns(columns, manifest, request, settings, given, template, chunks)
        return dataset, chunks

    return combine(manifest_url, request, run_id, settings, storage, joined=joined)
