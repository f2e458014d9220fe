"""Delta tables of the lakehouse: where each lives, how it is created and how it is MERGEd.

Each table is declared once, as a :class:`TableSpec` next to its transform (``bronze``,
``silver``, ``gold`` ...), with column comments in the schema metadata; the data dictionary
(``docs/tables.md``) is generated from those declarations. Writes go through
:func:`merge_upsert`, so reruns and late data are safe: a row is inserted when its key is new
and updated only when its content hash changed.

Where tables live is one string, the lakehouse root: a folder or object-store URI (the table is
the Delta table at ``<root>/<layer>/<table>``), or ``catalog:<catalog>.<schema prefix>`` (the
table is the managed table ``<catalog>.<prefix><layer>.<table>``, e.g. in Unity Catalog).
Everything goes through SQL on table names (:func:`table_ref`) — ``CREATE TABLE``, ``MERGE
INTO``, ``ALTER TABLE``, ``DESCRIBE`` — so one code path serves both kinds and both classic
sessions and Spark Connect (the DeltaTable Python API needs Delta Connect's server plugins).
An existing table is brought up to its spec by :func:`migrate` before every write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

from ttb_spark.settings import CATALOG_SCHEME  # a root naming a catalog namespace: catalog:<catalog>.<schema prefix>

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructField, StructType

ROW_HASH = "row_hash"
CHANGE_FEED = (("delta.enableChangeDataFeed", "true"),)  # TableSpec.properties of a table whose consumers read its changes
DELETE = "_delete"  # merge_changes: source rows flagged true delete their target row
T = TypeVar("T")


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
    properties: tuple[tuple[str, str], ...] = ()  # Delta table properties, e.g. CHANGE_FEED; see ensure_properties
    cluster_by: tuple[str, ...] = ()  # liquid clustering columns (instead of partition_by; Delta allows one or the other)
    # (column, Spark SQL expression over the other columns): computed by conform, never by a transform, and
    # left out of row_hash (it adds nothing to the columns it is computed from), e.g. a partition column
    derived: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        named = (*self.keys, *self.partition_by, *self.cluster_by, *(c for c, _ in self.derived))
        missing = [c for c in named if c not in self.schema.fieldNames()]
        if missing:
            raise ValueError(f"{self.name}: key, partition, clustering or derived columns {missing} not in schema")
        if self.partition_by and self.cluster_by:
            raise ValueError(f"{self.name}: a Delta table is partitioned or clustered, not both")

    @property
    def layout(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(partition columns, clustering columns)."""
        return tuple(self.partition_by), tuple(self.cluster_by)

    def path(self, lakehouse_root: str) -> str:
        """``<root>/<layer>/<table>``; the root may be a local folder or an object-store URI."""
        layer, table = self.name.split(".", 1)
        return f"{lakehouse_root.rstrip('/')}/{layer}/{table}"

    @property
    def hashed_columns(self) -> list[str]:
        skip = {*self.keys, ROW_HASH, *self.hash_exclude, *(c for c, _ in self.derived)}
        return [f for f in self.schema.fieldNames() if f not in skip]


