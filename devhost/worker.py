"""The Azure Functions Python worker's own indexing, run on this app.

Azure loads a Python (v2 programming model) app in its language worker: the worker imports
function_app.py, finds the one top-level FunctionApp, asks it for its functions, and checks
every binding of every function against the Python signature (annotations included). One
function that fails the check fails the whole app's metadata response: on Azure, *no*
function loads. devhost's own code cannot be the judge of that, so this module runs the
worker's code itself: the loader of ``azure-functions-runtime`` (the worker library from
PyPI, the same lineage as the 3.12 worker's), which ``./dev setup`` installs into its own
folder, ``.worker/`` (``pip install --target .worker --no-deps --ignore-requires-python``: it
declares Python >= 3.13 but is pure Python and runs on 3.12; it never enters the venv).

The worker talks to the host over gRPC; the only thing of it the loader touches is a
handful of protobuf message classes, which ``PROTOS`` stands in for (plain records with the
enum values of FunctionRpc.proto: BindingInfo in=0 out=1 inout=2, DataType undefined=0
string=1 binary=2 stream=3; StatusResult Failure=0 Success=1 Cancelled=2). Everything that
decides whether a function loads is the worker's code.

    python -m devhost.worker [APP_DIR]   index APP_DIR/function_app.py exactly as the
                                         worker does at start-up (WorkerInitRequest, then
                                         FunctionsMetadataRequest), print the functions as
                                         JSON; exit 1 with the worker's message if it refuses
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

WORKER_PACKAGE = "azure-functions-runtime"
WORKER_DIR_ENV = "DEVHOST_WORKER_DIR"  # where ./dev setup put the worker (default .worker/)
REPO = Path(__file__).resolve().parent.parent


class WorkerUnavailable(RuntimeError):
    """The worker's loader is not on this machine (``./dev setup`` fetches it)."""


class AppRefused(RuntimeError):
    """The worker refuses to index the app: on Azure, no function of it would load."""


# -- the protobuf messages the loader builds (stand-ins with FunctionRpc.proto's values) ---
class _Message:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


def _message(name: str, **enum_values: int) -> type[_Message]:
    return type(name, (_Message,), dict(enum_values))


PROTOS = SimpleNamespace(
    BindingInfo=_message(
        "BindingInfo", out=1, inout=2, undefined=0, string=1, binary=2, stream=3, **{"in": 0}
    ),
    RpcFunctionMetadata=_message("RpcFunctionMetadata"),
    RpcRetryOptions=_message("RpcRetryOptions"),
    RpcException=_message("RpcException"),
    StatusResult=_message("StatusResult", Failure=0, Success=1, Cancelled=2),
    WorkerInitResponse=_message("WorkerInitResponse"),
    WorkerMetadata=_message("WorkerMetadata"),
    FunctionMetadataResponse=_message("FunctionMetadataResponse"),
)


# -- finding and importing the worker ------------------------------------------------------
def worker_dir() -> Path:
    """Where ./dev setup installed the worker library (``pip install --target``), as an
    absolute path: the processes it is handed to run in other folders."""
    return Path(os.environ.get(WORKER_DIR_ENV) or REPO / ".worker").absolute()


def worker_version() -> str:
    """The installed worker library's version (from its dist-info)."""
    found = sorted(worker_dir().glob("azure_functions_runtime-*.dist-info"))
    if not (worker_dir() / "azure_functions_runtime").is_dir() or not found:
        raise WorkerUnavailable(
            f"The Azure Functions worker's loader ({WORKER_PACKAGE}) is not in {worker_dir()}: "
            "run ./dev setup (it installs the worker library there from PyPI), or set "
            f"{WORKER_DIR_ENV} to a folder that holds it."
        )
    return found[-1].name.removeprefix("azure_functions_runtime-").removesuffix(".dist-info")


def import_worker() -> ModuleType:
    """The worker library, imported from its own folder (never installed into the venv)."""
    worker_version()
    folder = str(worker_dir())
    if folder not in sys.path:
        sys.path.append(folder)
    import azure_functions_runtime

    return azure_functions_runtime


