r"""What a collection says, pure: the fields a catalog operator expects (title, description,
license and its link, providers, keywords) and those derived from its items (summaries,
item_assets, collection-level datacube fields). No storage.

The fields the pipeline cannot infer come from the collection template
(``PIPELINE_STAC_COLLECTION_TEMPLATE``, read by ``shared.catalog.stac.catalog``): a JSON
object whose top-level fields apply to every collection, and whose ``collections`` object
holds fields for one collection by id, which win::

    {"license": "CC-BY-4.0",
     "providers": [{"name": "Example Agency", "roles": ["host"], "url": "https://example.org"}],
     "keywords": ["climate"],
     "collections": {"tas": {"title": "Daily air temperature", "description": "..."}}}

Fields: ``title``, ``description``, ``license`` (an SPDX id, or ``other`` with
``license_href``: the URL of the license text), ``providers`` (STAC provider objects) and
``keywords``. What the template does not give comes from the data's global attributes
(ACDD: ``title``, ``summary`` or ``comment``, ``institution`` as the producer with
``creator_url`` or ``institution_url`` as its url, ``keywords``, else the data variables' CF
``standard_name``\s), and the license from the data's ``license`` attribute, then from the
settings (``PIPELINE_STAC_LICENSE``): shared.catalog.stac.licenses, which warns when none
names one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pystac
from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable

from shared.catalog.stac.assets import (
    STORAGE_EXTENSION,
    VIRTUAL_ASSETS_EXTENSION,
    XARRAY_ASSETS_EXTENSION,
    vrt_href,
)
from shared.catalog.stac.licenses import SPDX_LIKE, ResolvedLicense, resolve_license
from shared.model.errors import BadRequest

THUMBNAIL_ASSET_KEY = "thumbnail"
PNG = "image/png"

COLLECTION_DOCUMENT = "collection.json"  # its file name in the static catalog
TEMPLATE_FIELDS = ("title", "description", "license", "license_href", "providers", "keywords")
# Asset fields that describe every item's asset of that key (item_assets), not one item's.
# Not the zarr: fields: the zarr extension v1.0.0 schema, once declared on a collection,
# requires collection assets carrying them (the items say them).
_ITEM_ASSET_FIELDS = ("type", "roles")
ITEM_ASSET_TITLES = {
    "data": "Virtual Zarr store",
    "sources": "Source NetCDF/HDF5 files",
    "thumbnail": "Preview of one time step",
}
LATEST_VERSION_ROLE = "latest-version"


@dataclass(frozen=True)
class CollectionFields:
    """The operator-facing fields of one collection, resolved from template, data, settings."""

    title: str | None = None
    description: str | None = None
    license: ResolvedLicense = field(default_factory=lambda: resolve_license({}, {}))
    providers: list[dict[str, Any]] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)


def template_for(template: Mapping[str, Any] | None, collection_id: str) -> dict[str, Any]:
    """The template's fields for one collection: the defaults, then its own (which win)."""
    if not template:
        return {}
    if not isinstance(template, Mapping):
        raise BadRequest("The STAC collection template must be a JSON object.")
    own = (template.get("collections") or {}).get(collection_id) or {}
    fields = {k: v for k, v in template.items() if k in TEMPLATE_FIELDS}
    fields.update({k: v for k, v in own.items() if k in TEMPLATE_FIELDS})
    _check_template(fields, collection_id)
    return fields


def _check_template(fields: Mapping[str, Any], collection_id: str) -> None:
    where = f"The STAC collection template (collection {collection_id!r})"
    for key in ("title", "description", "license", "license_href"):
        if key in fields and not isinstance(fields[key], str):
            raise BadRequest(f"{where} has a {key} that is not a string.")
    if "license" in fields and not SPDX_LIKE.fullmatch(fields["license"]):
        raise BadRequest(
            f"{where} has the license {fields['license']!r}: give an SPDX id (CC-BY-4.0) or "
            "'other' with license_href."
        )
    keywords = fields.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise BadRequest(f"{where} has keywords that are not a list of strings.")
    providers = fields.get("providers", [])
    if not isinstance(providers, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in providers
    ):
        raise BadRequest(f"{where} has providers that are not a list of objects with a name.")


