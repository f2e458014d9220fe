"""Delta tables of the lakehouse: where each lives, how it is created and how it is MERGEd.

Each table is declared once, as a :class:`TableSpec` next to its transform (``bronze``,
``silver``, ``gold`` ...), with column comments in the schema metadata; the data dictionary
(``docs/tables.md``) is generated from those declarations. Writes go through
:func:`merge_upsert`, so reruns and late data are safe: a row is inserted when its key is new
and updated only when its content hash changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

ROW_HASH = "row_hash"
REGISTRY: dict[str, TableSpec] = {}


def column(name: str, data_type: Any, comment: str, nullable: bool = True) -> Any:
    """A StructField carrying its column comment (the data dictionary and Delta read it)."""
    from pyspark.sql.types import StructField

    return StructField(name, data_type, nullable, metadata={"comment": comment})


@dataclass(frozen=True)
class TableSpec:
    """A Delta table: ``layer.name``, schema with comments, keys and partitioning."""

    name: str
    schema: StructType
    comment: str
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    hash_exclude: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        missing = [c for c in (*self.keys, *self.partition_by) if c not in self.schema.fieldNames()]
        if missing:
            raise ValueError(f"{self.name}: keys/partition columns {missing} not in schema")
        REGISTRY[self.name] = self

    def path(self, lakehouse_root: str) -> str:
        """``<root>/<layer>/<table>``; the root may be a local folder or an object-store URI."""
        layer, table = self.name.split(".", 1)
        return f"{lakehouse_root.rstrip('/')}/{layer}/{table}"

    @property
    def hashed_columns(self) -> list[str]:
        skip = {*self.keys, ROW_HASH, *self.hash_exclude}
        return [f for f in self.schema.fieldNames() if f not in skip]


def row_hash(columns: Sequence[str]) -> Column:
    """SHA-256 of the given columns' JSON form: changes exactly when their content changes."""
    from pyspark.sql import functions as F

    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in sorted(columns)])), 256)


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select the table's columns in order, cast to its types, with ``row_hash`` computed when declared."""
    from pyspark.sql import functions as F

    cols = []
    for f in spec.schema.fields:
        if f.name == ROW_HASH:
            cols.append(row_hash(spec.hashed_columns).alias(ROW_HASH))
        else:
            cols.append(F.col(f.name).cast(f.dataType).alias(f.name))
    return df.select(*cols)


def ensure_table(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> None:
    """Create the table (schema, partitioning, table and column comments) when it does not exist."""
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(spec.path(lakehouse_root)).comment(spec.comment)
    for f in spec.schema.fields:
        builder = builder.addColumn(f.name, f.dataType, nullable=f.nullable, comment=f.metadata.get("comment"))
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    builder.execute()


def table_exists(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, spec.path(lakehouse_root))


def read_table(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> DataFrame:
    """The table's current contents (an empty frame of its schema when it does not exist yet)."""
    if not table_exists(spark, spec, lakehouse_root):
        return spark.createDataFrame([], spec.schema)
    return spark.read.format("delta").load(spec.path(lakehouse_root))


def _literal(value: Any) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def prune_condition(alias: str, prune: dict[str, Iterable[Any]] | None) -> str:
    """``t.receipt_date IN ('2024-01-02', ...)``: literal partition filters so MERGE reads only the batch's files."""
    parts = []
    for col, values in (prune or {}).items():
        vals = sorted({_literal(v) for v in values})
        parts.append(f"{alias}.{col} IN ({', '.join(vals)})" if vals else "false")
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
    Returns the MERGE's row counts.
    """
    from delta.tables import DeltaTable

    ensure_table(spark, spec, lakehouse_root)
    source = conform(df, spec)
    target = DeltaTable.forPath(spark, spec.path(lakehouse_root))
    condition = " AND ".join(f"t.{k} <=> s.{k}" for k in spec.keys)
    pruning = prune_condition("t", prune)
    if pruning:
        condition = f"{condition} AND {pruning}"
    has_hash = ROW_HASH in spec.schema.fieldNames()
    merge = target.alias("t").merge(source.alias("s"), condition)
    merge = merge.whenMatchedUpdateAll(condition=f"t.{ROW_HASH} <> s.{ROW_HASH}" if has_hash else None)
    merge = merge.whenNotMatchedInsertAll()
    if delete_missing_in is not None:
        merge = merge.whenNotMatchedBySourceDelete(condition=prune_condition("t", delete_missing_in) or None)
    before = target.history(1).collect()[0]["version"]
    merge.execute()
    return last_operation_metrics(spark, spec, lakehouse_root, after_version=before)


def last_operation_metrics(
    spark: SparkSession, spec: TableSpec, lakehouse_root: str, after_version: int | None = None
) -> dict[str, int]:
    """Row counts of the table's latest commit (inserted/updated/deleted for a MERGE).

    With ``after_version``, zeros when no commit followed that version (a MERGE of an empty
    source commits nothing, so the latest commit is an earlier operation's).
    """
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, spec.path(lakehouse_root)).history(1).collect()[0]
    if after_version is not None and history["version"] <= after_version:
        return {"inserted": 0, "updated": 0, "deleted": 0}
    metrics = history["operationMetrics"] or {}
    keys = {"numTargetRowsInserted": "inserted", "numTargetRowsUpdated": "updated", "numTargetRowsDeleted": "deleted"}
    return {short: int(metrics.get(long, 0)) for long, short in keys.items()}
