"""Runs jobs: turns arguments into settings and a scope, then runs each stage in order.

A stage is a module with ``run(spark, settings, scope) -> dict[str, int]`` (its counts), ``scope`` the
typed part of the job's scope the stage means (:func:`stage_scope`).
Jobs are lists of stages; the runner owns the Spark session, the embedded simulator, the
backfill chunks, the run audit (``ops.pipeline_runs``), progress lines and the end-of-run
summary, so stage code stays a thin read -> transform -> write.

The ``daily`` job's dates are completed dates (discovery's): its discover and bronze stages run
once over the whole range (a catch-up after a pause lists every day before fetching any page), then
silver and gold, always change-driven (what changed since their watermarks, whatever the receipt
dates), and the run's audit row and summary list what gold recorded as new, changed status,
withdrawn or removed.

Any other date range is run in chunks of ``pipeline.backfill_chunk_days`` days, every stage of the job
per chunk, and each finished chunk is recorded in the run's audit row: rerunning a failed
backfill with the same arguments and settings skips the chunks it already finished. The ``pipeline`` job, a
backfill by search, takes its range as receipt dates and chunks completed dates instead (:func:`plan`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
import traceback
from dataclasses import replace
from datetime import date, timedelta
from typing import Any, Iterator

from ttb_spark.console import Meter, progress
from ttb_spark.ops.after_run import after_run_report, after_run_watch, load_watchlist
from ttb_spark.ops.errors import error_text, one_line
from ttb_spark.ops.jobs import BACKFILL, CHANGE_DRIVEN, DISCOVERY_JOBS, JOBS, NEEDS_REGISTRY, ONE_PASS, SERIAL_STAGES, STAGES, UNCHUNKED, WHOLE, after_chunks
from ttb_spark.ops.summary import RunResult, fetch_cost, fetch_counts, summary, summary_fields
from ttb_spark.partitions import Partition, chunks
from ttb_spark.scope import ChangesSince, CompletedDates, ReceiptDates, Scope, Whole
from ttb_spark.settings import Settings, SettingsError, load_settings

COST = ("ms", "sql_executions")  # what run_stage adds to each stage's counts: what the stage cost


def settings_from_args(args: argparse.Namespace) -> tuple[Settings, Scope]:
    """Settings (profile + environment + flags) and the scope the flags ask for.

    Raises SettingsError for bad or conflicting arguments, before anything is started.
    """
    if getattr(args, "date", None) and (args.start or args.end):
        raise SettingsError("use either --date or --start/--end, not both")
    since = bool(getattr(args, "since_last_run", False))
    if args.command == "pipeline" and not getattr(args, "walk", False):
        if since:
            raise SettingsError("pipeline --since-last-run: the catch-up by search is `daily --since-last-run`; add --walk to walk on from the last walk")
        if getattr(args, "force", False) or getattr(args, "rescan_days", 0) or args.partition:
            raise SettingsError("--force, --rescan-days and --partition walk partitions: add --walk (a backfill by search fetches what is listed)")
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
                       "simulator_today": getattr(args, "simulator_today", None),
                       "reconcile_walk_share": getattr(args, "walk_share", None),
                       "image_request_budget": getattr(args, "budget", None)},
        "maintenance": {"vacuum_retention_hours": getattr(args, "vacuum_retention_hours", None)},
    }
    rescan = getattr(args, "rescan_days", 0) or 0
    if rescan < 0:
        raise SettingsError(f"--rescan-days must be >= 0, got {rescan}")
    settings = load_settings(args.env, overrides)
    if args.command == "images":
        if since:
            raise SettingsError("images --since-last-run: the images job fills a range (--start/--end); its next run of the range goes on where it stopped")
        if not settings.extraction.label_images:
            raise SettingsError("TTB_LABEL_IMAGES is off in these settings (the test profile's default): set TTB_LABEL_IMAGES=true")
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
    bronze ingests, beside the listings pending, any walk manifests of the chunk's days; in a backfill by search,
    of the chunk's days in its receipt range)."""
    if name == "discover":
        return scope.completed_dates()
    if name in CHANGE_DRIVEN and scope.since_last_run:
        return scope.changes()
    if name in WHOLE:
        return scope.whole()
    if scope.received is not None:  # a backfill's chunk of completed dates: the receipt days of it in the range (none in the tail)
        return replace(scope, end=min(scope.end, scope.received[1])).receipt_dates()
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
    for the ``gold`` claim (another run's gold stage to end), unless the stage's ``idle`` finds it has nothing
    to do: then its counts are ``idle``'s and neither the claim nor the stage is taken."""
    from ttb_spark.spark import last_sql_execution

    module = importlib.import_module(STAGES[name])
    typed = stage_scope(name, scope)
    first, started = last_sql_execution(spark), time.monotonic()
    idle = module.idle(spark, settings, typed) if hasattr(module, "idle") else None
    if idle is not None:
        progress(f"{name}{label}: nothing changed since its last run, no claim taken")
        counts = idle
    else:
        with serial(spark, settings, scope, name, job or name):
            started = time.monotonic()
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
    every = job in DISCOVERY_JOBS or job in BACKFILL or (scope.since_last_run and bool(set(JOBS[job]) & CHANGE_DRIVEN))
    return locks.Claim(locks.DATES, scope.run_id, job, *(locks.EVERY_DATE if every else (scope.start, scope.end)))


def session_kind(spark: Any) -> str:
    """``classic`` (a SparkContext in this process) or ``Spark Connect`` (DataFrame API only)."""
    from pyspark.sql import SparkSession

    return "classic" if isinstance(spark, SparkSession) else "Spark Connect"


def describe_jobs(spark: Any, text: str) -> None:
    """Label the next Spark jobs in the UI; a Spark Connect session has no SparkContext to label them with."""
    if session_kind(spark) == "classic":
        spark.sparkContext.setJobDescription(text)


def plan(job: str, scope: Scope, chunk_days: int, tail_end: date | None = None) -> list[tuple[date, date]]:
    """The chunks a run is split into: one for a single partition, a job of ONE_PASS or the reference job, none
    for an empty range. A backfill by search (BACKFILL) lists completed dates: a COLA is completed on or after
    its receipt, so the chunks of the receipt range, then one chunk of the approval tail up to ``tail_end``
    (:func:`tail_end`), list every ID received in the range that was completed by then."""
    if scope.start > scope.end:
        return []
    if scope.only or job in UNCHUNKED or job in ONE_PASS:
        return [(scope.start, scope.end)]
    planned = list(chunks(scope.start, scope.end, chunk_days))
    if job in BACKFILL and tail_end is not None and tail_end > scope.end:
        planned.append((scope.end + timedelta(days=1), tail_end))
    return planned


def tail_end(settings: Settings, scope: Scope) -> date:
    """The last completed date a backfill by search lists: ``TTB_BACKFILL_LAG_DAYS`` after its range, never past
    the registry's today (the embedded simulator's clock when it has one). The daily flow, whose watermark a
    backfill from the history's start moves to its range end, lists what completes later."""
    return min(settings.extraction.registry_today(), scope.end + timedelta(days=settings.extraction.backfill_lag_days))


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
    chunk_list = plan(job, scope, settings.pipeline.backfill_chunk_days, tail_end(settings, scope))
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
    # after each chunk but the last: chunks done, time left at this run's pace, what its fetches cost so far
    meter = Meter(job, len(chunk_list) - record.chunks_skipped, "chunks", every=0, detail=lambda: fetch_cost(record.counts))
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
                if job in BACKFILL:  # completed dates, no sweep (nothing received in range completed before it)
                    chunk_scope = replace(chunk_scope, since_last_run=True, sweep=False, received=(scope.start, scope.end))
                swept = True
                counts = {stage: run_stage(stage, spark, live, chunk_scope, label, job) for stage in per_chunk}
                record = record.chunk_done(start, end, counts)
                meter.add()
                if number < len(chunk_list):
                    record = record.expecting_end(meter.seconds_left())
                if number < len(chunk_list) or (once and fetched_pages(counts)):
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
    if "silver" in JOBS[job] and (scope.since_last_run or once or job in BACKFILL):  # change-driven: the pages this run processed
        rejected, of = int((record.counts.get("silver") or {}).get("pages_rejected", 0)), "this run's changed pages"
    elif "silver" in JOBS[job]:
        rejected, of = rejected_pages(spark, root, scope), f"{scope.start}..{scope.end}"
    code = code or int(run_audit.error is not None or report_failed or bool(watched and "error" in watched))
    return RunResult(record, code, written_tables(spark, root), rejected, of, run_audit.error, report, watched)


def fetched_pages(counts: dict[str, dict[str, int]]) -> bool:
    """Whether a chunk stored a page from the registry (the walk's or discovery's). Only then is the chunk recorded
    before the change-driven stages: a rerun after a crash there skips it; a chunk that stored nothing is cheaper
    to list again than an audit commit (~1 s) is in every run with nothing new."""
    fetched = fetch_counts(counts)
    return any(fetched.get(k, 0) for k in ("found", "pages_found", "withdrawn", "pages_withdrawn"))


def run_change_driven(stages: tuple[str, ...], spark: Any, settings: Settings, scope: Scope, record: Any, job: str = "") -> Any:
    """Run ``stages`` once over what changed since their watermarks; the record with their counts and
    what gold recorded in the meantime (new, status_changed, withdrawn, removed)."""
    from ttb_spark import gold

    root = settings.pipeline.lakehouse_root
    before = gold.history_version(spark, root)
    counts = {stage: run_stage(stage, spark, settings, scope, " [changes since the last run]", job) for stage in stages}
    return record.with_counts(counts).with_changes(gold.recorded_since(spark, root, before))


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


def resolve_since_last_run(spark: Any, job: str, settings: Settings, scope: Scope) -> Scope:
    """Scope for ``--since-last-run``. Silver and gold then process everything that changed since
    their last successful run (their change watermarks, whatever the receipt dates): a job of only
    those stages runs once, its nominal range being today. Scrape and bronze take a range: the first
    receipt date from the settings' start date on that no finished chunk of a ``job`` run covers
    (:func:`audit.next_start`) to the settings' end date, else the registry's today (``ExtractionSettings.registry_today``: a
    simulated day moves the watermark no further than it); an empty range (everything covered) plans no chunk."""
    from ttb_spark.ops import audit

    root = settings.pipeline.lakehouse_root
    today = settings.extraction.registry_today()
    history = settings.pipeline.partition_start_date
    if job in DISCOVERY_JOBS:
        # discovery's watermark: the end of the completed dates discovery runs covered without a gap from
        # the history's first date, re-listed with an overlap that never reaches before that date
        runs = [r for name in DISCOVERY_JOBS for r in audit.read_runs(spark, root, name)]
        runs += [audit.completed_coverage(r, history) for name in BACKFILL for r in audit.read_runs(spark, root, name)]
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


def run_from_args(args: argparse.Namespace) -> int:
    """The CLI's job commands: validate, start Spark, run the job audited, print the summary; exit status."""
    settings, scope = settings_from_args(args)
    job = "walk" if getattr(args, "walk", False) else args.command
    watchlist = load_watchlist(job, settings)
    from ttb_spark.spark import get_spark

    spark = get_spark(settings, app_name=f"ttb_spark-{job}")
    progress(f"{job}: Spark {spark.version}, {session_kind(spark)} session")
    if getattr(args, "since_last_run", False):
        scope = resolve_since_last_run(spark, job, settings, scope)
    scope = with_rescan(scope)
    arguments = {k: v for k, v in vars(args).items() if k != "command"}
    result = run_job(job, spark, settings, scope, arguments, watchlist)
    fields = summary_fields(job, result, settings)
    sys.stdout.write(json.dumps(fields, indent=2) + "\n" if args.json else summary(fields))
    sys.stdout.flush()
    return result.exit_code
