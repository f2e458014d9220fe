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
from typing import TYPE_CHECKING, Any

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
__all__ = ["run", "read_silver", "TABLES", "QualityCheckError"]


def _silver_table(spark: SparkSession, root: str, name: str) -> DataFrame:
    """A silver table by its TableSpec (by path ``<root>/silver/<name>`` if the spec is not importable)."""
    try:
        from ttb_spark import silver  # noqa: F401  (registers the silver TableSpecs)
    except ImportError:
        pass
    spec = lakehouse.REGISTRY.get(f"silver.{name}")
    if spec is not None:
        return lakehouse.read_table(spark, spec, root)
    return spark.read.format("delta").load(f"{root.rstrip('/')}/silver/{name}")


def read_silver(spark: SparkSession, root: str, scope: Scope) -> tuple[DataFrame, DataFrame]:
    """The scope's silver details and certificates (receipt-date range x receipt methods)."""
    def scoped(df: DataFrame) -> DataFrame:
        in_range = F.col("receipt_date").between(F.lit(scope.start), F.lit(scope.end))
        return df.where(in_range & F.col("receipt_method").isin(list(scope.receipt_methods)))

    return scoped(_silver_table(spark, root, "cola_details")), scoped(_silver_table(spark, root, "cola_certificates"))


def _merge(counts: dict[str, int], name: str, *args: Any, **kwargs: Any) -> None:
    for k, v in lakehouse.merge_upsert(*args, **kwargs).items():
        counts[f"{name}_{k}"] = v


def _in_dates(df: DataFrame, dates: list[date]) -> DataFrame:
    return df.where(F.col("receipt_date").isin(dates))


def run(spark: SparkSession, settings: Settings, scope: Scope) -> dict[str, int]:
    """Build every gold table for the scope's receipt dates from silver; raise on a blocking check failure."""
    root = settings.pipeline.lakehouse_root
    counts: dict[str, int] = {}
    details, certificates = read_silver(spark, root, scope)
    for k, v in reference.ensure_seeded(spark, settings).items():
        counts[f"reference_{k}"] = v
    ref = reference.read(spark, settings).persist()
    batch = consolidate(details, certificates, ref, settings.consolidation.prefer_certificate_codes).persist()
    try:
        dates = sorted(r[0] for r in batch.select("receipt_date").distinct().collect())
        counts["colas"] = batch.count()
        if not dates:
            return counts
        prune = {"receipt_date": dates}
        stored = _in_dates(lakehouse.read_table(spark, CONSOLIDATED, root), dates)
        changes = status_changes(stored, batch).persist()
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
    companies = dim_companies(history, stored_companies).persist()
    companies.count()
    _merge(counts, "dim_companies", spark, companies, DIM_COMPANIES, root, delete_missing_in={"permit_number": permit_list})
    _merge(counts, "dim_locations", spark, dim_locations(batch, ref), DIM_LOCATIONS, root)
    _merge(counts, "dim_product_types", spark, dim_product_types(batch, ref), DIM_PRODUCT_TYPES, root)

    stored_facts = lakehouse.read_table(spark, FACT_PRODUCTS, root).join(F.broadcast(permits), "permit_number", "left_semi")
    products = changed_or_in_batch(fact_products(with_flags(history)), batch, stored_facts).persist()
    fact_dates = sorted(r[0] for r in products.select("receipt_date").distinct().collect())
    _merge(counts, "fact_products", spark, products, FACT_PRODUCTS, root, prune={"receipt_date": fact_dates})
    certs = fact_certificates(batch)
    _merge(counts, "fact_certificates", spark, certs, FACT_CERTIFICATES, root, prune={"receipt_date": dates})

    calendar = dates_of([
        (products, ("receipt_date", "application_date", "approval_date")),
        (certs, ("application_date", "issued_date", "expiration_date")),
        (companies, ("valid_from", "valid_until", "first_seen", "last_seen")),
        (changes, ("observed_at",)),
    ]).persist()
    years = [r[0] for r in calendar.select(F.year("date")).distinct().collect()]
    _merge(counts, "dim_dates", spark, dim_dates(calendar, federal_holidays(spark, years)), DIM_DATES, root)
    for df in (calendar, products, companies, history, permits):
        df.unpersist()


