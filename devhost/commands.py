"""The `run` and `validate` commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from devhost.progress import Progress
from devhost.runner import RunReport, run_pipeline
from shared.errors import PipelineError, describe
from shared.locations import parse_location
from shared.request import DEFAULT_PATTERNS, PipelineRequest
from shared.scan import list_source
from shared.settings import Settings
from shared.storage import ObjectInfo, Storage
from shared.validate import render_report, validate_file

EXIT_OK, EXIT_FAILED = 0, 1


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {
        "source": args.source,
        "dataset_id": args.dataset,
        "concat_dim": args.concat_dim,
        "format": args.format,
        "options": {},
    }
    if args.pattern:
        body["options"]["patterns"] = args.pattern
    if args.collection:
        body["options"]["collection"] = args.collection
    request = PipelineRequest.from_dict(body)
    report = run_pipeline(request, settings, batch_size=args.batch_size, progress=Progress())
    print_summary(report)
    return EXIT_OK


def print_summary(report: RunReport) -> None:
    stages = report.stages
    total = sum(stage["seconds"] for stage in stages.values())
    read = sum(stages[s].get("bytes_read", 0) for s in ("validate", "generate") if s in stages)
    print()
    print(f"dataset      {report.request['dataset_id']}  (run {report.run_id})")
    print(f"files        {report.files}, {report.total_bytes:,} bytes")
    share = f" ({100 * read / report.total_bytes:.1f}% of the files)" if report.total_bytes else ""
    print(f"bytes read   {read:,} to validate and reference{share}")
    print(
        "time         "
        + ", ".join(f"{name} {s['seconds']:.2f} s" for name, s in stages.items())
        + f"; total {total:.2f} s"
    )
    print(f"manifest     {report.manifest_url}")
    print(f"store        {report.store_url}  ({report.request['format']})")
    print(f"STAC item    {report.item_url}")
    print(f"catalog      {report.catalog_url}")
    print(f"run report   {report.report_url}")


def _files_of(path: str, settings: Settings, storage: Storage) -> list[ObjectInfo]:
    location = parse_location(path, settings, what="path")
    return list_source(location, DEFAULT_PATTERNS, storage, settings.max_files)


def validate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print each file's report; exit 1 if any file is unsuitable or could not be read."""
    storage = Storage(settings)
    unsuitable = 0
    reports = []
    for path in args.paths:
        try:
            files = _files_of(path, settings, storage)
        except PipelineError as exc:
            unsuitable += 1
            reports.append({"path": path, "error": describe(exc)})
            if not args.json:
                print(f"{path}\n  cannot be validated [{exc.code}]: {exc}\n", file=sys.stderr)
            continue
        for info in files:
            report = validate_file(info, settings, storage)
            unsuitable += report.verdict == "unsuitable"
            reports.append(report.to_dict())
            if not args.json:
                print(render_report(report))
                print()
    if args.json:
        print(json.dumps(reports, indent=1))
    else:
        checked = sum(1 for r in reports if "verdict" in r)
        print(f"{checked} file(s) checked, {unsuitable} unsuitable or unreadable.")
    return EXIT_FAILED if unsuitable else EXIT_OK
