"""The operator page and the API's description.

    GET /api/operator       the operator page (api/static/operator.html): datasets with
                            their versions and preview, runs in flight, failed runs with
                            file, variable, rule and fix, approve / reject / unpublish with
                            a confirmation. Plain HTML and one inline script; it reads and
                            acts through the API below with the key it was opened with
                            (?code=KEY, sent on as x-functions-key)
    GET /api/openapi.json   OpenAPI 3.1 description of the HTTP API (api/openapi.py)

Both take the API's auth (function level). The page's Content-Security-Policy allows only
its own inline script and style (by their SHA-256) and requests to its own origin; it puts
every value from the API into the page as text, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from api.openapi import openapi_document

bp = df.Blueprint()

PAGE = Path(__file__).resolve().parent / "static" / "operator.html"
PAGE_ROUTE = "operator"


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@cache
def page() -> tuple[bytes, str]:
    """The page's bytes and its Content-Security-Policy (hashes of its inline script and
    style: nothing else may run or style it)."""
    text = PAGE.read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", text, flags=re.S)
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(_hash(s) for s in scripts)}",
            f"style-src {' '.join(_hash(s) for s in styles)}",
            "img-src 'self' blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return text.encode("utf-8"), policy


@bp.route(route=PAGE_ROUTE, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def operator_page(req: func.HttpRequest) -> func.HttpResponse:
    body, policy = page()
    return func.HttpResponse(
        body,
        status_code=200,
        mimetype="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
        },
    )


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    parts = urlsplit(req.url)
    server = f"{parts.scheme}://{parts.netloc}/api"
    return func.HttpResponse(
        json.dumps(openapi_document(server), indent=1),
        status_code=200,
        mimetype="application/json",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )
