"""The run audit: one ``ops.pipeline_runs`` row per job run, MERGEd on ``run_id``.

A run writes its row when it starts (status ``running``), after every finished chunk (so a
crash still leaves the chunks it finished on record) and when it ends (``succeeded`` or
``failed`` with the error). The table also answers the two questions the runner asks before
it starts: which chunks of an interrupted run are already done (resume), and the first date no
finished chunk of the job's runs covers since the history's start (``--since-last-run``).

The change-driven stages' ``ops.watermarks`` are :mod:`ttb_spark.lakehouse.watermarks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from ttb_spark import lakehouse
from ttb_spark.lakehouse import column

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.settings import Settings

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
CHANGE_IDS = 20  # TTB IDs kept per kind of change in a run's audit row and summary
_CHUNK = StructType([StructField("start", DateType()), StructField("end", DateType())])

PIPELINE_RUNS = lakehouse.TableSpec(
    name="ops.pipeline_runs",
    comment="One row per job run (pipeline, raw, analytics, a single stage): what it was asked, what it did, how it ended.",
    keys=("run_id",),
    schema=StructType(
        [
            column("run_id", StringType(), "Run identifier (hex UUID); also passed to every stage as scope.run_id.", nullable=False),
            column("job", StringType(), "Job name: pipeline (a backfill by search), walk (pipeline --walk), daily, discover, raw, analytics, a single stage, ..."),
            column("arguments", MapType(StringType(), StringType()), "Command-line arguments as given (flag -> value), unset ones left out."),
            column("environment", StringType(), "Settings profile: development, test or production."),
            column("settings_fingerprint", StringType(), "Settings.fingerprint(): a hash of every setting (settings hold no secrets)."),
            column("lakehouse_root", StringType(), "Where the run's Delta tables live."),
            column("raw_root", StringType(), "Where the run's raw pages and manifests live."),
            column("range_start", DateType(), "First receipt date the run was asked to cover."),
            column("range_end", DateType(), "Last receipt date the run was asked to cover (inclusive)."),
            column("partitions", ArrayType(StringType()), "Single-partition runs: the partition key given (YYYY-MM-DD|method-type); empty otherwise."),
            column("chunks_total", IntegerType(), "Backfill chunks the range was split into."),
            column("chunks_skipped", IntegerType(), "Chunks already finished by an interrupted earlier run with the same job and settings, not redone."),
            column("completed_chunks", ArrayType(_CHUNK), "Date ranges this run (or the runs it resumed) finished, every stage included: receipt "
                                                          "dates; completed dates for discover, daily and pipeline (a backfill by search)."),
            column("covered_through", DateType(), "Last date of the run's finished chunks (receipt dates; completed dates for discover/daily/pipeline)."),
            column("counts", MapType(StringType(), MapType(StringType(), LongType())), "Per stage, the stage's row and outcome counts summed over the run's chunks."),
            column("changes", MapType(StringType(), ArrayType(StringType())),
                   f"Daily runs: what gold recorded as new, status_changed, withdrawn or removed, the TTB IDs of each (the first {CHANGE_IDS} by ID; the totals are in counts, under changes)."),
            column("status", StringType(), "running, succeeded or failed (a run killed mid-way stays running)."),
            column("error", StringType(), "For a failed run: exception type, message and the innermost frames."),
            column("started_at", TimestampType(), "When the run started (UTC)."),
            column("ended_at", TimestampType(), "When the run ended (UTC); null while running."),
            column("duration_seconds", DoubleType(), "ended_at - started_at in seconds."),
            column("row_hash", StringType(), "SHA-256 of the row's content; the MERGE updates a row only when it changed."),
            column("expected_end_at", TimestampType(), "While running, from the first finished chunk of several on: when the run would end "
                                                       "at its pace so far (UTC); null for a run of one chunk and once the run has ended."),
        ]
    ),
)


@dataclass(frozen=True)
class RunRecord:
    """The in-memory form of one ``ops.pipeline_runs`` row."""

    run_id: str
    job: str
    arguments: dict[str, str]
    environment: str
    settings_fingerprint: str
    lakehouse_root: str
    raw_root: str
    range_start: date | None
    range_end: date | None
    partitions: tuple[str, ...] = ()
    chunks_total: int = 0
    chunks_skipped: int = 0
    completed_chunks: tuple[tuple[date, date], ...] = ()
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: dict[str, list[str]] = field(default_factory=dict)
    status: str = RUNNING
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    ended_at: datetime | None = None
    expected_end_at: datetime | None = None

    @classmethod
    def start(cls, run_id: str, job: str, arguments: dict[str, Any], settings: Settings, **kwargs: Any) -> RunRecord:
        p = settings.pipeline
        args = {k: _as_text(v) for k, v in sorted(arguments.items()) if v not in (None, False, "")}
        fingerprint = settings.fingerprint(kwargs.get("range_start"), kwargs.get("range_end"))
        return cls(run_id, job, args, p.environment, fingerprint, p.lakehouse_root, p.raw_root, **kwargs)

    @property
    def covered_through(self) -> date | None:
        return max((end for _, end in self.completed_chunks), default=None)

    @property
    def duration_seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def chunk_done(self, start: date, end: date, counts: dict[str, dict[str, int]]) -> RunRecord:
        """This record with one more finished chunk and its stage counts added in."""
        return replace(self, completed_chunks=(*self.completed_chunks, (start, end)), counts=add_counts(self.counts, counts))

    def with_counts(self, counts: dict[str, dict[str, int]]) -> RunRecord:
        """This record with stage counts added in outside any chunk (the daily job's change-driven stages)."""
        return replace(self, counts=add_counts(self.counts, counts))

    def with_changes(self, changes: dict[str, list[str]]) -> RunRecord:
        """This record with what gold recorded (kind -> every TTB ID): totals into counts, the first IDs kept."""
        totals = {"changes": {kind: len(ids) for kind, ids in changes.items()}}
        return replace(self, counts=add_counts(self.counts, totals),
                       changes={kind: sorted(ids)[:CHANGE_IDS] for kind, ids in changes.items()})

    def expecting_end(self, seconds_left: float | None) -> RunRecord:
        """This record with the end its pace so far makes: ``seconds_left`` from now (None: unknown)."""
        at = None if seconds_left is None else datetime.now(timezone.utc) + timedelta(seconds=seconds_left)
        return replace(self, expected_end_at=at)

    def finish(self, status: str, error: str | None = None) -> RunRecord:
        return replace(self, status=status, error=error, ended_at=datetime.now(timezone.utc), expected_end_at=None)

    def as_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "arguments": self.arguments,
            "environment": self.environment,
            "settings_fingerprint": self.settings_fingerprint,
            "lakehouse_root": self.lakehouse_root,
            "raw_root": self.raw_root,
            "range_start": self.range_start,
            "range_end": self.range_end,
            "partitions": list(self.partitions),
            "chunks_total": self.chunks_total,
            "chunks_skipped": self.chunks_skipped,
            "completed_chunks": [{"start": s, "end": e} for s, e in self.completed_chunks],
            "covered_through": self.covered_through,
            "counts": self.counts,
            "changes": self.changes,
            "status": self.status,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_seconds": self.duration_seconds,
            "row_hash": None,
            "expected_end_at": self.expected_end_at,
        }


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def add_counts(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per-stage counts summed key by key (chunks add up to the run's totals)."""
    out = {stage: dict(counts) for stage, counts in a.items()}
    for stage, counts in b.items():
        target = out.setdefault(stage, {})
        for key, value in counts.items():
            target[key] = target.get(key, 0) + int(value)
    return out


def write(spark: SparkSession, record: RunRecord, lakehouse_root: str, first: bool = False) -> None:
    """Update the run's row; ``first``: insert it (an append: a new run's ID is in no row yet)."""
    frame = spark.createDataFrame([record.as_row()], PIPELINE_RUNS.schema)
    if first:
        lakehouse.insert_new(spark, frame, PIPELINE_RUNS, lakehouse_root)
    else:
        lakehouse.merge_upsert(spark, frame, PIPELINE_RUNS, lakehouse_root)


def read_runs(spark: SparkSession, lakehouse_root: str, job: str) -> list[dict[str, Any]]:
    """The job's audit rows, newest first (a handful of small rows: collected to the driver)."""
    from pyspark.sql import functions as F

    rows = (
        lakehouse.read_table(spark, PIPELINE_RUNS, lakehouse_root)
        .where(F.col("job") == job)
        .select("run_id", "status", "settings_fingerprint", "started_at", "completed_chunks", "range_start", "range_end", "counts")
        .orderBy(F.col("started_at").desc())
        .collect()
    )
    return [row.asDict(recursive=True) for row in rows]


def finished_chunks(runs: list[dict[str, Any]], fingerprint: str) -> set[tuple[date, date]]:
    """Chunks finished by the interrupted runs (failed or killed) of the same settings since its last success.

    A rerun of a failed backfill with the same arguments skips them; a rerun after a success
    redoes everything (every stage is an idempotent MERGE).
    """
    done: set[tuple[date, date]] = set()
    for run in runs:
        if run["settings_fingerprint"] != fingerprint:
            continue
        if run["status"] == SUCCEEDED:
            break
        done.update((c["start"], c["end"]) for c in run["completed_chunks"] or ())
    return done


def completed_coverage(run: dict[str, Any], history_start: date) -> dict[str, Any]:
    """A backfill by search (a ``pipeline`` run that discovered) as discovery's watermark counts it: the chunks of
    its receipt range, which list every COLA completed on those days when the range starts at the history's start
    (a COLA is completed on or after its receipt); none when it starts later (what was received before it and
    completed in its days is not in it), nor for a walk of an earlier version (it may have walked some receipt
    methods only). The approval tail after its range lists only what it received."""
    if run["range_start"] is None or run["range_start"] > history_start or "discover" not in (run.get("counts") or {}):
        return run | {"completed_chunks": []}
    return run | {"completed_chunks": [c for c in run["completed_chunks"] or () if c["end"] <= run["range_end"]]}


def next_start(runs: list[dict[str, Any]], history_start: date) -> date:
    """The first date from ``history_start`` on that no finished chunk of ``runs`` covers (any status: a
    finished chunk is done). The chunks are joined into one span from the history's start, so a run over
    a later range (an ad-hoc ``discover --start/--end``, a ``--date`` run) never lets ``--since-last-run``
    skip the days before it; ``history_start`` itself when nothing covers it."""
    cursor = history_start
    for start, end in sorted((c["start"], c["end"]) for run in runs for c in run["completed_chunks"] or ()):
        if start > cursor:
            break
        cursor = max(cursor, end + timedelta(days=1))
    return cursor
