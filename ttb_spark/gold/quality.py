"""Gold quality checks (the original pipeline's asset checks), run after every gold build, before publishing.

Checks: unique TTB IDs in the consolidated table and the facts, every foreign key resolves,
dates within a sane range, approval on or after receipt, counts reconcile with silver, no
surrogate-key collisions, and the SCD type 2 invariants of ``dim_companies`` (unique natural
keys, exactly one current version per permit, versions that tile time without overlap). Each table's checks are computed in one aggregation (one Spark job),
then turned into :class:`CheckResult` rows; failing checks fetch a few example TTB IDs.
Checks against sources the batch was not built from: bronze pages found vs gold COLAs per receipt
day (:func:`found_vs_gold`), dimension keys of the previously published state still there while
facts reference them (:func:`published_keys_kept`), freshness (:func:`freshness`) and the drift of
daily approvals (:func:`approval_drift`).
The gold stage MERGEs the results into ``gold.quality_checks`` (one row per run and check)
and, when a blocking check failed (unless ``TTB_BLOCKING_QUALITY_CHECKS`` is false), restores the
gold tables to their published state and fails the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Sequence

from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, LongType, StringType, StructType, TimestampType

from ttb_spark.lakehouse import TableSpec, column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

QUALITY_CHECKS = TableSpec(
    name="gold.quality_checks",
    comment="Results of the gold quality checks: one row per run and check (an audit log; blocking failures fail the job).",
    keys=("run_id", "check_name"),
    schema=StructType([
        column("run_id", StringType(), "the job run", False),
        column("check_name", StringType(), "the check, e.g. fk:gold.fact_products.company_key", False),
        column("checked_at", TimestampType(), "when the check ran (UTC)"),
        column("table_name", StringType(), "table checked"),
        column("blocking", BooleanType(), "a failure fails the job"),
        column("passed", BooleanType(), "the check passed"),
        column("failing_rows", LongType(), "rows that break the rule"),
        column("detail", StringType(), "what was checked and, on failure, example TTB IDs"),
        column("scope", StringType(), "receipt dates the check covered (first..last, count)"),
    ]),
)


class QualityCheckError(RuntimeError):
    """A blocking gold quality check failed."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    table: str
    blocking: bool
    failing_rows: int
    detail: str

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


@dataclass(frozen=True)
class ForeignKey:
    """``column`` of a fact must be a ``dim_key`` of ``dim`` (``dim_name`` for messages)."""

    column: str
    dim_name: str
    dim: DataFrame
    dim_key: str


def _examples(rows: DataFrame, limit: int = 5, column: str | Column = "ttb_id") -> str:
    """`` (e.g. a, b)``: a few values of ``column`` of ``rows``."""
    ids = [str(r[0]) for r in rows.select(column).limit(limit).collect()]
    return f" (e.g. {', '.join(ids)})" if ids else ""


def table_checks(
    table: str,
    df: DataFrame,
    foreign_keys: Sequence[ForeignKey] = (),
    date_columns: Sequence[str] = (),
    date_range: tuple[date, date] | None = None,
    approval_after_receipt: bool = False,
    unique: bool = True,
) -> tuple[list[CheckResult], int]:
    """Uniqueness of ttb_id (when ``unique``), foreign keys, date range and approval >= receipt
    for one table, in one aggregation. Returns the results and the table's row count."""
    joined = df
    orphan: list[Column] = []
    for i, fk in enumerate(foreign_keys):
        hit = f"_hit{i}"
        keys = fk.dim.select(F.col(fk.dim_key).alias(fk.column)).distinct().withColumn(hit, F.lit(True))
        joined = joined.join(F.broadcast(keys), fk.column, "left")
        orphan.append(F.col(fk.column).isNotNull() & F.col(hit).isNull())
    out_of_range = F.lit(False)
    if date_range is not None:
        lo, hi = date_range
        for c in date_columns:
            out_of_range = out_of_range | (F.col(c).isNotNull() & ((F.col(c) < F.lit(lo)) | (F.col(c) > F.lit(hi))))
    early = F.col("approval_date") < F.col("receipt_date") if approval_after_receipt else F.lit(False)

    def count_if(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0))

    aggs = [F.count("*").alias("rows"), F.countDistinct("ttb_id").alias("ids"), count_if(out_of_range).alias("range"), count_if(early).alias("early")]
    aggs += [count_if(cond).alias(f"orphans{i}") for i, cond in enumerate(orphan)]
    stats = joined.agg(*aggs).collect()[0]
    rows = int(stats["rows"])
    dupes = rows - int(stats["ids"])
    results = [CheckResult(f"unique_ttb_id:{table}", table, True, dupes, f"{rows} rows, {stats['ids']} distinct TTB IDs")] if unique else []
    for i, fk in enumerate(foreign_keys):
        n = int(stats[f"orphans{i}"] or 0)
        detail = f"{fk.column} -> {fk.dim_name}.{fk.dim_key}: {n} unresolved (null = unknown, allowed)"
        if n:
            detail += _examples(joined.where(orphan[i]))
        results.append(CheckResult(f"fk:{table}.{fk.column}", table, True, n, detail))
    if date_range is not None:
        n = int(stats["range"] or 0)
        detail = f"{', '.join(date_columns)} within {date_range[0]}..{date_range[1]}: {n} outside"
        results.append(CheckResult(f"dates_in_range:{table}", table, False, n, detail + (_examples(df.where(out_of_range)) if n else "")))
    if approval_after_receipt:
        n = int(stats["early"] or 0)
        detail = f"approval_date before receipt_date: {n}" + (_examples(df.where(early)) if n else "")
        results.append(CheckResult(f"approval_after_receipt:{table}", table, False, n, detail))
    return results, rows


