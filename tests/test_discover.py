"""Discovery by the registry's search against the simulator: windows over the cap are split until
every ID is listed (or fail naming the window), and the daily job fetches what is new or changed,
lands it in bronze (pages and listings) and keeps its watermark in the run audit."""

from __future__ import annotations

import json
from dataclasses import replace
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from pyspark.sql import functions as F

from conftest import make_settings
from ttb_spark import bronze, cli, lakehouse, reference
from ttb_spark.ops import audit, runner
from ttb_spark.raw import discover, storage
from ttb_spark.registry import listing, parse, search, simulator
from ttb_spark.registry.client import Pacer, RegistryClient
from ttb_spark.partitions import Partition
from ttb_spark.scope import CompletedDates, ReceiptDates
from ttb_spark.registry.ttb_id import TTBId

TODAY = date(2024, 3, 1)
DAY = date(2024, 2, 27)  # seed 0, scale 0.3: 83 completions; class 81 has 13 (5 from origin 50, 8 from 01); no pair has more than 8


def settings_for(tmp_path, sim, **pipeline):
    return make_settings(tmp_path, pipeline=pipeline, extraction={"registry_base_url": sim.base_url, "use_simulator": False})


def test_a_window_over_the_cap_is_split_until_every_id_is_listed(tmp_path):
    with simulator.running(seed=0, scale=0.3, today=TODAY, search_cap=8) as sim:
        client = RegistryClient(settings_for(tmp_path, sim).extraction, Pacer(0))
        window = search.Criteria(DAY - timedelta(days=1), DAY)
        rows, answers = listing.list_completed(client.search, window)
        truth = sim.search(window)
    assert len(truth) > 8
    assert sorted((r.ttb_id, r.completed_date) for r in rows) == [(r.ttb_id, r.completed_date) for r in truth]
    finals = [a for a, final in answers if final]
    assert all(a.total <= 8 for a in finals) and sum(a.total for a in finals) == len(truth)
    splits = [a.criteria for a, final in answers if not final]
    assert any(c.date_from < c.date_to for c in splits)  # by date, then ...
    assert any(c.date_from == c.date_to and c.class_type_from != c.class_type_to for c in splits)  # ... by class/type range
    assert any(a.criteria.origin_code for a in finals)  # ... then by origin


@pytest.mark.parametrize("order", ["string", "numeric"])
def test_a_day_split_deep_lists_every_record_whatever_the_code_order_and_codes_outside_the_seed(tmp_path, order):
    """Issue #22 (1): a cap of 3 rows splits each day several levels deep; the search compares codes as strings
    or as zero-padded numbers (``81`` then before ``100``), and files some records under codes the seed lacks
    (between two seed codes, before and after all of them). Every completed record is listed."""
    with simulator.running(seed=0, scale=0.3, today=TODAY, search_cap=3, code_order=order, unlisted_codes=0.2) as sim:
        client = RegistryClient(settings_for(tmp_path, sim).extraction, Pacer(0))
        window = search.Criteria(DAY - timedelta(days=1), DAY)
        rows, answers = listing.list_completed(client.search, window)
        truth = sim.search(window)
    unlisted = {r.class_type_code for r in truth} - set(listing.known_codes()[0])
    assert len(unlisted) >= 3 and len(truth) > 100
    assert sorted((r.ttb_id, r.completed_date) for r in rows) == [(r.ttb_id, r.completed_date) for r in truth]
    assert all(a.total <= 3 for a, final in answers if final) and any(not final for _, final in answers)
    assert len({a.criteria for a, _ in answers}) == len(answers)  # no search asked twice, whichever ways reached it


def test_a_search_asked_again_is_kept_beside_the_first(tmp_path):
    from ttb_spark.registry.client import SearchAnswer

    window = search.Criteria(DAY, DAY)
    answers = [(SearchAnswer(window, n, n, (), "results", (("results-001.html", f"<html>{n}</html>".encode()),), 1,
                             datetime(2024, 3, 1, tzinfo=timezone.utc)), True) for n in (3, 4)]
    store = storage.open_store(str(tmp_path / "raw"))
    lines = discover.keep_answers(store, "r1", answers)
    first, second = (line["keys"] for line in lines)
    assert first != second and [store.get(k) for k in first + second] == [b"<html>3</html>", b"<html>4</html>"]


def test_class_type_halves_follow_the_order_and_meet_at_a_code_nothing_listed():
    day = search.Criteria(DAY, DAY)
    codes = ["100", "101", "80", "81", "82", "9"]
    first, second = listing.split(day, codes, "string", busy={"101"})  # 100 101 80 81 82 9: meet at 81, the middle
    assert (first.class_type_from, first.class_type_to, second.class_type_from, second.class_type_to) == ("", "81", "81", "")
    first, second = listing.split(day, codes, "numeric", busy={"82"})  # 9 80 81 82 100 101: the middle is busy, 81 is next
    assert (first.class_type_to, second.class_type_from) == ("81", "81")
    first, second = listing.split(day, codes, "string", busy=codes)  # every code listed: halves meet between two
    assert (first.class_type_to, second.class_type_from) == ("80", "81")
    assert listing.split(search.Criteria(DAY, DAY, "0", "000"), ["0", "00", "000"], "numeric") == []  # one place in the order


def test_listing_splits_by_the_codes_the_reference_job_refreshed_too(spark, tmp_path):
    """Codes the registry's lookup lists hold and the seed lacks (merged by the ``reference`` job) are split by."""
    settings = make_settings(tmp_path)
    assert discover.split_codes(spark, settings) == listing.known_codes()  # no reference table yet: the seed's
    reference.merge(spark, settings, [reference.RefRow("class_type", "80B", "A CODE ONLY THE REGISTRY LISTS", source="registry"),
                                      reference.RefRow("origin", "9Z", "AN ORIGIN ONLY THE REGISTRY LISTS", source="registry")])
    classes, origins = discover.split_codes(spark, settings)
    assert "80B" in classes and "9Z" in origins and set(listing.known_codes()[0]) < set(classes)


def test_a_window_that_cannot_be_split_fails_naming_it_and_what_was_tried(tmp_path):
    # cap 2: on DAY three records share class/type 411, origin 4A and the brand's first three letters
    with simulator.running(seed=0, scale=0.3, today=TODAY, search_cap=2) as sim:
        client = RegistryClient(settings_for(tmp_path, sim).extraction, Pacer(0))
        with pytest.raises(listing.WindowTooLarge) as failure:
            listing.list_completed(client.search, search.Criteria(DAY, DAY))
        text = str(failure.value)
        assert text.startswith(f"search window {DAY}_{DAY}: 83 records, more than the 2 a search returns"), text
        for way in ("class/type ranges (string order)", "class/type ranges (numeric order)", "each class/type code", "each origin",
                    "each brand-name prefix"):
            assert f"{way}: search window" in text, text
        # the narrowest search over the cap: one day, class/type code and origin, a brand prefix of 3 characters
        named = re.search(rf"search window {DAY}_{DAY}_ct-(\w+)-\1_or-(\w+)_bn-(\w{{3}}): (\d+) records, more than the 2", text)
        assert named, text
        code, origin, prefix, total = named.groups()
        narrowest = sim.search(search.Criteria(DAY, DAY, code, code, origin, prefix))
    assert len(narrowest) == int(total) > 2


def test_the_withdrawal_sweep_stops_at_the_history_start():
    assert discover.sweep_start(date(2024, 12, 1), 180, date(2024, 1, 2)) == date(2024, 6, 4)
    assert discover.sweep_start(date(2024, 3, 10), 180, date(2024, 3, 4)) == date(2024, 3, 4)
    assert discover.sweep_start(date(2024, 3, 1), 180, date(2024, 3, 4)) == date(2024, 3, 1)  # a range before the history: no sweep


def _stored_ids(store: storage.RawStore, data_type: str, ids: set[str]) -> set[str]:
    """Which of ``ids`` have a ``data_type`` page in the raw store."""
    tids = [TTBId(i) for i in ids]
    prefixes = {storage.partition_prefix("pages", Partition(t.receipt_date, t.receipt_method, data_type)) for t in tids}
    return {k.rsplit("/", 1)[1].removesuffix(".html") for p in sorted(prefixes) for k in store.list(p)} & ids


