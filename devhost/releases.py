"""`python -m devhost approve|reject|versions|unpublish|cleanup`: the release lifecycle from
the command line, through a running app's HTTP API (`python -m devhost start`, or a
deployed app with --url and its function key in --key).

    python -m devhost approve  pipeline-era5 [--by NAME] [--reason TEXT]
    python -m devhost reject   pipeline-era5 --reason TEXT [--by NAME]
    python -m devhost versions era5
    python -m devhost unpublish era5 VERSION --reason TEXT [--by NAME]
    python -m devhost cleanup  era5 VERSION
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from shared.model.errors import PipelineError

DEFAULT_URL = "http://127.0.0.1:7071"
COMMANDS = ("approve", "reject", "versions", "unpublish", "cleanup")


class ApiError(PipelineError):
    """The app answered with an error: its code, message and remedy, as it said them."""

    code = "api_error"


def add_release_parsers(sub: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the app (default {DEFAULT_URL})")
        parser.add_argument("--key", help="function key of a deployed app (x-functions-key)")

    def who(parser: argparse.ArgumentParser, *, reason_required: bool) -> None:
        parser.add_argument("--by", default=None, help="who decides (default: your user name)")
        parser.add_argument("--reason", required=reason_required, help="why")

    for name, text in (("approve", "publish a built run"), ("reject", "publish nothing")):
        parser = sub.add_parser(name, help=f"{name} a run waiting for approval: {text}")
        parser.add_argument("instance_id", help="the run, e.g. pipeline-era5")
        who(parser, reason_required=name == "reject")
        common(parser)
    versions = sub.add_parser("versions", help="list a dataset's versions and the current one")
    versions.add_argument("dataset_id")
    common(versions)
    unpublish = sub.add_parser(
        "unpublish", help="take a version out of the catalog (the previous one becomes current)"
    )
    unpublish.add_argument("dataset_id")
    unpublish.add_argument("version")
    who(unpublish, reason_required=True)
    common(unpublish)
    cleanup = sub.add_parser("cleanup", help="delete an unpublished version's store")
    cleanup.add_argument("dataset_id")
    cleanup.add_argument("version")
    common(cleanup)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> dict[str, Any]:
    answer = _request(args, method, f"{args.url.rstrip('/')}/api/{path}", body)
    # An unpublish or cleanup still going on after the API's wait: follow its status.
    status_url = answer.get("status_url") if answer.get("phase") == "running" else None
    while status_url:
        time.sleep(1)
        view = _request(args, "GET", status_url)
        if view.get("error"):
            error = view["error"]
            raise ApiError(error.get("message", "the operation failed"), remedy=error.get("remedy"))
        if "result" in view:
            return dict(view["result"])
    return answer


def _request(args: argparse.Namespace, method: str, url: str, body: Any = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["x-functions-key"] = args.key
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read() or b"{}").get("error") or {}
        raise ApiError(
            f"{method} {url} answered {error.code}: {answer.get('message', error.reason)}",
            remedy=answer.get("remedy"),
        ) from None
    except urllib.error.URLError as error:
        raise ApiError(
            f"No app answers at {args.url} ({error.reason}).",
            remedy="Start it with `python -m devhost start`, or give its address with --url.",
        ) from None


def _decision(args: argparse.Namespace) -> dict[str, Any]:
    body = {"by": args.by or getpass.getuser()}
    if args.reason:
        body["reason"] = args.reason
    return body


def release_command(args: argparse.Namespace) -> int:
    quote = urllib.parse.quote
    if args.command in ("approve", "reject"):
        answer = _call(
            args, "POST", f"pipelines/{quote(args.instance_id)}/{args.command}", _decision(args)
        )
        decision = answer["decision"]
        print(
            f"{args.command}d {answer['instance_id']} (build {decision['run_id']}) as "
            f"{decision['by']}; follow it at {answer['status_url']}"
        )
        return 0
    if args.command == "versions":
        answer = _call(args, "GET", f"datasets/{quote(args.dataset_id)}")
        print(f"dataset {answer['dataset_id']}: current version {answer['current'] or '(none)'}")
        for version in answer["versions"]:
            mark = "*" if version["current"] else " "
            note = ""
            if version["state"] == "unpublished":
                gone = version["unpublished"]
                note = f"  unpublished by {gone['by']} at {gone['at']}: {gone['reason']}"
            print(
                f" {mark} {version['version']}  {version['state']:<11} published "
                f"{version['published']}  {version['file_count']} files  "
                f"{version['store_url']}{note}"
            )
        return 0
    path = f"datasets/{quote(args.dataset_id)}/versions/{quote(args.version)}/{args.command}"
    if args.command == "unpublish":
        answer = _call(args, "POST", path, _decision(args))
        print(
            f"unpublished {args.dataset_id} {args.version}; current version is now "
            f"{answer['current'] or '(none: the item was removed from the catalog)'}"
        )
        for skipped in answer.get("skipped") or []:
            print(f"  not {skipped['version']}: {skipped['why']}")
        return 0
    answer = _call(args, "POST", path)
    print(f"removed {answer['objects_removed']} object(s) of {args.dataset_id} {args.version}")
    return 0
