"""The images stage (``images --start/--end``): label images of COLAs already in the lakehouse, within a request budget.

Discovery fetches a certificate's label images as it finds it (:mod:`ttb_spark.raw.images`); COLAs stored before
that (``TTB_LABEL_IMAGES`` off, or a backfill older than images) have none. This stage reads the labels
silver.cola_certificates names for the scope's receipt dates and methods, leaves out those bronze.label_images
holds, and fetches the others as discovery's revisit does: per COLA, its certificate shown again, then its images
in that session. COLAs go in TTB ID order while the requests they need (the certificate and an image a label) fit
in ``TTB_IMAGE_REQUEST_BUDGET`` (retries aside); the first that does not fit and the ones after it are counted
(``colas_over_budget``, ``images_over_budget``) and left to the next run, which starts there (what was stored is
no longer owed). The driver collects the labels of at most a budget's COLAs, whatever the range.

A label of a COLA approved before 1999 (no images) or not due yet is counted, not requested; one stored but not in
bronze yet (a run killed before its manifest) is recorded ``held`` without a request. The attempts are one image
manifest, as discovery's: bronze ingests them, and a missing or failed image is pending, so daily runs revisit it.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Callable

from ttb_spark.raw import images, storage
from ttb_spark.raw.fetch import Fetcher
from ttb_spark.registry.ttb_id import TTBId

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.scope import ReceiptDates
    from ttb_spark.settings import Settings


def labels_without_image(certificates: DataFrame, stored: DataFrame, today: date) -> DataFrame:
    """The labels ``certificates`` (silver.cola_certificates rows) name with a file name that ``stored``
    (bronze.label_images rows) holds no image of: ttb_id, position, file_name, issued_date, and ``status``:
    ``unavailable`` (approved before 1999), ``deferred`` (not due by ``today``, :data:`images.DELAY`) or ``due``."""
    from pyspark.sql import functions as F

    from ttb_spark.silver.transforms import certificate_labels

    keys = ["ttb_id", "position", "file_name"]
    named = certificate_labels(certificates, "issued_date").where(F.col("file_name").isNotNull())
    issued = F.col("issued_date")
    status = (F.when(F.year(issued) < images.FIRST_YEAR, "unavailable")
              .when(F.date_add(issued, images.DELAY.days) > F.lit(today), "deferred").otherwise("due"))
    return named.join(stored.select(*keys), keys, "left_anti").select(*keys, "issued_date", status.alias("status"))


def within_budget(due: dict[TTBId, list[images.Label]], held: Callable[[str], bool], budget: int) -> dict[TTBId, list[images.Label]]:
    """Of the COLAs' due labels, those to attempt within ``budget`` requests. A COLA costs its certificate and a
    request a label, none for a label ``held`` (its key stored: recorded without a request); COLAs are taken in
    TTB ID order until one does not fit: it and every one after it wait for the next run."""
    chosen: dict[TTBId, list[images.Label]] = {}
    spent = 0
    for ttb_id in sorted(due):
        asked = sum(1 for label in due[ttb_id] if not held(storage.image_key(ttb_id, label.position, label.file_name)))
        cost = 1 + asked if asked else 0
        if spent + cost > budget:
            break
        spent += cost
        chosen[ttb_id] = due[ttb_id]
    return chosen


def owed_labels(spark: SparkSession, settings: Settings, scope: ReceiptDates, today: date) -> tuple[dict[TTBId, list[images.Label]], dict[str, int]]:
    """The due labels of the first ``TTB_IMAGE_REQUEST_BUDGET`` COLAs (TTB ID order) of the scope whose certificate
    in silver names labels bronze.label_images holds no image of (as many as the budget could reach, unless some
    COLAs' images are all stored already: a COLA with an image to request costs at least two requests), by COLA; and the counts over the whole scope: labels owed, unavailable and deferred, and
    the COLAs with due labels (``colas_due``). What the driver collects is bounded by the budget, not the range."""
    from pyspark.sql import functions as F

    from ttb_spark import bronze, lakehouse, silver

    root = settings.pipeline.lakehouse_root
    counts = dict.fromkeys(("images_owed", "images_unavailable", "images_deferred", "colas_due"), 0)
    if not lakehouse.table_exists(spark, silver.COLA_CERTIFICATES, root):
        return {}, counts
    in_scope = F.col("receipt_date").between(scope.start, scope.end)
    certificates = lakehouse.read_table(spark, silver.COLA_CERTIFICATES, root).where(in_scope & F.col("receipt_method").isin(*scope.receipt_methods))
    stored = (lakehouse.read_table(spark, bronze.LABEL_IMAGES, root).where(in_scope) if lakehouse.table_exists(spark, bronze.LABEL_IMAGES, root)
              else spark.createDataFrame([], "ttb_id string, position int, file_name string"))
    owed = labels_without_image(certificates, stored, today)
    row = owed.agg(F.count("*").alias("images_owed"), *[F.count(F.when(F.col("status") == s, 1)).alias(f"images_{s}") for s in ("unavailable", "deferred")],
                   F.countDistinct(F.when(F.col("status") == "due", F.col("ttb_id"))).alias("colas_due")).collect()[0]
    counts = {k: int(row[k]) for k in counts}
    due = owed.where(F.col("status") == "due")
    first = due.select("ttb_id").distinct().orderBy("ttb_id").limit(settings.extraction.image_request_budget)
    labels: dict[TTBId, list[images.Label]] = {}
    for r in due.join(first, "ttb_id", "left_semi").orderBy("ttb_id", "position").collect():
        labels.setdefault(TTBId(r["ttb_id"]), []).append(images.Label(r["position"], r["file_name"], r["issued_date"]))
    return labels, counts


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates) -> dict[str, int]:
    """Fetch the scope's owed label images within the budget into the raw store, then their image manifest."""
    store = storage.raw_store(settings)
    fetcher = Fetcher(settings, store, scope.run_id, settings.extraction.registry_today())
    try:
        due, counts = owed_labels(spark, settings, scope, fetcher.today)
        chosen = within_budget(due, store.exists, settings.extraction.image_request_budget)
        fetcher.revisit(chosen)
        lines = fetcher.write_images(0)
    finally:
        fetcher.close()
    attempted = sum(len(labels) for labels in chosen.values())
    due_total = counts["images_owed"] - counts["images_unavailable"] - counts["images_deferred"]
    over = {"colas_over_budget": counts.pop("colas_due") - len(chosen), "images_over_budget": due_total - attempted}
    tried = {k: v + counts.pop(k, 0) for k, v in images.counts(lines).items()}
    return {"colas": len(chosen), **counts, **over, **tried, "image_requests": fetcher.image_requests, "requests": fetcher.requests_sent}
