"""Run locks: runs over the same receipt dates never write side by side.

A run claims its receipt-date range in ``ops.run_locks`` before it writes (a run whose silver and
gold follow change watermarks, whatever the dates, claims every date). The claim is one MERGE
that inserts the run's row only when no live claim overlaps it; Delta's optimistic concurrency
makes that atomic: of two runs claiming at once, the second commit fails on the first's row,
is retried (:func:`lakehouse.retry_on_conflict`), sees it and is refused. A refused run exits 1
with a message naming the run holding the dates. Runs over disjoint dates both go ahead; their
gold stages (dimensions and facts span dates) take turns under the ``gold`` claim, the later
one waiting up to ``concurrency.lock_wait_seconds``.

A claim is refreshed at every stage (when its heartbeat is older than a sixth of the stale window:
a run of short stages makes no heartbeat commit between them) and deleted when the run ends. A crashed run's claim is
ignored once it has not been refreshed for ``concurrency.lock_stale_minutes``, or at once when
its process is gone from this same host. This holds on any storage whose Delta commits are
atomic: local and HDFS folders, a catalog's managed tables, and S3 with the DynamoDB log store
(``concurrency.delta_dynamodb_table``); plain S3 without it has no atomic commit for anyone.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pyspark.sql.types import DateType, IntegerType, StringType, StructType, TimestampType

from ttb_spark import lakehouse
from ttb_spark.lakehouse import column, sql_string

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.settings import Settings

DATES, GOLD = "dates", "gold"  # a run's receipt dates; the gold stage, one run at a time
EVERY_DATE = (date(1, 1, 1), date(9999, 12, 31))
BEAT_EVERY = 6  # keep_alive rewrites a run's heartbeat once it is older than 1/BEAT_EVERY of the stale window
# (lakehouse root, run id) -> time.monotonic() when this process took the run's first claim or last refreshed
# them all: no claim of the run has an older heartbeat than that.
_BEATS: dict[tuple[str, str], float] = {}

RUN_LOCKS = lakehouse.TableSpec(
    name="ops.run_locks",
    comment="Live claims of running jobs: receipt dates a run writes, or the gold stage; deleted when the run ends.",
    keys=("claim", "run_id"),
    schema=StructType(
        [
            column("claim", StringType(), "What is claimed: dates (the run's receipt-date range) or gold (the gold stage).", nullable=False),
            column("run_id", StringType(), "Run holding the claim (ops.pipeline_runs.run_id).", nullable=False),
            column("job", StringType(), "Job of the run: pipeline, daily, ..."),
            column("range_start", DateType(), "First receipt date claimed (0001-01-01: every date)."),
            column("range_end", DateType(), "Last receipt date claimed, inclusive (9999-12-31: every date)."),
            column("host", StringType(), "Host name of the run's driver."),
            column("pid", IntegerType(), "Process id of the run's driver on that host."),
            column("acquired_at", TimestampType(), "When the claim was taken (UTC)."),
            column("heartbeat_at", TimestampType(), "When the run last refreshed the claim (UTC); a stale claim is ignored."),
        ]
    ),
)


class RunLocked(RuntimeError):
    """Another live run holds what this run claims (the message names it)."""


@dataclass(frozen=True)
class Claim:
    """One claim of one run."""

    claim: str
    run_id: str
    job: str
    start: date
    end: date

    def describe(self) -> str:
        return "every receipt date" if (self.start, self.end) == EVERY_DATE else f"receipt dates {self.start}..{self.end}"


def acquire(spark: SparkSession, settings: Settings, claim: Claim) -> None:
    """Take ``claim``, or raise :class:`RunLocked` naming the live run holding an overlapping one."""
    root = settings.pipeline.lakehouse_root
    stale = timedelta(minutes=settings.concurrency.lock_stale_minutes)
    for attempt in range(2):  # a second try after clearing claims of processes gone from this host
        taken = time.monotonic()
        holders = _try_acquire(spark, root, claim, stale)
        if not holders:
            _BEATS.setdefault((root, claim.run_id), taken)
            return
        live = [h for h in holders if not _process_gone(h)]
        if live or attempt:
            break
        release(spark, root, *{h["run_id"] for h in holders})
    holder = (live or holders)[0]
    expires = holder["heartbeat_at"] + stale
    raise RunLocked(
        f"run {holder['run_id']} ({holder['job']}, on {holder['host']} pid {holder['pid']}, since {holder['acquired_at']:%Y-%m-%d %H:%M:%S} UTC) "
        f"holds {_describe(holder)}, which overlaps this run's {claim.describe()}; rerun when it has ended "
        f"(a crashed run's claim lapses at {expires:%Y-%m-%d %H:%M:%S} UTC, TTB_LOCK_STALE_MINUTES)"
    )


def wait_for(spark: SparkSession, settings: Settings, claim: Claim) -> None:
    """Take ``claim``, waiting (polling, with backoff) up to ``concurrency.lock_wait_seconds`` for its holder to finish."""
    import tenacity

    tenacity.retry(
        retry=tenacity.retry_if_exception_type(RunLocked),
        wait=tenacity.wait_exponential(multiplier=1, min=1, max=15),
        stop=tenacity.stop_after_delay(settings.concurrency.lock_wait_seconds),
        reraise=True,
    )(acquire)(spark, settings, claim)


@lakehouse.retry_on_conflict
def _try_acquire(spark: SparkSession, root: str, claim: Claim, stale: timedelta) -> list[dict[str, Any]]:
    """One claim attempt: the MERGE, then the live overlapping claims of other runs (empty: acquired)."""
    from pyspark.sql import functions as F

    lakehouse.ensure_table(spark, RUN_LOCKS, root)
    now = datetime.now(timezone.utc)
    cutoff = _instant(now - stale)
    row = (claim.claim, claim.run_id, claim.job, claim.start, claim.end, socket.gethostname(), os.getpid(), now, now)
    source = spark.createDataFrame([row], RUN_LOCKS.schema)
    live = (f"t.claim = s.claim AND t.range_start <= s.range_end AND s.range_start <= t.range_end "
            f"AND t.heartbeat_at >= {cutoff}")  # fmt: skip
    spark.sql(
        f"MERGE INTO {lakehouse.table_ref(RUN_LOCKS, root)} AS t USING {{source}} AS s "
        f"ON ({live}) OR (t.claim = s.claim AND t.run_id = s.run_id) WHEN NOT MATCHED THEN INSERT *",
        source=source,
    ).collect()
    locks = lakehouse.read_table(spark, RUN_LOCKS, root).where(F.col("claim") == claim.claim)
    mine = locks.where(F.col("run_id") == claim.run_id).count()
    if mine:
        return []
    others = locks.where(f"range_start <= DATE '{claim.end}' AND DATE '{claim.start}' <= range_end "
                         f"AND heartbeat_at >= {cutoff}")
    return [r.asDict() for r in others.orderBy("acquired_at").collect()]


def _instant(moment: datetime) -> str:
    """A SQL TIMESTAMP literal of the aware ``moment`` with its UTC offset: the same instant whatever the
    session's time zone (a literal without one is read in the session's zone)."""
    return f"TIMESTAMP {sql_string(moment.astimezone(timezone.utc).isoformat())}"


def _describe(holder: dict[str, Any]) -> str:
    if holder["claim"] == GOLD:
        return "the gold stage"
    return Claim(holder["claim"], holder["run_id"], holder["job"], holder["range_start"], holder["range_end"]).describe()


def _process_gone(holder: dict[str, Any]) -> bool:
    """Whether the claim's driver was a process on this host that no longer exists."""
    if holder["host"] != socket.gethostname() or holder["pid"] is None:
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _held(spark: SparkSession, root: str, run_ids: tuple[str, ...], claim: str | None = None) -> str | None:
    """SQL condition selecting the claims of ``run_ids`` (only ``claim`` when given); None when they hold none."""
    if not run_ids or not lakehouse.table_exists(spark, RUN_LOCKS, root):
        return None
    where = f"run_id IN ({', '.join(sql_string(r) for r in run_ids)})" + (f" AND claim = {sql_string(claim)}" if claim else "")
    return None if lakehouse.read_table(spark, RUN_LOCKS, root).where(where).isEmpty() else where


