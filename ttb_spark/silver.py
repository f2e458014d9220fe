"""Silver: bronze pages -> extracted -> cleaned -> structured tables, with a quarantine that loses nothing.

The original pipeline's three processing stages, each a pure DataFrame -> DataFrame function:

* :func:`extracted` (``ttb_extracted_data``): :func:`ttb_spark.parse.parse_page` applied on the
  executors, one row per page: the page's key columns, parse status/reason and every field of
  the parse contract (details and certificates share one frame; fields of the other type are null).
* :func:`cleaned` (``ttb_cleaned_data``): normalised values and a ``violations`` array, one entry
  per failed rule (rule name, reason, blocking or not).
* :func:`structured` (``ttb_structured_data``): the typed rows of ``silver.cola_details`` /
  ``silver.cola_certificates``: pages that parsed and passed every blocking rule.
* :func:`rejects`: every other page, with the stage and rule that stopped it.

:func:`run` takes either the bronze pages changed since the last change-driven run
(``--since-last-run``: Delta change data feed of bronze.pages after the version recorded in
``ops.watermarks``) or every page of the scope's partitions (explicit reprocessing). Each page's
rows are replaced by what it gives now (a page now rejected leaves the structured table, a fixed
reject leaves the quarantine, a withdrawn page, ``withdrawn_at`` set, leaves both for
``silver.withdrawals``), in one MERGE per table pruned to the pages' partitions and keys. Then,
per partition touched, bronze pages = silver rows + rejected pages + withdrawn pages, or it raises.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from ttb_spark import bronze, lakehouse
from ttb_spark.lakehouse import column

if TYPE_CHECKING:
    from datetime import date

    from pyspark.sql import Column, DataFrame, SparkSession

    from ttb_spark.scope import Scope
    from ttb_spark.settings import Settings

DETAIL, CERTIFICATE = "cola-detail", "certificate"
PAGE_KINDS = {DETAIL: "detail", CERTIFICATE: "certificate"}
PARSED = "parsed"
NULL_VALUES = ("", "NOT PROVIDED", "N/A")
US_STATES = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP AA AE AP"
).split()
ZIP_PATTERN = r"^[0-9]{5}(-[0-9]{4})?$"

LABEL = StructType(
    [
        StructField("image_type", StringType()),
        StructField("width_inches", DoubleType()),
        StructField("height_inches", DoubleType()),
        StructField("image_url", StringType()),
        StructField("filename", StringType()),
    ]
)
STRINGS = ArrayType(StringType())

# Every field of the parse contract with its comment; type string unless listed in _TYPES.
FIELD_COMMENTS: dict[str, str] = {
    "status": "Registry status: APPROVED, EXPIRED, SURRENDERED or REVOKED.",
    "vendor_code": "Applicant's vendor code (a string).",
    "serial_number": "Applicant's serial number for the application (a string, e.g. 240003).",
    "class_type_description": "Product class/type description as shown (e.g. SINGLE MALT SCOTCH WHISKY).",
    "origin_description": "Origin description as shown (e.g. SCOTLAND, CALIFORNIA).",
    "brand_name": "Brand name, upper-case.",
    "fanciful_name": "Fanciful name, upper-case; null when none.",
    "type_of_application": "Type of application as shown (e.g. LABEL APPROVAL).",
    "for_sale_in": "State of an exemption from label approval ('For sale in XX only'); null otherwise.",
    "total_bottle_capacity": "Total bottle capacity of a distinctive bottle application, as shown.",
    "grape_varietals": "Grape varietals (wine only).",
    "wine_vintage": "Wine vintage, when given.",
    "formula": "Formula number, when given.",
    "approval_date": "Date the COLA was approved.",
    "qualifications": "Qualification texts TTB attached to the approval, one per entry.",
    "permit_number": "Plant registry / basic permit / brewer's number of the principal place of business.",
    "applicant_name": "Applicant (company) name, upper-case.",
    "applicant_street": "Applicant street address, upper-case; null when NOT PROVIDED.",
    "applicant_city": "Applicant city, upper-case.",
    "applicant_state": "Applicant state, 2-letter code (validated against US states and territories; a failure is a quality flag).",
    "applicant_zip": "Applicant ZIP code, 5 or 5+4 digits (validated; a failure is a quality flag).",
    "other_permits": "Further permit numbers listed under (Other).",
    "formula_sop_no": "Formula/SOP number (older layout).",
    "lab_no": "Lab number (older layout).",
    "lab_date": "Lab date (older layout).",
    "rep_id": "Item 1: representative ID number.",
    "class_type_code": "Class/type code (CT), a string such as 81, 80A, 5K.",
    "origin_code": "Origin code (OR), a string such as 01, 4A (leading zeros kept).",
    "permit_numbers": "Item 2: plant registry / basic permit / brewer's numbers.",
    "source_of_product": "Item 3: DOMESTIC or IMPORTED.",
    "product_type": "Item 5: WINE, DISTILLED SPIRITS or MALT BEVERAGE.",
    "dba_names": "Item 8: DBA names used on the label, upper-case.",
    "mailing_address": "Item 8a: mailing address if different, upper-case.",
    "wine_appellation": "Item 11: wine appellation.",
    "phone_number": "Item 12: phone number as shown.",
    "email": "Item 13: email address, lower-case.",
    "application_types": "Item 14: texts of the ticked type-of-application boxes.",
    "resubmission_ttb_id": "Item 14d: TTB ID of the rejected application this resubmits.",
    "embossed_text": "Item 15: embossed/blown text and translations.",
    "application_date": "Item 16: date of application (equals the receipt date in the TTB ID).",
    "issued_date": "Item 19: date issued.",
    "expiration_date": "Expiration date, if any.",
    "labels": "Label images: image type, actual width and height in inches, image URL and file name.",
    "net_contents": "Net contents (older forms).",
    "alcohol_content": "Alcohol content (older forms).",
}
_TYPES: dict[str, DataType] = {
    **{f: STRINGS for f in ("grape_varietals", "qualifications", "other_permits", "permit_numbers", "dba_names", "application_types")},
    **{f: DateType() for f in ("approval_date", "lab_date", "application_date", "issued_date", "expiration_date")},
    "labels": ArrayType(LABEL),
}
DETAIL_FIELDS = (
    "status", "vendor_code", "serial_number", "class_type_description", "origin_description", "brand_name",
    "fanciful_name", "type_of_application", "for_sale_in", "total_bottle_capacity", "grape_varietals",
    "wine_vintage", "formula", "approval_date", "qualifications", "permit_number", "applicant_name",
    "applicant_street", "applicant_city", "applicant_state", "applicant_zip", "other_permits",
    "formula_sop_no", "lab_no", "lab_date",
)  # fmt: skip
CERTIFICATE_FIELDS = (
    "rep_id", "class_type_code", "origin_code", "permit_numbers", "source_of_product", "serial_number",
    "product_type", "brand_name", "fanciful_name", "applicant_name", "applicant_street", "applicant_city",
    "applicant_state", "applicant_zip", "dba_names", "mailing_address", "formula", "grape_varietals",
    "wine_appellation", "phone_number", "email", "application_types", "for_sale_in", "total_bottle_capacity",
    "resubmission_ttb_id", "embossed_text", "application_date", "issued_date", "qualifications", "status",
    "class_type_description", "expiration_date", "labels", "net_contents", "alcohol_content", "wine_vintage",
)  # fmt: skip
RECORD_FIELDS = tuple(dict.fromkeys((*DETAIL_FIELDS, *CERTIFICATE_FIELDS)))
UPPER_FIELDS = ("brand_name", "fanciful_name", "applicant_name", "applicant_street", "applicant_city", "applicant_state",
                "dba_names", "mailing_address", "status", "source_of_product", "product_type", "class_type_code",
                "origin_code", "vendor_code", "rep_id")  # fmt: skip
KEEP_LINES = ("qualifications", "embossed_text", "mailing_address")  # trimmed only, inner whitespace kept


def _raw_type(name: str) -> DataType:
    """Type of a field as the parser returns it (dates still ISO strings)."""
    t = _TYPES.get(name, StringType())
    return StringType() if isinstance(t, DateType) else t


# The parser's record as JSON (contracts.md section 1); ttb_id / receipt_date as read from the page.
RECORD_JSON = StructType(
    [
        StructField("ttb_id", StringType()),
        StructField("receipt_date", StringType()),
        *[StructField(f, _raw_type(f)) for f in RECORD_FIELDS],
    ]
)
PARSE_RESULT = StructType(
    [
        StructField("parse_status", StringType()),
        StructField("parse_reason", StringType()),
        StructField("parse_detail", StringType()),
        StructField("record", StringType()),
    ]
)
PAGE_COLUMNS = ("ttb_id", "data_type", "receipt_date", "method_type", "receipt_method", "sequence", "source_key", "fetched_at")
VIOLATION = StructType(
    [StructField("rule", StringType()), StructField("reason", StringType()), StructField("blocking", BooleanType())]
)

_PAGE_COMMENTS = {
    "ttb_id": ("14-digit TTB ID (YYJJJRRRSSSSSS); the key.", StringType()),
    "receipt_date": ("Date the application was received (from the ID); partition column.", DateType()),
    "receipt_method": ("Receipt method code: 000 hand, 001 e-filed, 002 mail, 003 courier.", StringType()),
    "method_type": ("<receipt method>-<data type> of the source page; partition column.", StringType()),
    "sequence": ("Sequence number within the receipt date and method.", IntegerType()),
}
_TAIL = (
    column("quality_flags", STRINGS, "Names of non-blocking rules the record failed (reference codes, state, ZIP); null when none."),
    column("page_sha256", StringType(), "SHA-256 of the bronze page the row was parsed from."),
    column("fetched_at", TimestampType(), "When that page was fetched."),
    column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
)


def _columns(fields: tuple[str, ...]) -> list[StructField]:
    head = [column(n, t, c, nullable=n != "ttb_id") for n, (c, t) in _PAGE_COMMENTS.items()]
    return [*head, *[column(f, _TYPES.get(f, StringType()), FIELD_COMMENTS[f]) for f in fields], *_TAIL]


COLA_DETAILS = lakehouse.TableSpec(
    name="silver.cola_details",
    comment="COLA detail pages, parsed, cleaned and validated (the original ttb_structured_data, detail side). One row per TTB ID.",
    keys=("ttb_id",),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    properties=lakehouse.CHANGE_FEED,
    schema=StructType(_columns(DETAIL_FIELDS)),
)
COLA_CERTIFICATES = lakehouse.TableSpec(
    name="silver.cola_certificates",
    comment="COLA certificates (TTB F 5100.31), parsed, cleaned and validated (ttb_structured_data, certificate side). One row per TTB ID.",
    keys=("ttb_id",),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    properties=lakehouse.CHANGE_FEED,
    schema=StructType(_columns(CERTIFICATE_FIELDS)),
)
REJECTS = lakehouse.TableSpec(
    name="silver.rejects",
    comment=(
        "Quarantine: every bronze page that failed parsing or a blocking validation rule, one row per page and failed rule. "
        "Per partition, bronze pages = silver rows + distinct rejected pages."
    ),
    keys=("ttb_id", "data_type", "stage", "rule"),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    schema=StructType(
        [
            column("ttb_id", StringType(), "TTB ID of the page (from its raw store key).", nullable=False),
            column("data_type", StringType(), "Page type: cola-detail or certificate.", nullable=False),
            column("receipt_date", DateType(), "Receipt date of the page's partition; partition column."),
            column("method_type", StringType(), "method_type of the page's partition; partition column."),
            column("stage", StringType(), "Where the page was stopped: extracted (parsing) or cleaned (validation).", nullable=False),
            column(
                "rule",
                StringType(),
                "parse for parse failures; otherwise the blocking rule: ttb_id_matches_page, receipt_date_matches_id, approval_not_before_receipt.",
                nullable=False,
            ),
            column("reason", StringType(), "Why: the parse reason code (not_found, truncated, wrong_ttb_id, ...) or the failed check."),
            column("detail", StringType(), "Human-readable detail, when there is one."),
            column("source_key", StringType(), "Raw store key of the page."),
            column("page_sha256", StringType(), "SHA-256 of the rejected page."),
            column("fetched_at", TimestampType(), "When the page was fetched."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)
WITHDRAWALS = lakehouse.TableSpec(
    name="silver.withdrawals",
    comment=(
        "Pages withdrawn from public view (bronze.pages.withdrawn_at set): their rows leave the other silver tables "
        "and gold. Per partition, bronze pages = silver rows + distinct rejected pages + withdrawn pages."
    ),
    keys=("ttb_id", "data_type"),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    schema=StructType(
        [
            column("ttb_id", StringType(), "TTB ID of the withdrawn page.", nullable=False),
            column("data_type", StringType(), "Page type: cola-detail or certificate.", nullable=False),
            column("receipt_date", DateType(), "Receipt date of the page's partition; partition column."),
            column("method_type", StringType(), "method_type of the page's partition; partition column."),
            column("withdrawn_at", TimestampType(), "When the registry was first seen answering its error page for the page."),
            column("source_key", StringType(), "Raw store key of the page's last public copy."),
            column("page_sha256", StringType(), "SHA-256 of that copy."),
            column("fetched_at", TimestampType(), "When that copy was fetched."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)
TABLES = {DETAIL: COLA_DETAILS, CERTIFICATE: COLA_CERTIFICATES}
STAGE = "silver"


class ReconciliationError(RuntimeError):
    """Bronze pages != silver rows + rejected pages for some partition."""


# ---------------------------------------------------------------- extracted


def parse_one(html: str | None, ttb_id: str, data_type: str) -> tuple[str, str | None, str | None, str | None]:
    """(parse_status, reason, detail, record JSON) for one page; runs on executors, never raises.

    A parser crash is quarantined as status ``error`` / reason ``parser_exception`` so one odd page
    cannot stop a backfill; the page stays in bronze for a replay after the fix.
    """
    from ttb_spark import parse

    try:
        served = (html or "").encode("latin-1")  # bronze's lossless decoding, undone: the parser decodes bytes itself
        result = parse.parse_page(served, expected_ttb_id=ttb_id, expected_kind=PAGE_KINDS[data_type])
    except Exception as exc:  # noqa: BLE001 - quarantined, see docstring
        return "error", "parser_exception", f"{type(exc).__name__}: {exc}"[:1000], None
    if result.record is None:
        return result.kind, result.reason, result.detail, None
    return PARSED, None, None, json.dumps(result.record, default=str)


def _parse_batches(batches: Any) -> Any:
    """mapInArrow body: each batch's columns pass through as they are, ``html`` replaced by the parse result."""
    import pyarrow as pa

    for batch in batches:
        pages = zip(batch.column("html").to_pylist(), batch.column("ttb_id").to_pylist(), batch.column("data_type").to_pylist())
        results = list(zip(*(parse_one(*page) for page in pages))) or [()] * len(PARSE_RESULT.fields)
        kept = [name for name in batch.schema.names if name != "html"]
        yield pa.RecordBatch.from_arrays(
            [*(batch.column(name) for name in kept), *(pa.array(values, pa.string()) for values in results)],
            names=[*kept, *PARSE_RESULT.fieldNames()],
        )