def check(
    spark: SparkSession, settings: Settings, scope: Scope, dates: list[date], details: DataFrame, certificates: DataFrame
) -> list[quality.CheckResult]:
    """The quality checks over the batch's receipt dates (and the whole of each dimension)."""
    root = settings.pipeline.lakehouse_root

    def batch_of(spec: lakehouse.TableSpec) -> DataFrame:
        df = _in_dates(lakehouse.read_table(spark, spec, root), dates)
        return df.where(F.col("receipt_method").isin(list(scope.receipt_methods))) if "receipt_method" in spec.schema.fieldNames() else df

    cons, products = batch_of(CONSOLIDATED), batch_of(FACT_PRODUCTS)
    certs = batch_of(FACT_CERTIFICATES).join(cons.select("ttb_id"), "ttb_id", "left_semi")
    changes = _in_dates(lakehouse.read_table(spark, FACT_STATUS_CHANGES, root), dates)
    dims = {spec.name: lakehouse.read_table(spark, spec, root) for spec in (DIM_DATES, DIM_COMPANIES, DIM_LOCATIONS, DIM_PRODUCT_TYPES)}
    dim_keys = {
        "company_key": ("gold.dim_companies", "company_key"),
        "product_type_key": ("gold.dim_product_types", "product_type_key"),
        "origin_location_key": ("gold.dim_locations", "location_key"),
        "applicant_location_key": ("gold.dim_locations", "location_key"),
    }
    fks = [
        (FACT_PRODUCTS.name, products, ("company_key", "product_type_key", "origin_location_key", "applicant_location_key",
                                        "receipt_date_key", "application_date_key", "approval_date_key")),
        (FACT_CERTIFICATES.name, certs, ("company_key", "product_type_key", "origin_location_key",
                                         "application_date_key", "issued_date_key", "expiration_date_key")),
        (FACT_STATUS_CHANGES.name, changes, ("observed_date_key",)),
    ]  # fmt: skip
    results = [quality.unique_ttb_ids(spec.name, df) for spec, df in ((CONSOLIDATED, cons), (FACT_PRODUCTS, products), (FACT_CERTIFICATES, certs))]
    for table, df, columns in fks:
        for fk in columns:
            dim_name, dim_key = dim_keys.get(fk, ("gold.dim_dates", "date_key"))
            results.append(quality.foreign_key_resolves(table, df, fk, dim_name, dims[dim_name], dim_key))
    latest = date.today() + timedelta(days=1)
    results.append(quality.dates_in_range(FACT_PRODUCTS.name, products, ("receipt_date", "application_date", "approval_date"), settings.analytics.min_valid_date, latest))
    results.append(quality.approval_not_before_receipt(FACT_PRODUCTS.name, products))
    silver_ids = details.select("ttb_id").unionByName(certificates.select("ttb_id"))
    results.append(quality.counts_reconcile(silver_ids, cons, products, certs, certificates))
    results += [
        quality.surrogate_keys_unique(DIM_COMPANIES.name, dims[DIM_COMPANIES.name], "company_key", ["permit_number"]),
        quality.surrogate_keys_unique(DIM_COMPANIES.name, dims[DIM_COMPANIES.name], "company_version_key", ["permit_number", "version"]),
        quality.surrogate_keys_unique(DIM_LOCATIONS.name, dims[DIM_LOCATIONS.name], "location_key", ["location_id"]),
        quality.surrogate_keys_unique(DIM_PRODUCT_TYPES.name, dims[DIM_PRODUCT_TYPES.name], "product_type_key", ["class_type_code"]),
    ]
    return results


def _scope_text(dates: list[date]) -> str:
    return f"{dates[0]}..{dates[-1]} ({len(dates)} receipt dates)" if dates else "no receipt dates"
