"""Every benchmark, one command: prints each table and writes docs/benchmarks.md and
docs/benchmarks.png.

    .venv/bin/python -m bench.run_all            # the full run (about 30 minutes on 2 cores)
    .venv/bin/python -m bench.run_all --quick    # tiny sizes, a minute: the smoke test's run

Parts (--parts to choose): per-file (1: bytes and requests, 2: time per file), combine (3),
orchestration (4), end-to-end (5). Starts its own Azurite on a free loopback port unless
AZURITE_BLOB_ENDPOINT is set. Data is generated here, deterministically (devhost/samples.py),
and kept in bench-output/ so a second run does not write it again. Results are saved as
bench-output/<mode>/results.json; --render-only rewrites the documents from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import OUT, ROOT, azurite

PARTS = ("per-file", "orchestration", "end-to-end", "combine")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--combine-budget", type=float, default=None,
                        help="seconds for part 3 (default: 900 full, 300 quick)")  # fmt: skip
    parser.add_argument("--formats", nargs="+", default=None, help="part 3 output formats")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where to write the results")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    mode = "quick" if args.quick else "full"
    saved = OUT / mode / "results.json"
    command = " ".join(["python -m bench.run_all", *(argv if argv is not None else sys.argv[1:])])
    if args.render_only:
        results = json.loads(saved.read_text())
    else:
        results = {"parts": {}} if not saved.exists() else json.loads(saved.read_text())
        results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), command=command)
        results["parts"] = {k: v for k, v in results["parts"].items() if k not in args.parts}
        started = time.monotonic()
        with azurite() as endpoint:
            for part in [p for p in PARTS if p in args.parts]:
                print(f"== {part}", flush=True)
                results["parts"][part] = run_part(part, args, endpoint)
                print(render_part(part, results["parts"][part]) + "\n", flush=True)
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_text(json.dumps(results, indent=1))
        results["wall_seconds"] = time.monotonic() - started
        saved.write_text(json.dumps(results, indent=1))
    from bench.report import write

    write(results, Path(args.docs), quick=args.quick)
    print(f"wrote {args.docs}/benchmarks.md and benchmarks.png")


def run_part(part: str, args: argparse.Namespace, endpoint: str) -> dict[str, Any]:
    if part == "per-file":
        from bench import per_file

        return per_file.run(args.quick, endpoint)
    if part == "combine":
        from bench import combine

        _wait_for_prewarm()
        budget = args.combine_budget or (300.0 if args.quick else 900.0)
        return combine.run(args.quick, budget, args.formats)
    if part == "orchestration":
        from bench import orchestration

        return orchestration.run(args.quick)
    from bench import end_to_end

    return end_to_end.run(args.quick, endpoint)


def render_part(part: str, result: dict[str, Any]) -> str:
    from bench import combine, end_to_end, orchestration, per_file

    module = {"per-file": per_file, "combine": combine, "orchestration": orchestration,
              "end-to-end": end_to_end}[part]  # fmt: skip
    return module.render(result)


def _wait_for_prewarm() -> None:
    """A `combine.prewarm()` started by hand to write the data ahead: let it finish first."""
    pid_file = OUT / "prewarm.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    while pid and Path(f"/proc/{pid}").exists():
        time.sleep(2)
    pid_file.unlink(missing_ok=True)


def machine() -> str:
    return (
        f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores "
        "(shared and noisy: figures vary by 10-30% between runs)"
    )


if __name__ == "__main__":
    main()
