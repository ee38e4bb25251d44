"""`python -m devhost`: run the pipeline locally, validate files, serve the app, post
Event Grid events to it, or run the demo.

    python -m devhost run SOURCE --dataset ID [--concat-dim time] [--format kerchunk-json]
                          [--work-area DIR] [--store-root DIR] [--catalog DIR] [--pattern GLOB]
                          [--stac-api URL]
    python -m devhost validate FILE_OR_URL...
    python -m devhost demo [--out DIR] [--files 30] [--format kerchunk-json] [--port 8080]
    python -m devhost start [--port 7071] [--state .devhost] [--workers 2] [--stac-api URL]
    python -m devhost stac-api [--port 8082]
    python -m devhost events SOURCE [--url http://127.0.0.1:7071] [--function blob_created]
                             [--pattern GLOB ...] [--shuffle] [--repeat N] [--seed S]

    python -m devhost approve|reject INSTANCE_ID [--by NAME] [--reason TEXT] [--url URL]
    python -m devhost versions DATASET [--url URL]
    python -m devhost unpublish DATASET VERSION --reason TEXT [--by NAME] [--url URL]
    python -m devhost cleanup DATASET VERSION [--url URL]
    python -m devhost tiles [--port 8080] [--store-root DIR] [--catalog DIR]

`stac-api` starts a local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac on 127.0.0.1,
devhost/stacapi.py) to publish into with `--stac-api URL`, until Ctrl-C.
`events` posts a Microsoft.Storage.BlobCreated event per file of SOURCE to a running app's
Event Grid function (`start` in another terminal), as Event Grid would deliver them. The
release commands talk to a running app's HTTP API (devhost/releases.py).

SOURCE, FILE_OR_URL and the locations may be local paths or blob URLs (az://, abfs://,
https://ACCOUNT.blob.core.windows.net/...) when PIPELINE_STORAGE_ACCOUNT or
PIPELINE_STORAGE_CONNECTION_STRING is set. Errors are printed as one paragraph that names
the file and says what to do; add --debug for the Python traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from devhost.events import DEFAULT_FUNCTION, DEFAULT_URL, events_command
from devhost.progress import quiet_stage_failures
from devhost.releases import COMMANDS as RELEASE_COMMANDS
from devhost.releases import add_release_parsers, release_command
from devhost.stacapi import add_stac_api_parser, stac_api_command
from devhost.start import add_stac_api_option, add_start_parser, start_command
from devhost.tiles import add_tiles_parser
from shared.model.errors import PipelineError
from shared.model.request import FORMATS
from shared.model.settings import Settings, parse_stac_api_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command line's locations on top. The command
    line is run by the operator on their own machine, so local paths are allowed."""
    settings = Settings.from_env().with_changes(allow_local_paths=True)
    changes = {
        name: value
        for name, value in (
            ("work_area", getattr(args, "work_area", None)),
            ("store_root", getattr(args, "store_root", None)),
            ("catalog", getattr(args, "catalog", None)),
        )
        if value
    }
    if getattr(args, "stac_api", None):
        changes["stac_api_url"] = parse_stac_api_url(args.stac_api, "--stac-api ")
    return settings.with_changes(**changes) if changes else settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Build virtual Zarr stores from NetCDF collections, locally.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the INFO log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage on a folder or prefix of NetCDF files")
    run.add_argument("source", help="folder, file, or blob URL of the NetCDF files")
    run.add_argument("--dataset", required=True, help="dataset id (lowercase, e.g. era5-t2m)")
    run.add_argument("--concat-dim", default="time", help="dimension to concatenate along")
    run.add_argument(
        "--format",
        default="kerchunk-json",
        choices=list(FORMATS),
    )
    run.add_argument("--pattern", action="append", help="file glob (repeatable); default *.nc ...")
    run.add_argument("--collection", help="STAC collection id (default: the dataset id)")
    run.add_argument("--batch-size", type=int, help="files per sub-orchestration (default 200)")
    _variable_options(run)
    _location_options(run)
    _host_options(run)

    validate = sub.add_parser("validate", help="print the validation report of files")
    validate.add_argument("paths", nargs="+", help="files, folders or blob URLs")
    validate.add_argument("--json", action="store_true", help="print the reports as JSON")
    _variable_options(validate)
    validate.add_argument(
        "--concat-dim", default="time", help="for the checks across files (default time)"
    )
    validate.add_argument(
        "--format",
        default="kerchunk-json",
        choices=list(FORMATS),
        help="the output format the files are meant for (some checks depend on it)",
    )

    add_start_parser(sub)
    add_release_parsers(sub)
    add_tiles_parser(sub)
    add_stac_api_parser(sub)

    events = sub.add_parser(
        "events",
        help="post a BlobCreated event per file to a running app's Event Grid function",
        description="Build Microsoft.Storage.BlobCreated events (Event Grid schema) for the "
        "files of SOURCE and post them to the app's Event Grid webhook, as Event Grid would: "
        "at least once (--repeat) and in any order (--shuffle).",
    )
    events.add_argument("source", help="folder, file or blob prefix of the files")
    events.add_argument(
        "--url", default=DEFAULT_URL, help=f"the running app (default {DEFAULT_URL})"
    )
    events.add_argument(
        "--function", default=DEFAULT_FUNCTION, help="the app's Event Grid function"
    )
    events.add_argument(
        "--pattern",
        action="append",
        metavar="GLOB",
        help="file glob (repeatable); default *.nc ...",
    )
    events.add_argument("--shuffle", action="store_true", help="post the events in a random order")
    events.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="post each event N times (new ids, same data)",
    )
    events.add_argument(
        "--seed", type=int, metavar="S", help="seed for --shuffle (the same order each time)"
    )

    demo = sub.add_parser("demo", help="write sample files, run the pipeline, prove equality")
    demo.add_argument("--out", default="demo-output", help="folder for everything the demo writes")
    demo.add_argument("--files", type=int, default=30, help="number of daily files")
    demo.add_argument(
        "--format",
        default="kerchunk-json",
        choices=[*FORMATS, "all"],
    )
    demo.add_argument("--workers", type=int, default=2, help="activity worker processes")
    demo.add_argument(
        "--port",
        type=int,
        default=8080,
        help="the port `python -m devhost tiles` serves the stores and catalog on (their URLs "
        "in the STAC documents)",
    )
    return parser


