"""Offline validation of STAC documents against the released schemas, unmodified.

Every schema a document reaches (STAC 1.1.0 core, GeoJSON, each declared extension, the
PROJJSON schema the datacube extension refers to) is a file stored under tests/schemas,
byte for byte as released (tests/schemas/README.md says where each comes from), named by
the URL it stands for in tests/schemas/schema-config.json. Three judges read that one map:

- ``validation_errors``: jsonschema's Draft 7 validator with its format checker on
  (``date-time``, ``iri``, ``iri-reference``, ``uri``, ``uri-reference`` asserted, not
  just annotated: a datetime of 2026-13-45T99:00:00Z or an href that is no IRI fails);
  the format libraries (jsonschema[format-nongpl]) must be installed, or this module
  refuses to validate instead of passing silently.
- ``stac_validator_errors``: stac-validator (the ``stac_validator`` module of the pinned
  ``stac-valid`` distribution, the PyPI name stac-validator moved to with 4.1.1) with
  this file as its ``schema_config``.
- ``stac_check_findings``: stac-check's Linter. It has no schema-map option, so the
  schema URLs it fetches are answered with the same stored files by requests-mock.

Both tools run under requests-mock with no other address registered: any request
that is not one of the stored schemas fails the run (no network, ever).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"
SCHEMA_CONFIG = SCHEMAS / "schema-config.json"
CORE_URL = "https://schemas.stacspec.org/v1.1.0/{kind}-spec/json-schema/{kind}.json"
KINDS = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}
# The formats the stored schemas use; each must be checked, not merely annotated.
ASSERTED_FORMATS = ("date-time", "iri", "iri-reference", "uri", "uri-reference")


def schema_map() -> dict[str, Path]:
    """Schema URL -> the stored file that stands for it (tests/schemas/schema-config.json)."""
    config = json.loads(SCHEMA_CONFIG.read_text())
    return {url: SCHEMAS / path for url, path in config["schemas"].items()}


@cache
def _registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    documents = {url: json.loads(path.read_text()) for url, path in schema_map().items()}
    return Registry().with_resources(
        (url, Resource.from_contents(doc, default_specification=DRAFT7))
        for url, doc in documents.items()
    )


@cache
def format_checker() -> Any:
    """Draft 7's format checker, refusing to run without a checker for every format the
    stored schemas use (jsonschema skips a format whose library is missing)."""
    from jsonschema import Draft7Validator

    checker = Draft7Validator.FORMAT_CHECKER
    missing = [name for name in ASSERTED_FORMATS if name not in checker.checkers]
    if missing:
        raise RuntimeError(
            f"jsonschema cannot check the formats {missing}: install the pinned "
            "jsonschema[format-nongpl] libraries (requirements-dev.txt)."
        )
    return checker


def _validator(url: str) -> Any:
    from jsonschema import Draft7Validator

    registry = _registry()
    return Draft7Validator(
        registry.contents(url), registry=registry, format_checker=format_checker()
    )


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


@contextmanager
def stored_schemas_only() -> Iterator[None]:
    """Requests (the transport of both tools) answered from the stored schemas only; any
    other address raises requests_mock's NoMockAddress."""
    import requests_mock

    with requests_mock.Mocker(real_http=False) as mocker:
        for url, path in schema_map().items():
            mocker.get(url, text=path.read_text())
        yield


def stac_validator_errors(path: Path) -> list[dict[str, Any]]:
    """stac-validator's messages for one document that say it is not valid (empty: valid)."""
    with _quiet_deprecation():
        from stac_validator.validate import StacValidate

    with stored_schemas_only():
        validator = StacValidate(str(path), schema_config=str(SCHEMA_CONFIG))
        valid = validator.run()
    failed = [m for m in validator.message if not m.get("valid_stac")]
    return failed if failed or not valid else []


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():  # "the PyPI package has moved" (stac_validator import)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def stac_check_findings(path: Path) -> dict[str, Any]:
    """What stac-check says of one document: ``valid`` (its validation), ``error`` (the
    message when not valid), ``best_practices`` (its best-practice findings by check) and
    ``geometry`` (its geometry findings)."""
    with _quiet_deprecation():
        from stac_check.lint import Linter

    with stored_schemas_only():
        linter = Linter(str(path))
    return {
        "valid": linter.valid_stac is True,
        "error": f"{linter.error_type}: {linter.error_msg}" if linter.error_type else "",
        "best_practices": linter.create_best_practices_dict(),
        "geometry": [line for line in linter.geometry_errors_msg if line.strip()][1:],
    }
