"""``gold.ttb_consolidated`` (the original ``ttb_consolidated_data``): one row per TTB ID, the
detail page and the certificate joined.

Precedence: the certificate's codes (class/type, origin) and form-only fields; the detail page's
status and approval date (it is the registry's current view); for text both pages show, the
detail page first. A TTB ID with only one of its two pages is kept and flagged
(``record_completeness``); the missing page arriving later completes the row on the next MERGE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, DateType, IntegerType, StringType, StructType, TimestampType

from ttb_spark.gold.layout import DERIVED, RECEIPT_MONTH, RECEIPT_MONTH_COLUMN
from ttb_spark.lakehouse import TableSpec, column
from ttb_spark.silver.tables import LABEL

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

STRINGS = ArrayType(StringType())
COMPLETE, DETAIL_ONLY, CERTIFICATE_ONLY = "complete", "detail_only", "certificate_only"

CONSOLIDATED = TableSpec(
    name="gold.ttb_consolidated",
    comment=(
        "One row per TTB ID: detail page and certificate joined (certificate codes, detail status and approval "
        "date). COLAs with only one of the two pages are kept and flagged in record_completeness."
    ),
    keys=("ttb_id",),
    partition_by=(RECEIPT_MONTH,),
    derived=DERIVED,
    hash_exclude=("detail_fetched_at", "certificate_fetched_at"),
    schema=StructType([
        column("ttb_id", StringType(), "14-digit TTB ID; the key", False),
        column("receipt_date", DateType(), "date TTB received the application (from the ID)"),
        RECEIPT_MONTH_COLUMN,
        column("receipt_method", StringType(), "000 hand delivered, 001 e-filed, 002 mail, 003 overnight courier"),
        column("sequence", IntegerType(), "sequence within the receipt date and method"),
        column("has_detail", BooleanType(), "the detail page is in silver"),
        column("has_certificate", BooleanType(), "the certificate (TTB F 5100.31) is in silver"),
        column("record_completeness", StringType(), "complete | detail_only | certificate_only"),
        column("status", StringType(), "APPROVED / EXPIRED / SURRENDERED / REVOKED: the detail page's, else the certificate's"),
        column("status_source", StringType(), "page the status came from: detail | certificate"),
        column("vendor_code", StringType(), "detail: vendor code"),
        column("serial_number", StringType(), "applicant's serial number"),
        column("class_type_code", StringType(), "class/type code: the certificate's, else looked up from the detail's description when unambiguous"),
        column("class_type_description", StringType(), "class/type description"),
        column("origin_code", StringType(), "origin code: the certificate's, else looked up from the detail's description when unambiguous"),
        column("origin_description", StringType(), "origin description"),
        column("product_type", StringType(), "certificate item 5: WINE / DISTILLED SPIRITS / MALT BEVERAGE"),
        column("source_of_product", StringType(), "certificate item 3: DOMESTIC / IMPORTED"),
        column("brand_name", StringType(), "brand name"),
        column("fanciful_name", StringType(), "fanciful name"),
        column("type_of_application", StringType(), "detail: type of application (LABEL APPROVAL, EXEMPTION ...)"),
        column("application_types", STRINGS, "certificate item 14: texts of the ticked boxes"),
        column("for_sale_in", StringType(), "exemption: the only state the label may be sold in"),
        column("total_bottle_capacity", StringType(), "distinctive bottle: total capacity before closure"),
        column("resubmission_ttb_id", StringType(), "resubmission after rejection: the earlier TTB ID"),
        column("permit_number", StringType(), "principal plant registry / basic permit / brewer's number"),
        column("permit_numbers", STRINGS, "every permit number on either page, principal first"),
        column("applicant_name", StringType(), "applicant (permit holder) name, upper case"),
        column("applicant_street", StringType(), "applicant street"),
        column("applicant_city", StringType(), "applicant city"),
        column("applicant_state", StringType(), "applicant state (USPS code)"),
        column("applicant_zip", StringType(), "applicant ZIP code"),
        column("dba_names", STRINGS, "certificate item 8: DBA / trade names used on the label"),
        column("formula", StringType(), "formula number"),
        column("grape_varietals", STRINGS, "grape varietals (wine)"),
        column("wine_appellation", StringType(), "wine appellation (certificate item 11)"),
        column("wine_vintage", StringType(), "wine vintage (some records)"),
        column("qualifications", STRINGS, "TTB's qualifications on the approval"),
        column("application_date", DateType(), "certificate item 16: date of application"),
        column("approval_date", DateType(), "the detail page's approval date, else the certificate's date issued"),
        column("issued_date", DateType(), "certificate item 19: date issued"),
        column("expiration_date", DateType(), "certificate: expiration date, if any"),
        column("label_count", IntegerType(), "number of label images on the certificate"),
        column("labels", ArrayType(LABEL), "label images: type, actual width/height in inches, URL, file name"),
        column("detail_page_sha256", StringType(), "SHA-256 of the detail page the row was built from"),
        column("certificate_page_sha256", StringType(), "SHA-256 of the certificate page the row was built from"),
        column("detail_fetched_at", TimestampType(), "when the detail page was fetched (not part of row_hash)"),
        column("certificate_fetched_at", TimestampType(), "when the certificate was fetched (not part of row_hash)"),
        column("row_hash", StringType(), "SHA-256 of the content columns; MERGE updates only changed rows"),
    ]),
)

_KEY_COLUMNS = ("ttb_id", "receipt_date", "receipt_method", "sequence")


def unambiguous_codes(reference: DataFrame, ref_type: str) -> DataFrame:
    """(description, code) for descriptions that name exactly one code of ``ref_type``."""
    rows = reference.where(F.col("ref_type") == ref_type).where(F.col("description").isNotNull())
    return (
        rows.groupBy("description")
        .agg(F.min("code").alias("code"), F.countDistinct("code").alias("n"))
        .where(F.col("n") == 1)
        .drop("n")
    )


def consolidate(details: DataFrame, certificates: DataFrame, reference: DataFrame, prefer_certificate_codes: bool = True) -> DataFrame:
    """silver.cola_details x silver.cola_certificates -> gold.ttb_consolidated rows (one per TTB ID).

    ``reference`` (gold.ttb_reference_data) resolves a detail-only record's codes from its
    descriptions when a description names exactly one code. ``prefer_certificate_codes`` picks
    the certificate's class/type description (the one printed with its code) over the detail's.
    """
    d = details.alias("d")
    c = certificates.alias("c")
    joined = d.join(c, F.col("d.ttb_id") == F.col("c.ttb_id"), "full_outer")
    has_d, has_c = F.col("d.ttb_id").isNotNull(), F.col("c.ttb_id").isNotNull()

    def both(name: str, first: str = "d") -> Column:
        other = "c" if first == "d" else "d"
        return F.coalesce(F.col(f"{first}.{name}"), F.col(f"{other}.{name}"))

    ct_desc = both("class_type_description", "c" if prefer_certificate_codes else "d")
    status_from_detail = F.col("d.status").isNotNull()
    principal = F.coalesce(F.col("d.permit_number"), F.element_at(F.col("c.permit_numbers"), 1))
    permits = F.array_distinct(
        F.concat(
            F.array(principal),
            F.coalesce(F.col("c.permit_numbers"), F.array().cast(STRINGS)),
            F.coalesce(F.col("d.other_permits"), F.array().cast(STRINGS)),
        )
    )
    out = joined.select(
        *[both(k).alias(k) for k in _KEY_COLUMNS],
        has_d.alias("has_detail"),
        has_c.alias("has_certificate"),
        F.when(has_d & has_c, COMPLETE).when(has_d, DETAIL_ONLY).otherwise(CERTIFICATE_ONLY).alias("record_completeness"),
        both("status").alias("status"),
        F.when(status_from_detail, "detail").when(F.col("c.status").isNotNull(), "certificate").alias("status_source"),
        F.col("d.vendor_code").alias("vendor_code"),
        both("serial_number").alias("serial_number"),
        F.col("c.class_type_code").alias("class_type_code"),
        ct_desc.alias("class_type_description"),
        F.col("c.origin_code").alias("origin_code"),
        F.col("d.origin_description").alias("origin_description"),
        F.col("c.product_type").alias("product_type"),
        F.col("c.source_of_product").alias("source_of_product"),
        both("brand_name").alias("brand_name"),
        both("fanciful_name").alias("fanciful_name"),
        F.col("d.type_of_application").alias("type_of_application"),
        F.col("c.application_types").alias("application_types"),
        both("for_sale_in").alias("for_sale_in"),
        both("total_bottle_capacity").alias("total_bottle_capacity"),
        F.col("c.resubmission_ttb_id").alias("resubmission_ttb_id"),
        principal.alias("permit_number"),
        F.filter(permits, lambda p: p.isNotNull()).alias("permit_numbers"),
        *[both(f).alias(f) for f in ("applicant_name", "applicant_street", "applicant_city", "applicant_state", "applicant_zip")],
        F.col("c.dba_names").alias("dba_names"),
        both("formula").alias("formula"),
        both("grape_varietals").alias("grape_varietals"),
        F.col("c.wine_appellation").alias("wine_appellation"),
        both("wine_vintage").alias("wine_vintage"),
        both("qualifications").alias("qualifications"),
        F.col("c.application_date").alias("application_date"),
        F.coalesce(F.col("d.approval_date"), F.col("c.issued_date")).alias("approval_date"),
        F.col("c.issued_date").alias("issued_date"),
        F.col("c.expiration_date").alias("expiration_date"),
        F.when(has_c, F.when(F.col("c.labels").isNull(), 0).otherwise(F.size(F.col("c.labels")))).alias("label_count"),
        F.col("c.labels").alias("labels"),
        F.col("d.page_sha256").alias("detail_page_sha256"),
        F.col("c.page_sha256").alias("certificate_page_sha256"),
        F.col("d.fetched_at").alias("detail_fetched_at"),
        F.col("c.fetched_at").alias("certificate_fetched_at"),
    )
    names = out.columns
    class_codes = unambiguous_codes(reference, "class_type").alias("ct")
    origin_codes = unambiguous_codes(reference, "origin").alias("oc")
    resolved = (
        out.alias("o")
        .join(F.broadcast(class_codes), F.col("o.class_type_description") == F.col("ct.description"), "left")
        .join(F.broadcast(origin_codes), F.col("o.origin_description") == F.col("oc.description"), "left")
    )
    lookups = {"class_type_code": "ct.code", "origin_code": "oc.code"}
    return resolved.select(
        *[F.coalesce(F.col(f"o.{n}"), F.col(lookups[n])).alias(n) if n in lookups else F.col(f"o.{n}") for n in names]
    )
