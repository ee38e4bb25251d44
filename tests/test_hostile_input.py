"""Hostile input at the HTTP starter: every body here is POSTed over real HTTP to the real
starter (DevServer in front of a DurableHost running the real app). Each must be answered
400 with the error code and a message naming the field or the value, and no orchestration
instance may be created. The rules are listed in docs/security.md ("Hostile input").

The host is configured as a deployment: one storage account (proddata), one allowed source
container (nc-files), local paths off, the work area, stores and catalog in blob storage."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devhost.durable import DurableHost, index_app
from devhost.server import DevServer
from shared.model.errors import BadRequest, LocationNotAllowed
from shared.model.locations import MAX_LOCATION_CHARS, Location, parse_location
from shared.model.plan import PipelineInput, RunPolicy
from shared.model.request import MAX_BODY_BYTES, PipelineRequest, read_body
from shared.model.settings import Settings, StorageAccount
from tests.helpers import call

ACCOUNT = "proddata"
HOST = f"{ACCOUNT}.blob.core.windows.net"
GOOD_SOURCE = "az://nc-files/era5/daily"
DEPLOYED_ENV = {
    "PIPELINE_STORAGE_ACCOUNT": ACCOUNT,
    "PIPELINE_ALLOWED_CONTAINERS": "nc-files",
    "PIPELINE_ALLOW_LOCAL_PATHS": "false",
    "PIPELINE_WORK_AREA": "az://pipeline-work/runs",
    "PIPELINE_STORE_ROOT": "az://nc-files/stores",  # in the source container, on purpose
    "PIPELINE_CATALOG": "az://pipeline-catalog/stac",
}
DEPLOYED = Settings.from_env(DEPLOYED_ENV)
BAD, REFUSED = "bad_request", "location_not_allowed"
JSON = {"Content-Type": "application/json"}


# -- plumbing ----------------------------------------------------------------------------
def encode(body: Any) -> bytes:
    """A case's body as sent: bytes as they are, anything else as JSON (ASCII-escaped, so
    control characters and lone surrogates travel as \\u escapes and decode as themselves)."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def request(**fields: Any) -> dict[str, Any]:
    """A valid request with some fields replaced (a value of None removes the field)."""
    body = {"source": GOOD_SOURCE, "dataset_id": "hostile", **fields}
    return {k: v for k, v in body.items() if v is not None}


def source(text: Any) -> dict[str, Any]:
    return request(source=text)


def dataset(value: Any) -> dict[str, Any]:
    return request(dataset_id=value)


def patterns(value: Any) -> dict[str, Any]:
    return request(options={"patterns": value})


