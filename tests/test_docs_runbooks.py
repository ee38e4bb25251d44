"""The runbooks (docs/runbooks/) and docs/operations.md name only things that exist, so an
operator who follows them at 3am never queries a field nobody logs, looks up a code nobody
raises, or sets a setting nobody reads:

- every runbook the index lists is there, and every runbook is in the index, with the
  sections an operator looks for;
- every log field a KQL query reads (``f.<name>``, ``customDimensions.<name>``) is a field
  documented in docs/telemetry.md, read with the documented parse;
- every error or finding code they name exists in the code or in docs/findings.md;
- every ``PIPELINE_*`` setting they name is in docs/settings.md;
- docs/operations.md lists every pin of requirements.txt at its pinned version.

Only names are checked (backticked identifiers, code blocks), never the wording.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from shared.model.plan import RunPolicy
from shared.model.settings import Settings
from shared.model.status import pipeline_view

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNBOOKS = DOCS / "runbooks"
INDEX = RUNBOOKS / "README.md"
OPERATIONS = DOCS / "operations.md"
TELEMETRY = DOCS / "telemetry.md"

EXPECTED_RUNBOOKS = {
    "failed-run.md",
    "stuck-run.md",
    "store-reads-wrong.md",
    "dependency-upgrade.md",
    "large-submission.md",
}
# What every runbook has, as the start of a second-level heading.
SECTIONS = (
    "Symptom",
    "What to check first",
    "Diagnosis",
    "Fix",
    "How to confirm it is fixed",
    "When to escalate",
)
# The Durable extension's own tracking fields (customDimensions.prop__<name>), documented by
# Microsoft: https://learn.microsoft.com/azure/azure-functions/durable/durable-functions-diagnostics
DURABLE_TRACKING_FIELDS = {
    "prop__" + name
    for name in (
        "hubName",
        "appName",
        "slotName",
        "functionName",
        "functionType",
        "instanceId",
        "state",
        "reason",
        "isReplay",
        "extensionVersion",
        "sequenceNumber",
    )
}
# Modules whose quoted names are keys an operator sees (the status API, the watcher's status,
# the published record, event reasons, request fields) rather than error codes.
KEY_SOURCES = (
    "shared/model/status.py",
    "shared/ingest/watch.py",
    "shared/ingest/events.py",
    "shared/ingest/datasets.py",
    "shared/model/request.py",
    "shared/stages/increment.py",
    "shared/stages/runreport.py",
    "orchestrators/pipeline.py",
    "orchestrators/watcher.py",
    "api/http.py",
    "api/events.py",
)
CODE_SOURCES = ("shared", "activities", "api", "orchestrators")

IDENTIFIER = re.compile(r"`([a-z][a-z0-9_]*)`")
CODE_LIKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")  # lowercase_with_underscores
FENCE = re.compile(r"^[ \t]*```([A-Za-z]*)[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
SETTING = re.compile(r"\bPIPELINE_[A-Z0-9_]*[A-Z0-9]\b")
QUOTED = re.compile(r"""["']([a-z][a-z0-9]*(?:_[a-z0-9]+)+)["']""")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def runbook_pages() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.md"))


def operator_pages() -> list[Path]:
    return [*runbook_pages(), OPERATIONS]


def fenced_blocks(text: str, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if language is None or lang == language]


def prose(text: str) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", text)


def section(text: str, heading: str) -> str:
    """A '## heading' section of a page, up to the next second-level heading."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.lstrip().startswith("|") and not re.match(r"^\s*\|[\s:|-]+\|\s*$", line)
    ]


def documented_fields() -> set[str]:
    """The field names docs/telemetry.md documents in its "Fields" section: the field
    columns of its tables, and the fields its prose lists for the orchestrator's records,
    activity failures and upload events."""
    fields: set[str] = set()
    text = section(read(TELEMETRY), "Fields")
    column: int | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            column = None
            fields.update(IDENTIFIER.findall(line))
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:  # the header row names the column that holds field names
            names = [c.lower() for c in cells]
            column = next((i for i, c in enumerate(names) if c in ("field", "fields")), -1)
            continue
        if column >= 0 and column < len(cells) and not set(cells[column]) <= set(":- "):
            fields.update(IDENTIFIER.findall(cells[column]))
    return fields


def documented_parse() -> str:
    """The expression docs/telemetry.md gives to read the fields out of a message."""
    query = next(b for b in fenced_blocks(read(TELEMETRY), "kusto") if "parse_json" in b)
    match = re.search(r"parse_json\(extract\(.*?\)\)", query)
    assert match, "docs/telemetry.md has no parse_json(extract(...)) pattern"
    return match.group(0)


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def error_codes() -> set[str]:
    """Codes the pipeline fails or answers with: every ``code = "..."`` class attribute,
    ``"code": "..."`` and ``code="..."`` in the code, and the codes the status API makes up
    for orchestrations that ended without one of ours."""
    codes: set[str] = set()
    patterns = (
        re.compile(r"""\bcode\s*(?::[^=\n]+)?=\s*["']([a-z_]+)["']"""),
        re.compile(r"""["']code["']\s*:\s*["']([a-z_]+)["']"""),
    )
    for path in python_files(*CODE_SOURCES):
        text = read(path)
        for pattern in patterns:
            codes.update(pattern.findall(text))
    for runtime in ("Failed", "Terminated"):
        codes.add(pipeline_view({"runtimeStatus": runtime})["error"]["code"])
    return codes


def finding_codes() -> set[str]:
    """Finding codes: the first argument of every Finding / CollectionFinding / NoGrid the
    validate and gate rules build, a code chosen just before its severity, and the codes table of
    docs/findings.md."""
    codes: set[str] = set()
    built = re.compile(
        r'(?:\bFinding|CollectionFinding|_disagreement|NoGrid)\(\s*"([a-z][a-z0-9_]*)"'
    )
    chosen = re.compile(r'"([a-z][a-z0-9_]*)",\s*\n\s*"(?:error|warning)"')
    stages = ROOT / "shared" / "stages"
    for path in [
        *sorted((stages / "validate").glob("*.py")),
        stages / "gate.py",
        stages / "grid.py",
    ]:
        text = read(path)
        codes.update(built.findall(text))
        codes.update(chosen.findall(text))
    for row in table_rows(section(read(DOCS / "findings.md"), "Codes")):
        codes.update(IDENTIFIER.findall(row[0]))
    return codes


def known_codes() -> set[str]:
    return error_codes() | finding_codes()


def key_names() -> set[str]:
    """Names that are not codes but keys and fields an operator reads: documented log
    fields, the quoted keys of the status, watcher, event and request modules, and the
    settings and run policy fields."""
    names = {name for name in IDENTIFIER.findall(read(TELEMETRY))}
    for source in KEY_SOURCES:
        names.update(QUOTED.findall(read(ROOT / source)))
    names.update(f.name for f in dataclasses.fields(Settings))
    names.update(f.name for f in dataclasses.fields(RunPolicy))
    return names


def names_defined_in_code_blocks(text: str) -> set[str]:
    """Names a page's own commands and queries define (output keys, KQL columns)."""
    return {
        name
        for block in fenced_blocks(text)
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", block)
    }


# -- the index ----------------------------------------------------------------------------
def test_every_runbook_the_index_lists_exists():
    listed = set(LINK.findall(read(INDEX)))
    local = {link for link in listed if "/" not in link}
    missing = sorted(link for link in local if not (RUNBOOKS / link).is_file())
    assert not missing, f"docs/runbooks/README.md links to missing runbooks: {missing}"
    assert local >= EXPECTED_RUNBOOKS, f"not in the index: {sorted(EXPECTED_RUNBOOKS - local)}"


def test_every_runbook_is_in_the_index():
    listed = set(LINK.findall(read(INDEX)))
    pages = {page.name for page in runbook_pages()} - {"README.md"}
    assert pages <= listed, f"runbooks missing from the index: {sorted(pages - listed)}"


def test_the_index_names_the_first_three_things_to_look_at():
    first = section(read(INDEX), "The first three things to look at")
    assert "/api/pipelines/" in first, "the status API"
    assert "run_summary" in first, "the run summary"
    assert fenced_blocks(first, "kusto"), "the KQL query by instance id"
    assert "instance_id" in fenced_blocks(first, "kusto")[0]


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNBOOKS))
def test_every_runbook_has_the_sections_an_operator_looks_for(name):
    headings = re.findall(r"^## (.+)$", read(RUNBOOKS / name), re.M)
    missing = [s for s in SECTIONS if not any(h.startswith(s) for h in headings)]
    assert not missing, f"{name} has no section {missing}"


