"""The HTTP API described in OpenAPI 3.1 (served at GET /api/openapi.json by api/page.py).

One operation per HTTP function of the app: its path is the function's route below /api, its
operationId the function's name (tests/test_openapi.py holds the two to each other, through
the Functions worker's own index of the app, and validates the document against the
OpenAPI 3.1 schema as published). Pure data: no I/O.
"""

from __future__ import annotations

from typing import Any

from shared.model.request import FORMATS, MAX_PATTERNS, OPTIONS, STATIC_DIFFERS

OPENAPI_VERSION = "3.1.1"
API_VERSION = "1"

ID_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$"
INSTANCE_PATTERN = r"^(pipeline|watch|release)-[a-z0-9][a-z0-9._-]{0,62}$"
VERSION_PATTERN = r"^[0-9a-f]{16}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, "Error")


def _path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}  # fmt: skip


INSTANCE = _path_param(
    "instance_id",
    "A run (pipeline-<dataset>), an upload watcher (watch-<dataset>) or a release operation "
    "(release-<dataset>); anything else is answered 404.",
    INSTANCE_PATTERN,
)
PIPELINE_INSTANCE = _path_param(
    "instance_id",
    "A run: pipeline-<dataset_id> (anything else is answered 404).",
    r"^pipeline-[a-z0-9][a-z0-9._-]{0,62}$",
)
DATASET = _path_param("dataset_id", "The dataset id (a malformed one is answered 404).", ID_PATTERN)
VERSION = _path_param("version", "A version id: 16 hexadecimal digits (else 404).", VERSION_PATTERN)
UNAVAILABLE = _error("Storage or the Durable runtime is unavailable: try again later.")
FAILED = _error("An unexpected error (the body names it).")


def _schemas() -> dict[str, Any]:
    string_list = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "stable, for scripts"},
                        "message": {"type": "string"},
                        "remedy": {"type": "string", "description": "what to do"},
                        "retryable": {"type": "boolean"},
                    },
                }
            },
        },
        "PipelineRequest": {
            "type": "object",
            "required": ["source", "dataset_id"],
            "additionalProperties": False,
            "properties": {
                "source": {
                    "type": "string",
                    "description": "az://container/prefix, abfs[s]://..., https://ACCOUNT."
                    "blob.core.windows.net/container/prefix (docs/security.md lists what "
                    "this deployment refuses)",
                },
                "dataset_id": {"type": "string", "pattern": ID_PATTERN},
                "concat_dim": {"type": "string", "default": "time"},
                "format": {"enum": list(FORMATS), "default": "kerchunk-json"},
                "patterns": {**string_list, "maxItems": MAX_PATTERNS},
                "collection": {"type": ["string", "null"], "pattern": ID_PATTERN},
                "options": {
                    "type": ["object", "null"],
                    "additionalProperties": False,
                    "propertyNames": {"enum": list(OPTIONS)},
                    "properties": {
                        "patterns": {**string_list, "maxItems": MAX_PATTERNS},
                        "collection": {"type": "string", "pattern": ID_PATTERN},
                        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "full": {"type": "boolean"},
                        "approval": {"type": "boolean"},
                        "group": {"type": "string"},
                        "drop_variables": string_list,
                        "static_differs": {"enum": list(STATIC_DIFFERS)},
                    },
                },
            },
        },
        "Started": {
            "type": "object",
            "required": ["instance_id", "status_url"],
            "properties": {"instance_id": {"type": "string"}, "status_url": {"type": "string"}},
        },
        "AlreadyRunning": {
            "allOf": [_ref("Error")],
            "type": "object",
            "properties": {"instance_id": {"type": "string"}, "status_url": {"type": "string"}},
        },
        "RunStatus": {
            "type": "object",
            "description": "A run's status (a watcher's or a release operation's has "
            "their own fields). Outputs (store_url, item_url, catalog_url, run_report, "
            "run_summary, gate_report_url, gate_summary_url, ...) appear as they are made.",
            "required": ["instance_id", "runtime_status"],
            "properties": {
                "instance_id": {"type": "string"},
                "dataset_id": {"type": ["string", "null"]},
                "runtime_status": {"type": ["string", "null"]},
                "phase": {"type": ["string", "null"]},
                "run_id": {"type": ["string", "null"]},
                "files": {"type": "object"},
                "batch": {"type": "object"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "url": {"type": "string"},
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "variable": {"type": "string"},
                        },
                    },
                },
                "stages": {"type": "object"},
                "approval": {"type": "object"},
                "warnings": {"type": "array"},
                "error": {"type": ["object", "null"]},
                "created": {"type": ["string", "null"]},
                "last_updated": {"type": ["string", "null"]},
            },
        },
        "Runs": {
            "type": "object",
            "required": ["days", "since", "runs", "complete"],
            "properties": {
                "days": {"type": "integer"},
                "complete": {
                    "type": "boolean",
                    "description": "false: the Durable API gave a full page; there may be more",
                },
                "note": {"type": "string"},
                "since": {"type": "string", "format": "date-time"},
                "runs": {"type": "array", "items": _ref("RunStatus")},
            },
        },
        "Decision": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "by": {"type": "string", "minLength": 1, "maxLength": 200},
                "reason": {"type": "string", "maxLength": 1000},
            },
        },
        "Decided": {
            "type": "object",
            "required": ["instance_id", "decision", "status_url"],
            "properties": {
                "instance_id": {"type": "string"},
                "decision": {"type": "object"},
                "status_url": {"type": "string"},
            },
        },
        "Version": {
            "type": "object",
            "required": ["version", "state", "current"],
            "properties": {
                "version": {"type": "string"},
                "state": {"enum": ["published", "unpublished"]},
                "current": {"type": "boolean"},
                "published": {"type": ["string", "null"]},
                "file_count": {"type": ["integer", "null"]},
                "store_url": {"type": ["string", "null"]},
                "item_url": {"type": ["string", "null"]},
                "approval": {"type": ["object", "null"]},
                "unpublished": {"type": ["object", "null"]},
            },
        },
        "Dataset": {
            "type": "object",
            "required": ["dataset_id", "current", "versions"],
            "properties": {
                "dataset_id": {"type": "string"},
                "current": {"type": ["string", "null"]},
                "versions": {"type": "array", "items": _ref("Version")},
            },
        },
        "Datasets": {
            "type": "object",
            "required": ["datasets"],
            "properties": {"datasets": {"type": "array", "items": _ref("Dataset")}},
        },
        "ReleaseResult": {"type": "object", "description": "The operation's result."},
        "ReleaseRunning": {
            "type": "object",
            "required": ["instance_id", "status_url"],
            "properties": {
                "instance_id": {"type": "string"},
                "phase": {"type": "string"},
                "status_url": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["ok"],
            "properties": {"ok": {"type": "boolean"}},
        },
    }


