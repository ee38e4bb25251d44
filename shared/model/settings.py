"""Settings: one object, read from the environment once, by triggers, activities and the CLI.

Orchestrators never read settings (they must replay identically); what they need travels in
the request. Every variable is documented in docs/settings.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from shared.model.errors import BadRequest
from shared.model.sizing import DEFAULT_PLAN, PLAN_MEMORY, heavy_ceiling, memory_limit

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public, documented by Microsoft, not a secret.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"
# PIPELINE_LOCAL_ROOTS=* : local sources may be in any folder (what Settings built in code
# mean by no roots; to_env writes it so that worker processes get the same).
ANY_FOLDER = "*"


@dataclass(frozen=True)
class StorageAccount:
    """How to reach the one Azure storage account this deployment works in."""

    name: str
    key: str | None = None  # None: use azure-identity (DefaultAzureCredential)
    blob_endpoint: str | None = None  # None: https://{name}.blob.core.windows.net

    @property
    def endpoint(self) -> str:
        return (self.blob_endpoint or f"https://{self.name}.blob.core.windows.net").rstrip("/")

    @property
    def is_emulator(self) -> bool:
        return self.endpoint.startswith("http://")

    def __repr__(self) -> str:  # never print the key
        key = "***" if self.key else None
        return f"StorageAccount(name={self.name!r}, endpoint={self.endpoint!r}, key={key})"


def parse_connection_string(text: str) -> StorageAccount:
    """Parse an Azure Storage connection string (including UseDevelopmentStorage=true)."""
    parts: dict[str, str] = {}
    for item in text.strip().split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(
                "The storage connection string is malformed: each part must be Name=Value.",
                remedy="Copy the connection string again from the portal, or use "
                "UseDevelopmentStorage=true for Azurite.",
            )
        parts[name.strip().lower()] = value.strip()
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return StorageAccount(AZURITE_ACCOUNT, AZURITE_KEY, AZURITE_ENDPOINT)
    name = parts.get("accountname") or ""
    if not name:
        raise BadRequest(
            "The storage connection string has no AccountName.",
            remedy="Copy the connection string again from the portal.",
        )
    endpoint = parts.get("blobendpoint")
    if not endpoint:
        protocol = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{name}.blob.{suffix}"
    return StorageAccount(name=name, key=parts.get("accountkey") or None, blob_endpoint=endpoint)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Setting {name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise BadRequest(f"Setting {name}={value} is below its minimum {minimum}.")
    return value


def default_local_roots(work_area: str) -> tuple[str, ...]:
    """Where local sources may be when PIPELINE_LOCAL_ROOTS is not set and local paths are
    allowed: the current folder, and the folder that holds a local work area (the local
    layout, the demo's and `devhost start`'s, keeps the NetCDF files beside work/, stores/
    and catalog/). A work area directly under "/" adds nothing: "/" is only ever a root
    when the operator asks for it."""
    roots = [os.getcwd()]
    parts = urlsplit(work_area)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme else work_area
        folder = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
        if folder != "/" and folder != roots[0] and not folder.startswith(roots[0] + "/"):
            roots.append(folder)
    return tuple(roots)


def _local_roots(env: Mapping[str, str], allowed: bool, work_area: str) -> tuple[str, ...]:
    raw = env.get("PIPELINE_LOCAL_ROOTS", "").strip()
    if raw == ANY_FOLDER:
        return ()
    if not raw:
        return default_local_roots(work_area) if allowed else ()
    folders = [f.strip() for f in raw.split(",") if f.strip()]
    if ANY_FOLDER in folders:
        raise BadRequest(
            f"Setting PIPELINE_LOCAL_ROOTS={raw!r} mixes {ANY_FOLDER!r} (any folder) with "
            "folders; give either comma-separated folders or '*' alone."
        )
    return tuple(os.path.abspath(os.path.expanduser(f)) for f in folders)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"Setting {name}={raw!r} is not true or false.")


def parse_stac_api_url(given: str, name: str = "Setting PIPELINE_STAC_API_URL=") -> str:
    """PIPELINE_STAC_API_URL (or `devhost run|start --stac-api`, ``name`` then says so): an
    http(s) URL with a host, without a trailing slash; empty for none."""
    raw = given.strip().rstrip("/")
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(
            f"{name}{raw!r} is not an http(s) URL.",
            remedy="Give the STAC API's root URL, e.g. https://stac.example.org or "
            "http://127.0.0.1:8082, or leave it empty to write the static catalog only.",
        )
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything the stages need to know about where things are and how far to go."""

    account: StorageAccount | None = None
    work_area: str = ".pipeline/work"
    store_root: str = ".pipeline/stores"
    catalog: str = ".pipeline/catalog"
    # Local paths are for the CLI and tests; a deployed app takes sources over HTTP and
    # must not read the host's own disk, so the default is off.
    allow_local_paths: bool = False
    allowed_containers: tuple[str, ...] = ()  # empty: any container in the account
    # The folders a request's local source must be in (PIPELINE_LOCAL_ROOTS), as blob sources
    # must be in allowed_containers. Empty: any folder. That is the default for Settings built
    # in code (tests, benchmarks, the command line: the code or the operator names the
    # folders); from_env, which the deployed app and `devhost start` use, defaults to the
    # current folder and the folder of a local work area (default_local_roots). Whatever the
    # roots, a source is never a system folder, the pipeline's own areas or the local host's
    # state (shared/model/locations.py).
    local_roots: tuple[str, ...] = ()
    max_files: int = 10_000
    read_block_size: int = 64 * 1024
    inline_max_bytes: int = 64 * 1024
    verify_full_max_bytes: int = 256 * 1024 * 1024
    verify_sample_chunks: int = 2
    # The largest chunk of a variable stored without filters (contiguous, or chunked
    # uncompressed) in the combined store: combine cuts such variables into sub-chunks at
    # computed offsets when the files' own chunks do not form one grid or pass this size
    # (shared/stages/grid.py).
    subchunk_max_bytes: int = 16 * 1024 * 1024
    # A compressed variable stored in one chunk is read whole by every reader: a warning
    # above the first size, unsuitable above the second.
    unchunked_warn_bytes: int = 256 * 1024 * 1024
    unchunked_max_bytes: int = 2 * 1024 * 1024 * 1024
    # Above this many references a kerchunk JSON store is slow to open: recommend another format.
    json_max_references: int = 500_000
    # Combine and verify stop before their resident memory passes this: by default derived
    # from the plan's memory and the worker process count (shared/model/sizing.py).
    memory_limit_bytes: int = heavy_ceiling(PLAN_MEMORY[DEFAULT_PLAN], 1)
    # How long a combine waits for its instance's one memory-heavy slot.
    heavy_wait_seconds: int = 600
    # Verified stores kept per dataset (the current one included); older ones are removed.
    keep_versions: int = 3
    # Files per batch sub-orchestration. The pipeline's history holds an input and an answer
    # per batch: 200 keeps it under 300 KB at 10,000 files (tests/test_payload_budget.py),
    # and fewer, larger batches cost the task hub fewer instances and waves.
    batch_size: int = 200
    files_per_activity: int = 10
    # Above this many files combine is spread: merge_batch activities of combine_batch_files
    # files each, then join_partials (shared/stages/spread.py; docs/settings.md says why).
    combine_spread_files: int = 20_000
    combine_batch_files: int = 10_000
    parallel_batches: int = 8
    retry_first_interval_ms: int = 5000
    retry_max_attempts: int = 5
    # Event-driven ingestion (docs/events.md): the dataset registry (inline JSON, or the
    # location of a JSON document), and how long uploads must pause before a run starts.
    datasets: str = ""
    quiet_seconds: int = 300
    max_wait_seconds: int = 3600
    # A run that needs approval waits this long for a decision, then publishes nothing.
    approval_timeout_seconds: int = 7 * 86400
    # Finished orchestration instances older than this are purged from the task hub every
    # night (api/maintenance.py); 0 keeps them for ever.
    history_retention_days: int = 30
    # Where a local store root is served over HTTP (`python -m devhost tiles` serves it at
    # http://127.0.0.1:8080/stores): STAC assets of local stores then get http hrefs, which
    # xpystac needs. Blob stores always get their https blob URL.
    store_url: str = ""
    # Where a local catalog is served over HTTP (`python -m devhost tiles` serves it at
    # http://127.0.0.1:8080/catalog): the self links of its catalog and collections then
    # use it, as the store's links use store_url (one scheme per document: docs/stac.md).
    catalog_url: str = ""
    # STAC collections: the license when neither the collection template nor the data's
    # license attribute gives one (an SPDX id; empty: none, and the run warns), and the
    # template of what the pipeline cannot infer (inline JSON, or the location of a JSON
    # document; shared/catalog/stac/collection.py).
    stac_license: str = ""
    stac_collection_template: str = ""
    # A STAC API to publish into beside the static catalog (docs/stac-api.md): its root URL
    # (the Transactions extension must be on), the Entra ID scope of the bearer token to send
    # (empty: no token), and how long one request may take.
    stac_api_url: str = ""
    stac_api_scope: str = ""
    stac_api_timeout_seconds: int = 30

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        account: StorageAccount | None = None
        connection = env.get("PIPELINE_STORAGE_CONNECTION_STRING", "").strip()
        account_name = env.get("PIPELINE_STORAGE_ACCOUNT", "").strip()
        if connection:
            account = parse_connection_string(connection)
        elif account_name:
            account = StorageAccount(name=account_name)
        containers = tuple(
            c.strip() for c in env.get("PIPELINE_ALLOWED_CONTAINERS", "").split(",") if c.strip()
        )
        defaults = cls()
        work_area = env.get("PIPELINE_WORK_AREA", defaults.work_area)
        allow_local_paths = _bool(env, "PIPELINE_ALLOW_LOCAL_PATHS", defaults.allow_local_paths)
        return cls(
            account=account,
            work_area=work_area,
            store_root=env.get("PIPELINE_STORE_ROOT", defaults.store_root),
            catalog=env.get("PIPELINE_CATALOG", defaults.catalog),
            allow_local_paths=allow_local_paths,
            allowed_containers=containers,
            local_roots=_local_roots(env, allow_local_paths, work_area),
            max_files=_int(env, "PIPELINE_MAX_FILES", defaults.max_files),
            read_block_size=_int(env, "PIPELINE_READ_BLOCK_SIZE", defaults.read_block_size, 512),
            inline_max_bytes=_int(env, "PIPELINE_INLINE_MAX_BYTES", defaults.inline_max_bytes, 0),
            verify_full_max_bytes=_int(
                env, "PIPELINE_VERIFY_FULL_MAX_BYTES", defaults.verify_full_max_bytes, 0
            ),
            verify_sample_chunks=_int(
                env, "PIPELINE_VERIFY_SAMPLE_CHUNKS", defaults.verify_sample_chunks
            ),
            subchunk_max_bytes=_int(
                env, "PIPELINE_SUBCHUNK_MAX_BYTES", defaults.subchunk_max_bytes, 1
            ),
            unchunked_warn_bytes=_int(
                env, "PIPELINE_UNCHUNKED_WARN_BYTES", defaults.unchunked_warn_bytes
            ),
            unchunked_max_bytes=_int(
                env, "PIPELINE_UNCHUNKED_MAX_BYTES", defaults.unchunked_max_bytes
            ),
            json_max_references=_int(
                env, "PIPELINE_JSON_MAX_REFERENCES", defaults.json_max_references
            ),
            memory_limit_bytes=memory_limit(env),
            heavy_wait_seconds=_int(
                env, "PIPELINE_HEAVY_WAIT_SECONDS", defaults.heavy_wait_seconds, 0
            ),
            keep_versions=_int(env, "PIPELINE_KEEP_VERSIONS", defaults.keep_versions),
            batch_size=_int(env, "PIPELINE_BATCH_SIZE", defaults.batch_size),
            files_per_activity=_int(
                env, "PIPELINE_FILES_PER_ACTIVITY", defaults.files_per_activity
            ),
            parallel_batches=_int(env, "PIPELINE_PARALLEL_BATCHES", defaults.parallel_batches),
            combine_spread_files=_int(
                env, "PIPELINE_COMBINE_SPREAD_FILES", defaults.combine_spread_files
            ),
            combine_batch_files=_int(
                env, "PIPELINE_COMBINE_BATCH_FILES", defaults.combine_batch_files
            ),
            retry_first_interval_ms=_int(
                env, "PIPELINE_RETRY_FIRST_INTERVAL_MS", defaults.retry_first_interval_ms
            ),
            retry_max_attempts=_int(
                env, "PIPELINE_RETRY_MAX_ATTEMPTS", defaults.retry_max_attempts
            ),
            datasets=env.get("PIPELINE_DATASETS", defaults.datasets).strip(),
            quiet_seconds=_int(env, "PIPELINE_QUIET_SECONDS", defaults.quiet_seconds),
            max_wait_seconds=_int(env, "PIPELINE_MAX_WAIT_SECONDS", defaults.max_wait_seconds),
            approval_timeout_seconds=_int(
                env, "PIPELINE_APPROVAL_TIMEOUT_SECONDS", defaults.approval_timeout_seconds
            ),
            store_url=env.get("PIPELINE_STORE_URL", defaults.store_url).strip().rstrip("/"),
            catalog_url=env.get("PIPELINE_CATALOG_URL", defaults.catalog_url).strip().rstrip("/"),
            stac_license=env.get("PIPELINE_STAC_LICENSE", "").strip() or defaults.stac_license,
            stac_collection_template=env.get(
                "PIPELINE_STAC_COLLECTION_TEMPLATE", defaults.stac_collection_template
            ).strip(),
            stac_api_url=parse_stac_api_url(env.get("PIPELINE_STAC_API_URL", "")),
            stac_api_scope=env.get("PIPELINE_STAC_API_SCOPE", defaults.stac_api_scope).strip(),
            stac_api_timeout_seconds=_int(
                env, "PIPELINE_STAC_API_TIMEOUT_SECONDS", defaults.stac_api_timeout_seconds
            ),
            history_retention_days=_int(
                env, "PIPELINE_HISTORY_RETENTION_DAYS", defaults.history_retention_days, 0
            ),
        )

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment variables that make from_env() return these settings (for worker
        processes started by the local host). Holds the account key when there is one."""
        env = {
            "PIPELINE_WORK_AREA": self.work_area,
            "PIPELINE_STORE_ROOT": self.store_root,
            "PIPELINE_CATALOG": self.catalog,
            "PIPELINE_ALLOW_LOCAL_PATHS": "true" if self.allow_local_paths else "false",
            "PIPELINE_ALLOWED_CONTAINERS": ",".join(self.allowed_containers),
            "PIPELINE_LOCAL_ROOTS": ",".join(self.local_roots)
            or (ANY_FOLDER if self.allow_local_paths else ""),
            "PIPELINE_MAX_FILES": str(self.max_files),
            "PIPELINE_READ_BLOCK_SIZE": str(self.read_block_size),
            "PIPELINE_INLINE_MAX_BYTES": str(self.inline_max_bytes),
            "PIPELINE_VERIFY_FULL_MAX_BYTES": str(self.verify_full_max_bytes),
            "PIPELINE_VERIFY_SAMPLE_CHUNKS": str(self.verify_sample_chunks),
            "PIPELINE_SUBCHUNK_MAX_BYTES": str(self.subchunk_max_bytes),
            "PIPELINE_UNCHUNKED_WARN_BYTES": str(self.unchunked_warn_bytes),
            "PIPELINE_UNCHUNKED_MAX_BYTES": str(self.unchunked_max_bytes),
            "PIPELINE_JSON_MAX_REFERENCES": str(self.json_max_references),
            "PIPELINE_MEMORY_LIMIT_BYTES": str(self.memory_limit_bytes),
            "PIPELINE_HEAVY_WAIT_SECONDS": str(self.heavy_wait_seconds),
            "PIPELINE_HISTORY_RETENTION_DAYS": str(self.history_retention_days),
            "PIPELINE_KEEP_VERSIONS": str(self.keep_versions),
            "PIPELINE_BATCH_SIZE": str(self.batch_size),
            "PIPELINE_FILES_PER_ACTIVITY": str(self.files_per_activity),
            "PIPELINE_PARALLEL_BATCHES": str(self.parallel_batches),
            "PIPELINE_COMBINE_SPREAD_FILES": str(self.combine_spread_files),
            "PIPELINE_COMBINE_BATCH_FILES": str(self.combine_batch_files),
            "PIPELINE_RETRY_FIRST_INTERVAL_MS": str(self.retry_first_interval_ms),
            "PIPELINE_RETRY_MAX_ATTEMPTS": str(self.retry_max_attempts),
            "PIPELINE_DATASETS": self.datasets,
            "PIPELINE_QUIET_SECONDS": str(self.quiet_seconds),
            "PIPELINE_MAX_WAIT_SECONDS": str(self.max_wait_seconds),
            "PIPELINE_APPROVAL_TIMEOUT_SECONDS": str(self.approval_timeout_seconds),
            "PIPELINE_STORE_URL": self.store_url,
            "PIPELINE_CATALOG_URL": self.catalog_url,
            "PIPELINE_STAC_LICENSE": self.stac_license,
            "PIPELINE_STAC_COLLECTION_TEMPLATE": self.stac_collection_template,
            "PIPELINE_STAC_API_URL": self.stac_api_url,
            "PIPELINE_STAC_API_SCOPE": self.stac_api_scope,
            "PIPELINE_STAC_API_TIMEOUT_SECONDS": str(self.stac_api_timeout_seconds),
            "PIPELINE_STORAGE_CONNECTION_STRING": "",
            "PIPELINE_STORAGE_ACCOUNT": "",
        }
        account = self.account
        if account is not None and (account.key or account.blob_endpoint):
            key = f"AccountKey={account.key};" if account.key else ""
            env["PIPELINE_STORAGE_CONNECTION_STRING"] = (
                f"AccountName={account.name};{key}BlobEndpoint={account.endpoint};"
            )
        elif account is not None:
            env["PIPELINE_STORAGE_ACCOUNT"] = account.name
        return env
