"""Activities: decode the small JSON input, make one call into shared/, return small JSON.

Every activity answers {"ok": true, ...result} or {"ok": false, "error": {...}}. It raises
only for a retryable failure (StorageUnavailable), so the orchestrator's retry options apply
to transient storage errors and to nothing else (see activities/outcome.py).

Combine and verify (memory grows with the number of files) run one at a time per instance,
under a ceiling derived from the plan (shared/model/sizing.py).

The stage modules are imported inside each activity, not when the app loads: if a heavy
dependency (virtualizarr, kerchunk, h5py, icechunk) is broken, the app still loads, the
health endpoint names the module, and only the activities that need it fail, at once, with
an error naming it (dependency_missing), instead of the whole app failing to index.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.outcome import outcome
from shared.model.settings import Settings
from shared.model.sizing import heavy_slot

bp = df.Blueprint()

# An activity's input is annotated with the bare type: the Functions worker refuses a binding
# parameter annotated with a parameterised generic such as dict[str, Any] ("binding payload
# has invalid non-type annotation"), and one function it cannot load stops the whole app from
# loading on Azure. tests/test_worker_indexing.py runs the worker's loader on the app.
Payload = dict


@bp.activity_trigger(input_name="payload")
def scan_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.io.storage import Storage
        from shared.model.layout import run_id_for
        from shared.model.request import PipelineRequest
        from shared.stages.increment import plan_increment
        from shared.stages.references import rebuild_salt
        from shared.stages.scan import load_manifest, scan

        request = PipelineRequest.from_dict(payload["request"])
        storage = Storage(settings)
        scanned = scan(request, settings, storage)
        manifest = load_manifest(scanned.manifest_url, settings, storage)
        increment = plan_increment(manifest, scanned.manifest_url, request, settings, storage)
        rebuild = rebuild_salt() if request.options.get("full") else ""
        return {
            **scanned.to_dict(),
            **increment.to_dict(),
            "run_id": run_id_for(manifest.digest, request.format, request.concat_dim, rebuild),
        }

    return outcome("scan", run, payload)


@bp.activity_trigger(input_name="payload")
def validate_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.validate.batch import validate_batch

        return validate_batch(
            payload["manifest_url"],
            payload["start"],
            payload["stop"],
            settings,
            refresh=bool(payload.get("refresh")),
        ).to_dict()

    return outcome("validate", run, payload)


@bp.activity_trigger(input_name="payload")
def gate_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.gate import gate

        return gate(
            payload["manifest_url"],
            settings,
            concat_dim=payload["concat_dim"],
            store_format=payload["format"],
            drop_variables=payload.get("drop_variables") or (),
            static_differs=payload.get("static_differs") or "refuse",
        ).to_dict()

    return outcome("gate", run, payload)


@bp.activity_trigger(input_name="payload")
def generate_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.references import generate_batch

        return generate_batch(
            payload["manifest_url"],
            payload["start"],
            payload["stop"],
            settings,
            concat_dim=payload["concat_dim"],
            refresh=bool(payload.get("refresh")),
        ).to_dict()

    return outcome("generate", run, payload)


@bp.activity_trigger(input_name="payload")
def combine_store(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.model.request import PipelineRequest
        from shared.stages.combine import combine

        request = PipelineRequest.from_dict(payload["request"])
        with heavy_slot("combine", settings.heavy_wait_seconds):
            return combine(payload["manifest_url"], request, payload["run_id"], settings).to_dict()

    return outcome("combine", run, payload)


@bp.activity_trigger(input_name="payload")
def verify_store(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.verify import verify

        with heavy_slot("verify", settings.heavy_wait_seconds):
            return verify(
                payload["manifest_url"],
                payload["store_url"],
                payload["format"],
                payload["concat_dim"],
                settings,
                drop_variables=payload.get("drop_variables") or (),
                static_differs=payload.get("static_differs") or "refuse",
            ).to_dict()

    return outcome("verify", run, payload)


@bp.activity_trigger(input_name="payload")
def register_item(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.model.request import PipelineRequest
        from shared.stages.register import register

        request = PipelineRequest.from_dict(payload["request"])
        return register(
            payload["manifest_url"],
            request,
            payload["run_id"],
            payload["store_url"],
            settings,
            approval=payload.get("approval"),
        ).to_dict()

    return outcome("register", run, payload)


@bp.activity_trigger(input_name="payload")
def check_changes(payload: Payload) -> dict[str, Any]:
    """The watcher's question before a run: does the source differ from what is published?"""

    def run(settings: Settings) -> dict[str, Any]:
        from shared.io.storage import Storage
        from shared.model.request import PipelineRequest
        from shared.stages.increment import check_changes as check

        request = PipelineRequest.from_dict(payload["request"])
        return check(request, settings, Storage(settings)).to_dict()

    return outcome("watch", run, payload)


@bp.activity_trigger(input_name="payload")
def record_run(payload: Payload) -> dict[str, Any]:
    """Write the run report twice: JSON in the work area for programs, and the Markdown page
    beside the store for people (shared.stages.runreport)."""

    def run(settings: Settings) -> dict[str, Any]:
        import logging

        from shared.io.storage import Storage
        from shared.model.errors import PipelineError
        from shared.model.layout import Layout
        from shared.stages.runreport import write_run_report

        dataset_id, run_id, status = payload["dataset_id"], payload["run_id"], payload["status"]
        storage = Storage(settings)
        location = Layout.from_settings(settings).run_report(dataset_id, run_id)
        storage.write_json(location, {"kind": "run-report", **status})
        summary = None
        try:
            summary = write_run_report(dataset_id, run_id, status, settings, storage).url
        except PipelineError as exc:
            if exc.retryable:
                raise
            # The JSON is the record: a store root that cannot be written (the run may have
            # failed for that very reason) must not lose it for the page's sake.
            logging.getLogger(__name__).warning("run summary not written: %s", exc)
        return {"run_report": location.url, "run_summary": summary}

    return outcome("record", run, payload)
