"""ops.pipeline_runs: a run's row is written at start and updated at the end; resume and
--since-last-run answers come from the rows; nothing secret is recorded."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone


from conftest import make_settings
from ttb_spark import lakehouse
from ttb_spark.ops import audit


RANGE = (date(2024, 1, 2), date(2024, 1, 9))


def _record(settings, run_id, **kwargs):
    return audit.RunRecord.start(
        run_id, "pipeline", {"start": RANGE[0], "end": RANGE[1], "chunk_days": 3, "force": False},
        settings, range_start=RANGE[0], range_end=RANGE[1], chunks_total=3, **kwargs,
    )


def test_running_row_is_updated_in_place_to_failed_with_error_and_counts(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-recorded")
    settings = make_settings(tmp_path)
    root = settings.pipeline.lakehouse_root
    rec = _record(settings, "run-1")
    audit.write(spark, rec, root)
    running = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).collect()
    assert [(r.run_id, r.status, r.ended_at) for r in running] == [("run-1", "running", None)]

    rec = rec.chunk_done(date(2024, 1, 2), date(2024, 1, 4), {"bronze": {"inserted": 5}, "silver": {"rejects": 1}})
    rec = rec.chunk_done(date(2024, 1, 5), date(2024, 1, 7), {"bronze": {"inserted": 2}})
    rec = rec.finish(audit.FAILED, "RuntimeError: boom")
    audit.write(spark, rec, root)

    rows = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).collect()
    assert len(rows) == 1
    row = rows[0]
    assert row.status == "failed" and row.error == "RuntimeError: boom"
    assert row.counts == {"bronze": {"inserted": 7}, "silver": {"rejects": 1}}
    assert row.covered_through == date(2024, 1, 7)
    assert [(c.start, c.end) for c in row.completed_chunks] == [(date(2024, 1, 2), date(2024, 1, 4)), (date(2024, 1, 5), date(2024, 1, 7))]
    assert row.settings_fingerprint == settings.fingerprint(*RANGE)
    assert row.arguments == {"start": "2024-01-02", "end": "2024-01-09", "chunk_days": "3"}
    assert row.ended_at >= row.started_at and row.duration_seconds >= 0
    assert "s3cr3t" not in json.dumps(row.asDict(recursive=True), default=str)

    detail = spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(audit.PIPELINE_RUNS, root)}").first()
    assert detail.description == audit.PIPELINE_RUNS.comment
    comments = {f.name: f.metadata.get("comment") for f in lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).schema}
    assert all(comments.values()), comments


def test_resume_and_since_last_run_read_the_rows(spark, tmp_path):
    settings = make_settings(tmp_path)
    other = make_settings(tmp_path, extraction={"max_retries": 1})
    root = settings.pipeline.lakehouse_root
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    chunk1, chunk2 = (date(2024, 1, 2), date(2024, 1, 4)), (date(2024, 1, 5), date(2024, 1, 7))
    old_success = _record(settings, "a", started_at=t0).chunk_done(*chunk1, {}).chunk_done(*chunk2, {}).finish(audit.SUCCEEDED)
    failed = _record(settings, "b", started_at=t0 + timedelta(hours=1)).chunk_done(*chunk1, {}).finish(audit.FAILED, "x")
    killed_other_settings = _record(other, "c", started_at=t0 + timedelta(hours=2)).chunk_done(*chunk2, {})
    for rec in (old_success, failed, killed_other_settings):
        audit.write(spark, rec, root)

    runs = audit.read_runs(spark, root, "pipeline")
    assert [r["run_id"] for r in runs] == ["c", "b", "a"]
    # The failed run after the last success finished chunk 1; the killed run had other settings.
    assert audit.finished_chunks(runs, settings.fingerprint(*RANGE)) == {chunk1}
    assert audit.finished_chunks(runs, other.fingerprint(*RANGE)) == {chunk2}
    assert audit.next_start(runs, date(2024, 1, 2)) == date(2024, 1, 8)
    assert audit.read_runs(spark, root, "analytics") == [] and audit.next_start([], date(2024, 1, 2)) == date(2024, 1, 2)

    resumed = _record(settings, "d", started_at=t0 + timedelta(hours=3)).chunk_done(*chunk1, {}).chunk_done(*chunk2, {}).finish(audit.SUCCEEDED)
    audit.write(spark, resumed, root)
    assert audit.finished_chunks(audit.read_runs(spark, root, "pipeline"), settings.fingerprint(*RANGE)) == set()


def test_counts_of_chunks_add_up():
    assert audit.add_counts({"scrape": {"found": 2}}, {"scrape": {"found": 3, "failed": 1}, "bronze": {"inserted": 4}}) == {
        "scrape": {"found": 5, "failed": 1},
        "bronze": {"inserted": 4},
    }


def test_since_last_run_starts_at_the_first_day_no_finished_chunk_covers():
    """Issue #23 (4): a run over later days (an ad-hoc ``discover --start/--end``, a ``--date`` run) does
    not move the start past the days before it; chunks that overlap or touch join into one span."""
    def run(*chunks: tuple[date, date]) -> dict:
        return {"completed_chunks": [{"start": a, "end": b} for a, b in chunks]}

    history = date(2024, 1, 2)
    adhoc = run((date(2024, 2, 27), date(2024, 2, 29)))
    assert audit.next_start([adhoc], history) == history
    daily = run((date(2024, 1, 2), date(2024, 1, 8)), (date(2024, 1, 7), date(2024, 1, 14)))
    assert audit.next_start([adhoc, daily], history) == date(2024, 1, 15)
    assert audit.next_start([adhoc, daily, run((date(2024, 1, 15), date(2024, 2, 26)))], history) == date(2024, 3, 1)
    assert audit.next_start([run((date(2023, 12, 1), date(2024, 1, 3)))], history) == date(2024, 1, 4)


def test_an_adhoc_discover_leaves_the_daily_runs_start_at_the_history(spark, tmp_path):
    """Issue #23 (4), as a user met it: a first-ever ``discover --start 2024-02-27 --end 2024-02-29``, then
    the scheduled ``daily --since-last-run`` on 2024-03-01 lists from the history's first date, not 02-28."""
    from ttb_spark import cli
    from ttb_spark.ops import runner

    settings = make_settings(tmp_path)
    root = settings.pipeline.lakehouse_root
    adhoc = audit.RunRecord.start("adhoc", "discover", {"start": date(2024, 2, 27), "end": date(2024, 2, 29)}, settings,
                                  range_start=date(2024, 2, 27), range_end=date(2024, 2, 29), chunks_total=1)
    audit.write(spark, adhoc.chunk_done(date(2024, 2, 27), date(2024, 2, 29), {}).finish(audit.SUCCEEDED), root)
    args = cli.build_parser().parse_args(["daily", "--env", "test", "--since-last-run", "--end", "2024-03-01", "--lakehouse-root", root])
    scope = runner.resolve_since_last_run(spark, "daily", *runner.settings_from_args(args))
    assert (scope.start, scope.end) == (settings.pipeline.partition_start_date, date(2024, 3, 1))
    # without --end the run lists up to the registry's today: the embedded simulator's day when it has one, so a
    # simulated day never moves the watermark past itself
    args = cli.build_parser().parse_args(["daily", "--env", "test", "--since-last-run", "--simulator-today", "2024-03-01", "--lakehouse-root", root])
    assert runner.resolve_since_last_run(spark, "daily", *runner.settings_from_args(args)).end == date(2024, 3, 1)


def test_a_backfill_by_search_counts_toward_discoverys_watermark_through_its_range_end_only_from_the_history_start():
    """Issue #22 (3): every COLA completed by the range end was received in the range when the range starts at
    the history's start; the approval tail lists only what the range received, and a later start, or a walk
    (an earlier version's ``pipeline``), covers no completed date."""
    history = date(2024, 1, 1)
    chunks = [{"start": date(2024, 1, 1), "end": date(2024, 1, 7)}, {"start": date(2024, 1, 8), "end": date(2024, 1, 10)},
              {"start": date(2024, 1, 11), "end": date(2024, 7, 9)}]
    search = {"range_start": history, "range_end": date(2024, 1, 10), "completed_chunks": chunks, "counts": {"discover": {"listed": 3}}}
    covered = audit.completed_coverage(search, history)
    assert covered["completed_chunks"] == chunks[:2]
    assert audit.next_start([covered], history) == date(2024, 1, 11)
    assert audit.completed_coverage(search | {"range_start": date(2024, 1, 2)}, history)["completed_chunks"] == []
    assert audit.completed_coverage(search | {"counts": {"scrape": {"found": 3}}}, history)["completed_chunks"] == []
