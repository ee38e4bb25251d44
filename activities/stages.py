"""Activities: decode the small JSON input, make one call into shared/, return small JSON.

Every activity answers {"ok": true, ...result} or {"ok": false, "error": {...}}. It raises
only for a retryable failure (StorageUnavailable), so the orchestrator's retry options apply
to transient storage errors and to nothing else (see activities/outcome.py).

Combine and verify (memory grows with the number of files) run one at a time per instance,
as do the spread combine's merge_batch and join_partials (each reads only its slice of
the manifest, but a batch's or every file's references), under a ceiling derived from the
plan (shared/model/sizing.py). Verify's batches (a store opened, then its files one at a
time) are not memory-heavy: they run side by side.

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
from shared.model.wire import (
    ChangesInput,
    CombineInput,
    DecideInput,
    FilesInput,
    GateInput,
    JoinInput,
    MergeBatchInput,
    RecordAnswer,
    RecordInput,
    RegisterInput,
    RunPlan,
    ScanInput,
    VerifyFilesInput,
    VerifyTally,
)

bp = df.Blueprint()

# An activity's input is annotated with the bare type: the Functions worker refuses a binding
# parameter annotated with a parameterised generic such as dict[str, Any] ("binding payload
# has invalid non-type annotation"), and one function it cannot load stops the whole app from
# loading on Azure. tests/test_worker_indexing.py runs the worker's loader on the app.
Payload = dict


@bp.activity_trigger(input_name="payload")
def scan_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> RunPlan:
        from shared.io.storage import Storage
        from shared.stages.increment import plan_run

        given = ScanInput.from_dict(payload)
        return plan_run(given.request, settings, Storage(settings))

    return outcome("scan", run, payload)


@bp.activity_trigger(input_name="payload")
def validate_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.validate.batch import validate_batch

        given = FilesInput.from_dict(payload)
        return validate_batch(
            given.manifest_url,
            given.start,
            given.stop,
            settings,
            refresh=given.refresh,
            concat_dim=given.concat_dim,
        ).to_dict()

    return outcome("validate", run, payload)


@bp.activity_trigger(input_name="payload")
def gate_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.gate import gate

        given = GateInput.from_dict(payload)
        return gate(
            given.manifest_url,
            settings,
            concat_dim=given.concat_dim,
            store_format=given.format,
            drop_variables=given.drop_variables,
            static_differs=given.static_differs,
        ).to_dict()

    return outcome("gate", run, payload)


@bp.activity_trigger(input_name="payload")
def generate_files(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.references import generate_batch

        given = FilesInput.from_dict(payload)
        return generate_batch(
            given.manifest_url,
            given.start,
            given.stop,
            settings,
            concat_dim=given.concat_dim,
            refresh=given.refresh,
        ).to_dict()

    return outcome("generate", run, payload)


@bp.activity_trigger(input_name="payload")
def combine_store(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.combine import combine

        given = CombineInput.from_dict(payload)
        with heavy_slot("combine", settings.heavy_wait_seconds):
            return combine(given.manifest_url, given.request, given.run_id, settings).to_dict()

    return outcome("combine", run, payload)


@bp.activity_trigger(input_name="payload")
def merge_batch(payload: Payload) -> dict[str, Any]:
    """Spread combine: one batch of files' references merged into a partial."""

    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.spread import merge_batch as merge

        given = MergeBatchInput.from_dict(payload)
        with heavy_slot("combine", settings.heavy_wait_seconds):
            return merge(
                given.manifest_url, given.start, given.stop, given.request, given.run_id, settings
            ).to_dict()

    return outcome("combine", run, payload)


@bp.activity_trigger(input_name="payload")
def join_partials(payload: Payload) -> dict[str, Any]:
    """Spread combine: the store from the batches' partials (the answer of combine_store)."""

    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.spread import join_partials as join

        given = JoinInput.from_dict(payload)
        with heavy_slot("combine", settings.heavy_wait_seconds):
            return join(
                given.manifest_url, given.starts, given.request, given.run_id, settings
            ).to_dict()

    return outcome("combine", run, payload)


@bp.activity_trigger(input_name="payload")
def verify_files(payload: Payload) -> dict[str, Any]:
    """Compare the files [start, stop) with the store: their tally (what differs is in it,
    not an error; verify_decide judges the tallies of all files)."""

    def run(settings: Settings) -> VerifyTally:
        from shared.io.storage import Storage
        from shared.stages.verify import compare_files, keep_claims

        given = VerifyFilesInput.from_dict(payload)
        # Not a memory-heavy activity: verifying 10,000 files at once peaked at 533 MB, so a
        # batch (a store opened, one file at a time) in every activity slot fits the smallest
        # instance (tests/test_host_settings.py); the batches run side by side.
        tally = compare_files(
            given.manifest_url,
            given.store_url,
            given.format,
            given.concat_dim,
            settings,
            start=given.start,
            stop=given.stop,
            drop_variables=given.drop_variables,
            static_differs=given.static_differs,
        )
        if not given.claims_key:  # an orchestration of an earlier release: claims travel
            return tally
        return keep_claims(tally, given.dataset, given.claims_key, settings, Storage(settings))

    return outcome("verify", run, payload)


@bp.activity_trigger(input_name="payload")
def verify_decide(payload: Payload) -> dict[str, Any]:
    """The verdict on the store from the tally of all its files; the verified marker."""

    def run(settings: Settings) -> dict[str, Any]:
        from shared.io.storage import Storage
        from shared.stages.verify import decide, restore_claims

        given = DecideInput.from_dict(payload)
        storage = Storage(settings)
        tally = given.tally
        if given.claims_key:  # the claims each range kept in the work area
            tally = restore_claims(tally, given.dataset, given.claims_key, settings, storage)
        return decide(
            [tally], given.manifest_url, given.store_url, given.concat_dim, settings, storage
        ).to_dict()

    return outcome("verify", run, payload)


@bp.activity_trigger(input_name="payload")
def register_item(payload: Payload) -> dict[str, Any]:
    def run(settings: Settings) -> dict[str, Any]:
        from shared.stages.register import register

        given = RegisterInput.from_dict(payload)
        return register(
            given.manifest_url,
            given.request,
            given.run_id,
            given.store_url,
            settings,
            approval=given.approval,
        ).to_dict()

    return outcome("register", run, payload)


@bp.activity_trigger(input_name="payload")
def check_changes(payload: Payload) -> dict[str, Any]:
    """The watcher's question before a run: does the source differ from what is published?"""

    def run(settings: Settings) -> dict[str, Any]:
        from shared.io.storage import Storage
        from shared.stages.increment import check_changes as check

        given = ChangesInput.from_dict(payload)
        return check(given.request, settings, Storage(settings)).to_dict()

    return outcome("watch", run, payload)


@bp.activity_trigger(input_name="payload")
def record_run(payload: Payload) -> dict[str, Any]:
    """Write the run report twice: JSON in the work area for programs, and the Markdown page
    beside the store for people (shared.stages.runreport)."""

    def run(settings: Settings) -> RecordAnswer:
        from shared.io.storage import Storage
        from shared.stages.runreport import record_run as record

        given = RecordInput.from_dict(payload)
        return record(
            given.dataset_id,
            given.run_id,
            given.status,
            settings,
            Storage(settings),
            drop_variables=given.drop_variables,
        )

    return outcome("record", run, payload)
