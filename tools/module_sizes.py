"""The size of every module of the app, the local host and the consumer side, largest first.

    python -m tools.module_sizes            the 15 largest, and whether any is over the limit
    python -m tools.module_sizes --all      every module

A module over MAX_LINES is doing more than one job: split it along its seams (as
shared/stages/validate/ and devhost/durable/ were). Exits 1 when one is over the limit;
tests/test_layers.py runs the same check in CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 800
# Everything that runs: the Function App (deployed), devhost (local host) and consumer/.
PACKAGES = ("api", "activities", "orchestrators", "shared", "devhost", "consumer")
FILES = ("function_app.py",)


def module_sizes(root: Path = ROOT) -> list[tuple[str, int]]:
    """(path relative to root, lines) of every module, largest first."""
    paths = [root / name for name in FILES]
    for package in PACKAGES:
        paths.extend(sorted((root / package).rglob("*.py")))
    sizes = [(str(p.relative_to(root)), len(p.read_text().splitlines())) for p in paths]
    return sorted(sizes, key=lambda item: (-item[1], item[0]))


def over_limit(root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    return [(path, lines) for path, lines in module_sizes(root) if lines > limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list every module")
    args = parser.parse_args(argv)
    sizes = module_sizes()
    for path, lines in sizes if args.all else sizes[:15]:
        print(f"{lines:6d}  {path}")
    total = sum(lines for _, lines in sizes)
    print(f"{total:6d}  in {len(sizes)} modules; limit {MAX_LINES} lines a module")
    over = over_limit()
    for path, lines in over:
        print(f"over the limit: {path} ({lines} lines)", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
