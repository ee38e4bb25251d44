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
import os
from typing import Any

import icechunk
import xarray as xr

from shared.io.storage import Storage
from shared.model.errors import CombineFailed
from shared.model.locations import Location
from shared.model.request import KERCHUNK_FORMATS, StoreFormat
from shared.model.settings import Settings

# Icechunk logs warnings on every repository open that an operator cannot act on (local
# storage is not safe for concurrent commits; conditional PUT metadata). ICECHUNK_LOG set in
# the environment takes precedence.
if "ICECHUNK_LOG" not in os.environ:
    icechunk.set_logs_filter("error")


def fix_kerchunk_refs(refs: dict[str, Any]) -> dict[str, Any]:
    """Make VirtualiZarr's kerchunk references read back as the source files do. In place.

    - A 0-d array's one chunk is written as "name/" instead of "name/0"; kerchunk readers
      then return NaN (docs/correctness.md). Renamed.
    - Each array's Zarr fill_value is the HDF5 dataset's fill value, and xarray treats a Zarr
      v2 fill_value as _FillValue: in a variable without a _FillValue attribute, real values
      equal to it (zeros, for h5py's default fill or netCDF4's fill_value=False) would read
      as NaN, and integers as floats. Such arrays get fill_value null, as their source has
      no missing-value marker.
    """
    store = refs["refs"]
    for key in [k for k in store if k.endswith("/.zarray")]:
        name = key[: -len("/.zarray")]
        meta = json.loads(store[key]) if isinstance(store[key], str) else dict(store[key])
        attrs = store.get(f"{name}/.zattrs", "{}")
        attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
        if meta["shape"] == [] and f"{name}/" in store:
            store[f"{name}/0"] = store.pop(f"{name}/")
        if "_FillValue" not in attrs and meta.get("fill_value") is not None:
            meta["fill_value"] = None
            store[key] = json.dumps(meta)
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


def _azure_retries() -> icechunk.StorageSettings:
    """How Icechunk's own (Rust object_store) client retries on Azure: as our obstore stores
    do (shared/io/storage.py): 10 retries, backoff from 200 ms with jitter, capped at 10 s. Its
    defaults are 9 retries capped at 3 min. Per-request timeouts are object_store's (30 s,
    5 s to connect); StorageTimeoutSettings applies to the S3 client only. The settings
    are stored in the repository's config, so its readers retry the same way."""
    return icechunk.StorageSettings(
        retries=icechunk.StorageRetriesSettings(
            max_tries=11, initial_backoff_ms=200, max_backoff_ms=10_000
        )
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
    store: icechunk.ObjectStoreConfig.LocalFileSystem | icechunk.ObjectStoreConfig.Azure
    if prefix.startswith("file://"):
        store = icechunk.local_filesystem_store(prefix[len("file://") :])
    else:
        account = settings.account
        assert account is not None
        # "account" must be in the config, else reads fail (seen with icechunk 2.3).
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
    location: Location, source_prefix: str, settings: Settings, split: int | None = None
) -> icechunk.Repository:
    """A new repository; ``split``: its manifests split every ``split`` chunks along each
    array's first axis (a spread combine writes and commits its references a piece at a
    time, and each commit then rewrites only the manifests of the pieces it touched)."""
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(_virtual_chunk_container(source_prefix, settings))
    if not location.is_local:
        config.storage = _azure_retries()
    if split:
        config.manifest = icechunk.ManifestConfig(
            splitting=icechunk.ManifestSplittingConfig.from_dict(
                {icechunk.ManifestSplitCondition.AnyArray(): {
                    icechunk.ManifestSplitDimCondition.Axis(0): split}}
            )
        )  # fmt: skip
    return icechunk.Repository.create(
        icechunk_storage(location, settings),
        config,
        authorize_virtual_chunk_access=icechunk_credentials([source_prefix], settings),
    )


def open_icechunk_repository(
    location: Location, settings: Settings, cache: bool = True
) -> icechunk.Repository:
    """An existing repository; ``cache=False``: this instance keeps no manifests, snapshots
    or changes in memory once written (for a writer of millions of references)."""
    storage = icechunk_storage(location, settings)
    config = icechunk.Repository.fetch_config(storage)
    prefixes = list(config.virtual_chunk_containers or {}) if config is not None else []
    override = None if location.is_local else icechunk.RepositoryConfig(storage=_azure_retries())
    if not cache:
        override = override or icechunk.RepositoryConfig()
        override.caching = icechunk.CachingConfig(
            num_snapshot_nodes=0, num_chunk_refs=0, num_transaction_changes=0
        )
    return icechunk.Repository.open(
        storage,
        config=override,
        authorize_virtual_chunk_access=icechunk_credentials(prefixes, settings),
    )


# -- opening ----------------------------------------------------------------------------
def open_store(
    store: Location, store_format: StoreFormat, source: Location, settings: Settings
) -> xr.Dataset:
    """Open a combined store lazily with xarray (CF decoding on, as a user would)."""
    if store_format == "icechunk":
        repo = open_icechunk_repository(store, settings)
        session = repo.readonly_session("main")
        return xr.open_zarr(session.store, consolidated=False, chunks=None)
    if store_format not in KERCHUNK_FORMATS:
        raise CombineFailed(f"Unknown store format {store_format!r}.")
    options: dict[str, Any] = {"fo": kerchunk_references(store, settings)}
    options.update(remote_filesystem(source.is_local, settings))
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        chunks=None,
        backend_kwargs={"consolidated": False, "zarr_format": 2, "storage_options": options},
    )


def kerchunk_references(store: Location, settings: Settings) -> Any:
    """The references of a kerchunk store, as fsspec's ReferenceFileSystem takes them (``fo``):
    a dict for JSON, a lazy Parquet mapper for Parquet, read with our storage clients."""
    if store.name.endswith(".parq"):
        from fsspec.implementations.reference import LazyReferenceMapper

        if store.is_local:
            return LazyReferenceMapper(store.path)
        return LazyReferenceMapper(
            f"{store.container}/{store.path}", fs=_obstore_filesystem(settings, asynchronous=False)
        )
    return json.loads(Storage(settings).read(store))


def remote_filesystem(source_is_local: bool, settings: Settings) -> dict[str, Any]:
    """ReferenceFileSystem options for reading the source files' bytes.

    Blob sources are read through obstore's fsspec adapter rather than adlfs: an async adlfs
    filesystem keeps an aiohttp session that outlives the dataset and leaks a connection per
    open in a long-running worker ("Unclosed connector")."""
    if source_is_local:
        return {"remote_protocol": "file"}
    return {"remote_protocol": "az", "fs": {"az": _obstore_filesystem(settings, asynchronous=True)}}


def _obstore_filesystem(settings: Settings, *, asynchronous: bool) -> Any:
    from obstore.fsspec import FsspecStore

    account = settings.account
    assert account is not None
    config: dict[str, Any] = {"account_name": account.name, "endpoint": account.endpoint}
    credential_provider = None
    if account.key:
        config["account_key"] = account.key
    else:
        from azure.identity import DefaultAzureCredential
        from obstore.auth.azure import AzureCredentialProvider

        credential_provider = AzureCredentialProvider(credential=DefaultAzureCredential())
    return FsspecStore(
        "az",
        config=config,
        client_options={"allow_http": True} if account.is_emulator else None,
        credential_provider=credential_provider,
        asynchronous=asynchronous,
        skip_instance_cache=True,  # fsspec's own option, which obstore's overloads do not list
    )  # type: ignore[call-overload]