def parse_results(pages_df: DataFrame) -> DataFrame:
    """``pages_df`` without ``html``, plus parse_status, parse_reason, parse_detail and record (JSON), parsed on executors.

    ``mapInArrow``: pages cross to Python as Arrow batches and every other column goes back
    untouched (no per-row conversion, so no timezone round trip for timestamps). In
    bench/extract_bench.py it is level (within noise) with the UDF, mapInPandas and RDD variants,
    needs no pandas, and being DataFrame API only it runs over Spark Connect too.
    """
    schema = StructType([f for f in pages_df.schema.fields if f.name != "html"] + PARSE_RESULT.fields)
    return pages_df.mapInArrow(_parse_batches, schema)


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
    kind = _TYPES.get(name, StringType())
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


# ---------------------------------------------------------------- the stage


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


def withdrawals(pages_df: DataFrame) -> DataFrame:
    """Rows of silver.withdrawals: the bronze pages with ``withdrawn_at`` set."""
    from pyspark.sql import functions as F

    withdrawn = pages_df.where(F.col("withdrawn_at").isNotNull()).withColumnRenamed("sha256", "page_sha256")
    return lakehouse.conform(withdrawn, WITHDRAWALS)


def bronze_versions(spark: SparkSession, root: str) -> tuple[int | None, int | None]:
    """(the bronze.pages version silver last processed through, None: never; its current version, None: no bronze)."""
    from ttb_spark import audit

    lakehouse.ensure_properties(spark, bronze.PAGES, root)  # change feed from here on
    latest = lakehouse.current_version(spark, bronze.PAGES, root)
    return audit.read_watermarks(spark, root, STAGE).get(bronze.PAGES.name), latest


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


