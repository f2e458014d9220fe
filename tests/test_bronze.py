"""Bronze: raw store (local and S3) -> bronze.pages / bronze.scrape_manifest, idempotent MERGEs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from raw_pages import END, SPIRIT, START, WINE, fill_real, manifest_line, real_page, write_partition
from ttb_spark import bronze, lakehouse
from ttb_spark.raw import storage
from ttb_spark.scope import ReceiptDates
from ttb_spark.registry.ttb_id import TTBId, receipt_date_column

from conftest import make_settings

TYPES = ("cola-detail", "certificate")
FETCHED = dt.datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)


def scope(run_id: str) -> ReceiptDates:
    return ReceiptDates(START, END, ("001",), TYPES, run_id=run_id)


def expected_pages(spark, pages: dict[tuple[str, str], bytes], ingest_run_id: str, scrape_run_id: str = "scrape-1"):
    """bronze.pages rows built here from the bytes (hashlib, latin-1), not by the code under test."""
    rows = []
    for (ttb_id, data_type), content in pages.items():
        tid = TTBId(ttb_id)
        mt = f"001-{data_type}"
        key = f"pages/method_type={mt}/receipt_date={tid.receipt_date}/{ttb_id}.html"
        rows.append((ttb_id, data_type, "001", tid.receipt_date, mt, tid.sequence, content.decode("latin-1"), len(content),
                     hashlib.sha256(content).hexdigest(), 200, FETCHED, None, key, scrape_run_id, ingest_run_id))
    cols = [f for f in bronze.PAGES.schema.fieldNames() if f != "row_hash"]
    schema = bronze.PAGES.schema
    return spark.createDataFrame(rows, ", ".join(f"{c} {schema[c].dataType.simpleString()}" for c in cols))


def lines_frame(spark, lines: list[dict], key: str = "manifests/x/manifest.jsonl"):
    return spark.createDataFrame([(key, json.dumps(line)) for line in lines], bronze.MANIFEST_LINES)


def test_manifest_and_page_transforms(spark):
    content = real_page(WINE, "cola-detail")
    found = manifest_line(WINE, "cola-detail", content, "scrape-1")
    missing = manifest_line("25094001000052", "cola-detail", None, "scrape-1", outcome="not_found")
    parsed = bronze.parsed_manifest(lines_frame(spark, [found, missing]))

    manifest = bronze.manifest_records(parsed, "ingest-1").drop("row_hash")
    expected = spark.createDataFrame(
        [
            (WINE, "cola-detail", "001", dt.date(2025, 4, 4), "001-cola-detail", 51, "found", None, 200, len(content),
             hashlib.sha256(content).hexdigest(), FETCHED, 1, found["key"], "scrape-1", "manifests/x/manifest.jsonl", "ingest-1"),
            ("25094001000052", "cola-detail", "001", dt.date(2025, 4, 4), "001-cola-detail", 52, "not_found", None, 200, None,
             None, FETCHED, 1, None, "scrape-1", "manifests/x/manifest.jsonl", "ingest-1"),
        ],
        manifest.schema,
    )
    assert_df_equality(manifest, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)

    fetched = spark.createDataFrame(
        [(*[found[f] for f in bronze.MANIFEST_LINE.fieldNames()], bytearray(content))], bronze.FETCHED
    )
    pages = bronze.pages(fetched, "ingest-1")
    assert_df_equality(
        pages.drop("row_hash"),
        expected_pages(spark, {(WINE, "cola-detail"): content}, "ingest-1"),
        ignore_nullable=True, ignore_metadata=True,
    )
    assert pages.select(F.encode("html", "ISO-8859-1")).first()[0] == content  # lossless as served


def test_row_hash_follows_content_only(spark):
    content = real_page(WINE, "cola-detail")
    line = manifest_line(WINE, "cola-detail", content, "scrape-1")
    refetched = dict(line, fetched_at="2026-12-01T00:00:00+00:00", run_id="scrape-2")
    rows = [(*[l[f] for f in bronze.MANIFEST_LINE.fieldNames()], bytearray(c)) for l, c in
            [(line, content), (refetched, content), (line, content.replace(b"GINGLINGER-FIX", b"GINGLINGER-FOX"))]]
    assert content.count(b"GINGLINGER-FIX") > 0
    hashes = [r[0] for r in bronze.pages(spark.createDataFrame([rows[0]], bronze.FETCHED), "a").select("row_hash").collect()]
    hashes += [bronze.pages(spark.createDataFrame([r], bronze.FETCHED), "b").select("row_hash").first()[0] for r in rows[1:]]
    assert hashes[0] == hashes[1] != hashes[2]


def test_receipt_date_column_is_the_ttb_ids_rule(spark):
    """The Spark column bronze derives listings' receipt dates with agrees with TTBId.receipt_date: both
    centuries of the two-digit year, the pivot's edges, a leap day and a year's last day."""
    ids = ["89001001000001", "90001001000001", "99365001000001", "00366001000001", "24060003000123", "23365002000009"]
    got = spark.createDataFrame([(i,) for i in ids], "ttb_id string").select("ttb_id", receipt_date_column("ttb_id").alias("d"))
    assert {r.ttb_id: r.d for r in got.collect()} == {i: TTBId(i).receipt_date for i in ids}


def test_checked_page_key_rejects_a_key_of_another_id():
    line = manifest_line(WINE, "cola-detail", b"x", "s")
    assert bronze.checked_page_key(line) == line["key"]
    bad = dict(line, key=line["key"].replace(WINE, "25094001000099"))
    with pytest.raises(bronze.ReconciliationError, match="expected"):
        bronze.checked_page_key(bad)
    with pytest.raises(ValueError):
        bronze.checked_page_key(dict(line, ttb_id="25094009000051"))


def test_summary_that_disagrees_with_the_manifest_fails_naming_the_partition(spark, tmp_path):
    settings = make_settings(tmp_path)
    store = storage.raw_store(settings)
    part = write_partition(store, START, "cola-detail", {WINE: real_page(WINE, "cola-detail")})
    summary = json.loads(store.get(storage.complete_key(part)))
    store.put(storage.complete_key(part), json.dumps(summary | {"found": 2}).encode())
    with pytest.raises(Exception, match=r"2025-04-04\|001-cola-detail: _COMPLETE says found=2 but manifest.jsonl has 1"):
        bronze.run(spark, settings, scope("ingest-x"))
    assert not lakehouse.table_exists(spark, bronze.PAGES, settings.pipeline.lakehouse_root)


def _table(spark, spec, root):
    return lakehouse.read_table(spark, spec, root).orderBy(*spec.keys)


def test_local_run_is_idempotent_and_a_changed_page_updates_its_row(spark, tmp_path):
    settings = make_settings(tmp_path)
    root = settings.pipeline.lakehouse_root
    store = storage.raw_store(settings)
    fill_real(store)
    # A partition still being scraped: its manifest has no _COMPLETE, so it waits for the next run.
    write_partition(store, dt.date(2025, 4, 5), "cola-detail", {"25095001000001": real_page(WINE, "cola-detail")}, complete=False)

    first = bronze.run(spark, settings, scope("ingest-1"))
    assert first == {"partitions": 4, "partitions_incomplete": 1, "manifest_lines": 8, "manifest_inserted": 8,
                     "pages_read": 4, "pages_inserted": 4, "pages_updated": 0, "discovery_manifests": 0,
                     "search_manifests": 0, "listings_read": 0, "listings_inserted": 0}
    originals = {(t, d): real_page(t, d) for t in (WINE, SPIRIT) for d in TYPES}
    pages = _table(spark, bronze.PAGES, root)
    assert_df_equality(pages.drop("row_hash"), expected_pages(spark, originals, "ingest-1"),
                       ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    manifest = _table(spark, bronze.SCRAPE_MANIFEST, root)
    assert sorted(tuple(r) for r in manifest.groupBy("outcome").count().collect()) == [("found", 4), ("not_found", 4)]

    detail = spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(bronze.PAGES, root)}").first()
    assert detail["description"] == bronze.PAGES.comment and detail["partitionColumns"] == ["receipt_date", "method_type"]
    assert all(f.metadata.get("comment") for f in lakehouse.read_table(spark, bronze.PAGES, root).schema)

    # Rerun: nothing changes, the second commit touches no row, not even ingest_run_id.
    pages_before, manifest_before = pages.collect(), manifest.collect()
    second = bronze.run(spark, settings, scope("ingest-2"))
    assert (second["pages_inserted"], second["pages_updated"], second["manifest_inserted"]) == (0, 0, 0)
    assert _table(spark, bronze.PAGES, root).collect() == pages_before
    assert _table(spark, bronze.SCRAPE_MANIFEST, root).collect() == manifest_before
    assert lakehouse.last_operation_metrics(spark, bronze.PAGES, root) == {"inserted": 0, "updated": 0, "deleted": 0}

    # The wine's detail page changes on a re-scrape: exactly its row is updated.
    changed = real_page(WINE, "cola-detail").replace(b"GINGLINGER-FIX", b"GINGLINGER-FOX")
    write_partition(store, START, "cola-detail", {WINE: changed}, run_id="scrape-2")
    third = bronze.run(spark, settings, scope("ingest-3"))
    assert (third["pages_inserted"], third["pages_updated"], third["manifest_inserted"]) == (0, 1, 1)
    after = {(r["ttb_id"], r["data_type"]): r for r in _table(spark, bronze.PAGES, root).collect()}
    before = {(r["ttb_id"], r["data_type"]): r for r in pages_before}
    assert [k for k in before if after[k] != before[k]] == [(WINE, "cola-detail")]
    row = after[(WINE, "cola-detail")]
    assert (row["sha256"], row["ingest_run_id"], row["scrape_run_id"]) == (hashlib.sha256(changed).hexdigest(), "ingest-3", "scrape-2")


def test_reads_the_raw_store_on_s3(spark, tmp_path, s3_server, s3_bucket, s3_executor_env):
    settings = make_settings(tmp_path, pipeline={"raw_root": f"s3://{s3_bucket}/raw", "s3_endpoint_url": s3_server})
    fill_real(storage.raw_store(settings))
    counts = bronze.run(spark, settings, scope("ingest-s3"))
    assert (counts["partitions"], counts["pages_read"], counts["pages_inserted"]) == (4, 4, 4)
    originals = {(t, d): real_page(t, d) for t in (WINE, SPIRIT) for d in TYPES}
    assert_df_equality(
        _table(spark, bronze.PAGES, settings.pipeline.lakehouse_root).drop("row_hash"),
        expected_pages(spark, originals, "ingest-s3"),
        ignore_row_order=True, ignore_nullable=True, ignore_metadata=True,
    )
