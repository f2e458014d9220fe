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

One concern a module: :mod:`.specs` (:class:`TableSpec`, :func:`column`, the row hash and
:func:`conform`, naming: :func:`table_ref`, :func:`location`, :func:`sql_string`), :mod:`.conflicts`
(:func:`is_conflict`, :func:`retry_on_conflict`), :mod:`.ddl` (:func:`ensure_table`, :func:`migration`
and :func:`migrate`, :func:`relayout`, :func:`replace_table`, :func:`ensure_properties`), :mod:`.reads`
(:func:`table_exists`, :func:`read_table`, :func:`read_version`, :func:`read_changes`, versions and
history, :func:`restore_version`) and :mod:`.writes` (:func:`merge_upsert`, :func:`merge_changes`,
:func:`insert_new`, :func:`run_merge`), and :mod:`.watermarks` (``ops.watermarks``, the change-driven stages' progress). The names
other code uses are imported here.
"""

from ttb_spark.lakehouse.conflicts import is_conflict, retry_on_conflict
from ttb_spark.lakehouse.ddl import (
    MigrationError, ensure_properties, ensure_table, migrate, migration, relayout, replace_table,
)  # fmt: skip
from ttb_spark.lakehouse.reads import (
    current_version, data_commits, last_operation_metrics, read_changes, read_table, read_version, restore_version,
    table_exists,
)  # fmt: skip
from ttb_spark.lakehouse.specs import (
    CHANGE_FEED, ROW_HASH, TableSpec, column, conform, is_catalog, location, sql_string, table_ref,
)  # fmt: skip
from ttb_spark.lakehouse.writes import insert_new, merge_changes, merge_upsert, prune_condition, run_merge
from ttb_spark.lakehouse.watermarks import WATERMARKS, read_watermarks, write_watermarks
from ttb_spark.settings import CATALOG_SCHEME  # lakehouse.CATALOG_SCHEME, as before: the runner names it so

__all__ = [
    "CATALOG_SCHEME", "CHANGE_FEED", "ROW_HASH", "WATERMARKS", "MigrationError", "TableSpec", "column", "conform",
    "current_version", "data_commits", "ensure_properties", "ensure_table", "insert_new", "is_catalog",
    "is_conflict", "last_operation_metrics", "location", "merge_changes", "merge_upsert", "migrate", "migration",
    "prune_condition", "read_changes", "read_table", "read_version", "relayout", "replace_table",
    "read_watermarks", "restore_version", "retry_on_conflict", "run_merge", "sql_string", "table_exists", "table_ref", "write_watermarks",
]  # fmt: skip
