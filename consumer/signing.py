"""Sign our STAC items for a reader whose storage is private, as ``planetary_computer.sign``
does for the Planetary Computer: the same item, with SAS tokens on the hrefs and the open
hints xpystac needs to read the source files, so the one-liner works::

    import pystac, xarray as xr
    from consumer.signing import sign

    ds = xr.open_dataset(sign(pystac.Item.from_file(ITEM_URL)).assets["data"])

or for every object a pystac-client ``Client`` hands out::

    client = pystac_client.Client.open(CATALOG_URL, modifier=sign_inplace)

What is signed is read from the item's standard fields only: each asset in blob storage (its
href, and for ``az://`` hrefs the account its ``storage:refs`` scheme names) gets a
read/list SAS of its container appended; a kerchunk store asset also gets
``xarray:storage_options`` (the field xpystac 0.5.0 passes to the kerchunk engine) naming the
source container of its ``vrt:hrefs`` with a SAS, so the references' ``az://`` chunks read.

In Azure the SAS is a user-delegation SAS made from the caller's own identity
(``DefaultAzureCredential``: az login, a managed identity, ...; the identity needs
"Storage Blob Data Reader" and the right to get a user delegation key). Against Azurite,
which does not make user delegation keys, ``Signer(account_key=...)`` signs with the
account key instead. Tokens are cached per container until shortly before they expire.

The published item never carries a token: signing happens in the reader's process.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pystac

AZURE_SUFFIXES = (".blob.core.windows.net", ".dfs.core.windows.net")
DEFAULT_PLATFORM = "https://{account}.blob.core.windows.net"
KERCHUNK_ROLES = {"references", "index"}
TOKEN_LIFETIME = timedelta(hours=1)
RENEW_BEFORE = timedelta(minutes=5)


@dataclass(frozen=True)
class Container:
    """A blob container and the account URL it is reached at."""

    account: str
    account_url: str
    name: str


@dataclass(frozen=True)
class Token:
    sas: str
    expires: datetime


class Signer:
    """Makes container SAS tokens and signs items with them (see the module docstring).

    ``credential``: an azure-identity credential (default ``DefaultAzureCredential``) for a
    user-delegation SAS; ``account_key``: sign with the account key instead (Azurite)."""

    def __init__(
        self,
        credential: Any = None,
        *,
        account_key: str | None = None,
        lifetime: timedelta = TOKEN_LIFETIME,
    ) -> None:
        self.credential = credential
        self.account_key = account_key
        self.lifetime = lifetime
        self._tokens: dict[Container, Token] = {}
        self._lock = threading.Lock()

    # -- what a modifier is called with -------------------------------------------------
    def __call__(self, obj: Any) -> Any:
        """pystac-client's ``modifier``: signs in place (and returns the object)."""
        return self.sign_inplace(obj)

    def sign(self, obj: Any) -> Any:
        """A signed copy of an Item, Collection, ItemCollection, Asset or item dict."""
        if isinstance(obj, pystac.Item | pystac.Collection | pystac.ItemCollection):
            return self.sign_inplace(obj.clone())
        if isinstance(obj, pystac.Asset):
            clone = obj.clone()
            if obj.owner is not None:
                clone.set_owner(obj.owner)
            return self.sign_inplace(clone)
        return self.sign_inplace(copy.deepcopy(obj))

    def sign_inplace(self, obj: Any) -> Any:
        if isinstance(obj, pystac.ItemCollection):
            for item in obj:
                self.sign_inplace(item)
        elif isinstance(obj, pystac.Item | pystac.Collection):
            schemes = _schemes(obj)
            assets = dict(obj.assets)
            for asset in assets.values():
                self._sign_asset(asset, schemes, assets)
        elif isinstance(obj, pystac.Asset):
            owner = obj.owner
            schemes = _schemes(owner) if owner is not None else {}
            siblings = owner.assets if isinstance(owner, pystac.Item | pystac.Collection) else {}
            self._sign_asset(obj, schemes, dict(siblings))
        elif isinstance(obj, dict):
            self._sign_dict(obj)
        return obj

    # -- assets ---------------------------------------------------------------------------
    def _sign_asset(
        self, asset: pystac.Asset, schemes: dict[str, Any], assets: dict[str, pystac.Asset]
    ) -> None:
        if "sig=" in asset.href or "xarray:storage_options" in asset.extra_fields:
            return  # signed already
        container = _container(asset.href, asset.extra_fields, schemes)
        if container is None:
            return
        options: dict[str, Any] = {}
        if asset.href.startswith(("http://", "https://")):
            if is_kerchunk_folder(asset):
                # the kerchunk engine reads record files below the href, so the SAS goes
                # with every request (fsspec's HTTP file system passes these to aiohttp)
                token = dict(parse_qsl(self.token(container)))
                options["target_options"] = {"params": token}
            else:
                asset.href = _with_query(asset.href, self.token(container))
        if is_kerchunk(asset):
            sources = _sources_container(asset, schemes, assets)
            if sources is not None:
                options["remote_protocol"] = "az"
                options["remote_options"] = {
                    "connection_string": f"BlobEndpoint={sources.account_url};"
                    f"SharedAccessSignature={self.token(sources)}"
                }
        if options:
            asset.extra_fields["xarray:storage_options"] = options

    def _sign_dict(self, document: dict[str, Any]) -> None:
        """A raw item or collection document (what pystac-client passes for some calls)."""
        if document.get("type") == "FeatureCollection":
            for feature in document.get("features", []):
                self._sign_dict(feature)
            return
        if document.get("type") not in ("Feature", "Collection"):
            return
        stac_object: pystac.Item | pystac.Collection = (
            pystac.Item.from_dict(document, preserve_dict=True)
            if document["type"] == "Feature"
            else pystac.Collection.from_dict(document, preserve_dict=True)
        )
        self.sign_inplace(stac_object)
        document["assets"] = {key: asset.to_dict() for key, asset in stac_object.assets.items()}

    # -- tokens ---------------------------------------------------------------------------
    def token(self, container: Container) -> str:
        """A read/list SAS for the container (cached until it is about to expire)."""
        with self._lock:
            found = self._tokens.get(container)
            now = datetime.now(UTC)
            if found is None or found.expires - RENEW_BEFORE <= now:
                expires = now + self.lifetime
                found = Token(self._make_sas(container, now, expires), expires)
                self._tokens[container] = found
            return found.sas

    def _make_sas(self, container: Container, now: datetime, expires: datetime) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        permission = ContainerSasPermissions(read=True, list=True)
        start = now - timedelta(minutes=5)  # clock skew
        if self.account_key:
            return generate_container_sas(
                container.account,
                container.name,
                account_key=self.account_key,
                permission=permission,
                start=start,
                expiry=expires,
            )
        from azure.storage.blob import BlobServiceClient

        if self.credential is None:
            from azure.identity import DefaultAzureCredential

            self.credential = DefaultAzureCredential()
        service = BlobServiceClient(container.account_url, credential=self.credential)
        key = service.get_user_delegation_key(start, expires)
        return generate_container_sas(
            container.account,
            container.name,
            user_delegation_key=key,
            permission=permission,
            start=start,
            expiry=expires,
        )


