"""The silver stage: read bronze pages (changed since the last run, or a scope's partitions),
transform (:mod:`.transforms`), MERGE into the silver tables, reconcile, move the watermark."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ttb_spark import bronze, lakehouse
from ttb_spark.scope import ChangesSince
from ttb_spark.silver.tables import COLA_CERTIFICATES, COLA_DETAILS, REJECTS, TABLES, WITHDRAWALS
from ttb_spark.silver.transforms import (
    check_reconciliation, cleaned, date_batches, extracted, reconciliation, rejects, structured, withdrawals,
)  # fmt: skip

if TYPE_CHECKING:
    from datetime import date

    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.scope import ReceiptDates
    from ttb_spark.settings import Settings

STAGE = "silver"


def _in_scope(df: DataFrame, dates: list[str], method_types: list[str]) -> DataFrame:
    from pyspark.sql import functions as F

    return df.where(F.col("receipt_date").isin(*dates) & F.col("method_type").isin(*method_types))


def reference_codes(spark: SparkSession, settings: Settings) -> DataFrame | None:
    """Class/type and origin codes (ref_type, code): gold.ttb_reference_data, or its seed before it exists."""
    if not settings.processing.validate_reference_codes:
        return None
    from ttb_spark import reference

    table = reference.read(spark, settings)
    if table.isEmpty():  # not created yet, or a gold run was killed between creating and seeding it
        table = reference.to_frame(spark, reference.seed_rows())
    return table.where("ref_type IN ('class_type', 'origin')").select("ref_type", "code")


def bronze_versions(spark: SparkSession, root: str) -> tuple[int | None, int | None]:
    """(the bronze.pages version silver last processed through, None: never; its current version, None: no bronze)."""
    lakehouse.ensure_properties(spark, bronze.PAGES, root)  # change feed from here on
    latest = lakehouse.current_version(spark, bronze.PAGES, root)
    return lakehouse.read_watermarks(spark, root, STAGE).get(bronze.PAGES.name), latest


def changed_pages(spark: SparkSession, root: str, mark: int | None, latest: int, dates: list[date] | None = None) -> DataFrame:
    """bronze.pages rows added or changed after version ``mark`` through ``latest`` (every page as of ``latest``
    when ``mark`` is None); ``dates``: only those receipt dates' (partition pruning)."""
    from pyspark.sql import functions as F

    on_dates = None if dates is None else F.col("receipt_date").isin(dates)
    if mark is None:
        pages = lakehouse.read_version(spark, bronze.PAGES, root, latest)
        return pages if on_dates is None else pages.where(on_dates)
    changes = lakehouse.read_changes(spark, bronze.PAGES, root, mark, latest, where=on_dates)
    # bronze never deletes a page (a withdrawal is an update setting withdrawn_at)
    return changes.where(F.col("_change_type") != "delete").drop("_change_type", "_commit_version")


