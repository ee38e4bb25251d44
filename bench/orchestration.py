"""Part 4: orchestration overhead through devhost (the real orchestrators and the Durable
replay protocol, stand-in activities of known cost: bench/standin_app.py), at 100, 1,000 and
10,000 files, two activity worker processes, the default policy (batches of 200 files, 10
files per activity call).

Activity time is the union of the intervals in which at least one activity was running (the
host's executions table); overhead is wall time minus it: the time in which the host was only
replaying orchestrators, writing history and dispatching work. Replays: orchestrator episodes
over all instances. Largest payload: activity or sub-orchestration input or output, or custom
status. Largest history: of any one instance."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import run_child, table

MS_PER_FILE, MS_FIXED = 5, 20


def counts(quick: bool) -> list[int]:
    return [20, 100] if quick else [100, 1000, 10000]


def one_run(files: int) -> dict[str, Any]:
    """Child: one pipeline run of ``files`` synthetic files through devhost."""
    os.environ["BENCH_MS_PER_FILE"] = str(MS_PER_FILE)
    os.environ["BENCH_MS_FIXED"] = str(MS_FIXED)
    from devhost.durable import DurableHost
    from shared.model.plan import PipelineInput, RunPolicy
    from shared.model.request import PipelineRequest

    state = Path(tempfile.mkdtemp(prefix="bench-orch-"))
    request = PipelineRequest.from_dict({"source": f"synthetic://{files}", "dataset_id": "big"})
    run = PipelineInput(request, RunPolicy())
    with DurableHost(state, app_module="bench.standin_app", workers=2) as host:
        started = time.time()
        host.start_new("pipeline", "pipeline-big", json.dumps(run.to_dict()))
        status = host.wait_for("pipeline-big", timeout=3600, poll=0.02)
        wall = time.time() - started
        sizes = host.payload_sizes()
    db = sqlite3.connect(state / "durable.sqlite")
    intervals = sorted(db.execute("SELECT started, finished FROM executions").fetchall())
    (episodes,) = db.execute("SELECT SUM(episodes) FROM instances").fetchone()
    (instances,) = db.execute("SELECT COUNT(*) FROM instances").fetchone()
    busy, end = 0.0, started
    for s, f in intervals:
        s, f = max(s, end), f
        if f > s:
            busy += f - s
            end = f
    return {
        "files": files,
        "status": status["runtimeStatus"],
        "wall": wall,
        "activity_busy": busy,
        "activity_sum": sum(f - s for s, f in intervals),
        "activities": len(intervals),
        "replays": int(episodes),
        "instances": int(instances),
        "largest_payload": max(
            sizes[k]
            for k in (
                "activity_input",
                "activity_output",
                "sub_orchestration_input",
                "sub_orchestration_output",
                "custom_status",
            )
        ),
        "history_bytes": sizes["history_bytes"],
        "history_events": sizes["history_events"],
    }


def run(quick: bool) -> dict[str, Any]:
    rows = []
    for files in counts(quick):
        row = run_child("bench.orchestration:one_run", files=files)
        rows.append(row)
        print(f"  orchestration {files}: {row['wall']:.1f} s", flush=True)
    return {"rows": rows, "ms_per_file": MS_PER_FILE, "ms_fixed": MS_FIXED}


def render(results: dict[str, Any]) -> str:
    rows = []
    for r in results["rows"]:
        overhead = r["wall"] - r["activity_busy"]
        rows.append([
            f"{r['files']:,}", r["status"], f"{r['wall']:.1f} s", f"{r['activity_busy']:.1f} s",
            f"{overhead:.1f} s ({100 * overhead / r['wall']:.0f}%)",
            f"{1000 * overhead / r['activities']:.1f} ms", f"{r['activities']:,}",
            f"{r['replays']:,}", f"{r['largest_payload'] / 1e3:.1f} KB",
            f"{r['history_bytes'] / 1e3:,.0f} KB ({r['history_events']:,} events)",
            f"{r['peak_rss_bytes'] / 1e6:,.0f} MB",
        ])  # fmt: skip
    return (
        "### 4. Orchestration overhead (devhost, stand-in activities)\n\n"
        f"Stand-in validate and generate calls sleep {results['ms_per_file']} ms per file (10 "
        f"files per call), every other activity {results['ms_fixed']} ms; 2 worker processes.\n\n"
        + table(
            [
                "files",
                "status",
                "wall",
                "activity time",
                "overhead",
                "overhead per activity",
                "activities",
                "replays",
                "largest payload",
                "largest history",
                "host peak memory",
            ],
            rows,
        )
    )
