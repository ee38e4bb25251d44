"""The combined store in its three formats: how to write it and how to open it with xarray.

- kerchunk-json:    one JSON document of references (Zarr v2 metadata), the default.
- kerchunk-parquet: the same references as a directory of Parquet files (large collections).
- icechunk:         an Icechunk repository whose chunks are virtual references, with the
                    source container declared as a virtual chunk container; Icechunk refuses
                    to read a chunk whose source object changed after the commit.

Readers get their options here (never a key in a published item): verify uses these, and
so will the TiTiler reader.
"""

from __future__ import annotations

import json
from typing import Any

import icechunk
import xarray as xr

from shared.errors import CombineFailed
from shared.locations import Location
from shared.settings import Settings
from shared.storage import fsspec_options


def fix_scalar_chunk_keys(refs: dict[str, Any]) -> dict[str, Any]:
    """VirtualiZarr writes a 0-d array's one chunk as "name/" instead of "name/0"; kerchunk
    readers then return NaN (FACTS.md). Rename those keys in place and return ``refs``."""
    store = refs["refs"]
    for key in [k for k in store if k.endswith("/.zarray")]:
        name = key[: -len("/.zarray")]
        meta = store[key]
        shape = json.loads(meta)["shape"] if isinstance(meta, str) else meta["shape"]
        if shape == [] and f"{name}/" in store:
            store[f"{name}/0"] = store.pop(f"{name}/")
    return refs


# -- Icechunk ---------------------------------------------------------------------------
def icechunk_storage(location: Location, settings: Settings) -> icechunk.Storage:
    if location.is_local:
        return icechunk.local_filesystem_storage(location.path)
    account = settings.account
    assert account is not None
    return icechunk.azure_storage(
        account=account.name,
        container=location.container,
        prefix=location.path,
        access_key=account.key,
        from_env=None if account.key else True,
        config=_azure_config(settings),
    )


def _azure_config(settings: Settings) -> dict[str, str]:
    account = settings.account
    assert account is not None
    config = {"endpoint": account.endpoint}
    if account.is_emulator:
        config["allow_http"] = "true"
    return config


def virtual_container_prefix(source: Location) -> str:
    """The URL prefix Icechunk must be told about for the source files' virtual chunks."""
    if source.is_local:
        return "file://" + source.path.rstrip("/") + "/"
    return f"az://{source.container}/"


def _virtual_chunk_container(prefix: str, settings: Settings) -> icechunk.VirtualChunkContainer:
    if prefix.startswith("file://"):
        store = icechunk.local_filesystem_store(prefix[len("file://") :])
    else:
        account = settings.account
        assert account is not None
        # "account" must be in the config, else reads fail (FACTS.md).
        store = icechunk.ObjectStoreConfig.Azure(
            {"account": account.name, **_azure_config(settings)}
        )
    return icechunk.VirtualChunkContainer(prefix, store)


def icechunk_credentials(prefixes: list[str], settings: Settings) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for prefix in prefixes:
        if prefix.startswith("file://"):
            mapping[prefix] = icechunk.credentials.LocalFileSystemAccess
        else:
            account = settings.account
            assert account is not None
            mapping[prefix] = (
                icechunk.azure_credentials(access_key=account.key)
                if account.key
                else icechunk.azure_credentials(from_env=True)
            )
    return icechunk.containers_credentials(mapping)


def create_icechunk_repository(
    location: Location, source_prefix: str, settings: Settings
) -> icechunk.Repository:
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(_virtual_chunk_container(source_prefix, settings))
    return icechunk.Repository.create(
        icechunk_storage(location, settings),
        config,
        authorize_virtual_chunk_access=icechunk_credentials([source_prefix], settings),
    )


def open_icechunk_repository(location: Location, settings: Settings) -> icechunk.Repository:
    storage = icechunk_storage(location, settings)
    config = icechunk.Repository.fetch_config(storage)
    prefixes = list(config.virtual_chunk_containers or {}) if config is not None else []
    return icechunk.Repository.open(
        storage, authorize_virtual_chunk_access=icechunk_credentials(prefixes, settings)
    )


# -- opening ----------------------------------------------------------------------------
def open_store(
    store: Location, store_format: str, source: Location, settings: Settings
) -> xr.Dataset:
    """Open a combined store lazily with xarray (CF decoding on, as a user would)."""
    if store_format == "icechunk":
        repo = open_icechunk_repository(store, settings)
        session = repo.readonly_session("main")
        return xr.open_zarr(session.store, consolidated=False, chunks=None)
    if store_format not in ("kerchunk-json", "kerchunk-parquet"):
        raise CombineFailed(f"Unknown store format {store_format!r}.")
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        chunks=None,
        backend_kwargs={
            "consolidated": False,
            "zarr_format": 2,
            "storage_options": kerchunk_storage_options(store, source, settings),
        },
    )


def kerchunk_storage_options(
    store: Location, source: Location, settings: Settings
) -> dict[str, Any]:
    """fsspec ReferenceFileSystem options to open a kerchunk store written by combine."""
    options: dict[str, Any] = {"fo": fsspec_url(store)}
    if not store.is_local:
        options["target_protocol"] = "az"
        options["target_options"] = fsspec_options(settings)
    if source.is_local:
        options["remote_protocol"] = "file"
    else:
        options["remote_protocol"] = "az"
        # the reference filesystem is async, so its target must be too (FACTS.md)
        options["remote_options"] = {**fsspec_options(settings), "asynchronous": True}
    return options


def fsspec_url(location: Location) -> str:
    return location.path if location.is_local else location.url
