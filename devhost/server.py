"""A local stand-in for the Functions host's HTTP front end and the Durable extension's
HTTP APIs, so that the app's HTTP functions and the real DurableOrchestrationClient run
unchanged against a DurableHost.

    /api/<route>                              the app's HTTP functions (routes from the app)
    /durabletask/...                          the extension's local RPC API (what the SDK
                                              client calls; loopback, no key)
    /runtime/webhooks/durabletask/...         the same API for operators; needs the system
                                              key (?code=KEY or an x-functions-key header)

Operations on both Durable APIs:

    POST orchestrators/{name}[/{instanceId}]  start (202 + management URLs; 400 unknown
                                              orchestrator; 409 instance already running)
    GET  instances/{instanceId}               status (202 pending/running, 200 finished,
                                              404 unknown with an empty body)
    GET  instances/                           every instance (instanceIdPrefix, runtimeStatus)
    POST instances/{id}/raiseEvent/{event}    202 / 404 / 410 (finished) / 400 (not JSON)
    POST instances/{id}/terminate?reason=...  202 / 404 / 410
    DELETE instances/{instanceId}             purge one instance: 200 {instancesDeleted} / 404
    DELETE instances/?createdTimeFrom=...     purge by creation time and runtimeStatus: 200 /
                                              404 (nothing deleted) / 400 (no createdTimeFrom)

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
Every async function runs on ONE event loop per process (the SDK keeps one aiohttp session
per process, bound to the loop that created it), as in the Python worker.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import azure.functions as func

from devhost.durable import TERMINAL, DurableHost, InstanceExists, InstanceGone

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/api/"
RPC_PREFIX = "/durabletask/"
WEBHOOK_PREFIX = "/runtime/webhooks/durabletask/"
EVENTGRID_PATH = "/runtime/webhooks/eventgrid"  # compared case-insensitively
HTTP_TRIGGER, EVENTGRID_TRIGGER, TIMER_TRIGGER = "httpTrigger", "eventGridTrigger", "timerTrigger"
ADMIN_FUNCTIONS_PREFIX = "/admin/functions/"
SERVED_TRIGGERS = (HTTP_TRIGGER, EVENTGRID_TRIGGER, TIMER_TRIGGER)  # what devhost invokes
CONNECTION_NAME = "Storage"
FUNCTION_TIMEOUT = 230.0  # seconds: Azure's load balancer ends an HTTP request after 230 s
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's request size limit
IN_PROGRESS = ("Pending", "Running", "ContinuedAsNew", "Suspended")
NOT_IMPLEMENTED = ("rewind", "restart", "suspend", "resume")


# -- replies ------------------------------------------------------------------------------
@dataclass
class Reply:
    """One HTTP answer: status, headers and body bytes."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(
        status,
        json.dumps(body, indent=1).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def error_reply(status: int, code: str, message: str, **extra: Any) -> Reply:
    """Our own errors: {"error": {"code", "message"}}. The Durable endpoints also carry the
    extension's "Message"/"ExceptionMessage" keys, which the SDK client reads."""
    return json_reply(status, {"error": {"code": code, "message": message}, **extra})


def durable_error(status: int, code: str, message: str) -> Reply:
    return error_reply(status, code, message, Message=message, ExceptionMessage=message)


# -- app routes ---------------------------------------------------------------------------
_CONSTRAINTS = {
    "alpha": r"[A-Za-z]+",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
}
_PARAMETER = re.compile(r"\{(\*{0,2})([A-Za-z_]\w*)((?::[^{}?=]+)*)(\?)?\}")


