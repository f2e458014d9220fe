"""Bronze: the raw store's pages and manifests as Delta tables (the original ``ttb_raw_data``).

Reading is distributed: the driver only lists the manifests of the scope's partitions; executors
read each manifest (and its ``_COMPLETE`` summary), then fetch the pages it names, a thread pool
per task so S3 latency overlaps. Both reads are ``mapInArrow`` over DataFrames (no RDD, no
SparkContext), so the stage runs over Spark Connect too.

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
* Discovery (``ttb_spark.discover``) fetches pages by what the registry's search listed and
  records them in per-run manifests (``manifests/discovery/...``, marker beside each). Every
  complete one not yet in ``ops.ingested_manifests`` is ingested with the walk's partitions and
  then recorded there, so each is read once; a page listed by several manifests keeps its latest
  answer, and a source row older than the stored row never overwrites it.
* A manifest line ``withdrawn`` (a stored page whose ID now answers the error page) keeps the
  stored copy and sets ``withdrawn_at``; a later ``found`` clears it.
* ``bronze.search_listings``: every row the search listed (from its answers as served, stored by
  discovery with a manifest), one per TTB ID and completed date.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Iterator

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
    from pyspark.sql import Column, DataFrame, SparkSession

    from ttb_spark.scope import Scope
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
            column("search_window", StringType(), "The search that listed it: completed-date window, class/type range, origin."),
            column("source_key", StringType(), "Raw store key of the answer the row was read from (export.csv or a results page)."),
            column("manifest_key", StringType(), "Raw store key of the search manifest naming that answer."),
            column("search_run_id", StringType(), "Id of the discovery run that searched."),
            column("searched_at", TimestampType(), "When the first search that listed it was answered (UTC)."),
            column("ingest_run_id", StringType(), "Run id of the bronze run that inserted the row or last changed it."),
            column("row_hash", StringType(), "SHA-256 of the listed values; MERGE updates a row only when they change."),
        ]
    ),
)


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


def pending_manifests(spark: SparkSession, store: storage.RawStore, root: str, prefix: str) -> list[str]:
    """Complete manifests under ``prefix`` (marker beside them) not in ops.ingested_manifests yet."""
    from pyspark.sql import functions as F

    keys = set(store.list(prefix))
    complete = {k for k in keys if k.endswith("/" + storage.MANIFEST) and storage.marker_of(k) in keys}
    if not complete:
        return []
    seen = lakehouse.read_table(spark, INGESTED_MANIFESTS, root).where(F.col("manifest_key").startswith(prefix))
    done = {r[0] for r in seen.select("manifest_key").collect()}
    return sorted(complete - done)


def mark_ingested(spark: SparkSession, root: str, keys: list[str], lines: dict[str, int], ingest_run_id: str) -> None:
    """Record manifests as ingested (after their rows are MERGEd: a crash in between re-reads them, harmlessly)."""
    from datetime import datetime, timezone

    if not keys:
        return
    now = datetime.now(timezone.utc)
    rows = [(k, lines.get(k, 0), ingest_run_id, now) for k in keys]
    frame = spark.createDataFrame(rows, "manifest_key string, lines long, ingest_run_id string, ingested_at timestamp")
    lakehouse.merge_upsert(spark, frame, INGESTED_MANIFESTS, root)


def read_search_manifest(store: storage.RawStore, manifest_key: str) -> list[dict]:
    """The listed rows of a complete search manifest's final (unsplit) searches, read from the answers as served."""
    from ttb_spark import search

    rows = []
    for line in store.get(manifest_key).decode("utf-8").splitlines():
        entry = json.loads(line)
        if not entry["final"]:
            continue
        wanted = {"export": ".csv", "results": ".html"}.get(entry["source"])
        for key in (k for k in entry["keys"] if wanted and k.endswith(wanted)):
            body = store.get(key)
            listed = search.parse_export(body) if wanted == ".csv" else list(search.parse_results_page(body).rows)
            rows += [
                r.as_dict() | {"search_window": entry["label"], "source_key": key, "manifest_key": manifest_key,
                               "search_run_id": entry["run_id"], "searched_at": entry["searched_at"]}
                for r in listed
            ]
    return rows


