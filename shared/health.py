"""Import the libraries every stage needs and report their versions (or why they failed),
so a broken dependency shows on the health endpoint, not in the first activity of a run."""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import Any

MODULES = ("virtualizarr", "kerchunk", "h5py", "icechunk", "zarr", "xarray", "obstore", "pystac")


def dependency_report() -> dict[str, Any]:
    libraries: dict[str, Any] = {}
    ok = True
    for name in MODULES:
        try:
            importlib.import_module(name)
            libraries[name] = {"ok": True, "version": version(name)}
        except Exception as exc:  # report every failure, do not stop at the first
            ok = False
            libraries[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if libraries.get("h5py", {}).get("ok"):
        import h5py

        libraries["h5py"]["hdf5"] = h5py.version.hdf5_version
    return {"ok": ok, "libraries": libraries}