def silver_counts(details: DataFrame, certificates: DataFrame) -> tuple[int, int]:
    """(distinct TTB IDs over both silver tables, certificate rows) of the batch, in one job."""
    tagged = details.select("ttb_id", F.lit(0).alias("_cert")).unionByName(certificates.select("ttb_id", F.lit(1).alias("_cert")))
    row = tagged.agg(F.countDistinct("ttb_id").alias("ids"), F.sum("_cert").alias("certs")).collect()[0]
    return int(row["ids"]), int(row["certs"] or 0)


def counts_reconcile(silver_ids: int, silver_certificates: int, consolidated: int, products: int, certificates: int) -> CheckResult:
    """TTB IDs in silver = consolidated rows = fact_products rows; silver certificates = fact_certificates rows."""
    gap = abs(silver_ids - consolidated) + abs(consolidated - products) + abs(silver_certificates - certificates)
    detail = (
        f"silver TTB IDs {silver_ids}, gold.ttb_consolidated {consolidated}, gold.fact_products {products}; "
        f"silver certificates {silver_certificates}, gold.fact_certificates {certificates}"
    )
    return CheckResult("counts_reconcile_with_silver", "gold.fact_products", True, gap, detail)


def surrogate_keys_unique(table: str, dim: DataFrame, key: str, natural_key: Sequence[str]) -> CheckResult:
    """One surrogate key per natural key and one natural key per surrogate key (no 64-bit collision)."""
    nk = F.to_json(F.struct(*natural_key))
    row = dim.agg(
        F.countDistinct(key).alias("keys"), F.countDistinct(nk).alias("naturals"), F.countDistinct(F.col(key), nk).alias("pairs")
    ).collect()[0]
    n = (row["pairs"] - row["keys"]) + (row["pairs"] - row["naturals"])
    detail = f"{key} <-> ({', '.join(natural_key)}): {row['keys']} keys, {row['naturals']} natural keys, {row['pairs']} pairs"
    return CheckResult(f"surrogate_keys_unique:{table}.{key}", table, True, int(n), detail)


def natural_keys_unique(table: str, df: DataFrame, keys: Sequence[str]) -> CheckResult:
    """At most one row per natural key (e.g. dim_companies' (permit_number, valid_from))."""
    row = df.agg(F.count("*").alias("rows"), F.countDistinct(F.to_json(F.struct(*keys))).alias("keys")).collect()[0]
    detail = f"({', '.join(keys)}): {row['rows']} rows, {row['keys']} distinct"
    return CheckResult(f"natural_keys_unique:{table}", table, True, int(row["rows"] - row["keys"]), detail)


