"""The real orchestrators with stand-in activities for the orchestration bench (part 4): no
I/O, answers of the real shapes at their largest (as tests/budget_app.py), and a known,
fixed cost: validate, generate and verify sleep BENCH_MS_PER_FILE (default 5) ms per file of
their batch; every other activity sleeps BENCH_MS_FIXED (default 20) ms. So the activity time
of a run is known, and wall time minus it is what the orchestration itself costs."""

from __future__ import annotations

import os
import time
from typing import Any

import azure.durable_functions as df

from activities.stages import Payload
from orchestrators.pipeline import bp as orchestrators

LONG = "az://source-container/" + "very/deep/prefix/" * 4
MESSAGE = "x" * 280
PER_FILE = float(os.environ.get("BENCH_MS_PER_FILE", "5")) / 1000
FIXED = float(os.environ.get("BENCH_MS_FIXED", "20")) / 1000

activities = df.Blueprint()


def _url(kind: str) -> str:
    return f"az://work-container/runs/{kind}/{'0' * 32}.json"


@activities.activity_trigger(input_name="payload")
def scan_files(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    count = int(payload["request"]["source"].removeprefix("synthetic://"))
    return {
        "ok": True, "manifest_url": _url("manifest"), "work_manifest_url": _url("manifest"),
        "work_count": count, "reused": 0, "base_run_id": None, "file_count": count,
        "total_bytes": count * 50_000_000, "seconds": FIXED, "run_id": "0" * 16,
    }  # fmt: skip


@activities.activity_trigger(input_name="payload")
def validate_files(payload: Payload) -> dict[str, Any]:
    files = payload["stop"] - payload["start"]
    time.sleep(PER_FILE * files)
    errors = [
        {"url": f"{LONG}file_{payload['start'] + i:06d}.nc", "code": "unsupported_filter",
         "message": MESSAGE}
        for i in range(5)
    ]  # fmt: skip
    return {
        "ok": True, "manifest_url": payload["manifest_url"], "start": payload["start"],
        "stop": payload["stop"], "files": files, "reused": 0, "verdicts": {"suitable": files},
        "findings": {"contiguous_large": files}, "bytes_read": files * 65536, "requests": files,
        "seconds": PER_FILE * files, "errors": errors, "error_count": files,
    }  # fmt: skip


@activities.activity_trigger(input_name="payload")
def gate_files(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {
        "ok": True, "report_url": _url("gate"), "summary_url": _url("gate-summary"), "files": 0,
        "suitable": 0, "with_warnings": 0, "unsuitable": 0, "findings_by_code": {},
        "first_errors": [], "seconds": FIXED, "passed": True,
    }  # fmt: skip


@activities.activity_trigger(input_name="payload")
def generate_files(payload: Payload) -> dict[str, Any]:
    files = payload["stop"] - payload["start"]
    time.sleep(PER_FILE * files)
    return {
        "ok": True, "files": files, "generated": files, "reused": 0, "bytes_read": files * 90_000,
        "requests": files * 18, "reference_bytes": files * 40_000, "seconds": PER_FILE * files,
    }  # fmt: skip


@activities.activity_trigger(input_name="payload")
def combine_store(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {"ok": True, "store_url": _url("store"), "reference_count": 10**6}


@activities.activity_trigger(input_name="payload")
def merge_batch(payload: Payload) -> dict[str, Any]:
    files = payload["stop"] - payload["start"]
    time.sleep(FIXED)
    return {"ok": True, "partial_url": _url("partial"), "files": files, "partial_bytes": 0,
            "seconds": FIXED, "peak_memory_bytes": 0}  # fmt: skip


@activities.activity_trigger(input_name="payload")
def join_partials(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {"ok": True, "store_url": _url("store"), "reference_count": 10**6}


@activities.activity_trigger(input_name="payload")
def verify_files(payload: Payload) -> dict[str, Any]:
    start, stop = payload["start"], payload["stop"]
    time.sleep(PER_FILE * (stop - start))
    return {
        "ok": True, "start": start, "stop": stop, "mode": "sample", "steps": 0,
        "claims": [[start, stop, start, stop - 1]], "files_checked": stop - start,
        "values_compared": 10**4 * (stop - start), "seconds": PER_FILE * (stop - start),
    }  # fmt: skip


@activities.activity_trigger(input_name="payload")
def verify_decide(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {"ok": True, "mode": "sample", "values_compared": 10**6}


@activities.activity_trigger(input_name="payload")
def register_item(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {"ok": True, "item_url": _url("item"), "collection_url": _url("c"),
            "catalog_url": _url("k")}  # fmt: skip


@activities.activity_trigger(input_name="payload")
def prune_versions(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {"ok": True, "removed": []}


@activities.activity_trigger(input_name="payload")
def record_run(payload: Payload) -> dict[str, Any]:
    time.sleep(FIXED)
    return {"ok": True, "run_report": _url("run")}


app = df.DFApp()
app.register_functions(orchestrators)
app.register_functions(activities)
