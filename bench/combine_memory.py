"""Peak memory and time of combine (and verify) as the file count grows.

    .venv/bin/python bench/combine_memory.py [--files 100 1000 10000] [--out DIR]

For each count: writes that many small daily NetCDF4 files (one time step, a 4x8 grid, one
chunk per variable per file: the references-heavy, data-light case), runs scan, generate and
combine (kerchunk JSON) in a fresh process, and prints the process's peak resident memory
(what the memory ceiling watches) and the seconds of each stage. Files are kept in --out so a
second run skips writing them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from shared.stages.combine import combine
from shared.stages.references import generate_batch
from shared.model.request import PipelineRequest
from shared.stages.scan import scan
from shared.model.settings import Settings
from shared.stages.verify import verify

folder, work = sys.argv[1], sys.argv[2]
settings = Settings(allow_local_paths=True, work_area=work + "/work", store_root=work + "/stores",
                    catalog=work + "/catalog", verify_full_max_bytes=0)
request = PipelineRequest.from_dict({{"source": folder, "dataset_id": "bench"}})
seconds = {{}}
started = time.perf_counter(); scanned = scan(request, settings); seconds["scan"] = time.perf_counter() - started
started = time.perf_counter(); generate_batch(scanned.manifest_url, 0, scanned.file_count, settings)
seconds["generate"] = time.perf_counter() - started
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter(); combined = combine(scanned.manifest_url, request, "bench", settings)
seconds["combine"] = time.perf_counter() - started
after_combine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter(); verify(scanned.manifest_url, combined.store_url, "kerchunk-json", "time", settings)
seconds["verify"] = time.perf_counter() - started
print(json.dumps({{"files": scanned.file_count, "seconds": seconds, "peak_before_combine": before,
                   "peak_after_combine": after_combine,
                   "peak_after_verify": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "store_bytes": combined.store_bytes, "references": combined.reference_count}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--out", default="bench-output/combine-memory")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from devhost.samples import SampleSpec, write_sample_files

    out = Path(args.out)
    print(
        f"{'files':>7} {'generate s':>11} {'combine s':>10} {'verify s':>9} "
        f"{'peak MB (combine)':>18} {'peak MB (verify)':>17} {'store MB':>9}"
    )
    for count in args.files:
        folder = out / f"files-{count}"
        if not folder.exists() or len(list(folder.glob("*.nc"))) != count:
            write_sample_files(folder, SampleSpec(files=count, lat=4, lon=8))
        work = out / f"work-{count}-{int(time.time())}"
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD.format(root=str(ROOT)),
                str(folder.resolve()),
                str(work.resolve()),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        s = row["seconds"]
        print(
            f"{row['files']:>7} {s['generate']:>11.1f} {s['combine']:>10.1f} {s['verify']:>9.1f} "
            f"{row['peak_after_combine'] / 1e6:>18.0f} {row['peak_after_verify'] / 1e6:>17.0f} "
            f"{row['store_bytes'] / 1e6:>9.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
