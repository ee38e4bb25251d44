"""One exception hierarchy for the whole pipeline.

Every error says three things an operator needs at 3am: what went wrong (naming the file,
variable or value), whether trying again can help (``retryable``), and what to do
(``remedy``). Activities turn these into small JSON; the CLI prints them without a traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PipelineError(Exception):
    """Base class: a failure the pipeline understands and can explain."""

    code: ClassVar[str] = "pipeline_error"
    retryable: ClassVar[bool] = False
    default_remedy: ClassVar[str] = ""

    def __init__(self, message: str, *, remedy: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy if remedy is not None else self.default_remedy
        self.context = context

    def __str__(self) -> str:
        return f"{self.message} {self.remedy}".strip() if self.remedy else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "remedy": self.remedy,
            "retryable": self.retryable,
            "context": self.context,
        }

    @classmethod
    def from_dict(cls, error: dict[str, Any]) -> PipelineError:
        """The error a to_dict() described (an activity's answer, a run's status), as the
        class of its code when that class is loaded in this process, else as a
        PipelineError carrying the code."""
        kind = _class_of(error.get("code") or "", PipelineError)
        found = kind(
            str(error.get("message") or ""),
            remedy=error.get("remedy"),
            **(error.get("context") or {}),
        )
        if kind is PipelineError or found.code != error.get("code"):
            found.code = str(error.get("code") or PipelineError.code)  # type: ignore[misc]
        return found


class BadRequest(PipelineError):
    """The request itself is wrong (a field missing, of the wrong type, or out of range)."""

    code = "bad_request"
    default_remedy = "Correct the request and submit it again."


class LocationNotAllowed(BadRequest):
    """A storage path outside what this deployment may read or write."""

    code = "location_not_allowed"
    default_remedy = (
        "Use a local folder, file://, abfs://, az:// or an https:// blob URL in the "
        "configured storage account."
    )


class SourceNotFound(PipelineError):
    code = "source_not_found"
    default_remedy = (
        "Check the path (container, prefix, spelling) and that the files were uploaded."
    )


class EmptySource(PipelineError):
    code = "empty_source"
    default_remedy = (
        "Check the prefix and the file patterns; by default only *.nc, *.nc4, *.h5 and "
        "*.hdf5 are collected."
    )


class TooManyFiles(PipelineError):
    code = "too_many_files"
    default_remedy = (
        "Split the collection into several datasets (narrower prefixes or patterns), or raise "
        "PIPELINE_MAX_FILES if the workers have been sized for it."
    )


class AccessDenied(PipelineError):
    code = "access_denied"
    default_remedy = (
        "Grant the Function App's identity 'Storage Blob Data Reader' on the source container "
        "and 'Storage Blob Data Contributor' on the work, store and catalog containers."
    )


class StorageUnavailable(PipelineError):
    """A transient storage failure (timeout, throttling, 5xx): trying again can help."""

    code = "storage_unavailable"
    retryable = True
    default_remedy = (
        "This is usually transient; the run retries it. If it persists, check storage health."
    )


class SourceChanged(PipelineError):
    code = "source_changed"
    default_remedy = (
        "A source file was modified while the run was using it. Wait until uploads have "
        "finished, then submit the run again."
    )


class SourceGone(PipelineError):
    """A published store refers to a source file that no longer exists (deleted or moved
    after the store was built): those values cannot be served until it is back."""

    code = "source_gone"
    default_remedy = (
        "Put the file back where it was (the store reads its bytes there), or unpublish this "
        "version (docs/lifecycle.md) and run the pipeline again on the files as they are now."
    )


class StorageMisconfigured(PipelineError):
    """Storage refused a request for a reason no retry can change (a bad URL or redirect, a
    storage configuration Icechunk rejects)."""

    code = "storage_misconfigured"
    default_remedy = (
        "Check the storage settings (PIPELINE_STORAGE_ACCOUNT, the container names in the "
        "work area, store root and catalog) and the location the message names; trying "
        "again will not help."
    )


class UnsuitableCollection(PipelineError):
    """The gate refused the collection: at least one file cannot be combined correctly."""

    code = "unsuitable_collection"
    default_remedy = "Fix or remove the files named in the findings, then submit the run again."


class ReferencesFailed(PipelineError):
    """Building one file's references failed."""

    code = "references_failed"
    default_remedy = "Run `python -m devhost validate` on the file to see what is wrong with it."


