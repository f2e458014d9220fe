"""Reads: whether a table exists, its contents now, as of a version or as changes, its versions and
history, and restoring a version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ttb_spark.lakehouse.specs import TableSpec, _catalog_name, is_catalog, table_ref

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# Tables this process has seen exist (by table_ref). No job drops a table (REPLACE TABLE and RESTORE keep
# it), so once seen a table stays: a gold run asked ~120 times, each a Delta log listing.
_EXISTING: set[str] = set()


def table_exists(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> bool:
    """Whether the table exists (as a Delta table at its path, or by name in the catalog)."""
    from pyspark.errors import AnalysisException

    ref = table_ref(spec, lakehouse_root)
    if ref in _EXISTING:
        return True
    if not is_catalog(lakehouse_root) and _no_delta_log(spark, spec.path(lakehouse_root)):
        return False
    try:
        exists = spark.catalog.tableExists(ref)
    except AnalysisException as exc:  # a path that holds no Delta table
        if exc.getCondition() == "DELTA_MISSING_DELTA_TABLE":
            return False
        raise
    if exists:
        _EXISTING.add(ref)
    return exists


def _no_delta_log(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` surely holds no Delta table: on a classic session, its file system has no ``_delta_log``
    folder there (~2 ms, never cached: another process may create the table at any time), where the catalog's
    lookup of a path holding none raises inside the JVM, ~110 ms (a first daily run asked 119 times: 11.6 s;
    docs/performance.md). False over Spark Connect (no JVM here): the catalog answers. Not
    ``DeltaTable.isDeltaTable``: it keeps answering no for a table whose CREATE this process once caught before
    its first commit (its cached DeltaLog is not refreshed)."""
    from pyspark.sql import SparkSession as ClassicSession

    if not isinstance(spark, ClassicSession):
        return False
    log = spark._jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    return not log.getFileSystem(spark._jsparkSession.sessionState().newHadoopConf()).exists(log)


def read_table(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> DataFrame:
    """The table's current contents (an empty frame of its schema when it does not exist yet)."""
    if not table_exists(spark, spec, lakehouse_root):
        return spark.createDataFrame([], spec.schema)
    return spark.table(table_ref(spec, lakehouse_root))


def _latest_commit(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> Any:
    """The table's latest ``DESCRIBE HISTORY`` row."""
    return spark.sql(f"DESCRIBE HISTORY {table_ref(spec, lakehouse_root)} LIMIT 1").first()


def last_operation_metrics(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> dict[str, int]:
    """Row counts of the table's latest commit (inserted/updated/deleted for a MERGE)."""
    metrics = _latest_commit(spark, spec, lakehouse_root)["operationMetrics"] or {}
    keys = {"numTargetRowsInserted": "inserted", "numTargetRowsUpdated": "updated", "numTargetRowsDeleted": "deleted"}
    return {short: int(metrics.get(long, 0)) for long, short in keys.items()}


def current_version(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> int | None:
    """The table's latest commit version (None when the table does not exist)."""
    if not table_exists(spark, spec, lakehouse_root):
        return None
    return int(_latest_commit(spark, spec, lakehouse_root)["version"])


DATA_METRICS = ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted", "numOutputRows",
                "numAddedFiles", "numRemovedFiles", "numDeletedRows", "numUpdatedRows", "numCopiedRows")


def data_commits(spark: SparkSession, spec: TableSpec, lakehouse_root: str, after_version: int | None) -> list[tuple[int, str, dict[str, str]]]:
    """(version, operation, non-zero row/file metrics) of the table's commits after ``after_version`` that
    changed data: any metric above, or an operation other than an empty MERGE or a property change."""
    if not table_exists(spark, spec, lakehouse_root):
        return []
    history = spark.sql(f"DESCRIBE HISTORY {table_ref(spec, lakehouse_root)}")
    if after_version is not None:
        history = history.where(f"version > {after_version}")
    out = []
    for h in history.orderBy("version").collect():
        metrics = {k: v for k, v in (h["operationMetrics"] or {}).items() if k in DATA_METRICS and v != "0"}
        if metrics or h["operation"] not in ("MERGE", "SET TBLPROPERTIES"):
            out.append((int(h["version"]), h["operation"], metrics))
    return out


def _reader(spark: SparkSession, spec: TableSpec, lakehouse_root: str, options: dict[str, Any]) -> DataFrame:
    """The table read with DataFrameReader ``options`` (time travel, change feed), by name or by path."""
    reader = spark.read.format("delta").options(**{k: str(v) for k, v in options.items()})
    if is_catalog(lakehouse_root):
        return reader.table(".".join(_catalog_name(spec, lakehouse_root)))
    return reader.load(spec.path(lakehouse_root))


def read_version(spark: SparkSession, spec: TableSpec, lakehouse_root: str, version: int) -> DataFrame:
    """The table as of commit ``version`` (time travel)."""
    return _reader(spark, spec, lakehouse_root, {"versionAsOf": version})


def restore_version(spark: SparkSession, spec: TableSpec, lakehouse_root: str, version: int | None) -> None:
    """Make commit ``version`` the table's current state again (``RESTORE TABLE ... TO VERSION AS OF``, a new
    commit); ``None`` (the table did not exist then): delete every row."""
    ref = table_ref(spec, lakehouse_root)
    spark.sql(f"RESTORE TABLE {ref} TO VERSION AS OF {int(version)}" if version is not None else f"DELETE FROM {ref}")


def read_changes(
    spark: SparkSession, spec: TableSpec, lakehouse_root: str, after_version: int, through_version: int, where: Column | None = None
) -> DataFrame:
    """Rows whose key was inserted, updated or deleted in commits ``after_version`` < v <= ``through_version``
    (Delta change data feed): per key, its last change, as the row after it (``_change_type`` ``delete``:
    the row as it was) with ``_change_type`` and ``_commit_version``. ``where``: a filter on columns that
    never change for a key (a partition column, e.g.), applied before the per-key reduction so it prunes the read."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    options = {"readChangeFeed": "true", "startingVersion": after_version + 1, "endingVersion": through_version}
    changes = _reader(spark, spec, lakehouse_root, options).where(F.col("_change_type") != "update_preimage")
    if where is not None:
        changes = changes.where(where)
    last = Window.partitionBy(*spec.keys).orderBy(F.col("_commit_version").desc(), (F.col("_change_type") == "delete").asc())
    return changes.withColumn("_n", F.row_number().over(last)).where("_n = 1").drop("_n", "_commit_timestamp")
