"""Change-driven silver and gold: ``analytics --since-last-run`` as a scheduler calls it, on real Delta.

One lakehouse, bronze.pages written directly (the real saved pages), and the analytics job run
through the command line after each change:

1. two COLAs of April 2025;
2. a late approval in an old partition (a 2019 receipt date) and a status change on the 2025 wine;
3. the wine's status flips back, the spirit is withdrawn from public view, and both pages of the
   2019 COLA turn into rejects;
4. the same command again: nothing to do, no table gets a new version.

A second test kills the process inside gold at step 3 (at its first commit, and right after ttb_consolidated's) and
reruns it: the result equals the clean run's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings
from raw_pages import SPIRIT, WINE, real_page
from bench.daily_bench import data_changes, frame_differences, table_differences
from test_e2e import PER_WALK, _capture, _frame, _kill_when, _watch
from ttb_spark import bronze, cli, lakehouse, silver, tables
from ttb_spark.ops import audit, locks, runner
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.dimensions import COMPANY_DAYS, COMPANY_STATS, DIM_COMPANIES
from ttb_spark.gold.facts import FACT_CERTIFICATES, FACT_PRODUCTS, FACT_STATUS_CHANGES, LABEL_DAYS
from ttb_spark.gold.quality import QUALITY_CHECKS
from ttb_spark.registry.ttb_id import TTBId

OLD = "19337001000251"  # received 2019-12-03
TYPES = ("cola-detail", "certificate")
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
T1, T2, T3 = T0 + timedelta(days=3), T0 + timedelta(days=5), T0 + timedelta(days=9)


def surrendered(content: bytes) -> bytes:
    changed = content.replace(b"                    APPROVED", b"                    SURRENDERED", 1)
    assert changed != content
    return changed


def write_bronze(spark, root: str, pages: dict[tuple[str, str], tuple[bytes, datetime, datetime | None]]) -> None:
    """MERGE bronze.pages rows for ``pages`` ((TTB ID, data type) -> (served bytes, fetched_at, withdrawn_at))."""
    rows = []
    for (ttb_id, data_type), (content, fetched_at, withdrawn_at) in pages.items():
        t = TTBId(ttb_id)
        mt = f"{t.receipt_method}-{data_type}"
        row = {
            "ttb_id": ttb_id, "data_type": data_type, "receipt_method": t.receipt_method, "receipt_date": t.receipt_date,
            "method_type": mt, "sequence": t.sequence, "html": content.decode("latin-1"), "content_length": len(content),
            "sha256": hashlib.sha256(content).hexdigest(), "http_status": 200, "fetched_at": fetched_at,
            "withdrawn_at": withdrawn_at, "source_key": f"pages/method_type={mt}/receipt_date={t.receipt_date}/{ttb_id}.html",
            "scrape_run_id": "scrape", "ingest_run_id": "test", "row_hash": None,
        }  # fmt: skip
        rows.append(tuple(row[f] for f in bronze.PAGES.schema.fieldNames()))
    lakehouse.merge_upsert(spark, spark.createDataFrame(rows, bronze.PAGES.schema), bronze.PAGES, root)


def pages_of(*ttb_ids: str, at: datetime = T0, withdrawn: datetime | None = None) -> dict:
    return {(t, d): (real_page(t, d), at, withdrawn) for t in ttb_ids for d in TYPES}


def _argv(job: str, root: Path) -> list[str]:
    return [job, "--env", "test", "--since-last-run", "--raw-root", str(root / "raw"), "--lakehouse-root", str(root / "lakehouse")]


def since_last_run(spark, root: Path) -> tuple[int, dict[str, dict[str, int]], str]:
    """``analytics --since-last-run`` through the command line; (exit status, the run's per-stage counts, its summary)."""
    code, out, err = _capture(lambda: cli.main(_argv("analytics", root)))
    assert code == 0, (out + err)[-3000:]
    run_id = out.split("(run ")[1].split(")")[0]
    [record] = [r for r in lakehouse.read_table(spark, audit.PIPELINE_RUNS, str(root / "lakehouse")).collect() if r["run_id"] == run_id]
    return code, record["counts"], out


def versions(spark, lake: str) -> dict[str, int]:
    """Latest version of every declared table under ``lake`` but the run's own bookkeeping: its audit row
    and its run-lock claim (taken, then released)."""
    return {
        name: lakehouse.current_version(spark, spec, lake)
        for name, spec in tables.BY_NAME.items()
        if spec not in (audit.PIPELINE_RUNS, locks.RUN_LOCKS) and lakehouse.table_exists(spark, spec, lake)
    }


def ids(spark, spec: lakehouse.TableSpec, lake: str) -> list[str]:
    return sorted(r["ttb_id"] for r in lakehouse.read_table(spark, spec, lake).select("ttb_id").collect())


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("incremental")
    lake = str(root / "lakehouse")
    make_settings(root)  # validates the folders the command line gets
    seen: dict[str, Any] = {"root": root}

    write_bronze(spark, lake, pages_of(WINE, SPIRIT))
    seen["run1"] = since_last_run(spark, root)[1]
    seen["consolidated1"] = ids(spark, CONSOLIDATED, lake)

    late = pages_of(OLD, at=T1)
    flip = {(WINE, "cola-detail"): (surrendered(real_page(WINE, "cola-detail")), T1, None)}
    write_bronze(spark, lake, late | flip)
    seen["run2"] = since_last_run(spark, root)[1]
    seen["consolidated2"] = ids(spark, CONSOLIDATED, lake)

    flip_back = {(WINE, "cola-detail"): (real_page(WINE, "cola-detail"), T2, None)}
    withdrawn = pages_of(SPIRIT, withdrawn=T3)
    rejected = {(OLD, d): (real_page(OLD, d)[:2000], T3, None) for d in TYPES}  # truncated: both pages now rejects
    write_bronze(spark, lake, flip_back | withdrawn | rejected)
    seen["before_crash"] = root.parent / "before-crash"
    shutil.copytree(root, seen["before_crash"] / root.name)
    seen["locks2"] = lakehouse.current_version(spark, locks.RUN_LOCKS, lake)
    _, seen["run3"], seen["out3"] = since_last_run(spark, root)

    seen["versions3"], seen["locks3"] = versions(spark, lake), lakehouse.current_version(spark, locks.RUN_LOCKS, lake)
    seen["audit3"] = lakehouse.current_version(spark, audit.PIPELINE_RUNS, lake)
    seen["run4"] = since_last_run(spark, root)[1]
    seen["versions4"], seen["locks4"] = versions(spark, lake), lakehouse.current_version(spark, locks.RUN_LOCKS, lake)
    seen["audit4"] = lakehouse.current_version(spark, audit.PIPELINE_RUNS, lake)
    return seen


def test_first_run_processes_everything_and_the_next_only_the_late_approval(spark, lake):
    assert lake["consolidated1"] == sorted([WINE, SPIRIT])
    assert lake["run1"]["silver"]["pages_processed"] == 4 and lake["run1"]["gold"]["colas"] == 2
    # the 2019 receipt date is far outside any recent window; only its two new pages are processed
    assert lake["consolidated2"] == sorted([WINE, SPIRIT, OLD])
    assert lake["run2"]["silver"]["pages_processed"] == 3 and lake["run2"]["gold"]["colas"] == 2  # + the wine's status change
    marks = lakehouse.read_watermarks(spark, str(lake["root"] / "lakehouse"), "silver")
    assert marks == {bronze.PAGES.name: lakehouse.current_version(spark, bronze.PAGES, str(lake["root"] / "lakehouse"))}


def test_a_status_flip_and_flip_back_are_two_history_rows(spark, lake):
    lake_root = str(lake["root"] / "lakehouse")
    history = lakehouse.read_table(spark, FACT_STATUS_CHANGES, lake_root).where(f"ttb_id = '{WINE}'").collect()
    got = sorted((r["observed_at"], r["previous_status"], r["status"], r["change_type"]) for r in history)
    naive = lambda t: t.replace(tzinfo=None)  # noqa: E731
    assert got == [
        (naive(T0), None, "APPROVED", "initial"),
        (naive(T1), "APPROVED", "SURRENDERED", "change"),
        (naive(T2), "SURRENDERED", "APPROVED", "change"),
    ]
    assert all(r["approval_date"] is not None for r in history)


def test_withdrawal_and_rejects_remove_the_cola_downstream_and_are_events(spark, lake):
    lake_root = str(lake["root"] / "lakehouse")
    for spec in (*silver.TABLES.values(), CONSOLIDATED, FACT_PRODUCTS, FACT_CERTIFICATES):
        assert ids(spark, spec, lake_root) == [WINE], spec.name
    assert sorted(ids(spark, silver.WITHDRAWALS, lake_root)) == [SPIRIT, SPIRIT]
    assert sorted(set(ids(spark, silver.REJECTS, lake_root))) == [OLD]
    events = {
        r["ttb_id"]: r
        for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, lake_root).where("change_type NOT IN ('initial', 'change')").collect()
    }
    assert set(events) == {SPIRIT, OLD}
    assert (events[SPIRIT]["change_type"], events[SPIRIT]["observed_at"], events[SPIRIT]["previous_status"]) == (
        "withdrawn", T3.replace(tzinfo=None), "APPROVED")
    assert events[OLD]["change_type"] == "rejected" and "parse" in events[OLD]["reason"]
    assert lake["run3"]["gold"]["colas_removed"] == 2 and lake["run3"]["gold"]["checks_failed"] == 0
    checks = lakehouse.read_table(spark, QUALITY_CHECKS, lake_root).where("check_name = 'counts_reconcile_with_silver'").collect()
    assert len(checks) == 3 and all(c["passed"] for c in checks)
    assert lake["run3"]["silver"]["partitions_unbalanced"] == 0
    # the summary counts the pages this change-driven run quarantined, not its nominal range (today)
    assert lake["run3"]["silver"]["pages_rejected"] == 2
    assert "  rejects   2 page(s) of this run's changed pages quarantined in silver.rejects" in lake["out3"]


