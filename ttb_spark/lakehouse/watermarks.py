"""``ops.watermarks``: per consuming stage and source table, the source's Delta version the stage has
processed through. Silver reads bronze.pages' changes after it, gold the silver tables', the daily job's
watchlist gold.fact_status_changes'. A stage moves it only after its own writes committed, so a crash leaves
the old watermark and the rerun redoes the same changes (idempotent MERGEs). Part of the lakehouse, not of the
run audit: the stages read and move it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pyspark.sql.types import LongType, StringType, StructType, TimestampType

from ttb_spark.lakehouse.reads import read_table
from ttb_spark.lakehouse.specs import TableSpec, column
from ttb_spark.lakehouse.writes import merge_upsert

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

WATERMARKS = TableSpec(
    name="ops.watermarks",
    comment="Change-driven stages: per stage and source table, the source's Delta version the stage has processed through.",
    keys=("stage", "source_table"),
    hash_exclude=("run_id", "updated_at"),
    schema=StructType(
        [
            column("stage", StringType(), "Consuming stage: silver, gold or watch (the daily job's watchlist).", nullable=False),
            column("source_table", StringType(), "Table whose changes the stage reads, e.g. bronze.pages.", nullable=False),
            column("version", LongType(), "Source table version processed through (its changes after this are pending)."),
            column("run_id", StringType(), "Run that last moved the watermark."),
            column("updated_at", TimestampType(), "When the watermark last moved (UTC)."),
            column("row_hash", StringType(), "SHA-256 of stage, source and version; the MERGE rewrites the row only when the version moved."),
        ]
    ),
)


def read_watermarks(spark: SparkSession, lakehouse_root: str, stage: str) -> dict[str, int]:
    """Source table -> version the stage has processed through (empty: never ran change-driven)."""
    from pyspark.sql import functions as F

    rows = read_table(spark, WATERMARKS, lakehouse_root).where(F.col("stage") == stage).collect()
    return {r["source_table"]: int(r["version"]) for r in rows}


def write_watermarks(spark: SparkSession, lakehouse_root: str, stage: str, versions: dict[str, int], run_id: str) -> None:
    """Move the stage's watermarks to ``versions`` (no commit when none moved)."""
    if versions == read_watermarks(spark, lakehouse_root, stage):
        return
    now = datetime.now(timezone.utc)
    rows = [(stage, source, int(v), run_id, now, None) for source, v in sorted(versions.items())]
    merge_upsert(spark, spark.createDataFrame(rows, WATERMARKS.schema), WATERMARKS, lakehouse_root)
