"""Discover stage: find what changed through the registry's own search, then fetch just that.

The scope's dates are **completed** dates here (the runner starts ``--since-last-run`` at the
watermark minus ``TTB_DISCOVERY_OVERLAP_DAYS``; the watermark is the run audit's last covered
date, in the lakehouse). The range is searched in windows of at most
``TTB_DISCOVERY_WINDOW_DAYS``; a window whose "Total Matching Records" exceeds what a search
returns is split until each part is under the cap, and a day's parts must list its whole total
(:mod:`ttb_spark.registry.listing`); a day no way of splitting accounts for fails the stage, naming it and what
was tried.

Each listed ID is fetched (detail, then certificate, through the same polite client and into the
same page keys as the walk) when it is new — not both of its pages stored and named by a complete
manifest (bronze.pages, or a discovery manifest not ingested yet): a certificate that failed while
its detail page was stored is fetched on the next run — or its completed date moved
past the one listed before (``bronze.search_listings`` plus listings not ingested yet): a status
change — or it was never listed before and its stored copy may predate the status now listed (pages
the walk stored: fetched once, on that first listing, unless the stored detail page says APPROVED on
the completed date listed, which a status change would have moved past it). A withdrawn record is no longer listed: each run also re-lists the
``TTB_DISCOVERY_SWEEP_DAYS`` before its range (never before ``TTB_PARTITION_START_DATE``, where the
history starts), and an ID whose latest listing so far falls in the
re-listed days but that no search of the run lists (it vanished) is fetched again; a stored page
now answering the error page is recorded ``withdrawn``.

Raw store, per run and range, manifest first and ``_COMPLETE`` (naming the manifest's SHA-256)
last: the search answers as served under ``search/completed_date=<date>/run_id=<run>/...``, before any fetch;
then the fetches, :data:`PART_IDS` IDs at a time, each part in
``manifests/discovery/run_id=<run>/completed=<first>_<last>/part=<n>/manifest.jsonl`` (walk manifest lines),
which bronze ingests once each: a run killed while fetching keeps its finished parts; then the listing's
``search/manifests/run_id=<run>/completed=<first>_<last>/manifest.jsonl``. A listing counts as previous only
once its manifest is complete, so a run killed before it leaves the status changes it listed to be fetched by
the rerun (those of its finished parts again: a few pages). A page that gets no usable answer (failed, or unexpected such as a
CAPTCHA) is recorded in the manifest and does not stop the run: later runs fetch it again, whatever
dates they list, until it arrives or ``TTB_FAILED_PAGE_RETRY_DAYS`` have passed since its failures
began; each run counts what it retried and what it gave up on.

With ``TTB_LABEL_IMAGES``, each certificate found is followed by its label images in the same session, each part's
image manifest written before its page manifest, and the run then revisits the images earlier runs left
pending (:mod:`ttb_spark.raw.images`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ttb_spark.partitions import Partition
from ttb_spark.raw import images, storage
from ttb_spark.raw.fetch import Fetcher
from ttb_spark.registry import search
from ttb_spark.registry.client import SearchAnswer
from ttb_spark.registry.listing import known_codes, list_completed, windows
from ttb_spark.registry.ttb_id import TTBId
from ttb_spark.settings import DATA_TYPES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.scope import CompletedDates
    from ttb_spark.settings import Settings

log = logging.getLogger(__name__)


FAILED = ("failed", "unexpected")  # outcomes of a page attempt that got no usable answer
# IDs whose fetches one discovery manifest records: a rerun after a kill fetches again at most the part the
# kill interrupted (500 IDs, 1,000 pages: ~17 minutes at the production profile's one request a second)
PART_IDS = 500
READ_THREADS = 8  # raw-store reads of stored pages at a time (an object store answers each in tens of ms)


def keep_answers(store: storage.RawStore, run_id: str, answers: list[tuple[SearchAnswer, bool]]) -> list[dict[str, Any]]:
    """Store every search answer as served; the search manifest's lines (one per search). A search asked again
    in the run (a window that grew while it was listed) is kept beside the first, as ``<label>.2`` ..."""
    lines = []
    times: dict[str, int] = {}
    for answer, final in answers:
        c = answer.criteria
        times[c.label] = times.get(c.label, 0) + 1
        where = c.label if times[c.label] == 1 else f"{c.label}.{times[c.label]}"
        keys = []
        for name, body in answer.answers:
            key = storage.search_answer_key(run_id, c.date_from, where, name)
            store.put(key, body)
            keys.append(key)
        lines.append({
            "label": c.label, "criteria": c.form(), "total": answer.total, "returned": answer.returned,
            "listed": len(answer.rows), "source": answer.source, "final": final, "keys": keys,
            "attempts": answer.attempts, "searched_at": answer.searched_at.isoformat(), "run_id": run_id,
        })
    return lines


def previous_completions(spark: SparkSession | None, settings: Settings, store: storage.RawStore,
                         ids: set[str]) -> dict[str, date]:
    """The latest completed date each of ``ids`` was listed with before: bronze.search_listings plus
    complete search manifests bronze has not ingested yet."""
    from ttb_spark import bronze

    best: dict[str, date] = {}
    root = settings.pipeline.lakehouse_root
    if spark is not None:
        from pyspark.sql import functions as F

        from ttb_spark import lakehouse

        table = lakehouse.read_table(spark, bronze.SEARCH_LISTINGS, root)
        wanted = spark.createDataFrame([(i,) for i in sorted(ids)] or [("",)], "ttb_id string")
        for row in table.join(wanted, "ttb_id").groupBy("ttb_id").agg(F.max("completed_date")).collect():
            best[row[0]] = row[1]
        pending = bronze.pending_manifests(spark, store, root, storage.SEARCH_MANIFESTS)
    else:
        pending = storage.complete_manifests(store, storage.SEARCH_MANIFESTS)
    for key in pending:
        for row in bronze.read_search_manifest(store, key):
            if row["ttb_id"] in ids and row["completed_date"] > best.get(row["ttb_id"], date.min):
                best[row["ttb_id"]] = row["completed_date"]
    return best


def vanished(spark: SparkSession | None, settings: Settings, store: storage.RawStore, first: date, last: date,
             listed: set[str]) -> list[TTBId]:
    """IDs whose latest listing so far (bronze.search_listings plus complete search manifests not ingested)
    has a completed date in ``first..last``, that ``listed`` (this run's searches of those days) lacks and
    whose detail page bronze holds as public (not recorded withdrawn yet)."""
    from ttb_spark import bronze

    candidates: set[str] = set()
    if spark is not None:
        from pyspark.sql import functions as F

        from ttb_spark import lakehouse

        table = lakehouse.read_table(spark, bronze.SEARCH_LISTINGS, settings.pipeline.lakehouse_root)
        in_days = table.where(F.col("completed_date").between(F.lit(first), F.lit(last)))
        candidates = {r[0] for r in in_days.select("ttb_id").distinct().collect()}
        pending = bronze.pending_manifests(spark, store, settings.pipeline.lakehouse_root, storage.SEARCH_MANIFESTS)
        candidates |= {r["ttb_id"] for key in pending for r in bronze.read_search_manifest(store, key) if first <= r["completed_date"] <= last}
        pages = lakehouse.read_table(spark, bronze.PAGES, settings.pipeline.lakehouse_root)
        wanted = spark.createDataFrame([(i,) for i in sorted(candidates - listed)] or [("",)], "ttb_id string")
        held = pages.where(F.col("withdrawn_at").isNull() & (F.col("data_type") == "cola-detail")).join(wanted, "ttb_id", "left_semi")
        candidates &= {r[0] for r in held.select("ttb_id").collect()}  # public in bronze: not recorded withdrawn, nor never held
    candidates -= listed
    latest = previous_completions(spark, settings, store, candidates) if candidates else {}
    return [TTBId(i) for i in sorted(candidates) if first <= latest.get(i, date.min) <= last]


def to_fetch(listed: list[search.Listing], previous: dict[str, date], stored: Callable[[TTBId], bool],
             current: frozenset[str] = frozenset()) -> tuple[list[TTBId], dict[str, int]]:
    """IDs to fetch, and how many of them are new (not both pages held), moved (a completed date past the
    last listed) or first listed (held, but never listed before: stored by the walk, whose copy may be older
    than the status now listed); a first-listed ID in ``current`` (its stored copy shows the listed status,
    :func:`current_copies`) is counted ``first_listed_current`` and not fetched."""
    ids, counts = [], {"new": 0, "moved": 0, "first_listed": 0, "first_listed_current": 0}
    for row in listed:
        ttb_id = TTBId(row.ttb_id)
        why = ("new" if not stored(ttb_id) else "first_listed" if row.ttb_id not in previous
               else "moved" if row.completed_date > previous[row.ttb_id] else None)
        if why == "first_listed" and row.ttb_id in current:
            counts["first_listed_current"] += 1
        elif why:
            ids.append(ttb_id)
            counts[why] += 1
    return ids, counts


def current_copies(store: storage.RawStore, listed: Iterable[search.Listing]) -> frozenset[str]:
    """Of ``listed`` (held IDs listed for the first time), those whose stored detail page is current: it says
    APPROVED with the approval date the listing gives as completed. A status change moves the completed
    date past the approval date, so any other copy is fetched again. One raw-store read per ID, once (an ID
    listed once has a previous listing from then on), :data:`READ_THREADS` at a time."""
    from ttb_spark.registry import parse

    def is_current(row: search.Listing) -> bool:
        ttb_id = TTBId(row.ttb_id)
        key = storage.page_key(Partition(ttb_id.receipt_date, ttb_id.receipt_method, "cola-detail"), ttb_id)
        record = parse.parse_page(store.get(key), row.ttb_id, "detail").record or {}
        return record.get("status") == "APPROVED" and record.get("approval_date") == row.completed_date.isoformat()

    rows = list(listed)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return frozenset(row.ttb_id for row, current in zip(rows, pool.map(is_current, rows)) if current)


def stored_records(store: storage.RawStore, ids: Iterable[TTBId]) -> set[str]:
    """Which of ``ids`` have both pages stored, detail and certificate (one listing per receipt day, method
    and page kind): an ID whose certificate failed while its detail page was stored is fetched again."""
    wanted = sorted(set(ids))
    both = {str(i) for i in wanted}
    for data_type in DATA_TYPES:
        stored: set[str] = set()
        for day, method in sorted({(i.receipt_date, i.receipt_method) for i in wanted}):
            prefix = storage.partition_prefix("pages", Partition(day, method, data_type))
            stored.update(k.rsplit("/", 1)[1].removesuffix(".html") for k in store.list(prefix))
        both &= stored
    return both


def failing_since(lines: Iterable[tuple[str, str, str, datetime]], window_start: datetime) -> dict[str, datetime]:
    """TTB ID -> when its failing began, from fetch attempts (ttb_id, data_type, outcome, fetched_at): the IDs
    with a page whose attempts since its last usable answer all failed, one of them at or after
    ``window_start``; the earliest such attempt of the ID's failing pages."""
    good: dict[tuple[str, str], datetime] = {}
    bad: dict[tuple[str, str], list[datetime]] = {}
    for ttb_id, data_type, outcome, at in lines:
        if outcome in FAILED:
            bad.setdefault((ttb_id, data_type), []).append(at)
        else:
            good[(ttb_id, data_type)] = max(at, good.get((ttb_id, data_type), at))
    since: dict[str, datetime] = {}
    for (ttb_id, data_type), times in bad.items():
        streak = [t for t in times if (ttb_id, data_type) not in good or t > good[(ttb_id, data_type)]]
        if streak and max(streak) >= window_start:
            since[ttb_id] = min(min(streak), since.get(ttb_id, min(streak)))
    return since


def attempts_of_failing_ids(spark: SparkSession | None, settings: Settings, store: storage.RawStore,
                    window_start: datetime) -> list[tuple[str, str, str, datetime]]:
    """Every discovery fetch attempt (ttb_id, data_type, outcome, fetched_at) of the IDs with a failed one at
    or after ``window_start``: bronze.scrape_manifest's discovery lines (read by those IDs' receipt dates)
    plus the complete discovery manifests bronze has not ingested yet."""
    from ttb_spark import bronze

    def instant(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, timezone.utc)

    attempts: list[tuple[str, str, str, datetime]] = []
    if spark is not None:
        from pyspark.sql import functions as F

        from ttb_spark import lakehouse

        root = settings.pipeline.lakehouse_root
        lines = lakehouse.read_table(spark, bronze.SCRAPE_MANIFEST, root).where(
            F.col("manifest_key").startswith(storage.DISCOVERY_MANIFESTS))
        at = F.col("fetched_at").cast("double")  # epoch seconds, whatever the session's time zone
        recent = lines.where(F.col("outcome").isin(*FAILED) & (at >= window_start.timestamp()))
        ids = sorted({r[0] for r in recent.select("ttb_id").distinct().collect()})
        if ids:
            wanted = spark.createDataFrame([(i,) for i in ids], "ttb_id string")
            of_ids = lines.where(F.col("receipt_date").isin(sorted({TTBId(i).receipt_date for i in ids}))).join(wanted, "ttb_id", "left_semi")
            attempts += [(r[0], r[1], r[2], instant(r[3])) for r in of_ids.select("ttb_id", "data_type", "outcome", at).collect()]
        pending = bronze.pending_manifests(spark, store, root, storage.DISCOVERY_MANIFESTS)
    else:
        pending = storage.complete_manifests(store, storage.DISCOVERY_MANIFESTS)
    for key in pending:
        for e in storage.manifest_entries(store, key):
            attempts.append((e["ttb_id"], e["data_type"], e["outcome"], datetime.fromisoformat(e["fetched_at"])))
    return attempts


def sweep_start(first: date, sweep_days: int, history_start: date) -> date:
    """The first completed date the withdrawal sweep re-lists: ``sweep_days`` before ``first``, never
    before the history's first date (nothing before it was ever listed or fetched)."""
    return max(first - timedelta(days=sweep_days), min(history_start, first))


def recorded_records(spark: SparkSession, settings: Settings, store: storage.RawStore, ids: set[str]) -> set[str]:
    """Which of ``ids`` (IDs with both pages stored) a complete manifest names as public, both pages: held
    in bronze.pages and not withdrawn, or found in a complete discovery manifest bronze has not ingested
    yet. A page stored by a run killed before it wrote its manifest is in neither, so it is fetched
    again rather than never ingested; so is a withdrawn one listed again (public again: reinstated)."""
    from pyspark.sql import functions as F

    from ttb_spark import bronze, lakehouse

    if not ids:
        return set()
    root = settings.pipeline.lakehouse_root
    tids = [TTBId(i) for i in sorted(ids)]
    pages = lakehouse.read_table(spark, bronze.PAGES, root).where(
        F.col("receipt_date").isin(sorted({t.receipt_date for t in tids}))
        & F.col("method_type").isin(sorted({f"{t.receipt_method}-{d}" for t in tids for d in DATA_TYPES}))
        & F.col("withdrawn_at").isNull()
    )
    wanted = spark.createDataFrame([(str(t),) for t in tids], "ttb_id string")
    held: dict[str, set[str]] = {}
    for r in pages.join(wanted, "ttb_id", "left_semi").select("ttb_id", "data_type").collect():
        held.setdefault(r[0], set()).add(r[1])
    for key in bronze.pending_manifests(spark, store, root, storage.DISCOVERY_MANIFESTS):
        for entry in storage.manifest_entries(store, key):
            if entry["outcome"] == "found" and entry["ttb_id"] in ids:
                held.setdefault(entry["ttb_id"], set()).add(entry["data_type"])
    return {i for i, kinds in held.items() if kinds >= set(DATA_TYPES)}


def held_records(spark: SparkSession | None, settings: Settings, store: storage.RawStore, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` discovery counts as held: both pages stored (:func:`stored_records`) and, with a
    session, named by a complete manifest (:func:`recorded_records`)."""
    wanted = set(ids)
    held = stored_records(store, map(TTBId, wanted)) if wanted else set()
    return held if spark is None else recorded_records(spark, settings, store, held)


def split_codes(spark: SparkSession | None, settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(class/type codes, origin codes) listing splits by: the seed's, and those of gold.ttb_reference_data,
    which the ``reference`` job refreshes from the registry's own lookup lists (longer than the seed)."""
    from ttb_spark import lakehouse, reference

    classes, origins = known_codes()
    if spark is None or not lakehouse.table_exists(spark, reference.REFERENCE_DATA, settings.pipeline.lakehouse_root):
        return classes, origins
    rows = reference.read(spark, settings).where("ref_type IN ('class_type', 'origin')").select("ref_type", "code").distinct().collect()
    more = {kind: {r["code"] for r in rows if r["ref_type"] == kind and r["code"]} for kind in ("class_type", "origin")}
    return tuple(sorted(set(classes) | more["class_type"])), tuple(sorted(set(origins) | more["origin"]))


def discover(settings: Settings, run_id: str, first: date, last: date, *, history_start: date, spark: SparkSession | None = None,
             sweep: bool = True, now: datetime | None = None, received: tuple[date, date] | None = None,
             today: date | None = None) -> dict[str, int]:
    """Search ``first..last`` by completed date, store the answers, fetch what is new or moved; the sweep
    reaches back no further than ``history_start`` (``CompletedDates.history_start``). Without
    ``sweep`` (a run's later chunks: its first chunk re-listed those days, and the earlier chunks listed
    the days since) no day before ``first`` is re-listed. ``now``: the time the failed pages' retry window
    ends at (default: the current time). ``received``: fetch only the listed IDs received in these dates (a
    backfill by search); every answer is kept whole all the same. ``today``: the registry's, which label images
    are due by (default: ``now``'s date)."""
    store = storage.raw_store(settings)
    fetcher = Fetcher(settings, store, run_id, today or (now or datetime.now(timezone.utc)).date())
    searcher = fetcher.clients[0]
    try:
        listed: dict[str, search.Listing] = {}
        answers: list[tuple[SearchAnswer, bool]] = []
        swept: set[str] = set()
        elsewhere: set[str] = set()  # listed in the days, received outside ``received``: not this run's to fetch
        sweep_first = sweep_start(first, settings.extraction.discovery_sweep_days, history_start) if sweep else first
        codes = split_codes(spark, settings)
        for window in windows(sweep_first, last, settings.extraction.discovery_window_days):
            rows, got = list_completed(searcher.search, window, codes)
            answers += got
            for r in rows:
                if received is not None and not received[0] <= TTBId(r.ttb_id).receipt_date <= received[1]:
                    elsewhere.add(r.ttb_id)
                elif r.completed_date >= first:
                    listed[r.ttb_id] = r
                else:
                    swept.add(r.ttb_id)
        search_requests = fetcher.requests_sent
        # pages that failed on earlier runs: fetched again until they arrive, for the retry window after their failing began
        window_start = (now or datetime.now(timezone.utc)) - timedelta(days=settings.extraction.failed_page_retry_days)
        failing = failing_since(attempts_of_failing_ids(spark, settings, store, window_start), window_start)
        # before this run's listing is recorded (a failing ID fetched again is not in it: it would be fetched as new)
        previous = previous_completions(spark, settings, store, set(listed) | set(failing))
        gone = vanished(spark, settings, store, sweep_first, last, swept | elsewhere | set(listed))
        kept = keep_answers(store, run_id, answers)
        rows = sorted(listed.values(), key=lambda r: r.ttb_id)
        held = held_records(spark, settings, store, set(listed) | set(failing))
        current = current_copies(store, (r for r in rows if r.ttb_id in held and r.ttb_id not in previous))
        ids, why = to_fetch(rows, previous, lambda i: str(i) in held, current)
        ids += gone
        fetching = {str(t) for t in ids}
        failing = {i: at for i, at in failing.items() if i not in held and i not in fetching}
        retry = sorted(i for i, at in failing.items() if at >= window_start)
        given_up = sorted(set(failing) - set(retry))
        if given_up:
            log.warning("discover: %d page(s) failing since before %s are no longer retried: %s", len(given_up), window_start.date(), " ".join(given_up))
        ids += [TTBId(i) for i in retry]
        completed = {i: previous[i] for i in retry if i in previous} | {r.ttb_id: r.completed_date for r in rows}
        lines: list[dict[str, Any]] = []
        shots: list[dict[str, Any]] = []
        for number, start in enumerate(range(0, max(len(ids), 1), PART_IDS)):
            part = fetcher.fetch(ids[start:start + PART_IDS], completed)
            shots += fetcher.write_images(number)  # before the part's page manifest: a rerun fetches its certificates again
            storage.write_manifest(store, storage.discovery_manifest_key(run_id, first, last, part=number), part,
                           {"first": first.isoformat(), "last": last.isoformat(), "run_id": run_id, "part": number})
            lines += part
        # the listing last: until its fetches are recorded it is no previous listing, so a rerun after a kill still
        # fetches the status changes it lists (a killed run's listing would make them look fetched)
        storage.write_manifest(store, storage.search_manifest_key(run_id, first, last), kept,
                               {"first": first.isoformat(), "last": last.isoformat(), "run_id": run_id, "searches": len(answers)})
        image_counts: dict[str, int] = {}
        if settings.extraction.label_images:
            owed, gave_up = images.pending(store, fetcher.today, settings.extraction.image_revisit_days, run_id)
            fetcher.revisit(owed)
            revisited = fetcher.write_images(number + 1)
            image_counts = images.counts(shots + revisited) | {"images_revisited": len(revisited), "images_given_up": gave_up,
                                                                "image_requests": fetcher.image_requests}
        outcomes = {o: sum(1 for line in lines if line["outcome"] == o) for o in ("found", "not_found", "withdrawn", "unexpected", "failed")}
        counts = {
            "searches": len(answers), "searches_split": sum(1 for _, final in answers if not final),
            "listed": len(rows), "listed_elsewhere": len(elsewhere), "swept": len(swept), **why, "vanished": len(gone), "retried": len(retry), "given_up": len(given_up), "fetched_ids": len(ids),
            **{f"pages_{k}": v for k, v in outcomes.items()},
            **image_counts, "search_requests": search_requests, "requests": fetcher.requests_sent,
        }
    finally:
        fetcher.close()
    return counts


def run(spark: SparkSession, settings: Settings, scope: CompletedDates) -> dict[str, int]:
    """The stage: discover over the scope's completed dates, sweeping back to the history's start."""
    return discover(settings, scope.run_id, scope.start, scope.end, history_start=scope.history_start, spark=spark, sweep=scope.sweep,
                    received=scope.received, today=settings.extraction.registry_today())
