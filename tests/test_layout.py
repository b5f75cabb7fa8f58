"""The package's shape, checked: the flow recipe → plan → execute → results → report has no import circle,
no module imports another's private name, and the pure parts import neither the network nor processes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"
# modules whose functions are pure (text and data in, data out): planning, recipes, argv and parsers, tables
PURE = ("orchestrator.recipe.", "orchestrator.plan.", "orchestrator.report.tables", "orchestrator.report.analysis",
        "orchestrator.execute.scheduler", "orchestrator.tools.perplexity", "orchestrator.tools.quantize",
        "orchestrator.tools.bench", "orchestrator.tools.imatrix", "orchestrator.tools.llama_types")
EDGES = ("httpx", "subprocess", "huggingface_hub", "orchestrator.inputs.hub", "orchestrator.procs", "ray")


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


MODULES = _modules()


def _imports(tree: ast.Module, top_level: bool):
    nodes = tree.body if top_level else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, "imports inside the package are absolute"
            for a in node.names:
                yield node.module, a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None


def _target(module: str, name: str | None) -> str:
    """The module an import binds: `from a.b import c` is a.b.c when that is a module."""
    return f"{module}.{name}" if name and f"{module}.{name}" in MODULES else module


def test_no_import_circle_among_module_level_imports():
    graph = {m: {_target(mod, n) for mod, n in _imports(t, top_level=True)} & MODULES.keys()
             for m, t in MODULES.items()}
    seen: dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for n in sorted(graph[m]):
            if seen.get(n) == 1:
                pytest.fail("import circle: " + " → ".join(path[path.index(n):] + [m, n]))
            if n not in seen:
                visit(n, path + [m])
        seen[m] = 2

    for m in sorted(MODULES):
        if m not in seen:
            visit(m, [])


def test_no_private_name_is_imported_from_another_module():
    found = [f"{m}: from {mod} import {n}" for m, t in MODULES.items() for mod, n in _imports(t, top_level=False)
             if n and n.startswith("_") and not n.startswith("__") and mod != m]
    assert found == []


def test_pure_modules_import_neither_the_network_nor_processes():
    found = [f"{m} imports {mod}" for m, t in MODULES.items() if m.startswith(PURE)
             for mod, n in _imports(t, top_level=False)
             if any(_target(mod, n) == e or _target(mod, n).startswith(e + ".") for e in EDGES)]
    assert found == []


def test_typer_stays_in_the_cli_and_its_vendored_click_is_not_reached_into():
    users = {m for m, t in MODULES.items() for mod, _ in _imports(t, top_level=False) if mod.split(".")[0] == "typer"}
    assert users <= {"orchestrator.cli"}
    assert "_click" not in (PACKAGE / "cli.py").read_text()


def test_tests_and_benches_share_helpers_not_each_other():
    """Shared code lives in tests/helpers.py and tests/doubles.py: no test, conftest or bench script imports
    a test module or a conftest, and none edits sys.path."""
    root = PACKAGE.parent
    found = []
    for path in [*(root / "tests").rglob("*.py"), *(root / "bench").glob("*.py")]:
        text = path.read_text()
        if re.search(r"sys\.path\.(insert|append)\(|sys\.path\s*=[^=]", text):
            found.append(f"{path.relative_to(root)} edits sys.path")
        for node in ast.walk(ast.parse(text)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names += [a.name for a in node.names]
            found += [f"{path.relative_to(root)} imports {n}" for n in names
                      if n.split(".")[-1] == "conftest" or n.split(".")[-1].startswith("test_")]
    assert found == []
