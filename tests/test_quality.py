"""The gold checks against independent sources, each made to fail on tiny frames (or plain values):
bronze found vs gold per receipt day, dimension keys of the published state, label images against their
certificates' labels, freshness, approval drift."""

from __future__ import annotations

from datetime import date, timedelta

from ttb_spark import lakehouse
from ttb_spark.gold import quality

D1, D2 = date(2024, 1, 2), date(2024, 1, 3)
PAGE = "ttb_id string, data_type string, receipt_date date"


def test_found_vs_gold_allows_for_recorded_rejects_and_withdrawals_and_names_the_day_that_differs(spark):
    pages = spark.createDataFrame(
        [("a", "cola-detail", D1), ("a", "certificate", D1), ("b", "cola-detail", D1), ("c", "cola-detail", D1),
         ("d", "cola-detail", D2), ("e", "cola-detail", D2)], PAGE,
    )  # fmt: skip
    rejected = spark.createDataFrame([("b", "cola-detail", D1), ("a", "certificate", D1)], PAGE)  # a keeps its detail page
    withdrawn = spark.createDataFrame([("c", "cola-detail", D1)], PAGE)
    gold = spark.createDataFrame([("a", D1), ("d", D2), ("e", D2)], "ttb_id string, receipt_date date")
    assert quality.found_vs_gold(pages, rejected, withdrawn, gold).passed

    lost = quality.found_vs_gold(pages, rejected, withdrawn, gold.where("ttb_id != 'e'"))
    assert (lost.failing_rows, lost.blocking) == (1, True) and "2024-01-03 2/1" in lost.detail
    unrecorded_reject = quality.found_vs_gold(pages, rejected.where("ttb_id != 'b'"), withdrawn, gold)
    assert unrecorded_reject.failing_rows == 1 and "2024-01-02 2/1" in unrecorded_reject.detail
    invented = gold.unionByName(spark.createDataFrame([("z", D2)], "ttb_id string, receipt_date date"))
    assert quality.found_vs_gold(pages, rejected, withdrawn, invented).failing_rows == 1


def test_a_published_dimension_key_removed_while_facts_reference_it_fails(spark):
    before = spark.createDataFrame([(1,), (2,), (3,)], "company_key long")
    after = spark.createDataFrame([(1,), (3,)], "company_key long")
    facts = spark.createDataFrame([("t1", 1), ("t2", 2), ("t3", None)], "ttb_id string, company_key long")

    def keys(before_df, after_df, fact_df):
        return quality.DimensionKeys("gold.dim_companies", "company_key", before_df, after_df, [("gold.fact_products", fact_df, "company_key")])

    [lost] = quality.published_keys_kept([keys(before, after, facts)])
    assert (lost.name, lost.failing_rows, lost.blocking) == ("fk_published:gold.dim_companies.company_key", 1, True)
    assert "1 published company_key value(s) removed" in lost.detail and "e.g. t2" in lost.detail
    # removed but unreferenced, and nothing published before: both pass
    unreferenced, first_run = quality.published_keys_kept([keys(before, after, facts.where("ttb_id != 't2'")), keys(None, after, facts)])
    assert unreferenced.passed and first_run.passed and "nothing published" in first_run.detail


def test_images_within_labels_fails_for_a_cola_with_more_images_than_labels_or_no_certificate(spark):
    certificates = spark.createDataFrame([("a", 2), ("b", 1), ("c", 3)], "ttb_id string, label_image_count int")
    images = spark.createDataFrame([("a", 1), ("a", 2), ("b", 1), ("c", 2)], "ttb_id string, position int")
    ok = quality.images_within_labels(images, certificates)
    assert ok.passed and ok.blocking and ok.name == "images_within_labels:gold.fact_label_images"
    extra = images.unionByName(spark.createDataFrame([("b", 2), ("z", 1)], "ttb_id string, position int"))
    failed = quality.images_within_labels(extra, certificates)
    assert failed.failing_rows == 2 and "(e.g. b, z)" in failed.detail


def test_freshness_warns_then_blocks_past_its_thresholds():
    run = date(2024, 3, 10)
    fresh = quality.freshness(run, run - timedelta(days=1), run, warn_days=4, block_days=10)
    assert fresh.passed
    stale = quality.freshness(run, run - timedelta(days=6), run, warn_days=4, block_days=10)
    assert (stale.passed, stale.blocking, stale.failing_rows) == (False, False, 2)
    ingest_stale = quality.freshness(run, run, run - timedelta(days=12), warn_days=4, block_days=10)
    assert (ingest_stale.passed, ingest_stale.blocking) == (False, True)
    assert quality.freshness(run, run - timedelta(days=400), run, warn_days=4, block_days=None).blocking is False
    empty = quality.freshness(run, None, None, warn_days=4, block_days=10)
    assert not empty.passed and empty.blocking and "nothing in gold" in empty.detail


def test_approval_drift_flags_a_day_far_from_its_trailing_baseline():
    start = date(2024, 2, 1)
    baseline = {start + timedelta(days=i): 400 + i for i in range(20) if (start + timedelta(days=i)).weekday() < 5}
    day = start + timedelta(days=21)
    assert quality.approval_drift(baseline | {day: 380}, 28, 3.0, blocking=False).passed
    low = quality.approval_drift(baseline | {day: 12}, 28, 3.0, blocking=False)
    assert not low.passed and not low.blocking and f"{day}: 12 approvals" in low.detail
    high = quality.approval_drift(baseline | {day: 5000}, 28, 3.0, blocking=True)
    assert not high.passed and high.blocking
    short = quality.approval_drift({start: 400, day: 3}, 28, 3.0, blocking=False)
    assert short.passed and "too short" in short.detail


def test_each_chunk_of_a_run_keeps_its_own_check_results(spark, tmp_path):
    """Issue #23 (8): a multi-chunk run writes its checks once per chunk (gold runs per chunk); the later
    chunk's results sit beside the earlier chunk's, and writing a chunk's results again changes nothing."""
    root = str(tmp_path / "lakehouse")
    result = quality.CheckResult("pk:gold.ttb_consolidated", "gold.ttb_consolidated", True, 0, "one row per TTB ID")
    first, second = "2024-01-02..2024-01-08 (7 receipt dates)", "2024-01-09..2024-01-15 (7 receipt dates)"
    for scope in (first, second, second):
        lakehouse.merge_upsert(spark, quality.to_frame(spark, "run-1", [result], scope), quality.QUALITY_CHECKS, root)
    rows = lakehouse.read_table(spark, quality.QUALITY_CHECKS, root).collect()
    assert sorted((r.run_id, r.scope, r.check_name) for r in rows) == [("run-1", s, result.name) for s in (first, second)]
