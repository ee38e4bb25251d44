"""The path combine took before merging manifests: every file opened as a virtual dataset,
then xr.concat. Production has one path (shared.stages.merge); this one stays only as the
tests' oracle, which the merge must equal wherever the files' own chunks form one grid
(tests/test_merge.py). Collections it cannot combine (chunk shapes that differ along the
concat dimension, ZEP003) are the ones the merge cuts into sub-chunks instead."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import xarray as xr

from shared.io.memory import MemoryWatch
from shared.io.storage import Storage
from shared.model.errors import CombineFailed, PipelineError
from shared.model.request import PipelineRequest
from shared.model.settings import Settings
from shared.stages.combine import (
    READ_WORKERS,
    encodable_times,
    open_virtual,
    reference_loader,
    source_root,
)
from shared.stages.merge import order_files
from shared.stages.scan import ScanManifest


def concat_failed(files: int, concat_dim: str, exc: Exception) -> CombineFailed:
    return CombineFailed(
        f"Concatenating {files} files along {concat_dim!r} failed: {type(exc).__name__}: {exc}",
        remedy="Run `python -m devhost validate` on the source to find the odd file.",
    )


def concatenate_opened(
    manifest: ScanManifest,
    request: PipelineRequest,
    settings: Settings,
    storage: Storage,
    memory: MemoryWatch | None = None,
) -> xr.Dataset:
    """Every file opened as a virtual dataset, then xr.concat."""
    registry = storage.registry([source_root(manifest, settings)])
    load = reference_loader(manifest, settings, storage)
    memory = memory or MemoryWatch(settings.memory_limit_bytes, "combine")
    datasets = []
    with ThreadPoolExecutor(READ_WORKERS) as pool:
        for document in pool.map(load, manifest.files):
            datasets.append(
                open_virtual(document, registry, request.concat_dim, request.drop_variables)
            )
    urls = [info.url for info in manifest.files]
    values = [ds[request.concat_dim].values for ds in datasets]
    order = order_files(values, urls, request.concat_dim)
    try:
        combined = xr.concat(
            [datasets[i] for i in order],
            dim=request.concat_dim,
            data_vars="minimal",
            coords="minimal",
            compat="override",
            combine_attrs="override",
            join="exact",
        )
        return encodable_times(combined, request.concat_dim)
    except PipelineError:
        raise
    except Exception as exc:
        raise concat_failed(len(datasets), request.concat_dim, exc) from exc
