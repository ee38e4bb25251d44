"""Settings: one object, read from the environment once, by triggers, activities and the CLI.

Orchestrators never read settings (they must replay identically); what they need travels in
the request. Every variable is documented in docs/settings.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import BadRequest

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public, documented by Microsoft, not a secret.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


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
    name = parts.get("accountname")
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


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"Setting {name}={raw!r} is not true or false.")


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
    max_files: int = 10_000
    read_block_size: int = 64 * 1024
    inline_max_bytes: int = 64 * 1024
    verify_full_max_bytes: int = 256 * 1024 * 1024
    verify_sample_chunks: int = 2

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
        return cls(
            account=account,
            work_area=env.get("PIPELINE_WORK_AREA", defaults.work_area),
            store_root=env.get("PIPELINE_STORE_ROOT", defaults.store_root),
            catalog=env.get("PIPELINE_CATALOG", defaults.catalog),
            allow_local_paths=_bool(env, "PIPELINE_ALLOW_LOCAL_PATHS", defaults.allow_local_paths),
            allowed_containers=containers,
            max_files=_int(env, "PIPELINE_MAX_FILES", defaults.max_files),
            read_block_size=_int(env, "PIPELINE_READ_BLOCK_SIZE", defaults.read_block_size, 512),
            inline_max_bytes=_int(env, "PIPELINE_INLINE_MAX_BYTES", defaults.inline_max_bytes, 0),
            verify_full_max_bytes=_int(
                env, "PIPELINE_VERIFY_FULL_MAX_BYTES", defaults.verify_full_max_bytes, 0
            ),
            verify_sample_chunks=_int(
                env, "PIPELINE_VERIFY_SAMPLE_CHUNKS", defaults.verify_sample_chunks
            ),
        )

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)
