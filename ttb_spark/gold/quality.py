"""Gold quality checks (the original pipeline's asset checks), run after every gold build.

Checks: unique TTB IDs in the consolidated table and the facts, every foreign key resolves,
dates within a sane range, approval on or after receipt, counts reconcile with silver, no
surrogate-key collisions, and the SCD type 2 invariants of ``dim_companies`` (unique natural
keys, exactly one current version per permit, versions that tile time without overlap). Each table's checks are computed in one aggregation (one Spark job),
then turned into :class:`CheckResult` rows; failing checks fetch a few example TTB IDs.
The gold stage MERGEs the results into ``gold.quality_checks`` (one row per run and check)
and fails the job when a blocking check failed (unless ``TTB_BLOCKING_QUALITY_CHECKS`` is false).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
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


def to_frame(spark: SparkSession, run_id: str, results: Iterable[CheckResult], scope: str) -> DataFrame:
    """Check results as gold.quality_checks rows."""
    now = datetime.now(timezone.utc)
    rows = [(run_id, r.name, now, r.table, r.blocking, r.passed, r.failing_rows, r.detail, scope) for r in results]
    return spark.createDataFrame(rows, QUALITY_CHECKS.schema)


def failures(results: Iterable[CheckResult], blocking_only: bool = True) -> list[CheckResult]:
    return [r for r in results if not r.passed and (r.blocking or not blocking_only)]
