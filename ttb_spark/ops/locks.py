"""Run locks: runs over the same receipt dates never write side by side.

A run claims its receipt-date range in ``ops.run_locks`` before it writes (a run whose silver and
gold follow change watermarks, whatever the dates, claims every date). The claim is one MERGE
that inserts the run's row only when no live claim overlaps it; Delta's optimistic concurrency
makes that atomic: of two runs claiming at once, the second commit fails on the first's row,
is retried (:func:`lakehouse.retry_on_conflict`), sees it and is refused. A refused run exits 1
with a message naming the run holding the dates. Runs over disjoint dates both go ahead; their
gold stages (dimensions and facts span dates) take turns under the ``gold`` claim, the later
one waiting up to ``concurrency.lock_wait_seconds``.

A run's claims are refreshed while it runs, by a background thread every sixth of the stale window
(:func:`heartbeat`: a stage longer than the window keeps them live), and deleted when the run ends. A crashed run's claim is
ignored once it has not been refreshed for ``concurrency.lock_stale_minutes``, or at once when
its process is gone from this same host. This holds on any storage whose Delta commits are
atomic: local and HDFS folders, a catalog's managed tables, and S3 with the DynamoDB log store
(``concurrency.delta_dynamodb_table``); plain S3 without it has no atomic commit for anyone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pyspark.sql.types import DateType, IntegerType, StringType, StructType, TimestampType

from ttb_spark import lakehouse
from ttb_spark.lakehouse import column, sql_string

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.settings import Settings

log = logging.getLogger(__name__)
DATES, GOLD = "dates", "gold"  # a run's receipt dates; the gold stage, one run at a time
EVERY_DATE = (date(1, 1, 1), date(9999, 12, 31))
BEAT_EVERY = 6  # a run's heartbeat is rewritten BEAT_EVERY times per stale window

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
            column("process", StringType(), "<boot id>/<pid namespace>/<start time> of the driver process (Linux; null elsewhere): "
                                            "which host and pid alone do not tell apart (containers share both)."),
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
        holders = _try_acquire(spark, root, claim, stale)
        if not holders:
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
    row = (claim.claim, claim.run_id, claim.job, claim.start, claim.end, socket.gethostname(), os.getpid(), now, now, _identity(os.getpid()))
    source = spark.createDataFrame([row], RUN_LOCKS.schema)
    live = (f"t.claim = s.claim AND t.range_start <= s.range_end AND s.range_start <= t.range_end "
            f"AND t.heartbeat_at >= {cutoff}")  # fmt: skip
    merged = lakehouse.run_merge(
        spark,
        f"MERGE INTO {lakehouse.table_ref(RUN_LOCKS, root)} AS t USING {{source}} AS s "
        f"ON ({live}) OR (t.claim = s.claim AND t.run_id = s.run_id) WHEN NOT MATCHED THEN INSERT *",
        source,
    )
    if merged["inserted"] == 1:  # committed: nothing live overlapped it (the table is read back only when refused)
        return []
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


def _identity(pid: int) -> str | None:
    """``<boot id>/<pid namespace>/<start time>`` of process ``pid`` as seen from here; None without Linux's
    /proc or when no such process exists."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{boot}/{namespace}/{start}"


def _process_gone(holder: dict[str, Any]) -> bool:
    """Whether the claim's driver was a process on this host that no longer exists. Host name and pid are
    not enough where containers share a host name and number their processes alike: with a process identity
    (Linux), only a claim from this boot and pid namespace is judged, and gone means no process of that pid
    with that start time; otherwise (elsewhere, or a claim from before the identity) host and pid decide."""
    if holder["host"] != socket.gethostname() or holder["pid"] is None:
        return False
    mine, theirs = _identity(os.getpid()), holder.get("process")
    if mine is not None and theirs is not None:
        if theirs.rsplit("/", 1)[0] != mine.rsplit("/", 1)[0]:
            return False  # another boot or pid namespace: its pid means nothing here; the claim lapses when stale
        return _identity(int(holder["pid"])) != theirs
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


@contextlib.contextmanager
def heartbeat(spark: SparkSession, settings: Settings, run_id: str, every: float | None = None) -> Iterator[None]:
    """While the block runs, :func:`refresh` the run's claims every ``every`` seconds (default: 1/BEAT_EVERY of
    ``concurrency.lock_stale_minutes``) from a background thread: a stage that runs longer than the stale
    window must not look crashed. A refresh that fails is logged and tried again at the next beat."""
    root = settings.pipeline.lakehouse_root
    interval = every or settings.concurrency.lock_stale_minutes * 60 / BEAT_EVERY
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                refresh(spark, root, run_id)
            except Exception as exc:  # the run goes on; its claims lapse only if no later beat gets through
                log.warning("run %s: heartbeat failed (%s: %s)", run_id, type(exc).__name__, str(exc)[:200])

    thread = threading.Thread(target=beat, name=f"ttb-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@lakehouse.retry_on_conflict
def refresh(spark: SparkSession, root: str, run_id: str) -> None:
    """Move the run's claims' heartbeat to now (no commit when it holds none)."""
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
