"""Combine spread over activities, on a synthetic collection of per-file references.

    .venv/bin/python -m bench.combine_spread [--files 10000] [--batch 10000] [--single]
        [--format kerchunk-parquet [icechunk ...]] [--out bench-output/combine-spread]

Writes --files references documents in our format (shared.stages.references), one time
step per file, a 4x8 grid, two variables, as generate writes them for bench.combine's
files but with no source file behind them, and a scan manifest over them; both are kept
in --out and reused. Then runs, each in a fresh process (bench/_child.py): one
merge_batch activity per --batch files, and the join that writes the store (one join per
--format, over the same partials); with --single also the single-activity combine over all
files (in the first format). Prints each activity's seconds
and peak resident memory (imports included).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import OUT, local_settings, run_child


def _template(work: Path) -> dict[str, Any]:
    """One real file's references document, to vary."""
    from devhost.samples import SampleSpec, write_sample_files
    from shared.io.storage import Storage
    from shared.model.locations import parse_location
    from shared.stages.references import build_references

    settings = local_settings(work / "template")
    path = write_sample_files(work / "template" / "src", SampleSpec(files=1, lat=4, lon=8))[0]
    storage = Storage(settings)
    return build_references(storage.head(parse_location(str(path), settings)), settings, storage)


def prepare(work: str, files: int) -> dict[str, Any]:
    """Child: the documents and the scan manifest (once)."""
    from shared.io.storage import ObjectInfo
    from shared.model.layout import Layout
    from shared.stages.scan import ScanManifest

    root = Path(work)
    settings = local_settings(root)
    layout = Layout.from_settings(settings)
    template = _template(root)
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    infos = []
    rng = np.random.default_rng(0)
    for i in range(files):
        url = f"file://{source}/tas_{i:07d}.nc"
        info = ObjectInfo(url, 20_000, f"etag-{i}", "2026-01-01T00:00:00+00:00")
        document = dict(template, source=info.to_dict())
        arrays = {name: dict(entry) for name, entry in template["arrays"].items()}
        arrays["time"]["inline"] = {"0": base64.b64encode(np.float64(i / 24).tobytes()).decode()}
        for name in ("tas", "pr"):
            arrays[name]["offsets"] = [int(rng.integers(4096, 16384))]
        document["arrays"] = arrays
        target = Path(layout.references(url, info.etag).path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, separators=(",", ":")))
        infos.append(info)
    manifest = ScanManifest("bench", str(source), ("*.nc",), tuple(infos))
    location = layout.manifest("bench", manifest.digest)
    Path(location.path).parent.mkdir(parents=True, exist_ok=True)
    Path(location.path).write_text(json.dumps(manifest.to_dict()))
    return {"manifest_url": location.url}


def _request(fmt: str) -> Any:
    from shared.model.request import PipelineRequest

    return PipelineRequest.from_dict({"source": "/", "dataset_id": "bench", "format": fmt})


def batch_one(work: str, manifest_url: str, start: int, stop: int, run_id: str) -> dict:
    """Child: one merge_batch activity."""
    from shared.stages.spread import merge_batch

    started = time.perf_counter()
    result = merge_batch(manifest_url, start, stop, _request("kerchunk-json"), run_id,
                         local_settings(work))  # fmt: skip
    return {"seconds": time.perf_counter() - started, "partial_bytes": result.partial_bytes}


def join_one(work: str, manifest_url: str, starts: list[int], run_id: str, fmt: str) -> dict:
    """Child: the join, writing the store."""
    from shared.stages.spread import join_partials

    started = time.perf_counter()
    result = join_partials(manifest_url, starts, _request(fmt), run_id, local_settings(work))
    return {"seconds": time.perf_counter() - started, "references": result.reference_count,
            "store_bytes": result.store_bytes}  # fmt: skip


def single_one(work: str, manifest_url: str, run_id: str, fmt: str) -> dict:
    """Child: the single-activity combine over every file."""
    from shared.stages.combine import combine

    started = time.perf_counter()
    result = combine(manifest_url, _request(fmt), run_id, local_settings(work))
    return {"seconds": time.perf_counter() - started, "references": result.reference_count,
            "store_bytes": result.store_bytes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--format", nargs="+", default=["kerchunk-parquet"],
                        choices=["kerchunk-json", "kerchunk-parquet", "icechunk"])  # fmt: skip
    parser.add_argument("--single", action="store_true", help="also combine in one activity")
    parser.add_argument("--out", default=str(OUT / "combine-spread"))
    parser.add_argument("--joins-of", metavar="RUN_ID",
                        help="only the joins, over the partials an earlier run left")  # fmt: skip
    args = parser.parse_args()
    work = Path(args.out).resolve() / f"{args.files}"
    done = work / "prepared.json"
    if not done.exists():
        started = time.perf_counter()
        answer = run_child("bench.combine_spread:prepare", work=str(work), files=args.files)
        done.write_text(json.dumps(answer))
        print(f"wrote {args.files:,} documents in {time.perf_counter() - started:.0f} s")
    manifest_url = json.loads(done.read_text())["manifest_url"]
    run_id = args.joins_of or f"spread{int(time.time() * 1000)}"
    starts = list(range(0, args.files, args.batch))
    print(f"{'activity':<28} {'seconds':>8} {'peak MB':>8}   (run {run_id})")
    rows = []
    for start in [] if args.joins_of else starts:
        stop = min(start + args.batch, args.files)
        got = run_child("bench.combine_spread:batch_one", work=str(work),
                        manifest_url=manifest_url, start=start, stop=stop, run_id=run_id)  # fmt: skip
        rows.append((f"merge_batch {start:,}-{stop:,}", got))
        print(f"{rows[-1][0]:<28} {got['seconds']:>8.1f} {got['peak_rss_bytes'] / 1e6:>8.0f}",
              flush=True)  # fmt: skip
    batches = [g for _, g in rows]
    for fmt in args.format:
        got = run_child("bench.combine_spread:join_one", work=str(work),
                        manifest_url=manifest_url, starts=starts, run_id=run_id, fmt=fmt)  # fmt: skip
        rows.append((f"join ({fmt})", got))
        print(f"{rows[-1][0]:<28} {got['seconds']:>8.1f} {got['peak_rss_bytes'] / 1e6:>8.0f}"
              f"   {got['references']:,} references, {got['store_bytes'] / 1e6:,.0f} MB written",
              flush=True)  # fmt: skip
    joins = ", ".join(f"{name} {g['seconds']:.1f} s" for name, g in rows[len(batches) :])
    slowest = max((g["seconds"] for g in batches), default=0)
    print(f"spread: {len(batches)} batch(es), slowest {slowest:.1f} s,"
          f" sum {sum(g['seconds'] for g in batches):.1f} s; {joins};"
          f" largest peak {max(g['peak_rss_bytes'] for _, g in rows) / 1e6:.0f} MB")  # fmt: skip
    if args.single:
        got = run_child("bench.combine_spread:single_one", work=str(work),
                        manifest_url=manifest_url, run_id=run_id + "s", fmt=args.format[0])  # fmt: skip
        print(f"{'single combine':<28} {got['seconds']:>8.1f} {got['peak_rss_bytes'] / 1e6:>8.0f}")


if __name__ == "__main__":
    main()
