"""The app's triggered functions as the Functions host sees them (trigger, Durable client
arguments, bindings devhost cannot provide, HTTP routes) and how the worker calls them.

Every async function runs on ONE event loop per process (the SDK keeps one aiohttp session
per process, bound to the loop that created it), as in the Python worker."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import azure.functions as func

from devhost.frontend.messages import Reply, error_reply

log = logging.getLogger(__name__)

HTTP_TRIGGER, EVENTGRID_TRIGGER, TIMER_TRIGGER = "httpTrigger", "eventGridTrigger", "timerTrigger"
SERVED_TRIGGERS = (HTTP_TRIGGER, EVENTGRID_TRIGGER, TIMER_TRIGGER)  # what devhost invokes
FUNCTION_TIMEOUT = 230.0  # seconds: Azure's load balancer ends an HTTP request after 230 s

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


class Out:
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


EVENT_LOOP = _EventLoop()


def call_function(
    function: AppFunction, trigger_value: Any, client_binding: Callable[[], str], **outputs: Any
) -> Any:
    """Call one function of the app as the worker does: the trigger's value, a client
    binding for each Durable client argument, a context if it takes one. Async functions
    run on the process's one event loop and are given FUNCTION_TIMEOUT (FutureTimeout
    when they overrun); sync ones run in the calling thread. Raises what it raises."""
    kwargs: dict[str, Any] = {function.trigger_arg: trigger_value, **outputs}
    for name in function.client_args:
        kwargs[name] = client_binding()
    if function.wants_context:
        kwargs["context"] = _InvocationContext(str(uuid.uuid4()), function.function_name)
    if function.is_async:
        return EVENT_LOOP.run(function.user_function(**kwargs), timeout=FUNCTION_TIMEOUT)
    return function.user_function(**kwargs)


def unsupported_bindings(function: AppFunction) -> Reply:
    return error_reply(
        501,
        "binding_not_supported",
        f"Function {function.function_name} uses bindings devhost cannot provide: "
        f"{', '.join(function.unsupported)}.",
    )


def to_reply(function_name: str, result: Any) -> Reply:
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
