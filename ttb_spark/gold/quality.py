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
The gold stage MERGEs the results into ``gold.quality_checks`` (one row per run, receipt-date scope and check)
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
    comment="Results of the gold quality checks: one row per run, receipt-date scope and check (a run of several chunks checks each; an audit log; blocking failures fail the job).",
    keys=("run_id", "scope", "check_name"),
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


@dataclass(frozen=True)
class TableCheck:
    """The checks of one table: uniqueness of ttb_id (when ``unique``), ``foreign_keys``, ``date_columns``
    within ``date_range`` and approval >= receipt (when ``approval_after_receipt``)."""

    table: str
    df: DataFrame
    foreign_keys: Sequence[ForeignKey] = ()
    date_columns: Sequence[str] = ()
    date_range: tuple[date, date] | None = None
    approval_after_receipt: bool = False
    unique: bool = True


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0))


def tables_checks(checks: Sequence[TableCheck]) -> list[tuple[list[CheckResult], int]]:
    """Each table's checks, all computed in one Spark job (the tables' one-row aggregations unioned, so a
    dimension every table joins is read and broadcast once); per table, its results and its row count."""
    parts: list[DataFrame] = []
    shapes = []
    for i, c in enumerate(checks):
        joined = c.df
        orphan: list[Column] = []
        for j, fk in enumerate(c.foreign_keys):
            hit = f"_hit{j}"
            keys = fk.dim.select(F.col(fk.dim_key).alias(fk.column)).distinct().withColumn(hit, F.lit(True))
            joined = joined.join(F.broadcast(keys), fk.column, "left")
            orphan.append(F.col(fk.column).isNotNull() & F.col(hit).isNull())
        out_of_range = F.lit(False)
        if c.date_range is not None:
            lo, hi = c.date_range
            for col in c.date_columns:
                out_of_range = out_of_range | (F.col(col).isNotNull() & ((F.col(col) < F.lit(lo)) | (F.col(col) > F.lit(hi))))
        early = F.col("approval_date") < F.col("receipt_date") if c.approval_after_receipt else F.lit(False)
        orphans = F.array(*[_count_if(o).cast("long") for o in orphan]) if orphan else F.array().cast("array<bigint>")
        parts.append(joined.agg(
            F.lit(i).alias("table"), F.count("*").alias("rows"), F.countDistinct("ttb_id").alias("ids"),
            _count_if(out_of_range).cast("long").alias("range"), _count_if(early).cast("long").alias("early"), orphans.alias("orphans"),
        ))  # fmt: skip
        shapes.append((joined, orphan, out_of_range, early))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    stats = {r["table"]: r for r in union.collect()}
    out = []
    for i, c in enumerate(checks):
        joined, orphan, out_of_range, early = shapes[i]
        row = stats[i]
        rows = int(row["rows"])
        results = []
        if c.unique:
            results.append(CheckResult(f"unique_ttb_id:{c.table}", c.table, True, rows - int(row["ids"]), f"{rows} rows, {row['ids']} distinct TTB IDs"))
        for j, fk in enumerate(c.foreign_keys):
            n = int(row["orphans"][j] or 0)
            detail = f"{fk.column} -> {fk.dim_name}.{fk.dim_key}: {n} unresolved (null = unknown, allowed)"
            results.append(CheckResult(f"fk:{c.table}.{fk.column}", c.table, True, n, detail + (_examples(joined.where(orphan[j])) if n else "")))
        if c.date_range is not None:
            n = int(row["range"] or 0)
            detail = f"{', '.join(c.date_columns)} within {c.date_range[0]}..{c.date_range[1]}: {n} outside"
            results.append(CheckResult(f"dates_in_range:{c.table}", c.table, False, n, detail + (_examples(c.df.where(out_of_range)) if n else "")))
        if c.approval_after_receipt:
            n = int(row["early"] or 0)
            detail = f"approval_date before receipt_date: {n}" + (_examples(c.df.where(early)) if n else "")
            results.append(CheckResult(f"approval_after_receipt:{c.table}", c.table, False, n, detail))
        out.append((results, rows))
    return out


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


