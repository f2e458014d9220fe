"""The silver stage: read bronze pages and label images (changed since the last run, or a scope's partitions),
transform (:mod:`.transforms`; images decoded on the executors, :mod:`.executors`), MERGE into the silver
tables, reconcile, move the watermarks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ttb_spark import bronze, lakehouse
from ttb_spark.bronze.executors import store_args
from ttb_spark.scope import ChangesSince
from ttb_spark.silver.executors import decoded_images
from ttb_spark.silver.tables import CERTIFICATE, COLA_CERTIFICATES, COLA_DETAILS, IMAGE_DECODED, LABEL_IMAGES, REJECTS, TABLES, WITHDRAWALS
from ttb_spark.silver.transforms import (
    ReconciliationError, check_reconciliation, cleaned, date_batches, extracted, image_reconciliation, label_images,
    reconciliation, rejects, structured, withdrawals,
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


def bronze_versions(spark: SparkSession, root: str, marks: dict[str, int], spec: lakehouse.TableSpec = bronze.PAGES) -> tuple[int | None, int | None]:
    """(the version of bronze table ``spec`` silver last processed through (``marks``: its watermarks), None: never;
    its current version, None: no such table)."""
    lakehouse.ensure_properties(spark, spec, root)  # change feed from here on
    return marks.get(spec.name), lakehouse.current_version(spark, spec, root)


def changed_pages(spark: SparkSession, root: str, mark: int | None, latest: int, dates: list[date] | None = None,
                  spec: lakehouse.TableSpec = bronze.PAGES) -> DataFrame:
    """Rows of bronze table ``spec`` added or changed after version ``mark`` through ``latest`` (every row as of
    ``latest`` when ``mark`` is None); ``dates``: only those receipt dates' (partition pruning)."""
    from pyspark.sql import functions as F

    on_dates = None if dates is None else F.col("receipt_date").isin(dates)
    if mark is None:
        rows = lakehouse.read_version(spark, spec, root, latest)
        return rows if on_dates is None else rows.where(on_dates)
    changes = lakehouse.read_changes(spark, spec, root, mark, latest, where=on_dates)
    # bronze never deletes a row (a withdrawal is an update setting withdrawn_at; an image is final)
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


def process_images(spark: SparkSession, settings: Settings, images: DataFrame) -> dict[str, int]:
    """Decode ``images`` (bronze.label_images rows) on the executors into silver.label_images, one MERGE pruned to
    their receipt dates (a row that decodes the same is left alone); then, per date, bronze rows = silver rows."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    root = settings.pipeline.lakehouse_root
    rows = label_images(decoded_images(images, store_args(settings))).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        per_status = {r[0]: r[1] for r in rows.groupBy("decode_status").count().collect()}
        counts = {"images_decoded": per_status.get(IMAGE_DECODED, 0), "images_rejected": sum(per_status.values()) - per_status.get(IMAGE_DECODED, 0)}
        if not per_status:
            return counts
        dates = [r[0] for r in rows.select("receipt_date").distinct().collect()]
        m = lakehouse.merge_upsert(spark, rows, LABEL_IMAGES, root, prune={"receipt_date": sorted(d.isoformat() for d in dates)})
    finally:
        rows.unpersist()
    on_dates = F.col("receipt_date").isin(dates)
    balance = image_reconciliation(lakehouse.read_table(spark, bronze.LABEL_IMAGES, root).where(on_dates),
                                   lakehouse.read_table(spark, LABEL_IMAGES, root).where(on_dates)).collect()
    unbalanced = [f"{r['receipt_date']}: bronze {r['bronze_images']} images != silver {r['silver_images']} rows" for r in balance if not r["balanced"]]
    if unbalanced and settings.processing.reconcile_strict:
        raise ReconciliationError("silver.label_images does not reconcile with bronze: " + "; ".join(unbalanced))
    return counts | {"label_images_inserted": m["inserted"], "label_images_updated": m["updated"], "image_dates_unbalanced": len(unbalanced)}


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince) -> dict[str, int]:
    """bronze.pages -> silver.cola_details, silver.cola_certificates, silver.rejects, silver.withdrawals; reconciled.
    bronze.label_images -> silver.label_images, the same way (:func:`process_images`).

    For :class:`~ttb_spark.scope.ChangesSince`: the pages added or changed since the bronze version the last
    change-driven run processed (whatever their receipt date), in batches of receipt dates of at most
    ``processing.max_pages_per_batch`` pages (:func:`date_batches`); the watermark moves to the version
    read after the last batch's writes, so a crash in between reprocesses them all, unchanged rows untouched.
    For :class:`~ttb_spark.scope.ReceiptDates`: every page of its partitions (reprocessing), and the label images
    of its certificate partitions.
    """
    from pyspark.sql import functions as F

    root = settings.pipeline.lakehouse_root
    if isinstance(scope, ChangesSince):
        marks = lakehouse.read_watermarks(spark, root, STAGE)
        mark, latest = bronze_versions(spark, root, marks)
        counts = {"pages_processed": 0}
        if latest is not None and (mark is None or mark < latest):
            per_date = changed_pages(spark, root, mark, latest).groupBy("receipt_date").count().collect()
            for dates in date_batches({r[0]: r[1] for r in per_date}, settings.processing.max_pages_per_batch):
                done = process(spark, settings, changed_pages(spark, root, mark, latest, dates))
                counts = {k: counts.get(k, 0) + done.get(k, 0) for k in counts.keys() | done.keys()}
        shown, shot = bronze_versions(spark, root, marks, bronze.LABEL_IMAGES)
        if shot is not None and (shown is None or shown < shot):
            counts |= process_images(spark, settings, changed_pages(spark, root, shown, shot, spec=bronze.LABEL_IMAGES))
        versions = {spec.name: v for spec, v in ((bronze.PAGES, latest), (bronze.LABEL_IMAGES, shot)) if v is not None}
        if versions:
            lakehouse.write_watermarks(spark, root, STAGE, versions, scope.run_id)
        return counts
    dates = [d.isoformat() for d in sorted({p.receipt_date for p in scope.partitions()})]
    method_types = sorted({p.method_type for p in scope.partitions()})
    counts = process(spark, settings, _in_scope(lakehouse.read_table(spark, bronze.PAGES, root), dates, method_types))
    shown = [p for p in scope.partitions() if p.data_type == CERTIFICATE]  # a label image belongs to its certificate
    if shown and lakehouse.table_exists(spark, bronze.LABEL_IMAGES, root):
        scoped = lakehouse.read_table(spark, bronze.LABEL_IMAGES, root).where(
            F.col("receipt_date").isin(sorted({p.receipt_date.isoformat() for p in shown}))
            & F.substring("ttb_id", 6, 3).isin(sorted({p.receipt_method for p in shown}))  # the ID's receipt method
        )
        counts |= process_images(spark, settings, scoped)
    return counts
