"""``ttb_spark adopt-catalog --from ROOT``: bring a lakehouse of path tables under a catalog (Unity Catalog mode)
without fetching anything again.

Every declared table that exists under ``ROOT`` is created as the catalog's managed table (its spec's schema,
layout, comments and properties: :func:`lakehouse.ensure_table`) and filled with the path table's rows, as
they are now. The copies start a history of their own, so the change-driven stages' watermarks
(``ops.watermarks``: Delta versions of their source tables) are moved to the copies' versions; that is only
true when no stage has changes left to read, so a lakehouse with pending changes is refused (run the daily
job on it first). Time travel to the path tables' versions stays on the path tables, which are left as they
are. A copy that was interrupted is finished by running the command again: a table already holding the path
table's row count is kept, an empty one is filled, any other is refused.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ttb_spark import lakehouse, tables
from ttb_spark.settings import SettingsError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def pending_changes(spark: SparkSession, source: str) -> list[str]:
    """Watermarks of ``source`` behind their table's latest version: ``stage <- table (version < latest)``."""
    if not lakehouse.table_exists(spark, lakehouse.WATERMARKS, source):
        return []
    out = []
    for row in lakehouse.read_table(spark, lakehouse.WATERMARKS, source).collect():
        latest = lakehouse.current_version(spark, tables.BY_NAME[row["source_table"]], source)
        if latest is not None and row["version"] < latest:
            out.append(f"{row['stage']} <- {row['source_table']} ({row['version']} < {latest})")
    return out


def adopt(spark: SparkSession, source: str, target: str) -> dict[str, int]:
    """Copy every table under the path root ``source`` into the catalog namespace ``target``; rows per table."""
    if lakehouse.is_catalog(source) or not lakehouse.is_catalog(target):
        raise SettingsError(f"adopt-catalog copies path tables into a catalog: from {source!r} into {target!r} (set TTB_CATALOG)")
    specs = [s for s in tables.ALL if lakehouse.table_exists(spark, s, source)]
    if not specs:
        raise SettingsError(f"no table of the lakehouse exists under {source}")
    pending = pending_changes(spark, source)
    if pending:
        raise SettingsError("changes not processed yet (run the daily job on the path lakehouse first): " + "; ".join(pending))
    copied: dict[str, int] = {}
    for spec in specs:
        lakehouse.ensure_table(spark, spec, source)  # the path table brought up to its spec first
        rows = lakehouse.read_table(spark, spec, source).count()
        lakehouse.ensure_table(spark, spec, target)
        held = lakehouse.read_table(spark, spec, target).count()
        if held == 0 and rows:
            names = ", ".join(f"`{f}`" for f in spec.schema.fieldNames())
            spark.sql(f"INSERT INTO {lakehouse.table_ref(spec, target)} ({names}) SELECT {names} FROM {lakehouse.table_ref(spec, source)}")
        elif held != rows:
            raise SettingsError(f"{lakehouse.location(spec, target)} already holds {held} rows, not the {rows} of {spec.path(source)}")
        copied[spec.name] = rows
    _move_watermarks(spark, target)
    return copied


def _move_watermarks(spark: SparkSession, target: str) -> None:
    """Every watermark of the copies to its source copy's current version (nothing was pending)."""
    if not lakehouse.table_exists(spark, lakehouse.WATERMARKS, target):
        return
    marks: dict[str, list[str]] = {}
    for row in lakehouse.read_table(spark, lakehouse.WATERMARKS, target).select("stage", "source_table").collect():
        marks.setdefault(row["stage"], []).append(row["source_table"])
    versions = {name: lakehouse.current_version(spark, tables.BY_NAME[name], target) for name in set().union(*marks.values())}
    for stage, names in marks.items():
        lakehouse.write_watermarks(spark, target, stage, {n: versions[n] for n in names if versions[n] is not None}, "adopt-catalog")


def run_command(source: str, env: str | None) -> int:
    """The command line's ``adopt-catalog``: settings (catalog mode) from ``env``, a line per table copied."""
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    settings = load_settings(env)
    spark = get_spark(settings, app_name="ttb_spark-adopt-catalog")
    target = settings.pipeline.lakehouse_root
    for name, rows in adopt(spark, source, target).items():
        sys.stdout.write(f"{name}: {rows} rows -> {lakehouse.location(tables.BY_NAME[name], target)}\n")
    return 0
