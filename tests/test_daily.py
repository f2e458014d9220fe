"""The daily flow over 60 simulated days, run as the shipped schedule runs it.

The simulator's clock runs through 60 days (seed 4 from 2024-03-04, its smallest scale: a few
records a day): approvals more than 120 days after receipt, status changes, one record withdrawn
after the lakehouse saw it, faults on every kind of request. ``daily --env test --since-last-run``
runs through the command line on 8 of those days, irregularly (three days in a row, gaps of a
week, of two weeks and of almost four); the simulated today reaches the run the way a scheduled run learns its
day, through ``TTB_PARTITION_END_DATE`` in the environment. At the end gold equals the registry's
public truth as of day 60, ``fact_status_changes`` holds exactly the changes the runs could
observe (with the registry's completed date of each status), and the same command once more
changes no table's data.

The second run is then replayed from a copy of the lakehouse and raw store as the first run left
them, as a subprocess SIGKILLed after a seeded number of its writes (raw objects, Delta commits),
and run again: every table then equals the uninterrupted schedule's after its second run. The
60-day version of that, a kill on a random day, is ``bench/daily_bench.py --kill-seed S``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from pyspark.sql import functions as F

from conftest import make_settings
from bench.daily_bench import commit_points, daily_killed, data_changes, environment, kill_point, table_differences, writes
from test_e2e import _capture
from test_report import _specs, assert_report_holds_golds_numbers
from test_watch import Receiver
from ttb_spark import cli, lakehouse, tables
from ttb_spark.ops import audit
from ttb_spark.registry import search, simulator
from ttb_spark.watch import digest
from ttb_spark.watch.hits import WATCH_HITS
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.stage import CHANGE_KINDS
from ttb_spark.gold.facts import FACT_CERTIFICATES, FACT_PRODUCTS, FACT_STATUS_CHANGES

START = date(2024, 3, 4)
SEED = 4  # one record approved on day 20 is withdrawn on day 50, between runs that see it and runs that must drop it
DAYS = 60
RUN_DAYS = (0, 1, 2, 9, 16, 17, 33, 59)  # offsets from START of the days the schedule ran
FAULTS = {"reset": 0.02, "server_error": 0.03, "rate_limit": 0.02, "truncate": 0.02, "session_timeout": 0.01, "retry_after": 0}
LAST = START + timedelta(days=DAYS - 1)
KILL_SEED = 3  # draws the write of the second run after which its process is killed


WATCHLIST = """
[[watch]]
name = "every change but a new COLA"
changes = ["status_changed", "withdrawn", "removed", "reinstated"]

[[watch]]
name = "new oak brands"
brands = ["* oak"]
changes = ["new"]
"""


def daily(sim, day: date) -> str:
    """``daily --env test --since-last-run`` with the simulated day as the schedule's today; its summary, then
    what it wrote on stderr."""
    sim.today = day
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTB_PARTITION_END_DATE", day.isoformat())
        code, out, err = _capture(lambda: cli.main(["daily", "--env", "test", "--since-last-run"]))
    assert code == 0, out + err[-3000:]
    return out + err


def watching(mp: pytest.MonkeyPatch, base, url: str) -> None:
    """The schedule's watchlist (:data:`WATCHLIST`) and notification target, as the environment gives them."""
    (base / "watchlist.toml").write_text(WATCHLIST)
    mp.setenv("TTB_WATCHLIST_FILE", str(base / "watchlist.toml"))
    mp.setenv(digest.NOTIFY_URLS, url)