# -- KQL ----------------------------------------------------------------------------------
def test_the_telemetry_page_documents_the_fields_the_queries_rely_on():
    # A guard for the parse below: if docs/telemetry.md changed shape, say so plainly.
    fields = documented_fields()
    assert {"dataset", "instance_id", "stage", "code", "url", "peak_memory_bytes"} <= fields


@pytest.mark.parametrize("page", operator_pages(), ids=lambda p: p.name)
def test_every_field_a_kql_query_reads_is_documented(page):
    documented = documented_fields()
    blocks = fenced_blocks(read(page), "kusto")
    used: set[str] = set()
    for block in blocks:
        used.update(re.findall(r"(?<![\w.])f\.([A-Za-z_][A-Za-z0-9_]*)", block))
        used.update(re.findall(r"\bcustomDimensions\.([A-Za-z_][A-Za-z0-9_]*)", block))
    unknown = sorted(used - documented - DURABLE_TRACKING_FIELDS)
    assert not unknown, (
        f"{page.name}: KQL reads fields docs/telemetry.md does not document: {unknown}"
    )


@pytest.mark.parametrize("page", operator_pages(), ids=lambda p: p.name)
def test_every_kql_query_reads_the_fields_the_documented_way(page):
    parse = documented_parse()
    for block in fenced_blocks(read(page), "kusto"):
        if re.search(r"(?<![\w.])f\.", block):
            assert parse in block, f"{page.name}: a query uses f.<field> without {parse}"


