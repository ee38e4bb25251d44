"""Part 5: end to end through devhost: the real Function App (scan, validate, gate,
generate, combine, verify, register) on N small daily NetCDF4 files (SampleSpec defaults:
one time step, 90x180 grid, compressed, about 88 KB), at 1,000 and 10,000 files, on local
files (work area, stores and catalog on local disk too) and on Azurite (everything in
Azurite containers); two activity worker processes, one per core (one Azure EP1 instance
runs four on its one core: FUNCTIONS_WORKER_PROCESS_COUNT=4, host.json's
maxConcurrentActivityFunctions 4). Files per second = N / wall time from the start request
to the completed status; the rate at 10,000 files over the rate at 1,000 says whether the
per-file cost stays flat; metadata bytes are what validate and generate read, over what
validate alone read (one header read a file)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import OUT, azurite, create_containers, run_child, table, upload

# Activity worker processes: one per core of the 2-core bench machine. Fewer per core than
# Azure runs (FUNCTIONS_WORKER_PROCESS_COUNT=4 on an EP1's one core; docs/host-settings.md);
# on a loaded 2-core machine 4 measured the same wall time for more CPU (imports per process).
WORKERS = 2


def one_run(
    source: str, work: str, stores: str, catalog: str, fmt: str, workers: int,
    endpoint: str | None = None,
) -> dict:  # fmt: skip
    """Child: the pipeline on ``source`` through devhost (blob locations on ``endpoint``'s
    Azurite, else local folders); wall seconds, stage seconds and bytes read."""
    from bench.common import account
    from devhost.durable import DurableHost
    from shared.model.plan import PipelineInput, RunPolicy, instance_id_for
    from shared.model.request import PipelineRequest
    from shared.model.settings import Settings

    settings = Settings(account=account(endpoint) if endpoint else None, work_area=work,
                        store_root=stores, catalog=catalog,
                        allow_local_paths=endpoint is None)  # fmt: skip
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
            "bytes_read": output.get("bytes_read") or {},
            "error": output.get("error")}  # fmt: skip


def sizes(quick: bool) -> tuple[int, ...]:
    return (10, 20) if quick else (1000, 10000)


def run(
    quick: bool,
    endpoint: str | None = None,
    files: tuple[int, ...] | None = None,
    workers: int = WORKERS,
    where: tuple[str, ...] = ("local", "azurite"),
) -> dict[str, Any]:
    from devhost.samples import SampleSpec, write_sample_files

    rows = []
    for count in files or sizes(quick):
        folder = OUT / ("quick" if quick else "full") / "e2e" / f"files-{count}"
        paths = sorted(folder.glob("*.nc"))
        if len(paths) != count:
            paths = write_sample_files(folder, SampleSpec(files=count))
        size = sum(p.stat().st_size for p in paths)
        if "local" in where:
            local = Path(tempfile.mkdtemp(prefix="bench-e2e-local-"))
            got = run_child(
                "bench.end_to_end:one_run", source=str(folder), work=str(local / "work"),
                stores=str(local / "stores"), catalog=str(local / "catalog"),
                fmt="kerchunk-json", workers=workers,
            )  # fmt: skip
            rows.append({"files": count, "where": "local", "bytes": size, "workers": workers,
                         **got})  # fmt: skip
            print(f"  end to end {count} files, local: {got['wall']:.1f} s {got['status']}",
                  flush=True)  # fmt: skip
        if "azurite" in where:
            with azurite(endpoint) as ep:
                tag = uuid.uuid4().hex[:8]
                names = [f"e2e-src-{tag}", f"e2e-work-{tag}", f"e2e-stores-{tag}",
                         f"e2e-cat-{tag}"]  # fmt: skip
                create_containers(ep, *names)
                upload(ep, names[0], paths, prefix="tas/")
                got = run_child(
                    "bench.end_to_end:one_run", endpoint=ep, source=f"az://{names[0]}/tas",
                    work=f"az://{names[1]}/runs", stores=f"az://{names[2]}",
                    catalog=f"az://{names[3]}/stac", fmt="kerchunk-json", workers=workers,
                )  # fmt: skip
            rows.append({"files": count, "where": "azurite", "bytes": size, "workers": workers,
                         **got})  # fmt: skip
            print(f"  end to end {count} files, Azurite: {got['wall']:.1f} s {got['status']}",
                  flush=True)  # fmt: skip
    return {"rows": rows}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Per place: the rate at the largest file count over the rate at the smallest."""
    out = {}
    for where in ("local", "azurite"):
        rows = sorted((r for r in results["rows"] if r.get("where", "azurite") == where),
                      key=lambda r: r["files"])  # fmt: skip
        if len(rows) >= 2:
            rate = [r["files"] / r["wall"] for r in (rows[0], rows[-1])]
            out[where] = rate[1] / rate[0]
    return out


def metadata_ratio(row: dict[str, Any]) -> float | None:
    """Bytes validate and generate read, over what validate alone read."""
    read = row.get("bytes_read") or {}
    validate = read.get("validate")
    return (validate + (read.get("generate") or 0)) / validate if validate else None


def render(results: dict[str, Any]) -> str:
    rows = []
    for r in results["rows"]:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items()
                           if isinstance(v, int | float))  # fmt: skip
        meta = metadata_ratio(r)
        rows.append([f"{r['files']:,}", r.get("where", "azurite"), f"{r['bytes'] / 1e6:.1f} MB",
                     r["status"], f"{r['wall']:.1f} s", f"{r['files'] / r['wall']:.1f}",
                     "-" if meta is None else f"{meta:.2f}x", stages or "-"])  # fmt: skip
    text = "### 5. End to end (devhost), local files and Azurite\n\n" + table(
        ["files", "where", "source size", "status", "wall", "files per second",
         "metadata bytes / one header read", "stages"], rows,
    )  # fmt: skip
    for where, ratio in ratios(results).items():
        text += f"\n\nRate at the most files over the rate at the fewest, {where}: {ratio:.2f}"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Part 5 of the benchmarks alone, printed (docs/benchmarks.md is written "
        "by bench.run_all)."
    )
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000],
                        help="how many daily files (each count is one run per place)")  # fmt: skip
    parser.add_argument("--where", nargs="+", default=["local", "azurite"],
                        choices=["local", "azurite"])  # fmt: skip
    parser.add_argument("--endpoint", default=None,
                        help="an Azurite blob endpoint (default: start one)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"activity worker processes (default {WORKERS})")  # fmt: skip
    args = parser.parse_args(argv)
    results = run(False, args.endpoint, files=tuple(args.files), workers=args.workers,
                  where=tuple(args.where))  # fmt: skip
    print(render(results))


if __name__ == "__main__":
    main()
