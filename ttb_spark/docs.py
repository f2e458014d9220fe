"""The data dictionary (``docs/tables.md``), generated from the TableSpec declarations.

Every table module of the package is imported so its TableSpecs register; tables declared
elsewhere (tests) are left out. ``python -m ttb_spark tables`` prints it; tests/test_docs.py
keeps the committed copy in sync.
"""

from __future__ import annotations

import importlib
import sys

from ttb_spark import lakehouse

TABLE_MODULES = ("bronze", "silver", "reference", "gold", "audit", "locks")
HEADER = (
    "# Data dictionary\n\n"
    "Generated from the table declarations (`lakehouse.TableSpec`) by `python -m ttb_spark tables`; "
    "do not edit by hand. Paths are relative to the lakehouse root (`TTB_LAKEHOUSE_ROOT`). "
    "The same table and column comments are set on the Delta tables.\n"
)


def _import_table_modules() -> None:
    """Import every table module that exists (gold may be a package with submodules)."""
    import pkgutil

    for name in TABLE_MODULES:
        try:
            module = importlib.import_module(f"ttb_spark.{name}")
        except ModuleNotFoundError as exc:
            if exc.name in (f"ttb_spark.{name}", "ttb_spark"):
                continue
            raise
        for sub in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{module.__name__}."):
            importlib.import_module(sub.name)


def package_tables() -> list[lakehouse.TableSpec]:
    """TableSpecs declared by modules of the package, sorted by name."""
    _import_table_modules()
    declared: set[int] = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("ttb_spark.") or module is None:
            continue
        for value in vars(module).values():
            if value is lakehouse.REGISTRY:  # every spec made in this process, a test's own included
                continue
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else (value,)
            declared.update(id(v) for v in items if isinstance(v, lakehouse.TableSpec))
    return sorted((s for s in lakehouse.REGISTRY.values() if id(s) in declared), key=lambda s: s.name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def table_markdown(spec: lakehouse.TableSpec) -> str:
    lines = [
        f"## `{spec.name}`",
        "",
        _cell(spec.comment),
        "",
        f"- path: `<root>/{spec.name.replace('.', '/')}`",
        f"- key: {', '.join(f'`{k}`' for k in spec.keys)}",
        f"- partitioned by: {', '.join(f'`{p}`' for p in spec.partition_by) or '—'}",
        *([f"- clustered by: {', '.join(f'`{c}`' for c in spec.cluster_by)}"] if spec.cluster_by else []),
        "",
        "| column | type | comment |",
        "| --- | --- | --- |",
    ]
    for f in spec.schema.fields:
        lines.append(f"| `{f.name}` | `{_cell(f.dataType.simpleString())}` | {_cell(f.metadata.get('comment', ''))} |")
    return "\n".join(lines) + "\n"


def data_dictionary() -> str:
    """Markdown for every table of the package: comment, path, key, partitioning and columns."""
    specs = package_tables()
    index = "\n".join(f"- [`{s.name}`](#{s.name.replace('.', '')})" for s in specs)
    return HEADER + "\n" + index + "\n\n" + "\n".join(table_markdown(s) for s in specs)
