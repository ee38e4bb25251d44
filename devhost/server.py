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

The front end is a Starlette app (devhost/frontend/asgi.py) that uvicorn serves in a
background thread, on a socket DevServer binds itself (port 0: any free port).
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time

import uvicorn

from devhost.durable import DurableHost
from devhost.frontend.asgi import DevhostH11Protocol, build_app
from devhost.frontend.durable_api import DurableApi
from devhost.frontend.functions import EVENT_LOOP, SERVED_TRIGGERS, AppFunction, AppRoute
from devhost.frontend.triggers import AppTriggers

log = logging.getLogger(__name__)

# The listen backlog: socketserver's default of 5 reset connections when a burst of clients
# (20 uploads' events, a CI fan-in) connected at once.
BACKLOG = 128
GRACE = 10  # seconds a stopping server gives requests still running (then 503)


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
        self._server: uvicorn.Server | None = None
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
        if self._server is not None:
            return self.base_url
        listening = socket.create_server(("127.0.0.1", self.port), backlog=BACKLOG)
        self.port = listening.getsockname()[1]
        self._base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            build_app(self.durable, self.triggers),
            http=DevhostH11Protocol,  # h11: a malformed chunked body is a 400, not a reset
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,  # the process's logging stays as it is
            proxy_headers=False,
            server_header=False,
            backlog=BACKLOG,
            h11_max_incomplete_event_size=64 * 1024,  # a request head as long as http.server took
            timeout_graceful_shutdown=GRACE,
        )
        server = uvicorn.Server(config)  # off the main thread it installs no signal handlers
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listening]}, name="devhost-http", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            server.should_exit = True
            thread.join(timeout=GRACE + 5)
            listening.close()
            raise RuntimeError(f"the devhost HTTP server did not start on {self._base_url}")
        self._server, self._thread = server, thread
        EVENT_LOOP.acquire()
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
        server, self._server = self._server, None
        if server is None:
            return
        self.host.client_binding = None
        server.should_exit = True  # uvicorn closes the socket, then waits up to GRACE
        if self._thread is not None:
            self._thread.join(timeout=GRACE + 10)
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