def collection_fields(
    template: Mapping[str, Any],
    attrs: Mapping[str, Any],
    default_license: str = "",
    variables: Mapping[str, Mapping[str, Any]] | None = None,
) -> CollectionFields:
    """Resolve each field: the collection template, then the data's global attributes
    (``variables``: the data variables' attributes, whose CF standard names are the
    keywords when nothing else gives any), then the settings' license
    (shared.catalog.stac.licenses says when no license is known)."""
    providers = list(template.get("providers") or [])
    producer = _text(attrs.get("institution")) or _text(attrs.get("creator_institution"))
    if not providers and producer:
        provider: dict[str, Any] = {"name": producer, "roles": ["producer"]}
        url = next((u for u in (_text(attrs.get(k)) for k in PROVIDER_URLS) if _is_url(u)), None)
        if url:
            provider["url"] = url
        providers = [provider]
    keywords = (
        list(template.get("keywords") or [])
        or _keywords(attrs.get("keywords"))
        or _standard_names(variables or {})
    )
    return CollectionFields(
        title=template.get("title") or _text(attrs.get("title")),
        description=template.get("description")
        or _text(attrs.get("summary"))
        or _text(attrs.get("comment")),
        license=resolve_license(template, attrs, default_license),
        providers=providers,
        keywords=keywords,
    )


# ACDD attributes that give the producer's web page, in order of preference.
PROVIDER_URLS = ("creator_url", "institution_url", "publisher_url")


def _is_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("https://", "http://"))


def _standard_names(variables: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The data variables' CF standard names, as keywords a search finds them by."""
    names = (_text(attrs.get("standard_name")) for attrs in variables.values())
    return list(dict.fromkeys(n for n in names if n))


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _keywords(value: Any) -> list[str]:
    """ACDD keywords: a comma-separated list (GCMD paths keep their '>' separators)."""
    text = _text(value)
    if not text:
        return []
    return list(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))


def apply_fields(collection: pystac.Collection, fields: CollectionFields) -> None:
    """Put the operator-facing fields on the collection (a field not resolved stays)."""
    if fields.title:
        collection.title = fields.title
    if fields.description:
        collection.description = fields.description
    collection.license = fields.license.license
    collection.links = [link for link in collection.links if link.rel != "license"]
    for link in fields.license.links:
        collection.add_link(pystac.Link("license", link.href, link.media_type, link.title))
    if fields.providers:
        collection.providers = [pystac.Provider.from_dict(p) for p in fields.providers]
    if fields.keywords:
        collection.keywords = list(fields.keywords)


def describe_items(collection: pystac.Collection, items: Sequence[Mapping[str, Any]]) -> None:
    """What the collection says of its items (item dicts as written): summaries, the
    item_assets every item has, and the datacube dimensions and variables they share."""
    collection.summaries = pystac.Summaries(_summaries(items))
    collection.item_assets = {
        key: pystac.ItemAssetDefinition.create(
            title=ITEM_ASSET_TITLES.get(key),
            description=None,
            media_type=fields.get("type"),
            roles=fields.get("roles"),
        )
        for key, fields in _item_assets(items).items()
    }
    collection.assets = {}
    _show_newest_thumbnail(collection, items)
    _show_stores(collection, items)
    dimensions, variables = _cube(items)
    cube = DatacubeExtension.ext(collection, add_if_missing=bool(dimensions))
    if dimensions:
        cube.apply(
            dimensions={k: Dimension.from_dict(v) for k, v in dimensions.items()},
            variables={k: Variable(v) for k, v in variables.items()},
        )
    else:
        for key in ("cube:dimensions", "cube:variables"):
            collection.extra_fields.pop(key, None)


def _show_newest_thumbnail(
    collection: pystac.Collection, items: Sequence[Mapping[str, Any]]
) -> None:
    """The collection's ``thumbnail`` asset and ``preview`` link (STAC best practices): the
    thumbnail of the item registered last; none when no item has one."""
    collection.links = [link for link in collection.links if link.rel != "preview"]
    shown = [i for i in items if THUMBNAIL_ASSET_KEY in (i.get("assets") or {})]
    if not shown:
        return
    newest = max(shown, key=lambda i: (str(_props(i).get("updated") or ""), str(i.get("id"))))
    thumbnail = pystac.Asset.from_dict(newest["assets"][THUMBNAIL_ASSET_KEY])
    if thumbnail.title:  # "Preview: <what>" -> "Preview of <dataset>: <what>"
        what = thumbnail.title.removeprefix("Preview: ")
        thumbnail.title = f"Preview of {newest.get('id')}: {what}"
    collection.add_asset(THUMBNAIL_ASSET_KEY, thumbnail)
    collection.add_link(pystac.Link("preview", thumbnail.href, PNG, thumbnail.title))