# -- the deployed host -------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A DevServer + DurableHost with the deployment's settings in the environment (the
    starter reads them on each request, workers when they spawn)."""
    state = tmp_path_factory.mktemp("hostile") / "state"
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("PIPELINE_")]:
            env.delenv(name)
        for name, value in DEPLOYED_ENV.items():
            env.setenv(name, value)
        with DurableHost(state, workers=1) as host, DevServer(host) as server:
            yield server


# -- the table ---------------------------------------------------------------------------
LONG = "az://nc-files/" + "a" * 1986  # 2,000 characters
HUGE = encode({**request(dataset_id="huge"), "padding": "x" * (MAX_BODY_BYTES + 1000)})
DEEP = b'{"source": "az://nc-files/x", "dataset_id": "deep", "options": {"patterns": %s%s}}' % (
    b"[" * 2000,
    b"]" * 2000,
)

# fmt: off
CASES: list[tuple[str, Any, str, list[str]]] = [
    # -- storage accounts and hosts
    ("other-account-https", source("https://otheraccount.blob.core.windows.net/nc-files/x"),
     REFUSED, ["'otheraccount'", "'proddata'"]),
    ("other-account-abfs", source("abfss://nc-files@evil.dfs.core.windows.net/x"),
     REFUSED, ["'evil'", "'proddata'"]),
    ("abfs-foreign-host", source("abfs://nc-files@proddata.dfs.core.windows.net.evil.com/x"),
     REFUSED, ["'proddata.dfs.core.windows.net.evil.com'", "after '@'"]),
    ("subdomain-of-account", source(f"https://x.{HOST}/nc-files/x"),
     REFUSED, [f"'x.{HOST}'", "not a storage account endpoint"]),
    ("other-host", source("https://example.com/nc-files/x"), REFUSED, ["not a blob URL"]),
    ("http-not-https", source(f"http://{HOST}/nc-files/x"), REFUSED, ["must use https"]),
    ("port-on-production-host", source(f"https://{HOST}:8443/nc-files/x"),
     REFUSED, [":8443", "port"]),
    # -- schemes
    ("scheme-s3", source("s3://bucket/x"), REFUSED, ["'s3://bucket/x'", "scheme 's3'"]),
    ("scheme-gs", source("gs://bucket/x"), REFUSED, ["scheme 'gs'"]),
    ("scheme-ftp", source("ftp://files.example.com/x"), REFUSED, ["scheme 'ftp'"]),
    ("scheme-data", source("data:text/plain;base64,SGk="), REFUSED, ["scheme 'data'"]),
    ("scheme-javascript", source("javascript:alert(1)"), REFUSED, ["scheme 'javascript'"]),
    ("file-url-local-off", source("file:///etc/passwd"),
     REFUSED, ["'file:///etc/passwd'", "local path"]),
    ("local-path-local-off", source("/etc/passwd"), REFUSED, ["'/etc/passwd'", "local path"]),
    # -- traversal and encodings
    ("dot-dot", source("az://nc-files/era5/../../secrets/x"), REFUSED, ["'..'"]),
    ("dot-dot-https", source(f"https://{HOST}/nc-files/../secrets/x"), REFUSED, ["'..'"]),
    ("encoded-dots", source("az://nc-files/%2e%2e/secrets"), REFUSED, ["'.'", "'%2e'"]),
    ("encoded-dots-upper", source(f"https://{HOST}/nc-files/%2E%2E/x"), REFUSED, ["'%2E'"]),
    ("double-encoded-dots", source("az://nc-files/%252e%252e/x"),
     REFUSED, ["double encoding", "'%25'"]),
    ("encoded-slash", source("az://nc-files/a%2f..%2fb"), REFUSED, ["'/'", "'%2f'"]),
    ("encoded-backslash", source("az://nc-files/a%5c..%5cb"), REFUSED, ["backslash", "'%5c'"]),
    ("backslashes", source("az://nc-files\\..\\secrets\\x"), REFUSED, ["backslash"]),
    ("two-dot-leader", source("az://nc-files/\u2025/x"), REFUSED, ["reads as '..'", "NFKC"]),
    # -- query strings, fragments, credentials
    ("sas-token", source(f"https://{HOST}/nc-files/x?sv=2022-11-02&sig=abc%3D"),
     REFUSED, ["query string", "SAS"]),
    ("fragment", source("az://nc-files/x#frag"), REFUSED, ["'az://nc-files/x#frag'", "fragment"]),
    ("userinfo-https", source(f"https://user:pass@{HOST}/nc-files/x"),
     REFUSED, ["user name or password"]),
    ("userinfo-host-confusion", source(f"https://{HOST}@evil.com/nc-files/x"),
     REFUSED, ["user name or password"]),
    ("userinfo-az", source("az://user:pw@nc-files/x"), REFUSED, ["'user:pw@nc-files'", "password"]),
    ("password-in-abfs", source(f"abfss://nc-files:pw@{ACCOUNT}.dfs.core.windows.net/x"),
     REFUSED, ["password"]),
    # -- lengths and characters
    ("source-2000-chars", source(LONG),
     BAD, ["too long", str(MAX_LOCATION_CHARS), "(2000 characters)"]),
    ("segment-300-bytes", source("az://nc-files/" + "é" * 150), BAD, ["300 bytes", "255"]),
    ("nul", source("az://nc-files/x\x00.nc"), BAD, ["control characters", "U+0000"]),
    ("crlf-header-injection", source("az://nc-files/x\r\nSet-Cookie: a=b"),
     BAD, ["control characters", "U+000D"]),
    ("encoded-nul", source("az://nc-files/x%00.nc"), BAD, ["control characters", "'%00'"]),
    ("zero-width", source("az://nc-files/era5\u200b/x"), BAD, ["U+200B ZERO WIDTH SPACE"]),
    ("bidi-override", source("az://nc-files/x\u202egpj.nc"),
     BAD, ["U+202E RIGHT-TO-LEFT OVERRIDE"]),
    ("encoded-bidi", source("az://nc-files/x%E2%80%AEgpj.nc"), BAD, ["U+202E"]),
    ("lone-surrogate", source("az://nc-files/x\ud800"), BAD, ["lone surrogate", "U+D800"]),
    # -- containers
    ("container-not-allowed", source("az://secrets/x"),
     REFUSED, ["'secrets'", "allowed: nc-files"]),
    ("work-area-container", source("az://pipeline-work/runs"), REFUSED, ["'pipeline-work'"]),
    ("inside-store-root", source("az://nc-files/stores/era5"), REFUSED, ["store root"]),
    ("above-store-root", source("az://nc-files"), REFUSED, ["store root"]),
    ("container-uppercase", source("az://NC-FILES/x"),
     BAD, ["'NC-FILES'", "not a valid container"]),
    ("container-too-short", source("az://ab/x"), BAD, ["'ab'", "not a valid container"]),
    # -- dataset ids
    ("id-dot-dot", dataset(".."), BAD, ["'dataset_id'", "'..'"]),
    ("id-dot", dataset("."), BAD, ["'dataset_id'", "'.'"]),
    ("id-slash", dataset("a/b"), BAD, ["'dataset_id'", "'a/b'"]),
    ("id-uppercase", dataset("A"), BAD, ["'dataset_id'", "'A'"]),
    ("id-empty", dataset(""), BAD, ["'dataset_id'", "empty"]),
    ("id-64-chars", dataset("a" * 64), BAD, ["'dataset_id'", "a" * 64]),
    ("id-reserved", dataset("con"), BAD, ["'dataset_id'", "'con'", "reserved"]),
    ("id-trailing-dot", dataset("era5."), BAD, ["'dataset_id'", "'era5.'"]),
    ("id-unicode", dataset("érа5"), BAD, ["'dataset_id'"]),
    ("id-nested-object", dataset({"$ne": ""}), BAD, ["'dataset_id'", "string", "dict"]),
    ("collection-dot-dot", request(options={"collection": ".."}), BAD, ["'collection'", "'..'"]),
    # -- other fields and patterns
    ("source-not-a-string", source(["az://nc-files/x"]), BAD, ["'source'", "string", "list"]),
    ("concat-dim-injection", request(concat_dim="time; rm -rf"),
     BAD, ["'concat_dim'", "'time; rm -rf'"]),
    ("pattern-absolute", patterns(["/etc/*"]), BAD, ["'/etc/*'", "absolute"]),
    ("pattern-dot-dot", patterns(["../secrets/*.nc"]), BAD, ["'../secrets/*.nc'", "'..'"]),
    ("pattern-backslash", patterns(["..\\*.nc"]), BAD, ["backslash"]),
    ("pattern-control", patterns(["era5\r\n*.nc"]), BAD, ["control characters", "U+000D"]),
    ("pattern-too-long", patterns(["*" * 300]), BAD, ["longer than 256"]),
    ("too-many-patterns", patterns([f"*.n{i}" for i in range(21)]),
     BAD, ["21 patterns", "at most 20"]),
    ("unknown-field", request(sas_token="sv=2022&sig=x"), BAD, ["Unknown field", "'sas_token'"]),
    ("unknown-option", request(options={"account_key": "x"}),
     BAD, ["Unknown option", "'account_key'"]),
    # -- bodies
    ("json-array", [request()], BAD, ["JSON object", "list"]),
    ("json-string", GOOD_SOURCE, BAD, ["JSON object", "str"]),
    ("json-null", None, BAD, ["JSON object", "NoneType"]),
    ("empty-body", b"", BAD, ["not valid JSON"]),
    ("not-json", b"source=az://nc-files/x&dataset_id=x", BAD, ["not valid JSON"]),
    ("not-utf8", b'{"source": "\xff"}', BAD, ["not valid JSON"]),
    ("huge-body", HUGE, BAD, [f"{len(HUGE)} bytes", str(MAX_BODY_BYTES)]),
    ("deep-nesting", DEEP, BAD, ["deeper than"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("case", "body", "code", "fragments"),
    [pytest.param(*c, id=c[0]) for c in CASES],
)
def test_hostile_input_is_a_400_naming_the_value_and_starts_nothing(
    deployed: DevServer, case: str, body: Any, code: str, fragments: list[str]
) -> None:
    answer = call("POST", f"{deployed.base_url}/api/pipelines", encode(body), JSON)
    assert answer.status == 400, (case, answer.body[:500])
    error = answer.json()["error"]
    assert error["code"] == code, error
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error)
    assert error["remedy"]
    assert error["retryable"] is False
    # The message quotes values with repr(): never a raw control, bidi or zero-width character.
    assert not any(ch in error["message"] for ch in "\x00\r\n\u200b\u202e\ud800"), error
    assert len(error["message"]) < 1500, error  # a huge value is cut, not echoed whole
    assert deployed.host.instances() == []


# -- the status endpoint -----------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "pipeline-never-started",
        "..%2F..%2Fruntime%2Fwebhooks%2Fdurabletask%2Finstances",
        "pipeline-x%0d%0aSet-Cookie:%20a",
        "PIPELINE-UPPER",
        "pipeline-" + "a" * 300,
    ],
)
def test_the_status_endpoint_answers_unknown_and_hostile_ids_404_without_keys(
    deployed: DevServer, path: str
) -> None:
    answer = call("GET", f"{deployed.base_url}/api/pipelines/{path}")
    assert answer.status == 404, answer.body
    assert answer.json()["error"]["code"] == "not_found"
    everything = answer.body.decode() + json.dumps(answer.headers)
    assert "code=" not in everything
    assert deployed.system_key not in everything
    assert deployed.host.instances() == []


def test_the_status_of_a_run_never_carries_keys(tmp_path: Path) -> None:
    """A pending run on a host that is never started (nothing runs): its status view has
    the run's fields and none of the Durable management URLs, which carry the system key."""
    host = DurableHost(tmp_path / "state")
    try:
        with DevServer(host) as server:
            run = PipelineInput(PipelineRequest.from_dict(request()), RunPolicy())
            host.start_new("pipeline", "pipeline-hostile", json.dumps(run.to_dict()))
            answer = call("GET", f"{server.base_url}/api/pipelines/pipeline-hostile")
    finally:
        host.stop()
    assert answer.status == 200, answer.body
    assert answer.json()["instance_id"] == "pipeline-hostile"
    everything = answer.body.decode() + json.dumps(answer.headers)
    assert "code=" not in everything
    assert server.system_key not in everything
    assert "statusQueryGetUri" not in everything
    assert "runtime/webhooks" not in everything


