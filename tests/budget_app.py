"""The real orchestrators with stand-in activities that do no I/O but answer with results of
the real shapes at their largest (five errors with long messages in every validate batch,
long URLs), so a 10,000-file run exercises the orchestration's payloads and histories in
seconds. The scan stand-in reports the file count named by the source (synthetic://N):
this is the synthetic
manifest of the payload-budget test (no files, no manifest document: every later stage
only ever sees the manifest's URL and count)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import azure.durable_functions as df

from activities.stages import Payload
from orchestrators.pipeline import bp as orchestrators
from shared.model.claims import covers, fold_claims
from shared.model.wire import DecideInput, VerifyTally, success

LONG = "az://source-container/" + "very/deep/prefix/" * 4
MESSAGE = "x" * 280  # as long as a real finding sentence gets

activities = df.Blueprint()


def _url(kind: str, number: int = 0) -> str:
    return f"az://work-container/runs/{kind}/{number:032d}.json"


@activities.activity_trigger(input_name="payload")
def scan_files(payload: Payload) -> dict[str, Any]:
    count = int(payload["request"]["source"].removeprefix("synthetic://"))
    return {
        "ok": True,
        "manifest_url": _url("manifest", count),  # verify_files reads the count from it
        "work_manifest_url": _url("manifest", count),
        "work_count": count,
        "reused": 0,
        "base_run_id": None,
        "file_count": count,
        "total_bytes": count * 50_000_000,
        "seconds": 1.0,
        "run_id": "0" * 16,
    }


@activities.activity_trigger(input_name="payload")
def validate_files(payload: Payload) -> dict[str, Any]:
    files = payload["stop"] - payload["start"]
    errors = [
        {
            "url": f"{LONG}file_{payload['start'] + i:06d}.nc",
            "code": "unsupported_filter",
            "message": MESSAGE,
        }
        for i in range(5)
    ]
    return {
        "ok": True,
        "manifest_url": payload["manifest_url"],
        "start": payload["start"],
        "stop": payload["stop"],
        "files": files,
        "reused": 0,
        "verdicts": {"suitable": files},
        "findings": {"contiguous_large": files},
        "bytes_read": files * 65536,
        "requests": files,
        "seconds": 0.1,
        "errors": errors,
        "error_count": files,
    }


@activities.activity_trigger(input_name="payload")
def gate_files(payload: Payload) -> dict[str, Any]:
    return {
        "ok": True,
        "report_url": _url("gate"),
        "summary_url": _url("gate-summary"),
        "files": 0,
        "suitable": 0,
        "with_warnings": 0,
        "unsuitable": 0,
        "findings_by_code": {},
        "first_errors": [],
        "seconds": 0.1,
        "passed": True,
    }


@activities.activity_trigger(input_name="payload")
def generate_files(payload: Payload) -> dict[str, Any]:
    files = payload["stop"] - payload["start"]
    return {
        "ok": True,
        "files": files,
        "generated": files,
        "reused": 0,
        "bytes_read": files * 90_000,
        "requests": files * 18,
        "reference_bytes": files * 40_000,
        "seconds": 0.1,
    }


@activities.activity_trigger(input_name="payload")
def combine_store(payload: Payload) -> dict[str, Any]:
    return {"ok": True, "store_url": _url("store"), "reference_count": 10**6}


@activities.activity_trigger(input_name="payload")
def merge_batch(payload: Payload) -> dict[str, Any]:
    return {
        "ok": True,
        "partial_url": _url("partial", payload["start"]),
        "files": payload["stop"] - payload["start"],
        "partial_bytes": 10**9,
        "seconds": 10.0,
        "peak_memory_bytes": 10**9,
    }


@activities.activity_trigger(input_name="payload")
def join_partials(payload: Payload) -> dict[str, Any]:
    return {"ok": True, "store_url": _url("store"), "reference_count": 10**6}


@activities.activity_trigger(input_name="payload")
def verify_files(payload: Payload) -> dict[str, Any]:
    """A tally at its largest: no two files of the batch hold touching steps (file i holds
    step i x 7919 modulo the file count), so no claim merges before the orchestrator's fold
    of every batch."""
    count = int(payload["manifest_url"].rsplit("/", 1)[1].removesuffix(".json"))
    start, stop = payload["start"], payload["stop"]
    claims, _ = fold_claims(
        [[i * 7919 % count, i * 7919 % count + 1, i, i] for i in range(start, stop)]
    )
    tally = VerifyTally(
        start=start,
        stop=stop,
        mode="sample",
        steps=count,
        claims=claims,
        files_checked=stop - start,
        variables_checked=4 * (stop - start),
        values_compared=10**6,
        seconds=0.1,
    )
    if payload.get("claims_key"):  # the real activity keeps the claims in the work area
        tally = replace(tally, claims=[])
    return success(tally)


@activities.activity_trigger(input_name="payload")
def verify_decide(payload: Payload) -> dict[str, Any]:
    tally = DecideInput.from_dict(payload).tally
    # the claims kept in the work area are not here (no I/O): only the count is checked
    assert tally.files_checked == tally.steps, tally
    assert tally.claims == [] or covers(tally.claims, tally.steps), tally
    return {"ok": True, "mode": "sample", "values_compared": tally.values_compared}


@activities.activity_trigger(input_name="payload")
def register_item(payload: Payload) -> dict[str, Any]:
    return {
        "ok": True,
        "item_url": _url("item"),
        "collection_url": _url("c"),
        "catalog_url": _url("k"),
    }


@activities.activity_trigger(input_name="payload")
def prune_versions(payload: Payload) -> dict[str, Any]:
    return {"ok": True, "removed": []}


@activities.activity_trigger(input_name="payload")
def record_run(payload: Payload) -> dict[str, Any]:
    return {"ok": True, "run_report": _url("run")}


app = df.DFApp()
app.register_functions(orchestrators)
app.register_functions(activities)
