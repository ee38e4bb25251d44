"""Import the libraries every stage needs and report their versions (or why they failed),
so a broken dependency shows on the health endpoint, not in the first activity of a run."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import version
from typing import Any

log = logging.getLogger(__name__)

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


def record_import_failures() -> dict[str, str]:
    """Called when the app loads: log every library that fails to import (the activities that
    need it will fail with an error naming it; the health endpoint reports it)."""
    report = dependency_report()
    failures = {n: lib["error"] for n, lib in report["libraries"].items() if not lib["ok"]}
    for name, error in failures.items():
        log.error("dependency %s failed to import: %s", name, error, extra={"dependency": name})
    return failures
