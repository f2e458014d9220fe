"""Bronze: the raw store's pages and manifests as Delta tables (the original ``ttb_raw_data``).

Reading is distributed: the driver only lists the manifests of the scope's partitions; executors
read each manifest (and its ``_COMPLETE`` summary), then fetch the pages it names, a thread pool
per task so S3 latency overlaps.

Decisions:

* Only **complete** partitions (``_COMPLETE`` present) are ingested. The manifest is the statement
  of what a walk found, so counts reconcile exactly: per partition, the summary's ``found`` must
  equal the manifest's ``found`` lines, and every manifest line with a stored page becomes one
  ``bronze.pages`` row. Partitions still being scraped are skipped (counted as
  ``partitions_incomplete``) and picked up by the next run after the scraper marks them complete.
* The page is kept as served, as a string decoded from ISO-8859-1 (the registry's declared
  charset). That decoding maps each byte to one code point, so it is lossless:
  ``encode(html, 'ISO-8859-1')`` gives back the exact bytes, whose SHA-256 is ``sha256``.
* ``bronze.pages`` is MERGEd on (ttb_id, data_type) and its ``row_hash`` covers the content only
  (not fetch time, scrape or ingest run), so a re-fetch of an unchanged page or a rerun of this
  stage rewrites nothing; a changed page updates exactly its row.
* ``bronze.scrape_manifest`` keeps every walk's attempt lines (key includes the scrape run id).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import TYPE_CHECKING, Iterable, Iterator

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

from ttb_spark import lakehouse, storage
from ttb_spark.lakehouse import column
from ttb_spark.partitions import Partition
from ttb_spark.ttb_id import TTBId

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.runner import Scope
    from ttb_spark.settings import Settings

FETCH_THREADS = 16

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
            *[(n, StringType()) for n in ("key", "run_id")],
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


class ReconciliationError(RuntimeError):
    """Counts that must agree do not (names the partition and the counts)."""


# ---------------------------------------------------------------- driver side: what to read


def store_args(settings: Settings) -> tuple[str, str, str | None]:
    """Picklable arguments of storage.open_store, to rebuild the raw store on executors."""
    p = settings.pipeline
    return p.raw_root, p.aws_region, p.s3_endpoint_url


def complete_manifests(store: storage.RawStore, scope: Scope) -> tuple[list[str], list[str]]:
    """Manifest keys of the scope's partitions: (complete ones, incomplete ones).

    One listing per method_type instead of a request per partition.
    """
    wanted = {p.key: p for p in scope.partitions()}
    complete: list[str] = []
    incomplete: list[str] = []
    for method_type in sorted({p.method_type for p in wanted.values()}):
        keys = set(store.list(f"manifests/method_type={method_type}/"))
        for part in (p for p in wanted.values() if p.method_type == method_type):
            manifest = storage.manifest_key(part)
            if manifest not in keys:
                continue
            (complete if storage.complete_key(part) in keys else incomplete).append(manifest)
    return sorted(complete), sorted(incomplete)


# ---------------------------------------------------------------- executor side: reading objects


def _partition_of(manifest_key: str) -> Partition:
    """The partition a manifest key belongs to (``manifests/method_type=M/receipt_date=D/manifest.jsonl``)."""
    parts = dict(seg.split("=", 1) for seg in manifest_key.split("/") if "=" in seg)
    method, data_type = parts["method_type"].split("-", 1)
    return Partition(date.fromisoformat(parts["receipt_date"]), method, data_type)


def read_manifest(store: storage.RawStore, manifest_key: str) -> list[tuple[str, str]]:
    """(manifest_key, line) for each line, after checking the lines against the ``_COMPLETE`` summary."""
    part = _partition_of(manifest_key)
    summary = json.loads(store.get(storage.complete_key(part)))
    lines = [line for line in store.get(manifest_key).decode("utf-8").splitlines() if line.strip()]
    found = sum(1 for line in lines if json.loads(line).get("outcome") == "found")
    if summary.get("found") is not None and int(summary["found"]) != found:
        raise ReconciliationError(
            f"partition {part.key}: _COMPLETE says found={summary['found']} but manifest.jsonl has {found} found lines"
        )
    return [(manifest_key, line) for line in lines]


def _read_manifests(args: tuple[str, str, str | None], keys: Iterable[str]) -> Iterator[tuple[str, str]]:
    store = storage.open_store(*args)
    for key in keys:
        yield from read_manifest(store, key)


def checked_page_key(row: dict) -> str:
    """The manifest line's page key, after checking it is the key its validated TTB ID must have."""
    ttb_id = TTBId(row["ttb_id"])
    part = Partition(ttb_id.receipt_date, ttb_id.receipt_method, row["data_type"])
    expected = storage.page_key(part, ttb_id)
    if row["key"] != expected or row["method_type"] != part.method_type:
        raise ReconciliationError(
            f"manifest line for {ttb_id} ({row['method_type']}) names key {row['key']!r}, expected {expected!r}"
        )
    return expected


