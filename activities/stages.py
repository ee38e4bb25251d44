"""Activities: decode the small JSON input, make one call into shared/, return small JSON.

Every activity answers {"ok": true, ...result} or {"ok": false, "error": {...}}. It raises
only for a retryable failure (StorageUnavailable), so the orchestrator's retry options apply
to transient storage errors and to nothing else (see activities/outcome.py).

The stage modules are imported inside each activity, not when the app loads: if a heavy
dependency (virtualizarr, kerchunk, h5py, icechunk) is broken, the app still loads, the
health endpoint names the module, and only the activities that need it fail, at once, with
an error naming it (dependency_missing), instead of the whole app failing to index.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.outcome import outcome
from shared.settings import Settings

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def scan_files(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.increment import plan_increment
        from shared.layout import run_id_for
        from shared.request import PipelineRequest
        from shared.scan import load_manifest, scan
        from shared.storage import Storage

        request = PipelineRequest.from_dict(payload["request"])
        storage = Storage(settings)
        scanned = scan(request, settings, storage)
        manifest = load_manifest(scanned.manifest_url, settings, storage)
        increment = plan_increment(manifest, scanned.manifest_url, request, settings, storage)
        return {
            **scanned.to_dict(),
            **increment.to_dict(),
            "run_id": run_id_for(manifest.digest, request.format, request.concat_dim),
        }

    return outcome("scan", run)


@bp.activity_trigger(input_name="payload")
def validate_files(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.validate import validate_batch

        return validate_batch(
            payload["manifest_url"], payload["start"], payload["stop"], settings
        ).to_dict()

    return outcome("validate", run)


@bp.activity_trigger(input_name="payload")
def gate_files(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.gate import gate

        return gate(
            payload["manifest_url"],
            settings,
            concat_dim=payload["concat_dim"],
            store_format=payload["format"],
        ).to_dict()

    return outcome("gate", run)


@bp.activity_trigger(input_name="payload")
def generate_files(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.references import generate_batch

        return generate_batch(
            payload["manifest_url"],
            payload["start"],
            payload["stop"],
            settings,
            concat_dim=payload["concat_dim"],
        ).to_dict()

    return outcome("generate", run)


@bp.activity_trigger(input_name="payload")
def combine_store(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.combine import combine
        from shared.request import PipelineRequest

        request = PipelineRequest.from_dict(payload["request"])
        return combine(payload["manifest_url"], request, payload["run_id"], settings).to_dict()

    return outcome("combine", run)


@bp.activity_trigger(input_name="payload")
def verify_store(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.verify import verify

        return verify(
            payload["manifest_url"],
            payload["store_url"],
            payload["format"],
            payload["concat_dim"],
            settings,
        ).to_dict()

    return outcome("verify", run)


@bp.activity_trigger(input_name="payload")
def register_item(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.register import register
        from shared.request import PipelineRequest

        request = PipelineRequest.from_dict(payload["request"])
        return register(
            payload["manifest_url"], request, payload["run_id"], payload["store_url"], settings
        ).to_dict()

    return outcome("register", run)


@bp.activity_trigger(input_name="payload")
def check_changes(payload: dict[str, Any]) -> dict[str, Any]:
    """The watcher's question before a run: does the source differ from what is published?"""

    def run(settings: Settings) -> dict[str, Any]:
        from shared.increment import check_changes as check
        from shared.request import PipelineRequest
        from shared.storage import Storage

        request = PipelineRequest.from_dict(payload["request"])
        return check(request, settings, Storage(settings)).to_dict()

    return outcome("watch", run)


@bp.activity_trigger(input_name="payload")
def record_run(payload: dict[str, Any]) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.layout import Layout
        from shared.storage import Storage

        location = Layout.from_settings(settings).run_report(
            payload["dataset_id"], payload["run_id"]
        )
        Storage(settings).write_json(location, {"kind": "run-report", **payload["status"]})
        return {"run_report": location.url}

    return outcome("record", run)
