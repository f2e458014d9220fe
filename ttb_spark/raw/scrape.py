"""Scrape stage: registry pages into the raw store, one Spark task per slice of partitions.

Partitions are (receipt date, method_type). Detail partitions run first; certificate partitions
then fetch certificates only for the IDs their detail partition found (read from its manifest), so
no sequence number is blindly probed twice. A task walks a detail partition's sequence numbers
1..``TTB_MAX_SEQUENCE_PER_BATCH`` and stops after ``TTB_CONSECUTIVE_FAILURE_THRESHOLD`` consecutive
not-found answers — but first probes ahead sparsely, because pending/rejected applications leave
runs of non-public IDs longer than the threshold inside a day:

* after T consecutive misses ending at sequence s (and no found ID known beyond s), probe every
  (T/10)-th ID up to s+2T and every (T/5)-th up to s+4T (nearest first, capped at the maximum):
  30 probes for T=50. A gap of up to ~4T is bridged wherever public IDs resume at any useful
  density; the stride makes a run of records behind a gap hard to miss;
* when a probe finds a page, the walk goes on one by one through the gap (nothing in between is
  skipped, and a probed ID is never requested twice) and does not stop before the found probe;
* only when every probe misses does the partition end. A day's end costs T + 30 requests.

Politeness: at most ``TTB_SCRAPE_CONCURRENCY`` tasks run (the partitions are dealt into that many
Spark partitions) and each paces its requests ``max(TTB_REQUEST_DELAY_SECONDS, tasks /
TTB_MAX_REQUESTS_PER_SECOND)`` apart, so the tasks together stay under the total rate; tasks
start staggered by a fraction of that interval.

Resume: a found page is written (atomically) as soon as it arrives; pages already stored are not
fetched again (unless forced) and partitions with ``_COMPLETE`` are skipped (unless ``--force``;
the most recent ``--rescan-days`` receipt days of the range are always re-walked). A walk first
retires the partition's ``_COMPLETE``, so a walk killed half way leaves no marker beside the
older manifest (bronze ingests the last complete walk or nothing, never a mixture). A stored
page whose ID now answers the error page is recorded ``withdrawn`` (with its stored copy and when
it was first seen withdrawn), never dropped. The manifest is written when a walk ends and
``_COMPLETE`` (naming the manifest's SHA-256) after it, only when no ID ended ``failed`` or with a
transient ``unexpected`` reason (and, for certificates, once their detail partition is complete) —
such a partition is walked again by the next run. A run that
meets ``ABORT_AFTER_FAILURES`` consecutive IDs ending failed or unexpected (registry down, a bot
wall, a new layout) abandons the partition without a manifest instead of hammering on. A crash therefore costs at most the pages in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

from ttb_spark.raw import storage
from ttb_spark.registry.client import TRANSIENT_REASONS, Fetch, Pacer, RegistryClient, task_interval
from ttb_spark.partitions import Partition
from ttb_spark.settings import Settings
from ttb_spark.raw.storage import RawStore, complete_key, manifest_key, page_key, partition_prefix, raw_store
from ttb_spark.registry.ttb_id import TTBId
from ttb_spark import console
from ttb_spark.console import progress
from ttb_spark.scope import ReceiptDates

log = logging.getLogger(__name__)

PROBE_REACH = 4  # probes reach 4 x threshold beyond the last miss
ABORT_AFTER_FAILURES = 10
OUTCOMES = ("found", "not_found", "withdrawn", "unexpected", "failed")


class PartitionAborted(RuntimeError):
    """Too many consecutive failed IDs: the registry looks down; the partition is left for a later run."""


@dataclass
class Summary:
    """Per-partition counts (the ``_COMPLETE`` body, plus requests/reused/complete for the run totals)."""

    partition: str
    run_id: str
    attempted: int = 0
    found: int = 0
    not_found: int = 0
    withdrawn: int = 0
    unexpected: int = 0
    failed: int = 0
    highest_sequence_found: int | None = None
    elapsed_seconds: float = 0.0
    achieved_request_rate: float = 0.0
    completed_at: str | None = None
    requests: int = 0
    reused: int = 0
    complete: bool = False
    status: str = "walking"  # complete | retry_later | aborted | waiting_for_details

    def marker(self) -> dict[str, Any]:
        keys = ("partition", "attempted", "found", "not_found", "withdrawn", "unexpected", "failed", "highest_sequence_found",
                "elapsed_seconds", "achieved_request_rate", "completed_at", "run_id", "requests", "reused")
        return {k: getattr(self, k) for k in keys}


class _Trouble:
    """Counts consecutive IDs that ended neither found nor not_found; raises PartitionAborted at the limit."""

    def __init__(self) -> None:
        self.streak = 0

    def see(self, outcome: str, sequence: int) -> None:
        self.streak = 0 if outcome in ("found", "not_found", "withdrawn") else self.streak + 1
        if self.streak >= ABORT_AFTER_FAILURES:
            raise PartitionAborted(
                f"{self.streak} consecutive IDs ended failed/unexpected after retries (last sequence {sequence})"
            )


def walk(outcome_of: Callable[[int], str], max_sequence: int, threshold: int) -> None:
    """Walk sequence numbers 1..max_sequence through ``outcome_of`` (which must cache), by the rule above."""
    seq = misses = known_found = 0
    trouble = _Trouble()
    while seq < max_sequence:
        seq += 1
        outcome = outcome_of(seq)
        trouble.see(outcome, seq)
        if outcome == "found":
            misses = 0
        elif outcome in ("not_found", "withdrawn"):
            misses += 1
        if misses >= threshold and seq >= known_found:
            hit = next((p for p in probe_points(seq, threshold, max_sequence) if outcome_of(p) == "found"), None)
            if hit is None:
                return
            known_found, misses = hit, 0


def probe_points(last_miss: int, threshold: int, max_sequence: int) -> list[int]:
    """Sequence numbers probed after ``threshold`` misses ending at ``last_miss``, nearest first."""
    near, far = max(1, threshold // 10), max(1, threshold // 5)
    offsets = [*range(near, 2 * threshold + 1, near), *range(2 * threshold + far, PROBE_REACH * threshold + 1, far)]
    return sorted({last_miss + o for o in offsets if last_miss + o <= max_sequence})


@dataclass
class _PartitionScrape:
    """One partition's walk: fetches, stores found pages, keeps the manifest lines and counts."""

    partition: Partition
    store: RawStore
    client: RegistryClient
    settings: Settings
    run_id: str
    force: bool
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stored = set(self.store.list(partition_prefix("pages", self.partition)))
        self.withdrawn_since = previously_withdrawn(self.store, self.partition)
        self.summary = Summary(self.partition.key, self.run_id)
        self.started = time.monotonic()
        self.requests_before = self.client.requests_sent
        self.last_progress = self.started

    def outcome_of(self, sequence: int) -> str:
        """The outcome of one sequence number, fetching it at most once per walk."""
        if sequence not in self.entries:
            self.entries[sequence] = self._try(TTBId.build(self.partition.receipt_date, self.partition.receipt_method, sequence))
            self._count(self.entries[sequence])
        return self.entries[sequence]["outcome"]

    def _try(self, ttb_id: TTBId) -> dict[str, Any]:
        key = page_key(self.partition, ttb_id)
        if key in self.stored and not self.force:
            body = self.store.get(key)
            self.summary.reused += 1
            return self._entry(ttb_id, "found", None, None, body, 0, self.store.modified(key), key)
        fetch = self.client.fetch(self.partition.data_type, ttb_id)
        if fetch.outcome == "found" and fetch.body is not None:
            self.store.put(key, fetch.body)
            return self._entry(ttb_id, "found", None, fetch.http_status, fetch.body, fetch.attempts, fetch.fetched_at, key)
        if fetch.outcome == "not_found" and key in self.stored:
            return self._withdrawn(ttb_id, key, fetch)
        return self._entry(ttb_id, fetch.outcome, fetch.reason, fetch.http_status, None, fetch.attempts, fetch.fetched_at, None)

    def _withdrawn(self, ttb_id: TTBId, key: str, fetch: Fetch) -> dict[str, Any]:
        """A stored page whose ID now answers the error page: ``withdrawn``, with the stored copy and
        when it was first seen withdrawn (kept from the previous manifest)."""
        first_seen = self.withdrawn_since.get(str(ttb_id)) or fetch.fetched_at.isoformat()
        return self._entry(ttb_id, "withdrawn", "error_page", fetch.http_status, self.store.get(key), fetch.attempts,
                           self.store.modified(key), key, first_seen)

    def _entry(self, ttb_id: TTBId, outcome: str, reason: str | None, status: int | None, body: bytes | None,
               attempts: int, fetched_at: datetime, key: str | None, withdrawn_at: str | None = None) -> dict[str, Any]:
        p = self.partition
        return {
            "ttb_id": str(ttb_id), "method_type": p.method_type, "receipt_date": p.receipt_date.isoformat(),
            "data_type": p.data_type, "receipt_method": p.receipt_method, "sequence": ttb_id.sequence,
            "outcome": outcome, "reason": reason, "http_status": status,
            "bytes": len(body) if body is not None else None,
            "sha256": hashlib.sha256(body).hexdigest() if body is not None else None,
            "fetched_at": fetched_at.isoformat(), "attempts": attempts, "key": key, "run_id": self.run_id,
            "withdrawn_at": withdrawn_at,
        }

    def _count(self, entry: dict[str, Any]) -> None:
        s = self.summary
        s.attempted += 1
        setattr(s, entry["outcome"], getattr(s, entry["outcome"]) + 1)
        if entry["outcome"] == "found":
            s.highest_sequence_found = max(s.highest_sequence_found or 0, entry["sequence"])
        self._timing()
        if time.monotonic() - self.last_progress >= console.EVERY_SECONDS:
            self.last_progress = time.monotonic()
            progress(f"scrape {self.partition.key}: at sequence {entry['sequence']} {self._counts_text()}")

    def _timing(self) -> None:
        s = self.summary
        s.elapsed_seconds = round(time.monotonic() - self.started, 3)
        s.requests = self.client.requests_sent - self.requests_before
        s.achieved_request_rate = round(s.requests / s.elapsed_seconds, 3) if s.elapsed_seconds > 0 else 0.0

    def _counts_text(self) -> str:
        s = self.summary
        return (f"attempted={s.attempted} found={s.found} not_found={s.not_found} unexpected={s.unexpected} "
                f"failed={s.failed} highest={s.highest_sequence_found} requests={s.requests} "
                f"elapsed={s.elapsed_seconds:.1f}s rate={s.achieved_request_rate:.2f}/s")

    def run(self) -> Summary:
        extraction = self.settings.extraction
        candidates = None
        if self.partition.data_type == "certificate":
            candidates = detail_found_ids(self.store, self.partition)
            if candidates is None:
                self.summary.status = "waiting_for_details"
                progress(f"scrape {self.partition.key}: skipped, its detail partition has no manifest yet")
                return self.summary
        self.store.delete(complete_key(self.partition))  # the marker must never outlive the manifest it describes
        try:
            if candidates is None:
                walk(self.outcome_of, extraction.max_sequence_per_batch, extraction.consecutive_failure_threshold)
            else:
                trouble = _Trouble()
                for ttb_id in candidates:
                    trouble.see(self.outcome_of(ttb_id.sequence), ttb_id.sequence)
        except PartitionAborted as exc:
            self._timing()
            self.summary.status = "aborted"
            progress(f"scrape {self.partition.key}: abandoned for a later run: {exc}; {self._counts_text()}")
            return self.summary
        self._finish()
        return self.summary

    def _finish(self) -> None:
        lines = [self.entries[s] for s in sorted(self.entries)]
        body = storage.manifest_body(lines)
        self.store.put(manifest_key(self.partition), body)
        self._timing()
        s = self.summary
        retry_later = any(e["outcome"] == "failed" or e["reason"] in TRANSIENT_REASONS for e in lines)
        if self.partition.data_type == "certificate":
            # certificates follow their detail partition: complete only once the details are
            retry_later = retry_later or not self.store.exists(complete_key(_detail_of(self.partition)))
        if retry_later:
            s.status = "retry_later"
        else:
            s.completed_at = datetime.now(timezone.utc).isoformat()
            s.complete, s.status = True, "complete"
            storage.put_marker(self.store, manifest_key(self.partition), body, s.marker())
        progress(f"scrape {self.partition.key}: {s.status} {self._counts_text()}")
        log.info("scrape partition %s", json.dumps(s.marker()))


