"""A dataset's versions in the catalog, as the STAC version extension (v1.2.0) links them.

The item is the current version. Every earlier version that is still published keeps the
item document it had when it was current, as a snapshot beside the item::

    {catalog}/{collection}/{item}/{item}.json                 the current version
    {catalog}/{collection}/{item}/versions/{version}.json     an earlier published version

A snapshot is the same item (same id; ``version`` says which) with ``deprecated: true``; the
collection does not list it (no ``item`` link), so a crawler or a search sees one item per
dataset, and a reader that holds one version walks to the others by its links:

    latest-version        every document -> the item (the item links itself)
    predecessor-version   the version published before this one (in publication order)
    successor-version     the version published after this one

The order is the publication order of the ledger (shared.catalog.ledger, versions.json),
given by the caller as ``history``; only versions that have a document are linked. When a
version is unpublished its snapshot is removed (it is withdrawn: its store awaits its
cleanup, and readers must not be led to it), and when unpublishing restores an earlier
version, that version's snapshot becomes the item again. Pruned versions lose their
snapshots the same way. pystac and Storage only: the release operations import this when
the Function App loads.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from shared.io.storage import Storage
from shared.model.errors import SourceNotFound
from shared.model.locations import Location

VERSIONS_FOLDER = "versions"
LATEST, PREDECESSOR, SUCCESSOR = "latest-version", "predecessor-version", "successor-version"
VERSION_RELS = (LATEST, PREDECESSOR, SUCCESSOR)
GEOJSON = "application/geo+json"


class VersionPaths:
    """Where one dataset's item and its snapshots are."""

    def __init__(self, item_folder: Location, item_id: str) -> None:
        self.item_id = item_id
        self.folder = item_folder
        self.item = item_folder.join(f"{item_id}.json")
        self.snapshots = item_folder.join(VERSIONS_FOLDER)

    def snapshot(self, version: str) -> Location:
        return self.snapshots.join(f"{version}.json")


def _read(location: Location, storage: Storage) -> dict[str, Any] | None:
    try:
        document = storage.read_json(location)
    except SourceNotFound:
        return None
    return document if isinstance(document, dict) else None


def _version_of(document: dict[str, Any] | None) -> str | None:
    value = (document or {}).get("properties", {}).get("version")
    return str(value) if value else None


def _deeper(href: str) -> str:
    """A relative href of the item's folder, as seen from its versions/ folder."""
    if href.startswith(("./", "../")):
        return posixpath.normpath(posixpath.join("..", href))
    return href


def _renamed(assets: dict[str, Any], before: str, after: str) -> dict[str, Any]:
    """The assets with their ``vrt:hrefs`` to the document's own assets (``./{file}#...``)
    following the document to its new file name."""
    own = f"./{before}#"
    renamed: dict[str, Any] = {}
    for key, asset in assets.items():
        refs = asset.get("vrt:hrefs") if isinstance(asset, dict) else None
        if isinstance(refs, list):
            asset = {**asset, "vrt:hrefs": [
                {**ref, "href": f"./{after}#" + ref["href"][len(own):]}
                if isinstance(ref, dict) and str(ref.get("href", "")).startswith(own) else ref
                for ref in refs
            ]}  # fmt: skip
        renamed[key] = asset
    return renamed


def retire_current(paths: VersionPaths, new_version: str | None, storage: Storage) -> None:
    """Before the item is replaced by ``new_version``: keep the version it shows now as a
    snapshot (when it is another version), and drop ``new_version``'s own snapshot, if any
    (it is restored: the item shows it again)."""
    current = _read(paths.item, storage)
    old = _version_of(current)
    if current is not None and old and old != new_version:
        snapshot = dict(current)
        snapshot["links"] = [
            {**link, "href": _deeper(str(link.get("href", "")))}
            for link in current.get("links", [])
            if link.get("rel") not in VERSION_RELS
        ]
        snapshot["assets"] = _renamed(current.get("assets") or {}, f"{paths.item_id}.json",
                                      f"{old}.json")  # fmt: skip
        storage.write_json(paths.snapshot(old), snapshot)
    if new_version and storage.exists(paths.snapshot(new_version)):
        storage.delete([paths.snapshot(new_version)])


