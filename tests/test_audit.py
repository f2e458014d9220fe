"""ops.pipeline_runs: a run's row is written at start and updated at the end; resume and
--since-last-run answers come from the rows; nothing secret is recorded."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone


from conftest import make_settings
from ttb_spark import audit, lakehouse


def _record(settings, run_id, **kwargs):
    return audit.RunRecord.start(
        run_id, "pipeline", {"start": date(2024, 1, 2), "end": date(2024, 1, 9), "chunk_days": 3, "force": False},
        settings, range_start=date(2024, 1, 2), range_end=date(2024, 1, 9), chunks_total=3, **kwargs,
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
    assert row.settings_fingerprint == settings.fingerprint()
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
    assert audit.finished_chunks(runs, settings.fingerprint()) == {chunk1}
    assert audit.finished_chunks(runs, other.fingerprint()) == {chunk2}
    assert audit.next_start(runs) == date(2024, 1, 8)
    assert audit.read_runs(spark, root, "analytics") == [] and audit.next_start([]) is None

    resumed = _record(settings, "d", started_at=t0 + timedelta(hours=3)).chunk_done(*chunk1, {}).chunk_done(*chunk2, {}).finish(audit.SUCCEEDED)
    audit.write(spark, resumed, root)
    assert audit.finished_chunks(audit.read_runs(spark, root, "pipeline"), settings.fingerprint()) == set()


def test_counts_of_chunks_add_up():
    assert audit.add_counts({"scrape": {"found": 2}}, {"scrape": {"found": 3, "failed": 1}, "bronze": {"inserted": 4}}) == {
        "scrape": {"found": 5, "failed": 1},
        "bronze": {"inserted": 4},
    }
