"""Runs jobs: turns arguments into settings and a scope, then runs each stage in order.

A stage is a module with ``run(spark, settings, scope) -> dict[str, int]`` (its counts), ``scope`` the
typed part of the job's scope the stage means (:func:`stage_scope`).
Jobs are lists of stages; the runner owns the Spark session, the embedded simulator, the
backfill chunks, the run audit (``ops.pipeline_runs``), progress lines and the end-of-run
summary, so stage code stays a thin read -> transform -> write.

The ``daily`` job's dates are completed dates (discovery's): its discover and bronze stages run
per chunk, then silver and gold run once, always change-driven (what changed since their
watermarks, whatever the receipt dates), and the run's audit row and summary list what gold
recorded as new, changed status, withdrawn or removed.

A date range is run in chunks of ``pipeline.backfill_chunk_days`` days, every stage of the job
per chunk, and each finished chunk is recorded in the run's audit row: rerunning a failed
backfill with the same arguments and settings skips the chunks it already finished.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from ttb_spark.console import progress
from ttb_spark.partitions import Partition, chunks
from ttb_spark.scope import ChangesSince, CompletedDates, ReceiptDates, Scope, Whole
from ttb_spark.settings import Settings, SettingsError, load_settings

JOBS: dict[str, tuple[str, ...]] = {
    "pipeline": ("scrape", "bronze", "silver", "gold"),
    "raw": ("scrape", "bronze"),
    "analytics": ("silver", "gold"),
    "scrape": ("scrape",),
    "bronze": ("bronze",),
    "silver": ("silver",),
    "gold": ("gold",),
    "reference": ("reference",),
    "discover": ("discover",),
    "daily": ("discover", "bronze", "silver", "gold"),
    "reconcile": ("reconcile", "bronze"),
    "maintain": ("maintain",),
}
# Where each stage's module (``run(spark, settings, scope) -> counts``) lives; imported when the stage runs.
STAGES: dict[str, str] = {
    "scrape": "ttb_spark.raw.scrape", "discover": "ttb_spark.raw.discover", "reconcile": "ttb_spark.raw.reconcile",
    "bronze": "ttb_spark.bronze", "silver": "ttb_spark.silver", "gold": "ttb_spark.gold",
    "reference": "ttb_spark.reference", "maintain": "ttb_spark.ops.maintain",
}
NEEDS_REGISTRY = {"scrape", "reference", "discover", "reconcile"}
DISCOVERY_JOBS = ("discover", "daily")  # their dates are completed dates; they share one watermark
COST = ("ms", "sql_executions")  # what run_stage adds to each stage's counts: what the stage cost
WHOLE = {"reference", "maintain"}  # stages with no range: they cover the registry's lists or the lakehouse as a whole
UNCHUNKED = {job for job, stages in JOBS.items() if set(stages) <= WHOLE}  # jobs run once, not per chunk of dates
SERIAL_STAGES = {"gold", "reference"}  # one run at a time: they write tables spanning receipt dates (locks.GOLD)
ERROR_CHARS = 4000


@dataclass
class RunResult:
    """What a job run did: its audit record and exit status."""

    record: Any  # audit.RunRecord
    exit_code: int
    tables: list[str] = field(default_factory=list)
    rejected_pages: int | None = None  # pages of the range in silver.rejects (None: the job has no silver stage)
    rejected_of: str = ""  # what rejected_pages counts: the range, or this run's changed pages
    audit_error: str | None = None  # the first failure to read or write the run's ops.pipeline_runs row
    report: str | None = None  # where the run wrote its report (ttb_spark.report), or why it did not
    watch: dict[str, Any] | None = None  # the watchlist's counts (ttb_spark.watch), or its error


def settings_from_args(args: argparse.Namespace) -> tuple[Settings, Scope]:
    """Settings (profile + environment + flags) and the scope the flags ask for.

    Raises SettingsError for bad or conflicting arguments, before anything is started.
    """
    if getattr(args, "date", None) and (args.start or args.end):
        raise SettingsError("use either --date or --start/--end, not both")
    since = bool(getattr(args, "since_last_run", False))
    if since and (args.date or args.start or args.partition):
        raise SettingsError("--since-last-run picks the start date itself: drop --date/--start/--partition")
    if args.partition and (args.date or args.start or args.end or args.receipt_methods or args.data_types):
        raise SettingsError("--partition names one partition: drop --date/--start/--end/--receipt-methods/--data-types")
    only: tuple[Partition, ...] = ()
    start, end = (args.date, args.date) if args.date else (args.start, args.end)
    methods, types = args.receipt_methods, args.data_types
    if args.partition:
        part = Partition.from_key(args.partition)
        only, start, end, methods, types = (part,), part.receipt_date, part.receipt_date, part.receipt_method, part.data_type
    if start and not end:
        end = start
    overrides = {
        "pipeline": {
            "partition_start_date": start,
            "partition_end_date": end,
            "receipt_methods": methods,
            "data_types": types,
            "raw_root": args.raw_root,
            "lakehouse_root": args.lakehouse_root,
            "backfill_chunk_days": getattr(args, "chunk_days", None),
        },
        "extraction": {"registry_base_url": args.registry_url, "use_simulator": args.simulator,
                       "simulator_today": getattr(args, "simulator_today", None)},
        "maintenance": {"vacuum_retention_hours": getattr(args, "vacuum_retention_hours", None)},
    }
    rescan = getattr(args, "rescan_days", 0) or 0
    if rescan < 0:
        raise SettingsError(f"--rescan-days must be >= 0, got {rescan}")
    settings = load_settings(args.env, overrides)
    scope = Scope.from_settings(settings, force=bool(getattr(args, "force", False)), rescan_days=rescan, only=only)
    return settings, scope


@contextlib.contextmanager
def registry(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at the registry to use: the embedded loopback simulator when asked for."""
    if not settings.extraction.use_simulator:
        yield settings
        return
    from ttb_spark.registry import simulator

    with simulator.serving(scale=settings.extraction.simulator_scale, today=settings.extraction.simulator_today) as base_url:
        extraction = settings.extraction.model_copy(update={"registry_base_url": base_url})
        yield settings.model_copy(update={"extraction": extraction})