def is_kerchunk(asset: pystac.Asset) -> bool:
    """A kerchunk store asset: JSON references as xpystac opens them (application/json with
    role references or index), or one opened with the kerchunk engine (Parquet:
    ``xarray:open_kwargs``)."""
    roles = set(asset.roles or [])
    if asset.media_type == pystac.MediaType.JSON and roles & KERCHUNK_ROLES:
        return True
    open_kwargs = asset.extra_fields.get("xarray:open_kwargs") or {}
    return isinstance(open_kwargs, dict) and open_kwargs.get("engine") == "kerchunk"


def is_kerchunk_folder(asset: pystac.Asset) -> bool:
    """A kerchunk Parquet store: a folder the kerchunk engine opens (``xarray:open_kwargs``)."""
    return is_kerchunk(asset) and asset.media_type != pystac.MediaType.JSON


def _schemes(obj: Any) -> dict[str, Any]:
    """The storage extension's schemes of an item (its properties) or collection."""
    if isinstance(obj, pystac.Item):
        found = obj.properties.get("storage:schemes")
        if found is None and obj.get_collection() is not None:
            found = obj.get_collection().extra_fields.get("storage:schemes")  # type: ignore[union-attr]
        return dict(found or {})
    fields = getattr(obj, "extra_fields", {}) or {}
    return dict(fields.get("storage:schemes") or {})


def _container(href: str, fields: dict[str, Any], schemes: dict[str, Any]) -> Container | None:
    """The container an href is in: https://ACCOUNT.blob.core.windows.net/CONTAINER/...,
    an emulator's http://HOST/ACCOUNT/CONTAINER/... (matched by a scheme's platform), or
    az://CONTAINER/... with the account of the asset's storage:refs scheme."""
    parts = urlsplit(href)
    scheme = _azure_scheme(fields, schemes)
    if parts.scheme in ("az", "abfs", "abfss"):
        if scheme is None:
            return None
        account = str(scheme["account"])
        name = parts.netloc.split("@", 1)[0]
        return Container(account, _account_url(scheme, account), name)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.netloc.lower()
    segments = parts.path.lstrip("/").split("/")
    if host.endswith(AZURE_SUFFIXES):
        account = host.split(".", 1)[0]
        return Container(account, f"https://{account}.blob.core.windows.net", segments[0])
    if scheme is not None:  # an emulator: the account is the first path segment
        account = str(scheme["account"])
        account_url = _account_url(scheme, account)
        if href.startswith(account_url + "/") and len(segments) >= 2:
            return Container(account, account_url, segments[1])
    return None


def _azure_scheme(fields: dict[str, Any], schemes: dict[str, Any]) -> dict[str, Any] | None:
    for ref in fields.get("storage:refs") or []:
        scheme = schemes.get(ref)
        if isinstance(scheme, dict) and scheme.get("type") == "ms-azure" and scheme.get("account"):
            return scheme
    return None


def _account_url(scheme: dict[str, Any], account: str) -> str:
    platform = str(scheme.get("platform") or DEFAULT_PLATFORM)
    return platform.replace("{account}", account).rstrip("/")


def _sources_container(
    asset: pystac.Asset, schemes: dict[str, Any], assets: dict[str, pystac.Asset]
) -> Container | None:
    """The container of the sources asset the store asset names in ``vrt:hrefs``."""
    for ref in asset.extra_fields.get("vrt:hrefs") or []:
        key = ref.get("key") if isinstance(ref, dict) else None
        sources = assets.get(key) if key else None
        if sources is not None:
            return _container(sources.href, sources.extra_fields, schemes)
    return None


def _with_query(href: str, sas: str) -> str:
    return f"{href}{'&' if '?' in href else '?'}{sas}"


_DEFAULT: list[Signer] = []


def default_signer() -> Signer:
    """The process's signer: DefaultAzureCredential, user-delegation SAS."""
    if not _DEFAULT:
        _DEFAULT.append(Signer())
    return _DEFAULT[0]


def sign(obj: Any) -> Any:
    """A signed copy (see the module docstring), with the caller's Azure identity."""
    return default_signer().sign(obj)


def sign_inplace(obj: Any) -> Any:
    """Sign in place: pystac-client's ``modifier=sign_inplace``."""
    return default_signer().sign_inplace(obj)
