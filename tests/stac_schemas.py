"""Offline validation of STAC documents: the core schemas pystac ships (STAC 1.1.0) and the
released schema of every extension a document declares, stored in tests/schemas (see its
README), resolved through a ``referencing`` registry only: no network, ever."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"
EXTENSIONS_BASE = "https://stac-extensions.github.io/"
# The datacube schema's reference_system may be a PROJJSON object, which it names by the
# PROJ schema v0.4 URL; that schema is not stored here: the one pyproj ships stands in
# (our items give EPSG codes, so only its resolution matters, not its version).
PROJJSON_URL = "https://proj.org/schemas/v0.4/projjson.schema.json"
# Known defects of released schemas, corrected in memory (the stored files stay verbatim):
# virtual-assets v1.0.0 gives a vrt:hrefs href as oneOf [iri-reference, "^#.*$"], so the
# fragment-only form its own README and examples use ("#/assets/B04") matches both and
# fails; anyOf is what the README describes.
VIRTUAL_ASSETS_URL = "https://stac-extensions.github.io/virtual-assets/v1.0.0/schema.json"
CORE_URL = "https://schemas.stacspec.org/v1.1.0/{kind}-spec/json-schema/{kind}.json"
KINDS = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}


def stored_extensions() -> dict[str, Path]:
    """Extension schema URL -> stored file: tests/schemas/<name>/<version>/<path>."""
    return {
        EXTENSIONS_BASE + path.relative_to(SCHEMAS).as_posix(): path
        for path in sorted(SCHEMAS.glob("*/v*/**/*.json"))
    }


@cache
def _registry() -> Any:
    import pyproj
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    def resource(contents: dict[str, Any]) -> Resource:
        return Resource.from_contents(contents, default_specification=DRAFT7)

    documents: dict[str, dict[str, Any]] = dict(get_local_schema_cache())
    for url, path in stored_extensions().items():
        documents[url] = json.loads(path.read_text())
    vrt_href = documents[VIRTUAL_ASSETS_URL]["definitions"]["fields"]["properties"]["vrt:hrefs"]
    href = vrt_href["items"]["properties"]["href"]
    href["anyOf"] = href.pop("oneOf")
    projjson = Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"
    documents[PROJJSON_URL] = json.loads(projjson.read_text())
    return Registry().with_resources((url, resource(doc)) for url, doc in documents.items())


def _validator(url: str) -> Any:
    from jsonschema import Draft7Validator

    registry = _registry()
    return Draft7Validator(registry.contents(url), registry=registry)


def schema_urls(document: dict[str, Any]) -> list[str]:
    """The core schema of the document's type and every extension schema it declares."""
    kind = KINDS[document["type"]]
    return [CORE_URL.format(kind=kind), *document.get("stac_extensions", [])]


def validation_errors(document: dict[str, Any]) -> dict[str, list[str]]:
    """Schema URL -> what fails against it (empty when the document is valid). A declared
    extension with no stored schema is an error of its own."""
    registry = _registry()
    errors: dict[str, list[str]] = {}
    for url in schema_urls(document):
        try:
            registry.contents(url)
        except Exception:
            errors[url] = ["no stored schema for this extension (add it to tests/schemas)"]
            continue
        found = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(url).iter_errors(document)
        ]
        if found:
            errors[url] = found
    return errors
