"""What a job does after its stages succeeded: the daily job's watchlist (:mod:`ttb_spark.watch`) and the
report (:mod:`ttb_spark.report`). Neither undoes or stands in for the published data; a failure is reported
and makes the run's exit status 1."""

from __future__ import annotations

import time
from typing import Any

from ttb_spark.console import progress
from ttb_spark.ops.errors import one_line
from ttb_spark.ops.jobs import DISCOVERY_JOBS, JOBS
from ttb_spark.scope import Scope
from ttb_spark.settings import Settings


def load_watchlist(job: str, settings: Settings) -> tuple[Any, ...]:
    """The daily job's watchlist rules (``TTB_WATCHLIST_FILE``), read before anything starts: a bad file is a
    :class:`SettingsError`. Other jobs never watch."""
    path = settings.analytics.watchlist_file
    if job != "daily" or not path:
        return ()
    from ttb_spark.watch import rules

    p = settings.pipeline
    return rules.load(path, p.aws_region, p.s3_endpoint_url)


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
