"""The orchestrators' wire: every activity's and sub-orchestration's input and answer, typed.

JSON is what travels (the Durable SDK serialises an activity's input and result as JSON);
both ends build and read these dataclasses, so a renamed or missing field is a type error
caught by mypy, not a KeyError in a replay at 3am. An activity answers either its result
(``{"ok": true, ...fields}``) or an error (``{"ok": false, "error": {...}}``): ``answer()``
reads one into the result's type or an ``ErrorInfo``.

Decoding takes the fields a type knows and leaves the rest (an orchestration started by an
earlier deployment may replay against this one, and the other way round), and fields added
later have defaults for the same reason.

    activity / sub-orchestration     input           answer
    scan_files                       ScanInput       RunPlan
    pipeline_batch (sub-orch.)       BatchInput      BatchSummary
    validate_files, generate_files   FilesInput      FilesAnswer
    gate_files                       GateInput       GateAnswer
    combine_store                    CombineInput    CombineAnswer
    combine_wave (sub-orch.)         CombineWaveInput PartialAnswer (the wave's, summed)
    merge_batch (spread combine)     MergeBatchInput PartialAnswer
    join_partials (spread combine)   JoinInput       CombineAnswer
    verify_batch (sub-orch.)         VerifyBatchInput VerifyTally
    verify_files                     VerifyFilesInput VerifyTally
    verify_decide                    DecideInput     VerifyAnswer
    register_item                    RegisterInput   RegisterAnswer
    record_run                       RecordInput     RecordAnswer
    check_changes                    ChangesInput    ChangesAnswer
    start_run                        StartRunInput   StartRunAnswer
    run_status                       RunStatusInput  RunStatusAnswer
    prune_versions                   PruneInput      PruneAnswer
    release_version (orchestration)  ReleaseInput    the operation's result
    check_unpublish                  VersionInput    UnpublishPlan
    restore_version                  VersionInput    RestoreAnswer
    withdraw_item                    VersionInput    Done
    finish_unpublish                 FinishInput     UnpublishAnswer
    cleanup_store                    VersionInput    CleanupAnswer
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from shared.model.claims import MAX_REPORTED, Claim, Overlap, fold_claims
from shared.model.plan import BatchPolicy, PipelineInput
from shared.model.request import PipelineRequest, StoreFormat

__all__ = [
    "BatchInput",
    "BatchSummary",
    "ChangesAnswer",
    "ChangesInput",
    "CleanupAnswer",
    "CombineAnswer",
    "CombineInput",
    "CombineWaveInput",
    "DecideInput",
    "Done",
    "ErrorInfo",
    "FilesAnswer",
    "FilesInput",
    "FinishInput",
    "GateAnswer",
    "GateInput",
    "JoinInput",
    "MergeBatchInput",
    "PartialAnswer",
    "PruneAnswer",
    "PruneInput",
    "RecordAnswer",
    "RecordInput",
    "RegisterAnswer",
    "RegisterInput",
    "ReleaseInput",
    "RestoreAnswer",
    "RunPlan",
    "RunStatusAnswer",
    "RunStatusInput",
    "ScanInput",
    "StartRunAnswer",
    "StartRunInput",
    "UnpublishAnswer",
    "UnpublishPlan",
    "VerifyAnswer",
    "VerifyBatchInput",
    "VerifyFilesInput",
    "VerifyInput",
    "VerifyTally",
    "VersionInput",
    "Wire",
    "answer",
    "failure",
    "success",
]

_HINTS: dict[type, dict[str, Any]] = {}


class Wire:
    """A dataclass that travels as JSON: to_dict() and from_dict()."""

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        assert dataclasses.is_dataclass(cls)
        hints = _HINTS.get(cls)
        if hints is None:
            hints = _HINTS[cls] = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: _decode(hints[k], v) for k, v in data.items() if k in known})


def _encode(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _decode(arg, value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(hint, type) and hasattr(hint, "from_dict") and isinstance(value, Mapping):
        return hint.from_dict(value)
    return value


# -- answers ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ErrorInfo(Wire):
    """A failure as it travels: PipelineError.to_dict(), or what the orchestrator says
    when a task's retries ran out."""

    code: str
    message: str
    remedy: str = ""
    retryable: bool = False
    context: dict[str, Any] = field(default_factory=dict)


