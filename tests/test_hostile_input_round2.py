"""Hostile input, second round: numbers too long for Python to read, ids and names with a
trailing newline (which a regex anchored by '$' lets through), and route ids that name
nothing. Every request goes over real HTTP to the real app (DevServer in front of a
DurableHost); the host is never started, so a request that slipped through would only leave
a pending instance behind, which the tests look for.

The host uses local storage (a temporary work area, stores and catalog), so the dataset
routes reach real storage: an answer must never show those internal paths."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableHost
from devhost.server import DevServer
from shared.model.errors import BadRequest
from shared.model.locations import show_value
from shared.model.plan import PipelineInput, RunPolicy
from shared.model.request import MAX_NUMBER_DIGITS, PipelineRequest, identifier, read_body
from shared.model.settings import Settings
from tests.helpers import Answer, call

JSON = {"Content-Type": "application/json"}
HUGE = "1" * 5000  # past Python's 4,300-digit limit for int("...")
VERSION = "0123456789abcdef"


class Local:
    """The server, its host, and the temporary folder every internal path is below."""

    def __init__(self, server: DevServer, host: DurableHost, root: Path, source: Path) -> None:
        self.server, self.host, self.root, self.source = server, host, root, source

    def call(self, method: str, path: str, body: bytes | None = None) -> Answer:
        return call(method, f"{self.server.base_url}/api/{path}", body, JSON if body else None)

    def body(self, **fields: Any) -> dict[str, Any]:
        return {"source": str(self.source), "dataset_id": "hostile", **fields}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    root = tmp_path_factory.mktemp("hostile2")
    source = root / "source"
    source.mkdir()
    settings = Settings(
        allow_local_paths=True,
        work_area=str(root / "work"),
        store_root=str(root / "stores"),
        catalog=str(root / "catalog"),
    )
    host = DurableHost(root / "state")  # never started: nothing runs
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in [n for n in os.environ if n.startswith("PIPELINE_")]:
                env.delenv(name)
            for name, value in settings.to_env().items():
                env.setenv(name, value)
            with DevServer(host) as server:
                yield Local(server, host, root, source)
    finally:
        host.stop()


def refused(answer: Answer, status: int, code: str, local: Local) -> dict[str, Any]:
    """The error of a refused request, checked for what every refusal has: the status, the
    code, a remedy, no internal path, no raw control character, a bounded message."""
    assert answer.status == status, answer.body[:800]
    error = answer.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and error["remedy"], error
    assert str(local.root) not in answer.body.decode(), error
    assert not any(ch in error["message"] for ch in "\x00\r\n"), error
    assert len(error["message"]) < 1500, error
    return error


# -- 1. numbers too long to read ---------------------------------------------------------
def raw_body(local: Local, options: str) -> bytes:
    """A body with the options object written by hand (json.dumps cannot write HUGE)."""
    head = json.dumps(local.body())[:-1]
    return f'{head}, "options": {options}}}'.encode()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (f'{{"batch_size": {HUGE}}}', "'batch_size'"),
        (f'{{"batch_size": -{HUGE}}}', "'batch_size'"),
        (f'{{"patterns": ["*.nc", {HUGE}]}}', "'patterns'"),
        (f'{{"drop_variables": [[{HUGE}]]}}', "'drop_variables'"),
        (f'{{"batch_size": {"9" * (MAX_NUMBER_DIGITS + 1)}}}', "'batch_size'"),
    ],
    ids=["batch-size", "negative", "in-a-list", "in-a-nested-list", "just-over-the-limit"],
)
def test_a_number_too_long_to_read_is_a_400_naming_the_field_and_starts_nothing(
    local: Local, options: str, field: str
) -> None:
    answer = local.call("POST", "pipelines", raw_body(local, options))
    error = refused(answer, 400, "bad_request", local)
    assert field in error["message"], error
    assert "digits" in error["message"], error
    assert local.host.instances() == []


def test_a_number_too_long_to_read_in_a_decision_body_is_a_400(local: Local) -> None:
    body = f'{{"by": "alice", "reason": {HUGE}}}'.encode()
    answer = local.call("POST", f"datasets/era5/versions/{VERSION}/unpublish", body)
    error = refused(answer, 400, "bad_request", local)
    assert "'reason'" in error["message"] and "5000 digits" in error["message"], error


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (HUGE.encode(), "5000 digits"),
        (f"[{HUGE}]".encode(), "5000 digits"),
        (b'{"batch_size": 1e400}', "'1e400'"),
        (b'{"a": [-1e999]}', "'-1e999'"),
    ],
    ids=["bare", "in-a-list", "float-overflow", "negative-float-overflow"],
)
def test_read_body_refuses_numbers_python_cannot_hold(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(fragment)) as raised:
        read_body(body)
    assert raised.value.remedy


def test_ordinary_numbers_still_read_back() -> None:
    longest = "9" * MAX_NUMBER_DIGITS
    body = f'{{"a": {longest}, "b": -7, "c": 2.5, "d": [1, 1e3]}}'.encode()
    assert read_body(body) == {"a": int(longest), "b": -7, "c": 2.5, "d": [1, 1000.0]}


# -- 2. a trailing newline in an id or a name --------------------------------------------
@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        ({"options": {"collection": "coll\n"}}, ["'collection'", "'coll\\n'"]),
        ({"collection": "coll\n"}, ["'collection'", "'coll\\n'"]),
        ({"options": {"drop_variables": ["height\n"]}}, ["'drop_variables'", "'height\\n'"]),
        ({"options": {"group": "science\n/grid"}}, ["'group'", "'science\\n/grid'"]),
    ],
    ids=["option-collection", "field-collection", "drop-variables", "group"],
)
def test_a_trailing_newline_in_an_id_or_name_is_a_400_naming_the_field(
    local: Local, fields: dict[str, Any], fragments: list[str]
) -> None:
    answer = local.call("POST", "pipelines", json.dumps(local.body(**fields)).encode())
    error = refused(answer, 400, "bad_request", local)
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error)
    assert local.host.instances() == []


@pytest.mark.parametrize("value", ["coll\n", "coll\r\n", "\ncoll", "coll\n\n"])
def test_identifier_refuses_newlines_anywhere(value: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(show_value(value))):
        identifier(value, "Option 'collection'")


def test_the_dataset_id_and_concat_dim_are_still_trimmed_of_surrounding_space() -> None:
    request = PipelineRequest.from_dict(
        {"source": "/data", "dataset_id": " era5\n", "concat_dim": "time\n"}
    )
    assert (request.dataset_id, request.concat_dim) == ("era5", "time")


# -- 3. route ids that name nothing ------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "shown"),
    [
        ("GET", "datasets/era5%0a", "'era5\\n'"),
        ("GET", "datasets/era5%0d%0a", "'era5\\r\\n'"),
        ("POST", f"datasets/x%0a/versions/{VERSION}/cleanup", "'x\\n'"),
        ("POST", f"datasets/x/versions/{VERSION}%0a/cleanup", f"'{VERSION}\\n'"),
        ("POST", f"datasets/x%0a/versions/{VERSION}/unpublish", "'x\\n'"),
    ],
    ids=["get", "get-crlf", "cleanup", "cleanup-version", "unpublish"],
)
def test_a_dataset_or_version_with_a_trailing_newline_is_a_404_naming_it_without_paths(
    local: Local, method: str, path: str, shown: str
) -> None:
    body = json.dumps({"by": "alice", "reason": "r"}).encode() if method == "POST" else None
    error = refused(local.call(method, path, body), 404, "not_found", local)
    assert shown in error["message"], error


def test_an_unknown_dataset_is_a_404_too(local: Local) -> None:
    error = refused(local.call("GET", "datasets/era5"), 404, "not_found", local)
    assert "'era5'" in error["message"], error


def test_a_run_id_with_a_trailing_newline_is_not_that_run(local: Local) -> None:
    run = PipelineInput(PipelineRequest.from_dict(local.body(dataset_id="x")), RunPolicy())
    local.host.start_new("pipeline", "pipeline-x", json.dumps(run.to_dict()))
    try:
        assert local.call("GET", "pipelines/pipeline-x").status == 200
        for path in ["pipelines/pipeline-x%0a", "pipelines/pipeline-x%0d%0a"]:
            error = refused(local.call("GET", path), 404, "not_found", local)
            assert "'pipeline-x\\" in error["message"], error
        decide = json.dumps({"by": "alice"}).encode()
        answer = local.call("POST", "pipelines/pipeline-x%0a/approve", decide)
        error = refused(answer, 404, "not_found", local)
        assert "'pipeline-x\\n'" in error["message"], error
    finally:
        local.host.purge("pipeline-x")