def _show_stores(collection: pystac.Collection, items: Sequence[Mapping[str, Any]]) -> None:
    """Each item's store as a collection asset too, as the Planetary Computer publishes
    kerchunk references (NEX-GDDP-CMIP6: one ``references`` asset per model and scenario)
    and VEDA virtual Icechunk stores (xpystac reads both): keyed ``{dataset}@{version}`` (a
    collection holds several datasets; '@' is in no dataset id, so no key collides), roles
    with ``latest-version``, its source files as the asset ``{dataset}@sources`` that its
    ``vrt:hrefs`` names, and the items' storage schemes on the collection. The zarr fields
    stay on the item: the zarr extension v1.0.0, declared on a collection, requires them on
    every collection asset (the thumbnail and the sources have none)."""
    schemes: dict[str, Any] = {}
    for item in sorted(items, key=lambda i: str(i.get("id"))):
        assets = item.get("assets") or {}
        data, sources = assets.get("data"), assets.get("sources")
        if not data or not sources:
            continue
        dataset, version = str(item.get("id")), str(_props(item).get("version") or "current")
        sources_key = f"{dataset}@sources"
        store = {k: v for k, v in data.items() if not k.startswith("zarr:")}
        store["title"] = f"{dataset}: virtual Zarr store, version {version}"
        store["roles"] = [*data.get("roles", []), LATEST_VERSION_ROLE]
        store["vrt:hrefs"] = [
            {"key": sources_key, "href": vrt_href(COLLECTION_DOCUMENT, sources_key)}
        ]
        collection.add_asset(f"{dataset}@{version}", pystac.Asset.from_dict(store))
        collection.add_asset(sources_key, pystac.Asset.from_dict(dict(sources)))
        schemes.update(_props(item).get("storage:schemes") or {})
    managed = (STORAGE_EXTENSION, VIRTUAL_ASSETS_EXTENSION, XARRAY_ASSETS_EXTENSION)
    collection.stac_extensions = [e for e in collection.stac_extensions if e not in managed]
    collection.extra_fields.pop("storage:schemes", None)
    if any(LATEST_VERSION_ROLE in (a.roles or []) for a in collection.assets.values()):
        collection.stac_extensions.append(VIRTUAL_ASSETS_EXTENSION)
    if any(k.startswith("xarray:") for a in collection.assets.values() for k in a.extra_fields):
        collection.stac_extensions.append(XARRAY_ASSETS_EXTENSION)
    if schemes:
        collection.extra_fields["storage:schemes"] = schemes
        collection.stac_extensions.append(STORAGE_EXTENSION)


def _summaries(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summaries of the item properties a user filters on: the versions and the variables."""
    summaries: dict[str, Any] = {}
    versions = sorted({str(i["properties"]["version"]) for i in items if _props(i).get("version")})
    if versions:
        summaries["version"] = versions
    created = sorted(str(_props(i)["created"]) for i in items if _props(i).get("created"))
    if created:
        summaries["created"] = {"minimum": created[0], "maximum": created[-1]}
    return summaries


def _props(item: Mapping[str, Any]) -> Mapping[str, Any]:
    return item.get("properties") or {}


def _item_assets(items: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per asset key, the fields that are the same in every item that has that asset."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        for key, asset in (item.get("assets") or {}).items():
            fields = {k: asset[k] for k in _ITEM_ASSET_FIELDS if k in asset}
            if key not in found:
                found[key] = fields
            else:
                found[key] = {k: v for k, v in found[key].items() if fields.get(k) == v}
    return found


def _cube(
    items: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The items' datacube dimensions (extents widened to cover every item, a step or list
    of values kept only where all agree) and variables (without the per-item shape)."""
    dimensions: dict[str, dict[str, Any]] = {}
    variables: dict[str, dict[str, Any]] = {}
    for item in items:
        for name, dim in (_props(item).get("cube:dimensions") or {}).items():
            dimensions[name] = _merge_dimension(dimensions.get(name), dim)
        for name, var in (_props(item).get("cube:variables") or {}).items():
            variables.setdefault(name, {k: v for k, v in var.items() if k != "shape"})
    return dimensions, variables


def _merge_dimension(known: dict[str, Any] | None, dim: Mapping[str, Any]) -> dict[str, Any]:
    if known is None:
        return dict(dim)
    merged = dict(known)
    extent, other = known.get("extent"), dim.get("extent")
    if extent and other and len(extent) == 2 and len(other) == 2:
        merged["extent"] = [_lowest((extent[0], other[0])), _highest((extent[1], other[1]))]
    for key in ("step", "values"):
        if key in merged and merged[key] != dim.get(key):
            del merged[key]
    return merged


def _lowest(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _highest(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None