def row_hash(columns: Sequence[str]) -> Column:
    """SHA-256 of the given columns' JSON form: changes exactly when their content changes."""
    from pyspark.sql import functions as F

    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in sorted(columns)])), 256)


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select the table's columns in order, cast to its types, with the derived columns and ``row_hash``
    computed when declared."""
    from pyspark.sql import functions as F

    derived = dict(spec.derived)
    cols = []
    for f in spec.schema.fields:
        if f.name == ROW_HASH:
            cols.append(row_hash(spec.hashed_columns).alias(ROW_HASH))
        elif f.name in derived:
            cols.append(F.expr(derived[f.name]).cast(f.dataType).alias(f.name))
        else:
            cols.append(F.col(f.name).cast(f.dataType).alias(f.name))
    return df.select(*cols)


def is_catalog(lakehouse_root: str) -> bool:
    """Whether ``lakehouse_root`` names a catalog namespace (``catalog:<catalog>.<schema prefix>``) rather than a path."""
    return lakehouse_root.startswith(CATALOG_SCHEME)


def table_ref(spec: TableSpec, lakehouse_root: str) -> str:
    """The table as SQL names it: ``delta.`<root>/<layer>/<table>``` for a path root, else
    ```<catalog>`.`<prefix><layer>`.`<table>``` (a managed table, e.g. in Unity Catalog)."""
    if not is_catalog(lakehouse_root):
        return f"delta.{_ident(spec.path(lakehouse_root))}"
    catalog, schema, table = _catalog_name(spec, lakehouse_root)
    return ".".join(_ident(part) for part in (catalog, schema, table))


def location(spec: TableSpec, lakehouse_root: str) -> str:
    """Where the table lives, for people: its path, or its three-part name in catalog mode."""
    return ".".join(_catalog_name(spec, lakehouse_root)) if is_catalog(lakehouse_root) else spec.path(lakehouse_root)


def _catalog_name(spec: TableSpec, lakehouse_root: str) -> tuple[str, str, str]:
    catalog, _, prefix = lakehouse_root.removeprefix(CATALOG_SCHEME).partition(".")
    layer, table = spec.name.split(".", 1)
    return catalog, f"{prefix}{layer}", table


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sql_string(value: str) -> str:
    """A Spark SQL string literal (backslash escapes: Spark reads ``'a''b'`` as two literals, ``'ab'``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _column_ddl(f: StructField) -> str:
    comment = f.metadata.get("comment")
    return (
        f"{_ident(f.name)} {f.dataType.simpleString()}"
        + ("" if f.nullable else " NOT NULL")
        + (f" COMMENT {sql_string(comment)}" if comment else "")
    )


# Delta's optimistic-concurrency errors: another writer committed first. Nothing of the losing
# transaction was committed, so running it again (against the new version) is safe for our MERGEs.
CONFLICTS = frozenset({
    "DELTA_CONCURRENT_APPEND", "DELTA_CONCURRENT_DELETE_DELETE", "DELTA_CONCURRENT_DELETE_READ",
    "DELTA_CONCURRENT_TRANSACTION", "DELTA_CONCURRENT_WRITE", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED",
})  # fmt: skip
CONFLICT_TYPES = ("DeltaConcurrentModificationException", "ConcurrentWriteException", "MetadataChangedException",
                  "ProtocolChangedException", "ConcurrentAppendException", "ConcurrentDeleteReadException",
                  "ConcurrentDeleteDeleteException", "ConcurrentTransactionException")  # delta.exceptions.base
CONFLICT_ATTEMPTS = 8


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is Delta's "a concurrent transaction committed first": by its condition (Spark
    Connect and plain pyspark; it may carry a sub-condition, ``DELTA_CONCURRENT_APPEND.WITHOUT_HINT``),
    or by class name (delta-spark's Python API converts these errors to its own classes, without a
    condition). Names, not an import of ``delta.exceptions``: delta-spark 4.0.0 (EMR's) has no such
    module, and an import failing here would replace the error being checked."""
    if any(cls.__name__ in CONFLICT_TYPES for cls in type(exc).__mro__):
        return True
    condition = getattr(exc, "getCondition", None)
    return callable(condition) and (condition() or "").split(".")[0] in CONFLICTS


def retry_on_conflict(call: Callable[..., T]) -> Callable[..., T]:
    """``call`` retried (jittered backoff, up to CONFLICT_ATTEMPTS times) when another writer's commit
    beat it; every other error, and the last conflict, is raised as is."""
    import tenacity

    return tenacity.retry(
        retry=tenacity.retry_if_exception(is_conflict),
        wait=tenacity.wait_random_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_attempt(CONFLICT_ATTEMPTS),
        reraise=True,
    )(call)


@retry_on_conflict
def ensure_table(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> list[str]:
    """Create the table (schema, partitioning, table and column comments), or bring an existing one
    up to its spec (:func:`migrate`). Returns the migration statements applied (none on creation)."""
    ref = table_ref(spec, lakehouse_root)
    if table_exists(spark, spec, lakehouse_root):
        return migrate(spark, spec, lakehouse_root)
    if is_catalog(lakehouse_root):
        catalog, schema, _ = _catalog_name(spec, lakehouse_root)
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(catalog)}.{_ident(schema)}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {ref} {_definition(spec)}")
    return []


def _definition(spec: TableSpec) -> str:
    """``(columns) USING delta [PARTITIONED BY | CLUSTER BY] COMMENT ... [TBLPROPERTIES]`` of a CREATE/REPLACE TABLE."""
    columns = ", ".join(_column_ddl(f) for f in spec.schema.fields)
    layout = ""
    for clause, cols in (("PARTITIONED BY", spec.partition_by), ("CLUSTER BY", spec.cluster_by)):
        if cols:
            layout = f" {clause} ({', '.join(_ident(c) for c in cols)})"
    properties = f" TBLPROPERTIES ({_properties_sql(spec.properties)})" if spec.properties else ""
    return f"({columns}) USING delta{layout} COMMENT {sql_string(spec.comment)}{properties}"


_MIGRATED: set[tuple[Any, ...]] = set()  # (table, schema, comment, layout) already brought up to date here


class MigrationError(RuntimeError):
    """An existing table differs from its spec in a way no additive migration can fix (names the table and columns)."""


def migration(spec: TableSpec, stored: StructType, stored_comment: str | None,
              stored_layout: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> list[str]:
    """The statements (with ``{table}`` for the table's name) that bring a table of schema ``stored``
    to ``spec``: new columns added (``ALTER TABLE ADD COLUMNS``), changed column comments set, and a
    changed table comment set by ``COMMENT ON TABLE`` (the statement Databricks documents for Unity
    Catalog tables; Delta records it as a property change on path tables too).

    Raises :class:`MigrationError` for what cannot be migrated in place: a column the spec dropped,
    one whose type or nullability changed, or (``stored_layout``: partition and clustering columns)
    another partitioning or clustering; those need a rewrite, decided by a person (:func:`relayout`
    for the layout).
    """
    have = {f.name: f for f in stored.fields}
    want = {f.name for f in spec.schema.fields}
    problems = [f"{name} is not in the spec" for name in have if name not in want]
    if stored_layout is not None and tuple(map(tuple, stored_layout)) != spec.layout:
        problems.append(
            f"stored partitioned by {list(stored_layout[0])} and clustered by {list(stored_layout[1])} but the spec says "
            f"{list(spec.partition_by)} and {list(spec.cluster_by)} (rewrite it with `ttb_spark relayout {spec.name}`)"
        )
    problems += [
        f"{f.name} is {have[f.name].dataType.simpleString()}{'' if have[f.name].nullable else ' NOT NULL'} "
        f"but the spec says {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}"
        for f in spec.schema.fields
        if f.name in have and (have[f.name].dataType != f.dataType or have[f.name].nullable != f.nullable)
    ]
    if problems:
        raise MigrationError(f"{spec.name}: cannot migrate in place: " + "; ".join(problems))
    added = [f for f in spec.schema.fields if f.name not in have]
    statements = [f"ALTER TABLE {{table}} ADD COLUMNS ({', '.join(_column_ddl(f) for f in added)})"] if added else []
    for f in spec.schema.fields:
        comment = f.metadata.get("comment")
        if f.name in have and comment and have[f.name].metadata.get("comment") != comment:
            statements.append(f"ALTER TABLE {{table}} ALTER COLUMN {_ident(f.name)} COMMENT {sql_string(comment)}")
    if (stored_comment or "") != spec.comment:
        statements.append(f"COMMENT ON TABLE {{table}} IS {sql_string(spec.comment)}")
    return statements


def migrate(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> list[str]:
    """Apply :func:`migration` to the existing table; returns the statements run (none when it matches its spec).

    Checked once per table and spec in a process (every MERGE calls :func:`ensure_table`).
    """
    ref = table_ref(spec, lakehouse_root)
    checked = (ref, spec.schema.json(), spec.comment, spec.layout)
    if checked in _MIGRATED:
        return []
    detail = spark.sql(f"DESCRIBE DETAIL {ref}").first().asDict()
    layout = (tuple(detail.get("partitionColumns") or ()), tuple(detail.get("clusteringColumns") or ()))
    statements = [s.replace("{table}", ref) for s in migration(spec, spark.table(ref).schema, detail["description"], layout)]
    for statement in statements:
        spark.sql(statement)
    _MIGRATED.add(checked)
    return statements


def relayout(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> int | None:
    """Rewrite an existing table into its spec's partitioning or clustering; returns the rows copied
    (None when the layout already matches: nothing happens).

    The one migration that rewrites data, run by a person with the jobs stopped (``ttb_spark
    relayout``): ``REPLACE TABLE`` with the spec's definition, then its rows as of the version
    before, re-inserted with the spec's derived columns computed (a new partition column, e.g.)
    (two commits; history and time travel to the old layout are kept until VACUUM).
    """
    ref = table_ref(spec, lakehouse_root)
    detail = spark.sql(f"DESCRIBE DETAIL {ref}").first().asDict()
    if (tuple(detail.get("partitionColumns") or ()), tuple(detail.get("clusteringColumns") or ())) == spec.layout:
        return None
    before = current_version(spark, spec, lakehouse_root)
    kept = set(spark.table(ref).columns)
    replace_table(spark, spec, lakehouse_root)
    derived = dict(spec.derived)
    columns = [f for f in spec.schema.fieldNames() if f in kept or f in derived]
    values = ", ".join(f"{derived[f]} AS {_ident(f)}" if f in derived else _ident(f) for f in columns)
    spark.sql(f"INSERT INTO {ref} ({', '.join(_ident(f) for f in columns)}) SELECT {values} FROM {ref} VERSION AS OF {before}")
    return int(spark.table(ref).count())


def replace_table(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> None:
    """Replace the table by an empty one of its spec (``REPLACE TABLE``, one commit; the old rows stay
    readable by time travel until VACUUM)."""
    spark.sql(f"REPLACE TABLE {table_ref(spec, lakehouse_root)} {_definition(spec)}")


# Tables this process has seen exist (by table_ref). No job drops a table (REPLACE TABLE and RESTORE keep
# it), so once seen a table stays: a gold run asked ~120 times, each a Delta log listing.
_EXISTING: set[str] = set()


def table_exists(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> bool:
    """Whether the table exists (as a Delta table at its path, or by name in the catalog)."""
    from pyspark.errors import AnalysisException

    ref = table_ref(spec, lakehouse_root)
    if ref in _EXISTING:
        return True
    try:
        exists = spark.catalog.tableExists(ref)
    except AnalysisException as exc:  # a path that holds no Delta table
        if exc.getCondition() == "DELTA_MISSING_DELTA_TABLE":
            return False
        raise
    if exists:
        _EXISTING.add(ref)
    return exists


def read_table(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> DataFrame:
    """The table's current contents (an empty frame of its schema when it does not exist yet)."""
    if not table_exists(spark, spec, lakehouse_root):
        return spark.createDataFrame([], spec.schema)
    return spark.table(table_ref(spec, lakehouse_root))


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


def _run_merge(spark: SparkSession, statement: str, source: DataFrame) -> dict[str, int]:
    """Run a ``MERGE INTO ... USING {source}`` statement with ``source`` as the DataFrame argument; its row counts."""
    row = _with_source(spark, statement, source).first()
    return {"inserted": int(row["num_inserted_rows"]), "updated": int(row["num_updated_rows"]), "deleted": int(row["num_deleted_rows"])}


_merge = retry_on_conflict(_run_merge)  # for a source that does not depend on the target's state


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


def _properties_sql(properties: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in sorted(properties))


def ensure_properties(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> None:
    """Set ``spec.properties`` on an existing table where they differ (one ALTER commit, none when already set)."""
    if not spec.properties or not table_exists(spark, spec, lakehouse_root):
        return
    ref = table_ref(spec, lakehouse_root)
    stored = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {ref}").collect()}
    missing = {k: v for k, v in spec.properties if stored.get(k) != v}
    if missing:
        spark.sql(f"ALTER TABLE {ref} SET TBLPROPERTIES ({_properties_sql(missing.items())})")


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
    return _run_merge(spark, f"MERGE INTO {table_ref(spec, lakehouse_root)} AS t USING {{source}} AS s ON {condition} " + " ".join(clauses), source)
