"""Markers that never lie: a re-walk killed half way leaves bronze ingesting the last complete walk
(or nothing), never a mixture; a stored page whose ID now answers the error page is recorded
withdrawn, in the manifest and in bronze.pages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import date, timedelta

from conftest import make_settings
from ttb_spark import bronze, lakehouse
from ttb_spark.raw import scrape
from ttb_spark.registry import parse, simulator
from ttb_spark.partitions import Partition
from ttb_spark.scope import ReceiptDates
from ttb_spark.raw.storage import complete_key, manifest_key, open_store, page_key
from ttb_spark.registry.ttb_id import TTBId

GONE = "24017001000124"  # seed 0, scale 0.05: approved 2024-02-05, withdrawn from public view on 2024-03-02
DAY = TTBId(GONE).receipt_date
DETAIL = Partition(DAY, "001", "cola-detail")
CERTIFICATE = Partition(DAY, "001", "certificate")
WITHDRAWN_ON = date(2024, 3, 2)


def walk_settings(tmp_path, base_url):
    return make_settings(
        tmp_path,
        pipeline={"partition_start_date": DAY, "partition_end_date": DAY, "receipt_methods": ["001"]},
        extraction={"registry_base_url": base_url, "use_simulator": False, "consecutive_failure_threshold": 200},
    )


def walk(settings, partitions, run_id):
    return list(scrape.scrape_slice([(0, [(p, True) for p in partitions])], settings, run_id, 1))


def lines(store, partition):
    return [json.loads(line) for line in store.get(manifest_key(partition)).decode().splitlines()]


def bronze_pages(spark, settings):
    table = lakehouse.read_table(spark, bronze.PAGES, settings.pipeline.lakehouse_root)
    return sorted((r.ttb_id, r.data_type, r.sha256, r.scrape_run_id) for r in table.collect())


def test_a_rewalk_killed_half_way_never_pairs_an_old_marker_with_new_pages(spark, tmp_path):
    with simulator.running(seed=0, scale=0.05, today=date(2024, 1, 25), faults={"latency": 0.02}) as sim:
        settings = walk_settings(tmp_path, sim.base_url)
        store = open_store(settings.pipeline.raw_root)
        walk(settings, [DETAIL], "walk-1")
        assert store.exists(complete_key(DETAIL))
        assert json.loads(store.get(complete_key(DETAIL)))["manifest"] == manifest_key(DETAIL)
        bronze.run(spark, settings, ReceiptDates(DAY, DAY, ("001",), ("cola-detail",), run_id="ingest-1"))
        ingested = bronze_pages(spark, settings)
        first_walk = {line["ttb_id"] for line in lines(store, DETAIL) if line["outcome"] == "found"}
        assert ingested and {t for t, *_ in ingested} == first_walk

        sim.today = date(2024, 4, 1)  # more approvals and other pages: a mixture would show
        served = len(sim.hits)
        script = (
            "import sys; from ttb_spark.raw import scrape; from ttb_spark.partitions import Partition; "
            "from ttb_spark.settings import load_settings; from datetime import date; "
            "s = load_settings('test', {'pipeline': {'raw_root': sys.argv[1]}, "
            "'extraction': {'registry_base_url': sys.argv[2], 'use_simulator': False}}); "
            "p = Partition(date.fromisoformat(sys.argv[3]), '001', 'cola-detail'); "
            "list(scrape.scrape_slice([(0, [(p, True)])], s, 'walk-2', 1))"
        )
        process = subprocess.Popen([sys.executable, "-c", script, settings.pipeline.raw_root, sim.base_url, DAY.isoformat()],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            reached = sim.wait_for_hits(served + 60, timeout=120)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert reached
        assert not store.exists(complete_key(DETAIL)), "the re-walk retired the marker before its first request"
        assert {line["run_id"] for line in lines(store, DETAIL)} == {"walk-1"}  # the old manifest, now unmarked

        counts = bronze.run(spark, settings, ReceiptDates(DAY, DAY, ("001",), ("cola-detail",), run_id="ingest-2"))
        assert (counts["partitions"], counts["partitions_incomplete"]) == (0, 1)
        assert bronze_pages(spark, settings) == ingested  # the last complete walk, untouched

        walk(settings, [DETAIL], "walk-3")  # the re-walk finishes: marker and manifest agree again
        marker = json.loads(store.get(complete_key(DETAIL)))
        assert marker["run_id"] == "walk-3" and {line["run_id"] for line in lines(store, DETAIL)} == {"walk-3"}


def test_a_withdrawn_record_is_recorded_withdrawn_and_reaches_bronze(spark, tmp_path):
    with simulator.running(seed=0, scale=0.05, today=WITHDRAWN_ON - timedelta(days=1)) as sim:
        rec = sim.registry.record(GONE)
        assert (rec.approval_date, rec.withdrawn_date) == (date(2024, 2, 5), WITHDRAWN_ON)
        settings = walk_settings(tmp_path, sim.base_url)
        store = open_store(settings.pipeline.raw_root)
        walk(settings, [DETAIL, CERTIFICATE], "walk-1")
        stored = {p: store.get(page_key(p, TTBId(GONE))) for p in (DETAIL, CERTIFICATE)}
        sim.today = WITHDRAWN_ON
        summaries = walk(settings, [DETAIL, CERTIFICATE], "walk-2")
        first_seen = next(x for x in lines(store, DETAIL) if x["ttb_id"] == GONE)["withdrawn_at"]
        again = walk(settings, [DETAIL], "walk-3")  # still withdrawn: first seen stays the first time

    assert [s["withdrawn"] for s in summaries] == [1, 1] and again[0]["withdrawn"] == 1
    for partition in (DETAIL, CERTIFICATE):
        line = next(x for x in lines(store, partition) if x["ttb_id"] == GONE)
        assert line["outcome"] == "withdrawn" and line["key"] == page_key(partition, TTBId(GONE))
        assert store.get(line["key"]) == stored[partition]  # the stored copy is kept, never dropped
        assert line["withdrawn_at"] and line["reason"] == "error_page"
    assert next(x for x in lines(store, DETAIL) if x["ttb_id"] == GONE)["withdrawn_at"] == first_seen

    bronze.run(spark, settings, ReceiptDates(DAY, DAY, ("001",), ("cola-detail", "certificate"), run_id="ingest-1"))
    rows = {(r.ttb_id, r.data_type): r for r in lakehouse.read_table(spark, bronze.PAGES, settings.pipeline.lakehouse_root).collect()}
    assert rows[(GONE, "cola-detail")].withdrawn_at is not None and rows[(GONE, "certificate")].withdrawn_at is not None
    assert all(r.withdrawn_at is None for (t, _), r in rows.items() if t != GONE)
    assert parse.parse_page(rows[(GONE, "cola-detail")].html.encode("iso-8859-1"), GONE, "detail").record["ttb_id"] == GONE
