"""Where the item is written: the static catalog in storage, read and written through
``Storage`` by ``StorageStacIO``. ``register_item`` adds (or replaces) an item,
``remove_item`` takes one out; both rebuild the collection's item links and extent from the
item documents below it. The layout, relative to the settings' catalog location::

    {catalog}/catalog.json
    {catalog}/{collection}/collection.json
    {catalog}/{collection}/{item}/{item}.json
    {catalog}/{collection}/{item}/versions/{version}.json   earlier published versions

(the version snapshots and their links: shared.catalog.stac.versions). What the catalog,
collections and items say is built in ``shared.catalog.stac.item``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pystac
from pystac.stac_io import StacIO
from pystac.utils import HREF

from shared.catalog.stac.collection import (
    CollectionFields,
    apply_fields,
    describe_items,
    template_for,
)
from shared.catalog.stac.documents import (
    check_id,
    collection_extent,
    new_catalog,
    new_collection,
)
from shared.catalog.stac.versions import VersionPaths, relink, remove_all, retire_current
from shared.io.storage import Storage
from shared.model.errors import BadRequest, CatalogError, PipelineError, StorageUnavailable
from shared.model.layout import Layout
from shared.model.locations import Location, http_url, parse_location, public_catalog_url
from shared.model.settings import Settings
from shared.model.telemetry import emit

log = logging.getLogger(__name__)

_READ_WORKERS = 8
HIERARCHY_RELS = ("root", "parent", "collection", "item", "self")


class StorageStacIO(StacIO):
    """pystac I/O through ``Storage``: hrefs are local paths, file:// or az:// URLs, or
    https blob URLs of the configured account (the same rules as every other location)."""

    def __init__(self, storage: Storage, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers)
        self.storage = storage

    def location(self, href: HREF) -> Location:
        return parse_location(os.fspath(href), self.storage.settings, what="catalog document")

    def read_text(self, source: HREF, *args: Any, **kwargs: Any) -> str:
        location = self.location(source)
        with _catalog_errors(location, "read"):
            return self.storage.read(location).decode("utf-8")

    def write_text(self, dest: HREF, txt: str, *args: Any, **kwargs: Any) -> None:
        location = self.location(dest)
        with _catalog_errors(location, "write"):
            self.storage.write(location, txt.encode("utf-8"), "application/json")


@contextmanager
def _catalog_errors(location: Location, action: str) -> Iterator[None]:
    """Storage errors become CatalogError naming the location; transient ones stay
    StorageUnavailable (retryable), so the orchestrator tries again."""
    try:
        yield
    except (CatalogError, StorageUnavailable):
        raise
    except PipelineError as exc:
        raise CatalogError(
            f"Could not {action} the catalog document {location.url}: {exc.message}",
            remedy=exc.remedy or None,
        ) from exc
    except Exception as exc:
        raise CatalogError(
            f"Could not {action} the catalog document {location.url}: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class RegisterResult:
    """Where the item, its collection and the catalog root were written (https or file://),
    and what the run must warn about ({"code", "message", "remedy"}: an unknown license)."""

    item_url: str
    collection_url: str
    catalog_url: str
    warnings: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_url": self.item_url,
            "collection_url": self.collection_url,
            "catalog_url": self.catalog_url,
            "warnings": [dict(w) for w in self.warnings],
        }


@dataclass(frozen=True)
class CatalogPaths:
    """The fixed layout of the static catalog below its root."""

    root: Location
    collection_id: str
    item_id: str

    @property
    def catalog(self) -> Location:
        return self.root.join("catalog.json")

    @property
    def collection_folder(self) -> Location:
        return self.root.join(self.collection_id)

    @property
    def collection(self) -> Location:
        return self.collection_folder.join("collection.json")

    def item(self, item_id: str | None = None) -> Location:
        item_id = item_id or self.item_id
        return self.collection_folder.join(item_id, f"{item_id}.json")

    @property
    def versions(self) -> VersionPaths:
        return VersionPaths(self.collection_folder.join(self.item_id), self.item_id)


def _href(location: Location) -> str:
    """The href pystac works with: a plain path locally (what its own I/O expects)."""
    return location.path if location.is_local else location.url


def register_item(
    item: pystac.Item,
    *,
    collection_id: str,
    settings: Settings,
    storage: Storage | None = None,
    collection_title: str | None = None,
    collection_description: str | None = None,
    fields: CollectionFields | None = None,
    versions: Sequence[str] | None = None,
) -> RegisterResult:
    """Add (or replace) ``item`` in the static catalog at the settings' catalog location.

    Creates catalog.json and the collection on first use. Writes the item, then rebuilds the
    collection's item links, extent, summaries, item_assets and datacube fields from every
    item file below the collection, and puts ``fields`` (license, providers, keywords,
    title, description: shared.catalog.stac.collection) on it; then makes sure the catalog
    links to the collection. Safe to run twice (same files).

    The version the item showed before, when it is another one, stays as a snapshot beside
    it, and the version links of the item and its snapshots are rewritten
    (shared.catalog.stac.versions); ``versions`` is the dataset's published versions in
    publication order (the ledger's), None to order the snapshots by their creation.
    """
    storage = storage or Storage(settings)
    stac_io = StorageStacIO(storage)
    root = Layout.from_settings(settings).catalog
    check_id(item.id, "item id", root)
    check_id(collection_id, "collection id", root)
    paths = CatalogPaths(root, collection_id, item.id)

    catalog = _load_catalog(paths.catalog, stac_io)
    collection = _load_collection(
        paths.collection, collection_id, collection_title, collection_description, stac_io
    )

    # Hierarchy in memory: catalog -> collection -> this item (other items by link only).
    catalog.links = [
        link
        for link in catalog.links
        if not (link.rel == pystac.RelType.CHILD and _same(link, paths.collection))
    ]
    _drop_links(collection, HIERARCHY_RELS)
    catalog.add_child(collection, title=collection.title)
    collection.set_self_href(_href(paths.collection))
    item = item.clone()
    _drop_links(item, HIERARCHY_RELS)
    collection.add_item(item, title=_item_title(item.to_dict(include_self_link=False)))
    item.set_self_href(_href(paths.item()))

    with _catalog_errors(paths.item(), "keep the earlier version of"):
        retire_current(paths.versions, item.properties.get("version"), storage)
    item.save_object(include_self_link=False, dest_href=_href(paths.item()), stac_io=stac_io)
    with _catalog_errors(paths.versions.snapshots, "link the versions in"):
        relink(paths.versions, versions, storage)

    others = _read_other_items(paths, storage)
    _link_items(collection, paths, others)
    documents = [item.to_dict(), *others.values()]
    collection.extent = collection_extent(documents)
    if fields is not None:
        apply_fields(collection, fields)
    describe_items(collection, documents)
    _save(collection, paths.collection, stac_io)
    _save(catalog, paths.catalog, stac_io)

    result = RegisterResult(
        item_url=http_url(paths.item(), settings),
        collection_url=http_url(paths.collection, settings),
        catalog_url=http_url(paths.catalog, settings),
    )
    emit(
        log,
        "catalog updated",
        stage="register",
        dataset=item.id,
        collection=collection_id,
        items_in_collection=len(others) + 1,
        item_url=result.item_url,
    )
    return result


def remove_item(
    item_id: str, *, collection_id: str, settings: Settings, storage: Storage | None = None
) -> bool:
    """Take ``item_id`` out of the static catalog (unpublish): delete its document, then
    rebuild the collection's item links and extent from the items that remain. Returns
    whether there was an item to remove. The collection stays, even when empty."""
    storage = storage or Storage(settings)
    stac_io = StorageStacIO(storage)
    root = Layout.from_settings(settings).catalog
    check_id(item_id, "item id", root)
    check_id(collection_id, "collection id", root)
    paths = CatalogPaths(root, collection_id, item_id)
    if not _exists(paths.item(), storage):
        return False
    with _catalog_errors(paths.item(), "delete"):
        storage.delete([paths.item()])
        remove_all(paths.versions, storage)
    if not _exists(paths.collection, storage):
        return True
    collection = _read_object(paths.collection, stac_io, pystac.Collection)
    _drop_links(collection, [pystac.RelType.ITEM])
    others = _read_other_items(paths, storage)
    _link_items(collection, paths, others)
    if others:
        collection.extent = collection_extent(others.values())
    describe_items(collection, list(others.values()))
    _save(collection, paths.collection, stac_io)
    emit(
        log,
        "item removed",
        stage="unpublish",
        dataset=item_id,
        collection=collection_id,
        items_in_collection=len(others),
    )
    return True


def withdraw_versions(
    item_id: str,
    *,
    collection_id: str,
    drop: Sequence[str],
    versions: Sequence[str],
    settings: Settings,
    storage: Storage | None = None,
) -> list[str]:
    """Versions leave the catalog (unpublished, or their stores pruned): their snapshots are
    removed and the version links of the item and the remaining snapshots rewritten;
    ``versions`` is the published versions that remain, in publication order. Returns the
    versions still linked, oldest first."""
    storage = storage or Storage(settings)
    root = Layout.from_settings(settings).catalog
    check_id(item_id, "item id", root)
    check_id(collection_id, "collection id", root)
    paths = CatalogPaths(root, collection_id, item_id)
    with _catalog_errors(paths.versions.snapshots, "link the versions in"):
        return relink(paths.versions, versions, storage, drop=drop)


MAX_TEMPLATE_BYTES = 1024 * 1024


def load_collection_template(
    collection_id: str, settings: Settings, storage: Storage | None = None
) -> dict[str, Any]:
    """The collection template's fields for one collection (PIPELINE_STAC_COLLECTION_TEMPLATE:
    inline JSON or the location of a JSON document); empty when unset."""
    text = settings.stac_collection_template.strip()
    if not text:
        return {}
    origin = "PIPELINE_STAC_COLLECTION_TEMPLATE"
    if not text.startswith("{"):
        location = parse_location(text, settings, what="STAC collection template")
        with _catalog_errors(location, "read"):
            raw = (storage or Storage(settings)).read(location)
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise BadRequest(f"The STAC collection template {location.url} is too large.")
        text, origin = raw.decode("utf-8", "replace"), location.url
    try:
        template = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The STAC collection template ({origin}) is not valid JSON: {exc}.",
            remedy="Correct PIPELINE_STAC_COLLECTION_TEMPLATE (docs/stac.md).",
        ) from None
    return template_for(template, collection_id)


def _save(stac_object: pystac.Catalog, location: Location, stac_io: StorageStacIO) -> None:
    """Write a catalog or collection with its ``self`` link first: absolute, in the scheme
    of the catalog's other links to what the pipeline wrote (PIPELINE_CATALOG_URL when the
    local catalog is served, its https URL in blob storage, else its file:// URL), as
    stac-check and the STAC best practices ask of catalogs and collections. Its other
    links stay relative, so the catalog still reads wherever it is copied."""
    document = stac_object.to_dict(include_self_link=False)
    self_link = {
        "rel": "self",
        "href": public_catalog_url(location, stac_io.storage.settings),
        "type": pystac.MediaType.JSON,
    }
    document["links"] = [self_link, *document.get("links", [])]
    stac_io.save_json(_href(location), document)


def _item_title(document: Mapping[str, Any]) -> str:
    """An item link's title (stac-check asks every link of a collection for one)."""
    properties = document.get("properties") or {}
    title = properties.get("title")
    name = str(document.get("id"))
    return f"{name}: {title}" if title else name


def _link_items(
    collection: pystac.Collection, paths: CatalogPaths, others: Mapping[str, Any]
) -> None:
    """Link the collection to the other item documents found below it, in a stable order."""
    for other_id in sorted(others):
        collection.add_link(
            pystac.Link(
                pystac.RelType.ITEM,
                _href(paths.item(other_id)),
                media_type=pystac.MediaType.GEOJSON,
                title=_item_title(others[other_id]),
            )
        )
    collection.links.sort(key=_link_order)


def _drop_links(stac_object: pystac.STACObject, rels: Iterable[str]) -> None:
    """Remove links of these relations (they are set again from the catalog layout)."""
    drop = set(rels)
    stac_object.links = [link for link in stac_object.links if str(link.rel) not in drop]


def _same(link: pystac.Link, location: Location) -> bool:
    try:
        return link.get_absolute_href() in (location.path, location.url)
    except Exception:
        return False


def _link_order(link: pystac.Link) -> tuple[int, str]:
    order: dict[str, int] = {
        pystac.RelType.ROOT: 0,
        pystac.RelType.PARENT: 1,
        pystac.RelType.ITEM: 3,
    }
    return order.get(str(link.rel), 2), (link.get_href(transform_href=False) or "")


def _load_catalog(location: Location, stac_io: StorageStacIO) -> pystac.Catalog:
    if not _exists(location, stac_io.storage):
        catalog = new_catalog()
    else:
        catalog = _read_object(location, stac_io, pystac.Catalog)
        if type(catalog) is not pystac.Catalog:
            raise CatalogError(
                f"{location.url} is a STAC {type(catalog).__name__}, not a Catalog.",
                remedy="Point PIPELINE_CATALOG at a folder for this pipeline's own catalog.",
            )
    catalog.catalog_type = pystac.CatalogType.SELF_CONTAINED
    catalog.set_self_href(_href(location))
    catalog.set_root(catalog)
    return catalog


def _load_collection(
    location: Location,
    collection_id: str,
    title: str | None,
    description: str | None,
    stac_io: StorageStacIO,
) -> pystac.Collection:
    if not _exists(location, stac_io.storage):
        return new_collection(collection_id, title, description)
    collection = _read_object(location, stac_io, pystac.Collection)
    if collection.id != collection_id:
        raise CatalogError(
            f"{location.url} holds the collection {collection.id!r}, not {collection_id!r}.",
            remedy="Move or remove that folder; the catalog layout is {catalog}/{collection id}/.",
        )
    if title:
        collection.title = title
    if description:
        collection.description = description
    return collection


def _read_object[T: pystac.Catalog](location: Location, stac_io: StorageStacIO, kind: type[T]) -> T:
    try:
        return kind.from_file(_href(location), stac_io=stac_io)
    except (CatalogError, StorageUnavailable):
        raise
    except Exception as exc:
        raise CatalogError(
            f"{location.url} is not a readable STAC {kind.__name__}: {type(exc).__name__}: {exc}",
            remedy="Repair or remove the file; the pipeline recreates it when it is missing.",
        ) from exc


def _exists(location: Location, storage: Storage) -> bool:
    with _catalog_errors(location, "check"):
        return storage.exists(location)


def _read_other_items(paths: CatalogPaths, storage: Storage) -> dict[str, dict[str, Any]]:
    """Every item document below the collection except ``paths.item_id``, by id."""
    folder = paths.collection_folder
    with _catalog_errors(folder, "list"):
        listed = storage.list(folder, ("*.json",))
    prefix = folder.url.rstrip("/") + "/"
    found: dict[str, Location] = {}
    for info in listed:
        parts = info.url[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == f"{parts[0]}.json" and parts[0] != paths.item_id:
            found[parts[0]] = paths.item(parts[0])

    def read(location: Location) -> dict[str, Any]:
        with _catalog_errors(location, "read"):
            document = storage.read_json(location)
        if not isinstance(document, dict) or document.get("type") != "Feature":
            raise CatalogError(
                f"{location.url} is not a STAC item.",
                remedy="Repair or remove it; every {item}/{item}.json below a collection is "
                "listed in that collection.",
            )
        return document

    with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
        documents = list(pool.map(read, found.values()))
    return dict(zip(found, documents, strict=True))
