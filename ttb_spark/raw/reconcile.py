"""Reconcile stage: the walk (by receipt date) against the search (by completed date), per receipt day.

For each receipt day of the scope it reports the IDs the search listed that the walk never found
(``listed_not_walked``: approvals after the walk, or a gap the walk missed) and the public IDs the
walk found that no search listed (``walked_not_listed``: withdrawn since, or completed before the
search history began), as totals and per day (``listed_not_walked.<date>`` in the counts, so in
the run summary and the audit row). It then fetches them through discovery's fetcher: listed
IDs without a stored page, and every walked-not-listed ID (a stored page now answering the error
page is recorded ``withdrawn``), in a discovery manifest bronze ingests.

It also walks by itself (``TTB_RECONCILE_WALK_SHARE``, ``reconcile --walk-share``): of each receipt day
and method, the sequence numbers no search listed and no walk found, up to the consecutive-miss
threshold past the highest one known (further when it finds one there, as the walk goes on), every
one (1.0) or a fixed sample (the same IDs on every run). Their detail pages are fetched; a found one is
a record the search missed (or has not listed yet): counted ``probed_found`` (per day too), it joins
the walked-not-listed IDs and its certificate is fetched. Every probe is a manifest line.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING, Any

from ttb_spark.raw import discover, images, storage
from ttb_spark.raw.fetch import Fetcher
from ttb_spark.partitions import Partition
from ttb_spark.registry.ttb_id import TTBId

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.scope import ReceiptDates
    from ttb_spark.settings import Settings


def walk_found(store: storage.RawStore, days: list[date], methods: tuple[str, ...]) -> set[str]:
    """IDs the walk's complete detail manifests of those receipt days record as found."""
    found: set[str] = set()
    for day in days:
        for method in methods:
            part = Partition(day, method, "cola-detail")
            if not store.exists(storage.complete_key(part)):
                continue
            for entry in storage.manifest_entries(store, storage.manifest_key(part)):
                if entry.get("outcome") == "found":
                    found.add(entry["ttb_id"])
    return found


def search_listed(spark: SparkSession, settings: Settings, store: storage.RawStore, first: date, last: date) -> set[str]:
    """IDs received ``first..last`` that any search listed (bronze.search_listings plus answers not ingested yet)."""
    from pyspark.sql import functions as F

    from ttb_spark import bronze, lakehouse

    root = settings.pipeline.lakehouse_root
    table = lakehouse.read_table(spark, bronze.SEARCH_LISTINGS, root)
    listed = {r[0] for r in table.where(F.col("receipt_date").between(first, last)).select("ttb_id").distinct().collect()}
    for key in bronze.pending_manifests(spark, store, root, storage.SEARCH_MANIFESTS):
        listed.update(r["ttb_id"] for r in bronze.read_search_manifest(store, key)
                      if first <= TTBId(r["ttb_id"]).receipt_date <= last)
    return listed


def differences(walked: set[str], listed: set[str]) -> dict[str, int]:
    """Totals and per-receipt-day counts of listed-not-walked and walked-not-listed IDs."""
    return differences_named("listed_not_walked", listed - walked) | differences_named("walked_not_listed", walked - listed)


def differences_named(name: str, ids: set[str]) -> dict[str, int]:
    """``name``: how many ``ids``; ``name.<receipt date>``: how many of them each receipt day."""
    counts: dict[str, int] = defaultdict(int)
    counts[name] = len(ids)
    for ttb_id in ids:
        counts[f"{name}.{TTBId(ttb_id).receipt_date.isoformat()}"] += 1
    return dict(counts)


def in_sample(ttb_id: TTBId, share: float) -> bool:
    """Whether the walk sample of ``share`` holds ``ttb_id``: a hash, not a draw, so every run probes the same IDs."""
    return share >= 1 or int(hashlib.sha256(str(ttb_id).encode()).hexdigest()[:8], 16) < share * 2**32


