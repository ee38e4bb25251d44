"""Small helpers shared by tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from shared.request import PipelineRequest
from shared.samples import open_collection
from shared.scan import ScanResult, scan
from shared.settings import Settings


def open_sources(paths: list[Path]) -> xr.Dataset:
    """What a user gets from xarray itself: the reference answer every store must equal."""
    return open_collection(paths).load()


def scanned(source: str, settings: Settings, **fields) -> tuple[PipelineRequest, ScanResult]:
    request = PipelineRequest.from_dict({"source": source, "dataset_id": "tas-daily", **fields})
    return request, scan(request, settings)
