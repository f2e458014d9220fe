"""Generated docs: the data dictionary from every table declaration and the settings reference from the
settings model, committed in sync, nothing undocumented."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import tomllib

import ttb_spark
from conftest import REPO
from ttb_spark import docs, lakehouse, settings, tables


def test_docs_tables_md_matches_the_schemas():
    """docs/tables.md is what `python -m ttb_spark tables` prints now (fresh process: only package tables)."""
    out = subprocess.run([sys.executable, "-m", "ttb_spark", "tables"], capture_output=True, text=True, cwd=REPO, check=True)
    committed = (REPO / "docs" / "tables.md").read_text()
    assert out.stdout == committed, "docs/tables.md is stale: regenerate with `python -m ttb_spark tables > docs/tables.md`"


def test_every_table_a_package_module_declares_is_in_the_table_list():
    """ttb_spark.tables lists every TableSpec any module of the package holds, once each."""
    declared: dict[str, object] = {}
    for info in pkgutil.walk_packages(ttb_spark.__path__, prefix="ttb_spark."):
        if info.name.endswith("__main__"):
            continue
        for value in vars(importlib.import_module(info.name)).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else (value,)
            declared.update((v.name, v) for v in items if isinstance(v, lakehouse.TableSpec))
    assert len(tables.BY_NAME) == len(tables.ALL), "a table listed twice"
    assert set(declared) == set(tables.BY_NAME), set(declared) ^ set(tables.BY_NAME)
    assert all(tables.BY_NAME[name] == spec for name, spec in declared.items())


def test_every_table_and_column_is_documented():
    specs = sorted(tables.ALL, key=lambda s: s.name)
    names = {s.name for s in specs}
    assert {"bronze.pages", "bronze.scrape_manifest", "silver.cola_details", "silver.cola_certificates", "silver.rejects"} <= names
    assert all(not n.startswith("test.") for n in names)
    undocumented = [f"{s.name}.{f.name}" for s in specs for f in s.schema.fields if not f.metadata.get("comment", "").strip()]
    assert undocumented == [] and all(s.comment.strip() for s in specs)
    text = docs.data_dictionary()
    for spec in specs:
        section = text.split(f"## `{spec.name}`", 1)[1].split("\n## ", 1)[0]
        assert [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")] == spec.schema.fieldNames()


def test_docs_settings_md_matches_the_settings_model():
    """docs/settings.md is what `python -m ttb_spark settings` prints now, whatever the caller's environment."""
    env = os.environ | {"TTB_ENVIRONMENT": "production", "TTB_RAW_ROOT": "/elsewhere", "TTB_SHUFFLE_PARTITIONS": "3"}
    out = subprocess.run([sys.executable, "-m", "ttb_spark", "settings"], capture_output=True, text=True, cwd=REPO, check=True, env=env)
    committed = (REPO / "docs" / "settings.md").read_text()
    assert out.stdout == committed, "docs/settings.md is stale: regenerate with `python -m ttb_spark settings > docs/settings.md`"


def test_every_setting_and_profile_value_is_documented():
    text = docs.settings_markdown()
    for name, section in settings.SECTIONS.items():
        table = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
        assert list(rows) == list(section.model_fields), name
        for field in section.model_fields:
            assert f"| `{settings._env_var(section, field)}` |" in rows[field]
        for env in settings.ENVIRONMENTS:
            profile = tomllib.loads((REPO / "conf" / f"{env}.toml").read_text()).get(name, {})
            assert set(profile) <= set(section.model_fields), f"conf/{env}.toml [{name}] sets an unknown setting"
    assert "| `aws_region` | `AWS_REGION` |" in text and "| `master` | `TTB_SPARK_MASTER` |" in text
    codegen = next(line for line in text.splitlines() if line.startswith("| `codegen` |"))
    assert codegen.split(" | ")[3:7] == ["`true`", "", "`false`", ""]  # default, development, test, production