# ---------------------------------------------------------------- executor side: reading objects


def _where(manifest_key: str) -> str:
    """A manifest's partition key (``2024-01-02|001-cola-detail``), or the key of a discovery manifest."""
    parts = dict(seg.split("=", 1) for seg in manifest_key.split("/") if "=" in seg)
    if "method_type" not in parts:
        return manifest_key
    return f"{parts['receipt_date']}|{parts['method_type']}"


def read_manifest(store: storage.RawStore, manifest_key: str) -> list[tuple[str, str]]:
    """(manifest_key, line) for each line, after checking the lines against the ``_COMPLETE`` summary."""
    summary = json.loads(store.get(storage.marker_of(manifest_key)))
    body = store.get(manifest_key)
    if summary.get("manifest_sha256") not in (None, hashlib.sha256(body).hexdigest()):
        raise ReconciliationError(f"{_where(manifest_key)}: its _COMPLETE describes another manifest (SHA-256 differs)")
    lines = [line for line in body.decode("utf-8").splitlines() if line.strip()]
    found = sum(1 for line in lines if json.loads(line).get("outcome") == "found")
    if summary.get("found") is not None and int(summary["found"]) != found:
        raise ReconciliationError(
            f"{_where(manifest_key)}: _COMPLETE says found={summary['found']} but manifest.jsonl has {found} found lines"
        )
    return [(manifest_key, line) for line in lines]


def _read_manifests(args: tuple[str, str, str | None], batches: Iterable[Any]) -> Iterator[Any]:
    """mapInArrow body: batches of manifest keys -> batches of (manifest_key, line)."""
    import pyarrow as pa

    store = storage.open_store(*args)
    schema = arrow_schema(MANIFEST_LINES)
    for batch in batches:
        for key in batch.column("manifest_key").to_pylist():
            lines = [line for _, line in read_manifest(store, key)]
            yield pa.RecordBatch.from_arrays([pa.array([key] * len(lines), pa.string()), pa.array(lines, pa.string())], schema=schema)


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


def _fetch_pages(args: tuple[str, str, str | None], batches: Iterable[Any]) -> Iterator[Any]:
    """mapInArrow body: batches of manifest lines -> the same plus the page bytes (``content``),
    fetched by a thread pool so object-store latency overlaps."""
    import pyarrow as pa

    store = storage.open_store(*args)
    schema = arrow_schema(FETCHED)
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        for batch in batches:
            keys = [checked_page_key(row) for row in batch.to_pylist()]
            content = pa.array(list(pool.map(store.get, keys)), pa.binary())
            yield pa.RecordBatch.from_arrays([*batch.columns, content], schema=schema)


def arrow_schema(schema: StructType) -> Any:
    """The Arrow schema Spark exchanges batches of ``schema`` in (mapInArrow's input and output)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema)


def manifest_lines(spark: SparkSession, args: tuple[str, str, str | None], manifest_keys: list[str]) -> DataFrame:
    """The lines of the given manifests, read on executors (one task per manifest)."""
    keys = spark.createDataFrame([(k,) for k in manifest_keys], "manifest_key string").repartition(max(1, len(manifest_keys)))
    return keys.mapInArrow(lambda batches: _read_manifests(args, batches), MANIFEST_LINES)


def fetch_pages(spark: SparkSession, args: tuple[str, str, str | None], parsed_lines: DataFrame) -> DataFrame:
    """Manifest lines with a stored page plus its bytes (``content``), fetched on executors."""
    stored = parsed_lines.where("key IS NOT NULL").select(*MANIFEST_LINE.fieldNames())
    return stored.mapInArrow(lambda batches: _fetch_pages(args, batches), FETCHED)


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
    """Fetched manifest lines (with ``content`` bytes) -> rows of bronze.pages, the latest fetch of each page."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy("ttb_id", "data_type").orderBy(seen_at().desc(), F.col("run_id").desc())
    timed = fetched.withColumn("fetched_at", F.to_timestamp("fetched_at")).withColumn(
        "withdrawn_at", F.when(F.col("outcome") == "withdrawn", F.to_timestamp("withdrawn_at"))
    )
    return page_rows(timed.withColumn("_latest", F.row_number().over(latest)).where("_latest = 1"), ingest_run_id)