def scd2_one_current(table: str, dim: DataFrame, entity: str) -> CheckResult:
    """Exactly one ``is_current`` row per ``entity`` of an SCD type 2 dimension; failing rows: entities with none or several."""
    per = dim.groupBy(entity).agg(F.sum(F.when(F.col("is_current"), 1).otherwise(0)).alias("_current"))
    bad = per.where(F.col("_current") != 1)
    n = bad.count()
    detail = f"{entity} without exactly one current version: {n}" + (_examples(bad, column=entity) if n else "")
    return CheckResult(f"scd2_one_current:{table}", table, True, n, detail)


def scd2_non_overlapping(table: str, dim: DataFrame, entity: str) -> CheckResult:
    """Versions of each ``entity`` tile time: valid_from < valid_until, each version's valid_until is the next one's
    valid_from (no overlap, no gap), only the last is open (null valid_until) and it alone is current."""
    from pyspark.sql import Window

    order = Window.partitionBy(entity).orderBy("valid_from")
    nxt = F.lead("valid_from").over(order)
    broken = (
        ~F.col("valid_until").eqNullSafe(nxt)
        | (F.col("valid_until") <= F.col("valid_from"))
        | F.col("valid_from").isNull()
        | ~F.col("is_current").eqNullSafe(F.col("valid_until").isNull())
    )
    bad = dim.withColumn("_broken", broken).where("_broken")
    n = bad.count()
    detail = f"versions overlapping, leaving a gap or wrongly open/current: {n}"
    if n:
        detail += _examples(bad, column=F.concat_ws("@", entity, "valid_from"))
    return CheckResult(f"scd2_non_overlapping:{table}", table, True, n, detail)


def found_vs_gold(pages: DataFrame, rejected: DataFrame, withdrawn: DataFrame, consolidated: DataFrame) -> CheckResult:
    """Per receipt day, the TTB IDs with a bronze page that is neither rejected nor withdrawn (as silver
    recorded them) = the COLAs in gold.ttb_consolidated. ``pages``, ``rejected``, ``withdrawn``:
    (ttb_id, data_type, receipt_date) of the days checked; ``consolidated``: (ttb_id, receipt_date)."""
    accounted = rejected.select("ttb_id", "data_type").unionByName(withdrawn.select("ttb_id", "data_type"))
    live = pages.select("ttb_id", "data_type", "receipt_date").join(F.broadcast(accounted), ["ttb_id", "data_type"], "left_anti")
    tagged = live.select("receipt_date", "ttb_id", F.lit(True).alias("_found")).unionByName(
        consolidated.select("receipt_date", "ttb_id", F.lit(False).alias("_found"))
    )
    per_day = tagged.groupBy("receipt_date").agg(
        F.countDistinct(F.when(F.col("_found"), F.col("ttb_id"))).alias("found"), F.count(F.when(~F.col("_found"), 1)).alias("gold")
    ).collect()
    off = sorted((r for r in per_day if r["found"] != r["gold"]), key=lambda r: r["receipt_date"])
    detail = (
        f"bronze pages found, less rejects and withdrawals: {sum(r['found'] for r in per_day)} TTB IDs; "
        f"gold.ttb_consolidated: {sum(r['gold'] for r in per_day)}"
    )
    if off:
        detail += "; days that differ (found/gold): " + ", ".join(f"{r['receipt_date']} {r['found']}/{r['gold']}" for r in off[:10])
    return CheckResult("found_vs_gold_per_day", "gold.ttb_consolidated", True, sum(abs(r["found"] - r["gold"]) for r in off), detail)


@dataclass(frozen=True)
class DimensionKeys:
    """A dimension's surrogate key as published before the run (``before``; None: nothing published)
    and now (``after``), with the fact columns (``table``, frame, column) that reference it."""

    dim_name: str
    key: str
    before: DataFrame | None
    after: DataFrame
    references: Sequence[tuple[str, DataFrame, str]]


