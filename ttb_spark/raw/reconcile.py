"""Reconcile stage: the walk (by receipt date) against the search (by completed date), per receipt day.

For each receipt day of the scope it reports the IDs the search listed that the walk never found
(``listed_not_walked``: approvals after the walk, or a gap the walk missed) and the public IDs the
walk found that no search listed (``walked_not_listed``: withdrawn since, or completed before the
search history began), as totals and per day (``listed_not_walked.<date>`` in the counts, so in
the run summary and the audit row). It then fetches them through discovery's fetcher: listed
IDs without a stored page, and every walked-not-listed ID (a stored page now answering the error
page is recorded ``withdrawn``), in a discovery manifest bronze ingests.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING

from ttb_spark.raw import discover, storage
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
    counts: dict[str, int] = defaultdict(int)
    for name, ids in (("listed_not_walked", listed - walked), ("walked_not_listed", walked - listed)):
        counts[name] += len(ids)
        for ttb_id in ids:
            counts[f"{name}.{TTBId(ttb_id).receipt_date.isoformat()}"] += 1
    return dict(counts)


def run(spark: SparkSession, settings: Settings, scope: ReceiptDates) -> dict[str, int]:
    """Report the differences of the scope's receipt days and fetch them."""
    store = storage.raw_store(settings)
    walked = walk_found(store, scope.dates, scope.receipt_methods)
    listed = {i for i in search_listed(spark, settings, store, scope.start, scope.end) if i[5:8] in scope.receipt_methods}
    counts = {"walked": len(walked), "listed": len(listed), "listed_not_walked": 0, "walked_not_listed": 0}
    counts |= differences(walked, listed)
    missing = listed - walked
    stored = discover.stored_records(store, (TTBId(i) for i in missing))
    ids = sorted(TTBId(i) for i in (missing - stored) | (walked - listed))
    fetcher = discover.Fetcher(settings, store, scope.run_id)
    try:
        lines = fetcher.fetch(ids, {}, "reconcile")
    finally:
        fetcher.close()
    discover.write_manifest(store, storage.discovery_manifest_key(scope.run_id, scope.start, scope.end, "received"), lines,
                            {"first": scope.start.isoformat(), "last": scope.end.isoformat(), "run_id": scope.run_id})
    outcomes = {o: sum(1 for line in lines if line["outcome"] == o) for o in ("found", "withdrawn", "not_found", "failed")}
    return counts | {"fetched_ids": len(ids), "requests": fetcher.requests_sent, **{f"pages_{k}": v for k, v in outcomes.items()}}
