"""Synthetic bronze: the simulator's pages rendered straight into bronze.pages, as the scraper and
bronze would have stored them, and usable by silver unchanged."""

from __future__ import annotations

import hashlib
from datetime import date

from conftest import make_settings
from ttb_spark import bronze, lakehouse, silver, simulator, storage, synthetic
from ttb_spark.partitions import Partition
from ttb_spark.ttb_id import TTBId

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