def published_keys_kept(dimensions: Sequence[DimensionKeys]) -> list[CheckResult]:
    """Referential integrity against the published state: a dimension key published before the run that
    the run removed must not be referenced by any fact row (the run's facts are checked by the ``fk:``
    checks; this covers every fact row the run did not rebuild). The removed keys of all dimensions are
    found in one job; facts are read only when some key was removed."""
    spark = dimensions[0].after.sparkSession
    gone: DataFrame | None = None
    for i, d in enumerate(dimensions):
        if d.before is None:
            continue
        removed = d.before.select(F.col(d.key).cast("long").alias("key")).distinct().join(
            d.after.select(F.col(d.key).cast("long").alias("key")), "key", "left_anti"
        ).withColumn("dim", F.lit(i))
        gone = removed if gone is None else gone.unionByName(removed)
    removed_keys: dict[int, list[int]] = {}
    for r in (gone.collect() if gone is not None else []):
        removed_keys.setdefault(r["dim"], []).append(r["key"])
    results = []
    for i, d in enumerate(dimensions):
        keys = removed_keys.get(i, [])
        name = f"fk_published:{d.dim_name}.{d.key}"
        if d.before is None:
            results.append(CheckResult(name, d.dim_name, True, 0, "nothing published before this run"))
            continue
        referencing = 0
        examples = ""
        if keys:
            lost = spark.createDataFrame([(k,) for k in keys], "key long")
            for table, facts, col in d.references:
                hits = facts.join(F.broadcast(lost), F.col(col).cast("long") == F.col("key"), "left_semi")
                n = hits.count()
                referencing += n
                if n and not examples:
                    examples = f" in {table}.{col}" + _examples(hits)
        detail = f"{len(keys)} published {d.key} value(s) removed by this run; {referencing} fact row(s) still reference them{examples}"
        results.append(CheckResult(name, d.dim_name, True, referencing, detail))
    return results


def freshness(run_date: date, newest_approval: date | None, newest_ingest: date | None, warn_days: int, block_days: int | None) -> CheckResult:
    """Days from gold's newest approval and newest ingest (page fetch) to the run's date, the larger of the two:
    fails beyond ``warn_days`` (a warning), blocking beyond ``block_days`` (never when None)."""
    lags = [(run_date - d).days for d in (newest_approval, newest_ingest) if d is not None]
    lag = max(lags, default=None)
    blocking = block_days is not None and (lag is None or lag > block_days)
    limit = block_days if blocking else warn_days
    over = 1 if lag is None else max(0, lag - limit)
    detail = (
        f"run date {run_date}: newest approval {newest_approval}, newest ingest {newest_ingest}; lag "
        f"{'unknown (nothing in gold)' if lag is None else f'{lag} day(s)'}, warn after {warn_days}, "
        f"block after {'never' if block_days is None else block_days}"
    )
    return CheckResult("freshness:gold.ttb_consolidated", "gold.ttb_consolidated", blocking, over, detail)


def approval_drift(per_day: dict[date, int], baseline_days: int, ratio: float, blocking: bool, min_baseline: int = 5) -> CheckResult:
    """The newest approval day's count against the mean of the approval days (days with any approval: the
    registry approves on working days) in the ``baseline_days`` before it: outside [mean / ratio, mean * ratio]
    fails. Passes, saying so, when fewer than ``min_baseline`` such days are known."""
    name, table = "approval_drift:gold.ttb_consolidated", "gold.ttb_consolidated"
    if not per_day:
        return CheckResult(name, table, blocking, 0, "no approvals in gold yet")
    day = max(per_day)
    base = [n for d, n in per_day.items() if day - timedelta(days=baseline_days) <= d < day and n]
    if len(base) < min_baseline:
        return CheckResult(name, table, blocking, 0, f"{day}: {per_day[day]} approvals; baseline of {len(base)} approval day(s) too short to judge")
    mean = sum(base) / len(base)
    count = per_day[day]
    off = count < mean / ratio or count > mean * ratio
    detail = (
        f"{day}: {count} approvals vs a mean of {mean:.1f} over {len(base)} approval day(s) in the {baseline_days} days before "
        f"(allowed {mean / ratio:.1f}..{mean * ratio:.1f})"
    )
    return CheckResult(name, table, blocking, max(1, abs(count - round(mean))) if off else 0, detail)


def to_frame(spark: SparkSession, run_id: str, results: Iterable[CheckResult], scope: str) -> DataFrame:
    """Check results as gold.quality_checks rows."""
    now = datetime.now(timezone.utc)
    rows = [(run_id, r.name, now, r.table, r.blocking, r.passed, r.failing_rows, r.detail, scope) for r in results]
    return spark.createDataFrame(rows, QUALITY_CHECKS.schema)


def failures(results: Iterable[CheckResult], blocking_only: bool = True) -> list[CheckResult]:
    return [r for r in results if not r.passed and (r.blocking or not blocking_only)]
