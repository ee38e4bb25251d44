"""The pipeline health workbook (infra/modules/workbook.bicep): the document Azure gets is
built here from the Bicep file as a real Bicep parser reads it (pycep-parser), the files it
loads included; it is a well-formed workbook (the workbook schema as Microsoft publishes it,
tests/schemas/azure-workbooks/); every query parses and type-checks with Kusto's own parser
(Kusto.Language, @kusto/language-service-next) over the Application Insights tables; every
field and message a query reads is one docs/telemetry.md lists; and the alerts' queries are
the workbook's too (one source: infra/alerts/).

Nothing here talks to Azure: whether the portal renders it, and what the queries find on a
real Application Insights resource, is not checked."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import missing_tool

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MODULE = INFRA / "modules" / "workbook.bicep"
SCHEMA = ROOT / "tests" / "schemas" / "azure-workbooks" / "workbook.json"
SCHEMA_SHA256 = "44241ce90864485e9410cb88770fef1c535075eabcc49710532372501b3ec947"
TELEMETRY = (ROOT / "docs" / "telemetry.md").read_text()
KUSTO = ROOT / ".tools" / "kusto" / "node_modules"
APP_INSIGHTS_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-test/providers/"
    "microsoft.insights/components/vzarr-appi"
)
# The Application Insights tables and columns the queries read (the classic schema).
TABLES = {
    "traces": "(timestamp:datetime, message:string, severityLevel:int, "
    "customDimensions:dynamic, operation_Id:string, cloud_RoleName:string)",
    "requests": "(timestamp:datetime, name:string, duration:real, success:bool, "
    "resultCode:string, operation_Id:string)",
    "availabilityResults": "(timestamp:datetime, name:string, location:string, success:bool)",
}
# What the workbook substitutes for its parameters before a query runs (two shapes each:
# a relative range and an absolute one; all datasets and two).
EXPANSIONS = [
    {"{TimeRange}": "> ago(7d)", "{Dataset}": "'*'"},
    {
        "{TimeRange}": "between (datetime(2026-01-01T00:00:00Z) .. datetime(2026-01-08T00:00:00Z))",
        "{Dataset}": "'era5-t2m','tas-demo'",
    },
]
BICEP_ESCAPES = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


# -- the document, built from the Bicep file -------------------------------------------------
@cache
def module() -> dict[str, Any]:
    try:
        from pycep import BicepParser
    except ImportError:
        missing_tool("pycep-parser is not installed (requirements-dev.txt; run ./dev setup)")
    return dict(BicepParser().parse(text=MODULE.read_text()))


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: BICEP_ESCAPES.get(m.group(1), m.group(0)), text)


class Evaluator:
    """Bicep's values as ARM computes them, for what the workbook module uses: literals,
    string interpolation, variables, for-loops, property access, loadTextContent, replace,
    concat and string(); anything else fails the test (so a new construct is noticed)."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.scope = dict(parameters)
        self.replaced: list[tuple[str, str]] = []  # (loaded file, text replace() looked for)
        for name, variable in module()["variables"].items():  # in file order
            self.scope[name] = self.value(variable["value"], self.scope)

    def value(self, node: Any, scope: dict[str, Any]) -> Any:
        if isinstance(node, str):
            if node in scope:  # pycep gives identifiers and literals alike as str
                return scope[node]
            parts = re.split(r"\$\{([^}]*)\}", node)
            out = unescape(parts[0])
            for expression, text in zip(parts[1::2], parts[2::2], strict=True):
                out += str(self.lookup(expression, scope)) + unescape(text)
            return out
        if isinstance(node, list):
            return [self.value(item, scope) for item in node]
        if isinstance(node, dict) and "loop_type" in node:
            detail = node["loop_type"]["detail"]
            items = self.value(detail["array_name"], scope)
            index = detail.get("index_name")
            return [
                self.value(
                    node["config"],
                    {**scope, detail["item_name"]: item, **({index: i} if index else {})},
                )
                for i, item in enumerate(items)
            ]
        if isinstance(node, dict) and "function" in node:
            return self.function(node["function"], scope)
        if isinstance(node, dict) and "operator" in node:
            operator = node["operator"]
            assert operator["type"] == "property_accessor", operator
            operands = operator["operands"]
            return self.value(operands["operand_1"], scope)[operands["operand_2"]]
        if isinstance(node, dict):
            # a quoted key ('$schema') comes with its quotes
            return {unescape(k.strip("'")): self.value(v, scope) for k, v in node.items()}
        return node

    def lookup(self, expression: str, scope: dict[str, Any]) -> Any:
        name, *fields = expression.split(".")
        value = scope[name]
        for field in fields:
            value = value[field]
        return value

    def function(self, function: dict[str, Any], scope: dict[str, Any]) -> Any:
        kind, given = function["type"], function["parameters"]
        if kind == "load_text_content":
            return (MODULE.parent / given["file_path"]).read_text()
        args = {k: self.value(v, scope) for k, v in given.items()}
        if kind == "replace":
            original, old = args["original_string"], args["old_string"]
            self.replaced.append((original, old))
            return original.replace(old, args["new_string"])
        if kind == "concat":
            return [item for key in sorted(args) for item in args[key]]
        if kind == "string":
            return json.dumps(args["value_to_convert"], separators=(",", ":"))
        raise AssertionError(f"workbook.bicep uses {kind}(), which this test cannot evaluate")