def compile_route(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """An ASP.NET-style route template ("items/{id:int}/{name?}", "files/{*rest}") as a
    case-insensitive regex over the path below /api/, and its parameter names. Constraints
    alpha, int, long, bool, guid, decimal, double and float are checked; others only
    match one path segment."""
    pattern, names, position = "", [], 0
    text = template.strip("/")
    for found in _PARAMETER.finditer(text):
        literal = text[position : found.start()]
        catch_all, name, constraints, optional = found.groups()
        names.append(name)
        regex = r"[^/]+"
        if catch_all:
            regex = r".*"
        for constraint in filter(None, constraints.split(":")):
            if constraint in _CONSTRAINTS:
                regex = _CONSTRAINTS[constraint]
            else:
                log.debug("route %r: constraint %r is not checked by devhost", template, constraint)
        group = f"(?P<{name}>{regex})"
        if (optional or catch_all) and literal.endswith("/"):
            pattern += re.escape(literal[:-1]) + f"(?:/{group})?"
        else:
            pattern += re.escape(literal) + (f"{group}?" if optional else group)
        position = found.end()
    pattern += re.escape(text[position:])
    return re.compile(pattern + "/?", re.IGNORECASE), tuple(names)


@dataclass(frozen=True)
class AppFunction:
    """One function of the app as the host invokes it: the argument that gets the trigger's
    value, the ones that get a Durable client, and the bindings devhost cannot provide."""

    function_name: str
    trigger_type: str  # the trigger binding's type: httpTrigger, eventGridTrigger, ...
    user_function: Callable[..., Any]
    trigger_arg: str
    client_args: tuple[str, ...]
    out_arg: str | None  # a named http output binding (None: the return value)
    unsupported: tuple[str, ...]  # bindings devhost cannot provide
    is_async: bool
    wants_context: bool


def app_function(function: Any) -> AppFunction | None:
    """One indexed function as the host invokes it (None: it has no trigger)."""
    trigger = function.get_trigger()
    if trigger is None:
        return None
    trigger_type = trigger.get_binding_name()
    clients, unsupported, out_arg = [], [], None
    for binding in function.get_bindings():
        kind, binding_name = binding.get_binding_name(), binding.name
        if binding is trigger or kind == trigger_type:
            continue
        if kind == "durableClient":
            clients.append(binding_name)
        elif kind == "http" and binding_name != "$return":
            out_arg = binding_name
        elif not (kind == "http" and binding_name == "$return"):
            unsupported.append(f"{kind} ({binding_name})")
    user_function = function.get_user_function()
    return AppFunction(
        function_name=function.get_function_name(),
        trigger_type=trigger_type,
        user_function=user_function,
        trigger_arg=trigger.name,
        client_args=tuple(clients),
        out_arg=out_arg,
        unsupported=tuple(unsupported),
        is_async=inspect.iscoroutinefunction(user_function),
        wants_context="context" in inspect.signature(user_function).parameters
        and "context" not in (trigger.name, *clients),
    )


def app_functions(functions: Iterable[Any]) -> dict[str, AppFunction]:
    """The app's triggered functions by lowercase name (the host's function names are
    case-insensitive)."""
    found = (app_function(function) for function in functions)
    return {f.function_name.lower(): f for f in found if f is not None}


@dataclass(frozen=True)
class AppRoute(AppFunction):
    """One HTTP-triggered function of the app, as the host routes to it."""

    route: str
    methods: tuple[str, ...]  # empty: any method
    pattern: re.Pattern[str]
    params: tuple[str, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {k: unquote(v) for k, v in found.groupdict().items() if v is not None}

    def allows(self, method: str) -> bool:
        return not self.methods or method in self.methods


def app_routes(functions: Iterable[Any]) -> list[AppRoute]:
    """The HTTP-triggered functions among the app's indexed functions, most specific route
    first (more literal text, fewer parameters), as the host's router orders them."""
    routes = []
    for function in functions:
        base = app_function(function)
        if base is None or base.trigger_type != HTTP_TRIGGER:
            continue
        trigger = function.get_trigger()
        template = getattr(trigger, "route", None) or base.function_name
        methods = tuple(
            str(getattr(m, "value", m)).upper() for m in (getattr(trigger, "methods", None) or ())
        )
        pattern, params = compile_route(template)
        routes.append(
            AppRoute(
                **vars(base),
                route=template.strip("/"),
                methods=methods,
                pattern=pattern,
                params=params,
            )
        )
    literal = re.compile(r"\{[^}]*\}")
    routes.sort(key=lambda r: (-len(literal.sub("", r.route)), len(r.params), r.route))
    return routes


@dataclass
class _InvocationContext:
    """What the worker passes to a parameter named `context` (the SDK's client middleware
    reads invocation_id from it for log correlation)."""

    invocation_id: str
    function_name: str
    function_directory: str = ""
    trace_context: Any = None
    retry_context: Any = None


class _Out:
    """A named output binding (func.Out) the function sets."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value


# -- one event loop per process -----------------------------------------------------------
class _EventLoop:
    """The process's one asyncio loop, in a daemon thread, shared by every DevServer. The
    SDK's aiohttp session is closed when the last server stops (it is recreated on the same
    loop when a server starts again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._users = 0

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="devhost-event-loop", daemon=True
                ).start()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._loop is None:
                return
        try:
            from azure.durable_functions.models.utils import http_utils

            close = getattr(http_utils, "_close_session", None)
            if close is not None:
                self.run(close(), timeout=10)
        except Exception:  # closing is tidiness, never a reason to fail a shutdown
            log.debug("could not close the Durable client's HTTP session", exc_info=True)

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the devhost event loop is not running")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()
            raise


_EVENT_LOOP = _EventLoop()


# -- the server ---------------------------------------------------------------------------
class DevServer:
    """Serves the app's HTTP functions and the Durable HTTP APIs of one DurableHost on
    127.0.0.1. start() returns the base URL; stop() ends it; usable as a context manager."""

    def __init__(self, host: DurableHost, *, port: int = 0, system_key: str | None = None) -> None:
        self.host = host
        self.port = port
        self.system_key = system_key or secrets.token_urlsafe(32)
        self.routes = app_routes(host.index.functions)
        self.functions = app_functions(host.index.functions)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

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
        _EVENT_LOOP.acquire()
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
        _EVENT_LOOP.release()

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- URLs --------------------------------------------------------------------------
    def management_urls(self, instance_id: str, base_url: str | None = None) -> dict[str, str]:
        """The extension's management URLs of one instance (with the system key)."""
        base = (base_url or self.base_url).rstrip("/")
        instance = f"{base}{WEBHOOK_PREFIX}instances/{quote(instance_id, safe='')}"
        query = f"taskHub={quote(self.host.task_hub)}&connection={CONNECTION_NAME}"
        query += f"&code={quote(self.system_key, safe='')}"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        }

    def status_query_url(self, instance_id: str) -> str:
        """The operator's status URL of an instance (carries the system key)."""
        return self.management_urls(instance_id)["statusQueryGetUri"]

    def client_binding(self) -> str:
        """The durableClient binding data the extension hands the worker, as a JSON string
        (the SDK's middleware turns it into a DurableOrchestrationClient)."""
        base = self.base_url
        orchestrators = f"{base}{WEBHOOK_PREFIX}orchestrators/{{functionName}}[/{{instanceId}}]"
        code = f"code={quote(self.system_key, safe='')}"
        return json.dumps(
            {
                "taskHubName": self.host.task_hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{orchestrators}?{code}",
                    "createAndWaitOnNewInstancePostUri": f"{orchestrators}?timeout="
                    f"{{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{code}",
                },
                "managementUrls": self.management_urls("INSTANCEID"),
                "baseUrl": f"{base}{WEBHOOK_PREFIX.rstrip('/')}",
                "requiredQueryStringParameters": code,
                "rpcBaseUrl": f"{base}{RPC_PREFIX}",
            }
        )

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request (method, path with query, headers, body)."""
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            if path.startswith(ROUTE_PREFIX) or path == ROUTE_PREFIX.rstrip("/"):
                return self._app(method, target, path[len(ROUTE_PREFIX) :], query, headers, body)
            if path.startswith(RPC_PREFIX):
                return self._durable(method, path[len(RPC_PREFIX) :], query, headers, body)
            if path.startswith(WEBHOOK_PREFIX):
                denied = self._authorize(query, headers)
                if denied is not None:
                    return denied
                return self._durable(method, path[len(WEBHOOK_PREFIX) :], query, headers, body)
            if path.rstrip("/").lower() == EVENTGRID_PATH:
                return self._eventgrid(method, query, headers, body)
            if path.lower().startswith(ADMIN_FUNCTIONS_PREFIX):
                return self._admin_invoke(method, path[len(ADMIN_FUNCTIONS_PREFIX) :], body)
        except Exception as exc:  # a bug in devhost itself: answer, log, keep serving
            log.exception("devhost failed on %s %s", method, path)
            return error_reply(500, "devhost_error", f"{type(exc).__name__}: {exc}")
        return error_reply(404, "not_found", f"Nothing is served at {path}.")

    def _authorize(self, query: Mapping[str, str], headers: Mapping[str, str]) -> Reply | None:
        given = query.get("code") or _header(headers, "x-functions-key")
        if not given:
            return error_reply(
                401,
                "unauthorized",
                "The Durable management API needs the system key: add ?code=KEY "
                "(or an x-functions-key header); `python -m devhost start` prints it.",
            )
        if not hmac.compare_digest(given.encode(), self.system_key.encode()):
            return error_reply(403, "forbidden", "The key given is not this host's system key.")
        return None

    # -- the app's functions -----------------------------------------------------------
    def _app(
        self,
        method: str,
        target: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        matched = [(r, params) for r in self.routes if (params := r.match(path)) is not None]
        if not matched:
            return error_reply(404, "not_found", f"No function is served at /api/{path}.")
        for route, params in matched:
            if route.allows(method):
                return self._invoke(route, params, method, target, query, headers, body)
        allowed = sorted({m for route, _ in matched for m in route.methods})
        reply = error_reply(
            405, "method_not_allowed", f"/api/{path} answers {', '.join(allowed)}, not {method}."
        )
        reply.headers["Allow"] = ", ".join(allowed)
        return reply

    def _invoke(
        self,
        route: AppRoute,
        params: dict[str, str],
        method: str,
        target: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        if route.unsupported:
            return _unsupported_bindings(route)
        host_header = _header(headers, "host") or f"127.0.0.1:{self.port}"
        request = func.HttpRequest(
            method=method,
            url=f"http://{host_header}{target}",
            headers=dict(headers),
            params=dict(query),
            route_params=params,
            body=body,
        )
        out = _Out() if route.out_arg else None
        outputs = {route.out_arg: out} if route.out_arg else {}
        try:
            result = self._call(route, request, **outputs)
        except FutureTimeout:
            log.error(
                "function %s did not answer within %.0f s", route.function_name, FUNCTION_TIMEOUT
            )
            return error_reply(
                504,
                "function_timeout",
                f"Function {route.function_name} did not answer within {FUNCTION_TIMEOUT:.0f} s.",
            )
        except Exception as exc:
            log.exception("function %s failed", route.function_name)
            return error_reply(
                500,
                "function_failed",
                f"Function {route.function_name} raised {type(exc).__name__}: {exc}",
            )
        if out is not None and result is None:
            result = out.get()
        return _to_reply(route.function_name, result)

    def _call(self, function: AppFunction, trigger_value: Any, **outputs: Any) -> Any:
        """Call one function of the app as the worker does: the trigger's value, a client
        binding for each Durable client argument, a context if it takes one. Async functions
        run on the process's one event loop and are given FUNCTION_TIMEOUT (FutureTimeout
        when they overrun); sync ones run in this request's thread. Raises what it raises."""
        kwargs: dict[str, Any] = {function.trigger_arg: trigger_value, **outputs}
        for name in function.client_args:
            kwargs[name] = self.client_binding()
        if function.wants_context:
            kwargs["context"] = _InvocationContext(str(uuid.uuid4()), function.function_name)
        if function.is_async:
            return _EVENT_LOOP.run(function.user_function(**kwargs), timeout=FUNCTION_TIMEOUT)
        return function.user_function(**kwargs)

    def _function(self, name: str, trigger: str, code: str, why: str) -> AppFunction | Reply:
        """The app's function ``name`` if ``trigger`` triggers it, else the error reply."""
        function = self.functions.get(name.lower())
        if function is None:
            return error_reply(404, "not_found", f"The app has no function named {name!r}.")
        if function.trigger_type != trigger:
            return error_reply(
                400,
                code,
                f"Function {function.function_name} is triggered by {function.trigger_type}, "
                f"not {trigger}: {why}",
            )
        return function

    # -- running a non-HTTP function by hand ---------------------------------------------
    def _admin_invoke(self, method: str, name: str, body: bytes) -> Reply:
        """POST /admin/functions/{name} {"input": ...}: run a timer-triggered function now, as
        the Functions host's admin API does (202 when it has run; Azure needs the master key,
        Core Tools and devhost do not). The timer's value is decoded from the worker's JSON
        form by the worker's own TimerRequestConverter."""
        if method != "POST":
            return error_reply(405, "method_not_allowed", "Run a function with POST.")
        function = self._function(
            unquote(name).strip("/"),
            TIMER_TRIGGER,
            "not_a_timer_function",
            "devhost runs only timer-triggered functions through the admin API.",
        )
        if isinstance(function, Reply):
            return function
        from azure.functions.meta import Datum
        from azure.functions.timer import TimerRequestConverter

        timer = TimerRequestConverter.decode(
            Datum(type="json", value=json.dumps({"IsPastDue": False})), trigger_metadata={}
        )
        try:
            self._call(function, timer)
        except Exception as exc:
            log.exception("function %s failed", function.function_name)
            return error_reply(
                500, "function_failed", f"Function {function.function_name} raised {exc!r}"
            )
        return Reply(202)

    # -- the Event Grid webhook --------------------------------------------------------
    def _eventgrid(
        self, method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Reply:
        if method != "POST":
            reply = error_reply(405, "method_not_allowed", "Event Grid delivers with POST.")
            reply.headers["Allow"] = "POST"
            return reply
        name = query.get("functionName", "").strip()
        if not name:
            return error_reply(
                400,
                "bad_request",
                "The Event Grid webhook needs ?functionName=NAME (the Event Grid function).",
            )
        function = self._function(
            name,
            EVENTGRID_TRIGGER,
            "not_an_eventgrid_function",
            "Event Grid cannot deliver to it.",
        )
        if isinstance(function, Reply):
            return function
        kind = (_header(headers, "aeg-event-type") or "Notification").strip().lower()
        if kind not in ("notification", "subscriptionvalidation"):
            return error_reply(
                400,
                "bad_request",
                f"aeg-event-type {_header(headers, 'aeg-event-type')!r} is not one devhost "
                "answers: Notification or SubscriptionValidation.",
            )
        try:
            events = _eventgrid_events(body)
        except ValueError as exc:
            return error_reply(400, "bad_request", f"Not an Event Grid delivery: {exc}")
        if kind == "subscriptionvalidation":
            data = events[0].get_json() if len(events) == 1 else None
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not isinstance(code, str) or not code:
                return error_reply(
                    400,
                    "bad_request",
                    "A SubscriptionValidation delivery is one event whose data has a "
                    "string validationCode.",
                )
            log.info("Event Grid subscription to %s validated", function.function_name)
            return json_reply(200, {"validationResponse": code})
        if function.unsupported:
            return _unsupported_bindings(function)
        return self._deliver(function, events)

    def _deliver(self, function: AppFunction, events: list[func.EventGridEvent]) -> Reply:
        """Call the function once per event, as the host does for a delivered batch. Every
        event is handed over even when an earlier one fails; any failure makes the answer a
        500 that names the failed event ids, so that Event Grid delivers the batch again."""
        failures = []
        for event in events:
            try:
                self._call(function, event)
            except FutureTimeout:
                log.error(
                    "function %s did not finish within %.0f s on event id %s",
                    function.function_name,
                    FUNCTION_TIMEOUT,
                    event.id,
                )
                failures.append(
                    f"event id {event.id}: did not finish within {FUNCTION_TIMEOUT:.0f} s"
                )
            except Exception as exc:
                log.exception("function %s failed on event id %s", function.function_name, event.id)
                failures.append(f"event id {event.id}: {type(exc).__name__}: {exc}")
        if failures:
            return error_reply(
                500,
                "function_failed",
                f"Function {function.function_name} failed on {len(failures)} of "
                f"{len(events)} event(s): {'; '.join(failures)}",
            )
        return Reply(202)

    # -- the Durable HTTP API ----------------------------------------------------------
    def _durable(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        head = segments[0].lower() if segments else ""
        if head == "orchestrators" and len(segments) in (2, 3):
            if method != "POST":
                return durable_error(405, "method_not_allowed", "Start an orchestration with POST.")
            instance_id = segments[2] if len(segments) == 3 else uuid.uuid4().hex
            return self._start(segments[1], instance_id, body)
        if head == "instances" and len(segments) == 1:
            if method == "GET":
                return self._list(query)
            if method == "DELETE":
                return self._purge_by(query)
            return durable_error(405, "method_not_allowed", f"{method} is not allowed here.")
        if head == "instances" and len(segments) == 2:
            if method == "GET":
                return self._status(segments[1], query)
            if method == "DELETE":
                return self._purge(segments[1])
            return durable_error(405, "method_not_allowed", f"{method} is not allowed here.")
        if head == "instances" and len(segments) >= 3 and method == "POST":
            instance_id, operation = segments[1], segments[2].lower()
            if operation == "raiseevent" and len(segments) == 4:
                return self._raise_event(instance_id, segments[3], headers, body)
            if operation == "terminate" and len(segments) == 3:
                return self._terminate(instance_id, query.get("reason", ""))
            if operation in NOT_IMPLEMENTED and len(segments) == 3:
                return self._unsupported(f"{operation} of an instance")
        if head == "entities":
            return self._unsupported("durable entities")
        return Reply(404)

    def _unsupported(self, what: str) -> Reply:
        return durable_error(501, "not_implemented", f"devhost does not implement {what}.")

    def _start(self, name: str, instance_id: str, body: bytes) -> Reply:
        try:
            input_json = _input_json(body)
        except ValueError as exc:
            return durable_error(400, "invalid_json", f"Invalid JSON content: {exc}")
        try:
            self.host.start_new(name, instance_id, input_json)
        except KeyError as exc:
            return durable_error(400, "unknown_orchestrator", str(exc.args[0] if exc.args else exc))
        except InstanceExists as exc:
            return durable_error(409, "instance_exists", str(exc))
        log.info("started %s instance %s", name, instance_id)
        urls = self.management_urls(instance_id)
        payload = {key: urls[key] for key in _CHECK_STATUS_KEYS}
        return json_reply(
            202, payload, {"Location": urls["statusQueryGetUri"], "Retry-After": "10"}
        )

    def _status(self, instance_id: str, query: Mapping[str, str]) -> Reply:
        show_history = _flag(query, "showHistory", False)
        status = self.host.get_status(
            instance_id, show_history=show_history, show_input=_flag(query, "showInput", True)
        )
        if status is None:
            return Reply(404)  # an empty body: the SDK's get_status then has no runtime status
        if show_history and not _flag(query, "showHistoryOutput", False):
            status["historyEvents"] = [
                {k: v for k, v in e.items() if k != "Result"} for e in status["historyEvents"]
            ]
        runtime = status["runtimeStatus"]
        if runtime in IN_PROGRESS:
            location = self._here(instance_id, query)
            return json_reply(202, status, {"Location": location, "Retry-After": "5"})
        if runtime == "Failed" and _flag(query, "returnInternalServerErrorOnFailure", False):
            return json_reply(500, status)
        return json_reply(200, status)

    def _here(self, instance_id: str, query: Mapping[str, str]) -> str:
        if "code" in query:
            return self.status_query_url(instance_id)
        return f"{self.base_url}{RPC_PREFIX}instances/{quote(instance_id, safe='')}"

    def _list(self, query: Mapping[str, str]) -> Reply:
        prefix = query.get("instanceIdPrefix", "")
        wanted = {s.strip().lower() for s in query.get("runtimeStatus", "").split(",") if s.strip()}
        since, until = _time(query.get("createdTimeFrom")), _time(query.get("createdTimeTo"))
        found = []
        for instance_id in self.host.instances():
            if not instance_id.startswith(prefix):
                continue
            status = self.host.get_status(instance_id, show_input=_flag(query, "showInput", True))
            if status is None or (wanted and status["runtimeStatus"].lower() not in wanted):
                continue
            created = _time(status["createdTime"])
            if (since and created and created < since) or (until and created and created > until):
                continue
            found.append(status)
        return json_reply(200, found)

    def _raise_event(
        self, instance_id: str, event_name: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        status = self.host.get_status(instance_id, show_input=False)
        if status is None:
            return Reply(404)
        if status["runtimeStatus"] in TERMINAL:
            return Reply(410)
        media_type = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return durable_error(
                400, "not_json", "Only application/json request content is supported"
            )
        try:
            data_json = _input_json(body)
        except ValueError as exc:
            return durable_error(400, "invalid_json", f"Invalid JSON content: {exc}")
        try:
            self.host.raise_event(instance_id, event_name, data_json)
        except KeyError:
            return Reply(404)
        except InstanceGone:
            return Reply(410)
        return Reply(202)

    def _purge(self, instance_id: str) -> Reply:
        """DELETE instances/{id}: 404 for an unknown instance, else 200 with the count (the
        extension's HandleDeleteHistoryByIdRequestAsync)."""
        if self.host.get_status(instance_id, show_input=False) is None:
            return Reply(404)
        deleted = self.host.purge(instance_id)
        log.info("purged instance %s", instance_id)
        return json_reply(200, {"instancesDeleted": deleted})

    def _purge_by(self, query: Mapping[str, str]) -> Reply:
        """DELETE instances/?createdTimeFrom=...[&createdTimeTo=...][&runtimeStatus=...]: 400
        without createdTimeFrom, 404 when nothing was deleted, else 200 with the count (the
        extension's HandleDeleteHistoryWithFiltersRequestAsync)."""
        since = _time(query.get("createdTimeFrom"))
        if since is None:
            return durable_error(
                400, "bad_request", "Please provide value for 'createdTimeFrom' parameter."
            )
        statuses = [s.strip() for s in query.get("runtimeStatus", "").split(",") if s.strip()]
        deleted = self.host.purge_by(
            since,
            _time(query.get("createdTimeTo")),
            [_RUNTIME_STATUSES.get(s.lower(), s) for s in statuses] or None,
        )
        if deleted == 0:
            return Reply(404)
        log.info("purged %d instance(s) created since %s", deleted, since.isoformat())
        return json_reply(200, {"instancesDeleted": deleted})

    def _terminate(self, instance_id: str, reason: str) -> Reply:
        try:
            self.host.terminate(instance_id, reason)
        except KeyError:
            return Reply(404)
        except InstanceGone:
            return Reply(410)
        log.info("terminated instance %s: %s", instance_id, reason)
        return Reply(202)


_RUNTIME_STATUSES = {
    s.lower(): s
    for s in (
        "Running",
        "Pending",
        "Completed",
        "Failed",
        "Terminated",
        "Canceled",
        "ContinuedAsNew",
        "Suspended",
    )
}
_CHECK_STATUS_KEYS = (
    "id",
    "statusQueryGetUri",
    "sendEventPostUri",
    "terminatePostUri",
    "purgeHistoryDeleteUri",
    "restartPostUri",
    "suspendPostUri",
    "resumePostUri",
)


def _input_json(body: bytes) -> str | None:
    """The JSON text of an orchestration input or event payload. The SDK client sends the
    value JSON-encoded twice (it serializes the input itself, then aiohttp encodes that
    string again), so one decode leaves the JSON text; a client that sends the value encoded
    once gets it re-encoded here. An empty body is no input."""
    text = body.decode("utf-8").strip()
    if not text:
        return None
    value = json.loads(text)
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except ValueError:
            pass
    return json.dumps(value)


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean query parameter the way .NET's bool.TryParse reads it ("True" from the
    Python SDK, "true" from curl); anything else leaves the default."""
    value = query.get(name, "").strip().lower()
    return {"true": True, "false": False}.get(value, default)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        from dateutil.parser import isoparse

        moment = isoparse(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _unsupported_bindings(function: AppFunction) -> Reply:
    return error_reply(
        501,
        "binding_not_supported",
        f"Function {function.function_name} uses bindings devhost cannot provide: "
        f"{', '.join(function.unsupported)}.",
    )


_EVENT_FIELDS = ("id", "subject", "eventType", "eventTime")  # required, strings
_OPTIONAL_FIELDS = ("topic", "dataVersion", "metadataVersion")  # strings when present


def _eventgrid_events(body: bytes) -> list[func.EventGridEvent]:
    """The events of an Event Grid delivery: a JSON array of Event Grid schema events (a
    single object is taken as a batch of one), each as the worker hands it to a function.
    Raises ValueError saying what is wrong, before any event is delivered."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the body is not JSON ({exc}).") from None
    raws = [value] if isinstance(value, dict) else value
    if not isinstance(raws, list):
        raise ValueError(f"the body is {_json_type(value)}, not an array of events.")
    if not raws:
        raise ValueError("the array holds no events.")
    events = []
    for position, raw in enumerate(raws):
        if not isinstance(raw, dict):
            raise ValueError(f"event {position} is {_json_type(raw)}, not an object.")
        for name in _EVENT_FIELDS + _OPTIONAL_FIELDS:
            if (name in _EVENT_FIELDS or name in raw) and not isinstance(raw.get(name), str):
                shown = _json_type(raw[name]) if name in raw else "missing"
                raise ValueError(f"event {position}: {name!r} is {shown}, not a string.")
        event_time = _time(raw["eventTime"])
        if event_time is None:
            raise ValueError(
                f"event {position}: eventTime {raw['eventTime']!r} is not an ISO 8601 time."
            )
        events.append(
            func.EventGridEvent(
                id=raw["id"],
                data=raw.get("data"),
                topic=raw.get("topic", ""),
                subject=raw["subject"],
                event_type=raw["eventType"],
                event_time=event_time,
                data_version=raw.get("dataVersion", ""),
            )
        )
    return events


def _json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "an array", str: "a string", int: "a number"}
    return kinds.get(type(value), "a number")


def _to_reply(function_name: str, result: Any) -> Reply:
    """The function's answer as the worker's http output converter makes it."""
    if isinstance(result, func.HttpResponse):
        headers = {str(k): str(v) for k, v in result.headers.items()}
        if not any(k.lower() == "content-type" for k in headers):
            mimetype = result.mimetype or "text/plain"
            text = mimetype.startswith("text/") and result.charset
            headers["Content-Type"] = f"{mimetype}; charset={result.charset}" if text else mimetype
        return Reply(result.status_code, result.get_body() or b"", headers)
    if result is None:
        return Reply(204)
    if isinstance(result, str | bytes):
        body = result.encode() if isinstance(result, str) else result
        return Reply(200, body, {"Content-Type": "text/plain; charset=utf-8"})
    return error_reply(
        500,
        "function_failed",
        f"Function {function_name} returned {type(result).__name__}, not an HttpResponse.",
    )


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
