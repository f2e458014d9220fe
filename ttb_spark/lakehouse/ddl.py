"""DDL: creating a table from its spec, migrating an existing one to it in place, rewriting it into its
spec's layout, replacing it, and its table properties."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ttb_spark.lakehouse.conflicts import retry_on_conflict
from ttb_spark.lakehouse.reads import current_version, table_exists
from ttb_spark.lakehouse.specs import TableSpec, _catalog_name, _ident, is_catalog, sql_string, table_ref

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructField, StructType


def _column_ddl(f: StructField) -> str:
    comment = f.metadata.get("comment")
    return (
        f"{_ident(f.name)} {f.dataType.simpleString()}"
        + ("" if f.nullable else " NOT NULL")
        + (f" COMMENT {sql_string(comment)}" if comment else "")
    )


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
    try:
        spark.sql(f"CREATE TABLE IF NOT EXISTS {ref} {_definition(spec)}")
    except Exception as exc:  # noqa: BLE001 - only another writer's creation in progress is waited for
        if is_catalog(lakehouse_root) or NON_EMPTY_LOCATION not in str(exc):
            raise
    if not is_catalog(lakehouse_root) and not _created_meanwhile(spark, spec, lakehouse_root):
        raise TableNotCreated(
            f"{spec.name}: {spec.path(lakehouse_root)} is not a Delta table and CREATE TABLE did not make it one "
            f"(a file or folder already there, or a _delta_log folder of a CREATE TABLE that never finished): "
            f"remove it and run again"
        )
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


# How long another writer's CREATE TABLE may take to commit: between making the table's _delta_log folder and
# committing version 0, CREATE TABLE IF NOT EXISTS counts the table as there while reads find none (as for any
# other folder or file at the table's path), or, once the commit's file is being written, refuses the location
# as not empty (NON_EMPTY_LOCATION: seen when two job processes on a loaded machine created silver's tables).
CREATION_WAIT_SECONDS = 5.0
NON_EMPTY_LOCATION = "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION"


class TableNotCreated(RuntimeError):
    """CREATE TABLE left no Delta table at a path table's location (names the path)."""


_NOT_CREATED: set[str] = set()  # tables waited for in vain in this process: not waited for again


def _created_meanwhile(spark: SparkSession, spec: TableSpec, lakehouse_root: str) -> bool:
    """Whether the table exists now or once another writer's CREATE TABLE commits (within CREATION_WAIT_SECONDS,
    once per table and process)."""
    import tenacity

    ref = table_ref(spec, lakehouse_root)
    if ref in _NOT_CREATED:
        return table_exists(spark, spec, lakehouse_root)
    check = tenacity.retry(
        retry=tenacity.retry_if_result(lambda exists: not exists),
        wait=tenacity.wait_exponential(multiplier=0.25, max=4),
        stop=tenacity.stop_after_delay(CREATION_WAIT_SECONDS),
        retry_error_callback=lambda state: False,
    )(table_exists)
    created = check(spark, spec, lakehouse_root)
    if not created:
        _NOT_CREATED.add(ref)
    return created


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