# -- authorization levels ----------------------------------------------------------------
def http_functions() -> dict[str, Any]:
    return {
        f.get_function_name(): f.get_trigger()
        for f in index_app().functions
        if f.get_trigger() is not None and f.get_trigger().get_binding_name() == "httpTrigger"
    }


def test_every_route_needs_a_function_key_and_only_health_is_anonymous() -> None:
    """DevServer does not enforce keys on /api/ routes (neither does `func start`), so this
    checks what the app declares, which is what Azure enforces."""
    levels = {name: trigger.auth_level for name, trigger in http_functions().items()}
    assert levels == {
        "start_pipeline": func.AuthLevel.FUNCTION,
        "pipeline_status": func.AuthLevel.FUNCTION,
        "approve_pipeline": func.AuthLevel.FUNCTION,
        "reject_pipeline": func.AuthLevel.FUNCTION,
        "dataset_versions": func.AuthLevel.FUNCTION,
        "unpublish_version": func.AuthLevel.FUNCTION,
        "cleanup_version": func.AuthLevel.FUNCTION,
        "list_runs": func.AuthLevel.FUNCTION,
        "list_datasets": func.AuthLevel.FUNCTION,
        "run_report": func.AuthLevel.FUNCTION,
        "version_preview": func.AuthLevel.FUNCTION,
        "operator_page": func.AuthLevel.FUNCTION,  # the page and what it reads: the API's auth
        "openapi": func.AuthLevel.FUNCTION,
        "health": func.AuthLevel.ANONYMOUS,  # library versions only: no data, no ids
    }


