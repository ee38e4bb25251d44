"""The `run` and `validate` commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from devhost.client import follow, submit
from devhost.local import local_host
from devhost.progress import Progress
from shared.io.storage import ObjectInfo, Storage
from shared.model.errors import BadRequest, PipelineError, describe
from shared.model.locations import parse_location
from shared.model.request import DEFAULT_PATTERNS, PipelineRequest
from shared.model.settings import Settings
from shared.stages.gate import check_collection
from shared.stages.scan import list_source
from shared.stages.validate.file import validate_file
from shared.stages.validate.report import render_report

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
    if args.batch_size:
        body["options"]["batch_size"] = args.batch_size
    for option in ("group", "drop_variables", "static_differs"):
        if getattr(args, option, None):
            body["options"][option] = getattr(args, option)
    check_arguments(body)
    view = run_through_host(body, settings, state=args.state, workers=args.workers)
    print_summary(view)
    return EXIT_OK


# The request's fields and options, as the command line spells them.
_FLAGS = {
    "Field 'dataset_id'": "--dataset",
    "Field 'concat_dim'": "--concat-dim",
    "Field 'format'": "--format",
    "Field 'source'": "SOURCE",
    "Option 'patterns'": "--pattern",
    "Option 'collection'": "--collection",
    "Option 'batch_size'": "--batch-size",
    "Option 'group'": "--group",
    "Option 'drop_variables'": "--drop-variable",
    "Option 'static_differs'": "--static-differs",
}


def check_arguments(body: dict[str, Any]) -> None:
    """The request's own checks, before any host starts, worded for the command line: the
    option that is wrong, and to run the command again."""
    try:
        PipelineRequest.from_dict(body)
    except BadRequest as exc:
        message = exc.message
        for field, flag in _FLAGS.items():
            message = message.replace(field, flag)
        raise BadRequest(message, remedy="Correct it and run the command again.") from None


def run_through_host(
    body: dict[str, Any], settings: Settings, *, state: str, workers: int
) -> dict[str, Any]:
    """Start the local host, POST the request to the HTTP starter, follow the status URL to
    the end: the same orchestrator, activities and API as in Azure."""
    with local_host(settings, state, workers=workers) as server:
        status_url = submit(server.base_url, body)
        print(f"submitted: {status_url}", file=sys.stderr)
        return follow(status_url, Progress())


def print_summary(view: dict[str, Any]) -> None:
    files = view.get("files") or {}
    stages = {name: seconds or 0.0 for name, seconds in (view.get("stages") or {}).items()}
    read = sum((view.get("bytes_read") or {}).values())
    size = files.get("bytes", 0)
    share = f" ({100 * read / size:.1f}% of the files)" if size else ""
    print()
    run = f"run {view.get('run_id')}, instance {view.get('instance_id')}"
    print(f"dataset      {view.get('dataset_id')}  ({run})")
    print(f"files        {files.get('total', 0)}, {size:,} bytes")
    print(f"bytes read   {read:,} to validate and reference{share}")
    print(
        "time         "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items())
        + f"; total {sum(stages.values()):.2f} s"
    )
    for label, key in (
        ("manifest", "manifest_url"),
        ("gate report", "gate_summary_url"),
        ("store", "store_url"),
        ("STAC item", "item_url"),
        ("catalog", "catalog_url"),
        ("run report", "run_report"),
        ("run summary", "run_summary"),  # the Markdown run report, for a person
    ):
        if view.get(key):
            print(f"{label:<12} {view[key]}")


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
            report = validate_file(info, settings, storage, group=args.group)
            unsuitable += report.verdict == "unsuitable"
            reports.append(report.to_dict())
            if not args.json:
                print(render_report(report))
                print()
    checked = [r for r in reports if "verdict" in r]
    across = (
        check_collection(
            checked,
            args.concat_dim,
            args.format,
            settings,
            drop_variables=args.drop_variables or (),
            static_differs=args.static_differs or "refuse",
        )
        if len(checked) > 1
        else []
    )
    errors = [f for f in across if f.severity == "error"]
    if args.json:
        print(json.dumps({"files": reports, "collection": [f.to_dict() for f in across]}, indent=1))
    else:
        if across:
            print(f"ACROSS THE FILES  ({len(checked)} files, concat dimension {args.concat_dim!r})")
            for finding in across:
                print(f"  {finding.severity.upper():<7} {finding.code}: {finding.message}")
            print()
        print(
            f"{len(checked)} file(s) checked, {unsuitable} unsuitable or unreadable, "
            f"{len(errors)} problem(s) across the files."
        )
    return EXIT_FAILED if unsuitable or errors else EXIT_OK