def answer[W: Wire](kind: type[W], data: Mapping[str, Any]) -> W | ErrorInfo:
    """An activity's answer as its result type, or the error it answered."""
    if data.get("ok"):
        return kind.from_dict(data)
    return ErrorInfo.from_dict(data.get("error") or {"code": "internal_error", "message": ""})


def success(result: Wire | Mapping[str, Any]) -> dict[str, Any]:
    body = result.to_dict() if isinstance(result, Wire) else dict(result)
    return {"ok": True, **body}


def failure(error: ErrorInfo | Mapping[str, Any]) -> dict[str, Any]:
    return {"ok": False, "error": error.to_dict() if isinstance(error, ErrorInfo) else error}


# -- inputs: every one names the run it works for (its log records do) --------------------
@dataclass(frozen=True, kw_only=True)
class ActivityInput(Wire):
    dataset: str = ""
    instance_id: str = ""


@dataclass(frozen=True, kw_only=True)
class ScanInput(ActivityInput):
    request: PipelineRequest


@dataclass(frozen=True, kw_only=True)
class RunPlan(Wire):
    """What a run works on: the manifest of every file, the manifest of the files to
    process anew (new or changed since the published version), and the run's id."""

    manifest_url: str
    file_count: int
    total_bytes: int
    work_manifest_url: str
    work_count: int
    reused: int
    run_id: str
    base_run_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class FilesInput(ActivityInput):
    """Validate or generate the files [start, stop) of a manifest."""

    manifest_url: str
    start: int
    stop: int
    concat_dim: str = "time"
    refresh: bool = False


@dataclass(frozen=True, kw_only=True)
class FilesAnswer(Wire):
    files: int
    bytes_read: int
    reused: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)  # validate only
    errors: list[dict[str, str]] = field(default_factory=list)  # {"url", "code", "message"}

    @property
    def unsuitable(self) -> int:
        return self.verdicts.get("unsuitable", 0)


@dataclass(frozen=True, kw_only=True)
class BatchInput(ActivityInput):
    """One batch sub-orchestration: a stage over the files [start, stop)."""

    stage: str  # validate | generate
    manifest_url: str
    start: int
    stop: int
    concat_dim: str
    policy: BatchPolicy
    refresh: bool = False
    # How many of the batch's errors its answer names (the run's status shows the first
    # few; the rest are in the files' reports and the gate's): the pipeline's history holds
    # every batch's answer. Not given (an input recorded before it existed): 5, as before.
    errors_wanted: int = 5


@dataclass(frozen=True, kw_only=True)
class BatchSummary(Wire):
    stage: str
    start: int
    stop: int
    files: int = 0
    unsuitable: int = 0
    bytes_read: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    error: ErrorInfo | None = None


@dataclass(frozen=True, kw_only=True)
class CollectionInput(ActivityInput):
    """How the request combines the collection: what the gate checks and verify compares."""

    manifest_url: str
    concat_dim: str
    format: StoreFormat
    drop_variables: tuple[str, ...] = ()
    static_differs: str = "refuse"


@dataclass(frozen=True, kw_only=True)
class GateInput(CollectionInput):
    pass


@dataclass(frozen=True, kw_only=True)
class GateAnswer(Wire):
    report_url: str
    summary_url: str
    findings_by_code: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CombineInput(ActivityInput):
    manifest_url: str
    request: PipelineRequest
    run_id: str


@dataclass(frozen=True, kw_only=True)
class CombineAnswer(Wire):
    store_url: str
    mode: str | None = None
    store_bytes: int | None = None
    reference_count: int | None = None
    dims: dict[str, int] | None = None
    peak_memory_bytes: int | None = None
    chunks: dict[str, list[int]] | None = None  # each data variable's chunk shape


