"""A local stand-in for the Functions host's HTTP front end and the Durable extension's
HTTP APIs, so that the app's HTTP functions and the real DurableOrchestrationClient run
unchanged against a DurableHost.

    /api/<route>                              the app's HTTP functions (routes from the app)
    /durabletask/...                          the extension's local RPC API (what the SDK
                                              client calls; loopback, no key)
    /runtime/webhooks/durabletask/...         the same API for operators; needs the system
                                              key (?code=KEY or an x-functions-key header)

The operations of both Durable APIs are listed in devhost/frontend/durable_api.py.

Timer-triggered functions run when asked, as with the host's admin API (no schedule):

    POST /admin/functions/{name}   {"input": ""}   202 when it has run / 404 / 400 not a timer

The Event Grid webhook, as the host serves it to Event Grid subscriptions:

    POST /runtime/webhooks/eventgrid?functionName=NAME   (path case-insensitive)
         aeg-event-type: SubscriptionValidation   200 {"validationResponse": CODE}
         aeg-event-type: Notification (or none)   the function once per event of the JSON
                                                  array (or single object) of Event Grid
                                                  schema events; 202 when every call
                                                  returned, 500 naming the failed event ids
                                                  (Event Grid then delivers again); 400 bad
                                                  JSON or shape, or not an Event Grid
                                                  function; 404 unknown function

Function-level keys on /api/ routes and the Event Grid webhook are not enforced, as with
Core Tools (`func start`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devhost.durable import DurableHost
from devhost.frontend.durable_api import RPC_PREFIX, WEBHOOK_PREFIX, DurableApi
from devhost.frontend.functions import EVENT_LOOP, SERVED_TRIGGERS, AppFunction, AppRoute
from devhost.frontend.messages import Incoming, Reply, error_reply
from devhost.frontend.triggers import AppTriggers

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/api/"
EVENTGRID_PATH = "/runtime/webhooks/eventgrid"  # compared case-insensitively
ADMIN_FUNCTIONS_PREFIX = "/admin/functions/"
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's request size limit


class DevServer:
    """Serves the app's HTTP functions and the Durable HTTP APIs of one DurableHost on
    127.0.0.1. start() returns the base URL; stop() ends it; usable as a context manager."""

    def __init__(self, host: DurableHost, *, port: int = 0, system_key: str | None = None) -> None:
        self.host = host
        self.port = port
        self.system_key = system_key or secrets.token_urlsafe(32)
        self.durable = DurableApi(host, self.system_key, lambda: self.base_url)
        self.triggers = AppTriggers(
            host.index.functions, self.client_binding, lambda: self.base_url
        )
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def routes(self) -> list[AppRoute]:
        """The app's HTTP-triggered functions, in the order requests are matched."""
        return self.triggers.routes

    @property
    def functions(self) -> dict[str, AppFunction]:
        """The app's triggered functions by lowercase name."""
        return self.triggers.functions

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("DevServer is not started")
        return self._base_url

    def start(self) -> str:
        if self._httpd is not None:
            return self.base_url
        httpd = _HttpServer(("127.0.0.1", self.port), _Handler)
        httpd.devserver = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._base_url = f"http://127.0.0.1:{self.port}"
        EVENT_LOOP.acquire()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="devhost-http"
        )
        self._thread.daemon = True
        self._thread.start()
        self.host.client_binding = self.client_binding()  # for activities that take a client
        for function in self.functions.values():
            if function.trigger_type in SERVED_TRIGGERS and function.unsupported:
                log.warning(
                    "function %s uses bindings devhost cannot provide: %s",
                    function.function_name,
                    ", ".join(function.unsupported),
                )
        log.info("devhost HTTP server on %s", self._base_url)
        return self._base_url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.host.client_binding = None
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        EVENT_LOOP.release()

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- URLs --------------------------------------------------------------------------
    def management_urls(self, instance_id: str, base_url: str | None = None) -> dict[str, str]:
        """The extension's management URLs of one instance (with the system key)."""
        return self.durable.management_urls(instance_id, base_url)

    def status_query_url(self, instance_id: str) -> str:
        """The operator's status URL of an instance (carries the system key)."""
        return self.management_urls(instance_id)["statusQueryGetUri"]

    def client_binding(self) -> str:
        """The durableClient binding data the extension hands the worker, as a JSON string
        (the SDK's middleware turns it into a DurableOrchestrationClient)."""
        return self.durable.client_binding()

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request (method, path with query, headers, body)."""
        request = Incoming(method, target, headers, body)
        path = request.path
        try:
            if path.startswith(ROUTE_PREFIX) or path == ROUTE_PREFIX.rstrip("/"):
                return self.triggers.http(request, path[len(ROUTE_PREFIX) :])
            if path.startswith(RPC_PREFIX):
                return self.durable.answer(request, path[len(RPC_PREFIX) :])
            if path.startswith(WEBHOOK_PREFIX):
                return self.durable.operator(request, path[len(WEBHOOK_PREFIX) :])
            if path.rstrip("/").lower() == EVENTGRID_PATH:
                return self.triggers.eventgrid(request)
            if path.lower().startswith(ADMIN_FUNCTIONS_PREFIX):
                return self.triggers.admin_invoke(request, path[len(ADMIN_FUNCTIONS_PREFIX) :])
        except Exception as exc:  # a bug in devhost itself: answer, log, keep serving
            log.exception("devhost failed on %s %s", method, path)
            return error_reply(500, "devhost_error", f"{type(exc).__name__}: {exc}")
        return error_reply(404, "not_found", f"Nothing is served at {path}.")


# -- the socket side ----------------------------------------------------------------------
class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: socketserver's default of 5 reset connections when a burst of
    # clients (20 uploads' events, a CI fan-in) connected at once.
    request_queue_size = 128
    devserver: DevServer


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets DevServer answer it, writes the answer (one request per
    connection: nothing stays open when the server stops)."""

    server: _HttpServer
    protocol_version = "HTTP/1.0"
    server_version = "devhost"
    timeout = 60  # seconds of socket silence before a stalled client is dropped

    def _serve(self) -> None:
        started = time.perf_counter()
        try:
            body = self._read_body()
        except _BodyError as exc:
            reply = exc.reply
        else:
            reply = self.server.devserver.handle(self.command, self.path, dict(self.headers), body)
        self._write(reply)
        path = urlsplit(self.path).path  # never the query: the operator's carries the key
        level = logging.DEBUG if path.startswith(RPC_PREFIX) else logging.INFO
        log.log(
            level,
            "%s %s -> %d (%.3f s)",
            self.command,
            path,
            reply.status,
            time.perf_counter() - started,
            extra={"method": self.command, "path": path, "status": reply.status},
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise _BodyError(
                error_reply(400, "bad_request", f"Content-Length {length_text!r} is not a number.")
            ) from None
        if length > MAX_BODY_BYTES:
            raise _BodyError(
                error_reply(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes.")
            )
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline().split(b";")[0].strip() or b"0"
            try:
                size = int(line[:16], 16)  # 16 hex digits are more than any body we take
            except ValueError:
                raise _BodyError(
                    error_reply(400, "bad_chunk", "The chunked body has a malformed chunk size.")
                ) from None
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(
                    error_reply(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes.")
                )
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and reply.body:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("the client went away before the answer to %s", self.command)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _BodyError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply
