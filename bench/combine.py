"""Part 3: combine time and peak memory as the file count grows, per output format, with
kerchunk's MultiZarrToZarr (over per-file SingleHdf5ToZarr references) as the baseline.

Three collections: one chunk per variable per file (a 4x8 grid, one time step per file: the
references-heavy, data-light case) at 100, 1,000 and 10,000 files; many chunks per file
(500 time steps of one step per chunk, two variables: 1,000 chunks per file) at 100 and 1,000
files, about 1 million references at 1,000; and contiguous daily files as CMOR writes them,
one a year of 365 or 366 days (1,000 years from 1850, a 3x4 grid, tests/archive_cases.py),
which combine cuts into one sub-chunk per day and variable (365,242 references) and
MultiZarrToZarr cannot combine at all (its failure is listed). Files and per-file references are written once
into bench-output/ and reused by later runs (writing them is not measured). Each combine runs
in a fresh process: its seconds and that process's peak resident memory (imports included).

A measurement whose time, extrapolated linearly in references from the one below it, does
not fit the remaining time budget is skipped and listed, with the command that runs it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import OUT, local_settings, run_child, table

FORMATS = ("kerchunk-json", "kerchunk-parquet", "icechunk")
BASELINE = "MultiZarrToZarr"
CONTIGUOUS = "contiguous years"  # daily files of 365/366 steps, stored contiguously


def cases(quick: bool) -> list[dict[str, Any]]:
    if quick:
        return [{"case": "1 chunk/var", "files": n, "steps": 1} for n in (5, 20)] + [
            {"case": "many chunks", "files": 5, "steps": 20},
            {"case": CONTIGUOUS, "files": 5, "steps": 365},
        ]
    return (
        [{"case": "1 chunk/var", "files": n, "steps": 1} for n in (100, 1000, 10000)]
        + [{"case": "many chunks", "files": n, "steps": 500} for n in (100, 1000)]
        + [{"case": CONTIGUOUS, "files": 1000, "steps": 365}]
    )


def _spec(files: int, steps: int) -> Any:
    from devhost.samples import SampleSpec

    step_days = 1.0 if steps == 1 else 0.125  # many steps: 3-hourly, dates stay before 2262
    return SampleSpec(
        files=files, steps_per_file=steps, step_days=step_days, lat=4, lon=8, prefix="tas"
    )


def prepare(folder: str, work: str) -> dict[str, Any]:
    """Child: scan and generate our per-file references (once; kept in ``work``)."""
    from shared.model.request import PipelineRequest
    from shared.stages.references import generate_batch
    from shared.stages.scan import scan

    settings = local_settings(work)
    request = PipelineRequest.from_dict({"source": folder, "dataset_id": "bench"})
    scanned = scan(request, settings)
    generate_batch(scanned.manifest_url, 0, scanned.file_count, settings)
    return {"manifest_url": scanned.manifest_url, "files": scanned.file_count}


def prepare_kerchunk(folder: str, out: str) -> dict[str, Any]:
    """Child: kerchunk's per-file references (SingleHdf5ToZarr), one JSON per file."""
    import warnings

    from kerchunk.hdf import SingleHdf5ToZarr

    warnings.filterwarnings("ignore")
    Path(out).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(folder).glob("*.nc")):
        refs = SingleHdf5ToZarr(str(path), url=str(path)).translate()
        (Path(out) / f"{path.stem}.json").write_text(json.dumps(refs))
    return {}


def combine_one(folder: str, work: str, manifest_url: str, fmt: str, store: str) -> dict:
    """Child: our combine stage, one format, into a fresh store root."""
    from shared.model.request import PipelineRequest
    from shared.stages.combine import combine

    settings = local_settings(work).with_changes(store_root=store)
    request = PipelineRequest.from_dict({"source": folder, "dataset_id": "bench", "format": fmt})
    started = time.perf_counter()
    result = combine(manifest_url, request, f"bench{int(time.time() * 1000)}", settings)
    return {
        "seconds": time.perf_counter() - started,
        "references": result.reference_count,
        "store_bytes": result.store_bytes,
    }


def mzz_one(refs: str, out: str) -> dict[str, Any]:
    """Child: kerchunk MultiZarrToZarr over the per-file JSON references, written as JSON."""
    import warnings

    from kerchunk.combine import MultiZarrToZarr

    warnings.filterwarnings("ignore")
    paths = sorted(str(p) for p in Path(refs).glob("*.json"))
    started = time.perf_counter()
    combined = MultiZarrToZarr(
        paths, concat_dims=["time"], identical_dims=["lat", "lon", "crs"], remote_protocol="file"
    ).translate()
    data = json.dumps(combined).encode()
    Path(out).write_bytes(data)
    return {
        "seconds": time.perf_counter() - started,
        "references": sum(1 for k in combined["refs"] if not k.split("/")[-1].startswith(".")),
        "store_bytes": len(data),
    }


def ready(case: dict[str, Any], root: Path) -> tuple[str, Path, Path, str]:
    """Write the case's files and our per-file references unless they are there already."""
    from devhost.samples import write_sample_files

    name = f"{case['files']}x{case['steps']}" + (
        "-contiguous" if case["case"] == CONTIGUOUS else ""
    )
    folder = root / "files" / name
    work = root / "work" / name
    if len(list(folder.glob("*.nc"))) != case["files"]:
        if case["case"] == CONTIGUOUS:
            from tests.archive_cases import cmor_daily

            cmor_daily(folder, range(1850, 1850 + case["files"]))
        else:
            write_sample_files(folder, _spec(case["files"], case["steps"]))
    done = work / "prepared.json"
    if not done.exists():
        done.parent.mkdir(parents=True, exist_ok=True)
        answer = run_child("bench.combine:prepare", folder=str(folder), work=str(work))
        done.write_text(json.dumps(answer))
    return name, folder, work, json.loads(done.read_text())["manifest_url"]


def kerchunk_ready(folder: Path, work: Path) -> float:
    """Kerchunk's per-file references for the baseline (once); seconds spent writing them."""
    if (work / "kerchunk.done").exists():
        return 0.0
    started = time.perf_counter()
    run_child("bench.combine:prepare_kerchunk", folder=str(folder), out=str(work / "kerchunk"))
    (work / "kerchunk.done").write_text("")
    return time.perf_counter() - started


def prewarm(quick: bool = False) -> None:
    """Write every case's data (files, our references, kerchunk's) without measuring."""
    root = OUT / ("quick" if quick else "full") / "combine"
    for case in cases(quick):
        _, folder, work, _ = ready(case, root)
        kerchunk_ready(folder, work)
        print(f"  ready: {case}", flush=True)