def unknown_sequences(day: date, method: str, known: set[int], tried: set[int], share: float, threshold: int) -> list[TTBId]:
    """The day and method's IDs in the sample that the walk would try and that are neither ``known`` (listed or
    found) nor ``tried``: every sequence number up to ``threshold`` past the highest known."""
    top = max(known, default=0) + threshold
    ids = (TTBId.build(day, method, seq) for seq in range(1, top + 1) if seq not in known and seq not in tried)
    return [t for t in ids if in_sample(t, share)]


def walk_unknown(fetcher: Fetcher, days: list[date], methods: tuple[str, ...], known: set[str], share: float,
                 threshold: int) -> list[dict[str, Any]]:
    """Detail-page lines of the sampled sequence numbers nothing knows, in rounds: a round's finds move the
    days' highest known sequence, so the next round goes on past it (as the walk does) until nothing new is found."""
    seqs: dict[tuple[date, str], set[int]] = {(d, m): set() for d in days for m in methods}
    for t in map(TTBId, known):
        if (t.receipt_date, t.receipt_method) in seqs:  # known IDs of other days and methods do not bound these
            seqs[t.receipt_date, t.receipt_method].add(t.sequence)
    tried: dict[tuple[date, str], set[int]] = defaultdict(set)
    lines: list[dict[str, Any]] = []
    while ids := [t for (d, m), k in seqs.items() for t in unknown_sequences(d, m, k, tried[d, m], share, threshold)]:
        got = fetcher.fetch(ids, {}, "reconcile", data_types=("cola-detail",))
        for t in ids:
            tried[t.receipt_date, t.receipt_method].add(t.sequence)
        for line in got:
            if line["outcome"] == "found":
                seqs[date.fromisoformat(line["receipt_date"]), line["receipt_method"]].add(line["sequence"])
        lines += got
    return lines


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates) -> dict[str, int]:
    """Report the differences of the scope's receipt days (walking the unknown sequence numbers first when
    asked) and fetch them."""
    store = storage.raw_store(settings)
    walked = walk_found(store, scope.dates, scope.receipt_methods)
    listed = {i for i in search_listed(spark, settings, store, scope.start, scope.end) if i[5:8] in scope.receipt_methods}
    fetcher = Fetcher(settings, store, scope.run_id)
    try:
        share = settings.extraction.reconcile_walk_share
        probes = walk_unknown(fetcher, scope.dates, scope.receipt_methods, walked | listed, share,
                              settings.extraction.consecutive_failure_threshold) if share > 0 else []
        probed = {line["ttb_id"] for line in probes if line["outcome"] == "found"}
        counts = {"walked": len(walked | probed), "listed": len(listed), "listed_not_walked": 0, "walked_not_listed": 0,
                  "probed": len(probes), "probed_found": len(probed)}
        counts |= differences(walked | probed, listed)
        counts |= differences_named("probed_found", probed)
        missing = listed - walked - probed
        stored = discover.stored_records(store, (TTBId(i) for i in missing))
        ids = sorted(TTBId(i) for i in (missing - stored) | (walked - listed))
        lines = probes + fetcher.fetch(sorted(map(TTBId, probed)), {}, "reconcile", data_types=("certificate",))
        lines += fetcher.fetch(ids, {}, "reconcile")
        shots = fetcher.write_images(0)  # before the page manifest, as discovery's parts
    finally:
        fetcher.close()
    storage.write_manifest(store, storage.discovery_manifest_key(scope.run_id, scope.start, scope.end, "received"), lines,
                            {"first": scope.start.isoformat(), "last": scope.end.isoformat(), "run_id": scope.run_id})
    outcomes = {o: sum(1 for line in lines if line["outcome"] == o) for o in ("found", "withdrawn", "not_found", "failed")}
    shot = images.counts(shots) | {"image_requests": fetcher.image_requests} if settings.extraction.label_images else {}
    return counts | {"fetched_ids": len(ids), "requests": fetcher.requests_sent, **{f"pages_{k}": v for k, v in outcomes.items()}, **shot}
