"""The ``gold`` stage: silver -> consolidated COLAs, reference data, dimensions, facts, quality checks.

Tables (each declared next to its transform):

* ``gold.ttb_consolidated`` (:mod:`.consolidated`) - one row per TTB ID;
* ``gold.ttb_reference_data`` (:mod:`ttb_spark.reference`) - seeded on first use;
* ``gold.dim_dates``, ``gold.dim_companies``, ``gold.dim_locations``, ``gold.dim_product_types``
  (:mod:`.dimensions`);
* ``gold.fact_products``, ``gold.fact_certificates``, ``gold.fact_status_changes`` (:mod:`.facts`);
* ``gold.quality_checks`` (:mod:`.quality`).

Every write is a :func:`ttb_spark.lakehouse.merge_upsert`; tables partitioned by receipt date are
MERGEd with the batch's receipt dates as literal partition predicates. A rerun over the same
silver rows changes nothing (rows are rewritten only when their content hash changes), except
that ``gold.quality_checks`` logs the run's checks.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from ttb_spark import lakehouse, reference
from ttb_spark.gold import quality
from ttb_spark.gold.consolidated import CONSOLIDATED, consolidate
from ttb_spark.gold.dimensions import (
    DIM_COMPANIES,
    DIM_DATES,
    DIM_LOCATIONS,
    DIM_PRODUCT_TYPES,
    dates_of,
    dim_companies,
    dim_dates,
    dim_locations,
    dim_product_types,
    federal_holidays,
)
from ttb_spark.gold.facts import (
    FACT_CERTIFICATES,
    FACT_PRODUCTS,
    FACT_STATUS_CHANGES,
    changed_or_in_batch,
    fact_certificates,
    fact_products,
    status_changes,
    with_flags,
)
from ttb_spark.gold.quality import QUALITY_CHECKS, QualityCheckError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.runner import Scope
    from ttb_spark.settings import Settings

TABLES = (
    CONSOLIDATED, DIM_DATES, DIM_COMPANIES, DIM_LOCATIONS, DIM_PRODUCT_TYPES,
    FACT_PRODUCTS, FACT_CERTIFICATES, FACT_STATUS_CHANGES, QUALITY_CHECKS,
)  # fmt: skip
HOLIDAY_YEARS_AHEAD = 10  # holidays are computed up to this many years ahead (expiration dates)
__all__ = ["run", "build", "read_silver", "TABLES", "QualityCheckError"]


def _silver_table(spark: SparkSession, root: str, name: str) -> DataFrame:
    """A silver table by its TableSpec."""
    from ttb_spark import silver  # noqa: F401  (registers the silver TableSpecs)

    return lakehouse.read_table(spark, lakehouse.REGISTRY[f"silver.{name}"], root)


def read_silver(spark: SparkSession, root: str, scope: Scope) -> tuple[DataFrame, DataFrame]:
    """The scope's silver details and certificates (receipt-date range x receipt methods)."""
    def scoped(df: DataFrame) -> DataFrame:
        in_range = F.col("receipt_date").between(F.lit(scope.start), F.lit(scope.end))
        return df.where(in_range & F.col("receipt_method").isin(list(scope.receipt_methods)))

    return scoped(_silver_table(spark, root, "cola_details")), scoped(_silver_table(spark, root, "cola_certificates"))


def _merge(
    counts: dict[str, int], name: str, spark: SparkSession, df: DataFrame, spec: lakehouse.TableSpec, root: str,
    prune: dict[str, list[date]] | None = None, delete_missing_in: dict[str, list[str]] | None = None,
) -> None:  # fmt: skip
    """MERGE ``df`` into ``spec`` (via lakehouse.merge_upsert), skipped when it would change nothing.

    The check (rows whose key + row_hash are not stored, and with ``delete_missing_in`` stored
    rows the source lacks) is one cheap job; a MERGE that changes nothing would still scan,
    join and commit. A rerun over unchanged silver thus writes nothing.
    """
    zero = {"inserted": 0, "updated": 0, "deleted": 0}
    if lakehouse.table_exists(spark, spec, root):
        source = lakehouse.conform(df, spec)
        stored = lakehouse.read_table(spark, spec, root)
        for column, values in (prune or {}).items():
            stored = stored.where(F.col(column).isin(list(values)))
        keyed = [*spec.keys, lakehouse.ROW_HASH]
        pending = source.select(*keyed).join(stored.select(*keyed), keyed, "left_anti")
        if delete_missing_in is not None:
            scoped = stored
            for column, values in delete_missing_in.items():
                scoped = scoped.where(F.col(column).isin(list(values)))
            pending = pending.unionByName(scoped.select(*keyed).join(source.select(*spec.keys), list(spec.keys), "left_anti"))
        if pending.isEmpty():
            counts.update({f"{name}_{k}": v for k, v in zero.items()})
            return
    result = lakehouse.merge_upsert(spark, df, spec, root, prune=prune, delete_missing_in=delete_missing_in)
    counts.update({f"{name}_{k}": v for k, v in result.items()})


