"""The Function App: wiring only. Blueprints per module are registered here.

The pipeline orchestrator, activities and HTTP starter arrive with the Durable Functions
issue; today the app serves a health check that proves the heavy dependencies import.
"""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

from shared.health import dependency_report

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = dependency_report()
    return func.HttpResponse(
        json.dumps(report),
        status_code=200 if report["ok"] else 503,
        mimetype="application/json",
    )