def run(quick: bool, budget: float, formats: list[str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + budget
    methods = [*(formats or FORMATS), BASELINE]
    root = OUT / ("quick" if quick else "full") / "combine"
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for case in cases(quick):
        name, folder, work, manifest_url = ready(case, root)
        # tas, pr, time; lat, lon (crs has none); contiguous: tas a day, lat, lon and bounds
        refs_per_file = 2 * case["steps"] + 3 if case["case"] != CONTIGUOUS else case["steps"] + 5
        for method in methods:
            previous = last.get((case["case"], method))
            projected = None
            if previous is not None:
                growth = case["files"] / previous["files"]
                projected = previous["seconds"] * growth
                if method == BASELINE and not (work / "kerchunk.done").exists():
                    projected += previous["prepare_seconds"] * growth
            if method == BASELINE and not quick and not (work / "kerchunk.done").exists():
                projected = float("inf")  # kerchunk's per-file references not written yet
            left = deadline - time.monotonic()
            if projected is not None and projected > left:
                skipped.append({**case, "method": method, "projected": projected, "left": left})
                print(f"  combine {name} {method}: skipped (needs ~{projected:.0f} s)", flush=True)
                continue
            store = work / f"stores-{method}-{int(time.time() * 1000)}"
            try:
                got = _measure(method, folder, work, manifest_url, store)
            except RuntimeError as exc:
                failed.append({**case, "method": method, "error": str(exc)[-600:]})
                print(f"  combine {name} {method}: FAILED", flush=True)
                continue
            row = {**case, "method": method, **got,
                   "expected_references": refs_per_file * case["files"]}  # fmt: skip
            rows.append(row)
            last[(case["case"], method)] = row
            print(
                f"  combine {name} {method}: {got['seconds']:.1f} s, "
                f"{got['peak_rss_bytes'] / 1e6:.0f} MB",
                flush=True,
            )
    return {"rows": rows, "skipped": skipped, "failed": failed, "budget": budget}


def _measure(method: str, folder: Path, work: Path, manifest_url: str, store: Path) -> dict:
    """One combine (or MultiZarrToZarr) in a fresh process."""
    if method == BASELINE:
        prepare_seconds = kerchunk_ready(folder, work)
        got = run_child("bench.combine:mzz_one", refs=str(work / "kerchunk"),
                        out=str(store) + ".json")  # fmt: skip
        return {**got, "prepare_seconds": prepare_seconds}
    got = run_child(
        "bench.combine:combine_one", folder=str(folder), work=str(work),
        manifest_url=manifest_url, fmt=method, store=str(store),
    )  # fmt: skip
    return {**got, "prepare_seconds": 0.0}


def render(results: dict[str, Any]) -> str:
    rows = [
        [r["case"], f"{r['files']:,}", r["method"],
         "-" if r.get("references") is None else f"{r['references']:,}",
         f"{r['seconds']:.1f} s", f"{r['peak_rss_bytes'] / 1e6:,.0f} MB",
         f"{r['store_bytes'] / 1e6:,.1f} MB" if r.get("store_bytes") else "-"]
        for r in results["rows"]
    ]  # fmt: skip
    text = "### 3. Combine: time and peak memory\n\n" + table(
        ["collection", "files", "format", "references", "time", "peak memory", "store"], rows
    )
    if results["skipped"]:
        text += "\n\nSkipped (did not fit the time budget of this run):\n\n" + "\n".join(
            f"- {s['case']}, {s['files']:,} files, {s['method']}: projected {s['projected']:.0f} s"
            f" (linear from the size below), {max(s['left'], 0):.0f} s of the budget left."
            for s in results["skipped"]
        )
    for f in results.get("failed", []):
        text += (f"\n\nFailed: {f['case']}, {f['files']:,} files, {f['method']}: "
                 f"{f['error'].strip().splitlines()[-1]}")  # fmt: skip
    return text


def side_by_side(files: list[int], fmt: str = "kerchunk-json") -> list[dict[str, Any]]:
    """Our combine (one format) and MultiZarrToZarr on the same one-step files, per count."""
    root = OUT / "full" / "combine"
    out = []
    for count in files:
        case = {"case": "1 chunk/var", "files": count, "steps": 1}
        _, folder, work, manifest_url = ready(case, root)
        kerchunk_ready(folder, work)
        row: dict[str, Any] = {"files": count}
        for method in (fmt, BASELINE):
            store = work / f"stores-{method}-{int(time.time() * 1000)}"
            row[method] = _measure(method, folder, work, manifest_url, store)
        out.append(row)
        ours, theirs = row[fmt], row[BASELINE]
        print(f"{count:>8,} {ours['seconds']:>9.1f} s {ours['peak_rss_bytes'] / 1e6:>7.0f} MB"
              f" {theirs['seconds']:>9.1f} s {theirs['peak_rss_bytes'] / 1e6:>7.0f} MB"
              f" {theirs['seconds'] / ours['seconds']:>7.1f}x", flush=True)  # fmt: skip
    return out


def contiguous_years(files: int) -> list[dict[str, Any]]:
    """Part 3's archive case alone: ``files`` contiguous daily files of a year each, combined
    in every format, and MultiZarrToZarr on the same files (which cannot combine them)."""
    root = OUT / "full" / "combine"
    case = {"case": CONTIGUOUS, "files": files, "steps": 365}
    _, folder, work, manifest_url = ready(case, root)
    kerchunk_ready(folder, work)
    rows = []
    for method in (*FORMATS, BASELINE):
        store = work / f"stores-{method}-{int(time.time() * 1000)}"
        try:
            got = _measure(method, folder, work, manifest_url, store)
        except RuntimeError as exc:
            print(f"{method:>17}: FAILED: {str(exc).strip().splitlines()[-1][:160]}", flush=True)
            continue
        rows.append({**case, "method": method, **got})
        print(f"{method:>17}: {got['seconds']:6.1f} s {got['peak_rss_bytes'] / 1e6:7.0f} MB "
              f"{got['references']:>9,} references", flush=True)  # fmt: skip
    return rows


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Our combine against kerchunk's MultiZarrToZarr, one-step files "
        "(files and references are written once into bench-output/full/combine; "
        "`python -m bench.run_all --parts combine` runs the whole part 3)."
    )
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--format", default="kerchunk-json", choices=FORMATS)
    parser.add_argument("--contiguous", type=int, metavar="FILES", default=None,
                        help="instead: the contiguous daily files of part 3 (FILES years), "
                        "every format and MultiZarrToZarr")  # fmt: skip
    args = parser.parse_args()
    if args.contiguous:
        contiguous_years(args.contiguous)
        return
    print(f"{'files':>8} {'ours (' + args.format + ')':>23} {BASELINE:>23} {'faster':>8}")
    side_by_side(args.files, args.format)


if __name__ == "__main__":
    main()
