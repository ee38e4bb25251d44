"""Import the libraries every stage needs and report their versions (or why they failed),
so a broken dependency shows on the health endpoint, not in the first activity of a run.
Nothing here runs when the app loads but a look for missing packages: a cold start imports
only what the triggers need (bench/cold_start.py)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from importlib.metadata import version
from typing import Any

log = logging.getLogger(__name__)

MODULES = (
    "virtualizarr", "kerchunk", "h5py", "icechunk", "zarr", "xarray", "obstore", "pystac",
    "matplotlib",  # the preview register draws
)  # fmt: skip


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


def record_missing_packages() -> list[str]:
    """Called when the app loads: log every library that is not installed at all. Cheap (it
    finds packages, it does not import them: importing them here made every cold start pay
    about a second for libraries only some activities use). A library that is installed but
    fails to import is named by /api/health, and by every activity that needs it, which fails
    at once with ``dependency_missing``."""
    missing = [name for name in MODULES if importlib.util.find_spec(name) is None]
    for name in missing:
        log.error("dependency %s is not installed", name, extra={"dependency": name})
    return missing