# -- parse_location, unit level ----------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("az://nc-files/era5/daily", "az://nc-files/era5/daily"),
        (f"abfss://nc-files@{ACCOUNT}.dfs.core.windows.net/era5", "az://nc-files/era5"),
        (f"abfs://nc-files@{ACCOUNT.upper()}.blob.core.windows.net/era5", "az://nc-files/era5"),
        (f"https://{HOST}/nc-files/era5/run%201.nc", "az://nc-files/era5/run 1.nc"),
        ("az://nc-files/era5/run 1.nc", "az://nc-files/era5/run 1.nc"),
        ("az://nc-files/caf%C3%A9/%C3%85.nc", "az://nc-files/café/Å.nc"),
        ("az://nc-files/été/データ.nc", "az://nc-files/été/データ.nc"),
        ("az://nc-files/100%.nc", "az://nc-files/100%.nc"),
        ("  az://nc-files/era5//daily/  \n", "az://nc-files/era5/daily"),
        ("az://nc-files/storesx/era5", "az://nc-files/storesx/era5"),
    ],
)
def test_legitimate_sources_still_parse(text: str, expected: str) -> None:
    assert parse_location(text, DEPLOYED, what="source").url == expected


def test_the_pipelines_own_areas_parse_for_the_pipeline_but_not_as_a_source() -> None:
    for text, what in [
        ("az://pipeline-work/runs/manifests/x.json", "manifest"),
        ("az://nc-files/stores/era5/run.json", "store"),
        (DEPLOYED.catalog, "catalog location"),
    ]:
        location = parse_location(text, DEPLOYED, what=what)
        assert isinstance(location, Location)
        with pytest.raises(LocationNotAllowed):
            parse_location(text, DEPLOYED, what="source")


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("az://nc-files/%%32%65%%32%65/x", LocationNotAllowed, "'%2e'"),  # builds %2e when decoded
        ("az://nc-files/a%C2%85b", BadRequest, "U+0085"),  # C1 control, UTF-8 encoded
        ("az://nc-files/a\x85b", BadRequest, "U+0085"),
        ("az://nc-files/a\u00a0b", BadRequest, "NO-BREAK SPACE"),
        ("az://nc-files/a\u2028b", BadRequest, "LINE SEPARATOR"),
        ("az://nc-files/\uff0e\uff0e/x", LocationNotAllowed, "'..'"),  # fullwidth dots
        ("az://nc-files/a\uff0fb", LocationNotAllowed, "'/'"),  # fullwidth solidus
        ("az://nc-files/%FF.nc", BadRequest, "not UTF-8"),
        ("az://nc-files/x?", LocationNotAllowed, "query string"),
        ("abfs://nc-files@proddata.evil.com/x", LocationNotAllowed, "after '@'"),
        ("az://user@nc-files/x", LocationNotAllowed, "after '@'"),
        ("file://etc/passwd", LocationNotAllowed, "'etc'"),
        ("https://[::1/x", BadRequest, "not a valid URL"),
        ("https://" + "a" * 2000, BadRequest, "(2008 characters)"),
    ],
)
def test_parse_location_refuses_the_subtler_forms(
    text: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as raised:
        parse_location(text, DEPLOYED, what="source")
    assert fragment in str(raised.value)


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(BadRequest) as raised:
        parse_location(LONG, DEPLOYED, what="source")
    message = str(raised.value)
    assert "(2000 characters)" in message
    assert len(message) < 1000


def test_the_remedy_lists_what_this_deployment_accepts() -> None:
    with pytest.raises(LocationNotAllowed) as raised:
        parse_location("s3://bucket/x", DEPLOYED, what="source")
    remedy = raised.value.remedy
    assert "az://CONTAINER/prefix" in remedy
    assert f"https://{HOST}/CONTAINER/prefix" in remedy
    assert "nc-files" in remedy
    assert "local" not in remedy  # local paths are off here


# -- the body, unit level ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"source": "az://nc-files/x", "source": "https://evil"}', "'source' twice"),
        (b'{"source": NaN}', "NaN"),
        (b" " * (MAX_BODY_BYTES + 1), f"at most {MAX_BODY_BYTES} bytes"),
        (b'{"a": [[[[[[[[[1]]]]]]]]]}', "deeper than 8"),
        (b"[" * 100_000, "bytes"),
    ],
)
def test_read_body_refuses_what_no_request_looks_like(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(fragment)):
        read_body(body)


def test_a_real_request_body_reads_back() -> None:
    body = encode(request(options={"patterns": ["*.nc", "2020/*.nc4"], "batch_size": 10}))
    parsed = PipelineRequest.from_body(body)
    assert parsed.patterns == ("*.nc", "2020/*.nc4")
    assert parsed.options == {"batch_size": 10}


def test_settings_for_the_deployed_host_are_what_the_table_assumes() -> None:
    assert DEPLOYED.account == StorageAccount(ACCOUNT)
    assert DEPLOYED.allowed_containers == ("nc-files",)
    assert DEPLOYED.allow_local_paths is False
