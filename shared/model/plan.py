"""The shape of a run, decided before it starts: batches, parallelism and retries.

The HTTP starter builds the orchestration input from the request and the settings (the
orchestrator itself may not read settings: it must replay identically), so everything the
orchestrator decides with travels in this small, JSON-able input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shared.model.errors import BadRequest
from shared.model.request import PipelineRequest
from shared.model.settings import Settings

MAX_BATCH_SIZE = 1000


@dataclass(frozen=True)
class RunPolicy:
    batch_size: int = 200  # files per sub-orchestration (Settings.batch_size says why)
    files_per_activity: int = 10  # files per validate/generate activity call
    parallel_batches: int = 8  # sub-orchestrations in flight at once (one wave)
    # Combine: one activity up to this many files; above it merge_batch activities of
    # combine_batch_files files each (in waves of parallel_batches), then join_partials.
    combine_spread_files: int = 20_000
    combine_batch_files: int = 10_000
    retry_first_interval_ms: int = 5000  # transient storage errors only
    retry_max_attempts: int = 5
    approval_timeout_seconds: int = 7 * 86400  # only runs with options.approval wait

    def for_batches(self) -> BatchPolicy:
        """What a batch sub-orchestration uses of this policy (its input carries only that:
        the pipeline's history holds one input per batch)."""
        return BatchPolicy(
            files_per_activity=self.files_per_activity,
            retry_first_interval_ms=self.retry_first_interval_ms,
            retry_max_attempts=self.retry_max_attempts,
        )

    @classmethod
    def from_request(cls, request: PipelineRequest, settings: Settings) -> RunPolicy:
        batch_size = request.options.get("batch_size", settings.batch_size)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool):
            raise BadRequest(f"Option 'batch_size' must be a whole number, not {batch_size!r}.")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise BadRequest(
                f"Option 'batch_size' is {batch_size}; it must be between 1 and {MAX_BATCH_SIZE}."
            )
        return cls(
            batch_size=batch_size,
            files_per_activity=min(settings.files_per_activity, batch_size),
            parallel_batches=settings.parallel_batches,
            combine_spread_files=settings.combine_spread_files,
            combine_batch_files=settings.combine_batch_files,
            retry_first_interval_ms=settings.retry_first_interval_ms,
            retry_max_attempts=settings.retry_max_attempts,
            approval_timeout_seconds=settings.approval_timeout_seconds,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPolicy:
        return cls(**data)


@dataclass(frozen=True)
class BatchPolicy:
    """The part of a run's policy a batch sub-orchestration (pipeline_batch, verify_batch,
    combine_wave) uses. Until 1.0.0 the whole RunPolicy travelled in every batch input;
    decoding one of those inputs (a history recorded then) takes these fields and leaves
    the rest."""

    files_per_activity: int = 10
    retry_first_interval_ms: int = 5000
    retry_max_attempts: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchPolicy:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class PipelineInput:
    """The orchestration input: the validated request and the policy for this run."""

    request: PipelineRequest
    policy: RunPolicy = field(default_factory=RunPolicy)

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request.to_dict(), "policy": self.policy.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineInput:
        return cls(
            request=PipelineRequest.from_dict(data["request"]),
            policy=RunPolicy.from_dict(data["policy"]),
        )


def batches(count: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of ``size`` items covering ``count`` items."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


# Every orchestration instance id the app uses comes from the functions below.
PIPELINE_PREFIX, WATCHER_PREFIX, RELEASE_PREFIX = "pipeline-", "watch-", "release-"


def instance_id_for(dataset_id: str) -> str:
    """One pipeline instance per dataset: a second request while one runs is refused."""
    return f"{PIPELINE_PREFIX}{dataset_id}"


def watcher_instance_id(dataset_id: str) -> str:
    """The dataset's upload watcher (orchestrators/watcher.py): one per dataset."""
    return f"{WATCHER_PREFIX}{dataset_id}"


def release_instance_id(dataset_id: str) -> str:
    """The dataset's release operation (orchestrators/release.py): one at a time."""
    return f"{RELEASE_PREFIX}{dataset_id}"


def is_release_instance(instance_id: str) -> bool:
    return instance_id.startswith(RELEASE_PREFIX)


def is_pipeline_instance(instance_id: str) -> bool:
    return instance_id.startswith(PIPELINE_PREFIX)


def is_watcher_instance(instance_id: str) -> bool:
    return instance_id.startswith(WATCHER_PREFIX)


def dataset_of(instance_id: str) -> str:
    """The dataset a pipeline, watcher or release instance id names."""
    for prefix in (PIPELINE_PREFIX, WATCHER_PREFIX, RELEASE_PREFIX):
        if instance_id.startswith(prefix):
            return instance_id.removeprefix(prefix)
    return instance_id


def batch_instance_id(parent_id: str, stage: str, index: int) -> str:
    """A batch sub-orchestration's instance id: named explicitly and deterministically from
    its run, stage and position (Azure would name an unnamed child after the parent's
    execution id, which an operator cannot guess), so ``instanceIdPrefix=<run id>:`` lists a
    run's batches. Unique within a run: starting a child whose id is in use is not refused
    on Azure, it replaces the running one."""
    return f"{parent_id}:{stage}:{index:04d}"
