"""Part 5: end to end through devhost on Azurite: the real Function App (scan, validate, gate,
generate, combine, verify, register) on N small daily NetCDF4 files (SampleSpec defaults:
one time step, 90x180 grid, compressed) in an Azurite container, with the work area, stores
and catalog in Azurite too; two activity worker processes, one per core (one Azure EP1
instance runs four on its one core: FUNCTIONS_WORKER_PROCESS_COUNT=4, host.json's
maxConcurrentActivityFunctions 4). Files per second = N / wall time from the start request
to the completed status."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from typing import Any

from bench.common import OUT, azurite, create_containers, run_child, table, upload

# Activity worker processes: one per core of the 2-core bench machine. Fewer per core than
# Azure runs (FUNCTIONS_WORKER_PROCESS_COUNT=4 on an EP1's one core; docs/host-settings.md);
# on a loaded 2-core machine 4 measured the same wall time for more CPU (imports per process).
WORKERS = 2


def one_run(
    endpoint: str, source: str, work: str, stores: str, catalog: str, fmt: str, workers: int
) -> dict:
    """Child: the pipeline on ``source`` through devhost; wall seconds and stage seconds."""
    from bench.common import account
    from devhost.durable import DurableHost
    from shared.model.plan import PipelineInput, RunPolicy, instance_id_for
    from shared.model.request import PipelineRequest
    from shared.model.settings import Settings

    settings = Settings(account=account(endpoint), work_area=work, store_root=stores,
                        catalog=catalog)  # fmt: skip
    for name, value in settings.to_env().items():
        os.environ[name] = value
    request = PipelineRequest.from_dict({"source": source, "dataset_id": "bench", "format": fmt})
    instance = instance_id_for(request.dataset_id)
    with DurableHost(tempfile.mkdtemp(prefix="bench-e2e-"), workers=workers) as host:
        started = time.time()
        run = PipelineInput(request, RunPolicy.from_request(request, settings))
        host.start_new("pipeline", instance, json.dumps(run.to_dict()))
        status = host.wait_for(instance, timeout=3600, poll=0.05)
        wall = time.time() - started
    output = status.get("output") or {}
    return {"status": status["runtimeStatus"], "wall": wall,
            "stages": {k: (v or {}).get("seconds") for k, v in (output.get("stages") or {}).items()},
            "error": output.get("error")}  # fmt: skip


def run(
    quick: bool, endpoint: str | None = None, files: int | None = None, workers: int = WORKERS
) -> dict[str, Any]:
    from devhost.samples import SampleSpec, write_sample_files

    count = files or (10 if quick else 1000)
    folder = OUT / ("quick" if quick else "full") / "e2e" / f"files-{count}"
    paths = sorted(folder.glob("*.nc"))
    if len(paths) != count:
        paths = write_sample_files(folder, SampleSpec(files=count))
    size = sum(p.stat().st_size for p in paths)
    rows = []
    with azurite(endpoint) as ep:
        tag = uuid.uuid4().hex[:8]
        names = [f"e2e-src-{tag}", f"e2e-work-{tag}", f"e2e-stores-{tag}", f"e2e-cat-{tag}"]
        create_containers(ep, *names)
        upload(ep, names[0], paths, prefix="tas/")
        got = run_child(
            "bench.end_to_end:one_run", endpoint=ep, source=f"az://{names[0]}/tas",
            work=f"az://{names[1]}/runs", stores=f"az://{names[2]}",
            catalog=f"az://{names[3]}/stac", fmt="kerchunk-json", workers=workers,
        )  # fmt: skip
        rows.append({"files": count, "bytes": size, "workers": workers, **got})
        print(f"  end to end {count} files: {got['wall']:.1f} s {got['status']}", flush=True)
    return {"rows": rows}


def render(results: dict[str, Any]) -> str:
    rows = []
    for r in results["rows"]:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items()
                           if isinstance(v, int | float))  # fmt: skip
        rows.append([f"{r['files']:,}", f"{r['bytes'] / 1e6:.1f} MB", r["status"],
                     f"{r['wall']:.1f} s", f"{r['files'] / r['wall']:.1f}", stages or "-"])  # fmt: skip
    return "### 5. End to end on Azurite (devhost)\n\n" + table(
        ["files", "source size", "status", "wall", "files per second", "stages"], rows
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Part 5 of the benchmarks alone, printed (docs/benchmarks.md is written "
        "by bench.run_all)."
    )
    parser.add_argument("--files", type=int, default=1000, help="how many daily files")
    parser.add_argument("--endpoint", default=None,
                        help="an Azurite blob endpoint (default: start one)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"activity worker processes (default {WORKERS})")  # fmt: skip
    args = parser.parse_args(argv)
    results = run(False, args.endpoint, files=args.files, workers=args.workers)
    print(render(results))


if __name__ == "__main__":
    main()
