"""Structured telemetry: one record per stage per batch at INFO, per-file detail at DEBUG,
with the same field names in every stage (docs/telemetry.md lists them).

All code logs through stdlib logging. Exporting is configuration (PIPELINE_LOG_EXPORTER):

- ``functions`` (default): the Functions Python worker sends our records to Application
  Insights as traces. It forwards the message only (not ``extra``) and only INFO and above
  (unless PYTHON_ENABLE_DEBUG_LOGGING=1), so every structured record carries its fields as
  JSON at the end of its message: KQL reads them with parse_json (docs/telemetry.md).
- ``opencensus``: opencensus-ext-azure's AzureLogHandler on the app's loggers, with the
  fields as customDimensions (APPLICATIONINSIGHTS_CONNECTION_STRING). Azure Monitor retired
  OpenCensus support on 2024-09-30; it still sends, unsupported.
- ``opentelemetry``: the supported Azure Monitor OpenTelemetry distro
  (azure-monitor-opentelemetry), as Microsoft documents it for Python Functions: host.json
  ``telemetryMode`` OpenTelemetry and PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true, with
  which the Functions worker calls ``configure_azure_monitor()`` once per worker process, its
  exporter signing in with the identity APPLICATIONINSIGHTS_AUTHENTICATION_STRING names. The
  app's loggers then send through that one handler and stop propagating to the worker's log
  forwarding, so no record is counted twice; configured here (once, with the identity's
  credential) only where the worker did not. ``extra`` attributes become customDimensions.

The run context (dataset, instance id, stage) is set once per activity (``run_context``)
and added to every record made while it runs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

EXPORTERS = ("functions", "opencensus", "opentelemetry")
# The app's own loggers: an exporter is attached to these, never to the root logger (the
# worker's handler is there already, and other libraries' chatter is not ours to export).
APP_LOGGERS = ("shared", "activities", "orchestrators", "api")
# The fields of each stage's INFO record (one per batch for validate and generate, one per
# run for the others), as documented in docs/telemetry.md; tests/test_telemetry.py holds
# the code and the document to this list.
STAGE_RECORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "scan": ("scan done", ("file_count", "bytes", "source", "seconds")),
    "validate": (
        "validate batch done",
        ("batch", "file_count", "reused", "bytes", "requests", "seconds", "verdicts", "findings"),
    ),
    "gate": ("gate done", ("file_count", "unsuitable", "findings", "seconds")),
    "generate": (
        "generate batch done",
        ("batch", "file_count", "reused", "bytes", "reference_bytes", "libraries", "seconds"),
    ),
    "combine": (
        "combine done",
        (
            "source_count",
            "concat_dim",
            "dims",
            "store_url",
            "store_bytes",
            "peak_memory_bytes",
            "memory_limit_bytes",
            "mode",
            "chunks",
            "seconds",
        ),
    ),
    "verify": ("verify done", ("store_url", "mode", "file_count", "values_compared", "seconds")),
    "register": ("register done", ("item_id", "item_url", "store_url", "seconds")),
}
# Per-file records, at DEBUG (not sent by the Functions worker unless
# PYTHON_ENABLE_DEBUG_LOGGING=1): a 10,000-file run does not flood Application Insights.
FILE_RECORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "validate": ("file validated", ("url", "verdict", "codes", "bytes", "reused", "seconds")),
    "generate": ("file references", ("url", "reused", "reference_bytes", "seconds")),
}

_RECORD_ATTRIBUTES = frozenset(
    {*vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", (), None)), "message", "asctime"}
)
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "pipeline_run_context", default=None
)


@contextmanager
def run_context(**fields: Any) -> Iterator[None]:
    """Fields added to every structured record made inside (an activity's run)."""
    current = _CONTEXT.get() or {}
    token = _CONTEXT.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context_fields() -> dict[str, Any]:
    return dict(_CONTEXT.get() or {})


def emit(
    logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any
) -> dict[str, Any]:
    """Log one structured record: ``message {json fields}``, with the fields also as
    record attributes and as opencensus custom_dimensions. Returns the fields sent."""
    if not logger.isEnabledFor(level):
        return {}
    merged = {**context_fields(), **{k: v for k, v in fields.items() if v is not None}}
    text = json.dumps(merged, default=str, sort_keys=True, separators=(",", ":"))
    # A field named like a LogRecord attribute (module, name, ...) stays in the JSON and the
    # custom dimensions only: logging refuses to overwrite those attributes.
    attributes = {k: v for k, v in merged.items() if k not in _RECORD_ATTRIBUTES}
    extra = {**attributes, "custom_dimensions": merged, "structured": True}
    logger.log(level, "%s %s", message, text, extra=extra, stacklevel=2)
    return merged


_ATTACHED: list[tuple[logging.Logger, logging.Handler]] = []


def configure_from_env(environ: Mapping[str, str] | None = None) -> logging.Handler | None:
    """What the Function App does when it loads: the exporter PIPELINE_LOG_EXPORTER names.
    A configuration that cannot work is logged and the worker's own path is used: telemetry
    must never stop the app from loading."""
    env = os.environ if environ is None else environ
    exporter = (env.get("PIPELINE_LOG_EXPORTER") or "functions").strip().lower()
    try:
        return configure_exporter(
            exporter, env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", ""), env
        )
    except (ValueError, ImportError) as exc:
        logging.getLogger(__name__).error("telemetry exporter not configured: %s", exc)
        return None


def configure_exporter(
    exporter: str, connection_string: str, environ: Mapping[str, str] | None = None
) -> logging.Handler | None:
    """Attach the configured exporter to the app's loggers (once); None for ``functions``.
    Raises ValueError naming the setting when the configuration cannot work."""
    if exporter not in EXPORTERS:
        raise ValueError(
            f"PIPELINE_LOG_EXPORTER is {exporter!r}; it must be one of {', '.join(EXPORTERS)}."
        )
    if exporter == "functions":
        return None
    if not connection_string:
        raise ValueError(
            f"PIPELINE_LOG_EXPORTER={exporter} needs APPLICATIONINSIGHTS_CONNECTION_STRING."
        )
    if _ATTACHED:
        return _ATTACHED[0][1]
    if exporter == "opencensus":
        from opencensus.ext.azure.log_exporter import AzureLogHandler

        handler: logging.Handler = AzureLogHandler(connection_string=connection_string)
        handler.setLevel(logging.INFO)
        for name in APP_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            # The worker forwards these records too: once is enough (and carries the fields).
            logger.propagate = False
            _ATTACHED.append((logger, handler))
        return handler
    handler = opentelemetry_handler(connection_string, os.environ if environ is None else environ)
    _attach(handler)
    return handler


def _attach(handler: logging.Handler) -> None:
    """The app's loggers send through ``handler`` alone: they stop propagating to the root
    logger, where the Functions worker forwards records to the host (which would send them
    to Application Insights a second time)."""
    for name in APP_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
        _ATTACHED.append((logger, handler))


# The logger configure_azure_monitor attaches its handler to when this module configures it:
# nothing logs there; the handler is moved to the app's loggers.
OWN_OTEL_LOGGER = "virtual_zarr_pipeline.opentelemetry"
AZURE_SDK_LOGGER = "azure"


def opentelemetry_handler(connection_string: str, env: Mapping[str, str]) -> logging.Handler:
    """The Azure Monitor distro's log handler, configured once per process. The Functions
    worker configures it itself when PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is true
    (azure_functions_runtime: ``initialize_azure_monitor`` at worker start, on the logger
    PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME, the root logger by default): that handler is
    reused. Otherwise (the setting off, an older worker, the command line) it is configured
    here, logs only, with the app identity's credential."""
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        raise ValueError(
            "PIPELINE_LOG_EXPORTER=opentelemetry needs the azure-monitor-opentelemetry "
            "package (requirements.txt): install the app's requirements (docs/telemetry.md)."
        ) from None
    # The Azure SDKs log at INFO about every request, token and transmission, the
    # exporter's own included: with the distro's handler on the root logger (the worker's
    # default) each export would log records that are exported in turn, for ever. Their
    # warnings and errors still go (as host.json keeps the host's own at Warning).
    logging.getLogger(AZURE_SDK_LOGGER).setLevel(logging.WARNING)
    worker_logger = logging.getLogger(env.get("PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME", ""))
    configured = _otel_handler(worker_logger) or _otel_handler(logging.getLogger(OWN_OTEL_LOGGER))
    if configured is not None:
        return configured
    configure_azure_monitor(
        connection_string=connection_string,
        credential=identity_credential(env),
        logger_name=OWN_OTEL_LOGGER,
        disable_tracing=True,
        disable_metrics=True,
    )
    handler = _otel_handler(logging.getLogger(OWN_OTEL_LOGGER))
    if handler is None:
        raise ValueError("configure_azure_monitor attached no log handler (docs/telemetry.md).")
    return handler


def _otel_handler(logger: logging.Logger) -> logging.Handler | None:
    """The OpenTelemetry log handler on ``logger``, if it has one."""
    kinds: list[type] = []
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler

        kinds.append(LoggingHandler)
    except ImportError:
        pass
    try:
        from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler

        kinds.append(SdkLoggingHandler)
    except ImportError:
        pass
    return next((h for h in logger.handlers if isinstance(h, tuple(kinds))), None)


def identity_credential(env: Mapping[str, str]) -> Any:
    """The managed identity Application Insights ingestion is authenticated with: the one
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING (``ClientId=<id>;Authorization=AAD``) or
    AZURE_CLIENT_ID names; None (the connection string's key) when neither is set."""
    fields = dict(
        part.split("=", 1)
        for part in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").split(";")
        if "=" in part
    )
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    client_id = fields.get("clientid") or env.get("AZURE_CLIENT_ID", "").strip()
    if fields.get("authorization") != "AAD" and not client_id:
        return None
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id or None)


def detach_exporter() -> None:
    """Undo configure_exporter (tests; a worker that reloads its settings)."""
    while _ATTACHED:
        logger, handler = _ATTACHED.pop()
        logger.removeHandler(handler)
        logger.propagate = True
    logging.getLogger(__name__).debug("exporter detached")