def page_rows(fetched: DataFrame, ingest_run_id: str) -> DataFrame:
    """Fetched pages, one per (ttb_id, data_type), ``fetched_at``/``withdrawn_at`` typed -> rows of bronze.pages."""
    from pyspark.sql import functions as F

    return lakehouse.conform(
        fetched.withColumn("receipt_date", F.to_date("receipt_date"))
        .withColumn("html", F.decode("content", "ISO-8859-1"))
        .withColumn("content_length", F.length("content").cast("long"))
        .withColumn("sha256", F.sha2("content", 256))
        .withColumnRenamed("key", "source_key")
        .withColumnRenamed("run_id", "scrape_run_id")
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        PAGES,
    )


def seen_at() -> Column:
    """When a page row was last seen by the registry's answer: its fetch, or its withdrawal if later."""
    from pyspark.sql import functions as F

    return F.greatest(F.col("fetched_at"), F.col("withdrawn_at"))


def not_older(rows: DataFrame, stored: DataFrame) -> DataFrame:
    """``rows`` without those seen before the stored row of the same page (a re-ingested older
    walk must not undo a later discovery fetch or withdrawal)."""
    from pyspark.sql import functions as F

    current = stored.select("ttb_id", "data_type", seen_at().alias("_stored_at"))
    joined = rows.join(current, ["ttb_id", "data_type"], "left")
    return joined.where(F.col("_stored_at").isNull() | (seen_at() >= F.col("_stored_at"))).select(*rows.columns)