def test_running_again_changes_nothing(lake):
    def work(counts: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in counts.items() if k not in runner.COST}

    assert work(lake["run4"]["silver"]) == {"pages_processed": 0}
    assert work(lake["run4"]["gold"]) == {"colas": 0}
    assert lake["versions4"] == lake["versions3"]


def test_a_run_with_nothing_new_takes_no_gold_claim_and_writes_its_audit_row_twice(spark, lake):
    """Issue #25 (3): gold finds nothing to do before it claims, so the run's only ``ops.run_locks`` commits are its own
    claim of the dates, taken and released; the run before, which had work, held the gold claim. Its audit row is
    written when it starts and when it ends: a chunk that fetched nothing is not recorded before silver and gold."""
    assert lake["audit4"] - lake["audit3"] == 2
    def claims(first: int, last: int) -> set[str]:
        lake_root = str(lake["root"] / "lakehouse")
        return {r["claim"] for v in range(first + 1, last + 1) for r in lakehouse.read_version(spark, locks.RUN_LOCKS, lake_root, v).collect()}

    assert claims(lake["locks2"], lake["locks3"]) == {locks.DATES, locks.GOLD}
    assert claims(lake["locks3"], lake["locks4"]) == {locks.DATES}


@pytest.fixture(scope="module")
def silver_done(lake, tmp_path_factory) -> Path:
    """Step 3's lakehouse with its silver run done and its gold run not: where each kill test's gold job starts
    (a job process that runs silver first would pay its cold start for work every kill point shares)."""
    root = tmp_path_factory.mktemp("silver-done") / lake["root"].name
    shutil.copytree(lake["before_crash"] / lake["root"].name, root)
    code, out, err = _capture(lambda: cli.main(_argv("silver", root)))
    assert code == 0, (out + err)[-3000:]
    return root


