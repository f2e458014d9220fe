"""Bronze's tables and the rows it reads: the TableSpecs of ``bronze.scrape_manifest``, ``bronze.pages``,
``ops.ingested_manifests``, ``bronze.search_listings`` and ``bronze.label_images`` (declared once here;
``ttb_spark.tables`` lists them), a manifest line as the scraper writes it, that line with its page's bytes,
a listed search row, and a label-image manifest line."""

from __future__ import annotations

from pyspark.sql.types import (
    BinaryType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from ttb_spark import lakehouse
from ttb_spark.lakehouse import column

# One line of manifest.jsonl as the scraper writes it (contracts.md section 2), before typing.
MANIFEST_LINE = StructType(
    [
        StructField(name, data_type)
        for name, data_type in (
            *[(n, StringType()) for n in ("ttb_id", "method_type", "receipt_date", "data_type", "receipt_method")],
            ("sequence", IntegerType()),
            ("outcome", StringType()),
            ("reason", StringType()),
            ("http_status", IntegerType()),
            ("bytes", LongType()),
            *[(n, StringType()) for n in ("sha256", "fetched_at")],
            ("attempts", IntegerType()),
            *[(n, StringType()) for n in ("key", "run_id", "withdrawn_at")],
        )
    ]
)

MANIFEST_LINES = StructType([StructField("manifest_key", StringType()), StructField("line", StringType())])

SCRAPE_MANIFEST = lakehouse.TableSpec(
    name="bronze.scrape_manifest",
    comment=(
        "Every attempt line of the raw store's per-partition scrape manifests (complete partitions only): "
        "what each walk tried and how it ended. One row per TTB ID, data type and scrape run."
    ),
    keys=("ttb_id", "data_type", "scrape_run_id"),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("ingest_run_id",),
    schema=StructType(
        [
            column("ttb_id", StringType(), "14-digit TTB ID that was tried.", nullable=False),
            column("data_type", StringType(), "Page type: cola-detail or certificate.", nullable=False),
            column("receipt_method", StringType(), "Receipt method code from the ID: 000 hand, 001 e-filed, 002 mail, 003 courier."),
            column("receipt_date", DateType(), "Receipt date of the partition (from the ID's YYJJJ)."),
            column("method_type", StringType(), "<receipt method>-<data type>, e.g. 001-cola-detail."),
            column("sequence", IntegerType(), "Sequence number within the receipt date and method (the ID's last 6 digits)."),
            column("outcome", StringType(), "found, not_found (registry error page), unexpected (e.g. captcha) or failed (no usable answer)."),
            column("reason", StringType(), "snake_case reason for unexpected/failed outcomes; null otherwise."),
            column("http_status", IntegerType(), "HTTP status of the last attempt; null when no answer."),
            column("bytes", LongType(), "Size of the stored page in bytes (found pages)."),
            column("sha256", StringType(), "SHA-256 of the stored page as listed by the scraper (found pages)."),
            column("fetched_at", TimestampType(), "When the page was fetched (for pages kept from an earlier walk: the stored copy's time)."),
            column("attempts", IntegerType(), "Requests made for this ID in the walk (0 when a stored page was reused)."),
            column("page_key", StringType(), "Raw store key of the stored page; null when nothing was stored."),
            column("scrape_run_id", StringType(), "Id of the scrape run whose walk wrote the manifest.", nullable=False),
            column("manifest_key", StringType(), "Raw store key of the manifest the line comes from."),
            column("ingest_run_id", StringType(), "Run id of the bronze run that first wrote (or last changed) the row."),
            column("row_hash", StringType(), "SHA-256 of the row's content (without ingest_run_id); MERGE updates a row only when it changes."),
        ]
    ),
)

PAGES = lakehouse.TableSpec(
    name="bronze.pages",
    comment=(
        "Registry pages exactly as served (the original ttb_raw_data), one row per TTB ID and page type, "
        "from complete partitions of the raw store. html is the served bytes decoded as ISO-8859-1 (lossless)."
    ),
    keys=("ttb_id", "data_type"),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("http_status", "fetched_at", "source_key", "scrape_run_id", "ingest_run_id"),
    properties=lakehouse.CHANGE_FEED,
    schema=StructType(
        [
            column("ttb_id", StringType(), "14-digit TTB ID the page was requested for (from the raw store key).", nullable=False),
            column("data_type", StringType(), "Page type: cola-detail (detail page) or certificate (TTB F 5100.31 form).", nullable=False),
            column("receipt_method", StringType(), "Receipt method code from the ID: 000 hand, 001 e-filed, 002 mail, 003 courier."),
            column("receipt_date", DateType(), "Receipt date from the ID's YYJJJ; partition column."),
            column("method_type", StringType(), "<receipt method>-<data type>, e.g. 001-cola-detail; partition column."),
            column("sequence", IntegerType(), "Sequence number within the receipt date and method (the ID's last 6 digits)."),
            column(
                "html",
                StringType(),
                "The page as served, decoded from ISO-8859-1 (one character per byte, so encode(html, 'ISO-8859-1') is the exact served bytes).",
            ),
            column("content_length", LongType(), "Size of the served page in bytes."),
            column("sha256", StringType(), "SHA-256 (hex) of the served bytes, computed when read from the raw store."),
            column("http_status", IntegerType(), "HTTP status the registry answered with (200 even for its error page)."),
            column("fetched_at", TimestampType(), "When the scraper fetched the stored copy (UTC)."),
            column("withdrawn_at", TimestampType(), "When the registry was first seen answering its error page for this once-public page (withdrawn from public view); null while public."),
            column("source_key", StringType(), "Raw store key the page was read from (pages/method_type=.../receipt_date=.../<ttb_id>.html)."),
            column("scrape_run_id", StringType(), "Id of the scrape run that listed the page in its manifest."),
            column("ingest_run_id", StringType(), "Run id of the bronze run that inserted the row or last changed its content."),
            column("row_hash", StringType(), "SHA-256 of the page content columns; MERGE updates a row only when its content changed."),
        ]
    ),
)

FETCHED = StructType([*MANIFEST_LINE.fields, StructField("content", BinaryType())])

INGESTED_MANIFESTS = lakehouse.TableSpec(
    name="ops.ingested_manifests",
    comment=(
        "Discovery and search manifests of the raw store that bronze has ingested, so each is read exactly once "
        "(the walk's per-partition manifests are re-read while in scope: their MERGE is idempotent)."
    ),
    keys=("manifest_key",),
    hash_exclude=("ingest_run_id", "ingested_at"),
    schema=StructType(
        [
            column("manifest_key", StringType(), "Raw store key of the manifest (manifests/discovery/... or search/manifests/...).", nullable=False),
            column("lines", LongType(), "Lines (fetch attempts or listed rows) the manifest contributed."),
            column("ingest_run_id", StringType(), "Run id of the bronze run that ingested it."),
            column("ingested_at", TimestampType(), "When it was ingested (UTC)."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)

SEARCH_LISTINGS = lakehouse.TableSpec(
    name="bronze.search_listings",
    comment=(
        "Every row the registry's search listed (CSV export or results pages as served, stored by discovery): "
        "one row per TTB ID and completed date, so a status change (a new completed date) is a new row."
    ),
    keys=("ttb_id", "completed_date"),
    partition_by=("completed_date",),
    hash_exclude=("search_window", "source_key", "manifest_key", "search_run_id", "searched_at", "ingest_run_id"),
    schema=StructType(
        [
            column("ttb_id", StringType(), "14-digit TTB ID the search listed.", nullable=False),
            column("completed_date", DateType(), "Completed Date as listed: the approval, or the last status change (partition column).", nullable=False),
            column("receipt_date", DateType(), "Receipt date from the ID's YYJJJ."),
            column("permit_number", StringType(), "Permit No. as listed."),
            column("serial_number", StringType(), "Serial Number as listed."),
            column("fanciful_name", StringType(), "Fanciful Name as listed; null when empty or when unquoted commas in the export make it ambiguous."),
            column("brand_name", StringType(), "Brand Name as listed; null when unquoted commas in the export make it ambiguous."),
            column("origin_code", StringType(), "Origin code as listed (a string: 01, 4A)."),
            column("origin_description", StringType(), "Origin Desc as listed."),
            column("class_type_code", StringType(), "Class/Type code as listed (a string: 81, 80A)."),
            column("class_type_description", StringType(), "Class/Type Desc as listed."),
            column("search_window", StringType(), "The search that listed it: completed-date window, class/type range, origin, brand-name prefix."),
            column("source_key", StringType(), "Raw store key of the answer the row was read from (export.csv or a results page)."),
            column("manifest_key", StringType(), "Raw store key of the search manifest naming that answer."),
            column("search_run_id", StringType(), "Id of the discovery run that searched."),
            column("searched_at", TimestampType(), "When the first search that listed it was answered (UTC)."),
            column("ingest_run_id", StringType(), "Run id of the bronze run that inserted the row or last changed it."),
            column("row_hash", StringType(), "SHA-256 of the listed values; MERGE updates a row only when they change."),
        ]
    ),
)

LISTING_INPUT = StructType(
    [StructField(n, StringType()) for n in ("ttb_id",)]
    + [StructField("completed_date", DateType())]
    + [StructField(n, StringType()) for n in (
        "permit_number", "serial_number", "fanciful_name", "brand_name", "origin_code", "origin_description",
        "class_type_code", "class_type_description", "search_window", "source_key", "manifest_key", "search_run_id", "searched_at")]
)

# One line of a label-image manifest as discovery writes it (ttb_spark.raw.images), before typing.
IMAGE_LINE = StructType(
    [
        StructField(name, data_type)
        for name, data_type in (
            *[(n, StringType()) for n in ("ttb_id", "receipt_date")],
            ("position", IntegerType()),
            *[(n, StringType()) for n in ("file_name", "issued_date", "outcome", "reason")],
            ("http_status", IntegerType()),
            ("content_type", StringType()),
            ("bytes", LongType()),
            *[(n, StringType()) for n in ("sha256", "key")],
            ("attempts", IntegerType()),
            *[(n, StringType()) for n in ("fetched_at", "pending_since", "run_id")],
        )
    ]
)

LABEL_IMAGES = lakehouse.TableSpec(
    name="bronze.label_images",
    comment=(
        "Every label image the raw store holds, as served, one row per TTB ID, label position and file name, from the "
        "complete label-image manifests discovery writes (its first fetch; an image is never fetched twice). The "
        "bytes stay in the raw store at path."
    ),
    keys=("ttb_id", "position", "file_name"),
    partition_by=("receipt_date",),
    hash_exclude=("fetched_at", "fetch_run_id", "manifest_key", "ingest_run_id"),
    properties=lakehouse.CHANGE_FEED,  # silver decodes the images added since its last run
    schema=StructType(
        [
            column("ttb_id", StringType(), "14-digit TTB ID whose certificate shows the label.", nullable=False),
            column("receipt_date", DateType(), "Receipt date from the ID's YYJJJ; partition column."),
            column("position", IntegerType(), "The label's place among the certificate's label images, 1 first (page order).", nullable=False),
            column("file_name", StringType(), "The image's file name as the certificate gives it (free text).", nullable=False),
            column("issued_date", DateType(), "Date the certificate was issued (images are served about 48 hours after)."),
            column("image_key", StringType(), "Raw store key of the image (images/receipt_date=.../<ttb_id>/<position>-<file name digest>)."),
            column("path", StringType(), "Where the image's bytes are: the raw root and the key (a folder path or s3://...)."),
            column("content_type", StringType(), "Content type as served: image/jpeg, image/png or image/gif."),
            column("bytes", LongType(), "Size of the stored image in bytes."),
            column("sha256", StringType(), "SHA-256 (hex) of the stored image."),
            column("fetched_at", TimestampType(), "When the image was fetched (UTC; its object's write time when first named by a held line)."),
            column("fetch_run_id", StringType(), "Id of the run whose manifest first named the image: the fetching run, or the rerun of a killed one."),
            column("manifest_key", StringType(), "Raw store key of the image manifest the row comes from."),
            column("ingest_run_id", StringType(), "Run id of the bronze run that inserted the row."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)
