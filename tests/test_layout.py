"""The package's import graph: no module imports, directly or through others, a module that imports it
back, and no stage imports the runner that orchestrates it. Every import statement counts, wherever it
is: at module level, inside a function, or under ``if TYPE_CHECKING`` (a type-only import is still a
dependency of the design)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "ttb_spark"
ENTRY_POINTS = {"ttb_spark.__main__", "ttb_spark.cli", "ttb_spark.submit"}  # the command line, above the runner


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """{module: the package modules it imports}; ``from a import b`` counts as importing ``a.b`` when
    that is a module, else ``a``."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                inner = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                imported.update(inner or {node.module})
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {"ttb_spark.runner", "ttb_spark.scope", "ttb_spark.gold", "ttb_spark.tables"} <= graph.keys()
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the node that imports it
        raise AssertionError(f"import cycle: {' imports '.join(reversed(exc.args[1]))}") from None


def test_only_the_command_line_imports_the_runner():
    importers = {name for name, imported in import_graph().items() if "ttb_spark.runner" in imported}
    assert importers and importers <= ENTRY_POINTS, sorted(importers - ENTRY_POINTS)
