"""The gold stage's quality checks wired to the tables: what :func:`check` reads (the batch's receipt dates of
the COLA-keyed tables, each dimension whole, bronze's pages, the dimensions as published before the build)
for the pure checks of :mod:`.quality`."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from ttb_spark import lakehouse
from ttb_spark.gold import quality
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.dimensions import DIM_COMPANIES, DIM_DATES, DIM_LOCATIONS, DIM_PRODUCT_TYPES
from ttb_spark.gold.facts import FACT_CERTIFICATES, FACT_LABEL_IMAGES, FACT_PRODUCTS, FACT_STATUS_CHANGES
from ttb_spark.gold.layout import RECEIPT_MONTH, in_dates
from ttb_spark.scope import ChangesSince

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ttb_spark.scope import ReceiptDates
    from ttb_spark.settings import Settings


def check(
    spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince, dates: list[date], details: DataFrame, certificates: DataFrame,
    published: dict[str, int | None] | None = None,
) -> list[quality.CheckResult]:
    """The quality checks over the batch's receipt dates (and the whole of each dimension); ``published``:
    the gold tables' versions before the build (:func:`published_versions`), for the checks against them."""
    root = settings.pipeline.lakehouse_root

    def read(spec: lakehouse.TableSpec) -> DataFrame:
        return lakehouse.read_table(spark, spec, root)

    methods = list(scope.receipt_methods)
    cons = in_dates(read(CONSOLIDATED), dates).where(F.col("receipt_method").isin(methods))
    products = in_dates(read(FACT_PRODUCTS), dates).where(F.col("receipt_method").isin(methods))
    certs = in_dates(read(FACT_CERTIFICATES), dates).join(cons.select("ttb_id"), "ttb_id", "left_semi")
    changes = in_dates(read(FACT_STATUS_CHANGES), dates)
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
    checked = quality.tables_checks([
        quality.TableCheck(CONSOLIDATED.name, cons),
        quality.TableCheck(
            FACT_PRODUCTS.name, products,
            [*shared, fk("applicant_location_key", DIM_LOCATIONS, locations, "location_key"),
             day("receipt_date_key"), day("application_date_key"), day("approval_date_key")],
            date_columns=("receipt_date", "application_date", "approval_date"), date_range=window, approval_after_receipt=True,
        ),
        quality.TableCheck(
            FACT_CERTIFICATES.name, certs, [*shared, day("application_date_key"), day("issued_date_key"), day("expiration_date_key")]
        ),
        quality.TableCheck(FACT_STATUS_CHANGES.name, changes, [day("observed_date_key")], unique=False),
    ])  # fmt: skip
    results = [r for found, _ in checked for r in found]
    n_cons, n_products, n_certs = (rows for _, rows in checked[:3])
    silver_ids, silver_certs = quality.silver_counts(in_dates(details, dates), in_dates(certificates, dates))
    results.append(quality.counts_reconcile(silver_ids, silver_certs, n_cons, n_products, n_certs))
    results += quality.dimension_checks(
        DIM_COMPANIES.name, companies, DIM_COMPANIES.keys,
        [("company_key", ["permit_number"]), ("company_version_key", ["permit_number", "valid_from"])], scd2_entity="permit_number",
    )  # fmt: skip
    results += quality.dimension_checks(DIM_LOCATIONS.name, locations, surrogates=[("location_key", ["location_id"])])
    results += quality.dimension_checks(DIM_PRODUCT_TYPES.name, types, surrogates=[("product_type_key", ["class_type_code"])])
    if lakehouse.table_exists(spark, FACT_LABEL_IMAGES, root):  # label images on (TTB_LABEL_IMAGES), or once were
        results.append(quality.images_within_labels(in_dates(read(FACT_LABEL_IMAGES), dates), in_dates(read(FACT_CERTIFICATES), dates)))
    results += _independent_checks(spark, settings, scope, dates, cons, published or {})
    return results