@pytest.mark.parametrize("table", ["*", "ttb_consolidated", "fact_certificates"])
def test_kill_inside_gold_then_rerun_gives_the_clean_result(spark, lake, silver_done, tmp_path, table):
    """Killed at gold's first commit, right after ttb_consolidated's (its MERGE deletes the withdrawn
    and rejected COLAs before the facts' MERGEs do: issue #23, 1, a kill there used to wedge every later run),
    or after the facts' and before the day tables' (the removed COLAs then are in no table the rerun reads
    COLAs from, yet their permits' day rows, and the counts made of them, still hold them: found by the
    kill sweep of #23). The job killed is step 3's gold, its silver done; the rerun is the scheduler's
    ``analytics --since-last-run``."""
    root = tmp_path / lake["root"].name
    shutil.copytree(silver_done, root)
    log = root / "crash.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ttb_spark", *_argv("gold", root)], cwd=root, env=dict(os.environ),
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        _kill_when(proc, _watch(log, "gold", lambda: set((root / "lakehouse" / "gold").glob(f"{table}/_delta_log/*.json"))))
    text = log.read_text(errors="replace")
    assert proc.returncode == -signal.SIGKILL and "] gold: done" not in text, text[-3000:]
    assert since_last_run(spark, root)[0] == 0
    compared = (*silver.TABLES.values(), silver.REJECTS, silver.WITHDRAWALS, CONSOLIDATED, FACT_PRODUCTS, FACT_CERTIFICATES,
                FACT_STATUS_CHANGES, DIM_COMPANIES, COMPANY_STATS, COMPANY_DAYS, LABEL_DAYS)
    drop = PER_WALK.search
    assert frame_differences({s.name: (_frame(spark, s, lake["root"], drop), _frame(spark, s, root, drop)) for s in compared}) == {}