class RetriesExhausted(PipelineError):
    """A task failed with transient errors as often as the retry policy allows (the
    orchestrator reports it; activities never raise it)."""

    code = "retries_exhausted"
    retryable = True


class NotFound(PipelineError):
    """A dataset, version or run the request names does not exist (HTTP 404)."""

    code = "not_found"


class Conflict(PipelineError):
    """The request contradicts what already happened: a second decision, a version already
    unpublished, a run not waiting for a decision (HTTP 409)."""

    code = "conflict"


class ArtifactMissing(PipelineError):
    """A per-file report or references document a run reuses is gone from the work area."""

    code = "artifact_missing"
    default_remedy = (
        "The work area no longer holds it (cleaned up?). Submit the run again with "
        '"options": {"full": true} to validate and generate every file again.'
    )


class CombineFailed(PipelineError):
    code = "combine_failed"
    default_remedy = "Check the named files; the combined store was not written."


class VerifyMismatch(PipelineError):
    """The combined store reads back different from the sources: never published."""

    code = "verify_mismatch"
    default_remedy = (
        "Nothing was published. Keep the run report and the named file for the maintainers; "
        "this is a bug or an input case the gate does not catch yet."
    )


class CorruptChunk(PipelineError):
    """Bytes that must decode do not: a chunk of a source file (or the file's own structure)
    is damaged, or the file was replaced in a way its ETag does not show (same size and
    modification time), so the store's references point at other bytes. Reading again reads
    the same bytes: never retried."""

    code = "corrupt_chunk"
    default_remedy = (
        "Nothing was published. Replace the named file with a good copy (from its producer or "
        "a backup) and submit the run again; if the copy keeps the old file's size and "
        'modification time, submit it with "options": {"full": true} so that it is read again.'
    )


class DependencyMissing(PipelineError):
    """A library the stage needs failed to import: the installation is broken."""

    code = "dependency_missing"
    default_remedy = "Check GET /api/health, then redeploy with the pinned requirements.txt."


class CatalogError(PipelineError):
    code = "catalog_failed"
    default_remedy = "Check that the catalog location is writable; the store itself was verified."


class StacApiUnavailable(PipelineError):
    """The STAC API (PIPELINE_STAC_API_URL) could not be reached, timed out or answered 5xx
    (or 408/429): trying again can help. Neither the API nor the static catalog changed."""

    code = "stac_api_unavailable"
    retryable = True
    default_remedy = (
        "The run retries it. If it persists, check that the STAC API (PIPELINE_STAC_API_URL) "
        "and its database are up (stac-fastapi-pgstac answers GET /_mgmt/ping), then submit "
        "the run again."
    )


class StacApiRejected(PipelineError):
    """The STAC API answered 4xx to a write: it refuses the collection or item (its id, its
    geometry, its fields) or the pipeline's identity. Trying again as it is cannot help; the
    static catalog was left as it was."""

    code = "stac_api_rejected"
    default_remedy = (
        "Read the API's answer above: correct the collection id or the collection template "
        "(PIPELINE_STAC_COLLECTION_TEMPLATE), or the API's configuration, then submit the run "
        "again."
    )


def _class_of(code: str, base: type[PipelineError]) -> type[PipelineError]:
    for kind in base.__subclasses__():
        if kind.__dict__.get("code") == code:
            return kind
        found = _class_of(code, kind)
        if found is not PipelineError:
            return found
    return PipelineError


def describe(error: BaseException) -> dict[str, Any]:
    """Small JSON description of any exception, for reports and activity outputs."""
    if isinstance(error, PipelineError):
        return error.to_dict()
    return {
        "code": "internal_error",
        "message": f"{type(error).__name__}: {error}",
        "remedy": "This is a bug: report it with the run's instance id and this message.",
        "retryable": False,
        "context": {},
    }


class SourceUnreadable(PipelineError):
    """A local file or folder that cannot be read for a reason trying again cannot fix: a
    symbolic link loop, a name too long, a path through a file. Not retried."""

    code = "source_unreadable"
    default_remedy = (
        "Correct the named path (`ls -l` shows where each link points), or move the NetCDF "
        "files to a folder without it, then submit the run again. Trying again as it is does "
        "not help."
    )