def listing_rows(listed: DataFrame, ingest_run_id: str) -> DataFrame:
    """Listed search rows -> rows of bronze.search_listings, the first search of each (ID, completed date):
    what a run stored is the same whether the manifests of a killed run and of its rerun are ingested together or not."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy("ttb_id", "completed_date").orderBy(F.col("searched_at"), F.col("source_key"))
    return lakehouse.conform(
        listed.withColumn("searched_at", F.to_timestamp("searched_at"))
        .withColumn("_latest", F.row_number().over(latest))
        .where("_latest = 1")
        .withColumn("receipt_date", F.to_date(F.concat(
            F.when(F.substring("ttb_id", 1, 2) >= "90", "19").otherwise("20"), F.substring("ttb_id", 1, 5)), "yyyyDDD"))
        .withColumn("ingest_run_id", F.lit(ingest_run_id)),
        SEARCH_LISTINGS,
    )


LISTING_INPUT = StructType(
    [StructField(n, StringType()) for n in ("ttb_id",)]
    + [StructField("completed_date", DateType())]
    + [StructField(n, StringType()) for n in (
        "permit_number", "serial_number", "fanciful_name", "brand_name", "origin_code", "origin_description",
        "class_type_code", "class_type_description", "search_window", "source_key", "manifest_key", "search_run_id", "searched_at")]
)


def ingest_listings(spark: SparkSession, store: storage.RawStore, root: str, ingest_run_id: str) -> dict[str, int]:
    """Complete search manifests not ingested yet -> bronze.search_listings. A listing already stored (same
    TTB ID and completed date) keeps its row: the export and the results pages can give its names
    differently (unquoted commas), and a re-listing must neither flip them nor rewrite the table."""
    from pyspark.sql import functions as F

    keys = pending_manifests(spark, store, root, storage.SEARCH_MANIFESTS)
    per_key = {key: read_search_manifest(store, key) for key in keys}
    rows = [r for listed in per_key.values() for r in listed]
    inserted = 0
    if rows:
        frame = spark.createDataFrame([tuple(r[f] for f in LISTING_INPUT.fieldNames()) for r in rows], LISTING_INPUT)
        dates = sorted({r["completed_date"] for r in rows})
        stored = lakehouse.read_table(spark, SEARCH_LISTINGS, root).where(F.col("completed_date").isin(dates))
        fresh = listing_rows(frame, ingest_run_id).join(stored.select(*SEARCH_LISTINGS.keys), list(SEARCH_LISTINGS.keys), "left_anti")
        if not fresh.isEmpty():
            inserted = lakehouse.merge_upsert(spark, fresh, SEARCH_LISTINGS, root,
                                              prune={"completed_date": [d.isoformat() for d in dates]})["inserted"]
    mark_ingested(spark, root, keys, {k: len(v) for k, v in per_key.items()}, ingest_run_id)
    return {"search_manifests": len(keys), "listings_read": len(rows), "listings_inserted": inserted}


# ---------------------------------------------------------------- the stage


def run(spark: SparkSession, settings: Settings, scope: Scope) -> dict[str, int]:
    """Raw store -> bronze.pages and bronze.scrape_manifest for the scope's complete partitions and
    every complete discovery manifest not ingested yet; search answers -> bronze.search_listings."""
    args = store_args(settings)
    store = storage.open_store(*args)
    root = settings.pipeline.lakehouse_root
    complete, incomplete = complete_manifests(store, scope)
    discovered = pending_manifests(spark, store, root, storage.DISCOVERY_MANIFESTS)
    listings = ingest_listings(spark, store, root, scope.run_id)
    counts = {"partitions": len(complete), "partitions_incomplete": len(incomplete), "discovery_manifests": len(discovered)} | listings
    manifests = complete + discovered
    if not manifests:
        return counts | {"manifest_lines": 0, "pages_read": 0, "pages_inserted": 0, "pages_updated": 0}
    result = _ingest_manifests(spark, args, root, manifests, scope.run_id)
    mark_ingested(spark, root, discovered, {}, scope.run_id)
    return counts | result


def _ingest_manifests(spark: SparkSession, args: tuple[str, str, str | None], root: str, manifests: list[str],
                      ingest_run_id: str) -> dict[str, int]:
    """The manifests' lines -> bronze.scrape_manifest, their stored pages -> bronze.pages."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    parsed = parsed_manifest(manifest_lines(spark, args, manifests)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        where = parsed.select("receipt_date", "method_type").distinct().collect()
        if not where:  # only empty manifests: nothing to write, and no empty commit to move silver's watermark
            return {"manifest_lines": 0, "manifest_inserted": 0, "pages_read": 0, "pages_inserted": 0, "pages_updated": 0}
        prune = {"receipt_date": sorted({r[0] for r in where}), "method_type": sorted({r[1] for r in where})}
        manifest = manifest_records(parsed, ingest_run_id)
        m = lakehouse.merge_upsert(spark, manifest, SCRAPE_MANIFEST, root, prune=prune)
        fetched = pages(fetch_pages(spark, args, parsed), ingest_run_id)
        stored = lakehouse.read_table(spark, PAGES, root).where(F.col("receipt_date").isin(prune["receipt_date"]))
        page_rows = not_older(fetched, stored).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            read = page_rows.count()
            p = lakehouse.merge_upsert(spark, page_rows, PAGES, root, prune=prune)
        finally:
            page_rows.unpersist()
        return {
            "manifest_lines": parsed.count(),
            "manifest_inserted": m["inserted"],
            "pages_read": read,
            "pages_inserted": p["inserted"],
            "pages_updated": p["updated"],
        }
    finally:
        parsed.unpersist()
