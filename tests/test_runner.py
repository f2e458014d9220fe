"""The runner: backfill chunks, resume after a failed chunk, --since-last-run, bad arguments,
and the end-of-run summary; jobs run through the real command line on the session's Spark."""

from __future__ import annotations

import importlib
import json
import inspect
import re
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from conftest import make_settings
from ttb_spark import cli, lakehouse
from ttb_spark import scope as scopes
from ttb_spark.ops import audit, runner
from ttb_spark.registry import simulator
from ttb_spark.settings import SettingsError, load_settings


def _args(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_every_stage_of_every_job_is_a_module_with_a_run():
    stages = {stage for job in runner.JOBS.values() for stage in job}
    assert stages == set(runner.STAGES)
    for stage in stages:
        assert callable(importlib.import_module(runner.STAGES[stage]).run), stage


def test_each_stage_takes_the_typed_part_of_the_scope_it_means():
    """Discover lists completed dates, silver and gold follow their watermarks after --since-last-run,
    reference and maintain have no range, the rest cover receipt dates; each stage's ``run`` declares that type."""
    ranged = runner.Scope(date(2024, 3, 1), date(2024, 3, 4), ("001",), ("cola-detail",), history_start=date(2024, 1, 2), sweep=False)
    changed = replace(ranged, since_last_run=True)
    receipt = scopes.ReceiptDates(date(2024, 3, 1), date(2024, 3, 4), ("001",), ("cola-detail",), ranged.run_id)
    expected = {
        "discover": (scopes.CompletedDates(date(2024, 3, 1), date(2024, 3, 4), date(2024, 1, 2), ranged.run_id, sweep=False),) * 2,
        "silver": (receipt, scopes.ChangesSince(date(2024, 3, 4), ranged.run_id)),
        "gold": (receipt, scopes.ChangesSince(date(2024, 3, 4), ranged.run_id)),
        "reference": (scopes.Whole(ranged.run_id),) * 2,
        "maintain": (scopes.Whole(ranged.run_id),) * 2,
    }
    for stage, module in runner.STAGES.items():
        got = (runner.stage_scope(stage, ranged), runner.stage_scope(stage, changed))
        assert got == expected.get(stage, (receipt, receipt)), stage
        declared = eval(inspect.signature(importlib.import_module(module).run).parameters["scope"].annotation, vars(scopes))
        assert all(isinstance(typed, declared) for typed in got), (stage, declared)


def test_plan_splits_a_range_into_bounded_chunks():
    scope = runner.Scope(date(2024, 1, 1), date(2024, 1, 10), ("001",), ("cola-detail",))
    assert runner.plan("walk", scope, 4) == [
        (date(2024, 1, 1), date(2024, 1, 4)), (date(2024, 1, 5), date(2024, 1, 8)), (date(2024, 1, 9), date(2024, 1, 10)),
    ]
    assert runner.plan("walk", scope, 30) == [(date(2024, 1, 1), date(2024, 1, 10))]
    assert runner.plan("reference", scope, 4) == [(date(2024, 1, 1), date(2024, 1, 10))]
    assert runner.plan("walk", runner.Scope(date(2024, 1, 2), date(2024, 1, 1), ("001",), ("cola-detail",)), 4) == []


def test_a_backfill_by_search_lists_its_receipt_range_then_the_approval_tail_up_to_today():
    """Issue #22 (3): a COLA is completed on or after its receipt, so the chunks of the receipt range and one
    chunk of the tail after it list every ID received in the range and completed by the tail's end: the range
    end + TTB_BACKFILL_LAG_DAYS, or the registry's today when that comes first."""
    from dataclasses import replace

    from ttb_spark.settings import load_settings

    scope = runner.Scope(date(2024, 1, 1), date(2024, 1, 10), ("001",), ("cola-detail",))
    assert runner.plan("pipeline", scope, 4, date(2024, 3, 1)) == [
        (date(2024, 1, 1), date(2024, 1, 4)), (date(2024, 1, 5), date(2024, 1, 8)), (date(2024, 1, 9), date(2024, 1, 10)),
        (date(2024, 1, 11), date(2024, 3, 1)),
    ]
    assert runner.plan("pipeline", scope, 30, date(2024, 1, 10)) == [(date(2024, 1, 1), date(2024, 1, 10))]  # today: no tail
    settings = load_settings("test", {"extraction": {"use_simulator": True, "simulator_today": date(2024, 2, 1), "backfill_lag_days": 30}})
    assert runner.tail_end(settings, scope) == date(2024, 2, 1)
    assert runner.tail_end(settings, replace(scope, end=date(2023, 12, 1))) == date(2023, 12, 31)
    # each chunk keeps the range's receipt dates; bronze takes the chunk's days in the range, none in the tail
    chunk = replace(scope, start=date(2024, 1, 9), end=date(2024, 2, 1), since_last_run=True, received=(scope.start, scope.end))
    assert runner.stage_scope("discover", chunk).received == (date(2024, 1, 1), date(2024, 1, 10))
    assert [p.receipt_date for p in runner.stage_scope("bronze", chunk).partitions()] == [date(2024, 1, 9), date(2024, 1, 10)]
    assert runner.stage_scope("bronze", replace(chunk, start=date(2024, 1, 11))).partitions() == []


def test_partition_argument_scopes_one_partition():
    settings, scope = runner.settings_from_args(_args("silver", "--env", "test", "--partition", "2024-01-02|001-cola-detail"))
    assert [p.key for p in scope.partitions()] == ["2024-01-02|001-cola-detail"]
    assert settings.pipeline.receipt_methods == ["001"] and settings.pipeline.data_types == ["cola-detail"]
    assert runner.plan("silver", scope, 7) == [(date(2024, 1, 2), date(2024, 1, 2))]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("pipeline", "--walk", "--since-last-run", "--start", "2024-01-02"), "--since-last-run picks the start date"),
        (("pipeline", "--since-last-run"), "the catch-up by search is `daily --since-last-run`"),
        (("pipeline", "--rescan-days", "3"), "add --walk"),
        (("pipeline", "--force"), "add --walk"),
        (("pipeline", "--partition", "2024-01-02|001-cola-detail"), "add --walk"),
        (("pipeline", "--date", "2024-01-02", "--end", "2024-01-03"), "--date or --start/--end"),
        (("silver", "--partition", "2024-01-02|001-cola-detail", "--start", "2024-01-02"), "--partition names one partition"),
        (("pipeline", "--chunk-days", "0"), "TTB_BACKFILL_CHUNK_DAYS"),
        (("scrape", "--rescan-days", "-1"), "--rescan-days"),
    ],
)
def test_conflicting_or_invalid_arguments_are_named(argv, message):
    with pytest.raises(SettingsError, match=message):
        runner.settings_from_args(_args(*argv, "--env", "test"))


