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
  (azure-monitor-opentelemetry, not in requirements.txt: add it to use this), which also
  reads ``extra`` attributes as customDimensions.

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
        return configure_exporter(exporter, env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", ""))
    except (ValueError, ImportError) as exc:
        logging.getLogger(__name__).error("telemetry exporter not configured: %s", exc)
        return None


def configure_exporter(exporter: str, connection_string: str) -> logging.Handler | None:
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
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        raise ValueError(
            "PIPELINE_LOG_EXPORTER=opentelemetry needs the azure-monitor-opentelemetry "
            "package: add it to requirements.txt (docs/telemetry.md)."
        ) from None
    for name in APP_LOGGERS:
        configure_azure_monitor(connection_string=connection_string, logger_name=name)
    return None


def detach_exporter() -> None:
    """Undo configure_exporter (tests; a worker that reloads its settings)."""
    while _ATTACHED:
        logger, handler = _ATTACHED.pop()
        logger.removeHandler(handler)
        logger.propagate = True
    logging.getLogger(__name__).debug("exporter detached")