@dataclass(frozen=True, kw_only=True)
class MergeBatchInput(CombineInput):
    """Spread combine: merge the files [start, stop) of the manifest into one partial."""

    start: int
    stop: int


@dataclass(frozen=True, kw_only=True)
class PartialAnswer(Wire):
    partial_url: str
    files: int
    partial_bytes: int = 0
    seconds: float = 0.0
    peak_memory_bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class CombineWaveInput(Wire):
    """One wave of a spread combine (a sub-orchestration, so the pipeline's history holds
    one child per wave, not one activity per batch): merge_batch for each [start, stop)."""

    combine: CombineInput
    ranges: list[list[int]]
    policy: BatchPolicy


@dataclass(frozen=True, kw_only=True)
class JoinInput(CombineInput):
    """Spread combine: the store from the partials of the batches starting at ``starts``."""

    starts: list[int]


@dataclass(frozen=True, kw_only=True)
class VerifyInput(CollectionInput):
    store_url: str
    # Where this verify keeps its claims: given, verify_files writes each range's claims to
    # the work area (Layout.verify_claims) and answers its tally without them, and
    # verify_decide folds them back (the claims grow with the collection, the pipeline's
    # history must not). One key per verify (the run id and the verify's start): a run
    # repeated with other batches never meets the claims of an earlier attempt. Empty (an
    # input recorded before it existed): the claims travel in the tally.
    claims_key: str = ""


@dataclass(frozen=True, kw_only=True)
class VerifyFilesInput(VerifyInput):
    """Compare the files [start, stop) of the manifest with the store."""

    start: int
    stop: int


@dataclass(frozen=True, kw_only=True)
class VerifyBatchInput(Wire):
    """One verify batch sub-orchestration: its files, one activity per few of them."""

    files: VerifyFilesInput
    policy: BatchPolicy


@dataclass(frozen=True, kw_only=True)
class VerifyTally(Wire):
    """What comparing the files [start, stop) of the manifest with the store found. The
    tallies of several ranges fold into one (``fold``); the deciding step judges the tally
    of every file (shared/stages/verify/decide.py)."""

    start: int
    stop: int
    mode: str  # "full" or "sample": the same for every batch (the whole manifest's size)
    steps: int  # the store's steps along the concat dimension, as these files' batch saw it
    claims: list[Claim] = field(default_factory=list)  # shared/model/claims.py
    overlaps: list[Overlap] = field(default_factory=list)  # at most MAX_REPORTED
    # Batches that saw another step count than ``steps``: [start, stop, steps].
    other_steps: list[list[int]] = field(default_factory=list)
    mismatches: list[dict[str, str]] = field(default_factory=list)  # {"url", "variable", "what"}
    files_checked: int = 0
    variables_checked: int = 0
    values_compared: int = 0
    seconds: float = 0.0

    def fold(self, other: VerifyTally) -> VerifyTally:
        """One tally for the files of both."""
        claims, overlaps = fold_claims(self.claims, other.claims)
        differs = [[other.start, other.stop, other.steps]] if other.steps != self.steps else []
        return VerifyTally(
            start=min(self.start, other.start),
            stop=max(self.stop, other.stop),
            mode=self.mode,
            steps=self.steps,
            claims=claims,
            overlaps=(self.overlaps + other.overlaps + overlaps)[:MAX_REPORTED],
            other_steps=(self.other_steps + differs + other.other_steps)[:MAX_REPORTED],
            mismatches=(self.mismatches + other.mismatches)[:MAX_REPORTED],
            files_checked=self.files_checked + other.files_checked,
            variables_checked=self.variables_checked + other.variables_checked,
            values_compared=self.values_compared + other.values_compared,
            seconds=self.seconds + other.seconds,
        )

    @property
    def findings(self) -> int:
        """Mismatches and steps claimed twice found so far (verify stops at MAX_REPORTED)."""
        return len(self.mismatches) + len(self.overlaps) + len(self.other_steps)


