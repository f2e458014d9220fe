"""Gold quality checks (the original pipeline's asset checks), run after every gold build.

Each check is a function of DataFrames returning a :class:`CheckResult`; :func:`run_checks`
evaluates them for the batch's receipt dates, and the gold stage MERGEs the results into
``gold.quality_checks`` (one row per run and check) and fails the job when a blocking check
failed (unless ``TTB_ANALYTICS_BLOCKING_QUALITY_CHECKS`` is false).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Iterable

from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, LongType, StringType, StructType, TimestampType

from ttb_spark.lakehouse import TableSpec, column

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QUALITY_CHECKS = TableSpec(
    name="gold.quality_checks",
    comment="Results of the gold quality checks: one row per run and check (an audit log; blocking failures fail the job).",
    keys=("run_id", "check_name"),
    schema=StructType([
        column("run_id", StringType(), "the job run", False),
        column("check_name", StringType(), "the check, e.g. unique_ttb_id:gold.fact_products", False),
        column("checked_at", TimestampType(), "when the check ran (UTC)"),
        column("table_name", StringType(), "table checked"),
        column("blocking", BooleanType(), "a failure fails the job"),
        column("passed", BooleanType(), "the check passed"),
        column("failing_rows", LongType(), "rows that break the rule"),
        column("detail", StringType(), "what was checked and, on failure, examples"),
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


def _examples(df: DataFrame, column_name: str, limit: int = 5) -> str:
    return ", ".join(str(r[0]) for r in df.select(column_name).limit(limit).collect())


def unique_ttb_ids(table: str, df: DataFrame) -> CheckResult:
    """Every TTB ID appears once."""
    dupes = df.groupBy("ttb_id").count().where(F.col("count") > 1)
    n = dupes.count()
    return CheckResult(f"unique_ttb_id:{table}", table, True, n, f"TTB IDs present more than once: {n} {_examples(dupes, 'ttb_id') if n else ''}".strip())


def foreign_key_resolves(table: str, facts: DataFrame, fk: str, dim_name: str, dim: DataFrame, dim_key: str) -> CheckResult:
    """Every non-null ``fk`` of ``facts`` is a ``dim_key`` of ``dim`` (null means unknown, allowed)."""
    orphans = facts.where(F.col(fk).isNotNull()).join(dim.select(F.col(dim_key).alias(fk)).distinct(), fk, "left_anti")
    n = orphans.count()
    detail = f"{fk} -> {dim_name}.{dim_key}: {n} unresolved" + (f" (e.g. TTB IDs {_examples(orphans, 'ttb_id')})" if n else "")
    return CheckResult(f"fk:{table}.{fk}", table, True, n, detail)


def dates_in_range(table: str, df: DataFrame, columns: Iterable[str], earliest: date, latest: date) -> CheckResult:
    """Every date column is within [earliest, latest] (non-blocking: the registry's own data)."""
    bad = F.lit(False)
    for c in columns:
        bad = bad | (F.col(c).isNotNull() & ((F.col(c) < F.lit(earliest)) | (F.col(c) > F.lit(latest))))
    rows = df.where(bad)
    n = rows.count()
    return CheckResult(
        f"dates_in_range:{table}", table, False, n,
        f"{', '.join(columns)} within {earliest}..{latest}: {n} outside" + (f" (e.g. {_examples(rows, 'ttb_id')})" if n else ""),
    )


def approval_not_before_receipt(table: str, df: DataFrame) -> CheckResult:
    """approval_date >= receipt_date (non-blocking)."""
    rows = df.where(F.col("approval_date") < F.col("receipt_date"))
    n = rows.count()
    return CheckResult(f"approval_after_receipt:{table}", table, False, n, f"approval before receipt: {n}" + (f" (e.g. {_examples(rows, 'ttb_id')})" if n else ""))


def counts_reconcile(silver_ids: DataFrame, consolidated: DataFrame, products: DataFrame, certificates: DataFrame, silver_certificates: DataFrame) -> CheckResult:
    """TTB IDs in silver = consolidated rows = fact_products rows; certificates in silver = fact_certificates rows."""
    n_silver, n_cons, n_prod = silver_ids.distinct().count(), consolidated.count(), products.count()
    n_scert, n_fcert = silver_certificates.count(), certificates.count()
    gap = abs(n_silver - n_cons) + abs(n_cons - n_prod) + abs(n_scert - n_fcert)
    detail = (
        f"silver TTB IDs {n_silver}, gold.ttb_consolidated {n_cons}, gold.fact_products {n_prod}; "
        f"silver certificates {n_scert}, gold.fact_certificates {n_fcert}"
    )
    return CheckResult("counts_reconcile_with_silver", "gold.fact_products", True, gap, detail)


def surrogate_keys_unique(table: str, dim: DataFrame, key: str, natural_key: list[str]) -> CheckResult:
    """No two natural keys share a surrogate key (a 64-bit hash collision) and no natural key has two."""
    nk = F.to_json(F.struct(*natural_key))
    per_key = dim.groupBy(key).agg(F.countDistinct(nk).alias("n")).where(F.col("n") > 1)
    per_nk = dim.groupBy(nk.alias("_nk")).agg(F.countDistinct(key).alias("n")).where(F.col("n") > 1)
    n = per_key.count() + per_nk.count()
    return CheckResult(f"surrogate_keys_unique:{table}", table, True, n, f"{key} <-> ({', '.join(natural_key)}): {n} collisions")


def to_frame(spark: SparkSession, run_id: str, results: list[CheckResult], scope: str) -> DataFrame:
    """Check results as gold.quality_checks rows."""
    now = datetime.now(timezone.utc)
    rows = [(run_id, r.name, now, r.table, r.blocking, r.passed, r.failing_rows, r.detail, scope) for r in results]
    return spark.createDataFrame(rows, QUALITY_CHECKS.schema)


def failures(results: Iterable[CheckResult], blocking_only: bool = True) -> list[CheckResult]:
    return [r for r in results if not r.passed and (r.blocking or not blocking_only)]