def _variable_options(parser: argparse.ArgumentParser) -> None:
    """What is read from each file, and what to do with variables that differ (request
    options group, drop_variables, static_differs)."""
    parser.add_argument("--group", help="the HDF5/NetCDF4 group to read (default: the root)")
    parser.add_argument(
        "--drop-variable",
        action="append",
        dest="drop_variables",
        help="leave this variable out (repeatable)",
    )
    parser.add_argument(
        "--static-differs",
        choices=("refuse", "keep-first"),
        default=None,
        help="a variable without the concat dimension that differs between files: refuse the "
        "collection (default) or keep the first file's",
    )


def _host_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", default=".devhost", help="the local host's state folder")
    parser.add_argument("--workers", type=int, default=2, help="activity worker processes")


def _location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-area", help="where manifests, reports and references go")
    parser.add_argument("--store-root", help="where combined stores go")
    parser.add_argument("--catalog", help="where the STAC catalog goes")
    add_stac_api_option(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # run and demo print a failed stage's error themselves, with what to do
    quiet = args.command in ("run", "demo") and not (args.debug or args.verbose)
    with quiet_stage_failures(quiet):
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            from devhost.commands import run_command

            return run_command(args, _settings(args))
        if args.command == "start":
            return start_command(args, _settings(args))
        if args.command == "events":
            return events_command(args, _settings(args))
        if args.command in RELEASE_COMMANDS:
            return release_command(args)
        if args.command == "stac-api":
            return stac_api_command(args)
        if args.command == "tiles":
            from devhost.tiles import tiles_command

            return tiles_command(args, _settings(args))
        if args.command == "validate":
            from devhost.commands import validate_command

            return validate_command(args, _settings(args))
        from devhost.demo import demo_command

        return demo_command(args, _settings(args))
    except PipelineError as exc:
        print(f"\nerror [{exc.code}]: {exc.message}", file=sys.stderr)
        if exc.remedy:
            print(f"what to do: {exc.remedy}", file=sys.stderr)
        for key, label in (
            ("gate_report", "gate report"),
            ("run_report", "run report"),
            ("run_summary", "run summary"),
        ):
            if exc.context.get(key):
                print(f"{label}: {exc.context[key]}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        print(
            f"\ninternal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in the pipeline. Run again with --debug and report the output.",
            file=sys.stderr,
        )
        if args.debug:
            traceback.print_exc()
        return EXIT_FAILED