@dataclass(frozen=True, kw_only=True)
class DecideInput(VerifyInput):
    """The verdict on a store from the tally of all its files (folded by the orchestrator
    as the batches answered)."""

    tally: VerifyTally


@dataclass(frozen=True, kw_only=True)
class VerifyAnswer(Wire):
    mode: str = ""
    values_compared: int = 0


@dataclass(frozen=True, kw_only=True)
class RegisterInput(ActivityInput):
    manifest_url: str
    request: PipelineRequest
    run_id: str
    store_url: str
    approval: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class RegisterAnswer(Wire):
    item_url: str
    catalog_url: str
    # what the run warns about: [{"code", "message", "remedy"}] (an unknown license)
    warnings: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RecordInput(ActivityInput):
    dataset_id: str
    run_id: str
    status: dict[str, Any]  # RunStatus.to_dict()
    drop_variables: tuple[str, ...] = ()  # the request's: not in the store


@dataclass(frozen=True, kw_only=True)
class RecordAnswer(Wire):
    run_report: str
    run_summary: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChangesInput(ActivityInput):
    request: PipelineRequest


@dataclass(frozen=True, kw_only=True)
class ChangesAnswer(Wire):
    changed: bool
    listing_digest: str
    file_count: int
    new: int = 0
    modified: int = 0
    removed: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class StartRunInput(ActivityInput):
    run: PipelineInput


@dataclass(frozen=True, kw_only=True)
class StartRunAnswer(Wire):
    instance_id: str
    started: bool
    runtime_status: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunStatusInput(ActivityInput):
    run_instance_id: str


@dataclass(frozen=True, kw_only=True)
class RunStatusAnswer(Wire):
    """A pipeline run's state as the watcher follows it (api.runs.run_state)."""

    instance_id: str = ""
    runtime_status: str | None = None
    finished: bool = False
    phase: str | None = None
    run_id: str | None = None
    files: int | None = None  # the run's file count
    reused: int | None = None
    item_url: str | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class PruneInput(ActivityInput):
    dataset_id: str
    run_id: str  # the version just published: never removed


@dataclass(frozen=True, kw_only=True)
class PruneAnswer(Wire):
    removed: list[str] = field(default_factory=list)


# -- release operations (orchestrators/release.py) ----------------------------------------
@dataclass(frozen=True, kw_only=True)
class ReleaseInput(ActivityInput):
    """One release operation on one version of a dataset, as the HTTP API starts it."""

    operation: str  # unpublish | cleanup
    dataset_id: str
    version: str
    by: str = ""
    reason: str = ""
    retry_first_interval_ms: int = 5000
    retry_max_attempts: int = 5


@dataclass(frozen=True, kw_only=True)
class VersionInput(ActivityInput):
    dataset_id: str
    version: str


@dataclass(frozen=True, kw_only=True)
class UnpublishPlan(Wire):
    current: bool  # the version is the one the STAC item points at
    published: str | None = None  # the version the item points at now
    candidates: list[str] = field(default_factory=list)  # to fall back to, newest first
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"version", "why"}


@dataclass(frozen=True, kw_only=True)
class RestoreAnswer(Wire):
    restored: bool
    why: str = ""  # when not restored


@dataclass(frozen=True, kw_only=True)
class FinishInput(ActivityInput):
    dataset_id: str
    version: str
    by: str
    reason: str
    current: str | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class UnpublishAnswer(Wire):
    """What POST .../unpublish answers: the version's record and what is current now."""

    dataset_id: str
    version: str
    state: str
    unpublished: dict[str, str]  # {"by", "reason", "at"}
    current: str | None = None  # None: no version is published (the item was removed)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class CleanupAnswer(Wire):
    dataset_id: str
    version: str
    objects_removed: int


@dataclass(frozen=True, kw_only=True)
class Done(Wire):
    """A step that answers nothing but that it is done."""
