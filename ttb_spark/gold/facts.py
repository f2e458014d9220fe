"""Gold facts: ``fact_products`` (one row per COLA), ``fact_certificates`` (one row per
certificate), ``fact_status_changes`` (status history) and ``fact_label_images`` (one row per label image), all
MERGEd on TTB ID with the batch's receipt months and dates as literal predicates (partitioned by receipt month,
:mod:`.layout`).

Foreign keys are computed from natural keys (:mod:`ttb_spark.gold.keys`), so a fact never waits
for a dimension lookup; the quality checks verify that every one resolves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, DateType, DoubleType, IntegerType, LongType, StringType, StructType, TimestampType

from ttb_spark.gold.consolidated import LABEL
from ttb_spark.gold.dimensions import address_location_id, origin_location_id
from ttb_spark.gold.keys import date_key, surrogate_key
from ttb_spark.gold.layout import COLA_FACT_KEY, DERIVED, RECEIPT_MONTH, RECEIPT_MONTH_COLUMN
from ttb_spark.lakehouse import CHANGE_FEED, TableSpec, column
from ttb_spark.silver.transforms import certificate_labels

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ROW_HASH_COMMENT = "SHA-256 of the non-key columns; MERGE updates only changed rows"
FLAGS = ("is_first_company_cola", "is_first_brand_cola", "is_brand_refiling")

FACT_PRODUCTS = TableSpec(
    name="gold.fact_products",
    comment="One row per COLA: keys to the dimensions, names, dates, days to approval, status and first-COLA / re-filing flags.",
    keys=("ttb_id",),
    partition_by=(RECEIPT_MONTH,),
    derived=DERIVED,
    schema=StructType([
        *COLA_FACT_KEY,
        column("receipt_date_key", IntegerType(), "-> dim_dates"),
        column("application_date_key", IntegerType(), "-> dim_dates"),
        column("approval_date_key", IntegerType(), "-> dim_dates"),
        column("company_key", LongType(), "-> dim_companies.company_key (durable per permit number)"),
        column("product_type_key", LongType(), "-> dim_product_types"),
        column("origin_location_key", LongType(), "-> dim_locations (origin of the product)"),
        column("applicant_location_key", LongType(), "-> dim_locations (applicant's address)"),
        column("permit_number", StringType(), "principal permit number"),
        column("class_type_code", StringType(), "class/type code"),
        column("origin_code", StringType(), "origin code"),
        column("brand_name", StringType(), "brand name"),
        column("fanciful_name", StringType(), "fanciful name"),
        column("product_type", StringType(), "WINE / DISTILLED SPIRITS / MALT BEVERAGE"),
        column("source_of_product", StringType(), "DOMESTIC / IMPORTED"),
        column("receipt_method", StringType(), "000 hand, 001 e-filed, 002 mail, 003 courier"),
        column("status", StringType(), "current status (updated when a later scrape shows another)"),
        column("application_date", DateType(), "date of application"),
        column("approval_date", DateType(), "approval date"),
        column("days_to_approval", IntegerType(), "approval date - receipt date, in days"),
        column("label_image_count", IntegerType(), "label images on the certificate (null without one)"),
        column("grape_varietals", ArrayType(StringType()), "grape varietals (wine)"),
        column("wine_appellation", StringType(), "wine appellation"),
        column("wine_vintage", StringType(), "wine vintage"),
        column("is_first_company_cola", BooleanType(), "the permit's first COLA (by receipt date, then TTB ID)"),
        column("is_first_brand_cola", BooleanType(), "the permit's first COLA with this brand name"),
        column("is_brand_refiling", BooleanType(), "the permit filed this brand + fanciful name before"),
        column("record_completeness", StringType(), "complete | detail_only | certificate_only"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

FACT_CERTIFICATES = TableSpec(
    name="gold.fact_certificates",
    comment="One row per certificate (TTB F 5100.31): type of application, qualifications, expiration, label images; status kept current.",
    keys=("ttb_id",),
    partition_by=(RECEIPT_MONTH,),
    derived=DERIVED,
    schema=StructType([
        *COLA_FACT_KEY,
        column("company_key", LongType(), "-> dim_companies.company_key"),
        column("product_type_key", LongType(), "-> dim_product_types"),
        column("origin_location_key", LongType(), "-> dim_locations"),
        column("application_date_key", IntegerType(), "-> dim_dates"),
        column("issued_date_key", IntegerType(), "-> dim_dates"),
        column("expiration_date_key", IntegerType(), "-> dim_dates"),
        column("application_date", DateType(), "item 16: date of application"),
        column("issued_date", DateType(), "item 19: date issued"),
        column("expiration_date", DateType(), "expiration date, if any"),
        column("status", StringType(), "current status"),
        column("application_types", ArrayType(StringType()), "item 14: texts of the ticked boxes"),
        column("is_label_approval", BooleanType(), "14a: certificate of label approval"),
        column("is_exemption", BooleanType(), "14b: certificate of exemption from label approval"),
        column("exemption_state", StringType(), "14b: 'for sale in <state> only'"),
        column("is_distinctive_bottle", BooleanType(), "14c: distinctive liquor bottle approval"),
        column("distinctive_bottle_capacity", StringType(), "14c: total bottle capacity before closure"),
        column("is_resubmission", BooleanType(), "14d: resubmission after rejection"),
        column("resubmission_ttb_id", StringType(), "14d: TTB ID of the rejected application"),
        column("qualifications_count", IntegerType(), "number of TTB qualifications"),
        column("label_image_count", IntegerType(), "number of label images"),
        column("label_image_types", ArrayType(StringType()), "image type of each label (Brand (front), Back, Neck ...)"),
        column("labels", ArrayType(LABEL), "label images: type, actual width/height in inches, URL, file name"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

FACT_LABEL_IMAGES = TableSpec(
    name="gold.fact_label_images",
    comment=(
        "One row per label image of a certificate in gold that silver decoded: the certificate's label type and actual "
        "size beside the image's format, pixels and perceptual hash. Leaves with its certificate (withdrawn, removed)."
    ),
    keys=("ttb_id", "position", "file_name"),
    partition_by=(RECEIPT_MONTH,),
    derived=DERIVED,
    schema=StructType([
        *COLA_FACT_KEY,
        column("position", IntegerType(), "the label's place among the certificate's labels, 1 first (page order)", False),
        column("file_name", StringType(), "the image's file name as the certificate gives it", False),
        column("label_type", StringType(), "the certificate's image type (Brand (front), Back, Neck ...)"),
        column("width_inches", DoubleType(), "the certificate's actual width of the label, inches"),
        column("height_inches", DoubleType(), "the certificate's actual height of the label, inches"),
        column("format", StringType(), "image format: JPEG, PNG or GIF"),
        column("width_px", IntegerType(), "image width in pixels"),
        column("height_px", IntegerType(), "image height in pixels"),
        column("dhash", StringType(), "64-bit difference hash (silver.label_images.dhash): the same artwork is at a small Hamming distance"),
        column("bytes", LongType(), "size of the stored image"),
        column("sha256", StringType(), "SHA-256 of the stored image (the same bytes filed again share it)"),
        column("image_key", StringType(), "raw store key of the image"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

FACT_STATUS_CHANGES = TableSpec(
    name="gold.fact_status_changes",
    comment=(
        "Status history, one row per observed change: the first sighting, each later scrape showing another status "
        "(a flip and a flip back are two rows), and the COLA's removal (withdrawn from public view, or its pages now rejected). "
        "The registry's 'Completed Date' (the approval, moved by each status change) is shown only in search results, "
        "not on the pages: a status row carries the latest one the search had listed for the COLA when the page was fetched."
    ),
    keys=("ttb_id", "observed_at", "change_type"),
    partition_by=(RECEIPT_MONTH,),
    properties=CHANGE_FEED,  # watchlists read what each run recorded (ttb_spark.watch)
    derived=DERIVED,
    schema=StructType([
        column("ttb_id", StringType(), "14-digit TTB ID", False),
        column("receipt_date", DateType(), "date TTB received the application"),
        RECEIPT_MONTH_COLUMN,
        column("observed_at", TimestampType(), "when the change was observed: fetch time of the page showing the status; for a withdrawal, when the registry was first seen answering its error page; for a rejection, the fetch time of the rejected page", False),
        column("observed_date_key", IntegerType(), "-> dim_dates (date of observed_at, UTC)"),
        column("previous_status", StringType(), "status before (null when first seen)"),
        column("status", StringType(), "status seen (null for a removal)"),
        column("change_type", StringType(), "initial | change | withdrawn (no longer public) | rejected (its pages no longer pass silver) | removed (no silver row, cause unknown) | reinstated (public and valid again after one of those)", False),
        column("status_source", StringType(), "page the status came from: detail | certificate"),
        column("approval_date", DateType(), "approval date the page showed (the detail's, else the certificate's date issued); null for a removal"),
        column("reason", StringType(), "for a removal: the withdrawn or rejected pages and why"),
        column(
            "completed_date", DateType(),
            "the registry's Completed Date for the status seen: the latest one bronze.search_listings holds for the COLA "
            "from searches answered before the page was fetched; null for a removal or a page fetched before any search listed the COLA",
        ),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)
LABEL_DAYS = TableSpec(
    name="gold.label_days",
    comment=(
        "One row per permit, brand name, fanciful name and receipt date with COLAs: the day's count and first TTB ID. "
        "The state behind fact_products' first-brand and re-filing flags, so a run reads the filing days of the "
        "batch's brands, not their COLAs. Written last in a gold run."
    ),
    keys=("permit_number", "brand_name", "fanciful_name", "receipt_date"),
    schema=StructType([
        column("permit_number", StringType(), "principal permit number", False),
        column("brand_name", StringType(), "brand name", False),
        column("fanciful_name", StringType(), "fanciful name ('' when none: no fanciful name is one label)", False),
        column("receipt_date", DateType(), "receipt date", False),
        column("cola_count", IntegerType(), "COLAs of the label received that day"),
        column("first_ttb_id", StringType(), "lowest TTB ID of the day"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)
INITIAL, CHANGE, WITHDRAWN, REJECTED, REMOVED, REINSTATED = "initial", "change", "withdrawn", "rejected", "removed", "reinstated"


def status_changes(previous: DataFrame, current: DataFrame) -> DataFrame:
    """History rows for ``current`` consolidated rows whose status differs from ``previous`` (stored) ones.

    ``previous`` holds the stored (ttb_id, status) of the rebuilt COLAs before this build.
    """
    prev = previous.select("ttb_id", F.col("status").alias("previous_status"))
    cur = current.where(F.col("status").isNotNull()).join(prev, "ttb_id", "left")
    observed = F.when(F.col("status_source") == "certificate", F.col("certificate_fetched_at")).otherwise(F.col("detail_fetched_at"))
    changed = cur.where(~F.col("previous_status").eqNullSafe(F.col("status")))
    return changed.select(
        "ttb_id",
        "receipt_date",
        observed.alias("observed_at"),
        date_key(F.to_date(observed)).alias("observed_date_key"),
        "previous_status",
        "status",
        F.when(F.col("previous_status").isNull(), INITIAL).otherwise(CHANGE).alias("change_type"),
        "status_source",
        "approval_date",
        F.lit(None).cast("string").alias("reason"),
        F.lit(None).cast("date").alias("completed_date"),
    )


def removals(removed: DataFrame, withdrawn: DataFrame, rejected: DataFrame) -> DataFrame:
    """Event rows for consolidated rows that lost their silver rows (``removed``: ttb_id, receipt_date, status).

    ``withdrawn`` / ``rejected`` are the COLAs' silver.withdrawals / silver.rejects rows. A withdrawal
    is dated when the registry was first seen answering its error page, a rejection by the fetch of
    the rejected page; with neither (a row dropped by reprocessing), the event is ``removed``, dated
    by the latest page fetch gold had stored, the last time the COLA was seen public.
    """
    w = withdrawn.groupBy("ttb_id").agg(
        F.min("withdrawn_at").alias("_withdrawn_at"),
        F.concat_ws(", ", F.sort_array(F.collect_set("data_type"))).alias("_w_pages"),
    )
    r = rejected.groupBy("ttb_id").agg(
        F.max("fetched_at").alias("_rejected_at"),
        F.concat_ws("; ", F.sort_array(F.collect_set(F.concat_ws(" ", "data_type", "rule", "reason")))).alias("_r_why"),
    )
    last_seen = F.greatest("detail_fetched_at", "certificate_fetched_at")
    out = removed.join(w, "ttb_id", "left").join(r, "ttb_id", "left")
    kind = F.when(F.col("_withdrawn_at").isNotNull(), WITHDRAWN).when(F.col("_rejected_at").isNotNull(), REJECTED).otherwise(REMOVED)
    observed = F.coalesce("_withdrawn_at", "_rejected_at", "_last_seen")
    reason = (
        F.when(kind == WITHDRAWN, F.concat(F.lit("withdrawn from public view: "), F.col("_w_pages")))
        .when(kind == REJECTED, F.concat(F.lit("rejected in silver: "), F.col("_r_why")))
        .otherwise(F.lit("no silver row left"))
    )
    return out.withColumn("_last_seen", last_seen).select(
        "ttb_id",
        "receipt_date",
        observed.alias("observed_at"),
        date_key(F.to_date(observed)).alias("observed_date_key"),
        F.col("status").alias("previous_status"),
        F.lit(None).cast("string").alias("status"),
        kind.alias("change_type"),
        F.lit(None).cast("string").alias("status_source"),
        F.lit(None).cast("date").alias("approval_date"),
        reason.alias("reason"),
        F.lit(None).cast("date").alias("completed_date"),
    )


def reinstatements(events: DataFrame, history: DataFrame) -> DataFrame:
    """``events`` with each ``initial`` row of a COLA whose last stored event before it (``history``:
    ttb_id, change_type, observed_at of its fact_status_changes rows) is a removal relabelled
    ``reinstated``: seen before, removed, and public and valid again. Only earlier events count, so
    the rerun of a build killed after writing the row relabels it the same way."""
    initial = events.where(F.col("change_type") == INITIAL).select("ttb_id", "observed_at")
    before = initial.join(history.select("ttb_id", F.col("observed_at").alias("_at"), F.col("change_type").alias("_kind")), "ttb_id")
    before = before.where(F.col("_at") < F.col("observed_at"))
    last = before.withColumn("_n", F.row_number().over(Window.partitionBy("ttb_id", "observed_at").orderBy(F.col("_at").desc())))
    removed = last.where((F.col("_n") == 1) & F.col("_kind").isin(WITHDRAWN, REJECTED, REMOVED))
    marked = events.join(removed.select("ttb_id", "observed_at", F.col("_kind").alias("_removal")), ["ttb_id", "observed_at"], "left")
    again = (F.col("change_type") == INITIAL) & F.col("_removal").isNotNull()
    return (
        marked.withColumn("reason", F.when(again, F.concat(F.lit("public again after: "), F.col("_removal"))).otherwise(F.col("reason")))
        .withColumn("change_type", F.when(again, REINSTATED).otherwise(F.col("change_type")))
        .select(*events.columns)
    )


def with_completed_dates(events: DataFrame, listings: DataFrame) -> DataFrame:
    """``events`` (fact_status_changes rows) with ``completed_date`` set on the status rows: the latest
    completed date of the COLA's ``listings`` (ttb_id, completed_date, searched_at: bronze.search_listings)
    from a search answered at or before the row's ``observed_at`` (null for a status other than APPROVED
    when that listing is not past the row's ``approval_date``). Removal rows keep null."""
    keys = ["ttb_id", "observed_at", "change_type"]
    listed = listings.select("ttb_id", F.col("completed_date").alias("_completed"), F.col("searched_at").alias("_searched_at"))
    seen = events.where(F.col("status").isNotNull()).select(*keys).join(listed, "ttb_id")
    latest = seen.where(F.col("_searched_at") <= F.col("observed_at")).groupBy(*keys).agg(F.max("_completed").alias("_completed"))
    # a status other than APPROVED completed after the approval: a listing still on the approval day is an
    # older one (the page was fetched before the search listed its new date, e.g. by the withdrawal sweep)
    stale = (F.col("status") != "APPROVED") & (F.col("_completed") <= F.col("approval_date"))
    return (
        events.join(latest, keys, "left")
        .withColumn("completed_date", F.coalesce(F.when(~stale, F.col("_completed")), "completed_date"))
        .select(*events.columns)
    )


def label_days(consolidated: DataFrame) -> DataFrame:
    """gold.label_days rows of consolidated rows (those with a permit number and a brand name)."""
    rows = consolidated.where(F.col("permit_number").isNotNull() & F.col("brand_name").isNotNull())
    return rows.groupBy(
        "permit_number", "brand_name", F.coalesce(F.col("fanciful_name"), F.lit("")).alias("fanciful_name"), "receipt_date"
    ).agg(F.count("*").cast("int").alias("cola_count"), F.min("ttb_id").alias("first_ttb_id"))


def _firsts(days: DataFrame, keys: list[str], flag: str) -> DataFrame:
    """(ttb_id, receipt_date, ``flag``) of the first COLA of each ``keys`` group of day rows (by receipt date, then TTB ID)."""
    first = days.groupBy(*keys).agg(F.min(F.struct("receipt_date", "first_ttb_id")).alias("_first"))
    return first.select(F.col("_first.first_ttb_id").alias("ttb_id"), F.col("_first.receipt_date").alias("receipt_date"), F.lit(True).alias(flag))


def first_colas(company_days: DataFrame, label_days: DataFrame) -> DataFrame:
    """(ttb_id, receipt_date, _company, _brand, _label): the COLAs that are the first of their permit, of their
    permit's brand, of their permit's brand + fanciful name, given every day row of those groups
    (gold.company_days and gold.label_days rows)."""
    out = _firsts(company_days, ["permit_number"], "_company")
    for keys, flag in ((["permit_number", "brand_name"], "_brand"), (["permit_number", "brand_name", "fanciful_name"], "_label")):
        out = out.join(_firsts(label_days, keys, flag), ["ttb_id", "receipt_date"], "full")
    return out


def with_flags(rows: DataFrame, firsts: DataFrame) -> DataFrame:
    """First-COLA and re-filing flags of consolidated ``rows`` given :func:`first_colas` of every day of their
    permits and brands: a COLA is its permit's / brand's first when it is the first named there, a re-filing
    of its brand + fanciful name when it is not that label's first."""
    marked = rows.join(firsts.drop("receipt_date"), "ttb_id", "left")
    has_permit, has_brand = F.col("permit_number").isNotNull(), F.col("brand_name").isNotNull()

    def named(flag: str) -> Column:
        return F.coalesce(F.col(flag), F.lit(False))

    return (
        marked.withColumn("is_first_company_cola", F.when(has_permit, named("_company")))
        .withColumn("is_first_brand_cola", F.when(has_permit & has_brand, named("_brand")))
        .withColumn("is_brand_refiling", F.when(has_permit & has_brand, ~named("_label")))
        .drop("_company", "_brand", "_label")
    )


def _keys() -> list[Column]:
    return [
        surrogate_key("company", F.col("permit_number")).alias("company_key"),
        surrogate_key("product_type", F.col("class_type_code")).alias("product_type_key"),
        surrogate_key("location", origin_location_id(F.col("origin_code"))).alias("origin_location_key"),
    ]


def fact_products(flagged: DataFrame) -> DataFrame:
    """gold.fact_products rows from consolidated rows carrying :func:`with_flags` columns."""
    applicant = address_location_id(F.col("applicant_state"), F.col("applicant_city"), F.col("applicant_zip"))
    return flagged.select(
        "ttb_id",
        "receipt_date",
        date_key(F.col("receipt_date")).alias("receipt_date_key"),
        date_key(F.col("application_date")).alias("application_date_key"),
        date_key(F.col("approval_date")).alias("approval_date_key"),
        *_keys(),
        surrogate_key("location", applicant).alias("applicant_location_key"),
        "permit_number",
        "class_type_code",
        "origin_code",
        "brand_name",
        "fanciful_name",
        "product_type",
        "source_of_product",
        "receipt_method",
        "status",
        "application_date",
        "approval_date",
        F.datediff("approval_date", "receipt_date").alias("days_to_approval"),
        F.col("label_count").alias("label_image_count"),
        "grape_varietals",
        "wine_appellation",
        "wine_vintage",
        *FLAGS,
        "record_completeness",
    )


