"""Watchlists: after each daily run, the changes gold recorded that a rule of ``TTB_WATCHLIST_FILE``
(:mod:`.rules`) matches become ``gold.watch_hits`` rows (:mod:`.hits`), and one digest of every pending
hit is sent (:mod:`.digest`).

At least once, never twice for a run that succeeded: hits are recorded, then the watermark moves, then
the digest is sent, and only a digest every target accepted marks its hits sent; a failed send leaves
them pending for the next run. The changes are read from fact_status_changes' change feed after the
watermark (a flat cost however long the history); the first run with a watchlist starts watching there.
Only the daily job watches: backfills and reprocessing never send (:func:`ttb_spark.ops.runner.run_job`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

from pyspark.sql import functions as F

from ttb_spark import lakehouse
from ttb_spark.watch import digest
from ttb_spark.watch.hits import WATCH_HITS, matches
from ttb_spark.watch.rules import Rule

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.settings import Settings

STAGE = "watch"


def _colas(spark: SparkSession, root: str, changes: DataFrame, products_mark: int) -> DataFrame:
    """The attributes rules test, for the COLAs of ``changes``: fact_products now, or (a COLA removed
    since) as of ``products_mark``; read by their receipt dates and IDs."""
    from ttb_spark.gold.dimensions import DIM_COMPANIES, DIM_LOCATIONS, DIM_PRODUCT_TYPES
    from ttb_spark.gold.facts import FACT_PRODUCTS
    from ttb_spark.gold.layout import in_dates

    ids = F.broadcast(changes.select("ttb_id").distinct())
    dates = sorted(r[0] for r in changes.select("receipt_date").distinct().collect())
    now = in_dates(lakehouse.read_table(spark, FACT_PRODUCTS, root), dates).join(ids, "ttb_id", "left_semi")
    then = in_dates(lakehouse.read_version(spark, FACT_PRODUCTS, root, products_mark), dates).join(ids, "ttb_id", "left_semi")
    products = now.unionByName(then.join(now.select("ttb_id"), "ttb_id", "left_anti"))
    companies = lakehouse.read_table(spark, DIM_COMPANIES, root).where("is_current").select("company_key", "company_name", "state")
    types = lakehouse.read_table(spark, DIM_PRODUCT_TYPES, root).select("product_type_key", "family")
    origins = lakehouse.read_table(spark, DIM_LOCATIONS, root).select(F.col("location_key").alias("origin_location_key"), "origin_description")
    return (
        products.join(companies, "company_key", "left").join(F.broadcast(types), "product_type_key", "left")
        .join(F.broadcast(origins), "origin_location_key", "left")
        .select("ttb_id", "permit_number", "company_name", "brand_name", "fanciful_name", "class_type_code", "family",
                "origin_code", "origin_description", "state")
    )  # fmt: skip


def record_hits(spark: SparkSession, settings: Settings, rules: Sequence[Rule], run_id: str) -> int:
    """Record the hits among the changes gold recorded since the watermark, then move it; how many were new."""
    from ttb_spark.gold.facts import FACT_PRODUCTS, FACT_STATUS_CHANGES

    root = settings.pipeline.lakehouse_root
    lakehouse.ensure_properties(spark, FACT_STATUS_CHANGES, root)  # its change feed, from here on
    latest = {spec.name: lakehouse.current_version(spark, spec, root) for spec in (FACT_STATUS_CHANGES, FACT_PRODUCTS)}
    if None in latest.values():
        return 0  # no gold yet
    marks = lakehouse.read_watermarks(spark, root, STAGE)
    found = 0
    changes_mark = marks.get(FACT_STATUS_CHANGES.name)
    if changes_mark is not None and changes_mark < latest[FACT_STATUS_CHANGES.name]:
        changes = lakehouse.read_changes(spark, FACT_STATUS_CHANGES, root, changes_mark, latest[FACT_STATUS_CHANGES.name])
        changes = changes.where(F.col("_change_type") != "delete").localCheckpoint()
        hits = matches(changes, _colas(spark, root, changes, marks[FACT_PRODUCTS.name]), rules, run_id)
        found = lakehouse.merge_changes(spark, hits, None, WATCH_HITS, root)["inserted"]
    lakehouse.write_watermarks(spark, root, STAGE, {k: int(v) for k, v in latest.items()}, run_id)
    return found


def send_pending(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """Send one digest of every pending hit (none without notification URLs); mark them sent when accepted."""
    root = settings.pipeline.lakehouse_root
    if not lakehouse.table_exists(spark, WATCH_HITS, root):
        return {"pending": 0, "sent": 0}
    # materialised once: the rows the digest lists are the rows marked sent, not a second read of the table
    pending = lakehouse.read_table(spark, WATCH_HITS, root).where(F.col("sent_at").isNull()).localCheckpoint()
    rows = pending.orderBy("rule", "change", "ttb_id", "observed_at").collect()
    urls = digest.notify_urls()
    if not rows or not urls:
        return {"pending": len(rows), "sent": 0, **({"no_targets": 1} if rows else {})}
    sent_id = digest.digest_id(rows)
    if not digest.send(urls, *digest.message(rows, sent_id, settings.extraction.registry_base_url)):
        return {"pending": len(rows), "sent": 0, "send_failed": 1}
    done = pending.withColumn("digest_id", F.lit(sent_id)).withColumn("sent_at", F.lit(datetime.now(timezone.utc)).cast("timestamp"))
    lakehouse.merge_upsert(spark, done, WATCH_HITS, root)
    return {"pending": 0, "sent": len(rows), "digest": sent_id}


def run(spark: SparkSession, settings: Settings, rules: Sequence[Rule], run_id: str) -> dict[str, Any]:
    """Record this run's hits and send the pending ones; the counts the run summary shows."""
    return {"hits": record_hits(spark, settings, rules, run_id), **send_pending(spark, settings)}
