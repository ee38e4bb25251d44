"""PIPELINE_LOG_EXPORTER=opentelemetry as Microsoft documents it for Python Functions, counted
at the exporter: every record of ours reaches Application Insights once, signed with the
app's identity, and none reaches the worker's forwarding to the host as well.

What runs is real: the Functions worker's own start-up code (azure_functions_runtime's
``initialize_azure_monitor``, from .worker/, which calls ``configure_azure_monitor`` when
PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is true), the Azure Monitor distro and exporter,
and a managed identity token from App Service's identity endpoint (IDENTITY_ENDPOINT and
IDENTITY_HEADER, as App Service sets them). Both the ingestion endpoint and the identity
endpoint are a server on loopback here, over TLS with a certificate made for the test (the
exporter's bearer-token policy refuses plain http, as it would in Azure), which counts what
arrives. Each case runs in a child process: OpenTelemetry's logger provider is process-wide
and cannot be unset."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devhost.worker import worker_dir
from tests.helpers import missing_tool

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "token-of-the-app-identity"
CLIENT_ID = "00000000-0000-0000-0000-00000000c1d0"
RECORDS = 7

CHILD = r"""
import faulthandler, json, logging, os, sys
faulthandler.dump_traceback_later(60, exit=True)  # a hang shows where, in the test's output
sys.path.insert(0, os.environ["WORKER_DIR"])
if os.environ.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY") == "true":
    from azure_functions_runtime.otel import initialize_azure_monitor
    initialize_azure_monitor()  # what the worker does at start-up with that setting

host = []  # stands in for the worker's handler that forwards records to the host


class Forward(logging.Handler):
    def emit(self, record):
        host.append(record.getMessage())


logging.getLogger().addHandler(Forward())
logging.getLogger().setLevel(logging.INFO)
complaints = logging.StreamHandler(sys.stderr)  # the SDKs' warnings, in the test's output
complaints.setLevel(logging.WARNING)
logging.getLogger("azure").addHandler(complaints)

from shared.model import telemetry

first = telemetry.configure_from_env()
second = telemetry.configure_exporter(
    "opentelemetry", os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"]
)
assert first is second, "configured twice"
for i in range(int(os.environ["RECORDS"]) - 1):
    telemetry.emit(logging.getLogger("shared.stages.scan"), "scan done", file_count=i)
telemetry.emit(logging.getLogger("api.events"), "event routed: x", event_reason="routed")
from opentelemetry._logs import get_logger_provider

get_logger_provider().force_flush()
handlers = {
    id(h)
    for name in [None, *telemetry.APP_LOGGERS, telemetry.OWN_OTEL_LOGGER]
    for h in logging.getLogger(name).handlers
    if type(h).__name__ == "LoggingHandler"
}
print(json.dumps({"host": [m for m in host if '"stage"' in m or "event routed" in m],
                  "otel_handlers": len(handlers)}))