def changed_or_in_batch(facts: DataFrame, batch_ids: DataFrame, stored: DataFrame) -> DataFrame:
    """Fact rows to MERGE: the batch's, plus other COLAs of its permits whose flags changed
    (an earlier day processed later makes an already stored COLA no longer the first)."""
    old = stored.select("ttb_id", *[F.col(f).alias(f"_old_{f}") for f in FLAGS])
    marked = facts.join(batch_ids.select("ttb_id", F.lit(True).alias("_in_batch")), "ttb_id", "left").join(old, "ttb_id", "left")
    differs = F.lit(False)
    for f in FLAGS:
        differs = differs | ~F.col(f).eqNullSafe(F.col(f"_old_{f}"))
    keep = F.col("_in_batch").isNotNull() | differs
    return marked.where(keep).drop("_in_batch", *[f"_old_{f}" for f in FLAGS])


def _ticked(kind: str) -> Column:
    return F.exists(F.coalesce(F.col("application_types"), F.array().cast("array<string>")), lambda t: F.upper(t).contains(kind))


def fact_certificates(consolidated: DataFrame) -> DataFrame:
    """gold.fact_certificates rows from consolidated rows that have a certificate."""
    certs = consolidated.where(F.col("has_certificate"))
    exemption = _ticked("EXEMPTION") | F.col("for_sale_in").isNotNull()
    return certs.select(
        "ttb_id",
        "receipt_date",
        *_keys(),
        date_key(F.col("application_date")).alias("application_date_key"),
        date_key(F.col("issued_date")).alias("issued_date_key"),
        date_key(F.col("expiration_date")).alias("expiration_date_key"),
        "application_date",
        "issued_date",
        "expiration_date",
        "status",
        "application_types",
        (_ticked("LABEL APPROVAL") & ~_ticked("EXEMPTION")).alias("is_label_approval"),
        exemption.alias("is_exemption"),
        F.col("for_sale_in").alias("exemption_state"),
        (_ticked("DISTINCTIVE") | F.col("total_bottle_capacity").isNotNull()).alias("is_distinctive_bottle"),
        F.col("total_bottle_capacity").alias("distinctive_bottle_capacity"),
        (_ticked("RESUBMISSION") | F.col("resubmission_ttb_id").isNotNull()).alias("is_resubmission"),
        "resubmission_ttb_id",
        F.when(F.col("qualifications").isNull(), 0).otherwise(F.size("qualifications")).alias("qualifications_count"),
        F.col("label_count").alias("label_image_count"),
        F.transform(F.coalesce(F.col("labels"), F.array().cast(ArrayType(LABEL))), lambda lab: lab["image_type"]).alias("label_image_types"),
        "labels",
    )


def fact_label_images(consolidated: DataFrame, images: DataFrame) -> DataFrame:
    """gold.fact_label_images rows: each decoded silver.label_images row whose certificate, in ``consolidated``, names
    it at its position with its file name, with the certificate's label type and actual size."""
    named = certificate_labels(consolidated.where(F.col("has_certificate"))).select(
        "ttb_id", "receipt_date", "position", "file_name", F.col("label.image_type").alias("label_type"), "label.width_inches",
        "label.height_inches",
    )  # fmt: skip
    decoded = images.where(F.col("decode_status") == "decoded").select(
        "ttb_id", "position", "file_name", "format", "width_px", "height_px", "dhash", "bytes", "sha256", "image_key"
    )
    return named.join(decoded, ["ttb_id", "position", "file_name"])