def _independent_checks(
    spark: SparkSession, settings: Settings, scope: ReceiptDates | ChangesSince, dates: list[date], cons: DataFrame, published: dict[str, int | None]
) -> list[quality.CheckResult]:
    """Checks against sources the batch was not built from: bronze pages found per receipt day, the dimension
    keys published before the run, and (change-driven runs, whose date is the schedule's) freshness and drift."""
    from ttb_spark import bronze, silver

    root = settings.pipeline.lakehouse_root
    results = []
    if lakehouse.table_exists(spark, bronze.PAGES, root):  # gold built from silver rows alone (tests) has no bronze
        def pages(spec: lakehouse.TableSpec) -> DataFrame:
            return in_dates(lakehouse.read_table(spark, spec, root), dates)

        found = pages(bronze.PAGES).where(F.col("receipt_method").isin(list(scope.receipt_methods)))
        results.append(quality.found_vs_gold(found, pages(silver.REJECTS), pages(silver.WITHDRAWALS), cons))
    results += quality.published_keys_kept([
        _dimension(spark, root, published, DIM_COMPANIES, "company_key",
                   [(FACT_PRODUCTS, "company_key"), (FACT_CERTIFICATES, "company_key")]),
        _dimension(spark, root, published, DIM_LOCATIONS, "location_key",
                   [(FACT_PRODUCTS, "origin_location_key"), (FACT_PRODUCTS, "applicant_location_key"), (FACT_CERTIFICATES, "origin_location_key")]),
        _dimension(spark, root, published, DIM_PRODUCT_TYPES, "product_type_key",
                   [(FACT_PRODUCTS, "product_type_key"), (FACT_CERTIFICATES, "product_type_key")]),
        _dimension(spark, root, published, DIM_DATES, "date_key",
                   [(FACT_PRODUCTS, c) for c in ("receipt_date_key", "application_date_key", "approval_date_key")]
                   + [(FACT_CERTIFICATES, c) for c in ("application_date_key", "issued_date_key", "expiration_date_key")]
                   + [(FACT_STATUS_CHANGES, "observed_date_key")]),
    ])  # fmt: skip
    if isinstance(scope, ChangesSince):
        results += _recency_checks(spark, settings, scope.as_of)
    return results


def _dimension(
    spark: SparkSession, root: str, published: dict[str, int | None], dim: lakehouse.TableSpec, key: str,
    references: list[tuple[lakehouse.TableSpec, str]],
) -> quality.DimensionKeys:  # fmt: skip
    version = published.get(dim.name)
    before = lakehouse.read_version(spark, dim, root, version) if version is not None else None
    refs = [(spec.name, lakehouse.read_table(spark, spec, root), column) for spec, column in references]
    return quality.DimensionKeys(dim.name, key, before, lakehouse.read_table(spark, dim, root), refs)


def _recency_checks(spark: SparkSession, settings: Settings, run_date: date) -> list[quality.CheckResult]:
    """Freshness and approval drift as of ``run_date``, from one aggregation over the COLAs received in the
    year (plus the drift baseline) before it: approvals per day up to ``run_date`` and the newest page fetch."""
    a = settings.analytics
    since = run_date - timedelta(days=366 + a.drift_baseline_days)
    since_month = (F.col(RECEIPT_MONTH) >= F.lit(since.replace(day=1))) & (F.col("receipt_date") >= F.lit(since))
    recent = lakehouse.read_table(spark, CONSOLIDATED, settings.pipeline.lakehouse_root).where(since_month)
    rows = recent.groupBy("approval_date").agg(
        F.count("*").alias("n"), F.max(F.greatest("detail_fetched_at", "certificate_fetched_at")).alias("fetched")
    ).collect()
    per_day = {r["approval_date"]: int(r["n"]) for r in rows if r["approval_date"] is not None and r["approval_date"] <= run_date}
    fetched = [r["fetched"] for r in rows if r["fetched"] is not None]
    return [
        quality.freshness(run_date, max(per_day, default=None), max(fetched).date() if fetched else None,
                          a.freshness_warn_days, a.freshness_block_days),
        quality.approval_drift(per_day, a.drift_baseline_days, a.drift_ratio, a.drift_blocking),
    ]  # fmt: skip


def scope_text(dates: list[date]) -> str:
    return f"{dates[0]}..{dates[-1]} ({len(dates)} receipt dates)" if dates else "no receipt dates"
