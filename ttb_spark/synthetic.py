"""Synthetic bronze: the registry simulator's pages rendered straight into ``bronze.pages``.

No HTTP and no raw store: executors render each receipt day and method's public records from the
simulator's real templates (:class:`ttb_spark.registry.simulator.SyntheticRegistry`, deterministic by
seed, scale and profile) and the rows are typed by bronze's own transform
(:func:`ttb_spark.bronze.page_rows`), as if the scraper had fetched every page once: outcome
``found``, HTTP 200, fetched at noon UTC of the approval date, the raw store key the page would
have, scrape run ``synthetic-<seed>``. One ``INSERT`` (one Delta commit) per call, each task
writing whole receipt-date partitions, so a year of real volume is bulk-loaded in minutes and
the stages after bronze run on it unchanged. For benchmarks and tests: production bronze comes
from the raw store only.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ttb_spark import bronze, lakehouse

from ttb_spark.raw import storage
from ttb_spark.partitions import Partition
from ttb_spark.settings import DATA_TYPES, RECEIPT_METHODS
from ttb_spark.registry.ttb_id import TTBId

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

def fetched_lines(seed: int, scale: float, profile: str, day: date, receipt_method: str) -> list[dict[str, Any]]:
    """The day and method's pages as fetched manifest lines with their ``content`` (bronze.FETCHED fields)."""
    registry = _registry(seed, scale, profile)
    out = []
    for ttb_id in registry.public_ids(day, receipt_method):
        record, tid = registry.record(ttb_id), TTBId(ttb_id)
        fetched = datetime.combine(record.approval_date, time(12), tzinfo=timezone.utc).isoformat()
        for data_type in DATA_TYPES:
            part = Partition(day, receipt_method, data_type)
            content = registry.render(record, data_type)
            out.append({
                "ttb_id": ttb_id, "method_type": part.method_type, "receipt_date": day.isoformat(), "data_type": data_type,
                "receipt_method": receipt_method, "sequence": tid.sequence, "outcome": "found", "reason": None,
                "http_status": 200, "bytes": len(content), "sha256": None, "fetched_at": fetched, "attempts": 1,
                "key": storage.page_key(part, tid), "run_id": f"synthetic-{seed}", "withdrawn_at": None, "content": content,
            })  # fmt: skip
    return out


_REGISTRIES: dict[tuple[int, float, str], Any] = {}


def _registry(seed: int, scale: float, profile: str) -> Any:
    """One SyntheticRegistry per worker process and arguments (its record cache is reused across batches)."""
    from ttb_spark.registry.simulator import SyntheticRegistry

    key = (seed, scale, profile)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = SyntheticRegistry(seed, scale, profile)
    return _REGISTRIES[key]


def _render_batches(seed: int, scale: float, profile: str, batches: Iterable[Any]) -> Iterator[Any]:
    """mapInArrow body: batches of (receipt_date, receipt_method) -> their pages as bronze.FETCHED rows."""
    import pyarrow as pa

    schema = bronze.arrow_schema(bronze.FETCHED)
    for batch in batches:
        for day, method in zip(batch.column("receipt_date").to_pylist(), batch.column("receipt_method").to_pylist()):
            lines = fetched_lines(seed, scale, profile, day, method)
            if lines:
                yield pa.RecordBatch.from_pylist(lines, schema=schema)


def pages(spark: SparkSession, first: date, last: date, seed: int = 0, scale: float = 1.0, profile: str = "registry",
          receipt_methods: Iterable[str] = tuple(RECEIPT_METHODS), ingest_run_id: str = "synthetic") -> DataFrame:
    """bronze.pages rows of every public record received ``first..last`` (each method), rendered on executors."""
    from pyspark.sql import functions as F

    days = [first + timedelta(days=d) for d in range((last - first).days + 1)]
    work = [(day, method) for day in days for method in sorted(receipt_methods)]
    tasks = max(1, min(len(work), 2 * len(days) // 7 + 1))  # about a week of receipt days per task
    where = spark.createDataFrame(work, "receipt_date date, receipt_method string").repartition(tasks, "receipt_date")
    fetched = where.mapInArrow(lambda batches: _render_batches(seed, scale, profile, batches), bronze.FETCHED)
    timed = fetched.withColumn("fetched_at", F.to_timestamp("fetched_at")).withColumn("withdrawn_at", F.lit(None).cast("timestamp"))
    return bronze.page_rows(timed, ingest_run_id)


def write(spark: SparkSession, lakehouse_root: str, first: date, last: date, seed: int = 0, scale: float = 1.0,
          profile: str = "registry") -> int:
    """Append the synthetic pages of ``first..last`` to bronze.pages (created if missing) in one commit; the page count.

    The receipt dates must not be in bronze yet (it appends, it does not MERGE)."""
    ref = lakehouse.table_ref(bronze.PAGES, lakehouse_root)
    lakehouse.ensure_table(spark, bronze.PAGES, lakehouse_root)
    rows = pages(spark, first, last, seed, scale, profile, ingest_run_id=f"synthetic-{seed}")
    spark.sql(f"INSERT INTO {ref} SELECT * FROM {{rows}}", rows=rows)
    metrics = spark.sql(f"DESCRIBE HISTORY {ref} LIMIT 1").first()["operationMetrics"] or {}
    return int(metrics.get("numOutputRows", 0))
