"""The ``maintain`` stage: keep every table of the lakehouse healthy as it grows.

Per declared table that exists: ``OPTIMIZE`` (compacts small files; a table with clustering
columns is clustered by it as well), ``VACUUM`` with ``maintenance.vacuum_retention_hours``
(files no version inside the window still references are deleted) and, where the engine has
them, column statistics (``ANALYZE TABLE ... COMPUTE STATISTICS FOR ALL COLUMNS``: Databricks;
open-source Delta answers NOT_SUPPORTED_COMMAND_FOR_V2_TABLE and keeps the per-file statistics
its writes and OPTIMIZE record, which is what its data skipping uses).

VACUUM never deletes what a change-driven stage still has to read: when a stage's watermark
(``ops.watermarks``) on a table lies behind its latest version, the table's retention is widened
to reach the first pending commit, so the change data feed of every pending version survives
(a progress line says so). If that commit is no longer in the table's history, the table is not
vacuumed at all and the line says why. All SQL on table names (:func:`lakehouse.table_ref`):
path tables, catalog tables and Spark Connect alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ttb_spark import lakehouse, tables
from ttb_spark.lakehouse import TableSpec, table_ref

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.scope import Whole
    from ttb_spark.settings import Settings

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
RETENTION_WINDOW_IGNORE = "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled"
UNSUPPORTED = "NOT_SUPPORTED_COMMAND_FOR_V2_TABLE"
KEEP_ALL = -1  # vacuum_hours: a pending change-feed version is gone from history: do not vacuum


def run(spark: SparkSession, settings: Settings, scope: Whole) -> dict[str, int]:
    """OPTIMIZE, VACUUM and statistics over every existing table; counts of tables and live files."""
    from ttb_spark.console import progress

    root = settings.pipeline.lakehouse_root
    m = settings.maintenance
    specs = [s for s in sorted(tables.ALL, key=lambda s: s.name) if lakehouse.table_exists(spark, s, root)]
    pending = pending_versions(spark, root)
    counts = {"tables": len(specs), "files_before": 0, "files_after": 0, "vacuumed": 0, "retention_widened": 0, "analyzed": 0}
    analyze = m.compute_statistics
    for spec in specs:
        before = live_files(spark, spec, root)
        optimize(spark, spec, root)
        hours = vacuum_hours(spark, spec, root, m.vacuum_retention_hours, pending.get(spec.name))
        if hours == KEEP_ALL:
            progress(f"maintain: {spec.name} not vacuumed: version {pending[spec.name]} a stage's watermark still needs is gone from its history")
        else:
            if hours > m.vacuum_retention_hours:
                counts["retention_widened"] += 1
                progress(f"maintain: {spec.name} vacuumed keeping {hours} h, not {m.vacuum_retention_hours} h: "
                         f"a stage's watermark still needs its changes from version {pending[spec.name]}")  # fmt: skip
            vacuum(spark, spec, root, hours, m.vacuum_allow_short_retention)
            counts["vacuumed"] += 1
        if analyze:
            analyze = statistics(spark, spec, root)
            counts["analyzed"] += int(analyze)
            if not analyze:
                progress("maintain: this engine has no ANALYZE TABLE for Delta tables (open-source Delta): per-file statistics only")
        after = live_files(spark, spec, root)
        counts["files_before"] += before
        counts["files_after"] += after
        progress(f"maintain: {spec.name} files {before} -> {after}")
    return counts


def live_files(spark: SparkSession, spec: TableSpec, root: str) -> int:
    """Data files of the table's current version."""
    return int(spark.sql(f"DESCRIBE DETAIL {table_ref(spec, root)}").first()["numFiles"])


@lakehouse.retry_on_conflict
def optimize(spark: SparkSession, spec: TableSpec, root: str) -> None:
    """Compact the table's small files (bin-packing per partition; clustering on a clustered table)."""
    spark.sql(f"OPTIMIZE {table_ref(spec, root)}").collect()


def pending_versions(spark: SparkSession, root: str) -> dict[str, int]:
    """Per source table, the first version whose changes some stage has not processed yet (lowest watermark + 1)."""
    if not lakehouse.table_exists(spark, lakehouse.WATERMARKS, root):
        return {}
    rows = lakehouse.read_table(spark, lakehouse.WATERMARKS, root).groupBy("source_table").min("version").collect()
    return {r[0]: int(r[1]) + 1 for r in rows}


def vacuum_hours(spark: SparkSession, spec: TableSpec, root: str, hours: int, first_pending: int | None) -> int:
    """``hours``, widened to reach back to the commit of ``first_pending`` when that is pending
    (at or before the table's latest version); KEEP_ALL when that commit is no longer in history."""
    if first_pending is None:
        return hours
    from pyspark.sql import functions as F

    history = spark.sql(f"DESCRIBE HISTORY {table_ref(spec, root)}").where(F.col("version") >= first_pending)
    age = (F.unix_timestamp(F.current_timestamp()) - F.unix_timestamp("timestamp")) / 3600
    commits = {int(r["version"]): float(r["age"]) for r in history.select("version", age.alias("age")).collect()}
    if not commits:  # the watermark is at the latest version: nothing pending
        return hours
    if first_pending not in commits:
        return KEEP_ALL
    return max(hours, math.ceil(commits[first_pending]) + 1)


def vacuum(spark: SparkSession, spec: TableSpec, root: str, hours: int, allow_short: bool) -> None:
    """VACUUM keeping ``hours``; below Delta's safety check only with ``allow_short`` (checked in the settings).

    Delta 4.x ignores ``RETAIN n HOURS`` (other than 0) unless RETENTION_WINDOW_IGNORE is off: it is
    turned off for the statement, so the setting (and a widened retention) is what VACUUM keeps.
    """
    conf = {RETENTION_WINDOW_IGNORE: "false"} | ({RETENTION_CHECK: "false"} if allow_short else {})
    saved = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        spark.sql(f"VACUUM {table_ref(spec, root)} RETAIN {hours} HOURS").collect()
    finally:
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def statistics(spark: SparkSession, spec: TableSpec, root: str) -> bool:
    """Column statistics for the optimizer; False when the engine has no ANALYZE TABLE for Delta tables."""
    from pyspark.errors import AnalysisException

    try:
        spark.sql(f"ANALYZE TABLE {table_ref(spec, root)} COMPUTE STATISTICS FOR ALL COLUMNS").collect()
    except AnalysisException as exc:
        if exc.getCondition() == UNSUPPORTED:
            return False
        raise
    return True