@pytest.fixture(scope="module")
def sixty_days(spark, tmp_path_factory) -> dict[str, Any]:
    """The schedule's runs; a copy of the raw store and lakehouse after the first run, every table's
    version after the second, and the writes the second made."""
    base = tmp_path_factory.mktemp("daily")
    raw, lake = base / "raw", base / "lakehouse"
    root = str(lake)
    run_days = [START + timedelta(days=d) for d in RUN_DAYS]
    seen: dict[str, Any] = {"root": root, "run_days": run_days, "summaries": []}
    receiver = Receiver(500)  # refuses the first digest: the next run that sends must send its hits again
    with pytest.MonkeyPatch.context() as mp, simulator.running(seed=SEED, scale=0.01, faults=FAULTS, today=START) as sim, receiver:
        for name, value in environment(sim, raw, lake, START).items():
            mp.setenv(name, value)
        watching(mp, base, receiver.url)
        seen["base"], seen["notify"] = base, receiver.url
        # one certificate of the first day is served broken through the first run, and healthy after it
        seen["broken"] = min(r.ttb_id for r in sim.search(search.Criteria(START, START)))
        sim.faults = simulator.Faults(**FAULTS, broken=(f"{seen['broken']}/certificate",))
        seen["hits_before"] = []
        for index, day in enumerate(run_days):
            before = writes(raw, lake)
            seen["hits_before"].append(len(sim.hits))
            if index == len(run_days) - 1:
                mp.setenv("TTB_REPORT_AFTER_RUN", "true")  # the report of the last 8 weeks, as the shipped jobs write it
            seen["summaries"].append(daily(sim, day))
            sim.faults = simulator.Faults(**FAULTS)
            if index == 0:
                keys = list(FACT_STATUS_CHANGES.keys)
                seen["first_changes"] = {tuple(r) for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).select(*keys).collect()}
                seen["after_first"] = base.parent / "daily-after-first-run"
                shutil.copytree(base, seen["after_first"])
            if index == 1:
                seen["second_writes"] = writes(raw, lake) - before
                seen["after_second"] = {n: lakehouse.current_version(spark, s, root) for n, s in tables.BY_NAME.items()}
        seen["hits"] = sim.hits
        seen["faults"] = {h.answer for h in seen["hits"]} & {"reset", "server_error", "rate_limit", "truncate", "session_timeout"}
        seen["truth"] = {r.ttb_id: sim.registry.state(r.ttb_id, LAST).status for r in sim.search(search.Criteria(START, LAST))}
        seen["versions"] = {n: lakehouse.current_version(spark, s, root) for n, s in tables.BY_NAME.items()}
        seen["posts_before_again"] = list(receiver.posts)
        seen["again"] = daily(sim, LAST)
        seen["posts"] = list(receiver.posts)
        seen["registry"] = sim.registry
    return seen


def test_sixty_days_of_daily_runs_end_with_the_registry_truth(spark, sixty_days):
    root, run_days, summaries, truth, registry = (sixty_days[k] for k in ("root", "run_days", "summaries", "truth", "registry"))
    assert sixty_days["faults"] == {"reset", "server_error", "rate_limit", "truncate", "session_timeout"}

    gold = {r.ttb_id: r.status for r in lakehouse.read_table(spark, CONSOLIDATED, root).select("ttb_id", "status").collect()}
    late = [i for i in truth if (registry.record(i).approval_date - registry.record(i).receipt_date).days > 120]
    assert late and len(truth) > 300
    assert gold == truth  # every public COLA completed in the window, with its current status; nothing withdrawn

    every = {r.ttb_id for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).select("ttb_id").collect()}
    rows = lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).collect()
    history = {(r.ttb_id, r.change_type, r.previous_status, r.status) for r in rows}
    expected = registry.observable_history(every | set(truth), START, run_days)
    assert history == expected
    withdrawn = sorted(i for i, kind, _, _ in expected if kind == "withdrawn")
    assert len(withdrawn) == 1 and withdrawn[0] not in gold
    changes = {(i, s) for i, kind, _, s in history if kind == "change"}
    made = {(r.ttb_id, registry.record(r.ttb_id).change_status) for r in map(registry.record, truth)
            if r.change_date and START <= r.change_date <= LAST}
    assert made and made <= {(i, s) for i, _, _, s in history}  # every status the simulator changed to in the window
    assert changes
    # each status row carries the registry's completed date of that status (the approval, or the change's day);
    # unknown (null) only for a change whose page was fetched before the search listed its new date
    statuses = [r for r in rows if r.status is not None]
    truth_of = {r.ttb_id: r for r in map(registry.record, {r.ttb_id for r in statuses})}
    wrong = [(r.ttb_id, r.status, r.completed_date) for r in statuses if r.completed_date != (
        truth_of[r.ttb_id].approval_date if r.status == "APPROVED" else truth_of[r.ttb_id].change_date)
        and not (r.completed_date is None and r.status != "APPROVED")]
    assert not wrong
    assert sum(r.completed_date is not None for r in statuses) > 0.9 * len(statuses)
    assert {r.completed_date for r in rows if r.status is None} == {None}

    runs = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).orderBy("started_at").collect()
    assert [r.status for r in runs] == ["succeeded"] * (len(run_days) + 1)
    assert sum(r.counts["changes"].get("withdrawn", 0) for r in runs) == 1
    withdrawal_run = next(r for r in runs if r.counts["changes"].get("withdrawn"))
    assert withdrawal_run.changes["withdrawn"] == withdrawn
    assert sum(r.counts["changes"].get("new", 0) for r in runs) == len({i for i, kind, _, _ in history if kind == "initial"})
    assert any(f"  withdrawn 1: {withdrawn[0]}" in s for s in summaries) and "  new " in summaries[0]

    # the broken certificate failed the first run's fetch without stopping it, and the next run fetched it
    # (re-listed there: its completed day is in that run's overlap; later days' retries: test_discover)
    broken = sixty_days["broken"]
    assert runs[0].counts["discover"]["pages_failed"] == 1 and runs[0].counts["gold"]["colas"] > 0
    assert runs[1].counts["discover"]["pages_failed"] == 0
    assert lakehouse.read_table(spark, FACT_CERTIFICATES, root).where(F.col("ttb_id") == broken).count() == 1

    assert data_changes(spark, root, sixty_days["versions"]) == {}, sixty_days["again"]
    assert runs[-1].counts["discover"]["fetched_ids"] == 0


