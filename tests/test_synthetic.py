"""Synthetic bronze: the simulator's pages rendered straight into bronze.pages, as the scraper and
bronze would have stored them, and usable by silver unchanged."""

from __future__ import annotations

import hashlib
from datetime import date

from conftest import make_settings
from ttb_spark import bronze, lakehouse, silver, synthetic
from ttb_spark.raw import storage
from ttb_spark.registry import simulator
from ttb_spark.partitions import Partition
from ttb_spark.registry.ttb_id import TTBId

FIRST, LAST = date(2025, 1, 6), date(2025, 1, 7)
SCALE = 0.01  # registry profile: 6-13 e-filed COLAs a weekday, a few on paper


def test_generated_bronze_holds_every_public_page_as_served_and_silver_parses_it(spark, tmp_path):
    settings = make_settings(tmp_path)
    root = settings.pipeline.lakehouse_root
    registry = simulator.SyntheticRegistry(0, SCALE, "registry")
    expected = {
        (ttb_id, data_type): registry.render(registry.record(ttb_id), data_type)
        for day in (FIRST, LAST) for method in ("000", "001", "002", "003") for ttb_id in registry.public_ids(day, method)
        for data_type in ("cola-detail", "certificate")
    }  # fmt: skip
    assert synthetic.write(spark, root, FIRST, LAST, seed=0, scale=SCALE) == len(expected)
    rows = lakehouse.read_table(spark, bronze.PAGES, root).collect()
    assert {(r.ttb_id, r.data_type) for r in rows} == set(expected)
    for r in rows:
        served = expected[(r.ttb_id, r.data_type)]
        assert r.html.encode("iso-8859-1") == served and r.sha256 == hashlib.sha256(served).hexdigest()
        tid = TTBId(r.ttb_id)
        assert r.source_key == storage.page_key(Partition(tid.receipt_date, tid.receipt_method, r.data_type), tid)
        assert r.receipt_date == tid.receipt_date and r.method_type == f"{tid.receipt_method}-{r.data_type}"
    counts = silver.process(spark, settings, lakehouse.read_table(spark, bronze.PAGES, root))
    assert counts["pages_processed"] == len(expected) and counts["partitions_unbalanced"] == 0
    assert lakehouse.read_table(spark, silver.REJECTS, root).isEmpty()
    details = {r.ttb_id: r for r in lakehouse.read_table(spark, silver.COLA_DETAILS, root).collect()}
    assert set(details) == {k[0] for k in expected}
    for ttb_id, row in details.items():
        listed = registry.listing(ttb_id, registry.record(ttb_id).approval_date)
        assert (row.permit_number, row.brand_name) == (listed.permit_number, listed.brand_name)


def test_change_driven_silver_takes_a_backlog_in_page_bounded_batches_with_the_same_result(spark, tmp_path):
    from dataclasses import replace

    from chispa import assert_df_equality

    from ttb_spark.scope import ChangesSince

    days = (date(2025, 1, 6), date(2025, 1, 8))
    whole, batched = make_settings(tmp_path / "whole"), make_settings(tmp_path / "batched")
    for s in (whole, batched):
        synthetic.write(spark, s.pipeline.lakehouse_root, *days, seed=1, scale=SCALE)
    root = batched.pipeline.lakehouse_root
    per_date = {r[0]: r[1] for r in lakehouse.read_table(spark, bronze.PAGES, root).groupBy("receipt_date").count().collect()}
    limit = max(per_date.values())  # every date fits, no two do: one batch per receipt date
    assert silver.date_batches(per_date, limit) == [[d] for d in sorted(per_date)] and len(per_date) == 3
    batched = batched.model_copy(update={"processing": batched.processing.model_copy(update={"max_pages_per_batch": limit})})
    before = lakehouse.current_version(spark, silver.COLA_DETAILS, root)
    scope = ChangesSince(days[1])

    counts = silver.run(spark, batched, scope)

    expected = silver.process(spark, whole, lakehouse.read_table(spark, bronze.PAGES, whole.pipeline.lakehouse_root))
    assert counts == expected and counts["pages_processed"] == sum(per_date.values())
    for spec in (*silver.TABLES.values(), silver.REJECTS, silver.WITHDRAWALS):
        got, want = (lakehouse.read_table(spark, spec, s.pipeline.lakehouse_root) for s in (batched, whole))
        assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    merges = spark.sql(f"DESCRIBE HISTORY {lakehouse.table_ref(silver.COLA_DETAILS, root)}").where(f"version > {before or -1}")
    assert merges.where("operation = 'MERGE'").count() == len(per_date)  # one MERGE per batch
    assert silver.run(spark, batched, replace(scope, run_id="again")) == {"pages_processed": 0}


def test_date_batches_keep_date_order_and_the_page_bound():
    d = [date(2025, 1, n) for n in range(1, 6)]
    assert silver.date_batches({d[2]: 5, d[0]: 4, d[1]: 3, d[3]: 9, d[4]: 1}, 8) == [[d[0], d[1]], [d[2]], [d[3]], [d[4]]]
    assert silver.date_batches({d[0]: 2, d[1]: 2}, 10) == [[d[0], d[1]]]
    assert silver.date_batches({}, 10) == []