def snapshot_versions(paths: VersionPaths, storage: Storage) -> list[str]:
    """The versions that have a snapshot beside the item."""
    prefix = paths.snapshots.url.rstrip("/") + "/"
    names = [info.url[len(prefix) :] for info in storage.list(paths.snapshots, ("*.json",))]
    return sorted(name.removesuffix(".json") for name in names if "/" not in name)


def relink(
    paths: VersionPaths,
    history: Sequence[str] | None,
    storage: Storage,
    *,
    drop: Sequence[str] = (),
) -> list[str]:
    """Remove the snapshots of ``drop`` (and, with a ``history``, of any version not in it:
    unpublished or pruned), then write the version links of the item and every snapshot.
    ``history``: the published versions in publication order, oldest first; None orders
    the snapshots by when they were created and drops nothing else. Returns the chain."""
    current_document = _read(paths.item, storage)
    current = _version_of(current_document)
    snapshots = snapshot_versions(paths, storage)
    doomed = [v for v in snapshots if v in drop or (history is not None and v not in history)]
    doomed += [v for v in snapshots if v == current]  # the item shows it
    if doomed:
        storage.delete([paths.snapshot(v) for v in sorted(set(doomed))])
    kept = [v for v in snapshots if v not in doomed]
    documents = {v: _read(paths.snapshot(v), storage) or {} for v in kept}
    if history is None:
        kept.sort(key=lambda v: (str(documents[v].get("properties", {}).get("created")), v))
        chain = list(kept)
    else:
        chain = [v for v in history if v in kept]
    if current is not None and current_document is not None:
        chain = [v for v in chain if v != current]
        order = list(history or [])
        if current in order:  # restored: back in its place
            earlier = set(order[: order.index(current)])
            chain.insert(sum(1 for v in chain if v in earlier), current)
        else:  # new: not in the ledger yet
            chain.append(current)
        documents[current] = current_document
    for version in chain:
        document = documents[version]
        changed = _set_links(document, version, chain, current, paths.item_id)
        if changed:
            target = paths.item if version == current else paths.snapshot(version)
            storage.write_json(target, document)
    return chain


def _set_links(
    document: dict[str, Any], version: str, chain: list[str], current: str | None, item_id: str
) -> bool:
    """Put the version links (and ``deprecated`` on a snapshot) on one document; whether
    anything changed."""
    is_item = version == current

    def href(other: str) -> str:
        if other == current:
            return f"./{item_id}.json" if is_item else f"../{item_id}.json"
        return f"./{VERSIONS_FOLDER}/{other}.json" if is_item else f"./{other}.json"

    position = chain.index(version)
    wanted: list[dict[str, Any]] = []
    if current is not None:
        wanted.append(_link(LATEST, href(current), f"Latest version ({current})"))
    if position > 0:
        earlier = chain[position - 1]
        wanted.append(_link(PREDECESSOR, href(earlier), f"Previous version ({earlier})"))
    if position < len(chain) - 1:
        later = chain[position + 1]
        wanted.append(_link(SUCCESSOR, href(later), f"Next version ({later})"))
    links = [link for link in document.get("links", []) if link.get("rel") not in VERSION_RELS]
    before = (document.get("links"), document.get("properties", {}).get("deprecated"))
    document["links"] = links + wanted
    properties = document.setdefault("properties", {})
    if is_item:
        properties.pop("deprecated", None)
    else:
        properties["deprecated"] = True
    return before != (document["links"], properties.get("deprecated"))


def _link(rel: str, href: str, title: str) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": GEOJSON, "title": title}


def remove_all(paths: VersionPaths, storage: Storage) -> None:
    """The item left the catalog: its snapshots go with it."""
    storage.delete_prefix(paths.snapshots)
