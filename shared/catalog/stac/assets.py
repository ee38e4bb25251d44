"""The assets of an item, pure: the store and the source files it points into, in the fields
the community reads (no project-only field, no credential):

- where the bytes live: the storage extension v2 (``storage:schemes`` on the item or
  collection, ``storage:refs`` on each asset in blob storage);
- how to open them: the media type and roles (``application/json`` + ``references`` is what
  xpystac opens as kerchunk references, as on the Planetary Computer), and the zarr extension
  (``zarr:zarr_format``, ``zarr:consolidated``, ``zarr:node_type``) for the Zarr hierarchy the
  store presents. A kerchunk Parquet store (a folder of Parquet record files, which no
  ``application/vnd.apache.parquet`` reader opens as such) is the Zarr group
  ``application/vnd.zarr`` that the ``kerchunk`` engine opens, said by
  ``xarray:open_kwargs`` (xarray-assets extension), which xpystac passes to
  ``xarray.open_dataset``; it carries no ``zarr:zarr_format``/``zarr:consolidated``, which
  xpystac would pass too and the kerchunk engine sets itself (it refuses them twice). The
  description of every store asset names the opener that works;
- what the store's chunks point into: a ``sources`` asset (the folder, no file media type),
  named by ``vrt:hrefs`` (the virtual-assets extension) as VEDA and xpystac's
  virtual-Icechunk examples do, by the document's own file name and a fragment
  (``./{item}.json#/assets/sources``: the released schema refuses a fragment alone). For
  Icechunk its href is the virtual chunk container the repository declares.

A reader that needs credentials (a private container) gets them from the signing modifier
``consumer.signing``, which reads exactly these fields.
"""

from __future__ import annotations

from typing import Any

import pystac

from shared.model.errors import CatalogError
from shared.model.locations import Location, public_store_url
from shared.model.request import StoreFormat
from shared.model.settings import Settings

STORE_ASSET_KEY = "data"
SOURCES_ASSET_KEY = "sources"
STORAGE_EXTENSION = "https://stac-extensions.github.io/storage/v2.0.0/schema.json"
ZARR_EXTENSION = "https://stac-extensions.github.io/zarr/v1.0.0/schema.json"
VIRTUAL_ASSETS_EXTENSION = "https://stac-extensions.github.io/virtual-assets/v1.0.0/schema.json"
XARRAY_ASSETS_EXTENSION = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
AZURE_SCHEME_TYPE = "ms-azure"
AZURE_PLATFORM = "https://{account}.blob.core.windows.net"

STORE_MEDIA_TYPES: dict[str, str] = {
    # xpystac opens a kerchunk asset only as application/json with role references/index.
    "kerchunk-json": pystac.MediaType.JSON,
    # a folder of Parquet record files presenting a Zarr group: opened with the kerchunk
    # engine (OPEN_KWARGS), which xpystac reaches by this media type
    "kerchunk-parquet": "application/vnd.zarr",
    "icechunk": "application/vnd.zarr+icechunk",
}
# "references" is what xpystac opens a kerchunk JSON asset by (with "index", the Planetary
# Computer's role for its kerchunk index files); "virtual" is the STAC best practices' role
# for a virtual Zarr store (and VEDA's, on its Icechunk stores).
STORE_ROLES: dict[str, list[str]] = {
    "kerchunk-json": ["data", "references", "virtual"],
    "kerchunk-parquet": ["data", "references", "virtual"],
    "icechunk": ["data", "references", "virtual"],
}
# The Zarr hierarchy each store presents: kerchunk references are Zarr v2 without
# consolidated metadata (.zmetadata is not written); Icechunk is Zarr v3.
# (Parquet: none, see the module docstring; the description says Zarr v2.)
ZARR_FIELDS: dict[str, dict[str, Any]] = {
    "kerchunk-json": {"zarr:zarr_format": 2, "zarr:consolidated": False},
    "kerchunk-parquet": {},
    "icechunk": {"zarr:zarr_format": 3, "zarr:consolidated": False},
}
# What xarray.open_dataset needs besides the href (xarray-assets extension).
OPEN_KWARGS: dict[str, dict[str, Any]] = {"kerchunk-parquet": {"engine": "kerchunk"}}
FORMAT_WORDS = {
    "kerchunk-json": "kerchunk references (JSON)",
    "kerchunk-parquet": "kerchunk references (Parquet)",
    "icechunk": "Icechunk repository of virtual references",
}
ICECHUNK_OPENER = (
    "xpystac 0.5 opens Icechunk only from S3; open it with Icechunk: "
    "icechunk.Repository.open(<the storage at this href: icechunk.http_storage, "
    "local_filesystem_storage or azure_storage>, authorize_virtual_chunk_access="
    "icechunk.containers_credentials({<the sources asset's href>: <credentials>})), then "
    "xarray.open_zarr(repo.readonly_session(branch='main').store, consolidated=False) "
    "(Zarr v3)."
)