def test_bad_argument_exits_2_with_one_line_and_no_table(tmp_path):
    root = tmp_path / "lakehouse"
    out = subprocess.run(
        [sys.executable, "-m", "ttb_spark", "pipeline", "--env", "test", "--since-last-run", "--date", "2024-01-02",
         "--lakehouse-root", str(root)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--since-last-run" in out.stderr
    assert not root.exists() and out.stdout == ""


def test_failed_chunk_is_audited_and_the_rerun_skips_finished_chunks(spark, tmp_path, monkeypatch, capsys):
    settings = make_settings(tmp_path)
    raw = tmp_path / "raw"
    # The raw store cannot take pages for 2024-01-03: a file sits where its folder must go.
    blocker = raw / "pages" / "method_type=001-cola-detail" / "receipt_date=2024-01-03"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    monkeypatch.setenv("TTB_USE_SIMULATOR", "false")
    with simulator.serving(scale=0.02) as url:
        argv = ["scrape", "--env", "test", "--start", "2024-01-02", "--end", "2024-01-03", "--chunk-days", "1",
                "--receipt-methods", "001", "--data-types", "cola-detail", "--registry-url", url,
                "--raw-root", str(raw), "--lakehouse-root", settings.pipeline.lakehouse_root]
        assert cli.main(argv) == 1
        failed = capsys.readouterr()
        assert "FAILED" in failed.out and "[chunk 2/2 2024-01-03..2024-01-03]" in failed.err
        # after chunk 1 (of 2), where the run is and what its walk cost so far
        assert re.search(r"\] scrape: 1/2 chunks \(50%\), [\d.]+/(s|min), about [\d:]+ left, \d+ pages stored, [\d.]+ requests per page", failed.err)
        blocker.unlink()
        assert cli.main(argv) == 0
        rerun = capsys.readouterr()
        assert cli.main([*argv, "--quiet", "--json"]) == 0  # both partitions complete: none walked again
        quiet = capsys.readouterr()

    fields = json.loads(quiet.out)  # --json: the summary as data
    rows = lakehouse.read_table(spark, audit.PIPELINE_RUNS, settings.pipeline.lakehouse_root).collect()
    runs = {r.status: r for r in rows if r.run_id != fields["run_id"]}
    assert set(runs) == {"failed", "succeeded"}
    first, second = runs["failed"], runs["succeeded"]
    assert [(c.start, c.end) for c in first.completed_chunks] == [(date(2024, 1, 2), date(2024, 1, 2))]
    assert first.error and first.ended_at is not None and first.counts["scrape"]["partitions_complete"] == 1
    # its row as written after chunk 1 of 2 (time travel): the end at its pace so far, one more chunk's time away
    root = settings.pipeline.lakehouse_root
    history = spark.sql(f"DESCRIBE HISTORY {lakehouse.table_ref(audit.PIPELINE_RUNS, root)}").collect()
    [(written, mid)] = [(h.timestamp, r) for h in history
                        for r in lakehouse.read_version(spark, audit.PIPELINE_RUNS, root, h.version).where(F.col("run_id") == first.run_id).collect()
                        if r.status == "running" and len(r.completed_chunks) == 1]
    assert mid.started_at < mid.expected_end_at <= written + (written - mid.started_at) + timedelta(seconds=5), (written, mid)
    assert first.expected_end_at is None and second.expected_end_at is None  # null once ended
    assert second.chunks_skipped == 1 and second.covered_through == date(2024, 1, 3)
    # Only chunk 2 ran again: the rerun's counts are that one partition's.
    assert second.counts["scrape"]["partitions"] == 1 and second.counts["scrape"]["partitions_complete"] == 1
    assert "[chunk 1/2 2024-01-02..2024-01-02]: finished by an earlier run, skipped" in rerun.err
    for expected in ("ttb_spark scrape: SUCCEEDED", "1 skipped as already done", "scrape    partitions=1",
                     f"run_id = '{second.run_id}'", "ops/pipeline_runs", str(raw)):
        assert expected in rerun.out

    # --quiet: no progress line; --json: the third run's audit row
    assert "[ttb_spark " not in quiet.err
    third = next(r for r in rows if r.run_id == fields["run_id"])
    assert (fields["job"], fields["status"], third.status, third.arguments["json"]) == ("scrape", "succeeded", "succeeded", "True")
    assert fields["range"] == {"start": "2024-01-02", "end": "2024-01-03", "chunk_days": 1, "chunks": 2, "finished": 2, "skipped": 0, "partitions": [],
                               "listed_through": None}
    assert fields["stages"] == {"scrape": third.counts.get("scrape")} and fields["error"] is None and fields["raw"] == str(raw)
    assert fields["audit"]["run_id"] == third.run_id and "ops.pipeline_runs" in fields["tables"]["names"]

    # --since-last-run picks up the day after the last covered receipt date.
    args = _args("scrape", "--env", "test", "--since-last-run", "--end", "2024-01-06", "--lakehouse-root", settings.pipeline.lakehouse_root)
    scope = runner.resolve_since_last_run(spark, "scrape", *runner.settings_from_args(args))
    assert (scope.start, scope.end) == (date(2024, 1, 4), date(2024, 1, 6))
    args = _args("scrape", "--env", "test", "--since-last-run", "--end", "2024-01-03", "--lakehouse-root", settings.pipeline.lakehouse_root)
    scope = runner.resolve_since_last_run(spark, "scrape", *runner.settings_from_args(args))
    assert runner.plan("scrape", scope, 7) == []
    args = _args("bronze", "--env", "test", "--since-last-run", "--end", "2024-01-03", "--lakehouse-root", settings.pipeline.lakehouse_root)
    scope = runner.resolve_since_last_run(spark, "bronze", *runner.settings_from_args(args))
    assert scope.start == settings.pipeline.partition_start_date
    # silver and gold follow their change watermarks instead: one run, whatever the audit says
    for job in ("analytics", "silver", "gold"):
        args = _args(job, "--env", "test", "--since-last-run", "--lakehouse-root", settings.pipeline.lakehouse_root)
        scope = runner.resolve_since_last_run(spark, job, *runner.settings_from_args(args))
        assert scope.since_last_run and scope.start == scope.end and len(runner.plan(job, scope, 7)) == 1


def test_rescan_reaches_back_from_the_range_end_and_only_in_the_last_chunks():
    """A daily run with --rescan-days 14 re-walks the 13 days before it too; in a backfill only the
    chunks inside the last 14 days rescan, each just its days in that window."""
    settings = load_settings("test", {"pipeline": {"partition_start_date": date(2024, 3, 1)}})
    scope = runner.Scope.from_settings(settings, rescan_days=14)
    wider = runner.with_rescan(scope)
    assert (wider.start, wider.end) == (date(2024, 2, 17), date(2024, 3, 1))
    assert runner.with_rescan(runner.Scope.from_settings(settings)).start == date(2024, 3, 1)
    backfill = runner.Scope(date(2024, 1, 1), date(2024, 1, 31), ("001",), ("cola-detail",), rescan_days=14)
    per_chunk = [runner.chunk_rescan_days(backfill, a, b) for a, b in runner.plan("raw", backfill, 7)]
    assert per_chunk == [0, 0, 4, 7, 3]  # Jan 18..31: 4 days of chunk 15-21, all of 22-28, 29-31


def test_audit_failure_is_reported_beside_the_jobs_own_result(spark, tmp_path, capsys):
    """ops.pipeline_runs cannot be written (a file sits where the table goes): a job that succeeds says so and
    exits 1 naming the audit; a job that fails keeps its own error in the summary, the audit's beside it."""
    root = tmp_path / "lakehouse"
    for blocked in ("ops/pipeline_runs", "gold/ttb_reference_data"):
        (root / blocked).parent.mkdir(parents=True, exist_ok=True)
        (root / blocked).write_text("not a table")
    common = ["--env", "test", "--lakehouse-root", str(root), "--raw-root", str(tmp_path / "raw")]

    assert cli.main(["gold", "--since-last-run", *common]) == 1  # nothing changed in silver: the stage itself succeeds
    out = capsys.readouterr()
    assert "ttb_spark gold: SUCCEEDED" in out.out and "  gold      colas=0" in out.out
    assert "audit     NOT RECORDED: could not write the run's row to ops.pipeline_runs" in out.out
    assert "audit: could not write the run's row to ops.pipeline_runs" in out.err

    assert cli.main(["gold", "--date", "2024-01-02", *common]) == 1  # the reference table cannot be seeded
    summary = capsys.readouterr().out
    assert "ttb_spark gold: FAILED" in summary and "ttb_reference_data" in summary.split("  error     ")[1].splitlines()[0]
    assert "audit     NOT RECORDED" in summary


def test_a_run_whose_silver_or_gold_follows_change_watermarks_claims_every_date():
    """Issue #23 (5): ``pipeline --walk --since-last-run`` runs in receipt-date chunks, but its silver and gold
    process changes on any receipt date, so it claims every date, as analytics, daily and a backfill by search
    (``pipeline``) do; a job without silver or gold, or a walk over an explicit range, claims its range."""
    from dataclasses import replace

    from ttb_spark.ops import locks

    scope = runner.Scope(date(2024, 3, 1), date(2024, 3, 4), ("001",), ("cola-detail",), since_last_run=True)
    for job in ("walk", "analytics", "silver", "gold", "daily", "discover"):
        claim = runner.run_claim(job, scope)
        assert (claim.start, claim.end) == locks.EVERY_DATE, job
    for job, job_scope in (("raw", scope), ("scrape", scope), ("bronze", scope), ("walk", replace(scope, since_last_run=False))):
        claim = runner.run_claim(job, job_scope)
        assert (claim.start, claim.end) == (date(2024, 3, 1), date(2024, 3, 4)), job
    for job_scope in (scope, replace(scope, since_last_run=False)):
        claim = runner.run_claim("pipeline", job_scope)
        assert (claim.start, claim.end) == locks.EVERY_DATE


def test_a_jvm_error_is_named_on_one_line_by_its_java_exception(spark):
    """A Py4JJavaError's first line only names the call; the summary, progress and audit lines name the Java
    exception too (what failed a job process when its code cache filled: a VirtualMachineError)."""
    from py4j.protocol import Py4JJavaError

    with pytest.raises(Py4JJavaError) as caught:
        spark.sparkContext._jvm.java.util.ArrayList().get(5)  # not one of the exceptions PySpark converts
    line = runner.one_line(caught.value)
    assert line.startswith("Py4JJavaError: An error occurred while calling") and "\n" not in line
    assert line.endswith("java.lang.IndexOutOfBoundsException: Index 5 out of bounds for length 0")
    assert runner.error_text(caught.value).splitlines()[0] == line

    class Gone:  # the JVM no longer answers: neither the message nor the Java exception can be read
        _target_id = "o1"

        class _gateway_client:
            @staticmethod
            def send_command(command):
                raise ConnectionError("the JVM is gone")

        def toString(self):
            raise ConnectionError("the JVM is gone")

    gone = Py4JJavaError("An error occurred while calling o1.collect.\n", Gone())
    assert runner.one_line(gone) == "Py4JJavaError: An error occurred while calling o1.collect."
    assert runner.one_line(ValueError("bad\nmore")) == "ValueError: bad"
