"""A skipped test proved nothing. The suite skips for one reason only, a tool or library
feature missing on this machine, and then through tests.helpers.missing_tool, which fails
instead under PIPELINE_TEST_REQUIRE_TOOLS=1: CI (.ci/run) installs every tool and sets it, so
there nothing is skipped for a missing tool. Read from the suite's own code, so a new skip is
checked the day it is added."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import REQUIRE_TOOLS, missing_tool

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# Where pytest.skip may be called, and why that place is allowed to.
SKIPS_ALLOWED = {
    ("tests/helpers.py", "missing_tool"): "the one skip for a missing tool (fails under CI)",
    ("tests/stacapi.py", "stac_api"): "PostgreSQL, PostGIS or stac-fastapi missing: it fails "
    "first under PIPELINE_TEST_REQUIRE_TOOLS",
    ("tests/test_merge.py", "_both"): "a case the matrix expects the gate to stop: generate "
    "has nothing to give the merge (no tool; any other case's error is raised)",
}
# Verdicts that let a test pass without running or while failing.
FORBIDDEN = ("skipif", "importorskip", "xfail")


def pytest_calls(path: Path) -> list[tuple[str, str, int]]:
    """(pytest attribute used, enclosing function or "<module>", line) of every use of
    pytest.skip, pytest.mark.skip, pytest.mark.skipif, pytest.importorskip, pytest.xfail and
    pytest.mark.xfail in a file."""
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else function
            )
            if isinstance(child, ast.Attribute) and child.attr in ("skip", *FORBIDDEN):
                chain = ast.unparse(child)
                if chain.startswith("pytest."):
                    found.append((chain, function, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_every_skip_is_for_a_missing_tool_and_fails_under_ci():
    skips, forbidden = [], []
    for path in sorted(set(TESTS.rglob("*.py")) - {Path(__file__)}):
        where = str(path.relative_to(ROOT))
        for chain, function, line in pytest_calls(path):
            if chain.endswith(FORBIDDEN) or chain == "pytest.mark.skip":
                forbidden.append(f"{where}:{line} {chain}")
            elif (where, function) not in SKIPS_ALLOWED:
                skips.append(f"{where}:{line} {chain} in {function}")
    assert forbidden == [], "skipif/xfail cannot fail under CI: call missing_tool in the test"
    assert skips == [], "skip through tests.helpers.missing_tool (it fails under CI)"


def test_a_missing_tool_fails_under_require_tools_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv(REQUIRE_TOOLS, "1")
    with pytest.raises(pytest.fail.Exception, match="ss is not installed"):
        missing_tool("ss is not installed")
    monkeypatch.delenv(REQUIRE_TOOLS)
    with pytest.raises(pytest.skip.Exception, match="ss is not installed"):
        missing_tool("ss is not installed")


def test_ci_installs_every_debian_package_a_skip_names():
    """The Debian packages the suite's messages ask for (apt-get install ...) are all in the
    apt-get line of .ci/run, which runs before PIPELINE_TEST_REQUIRE_TOOLS=1 is set."""
    asked = set()
    for path in sorted(set(TESTS.rglob("*.py")) - {Path(__file__)}):
        for names in re.findall(r"apt-get install ([a-z0-9.\- ]+)", path.read_text()):
            asked |= set(names.split())
    assert {"cdo", "nco", "netcdf-bin", "iproute2"} <= asked  # it found them
    ci = (ROOT / ".ci" / "run").read_text()
    installs = re.search(r"apt-get install -y -qq --no-install-recommends \\\n(.*?)>", ci, re.S)
    assert installs is not None
    assert asked <= set(installs.group(1).split())