def _fetch_pages(args: tuple[str, str, str | None], rows: Iterable) -> Iterator[tuple]:
    store = storage.open_store(*args)
    batch = list(rows)
    keys = [checked_page_key(r.asDict()) for r in batch]
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        for row, content in zip(batch, pool.map(store.get, keys)):
            yield (*row, bytearray(content))


def manifest_lines(spark: SparkSession, args: tuple[str, str, str | None], manifest_keys: list[str]) -> DataFrame:
    """The lines of the given manifests, read on executors (one task per manifest)."""
    rdd = spark.sparkContext.parallelize(manifest_keys, max(1, len(manifest_keys))).mapPartitions(
        lambda keys: _read_manifests(args, keys)
    )
    return spark.createDataFrame(rdd, MANIFEST_LINES)


def fetch_pages(spark: SparkSession, args: tuple[str, str, str | None], parsed_lines: DataFrame) -> DataFrame:
    """Manifest lines with a stored page plus its bytes (``content``), fetched on executors."""
    stored = parsed_lines.where("key IS NOT NULL").select(*MANIFEST_LINE.fieldNames())
    rdd = stored.rdd.mapPartitions(lambda rows: _fetch_pages(args, rows))
    return spark.createDataFrame(rdd, FETCHED)


# ---------------------------------------------------------------- pure transforms


def parsed_manifest(lines: DataFrame) -> DataFrame:
    """Manifest JSON lines -> one column per field (MANIFEST_LINE), plus manifest_key."""
    from pyspark.sql import functions as F

    return lines.select(F.col("manifest_key"), F.from_json("line", MANIFEST_LINE).alias("m")).select("manifest_key", "m.*")


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
    """Fetched manifest lines (with ``content`` bytes) -> rows of bronze.pages."""
    from pyspark.sql import functions as F

    return lakehouse.conform(
        fetched.withColumn("receipt_date", F.to_date("receipt_date"))
        .withColumn("fetched_at", F.to_timestamp("fetched_at"))
        .withColumn("withdrawn_at", F.lit(None).cast("timestamp"))
        .withColumn("html", F.decode("content", "ISO-8859-1"))
        .withColumn("content_length", F.length("content").cast("long"))
        .withColumn("sha256", F.sha2("content", 256))
        .withColumnRenamed("key", "source_key")
        .withColumnRenamed("run_id", "scrape_run_id")
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        PAGES,
    )


# ---------------------------------------------------------------- the stage


def run(spark: SparkSession, settings: Settings, scope: Scope) -> dict[str, int]:
    """Raw store -> bronze.pages and bronze.scrape_manifest for the scope's complete partitions."""
    from pyspark import StorageLevel

    args = store_args(settings)
    complete, incomplete = complete_manifests(storage.open_store(*args), scope)
    counts = {"partitions": len(complete), "partitions_incomplete": len(incomplete)}
    if not complete:
        return counts | {"manifest_lines": 0, "pages_read": 0, "pages_inserted": 0, "pages_updated": 0}
    parsed = parsed_manifest(manifest_lines(spark, args, complete)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        root = settings.pipeline.lakehouse_root
        dates = sorted({_partition_of(k).receipt_date.isoformat() for k in complete})
        method_types = sorted({_partition_of(k).method_type for k in complete})
        prune = {"receipt_date": dates, "method_type": method_types}
        manifest = manifest_records(parsed, scope.run_id)
        m = lakehouse.merge_upsert(spark, manifest, SCRAPE_MANIFEST, root, prune=prune)
        page_rows = pages(fetch_pages(spark, args, parsed), scope.run_id).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            read = page_rows.count()
            p = lakehouse.merge_upsert(spark, page_rows, PAGES, root, prune=prune)
        finally:
            page_rows.unpersist()
        return counts | {
            "manifest_lines": parsed.count(),
            "manifest_inserted": m["inserted"],
            "pages_read": read,
            "pages_inserted": p["inserted"],
            "pages_updated": p["updated"],
        }
    finally:
        parsed.unpersist()