def _release(name: str, summary: str, body: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "tags": ["lifecycle"],
        "parameters": [DATASET, VERSION],
        "responses": {
            "200": _json("Done: the operation's result.", "ReleaseResult"),
            "202": _json("Still going after 20 s: follow status_url.", "ReleaseRunning"),
            "400": _error("A malformed body (a reason is required to unpublish)."),
            "404": _error("No such dataset or version."),
            "409": _error("Not possible in the version's state, or another operation runs."),
            "500": FAILED,
            "503": UNAVAILABLE,
        },
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref("Decision")}},
        }
    return operation


def _paths() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    decision_body = {
        "required": False,
        "content": {"application/json": {"schema": _ref("Decision")}},
    }
    decided = {
        "202": _json("Recorded; the run goes on (publishes, or ends rejected).", "Decided"),
        "400": _error("A malformed body, no 'by' and no signed-in principal, or no reason."),
        "404": _error("No such run."),
        "409": _error("Decided before, or the run is not waiting for a decision."),
        "500": FAILED,
        "503": UNAVAILABLE,
    }
    return {
        "/pipelines": {
            "post": {
                "operationId": "start_pipeline",
                "summary": "Start a run of a dataset",
                "tags": ["runs"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PipelineRequest")}},
                },
                "responses": {
                    "202": {
                        **_json("Started: follow status_url.", "Started"),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "400": _error("A malformed body or field, or a refused source."),
                    "409": _json("The dataset already has a run in progress.", "AlreadyRunning"),
                },
            }
        },
        "/pipelines/{instance_id}": {
            "get": {
                "operationId": "pipeline_status",
                "summary": "A run's (or a watcher's, or a release operation's) status",
                "tags": ["runs"],
                "parameters": [INSTANCE],
                "responses": {
                    "200": _json("Its status.", "RunStatus"),
                    "404": _error("No such instance."),
                },
            }
        },
        "/pipelines/{instance_id}/approve": {
            "post": {
                "operationId": "approve_pipeline",
                "summary": "Approve a run waiting for a decision: it publishes",
                "tags": ["lifecycle"],
                "parameters": [PIPELINE_INSTANCE],
                "requestBody": decision_body,
                "responses": decided,
            }
        },
        "/pipelines/{instance_id}/reject": {
            "post": {
                "operationId": "reject_pipeline",
                "summary": "Reject a run waiting for a decision: nothing is published",
                "tags": ["lifecycle"],
                "parameters": [PIPELINE_INSTANCE],
                "requestBody": {**decision_body, "required": True},
                "responses": decided,
            }
        },
        "/pipelines/{instance_id}/reports/{report}": {
            "get": {
                "operationId": "run_report",
                "summary": "A run's report for a person (Markdown, as plain text)",
                "tags": ["runs"],
                "parameters": [
                    PIPELINE_INSTANCE,
                    {
                        "name": "report",
                        "in": "path",
                        "required": True,
                        "description": "summary: the run summary; gate: the gate's report",
                        "schema": {"enum": ["summary", "gate"]},
                    },
                ],
                "responses": {
                    "200": {"description": "The report.", "content": text},
                    "404": _error("No such run, or it has no such report (yet)."),
                    "500": FAILED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/runs": {
            "get": {
                "operationId": "list_runs",
                "summary": "Every dataset's latest run of the last days, and every run in flight",
                "tags": ["runs"],
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "required": False,
                        "description": "how far back (by creation time); default 7",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 90},
                    }
                ],
                "responses": {
                    "200": _json("The runs, newest first.", "Runs"),
                    "400": _error("A bad 'days'."),
                },
            }
        },
        "/datasets": {
            "get": {
                "operationId": "list_datasets",
                "summary": "Every dataset with its versions and the current one",
                "tags": ["lifecycle"],
                "responses": {
                    "200": _json("The datasets.", "Datasets"),
                    "500": FAILED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/datasets/{dataset_id}": {
            "get": {
                "operationId": "dataset_versions",
                "summary": "A dataset's versions, newest first, and which is current",
                "tags": ["lifecycle"],
                "parameters": [DATASET],
                "responses": {
                    "200": _json("Its versions.", "Dataset"),
                    "404": _error("No such dataset (or nothing published yet)."),
                    "500": FAILED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/datasets/{dataset_id}/versions/{version}/unpublish": {
            "post": _release(
                "unpublish_version",
                "Unpublish a version; the item goes back to the previous one",
                body=True,
            )
        },
        "/datasets/{dataset_id}/versions/{version}/cleanup": {
            "post": _release("cleanup_version", "Delete an unpublished version's store", body=False)
        },
        "/datasets/{dataset_id}/versions/{version}/preview": {
            "get": {
                "operationId": "version_preview",
                "summary": "A version's preview (the STAC item's thumbnail)",
                "tags": ["lifecycle"],
                "parameters": [DATASET, VERSION],
                "responses": {
                    "200": {
                        "description": "PNG",
                        "content": {"image/png": {"schema": {"type": "string"}}},
                    },
                    "404": _error("No such version, or no preview."),
                    "500": FAILED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Library versions; 503 names a module that fails to import",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": _json("Healthy.", "Health"),
                    "503": _json("A module fails to import.", "Health"),
                },
            }
        },
        "/operator": {
            "get": {
                "operationId": "operator_page",
                "summary": "The operator page (HTML)",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    """The API's description, with ``server_url`` (…/api) as its one server."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "virtual-zarr-pipeline",
            "version": API_VERSION,
            "summary": "Turns NetCDF/HDF5 collections into one virtual Zarr store in STAC.",
            "description": "Start runs, follow them, approve or reject what they built, "
            "list and unpublish versions. Function-level auth: a function key as ?code= or "
            "the x-functions-key header (docs/security.md); /health is anonymous. Errors "
            "are {error: {code, message, remedy}}.",
        },
        "servers": [{"url": server_url}],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "tags": [
            {"name": "runs", "description": "start and follow runs"},
            {"name": "lifecycle", "description": "approve, versions, unpublish, cleanup"},
            {"name": "operations", "description": "health, the operator page, this document"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }
