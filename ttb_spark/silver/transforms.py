"""Silver's pure transforms, DataFrame -> DataFrame: the original pipeline's three processing stages
(:func:`extracted`, :func:`cleaned`, :func:`structured`), the quarantine (:func:`rejects`), withdrawals,
the decoded label images, and the reconciliations of bronze rows with silver rows. No reads, no writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql.types import ArrayType, DateType, StringType, StructType

from ttb_spark import lakehouse
from ttb_spark.partitions import ReconciliationError
from ttb_spark.silver.executors import parse_batches
from ttb_spark.silver.tables import (
    CERTIFICATE, FIELD_TYPES, KEEP_LINES, LABEL_IMAGES, NULL_VALUES, PAGE_COLUMNS, PARSE_RESULT, PARSED, RECORD_FIELDS, RECORD_JSON,
    REJECTS, TABLES, UPPER_FIELDS, US_STATES, VIOLATION, WITHDRAWALS, ZIP_PATTERN,
)  # fmt: skip

if TYPE_CHECKING:
    from datetime import date

    from pyspark.sql import Column, DataFrame


# ---------------------------------------------------------------- extracted


def parse_results(pages_df: DataFrame) -> DataFrame:
    """``pages_df`` without ``html``, plus parse_status, parse_reason, parse_detail and record (JSON), parsed on executors.

    ``mapInArrow``: pages cross to Python as Arrow batches and every other column goes back
    untouched (no per-row conversion, so no timezone round trip for timestamps). In
    bench/extract_bench.py it is level (within noise) with the UDF, mapInPandas and RDD variants,
    makes no pandas object (pyspark still refuses to start it without pandas installed), and being
    DataFrame API only it runs over Spark Connect too.
    """
    schema = StructType([f for f in pages_df.schema.fields if f.name != "html"] + PARSE_RESULT.fields)
    return pages_df.mapInArrow(parse_batches, schema)


def extracted(pages_df: DataFrame) -> DataFrame:
    """bronze.pages rows -> one row per page: page columns, parse status/reason/detail and the record's fields."""
    from pyspark.sql import functions as F

    pages = pages_df.select(*PAGE_COLUMNS, F.col("sha256").alias("page_sha256"), "html")
    status = ["parse_status", "parse_reason", "parse_detail"]
    with_record = parse_results(pages).select(*PAGE_COLUMNS, "page_sha256", *status, F.from_json("record", RECORD_JSON).alias("rec"))
    return with_record.select(
        *PAGE_COLUMNS,
        "page_sha256",
        *status,
        F.col("rec.ttb_id").alias("parsed_ttb_id"),
        F.col("rec.receipt_date").alias("id_receipt_date"),
        *[F.col(f"rec.{f}").alias(f) for f in RECORD_FIELDS],
    )


# ---------------------------------------------------------------- cleaned


def _text(c: Column, name: str) -> Column:
    """Trimmed (whitespace collapsed unless multi-line text), null for empty/NOT PROVIDED/N/A, case rules."""
    from pyspark.sql import functions as F

    t = F.trim(c) if name in KEEP_LINES else F.trim(F.regexp_replace(c, r"\s+", " "))
    if name in UPPER_FIELDS:
        t = F.upper(t)
    elif name == "email":
        t = F.lower(t)
    return F.when(F.upper(t).isin(*NULL_VALUES), F.lit(None)).otherwise(t)


def _try_date(c: Column) -> Column:
    """A yyyy-MM-dd date, NULL when unparseable: ``try_to_date`` as Spark 4.0 can say it (that
    function arrived in Spark 4.1; ``to_date`` with a format is this cast of ``to_timestamp``)."""
    from pyspark.sql import functions as F

    return F.try_to_timestamp(c, F.lit("yyyy-MM-dd")).cast("date")


def _normalised(name: str) -> Column:
    from pyspark.sql import functions as F

    c = F.col(name)
    kind = FIELD_TYPES.get(name, StringType())
    if isinstance(kind, DateType):
        return _try_date(c).alias(name)
    if name == "labels":
        return F.transform(
            c,
            lambda x: F.struct(
                _text(x["image_type"], "image_type").alias("image_type"),
                x["width_inches"].alias("width_inches"),
                x["height_inches"].alias("height_inches"),
                _text(x["image_url"], "image_url").alias("image_url"),
                _text(x["filename"], "filename").alias("filename"),
            ),
        ).alias(name)
    if isinstance(kind, ArrayType):
        items = F.filter(F.transform(c, lambda x: _text(x, name)), lambda x: x.isNotNull())
        return F.when(F.size(items) > 0, items).alias(name)
    return _text(c, name).alias(name)


def _rule(name: str, failed: Column, reason: Column, blocking: bool) -> Column:
    """A violation struct when ``failed`` is true, else null (dropped later)."""
    from pyspark.sql import functions as F

    return F.when(failed, F.struct(F.lit(name).alias("rule"), reason.alias("reason"), F.lit(blocking).alias("blocking")))


def _rules(has_reference: bool) -> list[Column]:
    from pyspark.sql import functions as F

    col = F.col
    id_date = _try_date(col("id_receipt_date"))
    approved = F.coalesce(col("approval_date"), col("issued_date"))
    is_cert = col("data_type") == CERTIFICATE
    rules = [
        _rule(
            "ttb_id_matches_page",
            col("parsed_ttb_id").isNull() | (col("parsed_ttb_id") != col("ttb_id")),
            F.concat(F.lit("page shows TTB ID "), F.coalesce(col("parsed_ttb_id"), F.lit("(none)")), F.lit(", expected "), col("ttb_id")),
            True,
        ),
        _rule(
            "receipt_date_matches_id",
            ~F.coalesce(id_date == col("receipt_date"), F.lit(False))
            | (is_cert & F.coalesce(col("application_date") != col("receipt_date"), F.lit(False))),
            F.concat_ws(
                ", ",
                F.concat(F.lit("receipt date "), col("receipt_date").cast("string")),
                F.concat(F.lit("ID gives "), F.coalesce(id_date.cast("string"), F.lit("no date"))),
                F.when(is_cert, F.concat(F.lit("item 16 gives "), F.coalesce(col("application_date").cast("string"), F.lit("nothing")))),
            ),
            True,
        ),
        _rule(
            "approval_not_before_receipt",
            F.coalesce(approved < col("receipt_date"), F.lit(False)),
            F.concat(F.lit("approved "), approved.cast("string"), F.lit(" before receipt "), col("receipt_date").cast("string")),
            True,
        ),
        _rule(
            "applicant_state_valid",
            col("applicant_state").isNotNull() & ~col("applicant_state").isin(*US_STATES),
            F.concat(F.lit("unknown state "), col("applicant_state")),
            False,
        ),
        _rule(
            "applicant_zip_valid",
            col("applicant_zip").isNotNull() & ~col("applicant_zip").rlike(ZIP_PATTERN),
            F.concat(F.lit("malformed ZIP "), col("applicant_zip")),
            False,
        ),
    ]
    if has_reference:
        for field, flag in (("class_type_code", "_class_type_known"), ("origin_code", "_origin_known")):
            rules.append(
                _rule(
                    f"{field}_in_reference",
                    col(field).isNotNull() & col(flag).isNull(),
                    F.concat(F.lit(f"{field} "), col(field), F.lit(" not in the reference list")),
                    False,
                )
            )
    return rules


def cleaned(extracted_df: DataFrame, reference_codes_df: DataFrame | None = None) -> DataFrame:
    """Normalised fields plus ``violations`` (array of rule, reason, blocking) for pages that parsed.

    ``reference_codes_df`` has columns ``ref_type`` (``class_type`` or ``origin``) and ``code``;
    when given, certificate codes missing from it are flagged (non-blocking: the lists are partial).
    Pages that did not parse pass through with their parse status and no violations.
    """
    from pyspark.sql import functions as F

    df = extracted_df.select(
        *PAGE_COLUMNS,
        "page_sha256",
        "parse_status",
        "parse_reason",
        "parse_detail",
        F.trim("parsed_ttb_id").alias("parsed_ttb_id"),
        "id_receipt_date",
        *[_normalised(f) for f in RECORD_FIELDS],
    )
    if reference_codes_df is not None:
        for ref_type, field, flag in (("class_type", "class_type_code", "_class_type_known"), ("origin", "origin_code", "_origin_known")):
            known = (
                reference_codes_df.where(F.col("ref_type") == ref_type)
                .select(F.upper(F.trim("code")).alias(field), F.lit(True).alias(flag))
                .distinct()
            )
            df = df.join(F.broadcast(known), field, "left")
    violations = F.filter(F.array(*_rules(reference_codes_df is not None)), lambda v: v.isNotNull())
    return df.withColumn(
        "violations", F.when(F.col("parse_status") == PARSED, violations).otherwise(F.array().cast(ArrayType(VIOLATION)))
    ).drop("_class_type_known", "_origin_known")


# ---------------------------------------------------------------- structured and rejects


def _blocked() -> Column:
    from pyspark.sql import functions as F

    return F.exists("violations", lambda v: v["blocking"])


def structured(cleaned_df: DataFrame, data_type: str) -> DataFrame:
    """Rows of the silver table of ``data_type``: pages that parsed and passed every blocking rule."""
    from pyspark.sql import functions as F

    flags = F.transform("violations", lambda v: v["rule"])
    ok = cleaned_df.where((F.col("data_type") == data_type) & (F.col("parse_status") == PARSED) & ~_blocked())
    return lakehouse.conform(ok.withColumn("quality_flags", F.when(F.size(flags) > 0, flags)), TABLES[data_type])


def rejects(cleaned_df: DataFrame) -> DataFrame:
    """Rows of silver.rejects: one per page that failed parsing, one per blocking rule a parsed page failed."""
    from pyspark.sql import functions as F

    failed_parse = cleaned_df.where(F.col("parse_status") != PARSED).select(
        "*",
        F.lit("extracted").alias("stage"),
        F.lit("parse").alias("rule"),
        F.coalesce("parse_reason", "parse_status").alias("reason"),
        F.col("parse_detail").alias("detail"),
    )
    failed_rules = (
        cleaned_df.where((F.col("parse_status") == PARSED) & _blocked())
        .select("*", F.explode(F.filter("violations", lambda v: v["blocking"])).alias("v"))
        .select("*", F.lit("cleaned").alias("stage"), F.col("v.rule").alias("rule"), F.col("v.reason").alias("reason"), F.lit(None).cast("string").alias("detail"))
    )
    cols = [f for f in REJECTS.schema.fieldNames() if f != lakehouse.ROW_HASH]
    return lakehouse.conform(failed_parse.select(*cols).unionByName(failed_rules.select(*cols)), REJECTS)


# ---------------------------------------------------------------- reconciliation


def reconciliation(bronze_pages: DataFrame, silver_rows: DataFrame, rejected: DataFrame, withdrawn: DataFrame | None = None) -> DataFrame:
    """Per partition: bronze pages, silver rows, distinct rejected and withdrawn pages, and whether they add up."""
    from pyspark.sql import functions as F

    keys = ["receipt_date", "method_type"]
    if withdrawn is None:
        withdrawn = rejected.limit(0)
    b = bronze_pages.groupBy(keys).agg(F.count("*").alias("bronze_pages"))
    s = silver_rows.groupBy(keys).agg(F.count("*").alias("silver_rows"))
    r = rejected.select(*keys, "ttb_id", "data_type").distinct().groupBy(keys).agg(F.count("*").alias("rejected_pages"))
    w = withdrawn.select(*keys, "ttb_id", "data_type").distinct().groupBy(keys).agg(F.count("*").alias("withdrawn_pages"))
    counts = b.join(s, keys, "full").join(r, keys, "full").join(w, keys, "full")
    counts = counts.na.fill(0, ["bronze_pages", "silver_rows", "rejected_pages", "withdrawn_pages"])
    return counts.withColumn("balanced", F.col("bronze_pages") == F.col("silver_rows") + F.col("rejected_pages") + F.col("withdrawn_pages"))