def test_a_run_after_a_pause_lists_every_day_before_it_fetches_a_page(sixty_days):
    """Issue #23 (10): the schedule's runs after a pause longer than a chunk of days (days 33 and 59, after 16
    and 26 days) search the whole of their range before they fetch any page: one listing of the registry,
    each ID fetched with its latest listing."""
    hits, bounds = sixty_days["hits"], [*sixty_days["hits_before"], len(sixty_days["hits"])]
    for index in (RUN_DAYS.index(33), RUN_DAYS.index(59)):
        assert RUN_DAYS[index] - RUN_DAYS[index - 1] > make_settings(sixty_days["base"]).pipeline.backfill_chunk_days
        run = hits[bounds[index]:bounds[index + 1]]
        searches = [n for n, h in enumerate(run) if h.data_type == "search"]
        pages = [n for n, h in enumerate(run) if h.data_type in ("cola-detail", "certificate")]
        assert searches and pages and max(searches) < min(pages), RUN_DAYS[index]


def test_a_run_killed_at_a_random_point_then_rerun_ends_with_the_same_tables(spark, sixty_days, tmp_path):
    where = sixty_days["after_first"]
    raw, lake = where / "raw", where / "lakehouse"
    _, after = kill_point(KILL_SEED, [sixty_days["second_writes"]])
    day = sixty_days["run_days"][1]
    with pytest.MonkeyPatch.context() as mp, simulator.running(seed=SEED, scale=0.01, faults=FAULTS, today=day) as sim:
        for name, value in environment(sim, raw, lake, START).items():
            mp.setenv(name, value)
        watching(mp, tmp_path, sixty_days["notify"])  # the receiver is gone: a digest fails, as the schedule's first was refused
        log = daily_killed(sim, day, after, raw, lake, tmp_path / "killed.log")
        assert "ttb_spark daily:" not in log  # killed before its summary
        daily(sim, day)
    assert table_differences(spark, sixty_days["root"], str(lake), sixty_days["after_second"]) == {}


def _report(sixty_days) -> tuple[str, str]:
    """The path of the report the last scheduled run wrote, and its text."""
    written = [line.split(None, 1)[1] for line in sixty_days["summaries"][-1].splitlines() if line.startswith("  report ")]
    assert len(written) == 1 and written[0].endswith(".html"), sixty_days["summaries"][-1]
    with open(written[0], encoding="utf-8") as page:
        return written[0], page.read()


def test_the_last_run_wrote_a_report_whose_charts_and_tables_hold_golds_numbers(spark, sixty_days):
    path, text = _report(sixty_days)
    until = LAST  # the last run's day: a daily run's report ends there
    since = until - timedelta(days=until.weekday() + 7 * 7)  # eight ISO weeks, the last one holding that day
    assert path.endswith(f"/reports/ttb-report_{since}_{until}.html")
    assert_report_holds_golds_numbers(spark, sixty_days["root"], path, text)
    # (the schedule's withdrawal is observed on the wall clock, years after its simulated days, so its events may
    # fall outside the period: how events are dated is tests/test_report.py's)
    assert "  report    not written: gold processed no COLA" in sixty_days["again"]  # the run with nothing new left it