# -- what the worker says about the app ------------------------------------------------------
@dataclass(frozen=True)
class LoadedFunction:
    """One function as the worker reports it to the host."""

    name: str
    trigger: str  # the trigger binding's type: httpTrigger, activityTrigger, ...
    bindings: tuple[tuple[str, str, str], ...]  # (type, name, direction) of every binding


def check_functions(functions: Sequence[Any], app_dir: Path | str) -> list[LoadedFunction]:
    """Run the worker's per-function load checks (loader.process_indexed_function: binding
    directions, parameters, annotations, return types, raw bindings) on functions that an
    app's get_functions() returned. Raises AppRefused with the worker's message."""
    import_worker()
    from azure_functions_runtime.bindings.meta import load_binding_registry
    from azure_functions_runtime.functions import Registry
    from azure_functions_runtime.loader import process_indexed_function

    load_binding_registry()
    try:
        process_indexed_function(PROTOS, Registry(), list(functions), str(app_dir))
    except Exception as exc:  # the worker's FunctionLoadError (or what the SDK raised)
        raise AppRefused(f"{type(exc).__name__}: {exc}") from exc
    return [_loaded(f) for f in functions]


def _loaded(function: Any) -> LoadedFunction:
    trigger = function.get_trigger()
    return LoadedFunction(
        name=function.get_function_name(),
        trigger=trigger.get_binding_name() if trigger is not None else "",
        bindings=tuple(
            (b.get_binding_name(), b.name, _direction(b.direction)) for b in function.get_bindings()
        ),
    )


def _direction(direction: Any) -> str:
    return str(getattr(direction, "name", direction)).lower()


def start_worker(app_dir: Path | str) -> list[dict[str, Any]]:
    """What the worker does when the host starts it on ``app_dir``: WorkerInitRequest (which
    imports function_app.py and indexes it), then FunctionsMetadataRequest. Returns the
    metadata of every function; raises AppRefused with the worker's message. Run it in a
    fresh process (``index_app_like_azure``): it imports the app, as the worker does."""
    worker = import_worker()
    app_dir = str(Path(app_dir).resolve())
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)  # the host starts the worker in the app's folder
    init = SimpleNamespace(
        request=SimpleNamespace(
            worker_init_request=SimpleNamespace(capabilities={}, function_app_directory=app_dir)
        ),
        properties={"protos": PROTOS, "host": "127.0.0.1"},
    )
    answer = asyncio.run(worker.worker_init_request(init))
    if answer.result.status != PROTOS.StatusResult.Success:
        raise AppRefused(answer.result.exception.message)
    metadata = asyncio.run(worker.functions_metadata_request(SimpleNamespace()))
    if metadata.result.status != PROTOS.StatusResult.Success:
        raise AppRefused(metadata.result.exception.message)
    return [
        {
            "name": m.name,
            "bindings": [json.loads(raw) for raw in m.raw_bindings],
        }
        for m in metadata.function_metadata_results or ()
    ]


def index_app_like_azure(
    app_dir: Path | str = REPO, timeout: float = 120.0
) -> list[dict[str, Any]]:
    """Index ``app_dir``/function_app.py with the worker's start-up code in a fresh Python
    process (cwd = the app folder, as on Azure). Returns every function's name and bindings;
    raises AppRefused (with the worker's message) or WorkerUnavailable."""
    worker_version()  # fail here, with the remedy, rather than in the child
    done = subprocess.run(
        [sys.executable, "-m", "devhost.worker", str(Path(app_dir).resolve())],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), WORKER_DIR_ENV: str(worker_dir())},
    )
    if done.returncode != 0:
        message = done.stdout.strip() or done.stderr.strip().splitlines()[-1:]
        raise AppRefused(message if isinstance(message, str) else " ".join(message))
    return list(json.loads(done.stdout))


def summary(functions: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(name, trigger type) of each function in the worker's metadata."""
    rows = []
    for function in functions:
        triggers = [b["type"] for b in function["bindings"] if b["type"].endswith("Trigger")]
        rows.append((function["name"], triggers[0] if triggers else ""))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    app_dir = args[0] if args else str(REPO)
    os.chdir(app_dir)
    try:
        functions = start_worker(app_dir)
    except (AppRefused, WorkerUnavailable) as exc:
        print(str(exc))
        return 1
    print(json.dumps(functions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