def opener(store_format: StoreFormat, href: str) -> str:
    """The words of the store asset's description that name what opens it."""
    if store_format == "icechunk":
        return ICECHUNK_OPENER
    direct = "xarray.open_dataset(<href>, engine='kerchunk') (Zarr v2)"
    if store_format == "kerchunk-parquet":
        return f"Open with xarray.open_dataset(asset) (xpystac), or {direct}."
    if href.startswith(("https://", "http://")):
        return f"Open with xarray.open_dataset(asset) (xpystac), or {direct}."
    return (
        f"Open with {direct}; xpystac 0.5 fetches kerchunk JSON over http(s) only "
        "(serve the store root at PIPELINE_STORE_URL)."
    )


def vrt_href(document: str, key: str) -> str:
    """A ``vrt:hrefs`` href to another asset of the same document: its file name and a
    fragment (the virtual-assets v1.0.0 schema refuses a fragment alone: it matches both
    branches of its ``oneOf``)."""
    return f"./{document}#/assets/{key}"


def storage_scheme(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The storage extension's scheme for the deployment's account: its key and fields.
    An emulator or sovereign cloud gets its own endpoint as the platform template."""
    account = settings.account
    assert account is not None
    platform = AZURE_PLATFORM
    if account.blob_endpoint:
        platform = account.endpoint.replace(account.name, "{account}")
    return f"{AZURE_SCHEME_TYPE}-{account.name}", {
        "type": AZURE_SCHEME_TYPE,
        "platform": platform,
        "account": account.name,
    }


def store_assets(
    *,
    store: Location,
    store_format: StoreFormat,
    source: Location,
    settings: Settings,
    title: str | None = None,
    virtual_chunk_prefix: str | None = None,
    sources_description: str | None = None,
    document: str,
) -> tuple[dict[str, pystac.Asset], dict[str, dict[str, Any]]]:
    """The store asset and the sources asset it points into, with the storage schemes they
    refer to (to go on the item or collection as ``storage:schemes``). ``document``: the
    file name of the document the assets go in (``vrt:hrefs`` names the sources asset in it)."""
    if store_format not in STORE_MEDIA_TYPES:
        raise CatalogError(
            f"Cannot describe {store.url}: unknown store format {store_format!r} "
            f"(expected one of {', '.join(STORE_MEDIA_TYPES)})."
        )
    if (not source.is_local or not store.is_local) and settings.account is None:
        raise CatalogError(
            f"Cannot describe {store.url}: it or its sources are in blob storage but no "
            "storage account is configured."
        )
    if store_format == "icechunk" and not virtual_chunk_prefix:
        raise CatalogError(
            f"Cannot describe the Icechunk store {store.url}: the virtual chunk "
            "container prefix of its source files was not given.",
            remedy="Pass virtual_chunk_prefix (shared.io.stores.virtual_container_prefix).",
        )
    schemes: dict[str, dict[str, Any]] = {}
    refs: list[str] = []
    if settings.account is not None and not (source.is_local and store.is_local):
        key, scheme = storage_scheme(settings)
        schemes[key] = scheme
        refs = [key]

    href = public_store_url(store, settings)
    data = pystac.Asset(
        href=href,
        title=title,
        description=f"{FORMAT_WORDS[store_format]} to the source NetCDF/HDF5 files; "
        f"no data was copied. {opener(store_format, href)}",
        media_type=STORE_MEDIA_TYPES[store_format],
        roles=list(STORE_ROLES[store_format]),
        extra_fields={
            **ZARR_FIELDS[store_format],
            "zarr:node_type": "group",
            "vrt:hrefs": [
                {"key": SOURCES_ASSET_KEY, "href": vrt_href(document, SOURCES_ASSET_KEY)}
            ],
        },
    )
    if store_format in OPEN_KWARGS:
        data.extra_fields["xarray:open_kwargs"] = dict(OPEN_KWARGS[store_format])
    if refs and not store.is_local:
        data.extra_fields["storage:refs"] = list(refs)

    # Icechunk: the virtual chunk container the repository declares (what a reader must
    # authorise); kerchunk: the folder the references point into.
    if store_format == "icechunk":
        assert virtual_chunk_prefix is not None
        sources_href = virtual_chunk_prefix
    else:
        sources_href = source.url.rstrip("/") + "/"
    sources = pystac.Asset(  # a folder (or container prefix): no file media type
        href=sources_href,
        title="Source NetCDF/HDF5 files (folder)",
        description=sources_description
        or "The folder of the files the store's references point into (read in place, "
        "never copied).",
        roles=["source"],
    )
    if refs and not source.is_local:
        sources.extra_fields["storage:refs"] = list(refs)
    return {STORE_ASSET_KEY: data, SOURCES_ASSET_KEY: sources}, schemes


def asset_extensions(schemes: dict[str, Any], store_format: StoreFormat) -> list[str]:
    """The extensions the assets of store_assets use."""
    return [
        ZARR_EXTENSION,
        VIRTUAL_ASSETS_EXTENSION,
        *([XARRAY_ASSETS_EXTENSION] if store_format in OPEN_KWARGS else []),
        *([STORAGE_EXTENSION] if schemes else []),
    ]