def test_the_report_renders_every_chart_in_a_browser_without_console_errors(sixty_days, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian's chromium package; `make setup` installs it where it runs as root)")
    path, text = _report(sixty_days)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=20000", "--dump-dom", f"file://{path}"]
    shown = subprocess.run([browser, *flags], capture_output=True, text=True, timeout=180, check=True)
    assert [line for line in shown.stderr.splitlines() if ":CONSOLE" in line] == []  # no error, warning or log from the page
    dom = lxml.html.fromstring(shown.stdout)
    specs = _specs(text)
    assert specs
    for name, spec in specs.items():
        marks = dom.xpath(f"//div[@id='chart-{name}']//svg//*[@role='graphics-symbol']")
        assert len(marks) >= len(spec["data"]["values"]), name  # a mark drawn for every row, at least


def test_watchlist_hits_are_recorded_and_each_sent_once_a_refused_digest_by_the_next_run(spark, sixty_days):
    root, registry = sixty_days["root"], sixty_days["registry"]
    products = lakehouse.read_table(spark, FACT_PRODUCTS, root).select("ttb_id", "brand_name").collect()
    assert products and all(registry.record(r.ttb_id).brand == r.brand_name for r in products)  # brands as the registry has them
    recorded = [r for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).collect()
                if (r.ttb_id, r.observed_at, r.change_type) not in sixty_days["first_changes"]]  # watching starts after the first run
    expected: Counter = Counter()
    for r in recorded:
        kind = CHANGE_KINDS[r.change_type]
        if kind != "new":
            expected["every change but a new COLA", r.ttb_id, kind] += 1
        elif fnmatch.fnmatchcase(registry.record(r.ttb_id).brand, "* OAK"):
            expected["new oak brands", r.ttb_id, kind] += 1
    assert {rule for rule, _, _ in expected} == {"every change but a new COLA", "new oak brands"}
    assert {kind for _, _, kind in expected} >= {"new", "status_changed", "withdrawn"}
    hits = lakehouse.read_table(spark, WATCH_HITS, root).collect()
    assert Counter((h.rule, h.ttb_id, h.change) for h in hits) == expected
    assert all(h.sent_at is not None for h in hits)

    posts = sixty_days["posts"]
    assert posts == sixty_days["posts_before_again"]  # the run with nothing new sent nothing
    assert len(posts) >= 2 and {path for path, _ in posts} == {"/hook/SECRET-TOKEN-42"}

    def listed(body: bytes) -> Counter:
        text = json.loads(body)["message"]
        return Counter(re.findall(r"^\[(.+?)\] (\w+)[^\n]*\n  \S+ttbid=(\d{14})$", text, re.M))

    refused, accepted = listed(posts[0][1]), [listed(body) for _, body in posts[1:]]
    assert sum(accepted, Counter()) == Counter({(rule, kind, i): n for (rule, i, kind), n in expected.items()})  # each hit once
    assert refused and not refused - accepted[0]  # the refused digest's hits went with the next one
    sent = {json.loads(body)["message"].split("\n", 1)[0].removeprefix("digest ") for _, body in posts[1:]}
    assert {h.digest_id for h in hits} == sent

    token = "SECRET-TOKEN-42"
    assert not [s for s in (*sixty_days["summaries"], sixty_days["again"]) if token in s]  # summaries and stderr
    audit_rows = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).collect()
    assert audit_rows and not [r for r in audit_rows if token in str(r.asDict())]
    assert "  watch     hits=0 pending=0 sent=0" in sixty_days["again"]


def test_the_kill_sweep_at_commit_points_kills_after_each_commit_and_once_inside_each_stretch_of_pages():
    """``bench.daily_bench --commit-points``: of a run's writes in the order made, a kill after every Delta commit,
    raw manifest and ``_COMPLETE``, and one after the middle write of each stretch of other writes between them."""
    run = [Path(p) for p in (
        "lakehouse/ops/pipeline_runs/_delta_log/00000000000000000016.json",
        "raw/search/completed_date=2024-04-22/run_id=r/2024-04-22_2024-04-23/results-001.html",
        "raw/search/completed_date=2024-04-22/run_id=r/2024-04-22_2024-04-23/export.csv",
        "raw/pages/method_type=001-cola-detail/receipt_date=2024-04-17/24108001000008.html",
        "raw/pages/method_type=001-certificate/receipt_date=2024-04-17/24108001000008.html",
        "raw/manifests/discovery/run_id=r/completed=2024-04-12_2024-04-23/part=00000/manifest.jsonl",
        "raw/manifests/discovery/run_id=r/completed=2024-04-12_2024-04-23/part=00000/_COMPLETE",
        "lakehouse/bronze/pages/_delta_log/00000000000000000006.json",
        "lakehouse/bronze/pages/part-00000-1.snappy.parquet.json",
        "raw/pages/method_type=002-cola-detail/receipt_date=2024-04-19/24110002000001.html",
    )]
    assert commit_points(run) == [1, 4, 6, 7, 8, 10]