def run(spark: SparkSession, settings: Settings, scope: Scope) -> dict[str, int]:
    """bronze.pages -> silver.cola_details, silver.cola_certificates, silver.rejects, silver.withdrawals; reconciled.

    With ``scope.since_last_run``: the pages added or changed since the bronze version the last
    change-driven run processed (whatever their receipt date), in batches of receipt dates of at most
    ``processing.max_pages_per_batch`` pages (:func:`date_batches`); the watermark moves to the version
    read after the last batch's writes, so a crash in between reprocesses them all, unchanged rows untouched.
    Otherwise: every page of the scope's partitions (reprocessing).
    """
    from ttb_spark import audit

    root = settings.pipeline.lakehouse_root
    if scope.since_last_run:
        mark, latest = bronze_versions(spark, root)
        counts = {"pages_processed": 0}
        if latest is not None and (mark is None or mark < latest):
            per_date = changed_pages(spark, root, mark, latest).groupBy("receipt_date").count().collect()
            for dates in date_batches({r[0]: r[1] for r in per_date}, settings.processing.max_pages_per_batch):
                done = process(spark, settings, changed_pages(spark, root, mark, latest, dates))
                counts = {k: counts.get(k, 0) + done.get(k, 0) for k in counts.keys() | done.keys()}
        if latest is not None:
            audit.write_watermarks(spark, root, STAGE, {bronze.PAGES.name: latest}, scope.run_id)
        return counts
    dates = [d.isoformat() for d in sorted({p.receipt_date for p in scope.partitions()})]
    method_types = sorted({p.method_type for p in scope.partitions()})
    return process(spark, settings, _in_scope(lakehouse.read_table(spark, bronze.PAGES, root), dates, method_types))
