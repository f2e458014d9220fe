"""The bronze stage: the scope's complete partition manifests and the pending discovery and label-image manifests
read on the executors (:mod:`.executors`), the pending search manifests on the driver; transformed
(:mod:`.transforms`), MERGEd into the bronze tables, and the discovery, label-image and search manifests recorded
in ops.ingested_manifests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ttb_spark import lakehouse

from ttb_spark.raw import storage
from ttb_spark.bronze.executors import ReconciliationError, fetch_pages, manifest_lines, store_args
from ttb_spark.bronze.tables import IMAGE_LINE, INGESTED_MANIFESTS, LABEL_IMAGES, LISTING_INPUT, PAGES, SCRAPE_MANIFEST, SEARCH_LISTINGS
from ttb_spark.bronze.transforms import label_image_rows, listing_rows, manifest_records, not_older, pages, parsed_manifest
from ttb_spark.registry.ttb_id import TTBId

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.scope import ReceiptDates
    from ttb_spark.settings import Settings


def complete_manifests(store: storage.RawStore, scope: ReceiptDates) -> tuple[list[str], list[str]]:
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

    complete = set(storage.complete_manifests(store, prefix))
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
    from ttb_spark.registry import search

    rows = []
    for entry in storage.manifest_entries(store, manifest_key):
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


def ingest_listings(spark: SparkSession, store: storage.RawStore, root: str, ingest_run_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """Complete search manifests not ingested yet -> bronze.search_listings; the counts, and the manifests read
    (key -> rows) for :func:`mark_ingested`. A listing already stored (same TTB ID and completed date) keeps its
    row: the export and the results pages can give its names differently (unquoted commas), and a re-listing
    must neither flip them nor rewrite the table."""
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
    read = {k: len(v) for k, v in per_key.items()}
    return {"search_manifests": len(keys), "listings_read": len(rows), "listings_inserted": inserted}, read


def ingest_label_images(spark: SparkSession, args: tuple[str, str, str | None], store: storage.RawStore, root: str,
                        ingest_run_id: str) -> tuple[dict[str, int], list[str]]:
    """Complete label-image manifests not ingested yet -> bronze.label_images (a label already there keeps its
    row: an image is final); the counts, and the manifests read for :func:`mark_ingested`."""
    from pyspark.sql import functions as F

    keys = pending_manifests(spark, store, root, storage.IMAGE_MANIFESTS)
    inserted = 0
    if keys:
        rows = label_image_rows(parsed_manifest(manifest_lines(spark, args, keys), IMAGE_LINE), store.uri, ingest_run_id)
        rows = rows.localCheckpoint()  # read once: its keys checked, then the MERGE
        named = rows.select("ttb_id", "position", "file_name", "image_key", "receipt_date").collect()
        for row in named:
            if row["image_key"] != storage.image_key(TTBId(row["ttb_id"]), row["position"], row["file_name"]):
                raise ReconciliationError(f"label-image manifest line for {row['ttb_id']} names key {row['image_key']!r}, "
                                          "not the one its TTB ID, position and file name give")
        dates = sorted({row["receipt_date"] for row in named})
        if dates:
            stored = lakehouse.read_table(spark, LABEL_IMAGES, root).where(F.col("receipt_date").isin(dates))
            fresh = rows.join(stored.select(*LABEL_IMAGES.keys), list(LABEL_IMAGES.keys), "left_anti")
            if not fresh.isEmpty():  # held lines of images already there: no commit
                inserted = lakehouse.merge_upsert(spark, fresh, LABEL_IMAGES, root,
                                                  prune={"receipt_date": [d.isoformat() for d in dates]})["inserted"]
    return {"image_manifests": len(keys), "images_inserted": inserted}, keys


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates) -> dict[str, int]:
    """Raw store -> bronze.pages and bronze.scrape_manifest for the scope's complete partitions and
    every complete discovery manifest not ingested yet; search answers -> bronze.search_listings; label images
    -> bronze.label_images."""
    args = store_args(settings)
    store = storage.open_store(*args)
    root = settings.pipeline.lakehouse_root
    complete, incomplete = complete_manifests(store, scope)
    discovered = pending_manifests(spark, store, root, storage.DISCOVERY_MANIFESTS)
    listings, listed = ingest_listings(spark, store, root, scope.run_id)
    shots, shot = ingest_label_images(spark, args, store, root, scope.run_id)
    counts = {"partitions": len(complete), "partitions_incomplete": len(incomplete), "discovery_manifests": len(discovered)} | listings
    counts |= shots if shot else {}
    manifests = complete + discovered
    result = {"manifest_lines": 0, "pages_read": 0, "pages_inserted": 0, "pages_updated": 0}
    if manifests:
        result = _ingest_manifests(spark, args, root, manifests, scope.run_id)
    # one MERGE for the search, label-image and discovery manifests read, after all their writes
    mark_ingested(spark, root, [*listed, *shot, *discovered], listed, scope.run_id)
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
