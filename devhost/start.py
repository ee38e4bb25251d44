"""The `start` command: serve the Function App locally, as `func start` would.

    python -m devhost start [--port 7071] [--state .devhost] [--workers 2]
                            [--work-area DIR] [--store-root DIR] [--catalog DIR]

Runs a DurableHost (orchestrations, activities in worker processes, state in SQLite under
--state, so a stopped host resumes its runs) behind a DevServer (the app's HTTP functions
under /api/, the Durable management API under /runtime/webhooks/durabletask/), prints what
to curl, and serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from devhost.durable.host import DurableHost
from devhost.events import webhook_url
from devhost.frontend.functions import AppRoute
from devhost.local import exported
from devhost.server import DevServer
from devhost.worker import AppRefused, WorkerUnavailable, index_app_like_azure, worker_version
from shared.model.settings import ANY_FOLDER, Settings, default_local_roots

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
APP_MODULE = "function_app"


def add_start_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `start` to the CLI's subcommands (the object add_subparsers() returned)."""
    start = subparsers.add_parser(
        "start",
        help="serve the Function App's HTTP API and run its orchestrations locally",
        description="Serve the app's HTTP functions and the Durable management API on "
        "127.0.0.1, with orchestrations and activities run by devhost.",
    )
    start.add_argument("--port", type=int, default=7071, help="port (0: any free port)")
    start.add_argument(
        "--state", default=".devhost", help="folder for the Durable state (SQLite history)"
    )
    start.add_argument("--workers", type=int, default=2, help="activity worker processes")
    start.add_argument("--work-area", help="where manifests, reports and references go")
    start.add_argument("--store-root", help="where combined stores go")
    start.add_argument("--catalog", help="where the STAC catalog goes")
    add_stac_api_option(start)
    return start


def add_stac_api_option(parser: argparse.ArgumentParser) -> None:
    """--stac-api URL (`run` and `start`): sets PIPELINE_STAC_API_URL for the host and its
    workers (devhost.local.exported)."""
    parser.add_argument(
        "--stac-api",
        metavar="URL",
        help="also publish into this STAC API (Transactions extension; sets "
        "PIPELINE_STAC_API_URL; docs/stac-api.md)",
    )


def start_command(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit code."""
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    any_folder = os.environ.get("PIPELINE_LOCAL_ROOTS", "").strip() == ANY_FOLDER
    if not settings.local_roots and not any_folder:
        # The command line's settings allow any folder (the operator names it); `start`
        # serves requests from whoever reaches its port, so they get the deployed app's
        # default roots unless PIPELINE_LOCAL_ROOTS is set.
        settings = settings.with_changes(local_roots=default_local_roots(settings.work_area))
    with exported(settings, args.state):
        return _serve(args, settings)


def app_folder(module: str = APP_MODULE) -> Path:
    """The folder of the app module this process would import (without importing it)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise AppRefused(f"No module named {module!r}: run devhost from the app's folder.")
    return Path(spec.origin).resolve().parent


def check_app(module: str = APP_MODULE) -> tuple[bool, str]:
    """Index the app with the Azure Functions worker's own start-up code, in a fresh process,
    as Azure does before any function runs. Returns (True, a line for the banner) when every
    function loads, else (False, what to print: the worker's message and what it means)."""
    try:
        folder = app_folder(module)
        functions = index_app_like_azure(folder)
    except AppRefused as exc:
        return False, (
            f"error: the Azure Functions worker refuses to index {module}.py, so on Azure no "
            f"function of this app would load. The worker says:\n  {exc}\n"
            "Fix the function it names (devhost serves only what Azure would load)."
        )
    except WorkerUnavailable as exc:
        return False, f"error: cannot check the app the way Azure loads it. {exc}"
    return True, (
        f"  the Functions worker (azure-functions-runtime {worker_version()}) loads all "
        f"{len(functions)} functions of {folder / (module + '.py')}"
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    loads, checked = check_app()
    if not loads:
        print(checked, file=sys.stderr)
        return EXIT_FAILED
    state = Path(args.state).resolve()
    host = DurableHost(state, app_module=APP_MODULE, workers=args.workers)
    server = DevServer(host, port=args.port)
    try:
        server.start()  # before the host: a port in use fails fast, with no run started
    except OSError as exc:
        host.stop()
        print(
            f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}). "
            "Stop what uses it, or pass --port with another port (0: any free port).",
            file=sys.stderr,
        )
        return EXIT_FAILED
    stop = threading.Event()
    restore = _on_signals(stop)
    try:
        host.start()
        print(banner(server, settings, state, args.workers, checked), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("\nstopping: waiting for running activities to finish ...", flush=True)
    finally:
        restore()
        server.stop()
        host.stop()
    print("stopped.", flush=True)
    return EXIT_OK


def banner(
    server: DevServer, settings: Settings, state: Path, workers: int, checked: str = ""
) -> str:
    """What to curl: the app's routes, a first run, and the operator's status URL."""
    base = server.base_url
    lines = [
        f"devhost: serving {APP_MODULE} on {base}",
        f"  state {state}  ({workers} activity worker process(es))",
        *([checked] if checked else []),
        f"  work area {settings.work_area}, stores {settings.store_root}, "
        f"catalog {settings.catalog}",
        *(
            [f"  also publishing into the STAC API {settings.stac_api_url}"]
            if settings.stac_api_url
            else []
        ),
        "",
        "Functions:",
    ]
    width = max((len(r.function_name) for r in server.routes), default=0)
    lines += [
        f"  {r.function_name:<{width}}  [{_methods(r)}] {base}/api/{r.route}"
        for r in sorted(server.routes, key=lambda r: (r.route, r.methods))
    ]
    lines += [
        f"  {f.function_name:<{width}}  [Event Grid] {webhook_url(base, f.function_name)}"
        for f in sorted(server.functions.values(), key=lambda f: f.function_name)
        if f.trigger_type == "eventGridTrigger"
    ]
    example = json.dumps({"source": "/path/to/netcdf/folder", "dataset_id": "my-dataset"})
    lines += [
        "",
        "Try:",
        f"  curl -s {base}/api/health",
        f"  curl -s -X POST {base}/api/pipelines -H 'Content-Type: application/json' "
        f"-d '{example}'",
        f"  curl -s {base}/api/pipelines/pipeline-my-dataset",
        "  python -m devhost events /path/to/netcdf/folder   # upload events (PIPELINE_DATASETS)",
        "",
        "Durable management API (operators; the URLs carry this host's system key):",
        f"  curl -s '{server.status_query_url('INSTANCE_ID')}'",
        f"  curl -s -X POST '{_terminate_url(server)}'",
        "",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(lines)


def _methods(route: AppRoute) -> str:
    return ",".join(route.methods) if route.methods else "any"


def _terminate_url(server: DevServer) -> str:
    url = server.management_urls("INSTANCE_ID")["terminatePostUri"]
    return url.replace("{text}", "stopped-by-operator")


def _on_signals(stop: threading.Event) -> Callable[[], object]:
    """Set `stop` on SIGTERM (Ctrl-C raises KeyboardInterrupt as usual); returns a callable
    that restores the previous handler. Signals can only be handled in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