def dimension_checks(
    table: str, dim: DataFrame, natural_key: Sequence[str] = (), surrogates: Sequence[tuple[str, Sequence[str]]] = (),
    scd2_entity: str | None = None,
) -> list[CheckResult]:  # fmt: skip
    """A dimension's checks in one aggregation: at most one row per ``natural_key`` (when given); per
    (surrogate key, its natural key) of ``surrogates``, one natural key per surrogate key and one surrogate key
    per natural key (no 64-bit collision); and with ``scd2_entity``, the SCD type 2 invariants: exactly one
    ``is_current`` version per entity, and versions that tile time (valid_from < valid_until, each version's
    valid_until the next one's valid_from, only the last open and it alone current)."""
    from pyspark.sql import Window

    df = dim
    aggs: list[Column] = [F.count("*").alias("rows")]
    if natural_key:
        aggs.append(F.countDistinct(F.to_json(F.struct(*natural_key))).alias("naturals"))
    if scd2_entity:
        versions = Window.partitionBy(scd2_entity)
        nxt = F.lead("valid_from").over(versions.orderBy("valid_from"))
        broken = (
            ~F.col("valid_until").eqNullSafe(nxt)
            | (F.col("valid_until") <= F.col("valid_from"))
            | F.col("valid_from").isNull()
            | ~F.col("is_current").eqNullSafe(F.col("valid_until").isNull())
        )
        df = df.withColumn("_currents", _count_if(F.col("is_current")).over(versions)).withColumn("_broken", broken)
        aggs += [F.countDistinct(F.when(F.col("_currents") != 1, F.col(scd2_entity))).alias("not_one_current"), _count_if(F.col("_broken")).alias("broken")]
    for i, (key, nk) in enumerate(surrogates):
        natural = F.to_json(F.struct(*nk))
        aggs += [F.countDistinct(key).alias(f"keys{i}"), F.countDistinct(natural).alias(f"nk{i}"), F.countDistinct(F.col(key), natural).alias(f"pairs{i}")]
    row = df.agg(*aggs).collect()[0]
    results = []
    if scd2_entity:
        n = int(row["not_one_current"])
        bad = df.where(F.col("_currents") != 1).select(scd2_entity).distinct()
        detail = f"{scd2_entity} without exactly one current version: {n}" + (_examples(bad, column=scd2_entity) if n else "")
        results.append(CheckResult(f"scd2_one_current:{table}", table, True, n, detail))
        n = int(row["broken"] or 0)
        detail = f"versions overlapping, leaving a gap or wrongly open/current: {n}"
        if n:
            detail += _examples(df.where("_broken"), column=F.concat_ws("@", scd2_entity, "valid_from"))
        results.append(CheckResult(f"scd2_non_overlapping:{table}", table, True, n, detail))
    if natural_key:
        detail = f"({', '.join(natural_key)}): {row['rows']} rows, {row['naturals']} distinct"
        results.append(CheckResult(f"natural_keys_unique:{table}", table, True, int(row["rows"] - row["naturals"]), detail))
    for i, (key, nk) in enumerate(surrogates):
        keys, naturals, pairs = row[f"keys{i}"], row[f"nk{i}"], row[f"pairs{i}"]
        detail = f"{key} <-> ({', '.join(nk)}): {keys} keys, {naturals} natural keys, {pairs} pairs"
        results.append(CheckResult(f"surrogate_keys_unique:{table}.{key}", table, True, int((pairs - keys) + (pairs - naturals)), detail))
    return results


def images_within_labels(images: DataFrame, certificates: DataFrame) -> CheckResult:
    """gold.fact_label_images against gold.fact_certificates: every COLA with images has a certificate, and no more
    images than the labels it names (one job; a few offending TTB IDs named)."""
    per_cola = images.groupBy("ttb_id").agg(F.count("*").alias("images"))
    joined = per_cola.join(certificates.select("ttb_id", "label_image_count"), "ttb_id", "left")
    over = joined.where(F.col("label_image_count").isNull() | (F.col("images") > F.col("label_image_count")))
    row = over.agg(F.count("*").alias("n"), F.slice(F.sort_array(F.collect_list("ttb_id")), 1, 5).alias("ids")).collect()[0]
    n = int(row["n"])
    detail = f"COLAs with more images than their certificate's labels, or with no certificate: {n}"
    return CheckResult("images_within_labels:gold.fact_label_images", "gold.fact_label_images", True, n,
                       detail + (f" (e.g. {', '.join(row['ids'])})" if n else ""))


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