def _in_dates(df: DataFrame, dates: list[date]) -> DataFrame:
    return df.where(F.col("receipt_date").isin(dates))


def run(spark: SparkSession, settings: Settings, scope: Scope) -> dict[str, int]:
    """The ``gold`` stage: build every gold table from the scope's silver rows."""
    details, certificates = read_silver(spark, settings.pipeline.lakehouse_root, scope)
    return build(spark, settings, scope, details, certificates)


def build(spark: SparkSession, settings: Settings, scope: Scope, details: DataFrame, certificates: DataFrame) -> dict[str, int]:
    """Build every gold table from silver-shaped ``details`` / ``certificates`` rows (one batch).

    Raises :class:`QualityCheckError` after recording the checks when a blocking one failed.
    """
    root = settings.pipeline.lakehouse_root
    counts: dict[str, int] = {}
    for k, v in reference.ensure_seeded(spark, settings).items():
        counts[f"reference_{k}"] = v
    ref = reference.read(spark, settings).persist()
    batch = consolidate(details, certificates, ref, settings.consolidation.prefer_certificate_codes).persist()
    try:
        per_day = batch.groupBy("receipt_date").count().collect()
        dates = sorted(r["receipt_date"] for r in per_day)
        counts["colas"] = sum(r["count"] for r in per_day)
        if not dates:
            return counts
        prune = {"receipt_date": dates}
        stored = _in_dates(lakehouse.read_table(spark, CONSOLIDATED, root), dates)
        # materialised now: ``stored`` is re-read (new version) if recomputed after the MERGE below
        changes = status_changes(stored, batch).localCheckpoint()
        _merge(counts, "status_changes", spark, changes, FACT_STATUS_CHANGES, root, prune=prune)
        _merge(counts, "consolidated", spark, batch, CONSOLIDATED, root, prune=prune)
        _build_dimensions_and_facts(spark, settings, scope, batch, ref, changes, dates, counts)
        changes.unpersist()
    finally:
        batch.unpersist()
        ref.unpersist()
    results = check(spark, settings, scope, dates, details, certificates)
    lakehouse.merge_upsert(spark, quality.to_frame(spark, scope.run_id, results, _scope_text(dates)), QUALITY_CHECKS, root)
    counts["checks_passed"] = sum(r.passed for r in results)
    counts["checks_failed"] = sum(not r.passed for r in results)
    failed = quality.failures(results)
    if failed and settings.analytics.blocking_quality_checks:
        raise QualityCheckError("blocking gold quality checks failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed))
    return counts


def _build_dimensions_and_facts(
    spark: SparkSession, settings: Settings, scope: Scope, batch: DataFrame, ref: DataFrame,
    changes: DataFrame, dates: list[date], counts: dict[str, int],
) -> None:  # fmt: skip
    root = settings.pipeline.lakehouse_root
    permits = batch.where(F.col("permit_number").isNotNull()).select("permit_number").distinct().persist()
    permit_list = [r[0] for r in permits.collect()]
    history = (
        lakehouse.read_table(spark, CONSOLIDATED, root)
        .select(*batch.columns)
        .join(F.broadcast(permits), "permit_number", "left_semi")
        .unionByName(batch.where(F.col("permit_number").isNull()))
        .persist()
    )
    stored_companies = lakehouse.read_table(spark, DIM_COMPANIES, root).join(F.broadcast(permits), "permit_number", "left_semi")
    companies = dim_companies(history, stored_companies).localCheckpoint()
    _merge(counts, "dim_companies", spark, companies, DIM_COMPANIES, root, delete_missing_in={"permit_number": permit_list})
    _merge(counts, "dim_locations", spark, dim_locations(batch, ref), DIM_LOCATIONS, root)
    _merge(counts, "dim_product_types", spark, dim_product_types(batch, ref), DIM_PRODUCT_TYPES, root)

    stored_facts = lakehouse.read_table(spark, FACT_PRODUCTS, root).join(F.broadcast(permits), "permit_number", "left_semi")
    products = changed_or_in_batch(fact_products(with_flags(history)), batch, stored_facts).localCheckpoint()
    fact_dates = sorted(r[0] for r in products.select("receipt_date").distinct().collect())
    _merge(counts, "fact_products", spark, products, FACT_PRODUCTS, root, prune={"receipt_date": fact_dates})
    certs = fact_certificates(batch)
    _merge(counts, "fact_certificates", spark, certs, FACT_CERTIFICATES, root, prune={"receipt_date": dates})

    calendar = dates_of([
        (products, ("receipt_date", "application_date", "approval_date")),
        (certs, ("application_date", "issued_date", "expiration_date")),
        (companies, ("valid_from", "valid_until", "first_seen", "last_seen")),
        (changes, ("observed_at",)),
    ])
    years = range(settings.analytics.min_valid_date.year, date.today().year + HOLIDAY_YEARS_AHEAD + 1)
    _merge(counts, "dim_dates", spark, dim_dates(calendar, federal_holidays(spark, years)), DIM_DATES, root)
    for df in (history, permits):
        df.unpersist()


def check(
    spark: SparkSession, settings: Settings, scope: Scope, dates: list[date], details: DataFrame, certificates: DataFrame
) -> list[quality.CheckResult]:
    """The quality checks over the batch's receipt dates (and the whole of each dimension)."""
    root = settings.pipeline.lakehouse_root

    def read(spec: lakehouse.TableSpec) -> DataFrame:
        return lakehouse.read_table(spark, spec, root)

    methods = list(scope.receipt_methods)
    cons = _in_dates(read(CONSOLIDATED), dates).where(F.col("receipt_method").isin(methods))
    products = _in_dates(read(FACT_PRODUCTS), dates).where(F.col("receipt_method").isin(methods))
    certs = _in_dates(read(FACT_CERTIFICATES), dates).join(cons.select("ttb_id"), "ttb_id", "left_semi")
    changes = _in_dates(read(FACT_STATUS_CHANGES), dates)
    dates_dim, companies, locations, types = (read(s) for s in (DIM_DATES, DIM_COMPANIES, DIM_LOCATIONS, DIM_PRODUCT_TYPES))

    def fk(column: str, spec: lakehouse.TableSpec, dim: DataFrame, key: str) -> quality.ForeignKey:
        return quality.ForeignKey(column, spec.name, dim, key)

    def day(column: str) -> quality.ForeignKey:
        return fk(column, DIM_DATES, dates_dim, "date_key")

    shared = [
        fk("company_key", DIM_COMPANIES, companies, "company_key"),
        fk("product_type_key", DIM_PRODUCT_TYPES, types, "product_type_key"),
        fk("origin_location_key", DIM_LOCATIONS, locations, "location_key"),
    ]
    window = (settings.analytics.min_valid_date, date.today() + timedelta(days=1))
    results, n_cons = quality.table_checks(CONSOLIDATED.name, cons)
    found, n_products = quality.table_checks(
        FACT_PRODUCTS.name, products,
        [*shared, fk("applicant_location_key", DIM_LOCATIONS, locations, "location_key"),
         day("receipt_date_key"), day("application_date_key"), day("approval_date_key")],
        date_columns=("receipt_date", "application_date", "approval_date"), date_range=window, approval_after_receipt=True,
    )  # fmt: skip
    results += found
    found, n_certs = quality.table_checks(
        FACT_CERTIFICATES.name, certs, [*shared, day("application_date_key"), day("issued_date_key"), day("expiration_date_key")]
    )
    results += found
    found, _ = quality.table_checks(FACT_STATUS_CHANGES.name, changes, [day("observed_date_key")], unique=False)
    results += found
    silver_ids, silver_certs = quality.silver_counts(details, certificates)
    results.append(quality.counts_reconcile(silver_ids, silver_certs, n_cons, n_products, n_certs))
    results += [
        quality.surrogate_keys_unique(DIM_COMPANIES.name, companies, "company_key", ["permit_number"]),
        quality.surrogate_keys_unique(DIM_COMPANIES.name, companies, "company_version_key", ["permit_number", "version"]),
        quality.surrogate_keys_unique(DIM_LOCATIONS.name, locations, "location_key", ["location_id"]),
        quality.surrogate_keys_unique(DIM_PRODUCT_TYPES.name, types, "product_type_key", ["class_type_code"]),
    ]
    return results


def _scope_text(dates: list[date]) -> str:
    return f"{dates[0]}..{dates[-1]} ({len(dates)} receipt dates)" if dates else "no receipt dates"