def previously_withdrawn(store: RawStore, partition: Partition) -> dict[str, str]:
    """TTB ID -> withdrawn_at of the ``withdrawn`` lines of the partition's current walk manifest."""
    key = manifest_key(partition)
    if not store.exists(key):
        return {}
    return {e["ttb_id"]: e["withdrawn_at"] for e in storage.manifest_entries(store, key) if e.get("outcome") == "withdrawn" and e.get("withdrawn_at")}


def detail_found_ids(store: RawStore, partition: Partition) -> list[TTBId] | None:
    """IDs whose detail page the partition's detail manifest records as found (or withdrawn: its
    certificate is checked again too); None without a manifest."""
    detail = _detail_of(partition)
    key = manifest_key(detail)
    if not store.exists(key):
        return None
    ids = []
    for entry in storage.manifest_entries(store, key):
        if entry.get("outcome") in ("found", "withdrawn"):
            ttb_id = TTBId(entry["ttb_id"])
            page_key(detail, ttb_id)  # refuses an ID of another day or method
            ids.append(ttb_id)
    return sorted(set(ids))


def _detail_of(partition: Partition) -> Partition:
    return Partition(partition.receipt_date, partition.receipt_method, "cola-detail")


def scrape_slice(tasks: Iterable[tuple[int, list[tuple[Partition, bool]]]], settings: Settings, run_id: str,
                 concurrent_tasks: int, quiet: bool = False) -> Iterator[dict[str, Any]]:
    """Executor side: scrape each (partition, forced) of this task's slice with one client; yields summaries.
    ``quiet``: the driver's console is (an executor process has its own logging)."""
    console.configure(quiet)
    interval = task_interval(settings.extraction, concurrent_tasks)
    store = raw_store(settings)
    for index, work in tasks:
        pacer = Pacer(interval)
        pacer.hold(index * interval / max(1, concurrent_tasks))
        client = RegistryClient(settings.extraction, pacer)
        meter = console.Meter(f"scrape task {index + 1}/{concurrent_tasks}", len(work), "partitions")
        try:
            for partition, force in work:
                yield asdict(_PartitionScrape(partition, store, client, settings, run_id, force).run())
                meter.add()
        finally:
            client.close()


