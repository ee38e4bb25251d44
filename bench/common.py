"""What every bench part shares: fresh child processes (time and peak memory of one
measurement, uncontaminated by the others), a local Azurite, settings, and table printing."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-output"
MARK = "@@BENCH-RESULT@@"


def run_child(target: str, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a fresh Python process; its JSON result, plus the
    child's wall seconds and peak resident memory (ru_maxrss) in bytes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bench._child", target, json.dumps(kwargs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{target} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    answer = json.loads(lines[-1][len(MARK) :])
    answer["process_seconds"] = time.perf_counter() - started
    return answer


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite(endpoint: str | None = None) -> contextlib.AbstractContextManager[str]:
    """The given Azurite endpoint, or the tests' running_azurite (AZURITE_BLOB_ENDPOINT, else
    one started from .azurite/ on a free loopback port and stopped on exit)."""
    from devhost.azurite import running_azurite

    return contextlib.nullcontext(endpoint) if endpoint else running_azurite()


def connection_string(endpoint: str) -> str:
    from shared.model.settings import AZURITE_ACCOUNT, AZURITE_KEY

    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    )


def upload(endpoint: str, container: str, paths: Sequence[Path], prefix: str = "") -> list[str]:
    """Create the container (if needed) and upload the files; their blob names."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string(endpoint))
    with contextlib.suppress(ResourceExistsError):
        service.create_container(container)
    keys = []
    for path in paths:
        key = f"{prefix}{path.name}"
        service.get_blob_client(container, key).upload_blob(path.read_bytes(), overwrite=True)
        keys.append(key)
    return keys


def create_containers(endpoint: str, *names: str) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string(endpoint))
    for name in names:
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)


def local_settings(work: Path | str, **changes: Any) -> Any:
    from shared.model.settings import Settings

    work = Path(work)
    return Settings(
        allow_local_paths=True,
        work_area=str(work / "work"),
        store_root=str(work / "stores"),
        catalog=str(work / "catalog"),
        **changes,
    )


def account(endpoint: str) -> Any:
    from shared.model.settings import AZURITE_ACCOUNT, AZURITE_KEY, StorageAccount

    return StorageAccount(AZURITE_ACCOUNT, AZURITE_KEY, endpoint)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also what the console shows)."""
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f} MB" if n < 1e8 else f"{n / 1e6:,.0f} MB"


def kb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e3:,.1f} KB"