def process(spark: SparkSession, settings: Settings, pages: DataFrame) -> dict[str, int]:
    """Bring silver in line with ``pages`` (bronze.pages rows): each page's rows in the three tables and
    silver.withdrawals are replaced by what it gives now, in MERGEs pruned to the pages' partitions;
    then those partitions are reconciled with bronze."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    root = settings.pipeline.lakehouse_root
    pages = pages.persist(StorageLevel.MEMORY_AND_DISK)
    counts: dict[str, int] = {}
    try:
        page_keys = pages.select("ttb_id", "data_type", "receipt_date", "method_type").persist()
        partitions = page_keys.select("receipt_date", "method_type").distinct().collect()
        counts["pages_processed"] = page_keys.count()
        if not partitions:
            page_keys.unpersist()
            return counts
        dates = sorted({r["receipt_date"].isoformat() for r in partitions})
        method_types = sorted({r["method_type"] for r in partitions})
        public = pages.where(F.col("withdrawn_at").isNull())
        clean = cleaned(extracted(public), reference_codes(spark, settings)).persist(StorageLevel.MEMORY_AND_DISK)
        outputs = [(spec, structured(clean, data_type), data_type) for data_type, spec in TABLES.items()]
        rejected = rejects(clean)
        counts["pages_rejected"] = rejected.select("ttb_id", "data_type").distinct().count()
        outputs += [(REJECTS, rejected, None), (WITHDRAWALS, withdrawals(pages), None)]
        for spec, rows, data_type in outputs:
            types = [m for m in method_types if data_type is None or m.endswith(data_type)]
            if not types:
                continue
            part = {"receipt_date": dates, "method_type": types}
            stored = _in_scope(lakehouse.read_table(spark, spec, root), dates, types)
            stale = stored.join(page_keys.select("ttb_id", "data_type"), ["ttb_id", "data_type"], "left_semi") if data_type is None else (
                stored.join(page_keys.where(F.col("data_type") == data_type).select("ttb_id"), "ttb_id", "left_semi")
            )
            m = lakehouse.merge_changes(spark, rows, stale.select(*spec.keys), spec, root, prune=part)
            counts |= {f"{spec.name.split('.')[1]}_{k}": v for k, v in m.items()}
        clean.unpersist()
        page_keys.unpersist()
        counts |= reconcile(spark, settings, dates, method_types, partitions)
    finally:
        pages.unpersist()
    return counts


def reconcile(spark: SparkSession, settings: Settings, dates: list[str], method_types: list[str], partitions: list[Any]) -> dict[str, int]:
    """Per partition processed: bronze pages = silver rows + rejected pages + withdrawn pages (raises when strict)."""
    root = settings.pipeline.lakehouse_root
    wanted = spark.createDataFrame([(r["receipt_date"], r["method_type"]) for r in partitions], "receipt_date date, method_type string")

    def scoped(spec: lakehouse.TableSpec, *cols: str) -> DataFrame:
        df = _in_scope(lakehouse.read_table(spark, spec, root), dates, method_types).select("receipt_date", "method_type", *cols)
        return df.join(wanted, ["receipt_date", "method_type"], "left_semi")

    silver_rows = scoped(COLA_DETAILS).unionByName(scoped(COLA_CERTIFICATES))
    balance = reconciliation(
        scoped(bronze.PAGES), silver_rows, scoped(REJECTS, "ttb_id", "data_type"), scoped(WITHDRAWALS, "ttb_id", "data_type")
    )
    checked, unbalanced = check_reconciliation(balance, strict=settings.processing.reconcile_strict)
    return {"partitions_reconciled": checked - unbalanced, "partitions_unbalanced": unbalanced}


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince) -> dict[str, int]:
    """bronze.pages -> silver.cola_details, silver.cola_certificates, silver.rejects, silver.withdrawals; reconciled.

    For :class:`~ttb_spark.scope.ChangesSince`: the pages added or changed since the bronze version the last
    change-driven run processed (whatever their receipt date), in batches of receipt dates of at most
    ``processing.max_pages_per_batch`` pages (:func:`date_batches`); the watermark moves to the version
    read after the last batch's writes, so a crash in between reprocesses them all, unchanged rows untouched.
    For :class:`~ttb_spark.scope.ReceiptDates`: every page of its partitions (reprocessing).
    """
    root = settings.pipeline.lakehouse_root
    if isinstance(scope, ChangesSince):
        mark, latest = bronze_versions(spark, root)
        counts = {"pages_processed": 0}
        if latest is not None and (mark is None or mark < latest):
            per_date = changed_pages(spark, root, mark, latest).groupBy("receipt_date").count().collect()
            for dates in date_batches({r[0]: r[1] for r in per_date}, settings.processing.max_pages_per_batch):
                done = process(spark, settings, changed_pages(spark, root, mark, latest, dates))
                counts = {k: counts.get(k, 0) + done.get(k, 0) for k in counts.keys() | done.keys()}
        if latest is not None:
            lakehouse.write_watermarks(spark, root, STAGE, {bronze.PAGES.name: latest}, scope.run_id)
        return counts
    dates = [d.isoformat() for d in sorted({p.receipt_date for p in scope.partitions()})]
    method_types = sorted({p.method_type for p in scope.partitions()})
    return process(spark, settings, _in_scope(lakehouse.read_table(spark, bronze.PAGES, root), dates, method_types))
