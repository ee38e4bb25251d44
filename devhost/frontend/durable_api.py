"""The Durable extension's HTTP API for one DurableHost: the local RPC API the SDK client
calls (/durabletask/, loopback, no key) and the same operations for operators
(/runtime/webhooks/durabletask/, with the system key), their management URLs and the
durableClient binding data that points the SDK at them.

    POST orchestrators/{name}[/{instanceId}]  start (202 + management URLs; 400 unknown
          [?version=V]                        orchestrator; 409 instance already running);
                                              version: the instance's orchestration version
                                              (default: host.json's defaultVersion)
    GET  instances/{instanceId}               status (202 pending/running, 200 finished,
                                              404 unknown with an empty body)
    GET  instances/                           instances (instanceIdPrefix, runtimeStatus,
                                              createdTimeFrom/To), 100 a page (top) with
                                              x-ms-continuation-token when there are more
    POST instances/{id}/raiseEvent/{event}    202 / 404 / 410 (finished) / 400 (not JSON)
    POST instances/{id}/terminate?reason=...  202 / 404 / 410
    DELETE instances/{instanceId}             purge one instance: 200 {instancesDeleted} / 404
    DELETE instances/?createdTimeFrom=...     purge by creation time and runtimeStatus: 200 /
                                              404 (nothing deleted) / 400 (no createdTimeFrom)
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import quote, unquote

from devhost.durable import TERMINAL, DurableHost, InstanceExists, InstanceGone
from devhost.frontend.messages import (
    Incoming,
    Reply,
    durable_error,
    error_reply,
    json_reply,
    parse_time,
)

log = logging.getLogger(__name__)

RPC_PREFIX = "/durabletask/"
WEBHOOK_PREFIX = "/runtime/webhooks/durabletask/"
CONNECTION_NAME = "Storage"
IN_PROGRESS = ("Pending", "Running", "ContinuedAsNew", "Suspended")
NOT_IMPLEMENTED = ("rewind", "restart", "suspend", "resume")
# Listing instances: the extension's page size and its continuation header.
PAGE_SIZE = 100
CONTINUATION = "x-ms-continuation-token"


class DurableApi:
    """The Durable HTTP API of one DurableHost, served at ``base_url()`` with ``system_key``."""

    def __init__(self, host: DurableHost, system_key: str, base_url: Callable[[], str]) -> None:
        self.host = host
        self.system_key = system_key
        self._base_url = base_url

    # -- URLs ------------------------------------------------------------------------------
    def management_urls(self, instance_id: str, base_url: str | None = None) -> dict[str, str]:
        """The extension's management URLs of one instance (with the system key)."""
        base = (base_url or self._base_url()).rstrip("/")
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

    def client_binding(self) -> str:
        """The durableClient binding data the extension hands the worker, as a JSON string
        (the SDK's middleware turns it into a DurableOrchestrationClient)."""
        base = self._base_url()
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

    # -- dispatch --------------------------------------------------------------------------
    def operator(self, request: Incoming, path: str) -> Reply:
        """A request to the operators' API (``path`` below WEBHOOK_PREFIX): 401 without the
        system key, 403 with another key."""
        given = request.query.get("code") or request.header("x-functions-key")
        if not given:
            return error_reply(
                401,
                "unauthorized",
                "The Durable management API needs the system key: add ?code=KEY "
                "(or an x-functions-key header); `python -m devhost start` prints it.",
            )
        if not hmac.compare_digest(given.encode(), self.system_key.encode()):
            return error_reply(403, "forbidden", "The key given is not this host's system key.")
        return self.answer(request, path)

    def answer(self, request: Incoming, path: str) -> Reply:
        """A request to the API (``path`` below RPC_PREFIX or WEBHOOK_PREFIX, escapes kept:
        each segment is unescaped on its own)."""
        method, query = request.method, request.query
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        head = segments[0].lower() if segments else ""
        if head == "orchestrators" and len(segments) in (2, 3):
            if method != "POST":
                return durable_error(405, "method_not_allowed", "Start an orchestration with POST.")
            instance_id = segments[2] if len(segments) == 3 else uuid.uuid4().hex
            return self._start(segments[1], instance_id, request.body, query.get("version"))
        if head == "instances" and len(segments) == 1:
            if method == "GET":
                return self._list(query, request.header(CONTINUATION) or "")
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
                return self._raise_event(instance_id, segments[3], request)
            if operation == "terminate" and len(segments) == 3:
                return self._terminate(instance_id, query.get("reason", ""))
            if operation in NOT_IMPLEMENTED and len(segments) == 3:
                return _unsupported(f"{operation} of an instance")
        if head == "entities":
            return _unsupported("durable entities")
        return Reply(404)

    # -- operations ------------------------------------------------------------------------
    def _start(self, name: str, instance_id: str, body: bytes, version: str | None) -> Reply:
        try:
            input_json = _input_json(body)
        except ValueError as exc:
            return durable_error(400, "invalid_json", f"Invalid JSON content: {exc}")
        try:
            self.host.start_new(name, instance_id, input_json, version or None)
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
            return self.management_urls(instance_id)["statusQueryGetUri"]
        return f"{self._base_url()}{RPC_PREFIX}instances/{quote(instance_id, safe='')}"

    def _list(self, query: Mapping[str, str], continuation: str) -> Reply:
        """Instances by page, as the extension lists them: at most ``top`` (PAGE_SIZE, 100,
        when not given) an answer, and the x-ms-continuation-token header when there are
        more (the Python SDK does not follow it: its get_status_by sees the first page)."""
        top = int(query["top"]) if query.get("top", "").isdigit() and int(query["top"]) else 0
        start = int(continuation) if continuation.isdigit() else 0
        prefix = query.get("instanceIdPrefix", "")
        wanted = {s.strip().lower() for s in query.get("runtimeStatus", "").split(",") if s.strip()}
        since, until = (
            parse_time(query.get("createdTimeFrom")),
            parse_time(query.get("createdTimeTo")),
        )
        found = []
        for instance_id in self.host.instances():
            if not instance_id.startswith(prefix):
                continue
            status = self.host.get_status(instance_id, show_input=_flag(query, "showInput", True))
            if status is None or (wanted and status["runtimeStatus"].lower() not in wanted):
                continue
            created = parse_time(status["createdTime"])
            if (since and created and created < since) or (until and created and created > until):
                continue
            found.append(status)
        size = top or PAGE_SIZE
        headers = {CONTINUATION: str(start + size)} if len(found) > start + size else {}
        return json_reply(200, found[start : start + size], headers)

    def _raise_event(self, instance_id: str, event_name: str, request: Incoming) -> Reply:
        status = self.host.get_status(instance_id, show_input=False)
        if status is None:
            return Reply(404)
        if status["runtimeStatus"] in TERMINAL:
            return Reply(410)
        media_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return durable_error(
                400, "not_json", "Only application/json request content is supported"
            )
        try:
            data_json = _input_json(request.body)
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
        since = parse_time(query.get("createdTimeFrom"))
        if since is None:
            return durable_error(
                400, "bad_request", "Please provide value for 'createdTimeFrom' parameter."
            )
        statuses = [s.strip() for s in query.get("runtimeStatus", "").split(",") if s.strip()]
        deleted = self.host.purge_by(
            since,
            parse_time(query.get("createdTimeTo")),
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


def _unsupported(what: str) -> Reply:
    return durable_error(501, "not_implemented", f"devhost does not implement {what}.")


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
