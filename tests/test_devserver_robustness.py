"""The local host's HTTP front end under load and malformed input: a burst of simultaneous
connections without resets (a burst of upload events, many clients polling at once), and a
malformed chunked body refused with 400."""

from __future__ import annotations

import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from devhost.durable import DurableHost
from devhost.server import DevServer
from tests.helpers import call, missing_tool

APP = "tests.durable_test_app"


def test_a_burst_of_simultaneous_connections_is_served_without_resets(tmp_path):
    with (
        DurableHost(tmp_path / "state", app_module=APP, workers=1) as host,
        DevServer(host) as server,
    ):
        parts = urlsplit(server.base_url)
        # Open 60 connections before any request is sent: all of them wait in the backlog.
        held = [
            socket.create_connection((parts.hostname, parts.port), timeout=10) for _ in range(60)
        ]
        for sock in held:
            sock.close()
        url = f"{server.base_url}/durabletask/instances/nobody"
        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(lambda _: call("GET", url).status, range(200)))
    assert answers == [404] * 200


def listen_backlog(port: int) -> int:
    """The listening socket's backlog as the kernel has it (ss: Send-Q of a LISTEN socket)."""
    if shutil.which("ss") is None:
        missing_tool("ss is not installed (Debian: apt-get install iproute2)")
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[2])


def test_the_listen_backlog_holds_a_burst(tmp_path):
    """socketserver's default backlog of 5 reset connections in a burst of 20 clients."""
    with (
        DurableHost(tmp_path / "state", app_module=APP, workers=1) as host,
        DevServer(host) as server,
    ):
        assert listen_backlog(urlsplit(server.base_url).port or 0) >= 128


def test_a_malformed_chunk_size_is_a_400_not_a_crash(tmp_path):
    with (
        DurableHost(tmp_path / "state", app_module=APP, workers=1) as host,
        DevServer(host) as server,
    ):
        parts = urlsplit(server.base_url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(
                b"POST /durabletask/orchestrators/fan_out HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\n{}\r\n0\r\n\r\n"
            )
            answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 400") or answer.startswith("HTTP/1.0 400"), answer[:200]
    assert "malformed chunk size" in answer
