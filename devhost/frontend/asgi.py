"""devhost's front end as an ASGI app (Starlette), and the h11 protocol uvicorn serves it
with (devhost.server.DevServer runs them).

Each surface (the app's HTTP functions, the Durable RPC and operator APIs, the Event Grid
webhook, the admin API) is one route over the path as sent: percent-escapes are kept, so an
escaped '/' inside an instance id or a route value stays inside its segment and the handlers
unescape each segment themselves, as the Functions host does. A handler answers with a
Reply; it runs in a thread of its own, as http.server ran each request before."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from devhost.frontend.durable_api import RPC_PREFIX, WEBHOOK_PREFIX, DurableApi
from devhost.frontend.messages import Incoming, Reply, error_reply
from devhost.frontend.triggers import AppTriggers

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's request size limit
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # what devhost serves
Handler = Callable[[Incoming, str], Reply]  # a surface: the request, the path below its prefix


def build_app(durable: DurableApi, triggers: AppTriggers) -> Starlette:
    """The front end of one DevServer."""

    def eventgrid(request: Incoming, rest: str) -> Reply:
        if rest.strip("/"):  # only slashes may follow the webhook's path
            return _not_found(request.path)
        return triggers.eventgrid(request)

    routes = [
        # The app's routes take every method (TRACE too): the app's router answers one no
        # function allows with 405 and Allow, never a 5xx (schemathesis sends them).
        _route("/api", triggers.http, any_method=True),  # no rest: the handler gets ""
        _route("/api/{rest:path}", triggers.http, any_method=True),
        _route(RPC_PREFIX + "{rest:path}", durable.answer),
        _route(WEBHOOK_PREFIX + "{rest:path}", durable.operator),
        _route("/runtime/webhooks/eventgrid{rest:path}", eventgrid, any_case=True),
        _route("/admin/functions/{rest:path}", triggers.admin_invoke, any_case=True),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_RequestLog), Middleware(_PathAsSent)],
        exception_handlers={HTTPException: _http_exception},
    )


def _route(
    path: str, handler: Handler, *, any_case: bool = False, any_method: bool = False
) -> Route:
    """The route of one surface, for every method devhost serves (the handler answers a
    wrong one); any_method: for any method at all. any_case: the path's letters may come in
    any case, as the Functions host takes its admin and Event Grid paths."""
    route = Route(path, _endpoint(handler), methods=METHODS)
    if any_method:
        route.methods = None  # (Starlette would make methods=None mean GET only)
    if any_case:
        route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
    return route


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _read_body(request)
        except _TooLarge:
            return _ReplyResponse(
                error_reply(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes.")
            )
        except ClientDisconnect:  # or the protocol refused the body: nobody to answer
            return _NoAnswer()
        scope = request.scope
        incoming = Incoming(request.method, _target(scope), _headers(scope), body)
        try:
            reply = await _in_thread(
                _answer, handler, incoming, request.path_params.get("rest", "")
            )
        except asyncio.CancelledError:  # uvicorn ends what still runs when a stop's grace is up
            log.warning("devhost stopped before %s %s was answered", incoming.method, incoming.path)
            reply = error_reply(
                503, "host_stopping", "devhost stopped before the function answered."
            )
        return _ReplyResponse(reply)

    return endpoint


def _answer(handler: Handler, request: Incoming, rest: str) -> Reply:
    try:
        return handler(request, rest)
    except Exception as exc:  # a bug in devhost itself: answer, log, keep serving
        log.exception("devhost failed on %s %s", request.method, request.path)
        return error_reply(500, "devhost_error", f"{type(exc).__name__}: {exc}")


async def _in_thread[T](function: Callable[..., T], *args: Any) -> T:
    """function(*args) in a daemon thread of its own, as ThreadingHTTPServer served each
    request: an app function that calls back into this server (the Durable client does)
    never waits for a thread its caller holds, and one still running when the process ends
    does not hold it up."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        result, error = None, None
        try:
            result = function(*args)
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            log.debug("the server stopped before a request's answer was ready")

    threading.Thread(target=run, name="devhost-request", daemon=True).start()
    return await done