def plan(settings: Settings, scope: ReceiptDates, store: RawStore) -> tuple[list[tuple[Partition, bool]], int]:
    """(partition, forced) pairs to walk — details first — and how many complete partitions are skipped."""
    rescan = set(scope.dates[-scope.rescan_days:]) if scope.rescan_days else set()
    work, skipped = [], 0
    for partition in scope.partitions():
        forced = scope.force or partition.receipt_date in rescan
        if not forced and store.exists(complete_key(partition)):
            skipped += 1
            continue
        work.append((partition, forced))
    return work, skipped


def deal(work: list[tuple[Partition, bool]], tasks: int) -> list[list[tuple[Partition, bool]]]:
    """Deal work round-robin into ``tasks`` slices, heavy e-filed partitions first, so slices balance."""
    ordered = sorted(work, key=lambda item: (item[0].receipt_method != "001", item[0]))
    return [ordered[i::tasks] for i in range(tasks) if ordered[i::tasks]]


def run(spark: Any, settings: Settings, scope: ReceiptDates) -> dict[str, int]:
    """Scrape every partition in scope into the raw store; returns the run's counts."""
    store = raw_store(settings)
    work, skipped = plan(settings, scope, store)
    counts = {"partitions": len(scope.partitions()), "partitions_skipped": skipped, "partitions_complete": 0,
              "partitions_incomplete": 0, "requests": 0, "reused": 0} | {o: 0 for o in OUTCOMES} | {"attempted": 0}
    for data_type in ("cola-detail", "certificate"):
        group = [item for item in work if item[0].data_type == data_type]
        if not group:
            continue
        tasks = min(settings.extraction.scrape_concurrency, len(group))
        slices = list(enumerate(deal(group, tasks)))
        run_id, quiet = scope.run_id, console.is_quiet()
        summaries = (
            spark.sparkContext.parallelize(slices, len(slices))
            .mapPartitions(lambda it: scrape_slice(it, settings, run_id, tasks, quiet))
            .collect()
        )
        for s in summaries:
            for name in ("attempted", "requests", "reused", *OUTCOMES):
                counts[name] += s[name]
            counts["partitions_complete" if s["complete"] else "partitions_incomplete"] += 1
    return counts
