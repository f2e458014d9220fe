"""The package's shape: no code module over 500 lines, and an import graph in which no module imports,
directly or through others, a module that imports it back, no stage imports the runner that orchestrates
it, and no layer module imports the ops layer. Every import statement counts, wherever it is: at module
level, inside a function, or under ``if TYPE_CHECKING`` (a type-only import is still a dependency of the
design)."""

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
    assert {"ttb_spark.ops.runner", "ttb_spark.scope", "ttb_spark.gold", "ttb_spark.tables"} <= graph.keys()
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the node that imports it
        raise AssertionError(f"import cycle: {' imports '.join(reversed(exc.args[1]))}") from None


def test_only_the_command_line_imports_the_runner():
    importers = {name for name, imported in import_graph().items() if "ttb_spark.ops.runner" in imported}
    assert importers and importers <= ENTRY_POINTS, sorted(importers - ENTRY_POINTS)


# The layers, bottom to top; ttb_spark.ops (runner, audit, locks, maintain, adopt) runs them.
LAYERS = ("ttb_spark.registry", "ttb_spark.raw", "ttb_spark.lakehouse", "ttb_spark.bronze", "ttb_spark.silver",
          "ttb_spark.gold", "ttb_spark.reference")


def test_no_layer_module_imports_the_ops_layer():
    graph = import_graph()
    layer_modules = {name for name in graph if name.startswith(LAYERS)}
    assert {"ttb_spark.registry.client", "ttb_spark.raw.discover", "ttb_spark.silver.stage", "ttb_spark.gold.stage"} <= layer_modules
    offenders = {name: sorted(m for m in graph[name] if m == "ttb_spark.ops" or m.startswith("ttb_spark.ops."))
                 for name in layer_modules}
    assert not {name: ops for name, ops in offenders.items() if ops}


MAX_LINES = 500


def test_no_code_module_is_over_500_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 50 and "ttb_spark/ops/runner.py" in sizes
    assert not {path: n for path, n in sizes.items() if n > MAX_LINES}
