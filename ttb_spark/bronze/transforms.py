"""Bronze's pure transforms, DataFrame -> DataFrame: manifest lines typed into ``bronze.scrape_manifest``
rows, fetched pages into ``bronze.pages`` rows (the latest fetch of each, none older than the stored row),
listed search rows into ``bronze.search_listings`` rows, label-image manifest lines into ``bronze.label_images``
rows. No reads, no writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ttb_spark import lakehouse
from ttb_spark.bronze.tables import LABEL_IMAGES, MANIFEST_LINE, PAGES, SCRAPE_MANIFEST, SEARCH_LISTINGS
from ttb_spark.registry.ttb_id import receipt_date_column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType


def parsed_manifest(lines: DataFrame, line: StructType = MANIFEST_LINE) -> DataFrame:
    """Manifest JSON lines -> one column per field of ``line`` (a page manifest's by default), plus manifest_key."""
    from pyspark.sql import functions as F

    return lines.select(F.col("manifest_key"), F.from_json("line", line).alias("m")).select("manifest_key", "m.*")


def manifest_records(parsed: DataFrame, ingest_run_id: str) -> DataFrame:
    """Parsed manifest lines -> rows of bronze.scrape_manifest."""
    from pyspark.sql import functions as F

    return lakehouse.conform(
        parsed.withColumn("receipt_date", F.to_date("receipt_date"))
        .withColumn("fetched_at", F.to_timestamp("fetched_at"))
        .withColumnRenamed("key", "page_key")
        .withColumnRenamed("run_id", "scrape_run_id")
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        SCRAPE_MANIFEST,
    )


def pages(fetched: DataFrame, ingest_run_id: str) -> DataFrame:
    """Fetched manifest lines (with ``content`` bytes) -> rows of bronze.pages, the latest fetch of each page."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy("ttb_id", "data_type").orderBy(seen_at().desc(), F.col("run_id").desc())
    timed = fetched.withColumn("fetched_at", F.to_timestamp("fetched_at")).withColumn(
        "withdrawn_at", F.when(F.col("outcome") == "withdrawn", F.to_timestamp("withdrawn_at"))
    )
    return page_rows(timed.withColumn("_latest", F.row_number().over(latest)).where("_latest = 1"), ingest_run_id)


def page_rows(fetched: DataFrame, ingest_run_id: str) -> DataFrame:
    """Fetched pages, one per (ttb_id, data_type), ``fetched_at``/``withdrawn_at`` typed -> rows of bronze.pages."""
    from pyspark.sql import functions as F

    return lakehouse.conform(
        fetched.withColumn("receipt_date", F.to_date("receipt_date"))
        .withColumn("html", F.decode("content", "ISO-8859-1"))
        .withColumn("content_length", F.length("content").cast("long"))
        .withColumn("sha256", F.sha2("content", 256))
        .withColumnRenamed("key", "source_key")
        .withColumnRenamed("run_id", "scrape_run_id")
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        PAGES,
    )


def seen_at() -> Column:
    """When a page row was last seen by the registry's answer: its fetch, or its withdrawal if later."""
    from pyspark.sql import functions as F

    return F.greatest(F.col("fetched_at"), F.col("withdrawn_at"))


def not_older(rows: DataFrame, stored: DataFrame) -> DataFrame:
    """``rows`` without those seen before the stored row of the same page (a re-ingested older
    walk must not undo a later discovery fetch or withdrawal)."""
    from pyspark.sql import functions as F

    current = stored.select("ttb_id", "data_type", seen_at().alias("_stored_at"))
    joined = rows.join(current, ["ttb_id", "data_type"], "left")
    return joined.where(F.col("_stored_at").isNull() | (seen_at() >= F.col("_stored_at"))).select(*rows.columns)


def listing_rows(listed: DataFrame, ingest_run_id: str) -> DataFrame:
    """Listed search rows -> rows of bronze.search_listings, the first search of each (ID, completed date):
    what a run stored is the same whether the manifests of a killed run and of its rerun are ingested together or not."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy("ttb_id", "completed_date").orderBy(F.col("searched_at"), F.col("source_key"))
    return lakehouse.conform(
        listed.withColumn("searched_at", F.to_timestamp("searched_at"))
        .withColumn("_latest", F.row_number().over(latest))
        .where("_latest = 1")
        .withColumn("receipt_date", receipt_date_column("ttb_id"))
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        SEARCH_LISTINGS,
    )


def label_image_rows(lines: DataFrame, raw_root: str, ingest_run_id: str) -> DataFrame:
    """Parsed label-image manifest lines -> rows of bronze.label_images: the images stored (``found``, or ``held``:
    stored before), the first fetch of each label (a rerun after a kill records ``held`` what the killed run
    stored), ``path`` the raw root joined to the key."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy(*LABEL_IMAGES.keys).orderBy("fetched_at", "manifest_key")
    stored = lines.where(F.col("outcome").isin("found", "held") & F.col("key").isNotNull())
    return lakehouse.conform(
        stored.withColumn("receipt_date", F.to_date("receipt_date"))
        .withColumn("issued_date", F.to_date("issued_date"))
        .withColumn("fetched_at", F.to_timestamp("fetched_at"))
        .withColumn("_first", F.row_number().over(first))
        .where("_first = 1")
        .withColumnRenamed("key", "image_key")
        .withColumn("path", F.concat(F.lit(raw_root.rstrip("/") + "/"), F.col("image_key")))
        .withColumnRenamed("run_id", "fetch_run_id")
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        LABEL_IMAGES,
    )