def keep_alive(spark: SparkSession, settings: Settings, run_id: str) -> None:
    """:func:`refresh` the run's claims unless this process wrote their heartbeat less than 1/BEAT_EVERY of
    ``concurrency.lock_stale_minutes`` ago: other runs then still see them as live with a wide margin."""
    root = settings.pipeline.lakehouse_root
    beat = _BEATS.get((root, run_id))
    if beat is None or time.monotonic() - beat > settings.concurrency.lock_stale_minutes * 60 / BEAT_EVERY:
        refresh(spark, root, run_id)


@lakehouse.retry_on_conflict
def refresh(spark: SparkSession, root: str, run_id: str) -> None:
    """Move the run's claims' heartbeat to now (no commit when it holds none)."""
    _BEATS[(root, run_id)] = time.monotonic()
    where = _held(spark, root, (run_id,))
    if where:
        now = _instant(datetime.now(timezone.utc))
        spark.sql(f"UPDATE {lakehouse.table_ref(RUN_LOCKS, root)} SET heartbeat_at = {now} WHERE {where}").collect()


@lakehouse.retry_on_conflict
def release(spark: SparkSession, root: str, *run_ids: str, claim: str | None = None) -> None:
    """Delete the claims of ``run_ids`` (only ``claim`` when given; no commit when they hold none)."""
    where = _held(spark, root, run_ids, claim)
    if where:
        spark.sql(f"DELETE FROM {lakehouse.table_ref(RUN_LOCKS, root)} WHERE {where}").collect()