def test_a_path_lakehouse_adopted_into_a_catalog_keeps_its_rows_and_goes_on_from_there(spark, lake, tmp_path, monkeypatch):
    """Issue #24 (3): ``adopt-catalog --from <path root>`` copies every table into the catalog of the settings
    (TTB_CATALOG, TTB_SCHEMA_PREFIX) with the same rows; run again it changes nothing; the change-driven stages
    then go on from the copies (their watermarks moved to the copies' versions) without redoing anything. A
    lakehouse with changes no stage has read yet is refused, naming them."""
    path = str(lake["root"] / "lakehouse")
    monkeypatch.setenv("TTB_CATALOG", "spark_catalog")
    monkeypatch.setenv("TTB_SCHEMA_PREFIX", "adopted_")
    target = make_settings(tmp_path).pipeline.lakehouse_root
    assert lakehouse.is_catalog(target)
    code, out, err = _capture(lambda: cli.main(["adopt-catalog", "--from", path, "--env", "test"]))
    assert code == 0, err[-3000:]
    assert f"gold.ttb_consolidated: {len(ids(spark, CONSOLIDATED, path))} rows -> spark_catalog.adopted_gold.ttb_consolidated" in out
    assert table_differences(spark, path, target) == {}
    copied = versions(spark, target)
    assert _capture(lambda: cli.main(["adopt-catalog", "--from", path, "--env", "test"]))[:2] == (0, out)
    assert versions(spark, target) == copied

    code, out, err = _capture(lambda: cli.main(["analytics", "--env", "test", "--since-last-run", "--raw-root", str(tmp_path / "raw")]))
    assert code == 0, (out + err)[-3000:]
    assert data_changes(spark, target, copied) == {}, out

    pending = tmp_path / "pending"
    shutil.copytree(path, pending)
    write_bronze(spark, str(pending), pages_of(WINE, at=T3))
    code, out, err = _capture(lambda: cli.main(["adopt-catalog", "--from", str(pending), "--env", "test"]))
    assert code == 2 and "changes not processed yet (run the daily job on the path lakehouse first): silver <- bronze.pages" in err, err
