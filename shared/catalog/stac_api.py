"""The STAC API target: the collection and item the static catalog holds, also written into
a STAC API (stac-fastapi-pgstac, or any API with the Transactions extension) at
PIPELINE_STAC_API_URL, so that they can be searched by collection, bbox and time.

    publish   POST /collections (409: PUT /collections/{id}), then
              POST /collections/{id}/items (409: PUT /collections/{id}/items/{item})
    withdraw  DELETE /collections/{id}/items/{item} (404: already gone)

Every write is an upsert or a delete that may be repeated, so a retried activity completes
whatever is missing. ``published_in_api`` wraps the static catalog's write: when the API
fails (down, 5xx: StacApiUnavailable, retried; 4xx: StacApiRejected, not retried) the static
catalog's catalog, collection and item documents are put back as they were, so the two never
disagree about what is published. ``withdrawn_from_api`` deletes from the API before the
static catalog's item is removed.

Authentication: none, or (PIPELINE_STAC_API_SCOPE) a bearer token from azure-identity's
DefaultAzureCredential (the Function App's managed identity in Azure) for that scope. Tokens
are never logged. HTTP is the standard library's (no dependency, nothing loaded at start-up).
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.catalog.stac.catalog import HIERARCHY_RELS, CatalogPaths
from shared.io.storage import Storage
from shared.model.errors import (
    PipelineError,
    SourceNotFound,
    StacApiRejected,
    StacApiUnavailable,
)
from shared.model.layout import Layout
from shared.model.locations import Location
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)

# Answers that say "later": the request timed out, too many requests.
RETRY_LATER = (408, 425, 429)
# Links that only make sense in the static catalog (relative hrefs to its files): the API
# writes its own self, parent, root and collection links.
STATIC_RELS = (*HIERARCHY_RELS, "items", "child")
MAX_BODY = 500  # characters of the API's answer quoted in an error
# One credential per process: it caches its token until shortly before the token expires.
_credential: Any = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


class StacApi:
    """A client of one STAC API's Transactions extension."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.stac_api_url.rstrip("/")
        self.scope = settings.stac_api_scope
        self.timeout = settings.stac_api_timeout_seconds

    def _token(self, what: str) -> str | None:
        if not self.scope:
            return None
        # Loaded here: azure-identity is heavy and most deployments send no token.
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import DefaultAzureCredential

        global _credential
        try:
            if _credential is None:
                _credential = DefaultAzureCredential()
            return str(_credential.get_token(self.scope).token)
        except ClientAuthenticationError as exc:
            raise StacApiRejected(
                f"No token for the STAC API ({self.scope}) to write {what}: "
                f"{str(exc).splitlines()[0][:MAX_BODY]}",
                remedy="Give the Function App a managed identity (AZURE_CLIENT_ID for a "
                "user-assigned one) and check PIPELINE_STAC_API_SCOPE (the API's application "
                "ID URI followed by /.default).",
                url=self.url,
            ) from None

    def request(self, method: str, path: str, what: str, document: Any = None) -> Answer:
        """One request; StacApiUnavailable when the API cannot be reached, times out or
        answers 5xx/408/429. Any other answer is returned, whatever its status."""
        url = f"{self.url}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if document is not None:
            data = json.dumps(document).encode()
            headers["Content-Type"] = "application/json"
        token = self._token(what)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = Answer(response.status, response.read().decode(errors="replace"))
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, error.read().decode(errors="replace"))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StacApiUnavailable(
                f"The STAC API at {self.url} could not be reached to write {what} "
                f"({method} {path}: {reason}).",
                url=url,
            ) from None
        if answer.status >= 500 or answer.status in RETRY_LATER:
            raise StacApiUnavailable(
                f"The STAC API at {self.url} answered {answer.status} to {method} {path} "
                f"writing {what}: {_excerpt(answer.body)}",
                url=url,
                status=answer.status,
            )
        return answer

    def _refused(self, method: str, path: str, what: str, answer: Answer) -> PipelineError:
        remedy = None
        if answer.status in (401, 403):
            remedy = (
                "The API refused the pipeline's identity: set PIPELINE_STAC_API_SCOPE to the "
                "scope the API accepts and give the Function App's managed identity the role "
                "that may write collections and items."
            )
        elif answer.status in (404, 405):
            remedy = (
                "Check PIPELINE_STAC_API_URL (the API's root) and that the API has the "
                "Transactions extension on (stac-fastapi-pgstac: "
                "ENABLE_TRANSACTIONS_EXTENSIONS=true)."
            )
        return StacApiRejected(
            f"The STAC API at {self.url} refused {what}: {method} {path} answered "
            f"{answer.status}: {_excerpt(answer.body)}",
            remedy=remedy,
            url=f"{self.url}{path}",
            status=answer.status,
        )

    def _upsert(self, create_path: str, update_path: str, what: str, document: Any) -> str:
        """POST, and PUT when it exists already (409). Returns "created" or "updated"."""
        answer = self.request("POST", create_path, what, document)
        if answer.status in (200, 201):
            return "created"
        if answer.status != 409:
            raise self._refused("POST", create_path, what, answer)
        answer = self.request("PUT", update_path, what, document)
        if answer.status in (200, 201, 204):
            return "updated"
        raise self._refused("PUT", update_path, what, answer)

    def upsert_collection(self, collection: dict[str, Any], item_id: str | None = None) -> str:
        """Create or replace the collection (``item_id``: the item it is written for, named
        in errors)."""
        cid = collection["id"]
        what = f"the collection {cid!r}" + (f" of the item {item_id!r}" if item_id else "")
        return self._upsert("/collections", f"/collections/{_id(cid)}", what, collection)

    def upsert_item(self, item: dict[str, Any]) -> str:
        cid, iid = item["collection"], item["id"]
        return self._upsert(
            f"/collections/{_id(cid)}/items",
            f"/collections/{_id(cid)}/items/{_id(iid)}",
            f"the item {iid!r} of the collection {cid!r}",
            item,
        )

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Delete the item; False when the API did not have it (already gone)."""
        path = f"/collections/{_id(collection_id)}/items/{_id(item_id)}"
        what = f"the item {item_id!r} of the collection {collection_id!r} (delete)"
        answer = self.request("DELETE", path, what)
        if answer.status in (200, 202, 204):
            return True
        if answer.status == 404:
            return False
        raise self._refused("DELETE", path, what, answer)


def _id(text: str) -> str:
    return quote(text, safe="")


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= MAX_BODY else text[:MAX_BODY] + "…"


def for_api(document: dict[str, Any]) -> dict[str, Any]:
    """The static catalog's document as the API takes it: without the links into the static
    catalog's files (the API adds its own hierarchy links, and a relative href, such as the
    version links to the snapshots beside the item, would resolve against the API's URL to
    nothing); every other link (describedby, license, ...) and every asset stays. The
    ``vrt:hrefs`` that name the document's own assets by its file name
    (``./{item}.json#/assets/sources``, ``./collection.json#/assets/...``) name them by
    its last path segment in the API instead (``/collections/{id}`` and
    ``/collections/{id}/items/{item}``: ``./{id}#/assets/...``)."""
    found = dict(document)
    found["links"] = [
        link
        for link in document.get("links", [])
        if link.get("rel") not in STATIC_RELS and not _relative(str(link.get("href", "")))
    ]
    name = str(document.get("id"))
    own = "./collection.json#" if document.get("type") == "Collection" else f"./{name}.json#"
    if isinstance(document.get("assets"), dict):
        found["assets"] = {
            key: _own_refs(asset, own, f"./{quote(name, safe='')}#")
            for key, asset in document["assets"].items()
        }
    return found


def _own_refs(asset: Any, own: str, api: str) -> Any:
    refs = asset.get("vrt:hrefs") if isinstance(asset, dict) else None
    if not isinstance(refs, list):
        return asset
    return {
        **asset,
        "vrt:hrefs": [
            {**ref, "href": api + str(ref["href"])[len(own) :]}
            if isinstance(ref, dict) and str(ref.get("href", "")).startswith(own)
            else ref
            for ref in refs
        ],
    }


def _relative(href: str) -> bool:
    return not href.startswith("/") and "://" not in href


# -- keeping the static catalog and the API together ---------------------------------------
@dataclass
class _Saved:
    """The static catalog's documents one registration rewrites, as they were before."""

    documents: dict[str, bytes | None]

    @classmethod
    def read(cls, locations: list[Location], storage: Storage) -> _Saved:
        documents: dict[str, bytes | None] = {}
        for location in locations:
            try:
                documents[location.url] = storage.read(location)
            except SourceNotFound:
                documents[location.url] = None
        return cls(documents)

    def put_back(self, locations: list[Location], storage: Storage, root: Location) -> None:
        for location in locations:
            before = self.documents[location.url]
            if before is None:
                with contextlib.suppress(SourceNotFound):
                    storage.delete([location])
                if location.is_local:  # and the folders the write made (blob has none)
                    _remove_empty_folders(Path(location.path).parent, Path(root.path))
            else:
                storage.write(location, before, "application/json")


def _remove_empty_folders(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its parents up to ``root`` (not included) while they are empty."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): what is left was there before
            return
        folder = folder.parent


@contextlib.contextmanager
def published_in_api(
    collection_id: str, item_id: str, settings: Settings, storage: Storage
) -> Iterator[None]:
    """Around the static catalog's write of one item: after it, the collection and the item
    as written are upserted into the API (PIPELINE_STAC_API_URL; nothing when it is not
    set). When the API fails the static catalog's documents are put back as they were and
    the API's error is raised: retryable (StacApiUnavailable) or not (StacApiRejected)."""
    if not settings.stac_api_url:
        yield
        return
    paths = CatalogPaths(Layout.from_settings(settings).catalog, collection_id, item_id)
    rewritten = [paths.catalog, paths.collection, paths.item()]
    saved = _Saved.read(rewritten, storage)
    yield
    api = StacApi(settings)
    try:
        collection = for_api(storage.read_json(paths.collection))
        item = for_api(storage.read_json(paths.item()))
        item["collection"] = collection_id
        collection_done = api.upsert_collection(collection, item_id)
        item_done = api.upsert_item(item)
    except (StacApiUnavailable, StacApiRejected) as exc:
        saved.put_back(rewritten, storage, paths.root)
        emit(
            log,
            f"STAC API write failed, static catalog put back: {exc.message}",
            logging.WARNING,
            stage="register",
            item_id=item_id,
            collection=collection_id,
            code=exc.code,
            url=settings.stac_api_url,
        )
        raise
    emit(
        log,
        "STAC API updated",
        stage="register",
        item_id=item_id,
        collection=collection_id,
        collection_write=collection_done,
        item_write=item_done,
        url=settings.stac_api_url,
    )


def withdraw_from_api(collection_id: str, item_id: str, settings: Settings) -> None:
    """Before the static catalog's item is removed (unpublish with no earlier version): the
    API's item is deleted (already gone is fine). Nothing when no API is configured."""
    if not settings.stac_api_url:
        return
    deleted = StacApi(settings).delete_item(collection_id, item_id)
    emit(
        log,
        "STAC API item deleted" if deleted else "STAC API had no such item",
        stage="unpublish",
        item_id=item_id,
        collection=collection_id,
        url=settings.stac_api_url,
    )
