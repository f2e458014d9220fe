"""Writes: MERGE (:func:`merge_upsert`, :func:`merge_changes`) and blind INSERT (:func:`insert_new`), each
after bringing the table up to its spec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ttb_spark.lakehouse.conflicts import retry_on_conflict
from ttb_spark.lakehouse.ddl import ensure_table
from ttb_spark.lakehouse.reads import read_table, table_exists
from ttb_spark.lakehouse.specs import ROW_HASH, TableSpec, _ident, conform, sql_string, table_ref

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DELETE = "_delete"  # merge_changes: source rows flagged true delete their target row


def prune_condition(alias: str, prune: dict[str, Iterable[Any]] | None) -> str:
    """``t.receipt_date IN ('2024-01-02', ...)``: literal partition filters so MERGE reads only the batch's files."""
    parts = []
    for col, values in (prune or {}).items():
        vals = sorted({str(v) if isinstance(v, (int, float)) else sql_string(str(v)) for v in values})
        parts.append(f"{alias}.{_ident(col)} IN ({', '.join(vals)})" if vals else "false")
    return " AND ".join(parts)


def merge_upsert(
    spark: SparkSession,
    df: DataFrame,
    spec: TableSpec,
    lakehouse_root: str,
    prune: dict[str, Iterable[Any]] | None = None,
    delete_missing_in: dict[str, Iterable[Any]] | None = None,
) -> dict[str, int]:
    """MERGE ``df`` into the table on its keys: insert new keys, update rows whose ``row_hash`` changed.

    ``prune`` adds literal partition predicates to the match condition (partition pruning).
    ``delete_missing_in`` deletes target rows inside those partitions that the source no longer
    has (used where a table is a full function of its input, e.g. rejects that were fixed).
    SQL ``MERGE INTO`` (not the DeltaTable API), so it runs alike on a classic session and over
    Spark Connect. Returns the MERGE's row counts.
    """
    ensure_table(spark, spec, lakehouse_root)
    condition = " AND ".join(f"t.{_ident(k)} <=> s.{_ident(k)}" for k in spec.keys)
    pruning = prune_condition("t", prune)
    if pruning:
        condition = f"{condition} AND {pruning}"
    changed = f" AND t.{ROW_HASH} <> s.{ROW_HASH}" if ROW_HASH in spec.schema.fieldNames() else ""
    clauses = [f"WHEN MATCHED{changed} THEN UPDATE SET *", "WHEN NOT MATCHED THEN INSERT *"]
    if delete_missing_in is not None:
        scope = prune_condition("t", delete_missing_in)
        clauses.append(f"WHEN NOT MATCHED BY SOURCE{f' AND {scope}' if scope else ''} THEN DELETE")
    return _merge(spark, f"MERGE INTO {table_ref(spec, lakehouse_root)} AS t USING {{source}} AS s ON {condition} " + " ".join(clauses), conform(df, spec))


def insert_new(spark: SparkSession, df: DataFrame, spec: TableSpec, lakehouse_root: str) -> None:
    """Append ``df``, whose keys the table cannot hold yet (a new run's row): one blind ``INSERT INTO``, which
    skips the target scan a MERGE makes and never conflicts with another writer's commit."""
    ensure_table(spark, spec, lakehouse_root)
    names = ", ".join(_ident(f) for f in spec.schema.fieldNames())
    _with_source(spark, f"INSERT INTO {table_ref(spec, lakehouse_root)} ({names}) SELECT {names} FROM {{source}}", conform(df, spec)).collect()


def _with_source(spark: SparkSession, statement: str, source: DataFrame) -> DataFrame:
    """``spark.sql`` of a statement that names ``{source}`` (the DataFrame argument) and no other placeholder."""
    # the statement is a format string for spark.sql's DataFrame argument: literal braces doubled
    text = statement.replace("{", "{{").replace("}", "}}").replace("{{source}}", "{source}")
    return spark.sql(text, source=source)


def run_merge(spark: SparkSession, statement: str, source: DataFrame) -> dict[str, int]:
    """Run a ``MERGE INTO ... USING {source}`` statement with ``source`` as the DataFrame argument; its row counts."""
    row = _with_source(spark, statement, source).first()
    return {"inserted": int(row["num_inserted_rows"]), "updated": int(row["num_updated_rows"]), "deleted": int(row["num_deleted_rows"])}


_merge = retry_on_conflict(run_merge)  # for a source that does not depend on the target's state


@retry_on_conflict
def merge_changes(
    spark: SparkSession,
    upserts: DataFrame,
    deletes: DataFrame | None,
    spec: TableSpec,
    lakehouse_root: str,
    prune: dict[str, Iterable[Any]] | None = None,
) -> dict[str, int]:
    """One MERGE that upserts ``upserts`` (as :func:`merge_upsert`) and deletes the rows keyed by ``deletes``
    (key columns only; keys also in ``upserts`` are not deleted; None: nothing to delete, and no delete
    rows are computed).

    With ``prune`` (literal partition values covering both frames) it reads only those partitions:
    no by-source delete, so the cost follows the batch, not the table. Its source is only what would
    change the table (source rows whose keys + row_hash are not stored, delete keys that are stored),
    materialised first: when that is empty the MERGE, and its commit, are skipped; after a concurrent
    commit it is computed again, against the table's new state. SQL ``MERGE INTO``, like
    :func:`merge_upsert`. Returns the MERGE's row counts.
    """
    from pyspark.sql import functions as F

    keys = list(spec.keys)
    rows = conform(upserts, spec).withColumn(DELETE, F.lit(False))
    gone = None if deletes is None else deletes.select(*keys).distinct().join(rows.select(*keys), keys, "left_anti")
    if table_exists(spark, spec, lakehouse_root):
        stored = read_table(spark, spec, lakehouse_root)
        for col, values in (prune or {}).items():
            stored = stored.where(F.col(col).isin(sorted(set(values))))
        keyed = [*keys, ROW_HASH] if ROW_HASH in spec.schema.fieldNames() else keys
        rows = rows.join(stored.select(*keyed), keyed, "left_anti")
        gone = None if gone is None else gone.join(stored.select(*keys), keys, "left_semi")
    if gone is not None:
        blanks = [F.lit(None).cast(f.dataType).alias(f.name) for f in spec.schema.fields if f.name not in spec.keys]
        rows = rows.unionByName(gone.select(*spec.keys, *blanks, F.lit(True).alias(DELETE)))
    # materialised once: the check below and the MERGE read the same rows, and the MERGE copies a small
    # checkpoint instead of computing its source again (a daily increment's gold: 12.5 -> 10.5 s of MERGE
    # work, docs/performance.md)
    source = rows.localCheckpoint()
    ensure_table(spark, spec, lakehouse_root)
    if source.isEmpty():
        return {"inserted": 0, "updated": 0, "deleted": 0}
    condition = " AND ".join(f"t.{_ident(k)} <=> s.{_ident(k)}" for k in spec.keys)
    pruning = prune_condition("t", prune)
    if pruning:
        condition = f"{condition} AND {pruning}"
    names = [_ident(f) for f in spec.schema.fieldNames()]
    changed = f"NOT s.{DELETE}" + (f" AND t.{ROW_HASH} <> s.{ROW_HASH}" if ROW_HASH in spec.schema.fieldNames() else "")
    clauses = [
        f"WHEN MATCHED AND s.{DELETE} THEN DELETE",
        f"WHEN MATCHED AND {changed} THEN UPDATE SET {', '.join(f'{n} = s.{n}' for n in names)}",
        f"WHEN NOT MATCHED AND NOT s.{DELETE} THEN INSERT ({', '.join(names)}) VALUES ({', '.join(f's.{n}' for n in names)})",
    ]
    return run_merge(spark, f"MERGE INTO {table_ref(spec, lakehouse_root)} AS t USING {{source}} AS s ON {condition} " + " ".join(clauses), source)