"""


class Received:
    def __init__(self) -> None:
        self.certificate = Path()
        self.envelopes: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.token_requests: list[str] = []


def loopback_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "loopback.pem", folder / "loopback.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def endpoints(tmp_path) -> Iterator[tuple[str, Received]]:
    received = Received()
    cert_path, key_path = loopback_certificate(tmp_path)
    received.certificate = cert_path

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # App Service's managed identity endpoint
            received.token_requests.append(self.path)
            body = json.dumps(
                {
                    "access_token": TOKEN,
                    "expires_on": "4102444800",
                    "resource": "https://monitor.azure.com/",
                    "token_type": "Bearer",
                    "client_id": CLIENT_ID,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # Application Insights ingestion (v2.1/track)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            text = raw.decode()
            items = (
                json.loads(text)
                if text.lstrip().startswith("[")
                else [json.loads(line) for line in text.splitlines() if line.strip()]
            )
            received.envelopes.extend(items)
            received.authorizations.append(self.headers.get("Authorization") or "")
            body = json.dumps(
                {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def run_child(
    base: str, tmp_path: Path, worker_configures: bool, certificate: Path
) -> dict[str, Any]:
    try:
        import azure.monitor.opentelemetry  # noqa: F401
    except ImportError:
        missing_tool("azure-monitor-opentelemetry is not installed (requirements.txt)")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "WORKER_DIR": str(worker_dir()),
        "RECORDS": str(RECORDS),
        "PIPELINE_LOG_EXPORTER": "opentelemetry",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint={base}/;LiveEndpoint={base}/"
        ),
        # What infra/modules/function-app.bicep sets: the identity signs telemetry.
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={CLIENT_ID};Authorization=AAD",
        "AZURE_CLIENT_ID": CLIENT_ID,
        # App Service's managed identity endpoint, here on loopback.
        "IDENTITY_ENDPOINT": f"{base}/msi/token",
        "IDENTITY_HEADER": "header-secret",
        # No usage reporting to Microsoft and no other signal from a test.
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        # The test's certificate is the one trusted (azure-core's transport is requests).
        "REQUESTS_CA_BUNDLE": str(certificate),
        "SSL_CERT_FILE": str(certificate),
    }
    if worker_configures:
        env["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(received: Received) -> list[dict[str, Any]]:
    found = []
    for envelope in received.envelopes:
        base = (envelope.get("data") or {}).get("baseData") or {}
        message = str(base.get("message") or "")
        if message.startswith(("scan done", "event routed")):
            found.append(base)
    return found


@pytest.mark.parametrize(
    "worker_configures",
    [True, False],
    ids=["the worker configures the distro", "the app configures it"],
)
def test_every_record_reaches_the_exporter_once_signed_by_the_app_identity(
    endpoints, tmp_path, worker_configures
):
    base, received = endpoints
    result = run_child(base, tmp_path, worker_configures, received.certificate)
    sent = ours(received)
    assert len(sent) == RECORDS, [s.get("message") for s in sent]
    assert result["host"] == []  # nothing forwarded to the host as well
    assert result["otel_handlers"] == 1  # one distro handler in the process, not one per logger
    assert received.authorizations and all(a == f"Bearer {TOKEN}" for a in received.authorizations)
    assert any(CLIENT_ID in path for path in received.token_requests)
    scan = next(s for s in sent if s["message"].startswith("scan done"))
    assert "file_count" in scan["properties"]  # extra attributes as customDimensions


def test_the_opentelemetry_option_deploys_microsofts_python_settings_and_no_other_does():
    """infra/: PIPELINE_LOG_EXPORTER=opentelemetry adds host.json's telemetryMode (as an app
    setting override) and PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY; the other exporters
    deploy neither, and telemetry is signed by the identity in every case."""
    from tests.test_infra import bicep, deployed_settings

    template = bicep("modules/function-app.bicep")
    extra = template["variables"]["openTelemetrySettings"]["value"]["operator"]["operands"]
    condition = extra["condition"]["operator"]
    assert condition["type"] == "equals"
    assert condition["operands"] == {"operand_1": "logExporter", "operand_2": "opentelemetry"}
    assert {s["name"]: s["value"] for s in extra["true_value"]} == {
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "AzureFunctionsJobHost__telemetryMode": "OpenTelemetry",
    }
    assert extra["false_value"] == []
    site = template["resources"]["app"]["config"]["properties"]["siteConfig"]
    assert site["appSettings"]["function"]["parameters"] == {
        "arg_1": "appSettings",
        "arg_2": "openTelemetrySettings",
    }
    for exporter in ("functions", "opencensus", "opentelemetry"):
        settings = deployed_settings(logExporter=exporter)
        assert settings["PIPELINE_LOG_EXPORTER"] == exporter
        assert "Authorization=AAD" in str(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    requirements = (ROOT / "requirements.txt").read_text()
    assert "azure-monitor-opentelemetry==" in requirements
