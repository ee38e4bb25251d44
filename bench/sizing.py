"""Sizing: the memory a worker process needs for the light activities, and the ceiling every
plan and process count leaves for the one memory-heavy activity (combine, verify) of an
instance (shared/model/sizing.py).

    .venv/bin/python -m bench.sizing [--files 10] [--lat 90 --lon 180 --steps 8]

Measures, each in a fresh process (peak resident memory, VmHWM, imports included): an idle
worker process that has imported the app; one validate activity and one generate activity of
--files files (PIPELINE_FILES_PER_ACTIVITY) on local sample files. Then prints the ceiling
table: instance memory x HEADROOM - (processes - 1) x LIGHT_PROCESS_BYTES.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import local_settings, mb, run_child, table


def idle() -> dict[str, Any]:
    import function_app  # noqa: F401  (what a worker process holds before any activity)

    return {}


def light(folder: str, files: int, lat: int, lon: int, steps: int, stage: str) -> dict[str, Any]:
    """One validate or generate activity of ``files`` files, as the activity runs it."""
    from devhost.samples import SampleSpec, write_sample_files
    from shared.model.request import PipelineRequest
    from shared.stages.references import generate_batch
    from shared.stages.scan import scan
    from shared.stages.validate import validate_batch

    work = Path(folder)
    spec = SampleSpec(files=files, lat=lat, lon=lon, steps_per_file=steps, step_days=1 / steps)
    write_sample_files(work / "src", spec)
    settings = local_settings(work)
    request = PipelineRequest.from_dict({"source": str(work / "src"), "dataset_id": "sizing"})
    manifest = scan(request, settings).manifest_url
    if stage == "generate":
        validate_batch(manifest, 0, files, settings)
        generate_batch(manifest, 0, files, settings)
    else:
        validate_batch(manifest, 0, files, settings)
    return {}


def main(argv: list[str] | None = None) -> None:
    from shared.model.sizing import HEADROOM, LIGHT_PROCESS_BYTES, PLAN_MEMORY, heavy_ceiling

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--lat", type=int, default=90)
    parser.add_argument("--lon", type=int, default=180)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    rows = [
        ["idle worker (the app imported)", mb(run_child("bench.sizing:idle")["peak_rss_bytes"])]
    ]
    for stage in ("validate", "generate"):
        with tempfile.TemporaryDirectory(prefix="bench-sizing-") as folder:
            peak = run_child(
                "bench.sizing:light",
                folder=folder,
                files=args.files,
                lat=args.lat,
                lon=args.lon,
                steps=args.steps,
                stage=stage,
            )["peak_rss_bytes"]
        label = "validate" if stage == "validate" else "validate, then generate"
        rows.append([f"{label}: {args.files} files in one process", mb(peak)])
    print("Peak resident memory of a worker process (fresh process each, imports included)")
    print(table(["what", "peak"], rows))
    print(f"\nLIGHT_PROCESS_BYTES (shared/model/sizing.py): {mb(LIGHT_PROCESS_BYTES)}")
    print(f"\nCeiling of the one heavy activity per instance (HEADROOM {HEADROOM}):")
    counts = (1, 2, 4, 8)
    print(
        table(
            ["plan", *(f"{n} process(es)" for n in counts)],
            [
                [f"{plan} ({mb(memory)})", *(mb(heavy_ceiling(memory, n)) for n in counts)]
                for plan, memory in PLAN_MEMORY.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
