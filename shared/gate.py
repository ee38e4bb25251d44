"""The gate: after every file is validated and before any reference is generated, decide
whether this collection may be combined at all.

Today it refuses a collection with any unsuitable file and writes a gate report naming every
such file and its findings. Cross-file consistency rules (chunk shapes, encodings, time
units, grids) arrive with the consistency-gate issue and plug in here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared.errors import UnsuitableCollection
from shared.layout import Layout
from shared.scan import load_manifest
from shared.settings import Settings
from shared.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)

READ_WORKERS = 16
FIRST_ERRORS = 10


@dataclass(frozen=True)
class GateResult:
    report_url: str
    files: int
    suitable: int
    with_warnings: int
    unsuitable: int
    findings_by_code: dict[str, int]
    first_errors: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.unsuitable == 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


def gate(manifest_url: str, settings: Settings, storage: Storage | None = None) -> GateResult:
    """Read every file report; raise UnsuitableCollection (with the report URL) on failure."""
    started = time.perf_counter()
    storage = storage or Storage(settings)
    layout = Layout.from_settings(settings)
    manifest = load_manifest(manifest_url, settings, storage)

    def read(info: ObjectInfo) -> dict[str, Any]:
        return storage.read_json(layout.report(info.url, info.etag))

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        reports = list(pool.map(read, manifest.files))
    verdicts = Counter(r["verdict"] for r in reports)
    codes = Counter(f["code"] for r in reports for f in r["findings"])
    errors = [
        {"url": r["url"], "code": f["code"], "message": f["message"]}
        for r in reports
        for f in r["findings"]
        if f["severity"] == "error"
    ]
    location = layout.work.join("gate", manifest.dataset_id, f"{manifest.digest}.json")
    result = GateResult(
        report_url=location.url,
        files=len(reports),
        suitable=verdicts.get("suitable", 0),
        with_warnings=verdicts.get("suitable_with_warnings", 0),
        unsuitable=verdicts.get("unsuitable", 0),
        findings_by_code=dict(sorted(codes.items())),
        first_errors=errors[:FIRST_ERRORS],
        seconds=time.perf_counter() - started,
    )
    storage.write_json(
        location,
        {
            **result.to_dict(),
            "kind": "gate-report",
            "manifest_url": manifest_url,
            "unsuitable_files": [
                {
                    "url": r["url"],
                    "findings": [f for f in r["findings"] if f["severity"] == "error"],
                }
                for r in reports
                if r["verdict"] == "unsuitable"
            ],
        },
    )
    log.info(
        "gate done",
        extra={
            "stage": "gate",
            "dataset": manifest.dataset_id,
            "file_count": result.files,
            "unsuitable": result.unsuitable,
            "findings": result.findings_by_code,
            "seconds": round(result.seconds, 3),
        },
    )
    if not result.passed:
        shown = "; ".join(f"{e['url']}: {e['message']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise UnsuitableCollection(
            f"{result.unsuitable} of {result.files} files cannot be combined: {shown}{more}. "
            f"Full list: {location.url}",
            gate=result.to_dict(),
        )
    return result