def check_reconciliation(counts: DataFrame, strict: bool = True) -> tuple[int, int]:
    """(partitions checked, unbalanced); raises :class:`ReconciliationError` naming each unbalanced one when ``strict``."""
    rows = counts.collect()
    bad = sorted((r for r in rows if not r["balanced"]), key=lambda r: (str(r["receipt_date"]), r["method_type"]))
    if bad and strict:
        raise ReconciliationError(
            "silver does not reconcile with bronze: "
            + "; ".join(
                f"partition {r['receipt_date']}|{r['method_type']}: bronze {r['bronze_pages']} pages != "
                f"silver {r['silver_rows']} rows + {r['rejected_pages']} rejected pages"
                + (f" + {r['withdrawn_pages']} withdrawn pages" if r["withdrawn_pages"] else "")
                for r in bad
            )
        )
    return len(rows), len(bad)


def withdrawals(pages_df: DataFrame) -> DataFrame:
    """Rows of silver.withdrawals: the bronze pages with ``withdrawn_at`` set."""
    from pyspark.sql import functions as F

    withdrawn = pages_df.where(F.col("withdrawn_at").isNotNull()).withColumnRenamed("sha256", "page_sha256")
    return lakehouse.conform(withdrawn, WITHDRAWALS)


def date_batches(pages_per_date: dict[date, int], max_pages: int) -> list[list[date]]:
    """The receipt dates in order, cut into batches of at most ``max_pages`` pages (a date with more is a batch
    of its own): a backlog of any size is processed in steps whose memory does not grow with it."""
    batches: list[list[date]] = []
    size = 0
    for day in sorted(pages_per_date):
        if not batches or size + pages_per_date[day] > max_pages:
            batches.append([])
            size = 0
        batches[-1].append(day)
        size += pages_per_date[day]
    return batches


def label_images(decoded: DataFrame) -> DataFrame:
    """bronze.label_images rows with what decoding gave (:func:`~ttb_spark.silver.executors.decoded_images`) -> rows
    of silver.label_images: one per image, decoded or rejected with its reason."""
    return lakehouse.conform(decoded, LABEL_IMAGES)


def image_reconciliation(bronze_images: DataFrame, silver_images: DataFrame) -> DataFrame:
    """Per receipt date: bronze.label_images rows, silver.label_images rows, and whether they are equal."""
    from pyspark.sql import functions as F

    b = bronze_images.groupBy("receipt_date").agg(F.count("*").alias("bronze_images"))
    s = silver_images.groupBy("receipt_date").agg(F.count("*").alias("silver_images"))
    counts = b.join(s, "receipt_date", "full").na.fill(0, ["bronze_images", "silver_images"])
    return counts.withColumn("balanced", F.col("bronze_images") == F.col("silver_images"))


def certificate_labels(certificates: DataFrame, *keep: str) -> DataFrame:
    """One row per label a certificate (a silver.cola_certificates row, or a gold row with its ``labels``) names:
    ttb_id, receipt_date, the ``keep`` columns, ``position`` (1-based page order, as the raw store's image keys
    number labels), ``file_name`` and the whole ``label``."""
    from pyspark.sql import functions as F

    exploded = certificates.select("ttb_id", "receipt_date", *keep, F.posexplode("labels").alias("index", "label"))
    return exploded.select("ttb_id", "receipt_date", *keep, (F.col("index") + 1).alias("position"),
                           F.col("label.filename").alias("file_name"), "label")
