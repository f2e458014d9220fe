"""The data dictionary: generated from every table declaration, committed in sync, nothing undocumented."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from ttb_spark import docs


def test_docs_tables_md_matches_the_schemas():
    """docs/tables.md is what `python -m ttb_spark tables` prints now (fresh process: only package tables)."""
    out = subprocess.run([sys.executable, "-m", "ttb_spark", "tables"], capture_output=True, text=True, cwd=REPO, check=True)
    committed = (REPO / "docs" / "tables.md").read_text()
    assert out.stdout == committed, "docs/tables.md is stale: regenerate with `python -m ttb_spark tables > docs/tables.md`"


def test_every_table_and_column_is_documented():
    specs = docs.package_tables()
    names = {s.name for s in specs}
    assert {"bronze.pages", "bronze.scrape_manifest", "silver.cola_details", "silver.cola_certificates", "silver.rejects"} <= names
    assert all(not n.startswith("test.") for n in names)
    undocumented = [f"{s.name}.{f.name}" for s in specs for f in s.schema.fields if not f.metadata.get("comment", "").strip()]
    assert undocumented == [] and all(s.comment.strip() for s in specs)
    text = docs.data_dictionary()
    for spec in specs:
        section = text.split(f"## `{spec.name}`", 1)[1].split("\n## ", 1)[0]
        assert [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")] == spec.schema.fieldNames()
