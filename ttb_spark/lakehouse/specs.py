"""Table specs and naming: :class:`TableSpec` and :func:`column`, the row hash and :func:`conform`, and
where a table lives (:func:`table_ref`, :func:`location`) under a path or catalog root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from ttb_spark.settings import CATALOG_SCHEME  # a root naming a catalog namespace: catalog:<catalog>.<schema prefix>

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

ROW_HASH = "row_hash"
CHANGE_FEED = (("delta.enableChangeDataFeed", "true"),)  # TableSpec.properties of a table whose consumers read its changes


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
