"""A local Azurite (the Azure Storage emulator) for the tests and the benchmarks: the one
`./dev setup-azurite` installs into .azurite/, started on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from shared.model.settings import AZURITE_ACCOUNT

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / ".azurite" / "node_modules" / ".bin" / "azurite-blob"


class AzuriteUnavailable(RuntimeError):
    """Azurite is not installed, or did not start."""


@contextlib.contextmanager
def running_azurite() -> Iterator[str]:
    """The blob endpoint of Azurite: AZURITE_BLOB_ENDPOINT when set (`./dev test` and CI
    start one), else one started here on a free loopback port and stopped on exit."""
    given = os.environ.get("AZURITE_BLOB_ENDPOINT")
    if given:
        yield given.rstrip("/")
        return
    if not BINARY.exists():
        raise AzuriteUnavailable(
            "Azurite is not installed: run `./dev setup-azurite` (or ./dev test)."
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    location = tempfile.mkdtemp(prefix="azurite-")
    # Blobs and metadata in memory (it is thrown away on exit anyway) and no access log: the
    # emulator shares the machine's cores with what is measured, and its disk persistence
    # (LokiJS saving its whole metadata file again and again) and one log line per request
    # cost about a third of its CPU in the end-to-end bench.
    process = subprocess.Popen(
        [str(BINARY), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--inMemoryPersistence", "--silent", "--loose", "--skipApiVersionCheck",
         "--disableTelemetry"],
        cwd=location,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AzuriteUnavailable("Azurite did not start within 20 s")
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(location, ignore_errors=True)
