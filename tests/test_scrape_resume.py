"""Kill-and-resume: the scrape stage killed midway (a Spark job in a subprocess), rerun, ends
identical to an uninterrupted run, and no stored page is fetched twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

from test_scrape import CERTIFICATE, DAY, DETAIL, manifest, scrape_settings, stored_pages
from ttb_spark.raw import scrape
from ttb_spark.registry import simulator
from ttb_spark.scope import ReceiptDates
from ttb_spark.raw.storage import complete_key, open_store


def test_kill_midway_then_resume_equals_uninterrupted_run(spark, tmp_path):
    with simulator.running(seed=0, scale=0.1) as sim:
        reference = scrape_settings(tmp_path / "reference", sim.base_url)
        scrape.run(spark, reference, ReceiptDates.from_settings(reference))
        reference_hits = sim.hits
        detail_requests = sum(h.data_type == "cola-detail" for h in reference_hits)
        served = len(reference_hits)

        raw = tmp_path / "raw"
        log = (tmp_path / "scrape.log").open("w")
        # The stage itself (Spark job and all) in a process of its own; the CLI's audit bookkeeping
        # around it is left out to keep the test short.
        script = (
            "import sys; from ttb_spark.raw import scrape; from ttb_spark.scope import ReceiptDates; "
            "from ttb_spark.settings import load_settings; from ttb_spark.spark import get_spark; "
            "s = load_settings('test', {'pipeline': {'partition_start_date': sys.argv[1], 'receipt_methods': '001', "
            "'raw_root': sys.argv[2]}, 'extraction': {'registry_base_url': sys.argv[3], 'use_simulator': False}}); "
            "scrape.run(get_spark(s), s, ReceiptDates.from_settings(s))"
        )
        command = [sys.executable, "-c", script, DAY.isoformat(), str(raw), sim.base_url]
        env = os.environ | {"PYSPARK_PYTHON": sys.executable}
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            reached = sim.wait_for_hits(served + detail_requests // 2, timeout=300)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the scrape, its JVM and Python workers
            process.wait()
            log.close()
        assert reached, (tmp_path / "scrape.log").read_text()[-3000:]
        killed_hits = sim.hits[served:]

        store = open_store(str(raw))
        stored_at_kill = stored_pages(store, DETAIL)
        assert 0 < len(stored_at_kill) < len(stored_pages(open_store(reference.pipeline.raw_root), DETAIL))
        assert not store.exists(complete_key(DETAIL)), "killed midway, not after the partition finished"

        settings = scrape_settings(tmp_path, sim.base_url, pipeline={"raw_root": str(raw)})
        counts = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        resumed_hits = sim.hits[served + len(killed_hits):]

    assert counts["partitions_complete"] == 2 and counts["reused"] >= len(stored_at_kill)
    reference_store = open_store(reference.pipeline.raw_root)
    for partition in (DETAIL, CERTIFICATE):
        assert stored_pages(store, partition) == stored_pages(reference_store, partition)
        outcomes = [(line["ttb_id"], line["outcome"], line["sha256"]) for line in manifest(store, partition)]
        assert outcomes == [(line["ttb_id"], line["outcome"], line["sha256"]) for line in manifest(reference_store, partition)]
        assert store.exists(complete_key(partition))
    assert not set(stored_at_kill) & {h.ttb_id for h in resumed_hits if h.data_type == "cola-detail"}
    page_fetches = Counter((h.ttb_id, h.data_type) for h in killed_hits + resumed_hits if h.answer == "page")
    twice = {ttb_id for (ttb_id, _), n in page_fetches.items() if n > 1}
    assert len(twice) <= 1 and not twice & set(stored_at_kill), "only the page in flight at the kill is fetched again"