@pytest.mark.parametrize("page", operator_pages(), ids=lambda p: p.name)
def test_every_code_a_kql_query_filters_on_exists(page):
    codes = known_codes()
    named: set[str] = set()
    for block in fenced_blocks(read(page), "kusto"):
        named.update(re.findall(r'\bcode\)?\s*[!=]=\s*"([a-z_]+)"', block))
        for values in re.findall(r"\bcode\)?\s+in\s*\(([^)]*)\)", block):
            named.update(re.findall(r'"([a-z_]+)"', values))
    unknown = sorted(named - codes)
    assert not unknown, f"{page.name}: KQL filters on codes that do not exist: {unknown}"


# -- codes and settings -------------------------------------------------------------------
def test_the_code_registries_are_found():
    # A guard for the parsers above: the codes every runbook leans on must be seen.
    codes = known_codes()
    assert {"unsuitable_collection", "verify_mismatch", "memory_limit", "internal_error"} <= codes
    assert {"truncated", "partial_chunks", "encoding_differs"} <= codes
    assert {"orchestration_failed", "orchestration_terminated"} <= codes


@pytest.mark.parametrize("page", operator_pages(), ids=lambda p: p.name)
def test_every_code_named_in_the_text_exists(page):
    text = read(page)
    skip = key_names() | names_defined_in_code_blocks(text)
    codes = known_codes()
    named = {name for name in IDENTIFIER.findall(prose(text)) if CODE_LIKE.match(name)}
    unknown = sorted(name for name in named - skip if name not in codes)
    assert not unknown, (
        f"{page.name} names {unknown} in backticks: neither an error code "
        "(shared/model/errors.py, shared/io/memory.py, ...), a finding code "
        "(shared/stages/validate/, shared/stages/gate.py, docs/findings.md), nor a "
        "documented field or key"
    )


@pytest.mark.parametrize("page", operator_pages(), ids=lambda p: p.name)
def test_every_setting_named_is_documented(page):
    documented = {
        name for row in table_rows(read(DOCS / "settings.md")) for name in SETTING.findall(row[0])
    }
    named = set(SETTING.findall(read(page)))
    unknown = sorted(named - documented)
    assert not unknown, f"{page.name} names settings docs/settings.md does not have: {unknown}"


def test_operations_lists_every_runtime_pin_at_its_pinned_version():
    pins = [
        line.split("#", 1)[0].strip()
        for line in read(ROOT / "requirements.txt").splitlines()
        if "==" in line.split("#", 1)[0]
    ]
    listed = section(read(OPERATIONS), "Pinned versions and how to move them")
    missing = [pin for pin in pins if f"`{pin}`" not in listed]
    assert pins and not missing, f"docs/operations.md does not list the pins {missing}"