def test_a_certificate_that_failed_is_fetched_on_the_next_run(tmp_path):
    """Issue #23 (2): a run stores every detail page but no certificate (the registry fails them all);
    the next run, against a healthy registry, fetches the certificates it lacks: an ID counts as held
    only when both of its pages are."""
    with simulator.running(seed=0, scale=0.05, today=TODAY, faults={"server_error": 1.0, "data_types": ("certificate",)}) as sim:
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        listed = {r.ttb_id for r in sim.search(search.Criteria(DAY, DAY))}
        first = discover.discover(settings, "r1", DAY, DAY, history_start=DAY)
        assert first["pages_failed"] == len(listed)
        assert listed and _stored_ids(store, "cola-detail", listed) == listed and not _stored_ids(store, "certificate", listed)
        sim.faults = simulator.Faults()
        again = discover.discover(settings, "r2", DAY, DAY, history_start=DAY)
    assert _stored_ids(store, "certificate", listed) == listed
    assert again["fetched_ids"] == len(listed) and again["pages_failed"] == 0


def test_a_page_that_keeps_failing_is_recorded_without_stopping_the_run_and_retried_by_later_runs(tmp_path):
    """Issue #23 (2b): a certificate the registry serves broken on every request ends its run recorded
    ``failed`` and counted, the run's other pages stored; a later run over other days fetches it again
    (it is not listed there); once the retry window since its failing began has passed, runs give it up
    and say so."""
    days = [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        listed = {d: sorted(r.ttb_id for r in sim.search(search.Criteria(d, d))) for d in days}
        broken, other = listed[days[0]][0], listed[days[0]][-1]
        sim.faults = simulator.Faults(broken=(f"{broken}/certificate", f"{other}/certificate"))
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        first = discover.discover(settings, "r1", days[0], days[0], history_start=days[0])
        assert (first["pages_failed"], first["pages_found"]) == (2, 2 * len(listed[days[0]]) - 2)
        assert _stored_ids(store, "certificate", set(listed[days[0]])) == set(listed[days[0]]) - {broken, other}
        failed = [json.loads(x) for k in store.list("manifests/discovery/run_id=r1/") if k.endswith(storage.MANIFEST)
                  for x in store.get(k).decode().splitlines()]
        assert sorted(f["ttb_id"] for f in failed if f["outcome"] == "failed") == sorted([broken, other])

        sim.faults = simulator.Faults(broken=(f"{other}/certificate",))  # one is served again, the other stays broken
        second = discover.discover(settings, "r2", days[1], days[1], history_start=days[0], sweep=False)
        assert (second["retried"], second["given_up"], second["pages_failed"]) == (2, 0, 1)
        assert _stored_ids(store, "certificate", {broken, other}) == {broken}
        third = discover.discover(settings, "r3", days[2], days[2], history_start=days[0], sweep=False)
        assert (third["retried"], third["pages_failed"]) == (1, 1)  # only the one still failing

        last_failure = max(datetime.fromisoformat(f["fetched_at"]) for k in store.list("manifests/discovery/run_id=r3/")
                           if k.endswith(storage.MANIFEST) for f in map(json.loads, store.get(k).decode().splitlines()))
        later = last_failure + timedelta(days=settings.extraction.failed_page_retry_days)  # failing since r1: past the window
        fourth = discover.discover(settings, "r4", days[2], days[2], history_start=days[0], sweep=False, now=later)
    assert (fourth["retried"], fourth["given_up"], fourth["pages_failed"]) == (0, 1, 0)


def test_a_page_stored_by_the_walk_is_fetched_again_when_the_search_first_lists_it(tmp_path):
    """Issue #23 (3): the walk stored a COLA's pages while it was approved; its status changes later, and the
    search lists it for the first time on the change's day. With no earlier listing to compare with, that
    first listing fetches it again: the stored copy now shows the new status."""
    from ttb_spark.raw import scrape

    changed, received, changed_on = "24024001000020", date(2024, 1, 24), date(2024, 3, 28)  # seed 0: EXPIRED on 2024-03-28
    with simulator.running(seed=0, scale=0.05, today=date(2024, 3, 1)) as sim:
        assert sim.registry.record(changed).change_date == changed_on
        settings = make_settings(tmp_path, pipeline={"receipt_methods": ["001"]}, extraction={
            "registry_base_url": sim.base_url, "use_simulator": False, "consecutive_failure_threshold": 200})
        store = storage.raw_store(settings)
        work = [(Partition(received, "001", t), False) for t in discover.DATA_TYPES]
        list(scrape.scrape_slice([(0, work)], settings, "walk-1", 1))
        key = storage.page_key(Partition(received, "001", "cola-detail"), TTBId(changed))
        assert b"EXPIRED" not in store.get(key)

        sim.today = changed_on
        counts = discover.discover(settings, "daily-1", changed_on, changed_on, history_start=changed_on)
    assert changed in {r.ttb_id for r in sim.search(search.Criteria(changed_on, changed_on))}
    assert b"EXPIRED" in store.get(key)
    assert counts["first_listed"] >= 1


def test_a_page_stored_by_the_walk_whose_copy_shows_the_listed_status_is_not_fetched_again(tmp_path):
    """Issue #22 (3): a walk-built lakehouse goes on under discovery without fetching what it holds again. On
    their first listing, the walked COLAs whose stored detail page says APPROVED on the completed date listed
    are current; only those whose status changed after approval are fetched again."""
    from ttb_spark.raw import reconcile, scrape

    received = date(2024, 1, 24)
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        settings = make_settings(tmp_path, pipeline={"receipt_methods": ["001"]}, extraction={
            "registry_base_url": sim.base_url, "use_simulator": False, "consecutive_failure_threshold": 200})
        store = storage.raw_store(settings)
        list(scrape.scrape_slice([(0, [(Partition(received, "001", t), False) for t in discover.DATA_TYPES])], settings, "walk-1", 1))
        walked = reconcile.walk_found(store, [received], ("001",))
        hits = len(sim.hits)
        counts = discover.discover(settings, "daily-1", received, TODAY, history_start=received, sweep=False)
        fetched = {h.ttb_id for h in sim.hits[hits:] if h.data_type != "search"}
    changed = {i for i in walked if (sim.registry.record(i).change_date or date.max) <= TODAY}
    assert walked and len(changed) < len(walked)
    assert {r.ttb_id for r in sim.search(search.Criteria(received, TODAY)) if r.ttb_id.startswith("24024001")} == walked
    assert fetched & walked == changed
    assert (counts["first_listed"], counts["first_listed_current"]) == (len(changed), len(walked) - len(changed))


def test_failing_since_is_the_start_of_each_ids_current_failures_within_the_window():
    at = [datetime(2024, 3, d, tzinfo=timezone.utc) for d in range(1, 9)]
    lines = [
        ("A", "certificate", "failed", at[0]), ("A", "certificate", "found", at[1]),  # fixed, then failing again
        ("A", "certificate", "unexpected", at[3]), ("A", "certificate", "failed", at[5]),
        ("A", "cola-detail", "found", at[0]),
        ("B", "cola-detail", "failed", at[2]), ("B", "certificate", "failed", at[4]),  # both pages: the earlier start
        ("C", "certificate", "failed", at[0]), ("C", "certificate", "found", at[6]),  # arrived: nothing to retry
        ("D", "certificate", "failed", at[1]),  # its last failure before the window: no longer a candidate
    ]
    assert discover.failing_since(lines, at[2]) == {"A": at[3], "B": at[2]}
    assert discover.failing_since(lines, at[5]) == {"A": at[3]}


def test_a_later_chunk_of_a_run_re_lists_no_day_before_its_range(tmp_path):
    """Issue #23 (10): the withdrawal sweep re-lists the days before a run once, in its first chunk; a later
    chunk (``sweep=False``, as the runner passes it) lists its own days only."""
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        history = DAY - timedelta(days=20)
        first = discover.discover(settings, "chunk-1", DAY - timedelta(days=1), DAY - timedelta(days=1), history_start=history)
        second = discover.discover(settings, "chunk-2", DAY, DAY, history_start=history, sweep=False)

    def searched(run_id: str) -> set[date]:
        keys = (k for k in store.list("search/completed_date=") if f"/run_id={run_id}/" in k)
        return {date.fromisoformat(re.search(r"completed_date=([\d-]+)/", k).group(1)) for k in keys}

    assert first["swept"] > 0 and min(searched("chunk-1")) == history
    assert second["swept"] == 0 and searched("chunk-2") == {DAY}


def test_a_run_killed_while_fetching_keeps_its_finished_parts(spark, tmp_path, monkeypatch):
    """Discovery records its fetches ``PART_IDS`` IDs per manifest, each complete on its own: a run killed in a
    part (its pages stored, its manifest not yet) keeps the parts before it, and the rerun fetches the
    interrupted part's IDs only."""
    monkeypatch.setattr(discover, "PART_IDS", 5)
    with simulator.running(seed=0, scale=0.05, today=TODAY) as sim:
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        first = discover.discover(settings, "killed", DAY, DAY, history_start=DAY, spark=spark)
        parts = sorted(k for k in store.list(storage.DISCOVERY_MANIFESTS) if k.endswith("/" + storage.MANIFEST))
        assert len(parts) == -(-first["fetched_ids"] // 5) >= 3
        assert all(store.exists(storage.marker_of(k)) for k in parts)
        ids = [{e["ttb_id"] for e in storage.manifest_entries(store, k)} for k in parts]
        assert all(0 < len(part) <= 5 for part in ids) and sum(map(len, ids)) == first["fetched_ids"]
        store.delete(storage.marker_of(parts[-1]))  # the kill: the last part's pages stored, its manifest not
        store.delete(parts[-1])
        before = len(sim.hits)
        again = discover.discover(settings, "rerun", DAY, DAY, history_start=DAY, spark=spark)
        fetched = {h.ttb_id for h in sim.hits[before:] if h.data_type != "search"}
    assert fetched == ids[-1] and again["fetched_ids"] == len(ids[-1])


def test_a_status_change_a_killed_run_listed_is_fetched_by_its_rerun(tmp_path, monkeypatch):
    """A run killed after it fetched the changed COLA's pages, before it recorded those fetches: the rerun still
    counts the COLA moved and fetches it (a listing whose fetches are not recorded is no previous listing), so
    bronze gets the page with the new status."""
    changed = "24031001000110"  # scale 0.1: approved 2024-02-18, REVOKED 2024-03-09
    write_manifest = storage.write_manifest

    def killed_before_the_fetches_manifest(store, key, *args, **kwargs):
        if key.startswith(storage.DISCOVERY_MANIFESTS):
            raise RuntimeError("killed")
        return write_manifest(store, key, *args, **kwargs)

    with simulator.running(seed=0, scale=0.1) as sim:
        rec = sim.registry.record(changed)
        approved, revoked = rec.approval_date, rec.change_date
        settings = settings_for(tmp_path, sim)
        store = storage.raw_store(settings)
        sim.today = approved
        discover.discover(settings, "r1", approved, approved, history_start=approved)
        sim.today = revoked
        with monkeypatch.context() as kill:
            kill.setattr(storage, "write_manifest", killed_before_the_fetches_manifest)
            with pytest.raises(RuntimeError, match="killed"):
                discover.discover(settings, "killed", revoked, revoked, history_start=approved, sweep=False)
        before = len(sim.hits)
        again = discover.discover(settings, "rerun", revoked, revoked, history_start=approved, sweep=False)
        fetched = {h.ttb_id for h in sim.hits[before:] if h.data_type != "search"}
    assert again["moved"] == 1 and changed in fetched
    lines = [e for k in storage.complete_manifests(store, storage.DISCOVERY_MANIFESTS) if "/run_id=rerun/" in k
             for e in storage.manifest_entries(store, k)]
    assert {(e["data_type"], e["outcome"]) for e in lines if e["ttb_id"] == changed} == {("cola-detail", "found"), ("certificate", "found")}


def _daily(settings, sim, day: date, capsys) -> None:
    sim.today = day
    argv = ["daily", "--env", "test", "--date", day.isoformat(), "--registry-url", sim.base_url,
            "--raw-root", settings.pipeline.raw_root, "--lakehouse-root", settings.pipeline.lakehouse_root]
    assert cli.main(argv) == 0, capsys.readouterr()


def test_daily_fetches_new_and_moved_ids_into_bronze_and_keeps_its_watermark(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTB_USE_SIMULATOR", "false")
    changed = "24031001000110"  # scale 0.1: approved 2024-02-18, REVOKED 2024-03-09
    with simulator.running(seed=0, scale=0.1) as sim:
        rec = sim.registry.record(changed)
        approved, revoked = rec.approval_date, rec.change_date
        settings = make_settings(tmp_path)
        root = settings.pipeline.lakehouse_root
        _daily(settings, sim, approved, capsys)
        first = sim.search(search.Criteria(approved, approved))
        hits_before = len(sim.hits)
        # the same day again, with the daily run's history (it began on that day): nothing new or moved
        again = discover.discover(settings_for(tmp_path, sim), "again", approved, approved, history_start=approved)
        assert all(h.data_type == "search" for h in sim.hits[hits_before:])
        assert (again["listed"], again["fetched_ids"]) == (len(first), 0)
        _daily(settings, sim, revoked, capsys)
        second = sim.search(search.Criteria(revoked, revoked))
        runs = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).orderBy("started_at").collect()

    assert changed in {r.ttb_id for r in first} and changed in {r.ttb_id for r in second}
    counts = [r.counts["discover"] for r in runs]
    assert counts[0]["new"] == len(first) and counts[0]["pages_found"] == 2 * len(first)
    assert counts[1]["moved"] == 1 and counts[1]["new"] == len(second) - 1
    # each manifest is ingested once: the second run's bronze takes the empty one of "again" and its own
    assert [r.counts["bronze"]["discovery_manifests"] for r in runs] == [1, 2]
    assert [r.counts["bronze"]["search_manifests"] for r in runs] == [1, 2]

    listings = lakehouse.read_table(spark, bronze.SEARCH_LISTINGS, root).where(F.col("completed_date").isin(approved, revoked))
    assert {(r.ttb_id, r.completed_date) for r in listings.collect()} == (
        {(r.ttb_id, r.completed_date) for r in first} | {(r.ttb_id, r.completed_date) for r in second}
    )
    pages = {(r.ttb_id, r.data_type): r for r in lakehouse.read_table(spark, bronze.PAGES, root).collect()}
    assert len(pages) == 2 * len({r.ttb_id for r in first + second})
    detail = parse.parse_page(pages[(changed, "cola-detail")].html.encode("iso-8859-1"), changed, "detail").record
    assert detail["status"] == rec.change_status and pages[(changed, "cola-detail")].withdrawn_at is None
    # the answers are kept as served, and a search manifest of the second run covers the day it listed
    store = storage.open_store(settings.pipeline.raw_root)
    assert store.list("search/completed_date=")
    spans = [re.search(r"completed=([\d-]+)_([\d-]+)/", key).groups() for key in store.list("search/manifests/") if key.endswith("manifest.jsonl")]
    assert any(date.fromisoformat(first) <= revoked <= date.fromisoformat(last) for first, last in spans), spans
    # the withdrawal sweep re-lists nothing before the history's first day (the first run's --date)
    searched = {date.fromisoformat(re.search(r"completed_date=([\d-]+)/", k).group(1)) for k in store.list("search/completed_date=")}
    assert min(searched) == approved
    assert lakehouse.read_table(spark, bronze.SEARCH_LISTINGS, root).where(F.col("completed_date") < approved).isEmpty()

    # the watermark is the run audit's: the two --date runs covered two days, not the days before and
    # between them, so --since-last-run starts at the history's first date (issue #23, 4), and after a run
    # that covers those it starts the overlap before the day after the covered span
    args = cli.build_parser().parse_args(["daily", "--env", "test", "--since-last-run", "--end", "2024-03-20",
                                          "--lakehouse-root", root])
    scope = runner.resolve_since_last_run(spark, "daily", *runner.settings_from_args(args))
    assert (scope.start, scope.end) == (settings.pipeline.partition_start_date, date(2024, 3, 20))
    gap = audit.RunRecord.start("gap", "daily", {}, settings, range_start=scope.start, range_end=revoked, chunks_total=1)
    audit.write(spark, gap.chunk_done(scope.start, revoked - timedelta(days=1), {}).finish(audit.SUCCEEDED), root)
    scope = runner.resolve_since_last_run(spark, "daily", *runner.settings_from_args(args))
    overlap = settings.extraction.discovery_overlap_days
    assert (scope.start, scope.end) == (revoked + timedelta(days=1 - overlap), date(2024, 3, 20))


def test_stage_fails_when_listed_pages_cannot_be_fetched(spark, tmp_path):
    with simulator.running(seed=0, scale=0.05, today=TODAY, faults={"server_error": 1.0}) as sim:
        settings = make_settings(tmp_path, extraction={"registry_base_url": sim.base_url, "use_simulator": False})
        with pytest.raises(Exception, match="no usable answer"):
            discover.run(spark, settings, CompletedDates(DAY, DAY, settings.pipeline.partition_start_date, run_id="r1"))
    assert not storage.open_store(settings.pipeline.raw_root).list("manifests/")


def test_reconcile_reports_per_day_and_fetches_the_differences(spark, tmp_path):
    from test_markers import DAY as RECEIVED, GONE

    from ttb_spark.raw import reconcile, scrape
    from ttb_spark.partitions import Partition

    with simulator.running(seed=0, scale=0.05, today=date(2024, 2, 6)) as sim:  # GONE is public (approved 02-05)
        settings = make_settings(
            tmp_path, pipeline={"receipt_methods": ["001"]},
            extraction={"registry_base_url": sim.base_url, "use_simulator": False, "consecutive_failure_threshold": 200},
        )
        work = [(Partition(RECEIVED, "001", t), False) for t in ("cola-detail", "certificate")]
        list(scrape.scrape_slice([(0, work)], settings, "walk-1", 1))
        walked = set(sim.public_ids([RECEIVED], ["001"]))
        sim.today = date(2024, 3, 5)  # later approvals of that day; GONE withdrawn on 2024-03-02
        discover.discover(settings, "disc-1", RECEIVED, sim.today, history_start=settings.pipeline.partition_start_date)
        listed = {r.ttb_id for r in sim.search(search.Criteria(RECEIVED, sim.today)) if r.ttb_id[:8] == GONE[:8]}
        counts = reconcile.run(spark, settings, ReceiptDates(RECEIVED, RECEIVED, ("001",), ("cola-detail",), run_id="rec-1"))

    assert GONE in walked - listed and listed - walked  # both kinds of difference occur
    day = RECEIVED.isoformat()
    assert (counts["walked"], counts["listed"]) == (len(walked), len(listed))
    assert counts["listed_not_walked"] == counts[f"listed_not_walked.{day}"] == len(listed - walked)
    assert counts["walked_not_listed"] == counts[f"walked_not_listed.{day}"] == len(walked - listed)
    # listed-not-walked pages were already stored by discovery: only the walked-not-listed are fetched
    assert counts["fetched_ids"] == len(walked - listed) and counts["pages_withdrawn"] == 2
    store = storage.open_store(settings.pipeline.raw_root)
    manifest = storage.discovery_manifest_key("rec-1", RECEIVED, RECEIVED, "received")
    gone = [json.loads(x) for x in store.get(manifest).decode().splitlines() if GONE in x]
    assert [g["outcome"] for g in gone] == ["withdrawn", "withdrawn"] and store.exists(storage.marker_of(manifest))


def test_reconcile_walks_the_sequence_numbers_nothing_knows_and_finds_what_the_search_missed(spark, tmp_path):
    """Issue #22 (3): ``reconcile --walk-share 1`` walks, of each receipt day, the sequence numbers no search listed
    and no walk found, up to the consecutive-miss threshold past the highest known: a record approved after the
    last listing is found, its pages stored and counted for its day. A share below 1 walks a fixed sample."""
    from test_markers import DAY as RECEIVED

    from ttb_spark.raw import reconcile

    scope = ReceiptDates(RECEIVED, RECEIVED, ("001",), ("cola-detail",), run_id="rec-full")
    with simulator.running(seed=0, scale=0.05, today=date(2024, 3, 5)) as sim:
        settings = make_settings(tmp_path, pipeline={"receipt_methods": ["001"]}, extraction={
            "registry_base_url": sim.base_url, "use_simulator": False, "consecutive_failure_threshold": 60, "reconcile_walk_share": 1.0})
        discover.discover(settings, "disc-1", RECEIVED, sim.today, history_start=RECEIVED)
        listed = {r.ttb_id for r in sim.search(search.Criteria(RECEIVED, sim.today)) if r.ttb_id[:8] == f"{RECEIVED:%y%j}001"}
        sim.today = date(2024, 4, 15)  # a record of that day approved since
        missed = set(sim.public_ids([RECEIVED], ["001"])) - listed
        full = reconcile.run(spark, settings, scope)
        sampled = reconcile.run(spark, make_settings(tmp_path, pipeline={"receipt_methods": ["001"]}, extraction={
            "registry_base_url": sim.base_url, "use_simulator": False, "consecutive_failure_threshold": 60,
            "reconcile_walk_share": 0.5}), replace(scope, run_id="rec-sample"))

    top = max(TTBId(i).sequence for i in listed | missed)
    assert len(missed) == 1 and top + 60 > max(TTBId(i).sequence for i in missed)
    assert full["probed"] == top + 60 - len(listed) and full["probed_found"] == full[f"probed_found.{RECEIVED}"] == 1
    assert full["walked_not_listed"] == 1 and full["listed_not_walked"] == len(listed)  # no walk on record: the probe is the walk
    store = storage.raw_store(settings)
    lines = storage.manifest_entries(store, storage.discovery_manifest_key("rec-full", RECEIVED, RECEIVED, "received"))
    assert len(lines) == full["probed"] + 1 and {(x["data_type"], x["outcome"]) for x in lines if x["ttb_id"] in missed} == {
        ("cola-detail", "found"), ("certificate", "found")}
    assert all(x["outcome"] == "not_found" for x in lines if x["ttb_id"] not in missed)
    probed = {x["ttb_id"] for x in storage.manifest_entries(store, storage.discovery_manifest_key("rec-sample", RECEIVED, RECEIVED, "received"))
              if x["data_type"] == "cola-detail"}
    assert 0 < sampled["probed"] == len(probed) < full["probed"] and all(reconcile.in_sample(TTBId(i), 0.5) for i in probed)


def test_a_backfill_by_search_stores_every_record_received_in_its_range_and_the_daily_run_goes_on_from_its_end(spark, tmp_path, monkeypatch, capsys):
    """Issue #22 (3): ``pipeline --start/--end`` lists completed dates from the range's start to its end + the
    approval lag (or today), through a search that splits every day deep (cap 3 rows, codes compared as
    zero-padded numbers, codes outside the seed), and fetches just the listed IDs received in the range: the
    simulator's truth, no more. A rerun fetches nothing and changes no table; the daily watermark goes on from
    the backfill's end (its range starts at the history's start)."""
    from bench.daily_bench import BOOKKEEPING, data_changes
    from ttb_spark import tables

    # one receipt day (nothing is approved on its receipt day: the first chunk lists none of it), the tail 02-21..03-01
    first = last = date(2024, 2, 20)
    tail, today = date(2024, 3, 1), date(2024, 3, 8)
    monkeypatch.setenv("TTB_USE_SIMULATOR", "false")
    monkeypatch.setenv("TTB_PARTITION_START_DATE", first.isoformat())
    monkeypatch.setenv("TTB_BACKFILL_LAG_DAYS", "10")
    monkeypatch.setenv("TTB_DISCOVERY_OVERLAP_DAYS", "0")
    with simulator.running(seed=0, scale=0.1, today=today, search_cap=3, code_order="numeric", unlisted_codes=0.2) as sim:
        settings = make_settings(tmp_path)
        root = settings.pipeline.lakehouse_root
        argv = ["pipeline", "--env", "test", "--start", first.isoformat(), "--end", last.isoformat(), "--registry-url", sim.base_url,
                "--raw-root", settings.pipeline.raw_root, "--lakehouse-root", root]
        assert cli.main(argv) == 0, capsys.readouterr()
        truth = {r.ttb_id for r in sim.search(search.Criteria(first, tail)) if first <= TTBId(r.ttb_id).receipt_date <= last}
        later = {r.ttb_id for r in sim.search(search.Criteria(tail + timedelta(days=1), today)) if first <= TTBId(r.ttb_id).receipt_date <= last}
        versions = {s.name: lakehouse.current_version(spark, s, root) for s in tables.ALL
                    if s.name not in BOOKKEEPING and lakehouse.table_exists(spark, s, root)}
        hits = len(sim.hits)
        assert cli.main(argv) == 0, capsys.readouterr()
        again = [h for h in sim.hits[hits:] if h.data_type != "search"]
    assert len(truth) > 10 and later  # some received in range complete after the tail: the daily flow's
    pages = lakehouse.read_table(spark, bronze.PAGES, root)
    assert {(r.ttb_id, r.data_type) for r in pages.collect()} == {(i, t) for i in truth for t in ("cola-detail", "certificate")}
    consolidated = lakehouse.read_table(spark, tables.BY_NAME["gold.ttb_consolidated"], root)
    assert {r.ttb_id for r in consolidated.select("ttb_id").collect()} == truth
    runs = audit.read_runs(spark, root, "pipeline")
    assert [r["status"] for r in runs] == ["succeeded"] * 2 and again == []
    assert data_changes(spark, root, versions) == {}
    searched = sorted({date.fromisoformat(re.search(r"completed_date=([\d-]+)/", k).group(1))
                       for k in storage.open_store(settings.pipeline.raw_root).list("search/completed_date=")})
    assert searched[0] == first and searched[-1] <= tail
    args = cli.build_parser().parse_args(["daily", "--env", "test", "--since-last-run", "--end", "2024-03-08", "--lakehouse-root", root])
    scope = runner.resolve_since_last_run(spark, "daily", *runner.settings_from_args(args))
    assert scope.start == last + timedelta(days=1)
