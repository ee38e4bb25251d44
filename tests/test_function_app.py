import json

import azure.functions as func

import function_app
from devhost.durable import index_app


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