StageScope = ReceiptDates | CompletedDates | ChangesSince | Whole


def stage_scope(name: str, scope: Scope) -> StageScope:
    """The typed part of the job's scope a stage takes: discover lists the scope's dates as completed dates;
    silver and gold follow their watermarks after ``--since-last-run`` (and in the daily job); reference and
    maintain have no range; every other stage covers the scope's dates as receipt dates (so in the daily job
    bronze ingests, beside the listings pending, any walk manifests of the chunk's days)."""
    if name == "discover":
        return scope.completed_dates()
    if name in CHANGE_DRIVEN and scope.since_last_run:
        return scope.changes()
    if name in WHOLE:
        return scope.whole()
    return scope.receipt_dates()


def _describe(scope: StageScope) -> str:
    if isinstance(scope, CompletedDates):
        return f"completed dates {scope.start}..{scope.end}"
    if isinstance(scope, ChangesSince):
        return "what changed since the last run"
    if isinstance(scope, Whole):
        return "everything"
    parts = scope.partitions()
    if len(parts) <= 4:
        return ", ".join(p.key for p in parts)
    return f"{len(parts)} partitions {parts[0].key} .. {parts[-1].key}"


def run_stage(name: str, spark: Any, settings: Settings, scope: Scope, label: str = "", job: str = "") -> dict[str, int]:
    """Run one stage over ``scope`` with a start and a done line; returns its counts and what it cost:
    ``ms`` (wall milliseconds) and ``sql_executions`` (Spark SQL executions while it ran, the lock heartbeat's
    included; left out over Spark Connect, which does not show them). A stage of SERIAL_STAGES first waits
    for the ``gold`` claim (another run's gold stage to end)."""
    from ttb_spark.spark import last_sql_execution

    module = importlib.import_module(STAGES[name])
    with serial(spark, settings, scope, name, job or name):
        first, started = last_sql_execution(spark), time.monotonic()
        typed = stage_scope(name, scope)
        progress(f"{name}{label}: start {_describe(typed)}")
        describe_jobs(spark, f"ttb_spark {name}{label} {scope.start}..{scope.end}")
        counts = {k: int(v) for k, v in module.run(spark, settings, typed).items()}
        elapsed, last = time.monotonic() - started, last_sql_execution(spark)
    cost = dict(zip(COST, (round(elapsed * 1000), None if first is None or last is None else last - first)))
    cost = {k: v for k, v in cost.items() if v is not None}
    executions = f", {cost['sql_executions']} SQL executions" if "sql_executions" in cost else ""
    progress(f"{name}{label}: done in {elapsed:.1f}s{executions} " + " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts | cost


@contextlib.contextmanager
def serial(spark: Any, settings: Settings, scope: Scope, stage: str, job: str) -> Iterator[None]:
    """For a stage of SERIAL_STAGES, hold the ``gold`` claim (waiting for it) while it runs."""
    from ttb_spark.ops import locks

    root = settings.pipeline.lakehouse_root
    if not settings.concurrency.run_lock:
        yield
        return
    if stage not in SERIAL_STAGES:
        yield
        return
    claim = locks.Claim(locks.GOLD, scope.run_id, job, *locks.EVERY_DATE)
    try:
        locks.acquire(spark, settings, claim)
    except locks.RunLocked as exc:
        progress(f"{stage}: waiting up to {settings.concurrency.lock_wait_seconds:.0f}s: {exc}")
        locks.wait_for(spark, settings, claim)
    try:
        yield
    finally:
        locks.release(spark, root, scope.run_id, claim=locks.GOLD)


def run_claim(job: str, scope: Scope) -> Any:
    """The receipt dates a run of ``job`` claims (locks.Claim): its range, or every date when its
    silver or gold stage follows change watermarks (``--since-last-run``: they process changes on any
    receipt date, whatever the range); none for a job that writes no dated table."""
    from ttb_spark.ops import locks

    if job in UNCHUNKED:
        return None
    every = job in DISCOVERY_JOBS or (scope.since_last_run and bool(set(JOBS[job]) & CHANGE_DRIVEN))
    return locks.Claim(locks.DATES, scope.run_id, job, *(locks.EVERY_DATE if every else (scope.start, scope.end)))


def session_kind(spark: Any) -> str:
    """``classic`` (a SparkContext in this process) or ``Spark Connect`` (DataFrame API only)."""
    from pyspark.sql import SparkSession

    return "classic" if isinstance(spark, SparkSession) else "Spark Connect"


def describe_jobs(spark: Any, text: str) -> None:
    """Label the next Spark jobs in the UI; a Spark Connect session has no SparkContext to label them with."""
    if session_kind(spark) == "classic":
        spark.sparkContext.setJobDescription(text)


def plan(job: str, scope: Scope, chunk_days: int) -> list[tuple[date, date]]:
    """The chunks a run is split into: one for a single partition or the reference job, none for an empty range."""
    if scope.start > scope.end:
        return []
    if scope.only or job in UNCHUNKED:
        return [(scope.start, scope.end)]
    return list(chunks(scope.start, scope.end, chunk_days))


def after_chunks(job: str) -> tuple[str, ...]:
    """The stages a job runs once after its chunks, change-driven: silver and gold of a job whose
    dates are completed dates (they have no receipt-date range to follow)."""
    return tuple(s for s in JOBS[job] if s in CHANGE_DRIVEN) if job in DISCOVERY_JOBS else ()


class RunAudit:
    """The run's ``ops.pipeline_runs`` row, read and written so that a failure to do so is reported (once per
    kind, on stderr and in the summary) and never stops, or stands in for the result of, the job's own work."""

    def __init__(self, spark: Any, root: str) -> None:
        self.spark, self.root = spark, root
        self.error: str | None = None

    def _failed(self, what: str, exc: Exception) -> None:
        message = f"could not {what} ops.pipeline_runs: {one_line(exc)}"
        progress(f"audit: {message}")
        self.error = self.error or message

    def finished_chunks(self, job: str, settings: Settings, scope: Scope) -> set[tuple[date, date]]:
        """Chunks an interrupted earlier run of the same settings and range finished (none when the audit cannot be
        read: every chunk is redone)."""
        from ttb_spark.ops import audit

        try:
            return audit.finished_chunks(audit.read_runs(self.spark, self.root, job), settings.fingerprint(scope.start, scope.end))
        except Exception as exc:
            self._failed("read (resume skipped)", exc)
            return set()

    def write(self, record: Any, first: bool = False) -> None:
        from ttb_spark.ops import audit

        try:
            audit.write(self.spark, record, self.root, first)
        except Exception as exc:
            self._failed("write the run's row to", exc)


def run_job(
    job: str, spark: Any, settings: Settings, scope: Scope, arguments: dict[str, Any] | None = None, watchlist: tuple[Any, ...] = (),
) -> RunResult:  # fmt: skip
    """Run every stage of ``job`` per chunk of the scope, with the run audited; never raises for a stage or
    audit failure. Exit status 1 when a stage failed, or when the stages succeeded but the run could not be
    recorded, its report written or its watchlist hits recorded (the summary says which). ``watchlist``: the
    rules (:mod:`ttb_spark.watch`) a successful daily run records hits of and sends."""
    from ttb_spark.ops import audit, locks

    root = settings.pipeline.lakehouse_root
    chunk_list = plan(job, scope, settings.pipeline.backfill_chunk_days)
    run_audit = RunAudit(spark, root)
    done = set() if scope.force else run_audit.finished_chunks(job, settings, scope)
    record = audit.RunRecord.start(
        scope.run_id, job, arguments or {}, settings,
        range_start=scope.start, range_end=scope.end, partitions=tuple(p.key for p in scope.only),
        chunks_total=len(chunk_list), chunks_skipped=sum(c in done for c in chunk_list),
    )
    run_audit.write(record, first=True)
    once = after_chunks(job)
    per_chunk = [s for s in JOBS[job] if s not in once]
    progress(f"{job}: run {scope.run_id} {scope.start}..{scope.end} in {len(chunk_list)} chunk(s), {record.chunks_skipped} already done")
    claim = run_claim(job, scope) if settings.concurrency.run_lock else None
    try:
        if claim is not None:
            locks.acquire(spark, settings, claim)
        beating = locks.heartbeat(spark, settings, scope.run_id) if claim is not None else contextlib.nullcontext()
        with beating, registry(settings) if NEEDS_REGISTRY & set(JOBS[job]) else contextlib.nullcontext(settings) as live:
            swept = False  # the withdrawal sweep re-lists the days before the run once, in the first chunk it runs
            for number, (start, end) in enumerate(chunk_list, 1):
                label = f" [chunk {number}/{len(chunk_list)} {start}..{end}]" if len(chunk_list) > 1 else ""
                if (start, end) in done:
                    progress(f"{job}{label}: finished by an earlier run, skipped")
                    record = record.chunk_done(start, end, {})
                    continue
                chunk_scope = replace(scope, start=start, end=end, rescan_days=chunk_rescan_days(scope, start, end), sweep=not swept)
                swept = True
                counts = {stage: run_stage(stage, spark, live, chunk_scope, label, job) for stage in per_chunk}
                record = record.chunk_done(start, end, counts)
                if number < len(chunk_list) or once:
                    run_audit.write(record)
            if once:
                record = run_change_driven(once, spark, live, replace(scope, since_last_run=True), record, job)
        record = record.finish(audit.SUCCEEDED)
        code = 0
    except locks.RunLocked as exc:
        record = record.finish(audit.FAILED, f"RunLocked: {exc}")
        progress(f"{job}: stopped: {exc}")
        code = 1
    except (Exception, KeyboardInterrupt) as exc:
        record = record.finish(audit.FAILED, error_text(exc))
        progress(f"{job}: FAILED {one_line(exc)}")
        traceback.print_exc(file=sys.stderr)
        code = 1
    finally:
        if claim is not None:
            locks.release(spark, root, scope.run_id)
    run_audit.write(record)
    watched = after_run_watch(job, spark, settings, record, watchlist) if code == 0 else None
    report, report_failed = after_run_report(job, spark, settings, record, scope) if code == 0 else (None, False)
    rejected, of = None, ""
    if "silver" in JOBS[job] and (scope.since_last_run or once):  # change-driven: the pages this run processed
        rejected, of = int((record.counts.get("silver") or {}).get("pages_rejected", 0)), "this run's changed pages"
    elif "silver" in JOBS[job]:
        rejected, of = rejected_pages(spark, root, scope), f"{scope.start}..{scope.end}"
    code = code or int(run_audit.error is not None or report_failed or bool(watched and "error" in watched))
    return RunResult(record, code, written_tables(spark, root), rejected, of, run_audit.error, report, watched)


def after_run_watch(job: str, spark: Any, settings: Settings, record: Any, watchlist: tuple[Any, ...]) -> dict[str, Any] | None:
    """Record the watchlist's hits and send the pending ones after a successful daily run (only the daily job
    watches: a backfill or a reprocessing run never sends); its counts, or ``{"error": ...}``."""
    if job != "daily" or not watchlist:
        return None
    from ttb_spark import watch

    try:
        counts = watch.run(spark, settings, watchlist, record.run_id)
    except Exception as exc:
        progress(f"{job}: watch FAILED {one_line(exc)}")
        return {"error": one_line(exc)}
    if counts.get("send_failed"):
        progress(f"{job}: watch: the digest of {counts['pending']} hit(s) was not accepted; the next run sends it again")
    return counts


def after_run_report(job: str, spark: Any, settings: Settings, record: Any, scope: Scope | None = None) -> tuple[str | None, bool]:
    """Write the report (:mod:`ttb_spark.report`) after a run whose gold stage processed COLAs, when
    ``TTB_REPORT_AFTER_RUN`` is on: (where it went or why it was not written, whether writing it failed).
    The daily job's covers the report's weeks up to its run's day (its last completed date, today on a
    schedule: the day's withdrawals are in it before the day's first approval); a run over a range of receipt
    dates, from that range's first week to gold's newest approval (its COLAs' approvals, however late); a
    change-driven one, the report's weeks up to gold's newest approval. A failure is reported, never undoes
    or stands in for the published data."""
    if "gold" not in JOBS[job] or not settings.analytics.report_after_run:
        return None, False
    if not (record.counts.get("gold") or {}).get("colas"):
        return "not written: gold processed no COLA", False
    from ttb_spark import report
    from ttb_spark.report.figures import first_week

    started = time.monotonic()
    try:
        since, until = None, None
        if scope is not None and job in DISCOVERY_JOBS:
            until = scope.end
        elif scope is not None and not scope.since_last_run:
            since = first_week(scope.start, 1)
        where = report.run(spark, settings, since, until)
    except Exception as exc:
        progress(f"{job}: report FAILED {one_line(exc)}")
        return f"NOT WRITTEN: {one_line(exc)}", True
    progress(f"{job}: report written in {time.monotonic() - started:.1f}s: {where}")
    return where, False


def run_change_driven(stages: tuple[str, ...], spark: Any, settings: Settings, scope: Scope, record: Any, job: str = "") -> Any:
    """Run ``stages`` once over what changed since their watermarks; the record with their counts and
    what gold recorded in the meantime (new, status_changed, withdrawn, removed)."""
    from ttb_spark import gold

    root = settings.pipeline.lakehouse_root
    before = gold.history_version(spark, root)
    counts = {stage: run_stage(stage, spark, settings, scope, " [changes since the last run]", job) for stage in stages}
    return record.with_counts(counts).with_changes(gold.recorded_since(spark, root, before))


def one_line(exc: BaseException) -> str:
    """Exception type and the first line of its message; for an error raised in the JVM (whose first line only
    names the call, "An error occurred while calling o4876.collectToPython."), the Java exception's too."""
    line = _first_line(_text(lambda: str(exc)) or _text(lambda: getattr(exc, "errmsg", "")))
    if getattr(exc, "java_exception", None) is not None:
        line = f"{line} {_first_line(_text(lambda: str(exc.java_exception.toString())))}".rstrip()
    return f"{type(exc).__name__}: {line}"


def _text(produce: Callable[[], str]) -> str:
    """``produce()`` stripped; empty when it cannot be had (a JVM that no longer answers)."""
    try:
        return produce().strip()
    except Exception:
        return ""


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def error_text(exc: BaseException) -> str:
    """One line naming the exception (``one_line``), then its message and the innermost frames, bounded in size."""
    text = "".join(traceback.format_exception(exc, limit=-3))
    rest = "\n".join(_text(lambda: str(exc)).splitlines()[1:])
    head = one_line(exc) + (f"\n{rest}" if rest else "")
    return (head if len(head) < ERROR_CHARS // 2 else head[: ERROR_CHARS // 2] + " ...") + "\n" + text[-ERROR_CHARS // 2 :]


def rejected_pages(spark: Any, root: str, scope: Scope) -> int:
    """Distinct pages of the scope's receipt dates quarantined in silver.rejects (0 without the table)."""
    from pyspark.sql import functions as F

    from ttb_spark import lakehouse, silver

    if not lakehouse.table_exists(spark, silver.REJECTS, root):
        return 0
    rows = lakehouse.read_table(spark, silver.REJECTS, root).where(F.col("receipt_date").between(scope.start, scope.end))
    return rows.select("ttb_id", "data_type").distinct().count()


def written_tables(spark: Any, root: str) -> list[str]:
    """Names of the declared tables that exist under ``root``."""
    from ttb_spark import lakehouse, tables

    return sorted(spec.name for spec in tables.ALL if lakehouse.table_exists(spark, spec, root))


CHANGE_DRIVEN = {"silver", "gold"}


def resolve_since_last_run(spark: Any, job: str, settings: Settings, scope: Scope) -> Scope:
    """Scope for ``--since-last-run``. Silver and gold then process everything that changed since
    their last successful run (their change watermarks, whatever the receipt dates): a job of only
    those stages runs once, its nominal range being today. Scrape and bronze take a range: the first
    receipt date from the settings' start date on that no finished chunk of a ``job`` run covers
    (:func:`audit.next_start`) to the settings' end date, else today; an empty range (everything
    covered) plans no chunk."""
    from ttb_spark.ops import audit

    root = settings.pipeline.lakehouse_root
    today = datetime.now(timezone.utc).date()
    history = settings.pipeline.partition_start_date
    if job in DISCOVERY_JOBS:
        # discovery's watermark: the end of the completed dates discovery runs covered without a gap from
        # the history's first date, re-listed with an overlap that never reaches before that date
        runs = [r for name in DISCOVERY_JOBS for r in audit.read_runs(spark, root, name)]
        start = max(audit.next_start(runs, history) - timedelta(days=settings.extraction.discovery_overlap_days), history)
    elif set(JOBS[job]) <= CHANGE_DRIVEN:
        return replace(scope, start=today, end=today, since_last_run=True)
    else:
        start = audit.next_start(audit.read_runs(spark, root, job), history)
    end = settings.pipeline.partition_end_date or today
    return replace(scope, start=start, end=end, since_last_run=True)


def with_rescan(scope: Scope) -> Scope:
    """Reach back ``rescan_days`` from the range end, so a daily run re-walks (and re-ingests) the
    recent receipt days whose approvals and status changes are still arriving."""
    if not scope.rescan_days or scope.only or scope.start > scope.end:
        return scope
    start = min(scope.start, scope.end - timedelta(days=scope.rescan_days - 1))
    return replace(scope, start=start)


def chunk_rescan_days(scope: Scope, start: date, end: date) -> int:
    """How many of the chunk's last days fall in the scope's rescan window (the last N days of the range)."""
    if not scope.rescan_days:
        return 0
    window_start = scope.end - timedelta(days=scope.rescan_days - 1)
    return max(0, (end - max(start, window_start)).days + 1)


def summary_fields(job: str, result: RunResult, settings: Settings) -> dict[str, Any]:
    """What the end-of-run report says, as data (``--json`` prints it): status, range, counts per stage, what
    gold recorded, rejects, error, where the raw store, the tables and the audit row are."""
    from ttb_spark import lakehouse
    from ttb_spark.ops import audit

    r = result.record
    root = settings.pipeline.lakehouse_root
    where = f"{root.removeprefix(lakehouse.CATALOG_SCHEME)}<layer>.<table>" if lakehouse.is_catalog(root) else f"{root}/<layer>/<table>"
    return {
        "job": job, "status": r.status, "run_id": r.run_id, "seconds": round(r.duration_seconds or 0, 1),
        "range": {"start": r.range_start and r.range_start.isoformat(), "end": r.range_end and r.range_end.isoformat(),
                  "chunk_days": settings.pipeline.backfill_chunk_days, "chunks": r.chunks_total,
                  "finished": len(r.completed_chunks), "skipped": r.chunks_skipped, "partitions": list(r.partitions)},
        "stages": {stage: r.counts.get(stage) for stage in JOBS[job]},
        "changes": {kind: {"total": (r.counts.get("changes") or {}).get(kind, len(ids)), "ids": ids} for kind, ids in r.changes.items()},
        "rejects": None if result.rejected_pages is None else {"pages": result.rejected_pages, "of": result.rejected_of},
        "error": r.error.splitlines()[0] if r.error else None,
        "audit_error": result.audit_error,
        "report": result.report,
        "watch": result.watch,
        "raw": settings.pipeline.raw_root,
        "tables": {"where": where, "names": list(result.tables)},
        "audit": {"table": lakehouse.location(audit.PIPELINE_RUNS, root), "run_id": r.run_id},
    }


def summary(fields: dict[str, Any]) -> str:
    """The one-screen end-of-run report of :func:`summary_fields`."""
    span = fields["range"]
    lines = [
        f"ttb_spark {fields['job']}: {fields['status'].upper()} in {fields['seconds']:.1f}s  (run {fields['run_id']})",
        f"  range     {span['start']}..{span['end']}  {span['chunks']} chunk(s) of <= {span['chunk_days']} days,"
        f" {span['finished']} finished, {span['skipped']} skipped as already done"
        + (f"  partition {', '.join(span['partitions'])}" if span["partitions"] else ""),
    ]
    for stage, counts in fields["stages"].items():
        shown = " ".join(f"{k}={v}" for k, v in counts.items()) if counts else "(not run)"
        lines.append(f"  {stage:<9} {shown}")
    for kind, change in fields["changes"].items():
        more = f" (+{change['total'] - len(change['ids'])} more)" if change["total"] > len(change["ids"]) else ""
        lines.append(f"  {kind:<9} {change['total']}: {' '.join(change['ids'])}{more}")
    if fields["rejects"] is not None:
        lines.append(f"  rejects   {fields['rejects']['pages']} page(s) of {fields['rejects']['of']} quarantined in silver.rejects")
    if fields["error"]:
        lines.append(f"  error     {fields['error'][:200]}")
    if fields["audit_error"]:
        lines.append(f"  audit     NOT RECORDED: {fields['audit_error'][:300]}")
    if fields["watch"]:
        lines.append(f"  watch     {' '.join(f'{k}={v}' for k, v in fields['watch'].items())}")
    if fields["report"]:
        lines.append(f"  report    {fields['report']}")
    lines.append(f"  raw       {fields['raw']}")
    lines.append(f"  tables    {fields['tables']['where']}: {', '.join(fields['tables']['names']) or '(none yet)'}")
    lines.append(f"  audit     {fields['audit']['table']} (run_id = '{fields['audit']['run_id']}')")
    return "\n".join(lines) + "\n"


def load_watchlist(job: str, settings: Settings) -> tuple[Any, ...]:
    """The daily job's watchlist rules (``TTB_WATCHLIST_FILE``), read before anything starts: a bad file is a
    :class:`SettingsError`. Other jobs never watch."""
    path = settings.analytics.watchlist_file
    if job != "daily" or not path:
        return ()
    from ttb_spark.watch import rules

    p = settings.pipeline
    return rules.load(path, p.aws_region, p.s3_endpoint_url)


def run_from_args(args: argparse.Namespace) -> int:
    """The CLI's job commands: validate, start Spark, run the job audited, print the summary; exit status."""
    settings, scope = settings_from_args(args)
    watchlist = load_watchlist(args.command, settings)
    from ttb_spark.spark import get_spark

    spark = get_spark(settings, app_name=f"ttb_spark-{args.command}")
    progress(f"{args.command}: Spark {spark.version}, {session_kind(spark)} session")
    if getattr(args, "since_last_run", False):
        scope = resolve_since_last_run(spark, args.command, settings, scope)
    scope = with_rescan(scope)
    arguments = {k: v for k, v in vars(args).items() if k != "command"}
    result = run_job(args.command, spark, settings, scope, arguments, watchlist)
    fields = summary_fields(args.command, result, settings)
    sys.stdout.write(json.dumps(fields, indent=2) + "\n" if args.json else summary(fields))
    sys.stdout.flush()
    return result.exit_code
