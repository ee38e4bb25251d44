import json
import subprocess
import sys
from pathlib import Path

import azure.functions as func

import function_app
from devhost.durable import index_app

ROOT = Path(__file__).resolve().parent.parent


def test_health_reports_every_library_it_needs():
    health = next(f for f in index_app().functions if f.get_function_name() == "health")
    response = health.get_user_function()(
        func.HttpRequest(method="GET", url="/api/health", body=b"", headers={})
    )
    body = json.loads(response.get_body())
    assert response.status_code == 200
    assert body["ok"] is True
    assert {"virtualizarr", "kerchunk", "h5py", "icechunk"} <= set(body["libraries"])
    assert body["libraries"]["h5py"]["hdf5"]


def test_the_core_package_never_imports_azure_functions():
    from pathlib import Path

    shared = Path(function_app.__file__).parent / "shared"
    offenders = [
        str(p)
        for p in shared.rglob("*.py")
        if "import azure.functions" in p.read_text()
        or "from azure.functions" in p.read_text()
        or "from azure import functions" in p.read_text()
    ]
    assert offenders == []


def test_loading_the_app_imports_none_of_the_heavy_libraries():
    """The Functions worker imports function_app on every cold start (bench/cold_start.py:
    under 0.5 s): the data libraries load in the activities that use them, never at import."""
    heavy = (
        "xarray",
        "numpy",
        "pandas",
        "pystac",
        "h5py",
        "zarr",
        "virtualizarr",
        "icechunk",
        "matplotlib",
    )
    code = f"import sys, function_app; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    assert loaded == []
