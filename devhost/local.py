"""The local host in one process: the Durable host (with its activity worker processes) and
the HTTP server, started with the settings the workers must see."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from devhost.durable.host import DurableHost
from devhost.server import DevServer
from shared.model.locations import DEFAULT_HOST_STATE, host_state
from shared.model.settings import Settings

DEFAULT_STATE = DEFAULT_HOST_STATE


@contextmanager
def exported(settings: Settings, state: Path | str | None = None) -> Iterator[None]:
    """Put the settings in the environment (activity workers are separate processes that read
    Settings.from_env()) and restore the environment afterwards. With ``state``, the local
    host's state folder, local sources inside or above it are refused meanwhile (in this
    process, where the HTTP and Event Grid functions check every source first)."""
    values = settings.to_env()
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        with host_state(state) if state is not None else nullcontext():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def local_host(
    settings: Settings, state: Path | str = DEFAULT_STATE, *, port: int = 0, workers: int = 2
) -> Iterator[DevServer]:
    with (
        exported(settings, state),
        DurableHost(state, workers=workers) as host,
        DevServer(host, port=port) as server,
    ):
        yield server
