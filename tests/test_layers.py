"""The structure holds: shared/ is layered (model < io < catalog < stages < ingest), no module
imports a higher layer, no import cycle anywhere in the project's own code, the core never
imports the triggers, the local host or the consumer side, and what is deployed never
imports what is not. Read from the code itself (every import statement, module level and
inside functions), so a new module is checked the day it is added."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "activities", "api", "orchestrators", "devhost", "consumer")
LAYERS = ("model", "io", "catalog", "stages", "ingest")  # lowest first
DEPLOYED = ("function_app", "shared", "activities", "api", "orchestrators")
NOT_DEPLOYED = ("devhost", "consumer", "tests", "bench", "tools")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {"function_app": root / "function_app.py"}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Every module a file imports, at module level or inside a function; a relative import
    (``from ..stages import verify``) as the absolute name it stands for."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                assert node.level - 1 < len(parts), f"{path}: relative import beyond the top"
                above = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*above, *([node.module] if node.module else [])])
            if node.module:
                yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Our modules -> our modules they import."""
    ours = modules(root)
    return {
        name: {target for target in imports(path, root) if target in ours and target != name}
        for name, path in ours.items()
    }


def layer(name: str) -> int | None:
    parts = name.split(".")
    if parts[0] == "shared" and len(parts) > 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def test_every_core_module_sits_in_a_layer():
    loose = [
        name
        for name in modules()
        if name.startswith("shared.") and name.count(".") >= 1 and layer(name) is None
        if name.split(".")[1] not in LAYERS
    ]
    assert loose == [], f"modules of shared/ outside the layers {LAYERS}: {loose}"


def test_no_layer_imports_a_higher_one():
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if (low := layer(source)) is not None and (high := layer(target)) is not None and high > low
    ]
    assert wrong == []


def test_the_core_imports_no_trigger_no_host_and_no_consumer():
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        if source.startswith("shared")
        for target in targets
        if not target.startswith("shared")
    ]
    assert wrong == []


def test_what_is_deployed_imports_nothing_that_is_not():
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        if source.split(".")[0] in DEPLOYED
        for target in targets
        if target.split(".")[0] in NOT_DEPLOYED
    ]
    assert wrong == []


def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_relative_imports_are_read_as_the_modules_they_name(tmp_path):
    """A relative import is no way around the checks above: it counts as the module it names
    (ruff forbids them too: TID252)."""
    (tmp_path / "function_app.py").write_text("")
    files = {
        "shared/__init__.py": "",
        "shared/model/__init__.py": "from . import low\n",
        "shared/model/low.py": "def f():\n    from ..stages import high\n",
        "shared/model/other.py": "from .low import f\nfrom ..stages.high import g\n",
        "shared/stages/__init__.py": "",
        "shared/stages/high.py": "from ..model import other\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = graph(tmp_path)
    assert edges["shared.model"] == {"shared.model.low"}
    assert edges["shared.model.low"] == {"shared.stages", "shared.stages.high"}
    assert edges["shared.model.other"] == {"shared.model.low", "shared.stages.high"}
    assert edges["shared.stages.high"] == {"shared.model", "shared.model.other"}


def test_the_funcignore_keeps_what_is_not_deployed_out():
    ignored = set((ROOT / ".funcignore").read_text().split())
    assert set(NOT_DEPLOYED) <= ignored


def test_no_module_is_over_the_size_limit():
    """tools/module_sizes.py: a module over 800 lines is doing more than one job."""
    from tools.module_sizes import MAX_LINES, module_sizes, over_limit

    assert len(module_sizes()) > 50  # it found the modules
    assert over_limit() == [], f"split these along their seams (limit {MAX_LINES} lines)"


def test_the_size_check_finds_a_module_over_the_limit(tmp_path):
    from tools.module_sizes import over_limit

    (tmp_path / "shared").mkdir()
    (tmp_path / "function_app.py").write_text("x = 1\n")
    (tmp_path / "shared" / "big.py").write_text("x = 1\n" * 801)
    assert over_limit(tmp_path) == [("shared/big.py", 801)]
