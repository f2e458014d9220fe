"""Scrape stage against the registry simulator: full partitions to S3 (moto) and a folder, the
fault matrix, politeness, resume/force/rescan and TTB ID validation. Real Spark, real HTTP."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings
from ttb_spark.raw import scrape
from ttb_spark.registry import parse, simulator
from ttb_spark.registry.client import Pacer, RegistryClient
from ttb_spark.partitions import Partition
from ttb_spark.scope import ReceiptDates
from ttb_spark.raw.storage import complete_key, manifest_key, open_store, page_key, partition_prefix
from ttb_spark.registry.ttb_id import TTBId, is_valid_ttb_id

DAY = date(2024, 1, 2)  # a Tuesday: seed 0 at scale 0.05 has 18 public e-filed IDs and a 143-ID gap
SCALE = 0.05
DETAIL = Partition(DAY, "001", "cola-detail")
CERTIFICATE = Partition(DAY, "001", "certificate")


def scrape_settings(tmp_path: Path, base_url: str, *, pipeline: dict[str, Any] | None = None, **extraction: Any):
    return make_settings(
        tmp_path,
        pipeline={"partition_start_date": DAY, "partition_end_date": DAY, "receipt_methods": ["001"]} | (pipeline or {}),
        extraction={"registry_base_url": base_url, "use_simulator": False} | extraction,
    )


def stored_pages(store, partition: Partition) -> dict[str, bytes]:
    """TTB ID -> stored bytes of one partition."""
    keys = store.list(partition_prefix("pages", partition))
    return {Path(k).stem: store.get(k) for k in keys}


def manifest(store, partition: Partition) -> list[dict[str, Any]]:
    return [json.loads(line) for line in store.get(manifest_key(partition)).decode().splitlines()]


def scrape_direct(settings, partitions: list[tuple[Partition, bool]], run_id: str = "test-run") -> list[dict[str, Any]]:
    """The executor code path without Spark (one task), for the many small fault cases."""
    return list(scrape.scrape_slice([(0, partitions)], settings, run_id, 1))


def assert_partition_exact(store, sim: simulator.RegistrySimulator, partition: Partition, public: list[str]) -> None:
    """Stored pages are exactly the public IDs, byte for byte as served, each parsing to its own record."""
    pages = stored_pages(store, partition)
    assert sorted(pages) == sorted(public)
    kind = "detail" if partition.data_type == "cola-detail" else "certificate"
    for ttb_id, body in pages.items():
        assert body == sim.registry.render(sim.registry.record(ttb_id), partition.data_type)
        result = parse.parse_page(body, ttb_id, kind)
        assert result.kind == kind and result.record["ttb_id"] == ttb_id
    lines = manifest(store, partition)
    assert len({line["ttb_id"] for line in lines}) == len(lines)
    found = {line["ttb_id"]: line for line in lines if line["outcome"] == "found"}
    assert sorted(found) == sorted(public)
    for ttb_id, line in found.items():
        assert line["key"] == page_key(partition, TTBId(ttb_id))
        assert line["sha256"] == hashlib.sha256(pages[ttb_id]).hexdigest() and line["bytes"] == len(pages[ttb_id])
    assert all(is_valid_ttb_id(h.ttb_id) for h in sim.hits)


def test_full_partition_to_s3(spark, tmp_path, s3_server, s3_bucket, s3_executor_env):
    """Both data types of an e-filed day land in S3: every public ID (incl. those behind a gap longer
    than the threshold), nothing else, with manifests and completion markers."""
    with simulator.running(seed=0, scale=SCALE) as sim:
        settings = scrape_settings(
            tmp_path, sim.base_url, pipeline={"raw_root": f"s3://{s3_bucket}/raw", "s3_endpoint_url": s3_server}
        )
        public = sim.registry.public_ids(DAY, "001")
        gaps = [b - a - 1 for a, b in zip(sim.registry.public_sequences(DAY, "001"), sim.registry.public_sequences(DAY, "001")[1:])]
        assert max(gaps) > settings.extraction.consecutive_failure_threshold  # the case the probes exist for
        counts = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        store = open_store(f"s3://{s3_bucket}/raw", "us-east-1", s3_server)
        for partition in (DETAIL, CERTIFICATE):
            assert_partition_exact(store, sim, partition, public)
            marker = json.loads(store.get(complete_key(partition)))
            assert marker["found"] == len(public) and marker["failed"] == 0
            assert marker["highest_sequence_found"] == TTBId(public[-1]).sequence
            assert marker["attempted"] == len(manifest(store, partition))
        certificate_requests = [h.ttb_id for h in sim.hits if h.data_type == "certificate"]
        assert sorted(certificate_requests) == sorted(public)  # no blind probing of certificates
    assert counts["found"] == 2 * len(public) and counts["partitions_complete"] == 2
    assert counts["requests"] == len(sim.hits)


def test_every_receipt_method_to_local_folder(spark, tmp_path):
    """All four receipt methods of a day to a folder, paper codes included (few or no records)."""
    with simulator.running(seed=0, scale=SCALE) as sim:
        settings = scrape_settings(
            tmp_path, sim.base_url, pipeline={"receipt_methods": ["000", "001", "002", "003"], "data_types": ["cola-detail"]}
        )
        counts = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        store = open_store(settings.pipeline.raw_root)
        for method in ("000", "001", "002", "003"):
            partition = Partition(DAY, method, "cola-detail")
            assert_partition_exact(store, sim, partition, sim.registry.public_ids(DAY, method))
            assert store.exists(complete_key(partition))
        assert counts["partitions_complete"] == 4
        assert counts["found"] == len(sim.public_ids([DAY], ["000", "001", "002", "003"]))
        # A rerun skips complete partitions without a request.
        served = len(sim.hits)
        again = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        assert again["partitions_skipped"] == 4 and again["requests"] == 0 and len(sim.hits) == served


FAULTS = {
    "reset": {"reset": 1.0, "first_hits": 2},
    "server_error": {"server_error": 1.0, "first_hits": 2},
    "truncate": {"truncate": 1.0, "first_hits": 2},
    "session_timeout": {"session_timeout": 1.0, "first_hits": 1},
    "captcha": {"captcha": 1.0, "first_hits": 2},
    "rate_limit": {"rate_limit": 0.08, "retry_after": 1},
    "latency": {"latency": 0.02},
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_matrix(tmp_path, fault):
    """Each fault: every public page still stored, no error page stored, each ID one outcome with its attempts."""
    with simulator.running(seed=0, scale=SCALE, faults=FAULTS[fault]) as sim:
        settings = scrape_settings(tmp_path, sim.base_url, max_sequence_per_batch=40, consecutive_failure_threshold=10)
        (summary,) = scrape_direct(settings, [(DETAIL, False)])
        store = open_store(settings.pipeline.raw_root)
        hits = sim.hits
        public = [i for i in sim.registry.public_ids(DAY, "001") if TTBId(i).sequence <= 40]
        pages = stored_pages(store, DETAIL)
        assert sorted(pages) == sorted(public)
        assert all(parse.classify(body, ttb_id, "detail").kind == "detail" for ttb_id, body in pages.items())
        lines = manifest(store, DETAIL)
        assert [line["sequence"] for line in lines] == list(range(1, 41))  # 40 < threshold walk + probes: all tried
        assert all(line["outcome"] in ("found", "not_found") for line in lines)
        requests_per_id: dict[str, int] = {}
        for h in hits:
            requests_per_id[h.ttb_id] = requests_per_id.get(h.ttb_id, 0) + 1
        assert all(line["attempts"] == requests_per_id[line["ttb_id"]] for line in lines)
        assert summary["complete"] and store.exists(complete_key(DETAIL))
        if fault != "latency":
            assert any(h.answer == fault for h in hits), "the fault was injected"
        if fault in ("reset", "server_error", "truncate", "captcha"):
            assert all(line["attempts"] == 3 for line in lines)
        if fault == "session_timeout":
            # the session that saw the timeout page is never used again: the client started a new one
            expired = {h.session for h in hits if h.answer == "session_timeout"}
            for s in expired:
                assert [h.answer for h in hits if h.session == s][-1] == "session_timeout"
        if fault == "rate_limit":
            for i, h in enumerate(hits):
                if h.answer == "rate_limit":
                    retry = next(r for r in hits[i + 1 :] if r.ttb_id == h.ttb_id)
                    assert retry.at - h.at >= 1.0  # Retry-After honoured


def test_failures_after_retries_are_recorded_and_retried_by_the_next_run(tmp_path):
    """Persistent 503s end as ``failed`` (after max_retries), nothing stored, no _COMPLETE; a later run completes."""
    settings = None
    with simulator.running(seed=0, scale=SCALE, faults={"server_error": 1.0}) as sim:
        settings = scrape_settings(tmp_path, sim.base_url, max_sequence_per_batch=5, consecutive_failure_threshold=10)
        (summary,) = scrape_direct(settings, [(DETAIL, False)])
        store = open_store(settings.pipeline.raw_root)
        lines = manifest(store, DETAIL)
        assert [line["outcome"] for line in lines] == ["failed"] * 5
        assert all(line["attempts"] == settings.extraction.max_retries + 1 and line["reason"] in ("http_500", "http_503") for line in lines)
        assert stored_pages(store, DETAIL) == {} and not store.exists(complete_key(DETAIL))
        assert summary["failed"] == 5 and not summary["complete"]
    with simulator.running(seed=0, scale=SCALE) as healthy:
        settings = scrape_settings(tmp_path, healthy.base_url, max_sequence_per_batch=5, consecutive_failure_threshold=10)
        work, skipped = scrape.plan(settings, replace(ReceiptDates.from_settings(settings), data_types=("cola-detail",)), store)
        assert (DETAIL, False) in work and skipped == 0
        (early,) = scrape_direct(settings, [(CERTIFICATE, False)])
        assert early["attempted"] == 0 and not early["complete"]  # certificates wait for complete details
        detail, certificate = scrape_direct(settings, [(DETAIL, False), (CERTIFICATE, False)])
        assert detail["complete"] and detail["failed"] == 0 and certificate["complete"]
        public = [i for i in healthy.registry.public_ids(DAY, "001") if TTBId(i).sequence <= 5]
        assert sorted(stored_pages(store, DETAIL)) == sorted(stored_pages(store, CERTIFICATE)) == public


@pytest.mark.parametrize("fault,outcome", [("reset", "failed"), ("captcha", "unexpected")])
def test_registry_down_or_walled_abandons_the_partition(tmp_path, fault, outcome):
    """Consecutive failed/unexpected IDs stop the walk early (no manifest, no marker) instead of hammering on."""
    with simulator.running(seed=0, scale=SCALE, faults={fault: 1.0}) as sim:
        settings = scrape_settings(tmp_path, sim.base_url, max_retries=1)
        (summary,) = scrape_direct(settings, [(DETAIL, False)])
        store = open_store(settings.pipeline.raw_root)
        assert summary["status"] == "aborted" and summary[outcome] == scrape.ABORT_AFTER_FAILURES
        assert len(sim.hits) == scrape.ABORT_AFTER_FAILURES * 2
        assert not store.exists(manifest_key(DETAIL)) and not store.exists(complete_key(DETAIL))


def test_politeness_total_rate_across_concurrent_tasks(spark, tmp_path):
    """Two Spark tasks at once never exceed the configured total rate, as the simulator observes it."""
    rate, tasks = 20.0, 2
    with simulator.running(seed=0, scale=SCALE) as sim:
        settings = scrape_settings(
            tmp_path, sim.base_url, pipeline={"partition_end_date": date(2024, 1, 3), "data_types": ["cola-detail"]},
            max_requests_per_second=rate, scrape_concurrency=tasks, consecutive_failure_threshold=20, max_sequence_per_batch=80,
        )
        counts = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        hits = sim.hits
    assert counts["requests"] == len(hits) and len(hits) > 100
    assert len({h.ttb_id[:5] for h in hits}) == 2  # both days (one per task) were walked concurrently
    # Any k*tasks+1 consecutive requests hold k+1 of one task, so they span >= k*tasks/rate seconds:
    # the observed rate over such windows is the total rate at most. Windows of >= 2 s keep the
    # simulator's arrival-time jitter on 2 busy cores (a stalled server thread queues requests for
    # up to ~0.1 s, then stamps them together) within the client's 5% pacing headroom.
    for k in (20, 40):
        assert sim.max_rate(k * tasks) <= rate, (k, sim.max_rate(k * tasks))
    assert len(hits) / (hits[-1].at - hits[0].at) <= rate
    by_task: dict[str, list[float]] = {}
    for h in hits:
        by_task.setdefault(h.ttb_id[:5], []).append(h.at)
    assert all(len(times) > 40 for times in by_task.values())
    overlap = min(max(t) for t in by_task.values()) - max(min(t) for t in by_task.values())
    assert overlap > 0, "tasks ran concurrently"


def test_resume_skips_stored_pages_and_rescan_rewalks_recent_days(spark, tmp_path):
    """Pages already stored are not fetched again; --force refetches; --rescan-days re-walks only the last N days."""
    days = [DAY, date(2024, 1, 3)]
    with simulator.running(seed=0, scale=SCALE) as sim:
        settings = scrape_settings(
            tmp_path, sim.base_url, pipeline={"partition_end_date": days[1], "data_types": ["cola-detail"]},
            consecutive_failure_threshold=20, max_sequence_per_batch=60,
        )
        store = open_store(settings.pipeline.raw_root)
        first = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        assert first["partitions_complete"] == 2
        served = len(sim.hits)
        day1 = Partition(days[0], "001", "cola-detail")
        before = manifest(store, day1)
        # an interrupted partition: manifest and marker gone, pages kept
        (Path(settings.pipeline.raw_root) / complete_key(day1)).unlink()
        (Path(settings.pipeline.raw_root) / manifest_key(day1)).unlink()
        resumed = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        new_hits = sim.hits[served:]
        stored = {ttb for ttb, _ in stored_pages(store, day1).items()}
        assert resumed["partitions_skipped"] == 1 and resumed["reused"] == len(stored)
        assert not stored & {h.ttb_id for h in new_hits}, "a stored page was fetched again"
        after = manifest(store, day1)
        assert [(line["ttb_id"], line["outcome"], line["sha256"]) for line in after] == [
            (line["ttb_id"], line["outcome"], line["sha256"]) for line in before
        ]
        assert all(line["attempts"] == 0 for line in after if line["outcome"] == "found")
        # rescan: only the most recent day is walked again, its stored pages refetched
        served = len(sim.hits)
        rescan = scrape.run(spark, settings, ReceiptDates.from_settings(settings, rescan_days=1))
        rescanned_days = {h.ttb_id[:5] for h in sim.hits[served:]}
        assert rescanned_days == {"24003"} and rescan["partitions_skipped"] == 1 and rescan["reused"] == 0
        assert rescan["found"] == len(stored_pages(store, Partition(days[1], "001", "cola-detail")))


def test_ttb_ids_are_validated_before_urls_and_keys(tmp_path):
    """Nothing but a validated 14-digit TTB ID reaches a URL or a storage key; a tampered manifest stops the task."""
    with simulator.running(seed=0, scale=SCALE) as sim:
        settings = scrape_settings(tmp_path, sim.base_url)
        client = RegistryClient(settings.extraction, Pacer(0))
        with pytest.raises(TypeError):
            client.fetch("cola-detail", "24002001000001")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            page_key(DETAIL, "24002001000001")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            page_key(DETAIL, TTBId("24003001000001"))  # another day's ID
        store = open_store(settings.pipeline.raw_root)
        for bad in ("2400200100001X", "24002001000001&action=x", "24003001000001", "../../etc/passwd"):
            store.put(manifest_key(DETAIL), json.dumps({"ttb_id": bad, "outcome": "found"}).encode() + b"\n")
            with pytest.raises(ValueError):
                scrape_direct(settings, [(CERTIFICATE, False)])
        assert sim.hits == []
        assert stored_pages(store, CERTIFICATE) == {}
        with pytest.raises(ValueError):
            scrape_settings(tmp_path, sim.base_url, max_sequence_per_batch=1_000_000)  # a 7-digit sequence
        client.close()


def test_walk_bridges_long_gaps_and_stops_after_threshold_plus_probes():
    """The walk rule on its own: records behind gaps of 1.5T and 3.5T are reached, every ID below the
    last record is tried once, and the walk ends T misses + the probes after the last record."""
    threshold = 10
    public = {1, 2, 3, 4 + 15, 4 + 15 + 1, 20 + 36, 20 + 36 + 2, 20 + 36 + 4}  # gaps of 15 and 35 after 3 and 20
    asked: list[int] = []
    seen: dict[int, str] = {}

    def outcome_of(sequence: int) -> str:
        if sequence not in seen:
            asked.append(sequence)
            seen[sequence] = "found" if sequence in public else "not_found"
        return seen[sequence]

    scrape.walk(outcome_of, max_sequence=500, threshold=threshold)
    last = max(public)
    assert {s for s, o in seen.items() if o == "found"} == public
    assert set(range(1, last + threshold + 1)) <= set(asked) and len(asked) == len(set(asked))
    assert set(asked) - set(range(1, last + threshold + 1)) == set(scrape.probe_points(last + threshold, threshold, 500))
    assert max(asked) == last + threshold + 4 * threshold  # the farthest probe reaches 4T past the last miss
    seen.clear()
    asked.clear()
    scrape.walk(outcome_of, max_sequence=5, threshold=threshold)
    assert asked == [1, 2, 3, 4, 5]  # never beyond the maximum