@cache
def built() -> Evaluator:
    return Evaluator(
        {
            "namePrefix": "vzarr",
            "location": "westeurope",
            "tags": {},
            "appInsightsId": APP_INSIGHTS_ID,
        }
    )


def document() -> dict[str, Any]:
    return dict(built().scope["workbookDocument"])


def query_items(items: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every query item, in groups too."""
    found = []
    for item in document()["items"] if items is None else items:
        if item["type"] == 3:
            found.append(item)
        if item["type"] == 12:
            found += query_items(item["content"]["items"])
    return found


def all_items(items: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    found = []
    for item in document()["items"] if items is None else items:
        found.append(item)
        if item["type"] == 12:
            found += all_items(item["content"]["items"])
    return found


def queries() -> dict[str, str]:
    """Every query of the workbook by where it is (item name, or the parameter's)."""
    found = {item["name"]: item["content"]["query"] for item in query_items()}
    for item in document()["items"]:
        if item["type"] == 9:
            for parameter in item["content"]["parameters"]:
                if "query" in parameter:
                    found[f"parameter {parameter['name']}"] = parameter["query"]
    return found


# -- well formed ------------------------------------------------------------------------
def test_the_stored_workbook_schema_is_microsofts_file_byte_for_byte():
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_the_workbook_document_is_well_formed():
    from jsonschema import Draft7Validator

    schema = json.loads(SCHEMA.read_text())
    doc = document()
    errors = sorted(Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors]
    assert doc["version"] == "Notebook/1.0" and doc["$schema"] == schema["$id"]
    # what the resource carries is the same document, as ARM's string() writes it
    resource = module()["resources"]["workbook"]["config"]
    assert resource["kind"] == "shared" and resource["properties"]["category"] == "workbook"
    serialized = built().value(resource["properties"]["serializedData"], built().scope)
    assert json.loads(serialized) == doc
    names = [item["name"] for item in all_items()]
    assert len(names) == len(set(names)) and len(names) > 20
    for item in query_items():
        content = item["content"]
        assert content["version"] == "KqlItem/1.0" and content["queryType"] == 0
        assert content["resourceType"] == "microsoft.insights/components"
        assert content["title"] and content["query"].strip()


def test_parameters_are_time_range_and_dataset_and_every_query_uses_only_those():
    [parameters] = [item for item in document()["items"] if item["type"] == 9]
    defined = {p["name"]: p for p in parameters["content"]["parameters"]}
    assert set(defined) == {"TimeRange", "Dataset"}
    assert defined["TimeRange"]["type"] == 4 and defined["Dataset"]["multiSelect"]
    assert defined["Dataset"]["typeSettings"]["selectAllValue"] == "*"
    used = {name for query in queries().values() for name in re.findall(r"\{(\w+)[:}]", query)}
    assert used == {"TimeRange", "Dataset"}
    for item in query_items():
        if "{TimeRange}" in item["content"]["query"]:
            assert item["content"]["timeContextFromParameter"] == "TimeRange"


def test_the_review_s_health_metrics_are_all_there():
    titles = " | ".join(item["content"]["title"] for item in query_items()).lower()
    for metric in (
        "runs per day by outcome",
        "by stage and error code",
        "unsuitable files found by validate",
        "peak memory against the ceiling",
        "runs in flight longer than 30 minutes",
        "reference size per store",
        "uploads ignored, and why",
        "storage retries",
    ):
        assert metric in titles, metric


# -- one source: the alerts' queries -----------------------------------------------------------
def alert_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((INFRA / "alerts").glob("*.kql"))}


def test_every_alert_query_is_in_the_workbook_as_it_is():
    shown = [item["content"]["query"] for item in query_items()]
    for name, text in alert_files().items():
        assert text in shown, f"{name} is not in the workbook as it is"


def test_the_workbook_changes_an_alert_query_only_where_the_text_it_replaces_is_there():
    """Runs in flight and the retries take alert 6's and 5's queries with the workbook's
    limit and window: replace() finds its text, or the test fails (an alert changed on its
    own would otherwise leave the workbook on a limit nobody chose)."""
    replaced = built().replaced
    assert replaced
    for original, old in replaced:
        assert old in original, f"{old!r} is no longer in the query it replaces it in"
    derived = {i["name"]: i["content"]["query"] for i in query_items()}
    assert "let limit = 30m;" in derived["runs-in-flight"]
    assert "timestamp {TimeRange}" in derived["storage-retries"]


def test_the_workbook_queries_read_the_records_the_way_the_alerts_do():
    prelude = (
        "| where message has '\"stage\":'\n"
        '| extend f = parse_json(extract(@"(\\{.*\\})$", 1, message)), '
        'msg = tostring(split(message, " {")[0])'
    )

    def lines(text: str) -> str:
        return "\n".join(line.strip() for line in text.splitlines())

    for name, query in {**queries(), **alert_files()}.items():
        if "msg" in query:
            assert lines(prelude) in lines(query), name


# -- Kusto's own parser --------------------------------------------------------------------
def kusto_diagnostics(texts: list[str]) -> list[list[dict[str, Any]]]:
    node = shutil.which("node")
    if node is None:
        missing_tool("node is not installed (Node.js: the Kusto parser runs on it)")
    if not (KUSTO / "@kusto" / "language-service-next").is_dir():
        missing_tool(f"the Kusto parser is not installed in {KUSTO.parent} (run ./dev setup)")
    done = subprocess.run(
        [node, str(ROOT / "tests" / "kql_check.js"), str(KUSTO)],
        input=json.dumps({"tables": TABLES, "queries": texts}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout))


def expanded(query: str, expansion: dict[str, str]) -> str:
    for token, value in expansion.items():
        query = query.replace(token, value)
    return query


def test_every_query_parses_and_type_checks_with_kustos_own_parser():
    named = [
        (f"{name} ({'; '.join(expansion.values())})", expanded(query, expansion))
        for name, query in {**queries(), **alert_files()}.items()
        for expansion in EXPANSIONS
    ]
    results = kusto_diagnostics([text for _, text in named])
    problems = {
        name: [f"{d['severity']} at {d['start']} ({d['text']!r}): {d['message']}" for d in found]
        for (name, _), found in zip(named, results, strict=True)
        if found
    }
    assert problems == {}


def test_kustos_parser_is_live_it_refuses_a_broken_query_and_an_unknown_column():
    broken, unknown, fine = kusto_diagnostics(
        [
            "traces | where timestamp > | take 1",
            "traces | where nosuchcolumn > 1",
            "traces | summarize last_seen = max(timestamp)",
        ]
    )
    assert broken and unknown and not fine
    assert "nosuchcolumn" in unknown[0]["message"]


# -- only the fields the app emits -------------------------------------------------------------
def documented_fields() -> set[str]:
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", TELEMETRY))


def documented_messages() -> list[str]:
    return [m for m in re.findall(r"`([^`]+)`", TELEMETRY) if " " in m]


def test_every_field_a_query_reads_is_one_docs_telemetry_md_lists():
    fields = documented_fields()
    for name, query in {**queries(), **alert_files()}.items():
        for chain in re.findall(r"\bf((?:\.[A-Za-z_]\w*)+)", query):
            first, *deeper = chain.strip(".").split(".")
            assert first in fields, f"{name} reads f.{first}, which docs/telemetry.md lacks"
            for sub in deeper:
                assert sub in TELEMETRY, f"{name} reads f.{chain}: {sub} is not documented"
        for field in re.findall(r"customDimensions\.(\w+)", query):
            assert field in fields, f"{name} reads customDimensions.{field}: not documented"


def test_every_message_a_query_matches_is_one_the_app_logs():
    documented = documented_messages()
    for name, query in {**queries(), **alert_files()}.items():
        literals = re.findall(r'msg (?:==|startswith|has) "([^"]+)"', query)
        for group in re.findall(r"msg in \(([^)]*)\)", query):
            literals += re.findall(r'"([^"]+)"', group)
        for literal in literals:
            known = [m for m in documented if literal in m.replace("... ", "")]
            assert known, f"{name} matches {literal!r}, which docs/telemetry.md does not list"


def test_main_deploys_the_workbook_on_the_app_insights_resource():
    from pycep import BicepParser

    main = BicepParser().parse(text=(INFRA / "main.bicep").read_text())
    params = main["modules"]["workbook"]["config"]["params"]
    alerts = main["modules"]["alerts"]["config"]["params"]
    assert params["appInsightsId"] == alerts["appInsightsId"]  # the alerts' resource


@pytest.mark.parametrize("name", ["runs-per-day", "failure-ratio", "combine-memory"])
def test_the_dataset_parameter_filters_the_health_metrics(name):
    query = {item["name"]: item["content"]["query"] for item in query_items()}[name]
    assert '"*" in ({Dataset}) or dataset in ({Dataset})' in query
