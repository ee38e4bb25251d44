"""Cold start: how long importing the Function App takes in a fresh Python process, and how
many modules it loads (what the worker does before the first invocation on a new instance).

    .venv/bin/python -m bench.cold_start [--runs 7]

Prints the median and the spread of `import function_app` over fresh processes, beside the
Durable SDK alone (the floor: the app cannot load without it) and the heavy libraries the
activities import when they first run (virtualizarr, xarray, h5py, kerchunk, icechunk).
Target: function_app under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from bench.common import ROOT

PROBE = """
import json, sys, time
started = time.perf_counter()
{statement}
print(json.dumps({{"seconds": time.perf_counter() - started, "modules": len(sys.modules)}}))
"""

CASES = {
    "function_app": "import function_app",
    "azure.durable_functions (the floor)": "import azure.durable_functions",
    "heavy libraries (first activity)": "import virtualizarr, xarray, h5py, kerchunk, icechunk",
}


def measure(statement: str, runs: int) -> dict[str, float]:
    seconds, modules = [], 0
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(statement=statement)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
        seconds.append(found["seconds"])
        modules = found["modules"]
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "modules": modules,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"cold start, {args.runs} fresh processes each ({sys.executable})")
    print(f"{'import':<40} {'median s':>9} {'min s':>7} {'max s':>7} {'modules':>8}")
    for name, statement in CASES.items():
        found = measure(statement, args.runs)
        print(
            f"{name:<40} {found['median']:>9.3f} {found['min']:>7.3f} {found['max']:>7.3f} "
            f"{found['modules']:>8}"
        )


if __name__ == "__main__":
    main()
