"""The app's functions as the host triggers them over HTTP: HTTP-triggered functions under
/api/, Event Grid deliveries to the Event Grid webhook, and timer-triggered functions run by
hand through the admin API. Function-level keys are not enforced, as with Core Tools."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import azure.functions as func

from devhost.frontend.functions import (
    EVENTGRID_TRIGGER,
    FUNCTION_TIMEOUT,
    TIMER_TRIGGER,
    AppFunction,
    AppRoute,
    Out,
    app_functions,
    app_routes,
    call_function,
    to_reply,
    unsupported_bindings,
)
from devhost.frontend.messages import Incoming, Reply, error_reply, json_reply, parse_time

log = logging.getLogger(__name__)


class AppTriggers:
    """The app's triggered functions, called as the host calls them for an HTTP request."""

    def __init__(
        self,
        functions: Iterable[Any],
        client_binding: Callable[[], str],
        base_url: Callable[[], str],
    ) -> None:
        functions = list(functions)
        self.routes = app_routes(functions)
        self.functions = app_functions(functions)
        self._client_binding = client_binding
        self._base_url = base_url  # where the app is served (for a request without a Host)

    def call(self, function: AppFunction, trigger_value: Any, **outputs: Any) -> Any:
        return call_function(function, trigger_value, self._client_binding, **outputs)

    # -- HTTP-triggered functions ----------------------------------------------------------
    def http(self, request: Incoming, path: str) -> Reply:
        """The request for /api/{path}: the most specific route that matches and allows the
        method; 404 when none matches, 405 naming the methods when only the method is wrong."""
        matched = [(r, params) for r in self.routes if (params := r.match(path)) is not None]
        if not matched:
            return error_reply(404, "not_found", f"No function is served at /api/{path}.")
        for route, params in matched:
            if route.allows(request.method):
                return self._invoke(route, params, request)
        allowed = sorted({m for route, _ in matched for m in route.methods})
        reply = error_reply(
            405,
            "method_not_allowed",
            f"/api/{path} answers {', '.join(allowed)}, not {request.method}.",
        )
        reply.headers["Allow"] = ", ".join(allowed)
        return reply

    def _invoke(self, route: AppRoute, params: dict[str, str], request: Incoming) -> Reply:
        if route.unsupported:
            return unsupported_bindings(route)
        host_header = request.header("host") or urlsplit(self._base_url()).netloc
        trigger = func.HttpRequest(
            method=request.method,
            url=f"http://{host_header}{request.target}",
            headers=dict(request.headers),
            params=request.query,
            route_params=params,
            body=request.body,
        )
        out = Out() if route.out_arg else None
        outputs = {route.out_arg: out} if route.out_arg else {}
        try:
            result = self.call(route, trigger, **outputs)
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
        return to_reply(route.function_name, result)

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

    # -- running a non-HTTP function by hand -----------------------------------------------
    def admin_invoke(self, request: Incoming, name: str) -> Reply:
        """POST /admin/functions/{name} {"input": ...}: run a timer-triggered function now, as
        the Functions host's admin API does (202 when it has run; Azure needs the master key,
        Core Tools and devhost do not). The timer's value is decoded from the worker's JSON
        form by the worker's own TimerRequestConverter."""
        if request.method != "POST":
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
            self.call(function, timer)
        except Exception as exc:
            log.exception("function %s failed", function.function_name)
            return error_reply(
                500, "function_failed", f"Function {function.function_name} raised {exc!r}"
            )
        return Reply(202)

    # -- the Event Grid webhook ------------------------------------------------------------
    def eventgrid(self, request: Incoming) -> Reply:
        if request.method != "POST":
            reply = error_reply(405, "method_not_allowed", "Event Grid delivers with POST.")
            reply.headers["Allow"] = "POST"
            return reply
        name = request.query.get("functionName", "").strip()
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
        kind = (request.header("aeg-event-type") or "Notification").strip().lower()
        if kind not in ("notification", "subscriptionvalidation"):
            return error_reply(
                400,
                "bad_request",
                f"aeg-event-type {request.header('aeg-event-type')!r} is not one devhost "
                "answers: Notification or SubscriptionValidation.",
            )
        try:
            events = eventgrid_events(request.body)
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
            return unsupported_bindings(function)
        return self._deliver(function, events)

    def _deliver(self, function: AppFunction, events: list[func.EventGridEvent]) -> Reply:
        """Call the function once per event, as the host does for a delivered batch. Every
        event is handed over even when an earlier one fails; any failure makes the answer a
        500 that names the failed event ids, so that Event Grid delivers the batch again."""
        failures = []
        for event in events:
            try:
                self.call(function, event)
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


_EVENT_FIELDS = ("id", "subject", "eventType", "eventTime")  # required, strings
_OPTIONAL_FIELDS = ("topic", "dataVersion", "metadataVersion")  # strings when present


def eventgrid_events(body: bytes) -> list[func.EventGridEvent]:
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
        event_time = parse_time(raw["eventTime"])
        if event_time is None:
            raise ValueError(
                f"event {position}: eventTime {raw['eventTime']!r} is not an ISO 8601 time."
            )
        events.append(
            func.EventGridEvent(
                id=raw["id"],
                data=cast(dict[str, object], raw.get("data")),  # as the host passes it
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