class _TooLarge(Exception):
    pass


async def _read_body(request: Request) -> bytes:
    """The whole body (h11 has undone any chunking); _TooLarge as soon as it is over
    MAX_BODY_BYTES, by its Content-Length (which h11 has checked is a number) or as read."""
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _target(scope: Scope) -> str:
    """The request target as sent: the path with its escapes, and the query."""
    query = scope["query_string"].decode("latin-1")
    return scope["raw_path"].decode("latin-1") + (f"?{query}" if query else "")


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by (lowercase) name, the first of a repeated one."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def _not_found(path: str) -> Reply:
    return error_reply(404, "not_found", f"Nothing is served at {path}.")


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals in devhost's words: no route (404), a method devhost does
    not serve (501, as http.server answered one)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _ReplyResponse(_not_found(request.scope["path"]))
    if status == 405:
        message = f"devhost does not serve {request.method} requests."
        return _ReplyResponse(error_reply(501, "not_implemented", message))
    return _ReplyResponse(error_reply(status, "bad_request", str(getattr(exc, "detail", exc))))


class _ReplyResponse(Response):
    """A Reply on the wire: its headers as named (their case kept), its Content-Length, and
    Connection: close (one request per connection: nothing stays open when the server
    stops, and no client reuses a connection the server is closing)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body, reply.status)
        self.raw_headers = _wire_headers(reply)


def _wire_headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    framing = ("content-length", "connection", "transfer-encoding")
    headers = [(k, v) for k, v in reply.headers.items() if k.lower() not in framing]
    headers += [("Content-Length", str(len(reply.body))), ("Connection", "close")]
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class _NoAnswer(Response):
    """For a client that is gone: nothing is sent."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.debug("the client went away before the answer to %s", scope["method"])


class _PathAsSent:
    """Routes see the path as sent (escapes kept), not uvicorn's unescaped one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "path": scope["raw_path"].decode("latin-1"), "root_path": ""}
        await self.app(scope, receive, send)


class _RequestLog:
    """One log record per answered request: method, path (never the query: the operator's
    carries the key), status and time; the SDK's RPC calls at DEBUG, the rest at INFO."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if status:
                method, path = scope["method"], scope["raw_path"].decode("latin-1")
                log.log(
                    logging.DEBUG if path.startswith(RPC_PREFIX) else logging.INFO,
                    "%s %s -> %d (%.3f s)",
                    method,
                    path,
                    status,
                    time.perf_counter() - started,
                    extra={"method": method, "path": path, "status": status},
                )


class DevhostH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with devhost's answer to a request h11 cannot read (a JSON
    error in one write; a malformed chunk size is bad_chunk) and without uvicorn's access
    log (the app logs each request itself)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False

    def send_400_response(self, msg: str) -> None:
        reply = _unreadable(sys.exception())  # called inside uvicorn's except clause
        try:
            head = h11.Response(
                status_code=400, headers=_wire_headers(reply), reason=b"Bad Request"
            )
            data = self.conn.send(head) or b""
            data += self.conn.send(h11.Data(data=reply.body)) or b""
            data += self.conn.send(h11.EndOfMessage()) or b""
            self.transport.write(data)
        except h11.LocalProtocolError:  # an answer was already under way: only close
            log.debug("a request went bad after its answer began: %s", msg)
        self.transport.close()


def _unreadable(error: BaseException | None) -> Reply:
    """The answer to a request h11 refused (its reason in h11's words otherwise)."""
    reason = str(error or "").strip() or "malformed request"
    if reason.startswith("illegal chunk header"):
        return error_reply(400, "bad_chunk", "The chunked body has a malformed chunk size.")
    return error_reply(400, "bad_request", f"The request cannot be read: {reason}.")
