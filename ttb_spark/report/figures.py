"""The report's figures: pure DataFrame -> DataFrame functions over gold tables (no reads, no writes).

Each takes the gold frames it needs and the period (``since`` .. ``until``, inclusive dates) and returns
the small frame one chart and its table show. Weeks are ISO weeks (Monday first) of UTC dates: the
session's time zone is UTC (:mod:`ttb_spark.spark`). A COLA counts in the period of its approval date, a
status event on its date (:func:`event_date`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Callable

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

UNCLASSIFIED = "UNCLASSIFIED"  # a COLA whose class/type code no reference row describes
TOP = 15  # rows of the ranked figures (top filers, origins) and of the latest-listed tables
LATEST_EVENTS = 50  # status events listed in the events table


@dataclass(frozen=True)
class Gold:
    """The gold tables the report reads."""

    products: DataFrame  # gold.fact_products
    product_types: DataFrame  # gold.dim_product_types
    companies: DataFrame  # gold.dim_companies
    locations: DataFrame  # gold.dim_locations
    status_changes: DataFrame  # gold.fact_status_changes


def of_period(gold: Gold, since: date, until: date) -> Gold:
    """``gold`` narrowed to what the period's figures can read, by filters Delta prunes files with (column
    statistics on approval_date, observed_at and completed_date), so a report reads the period's rows and not
    the whole history."""
    products = gold.products.where(F.col("approval_date").between(F.lit(since), F.lit(until)))
    changes = gold.status_changes.where((F.col("observed_at") >= F.lit(since)) | (F.col("completed_date") >= F.lit(since)))
    return replace(gold, products=products, status_changes=changes)


def first_week(until: date, weeks: int) -> date:
    """The Monday of the first of the ``weeks`` ISO weeks ending with ``until``'s week."""
    return until - timedelta(days=until.weekday()) - timedelta(weeks=weeks - 1)


def week_of(column: str | Column) -> Column:
    """The Monday of the date's ISO week."""
    return F.to_date(F.date_trunc("week", column if not isinstance(column, str) else F.col(column)))


def _approved(gold: Gold, since: date, until: date) -> DataFrame:
    """The COLAs approved in the period, with their family and approval week."""
    types = gold.product_types.select("product_type_key", "family")
    return (
        gold.products.where(F.col("approval_date").between(F.lit(since), F.lit(until)))
        .join(F.broadcast(types), "product_type_key", "left")
        .withColumn("family", F.coalesce("family", F.lit(UNCLASSIFIED)))
        .withColumn("week", week_of("approval_date"))
    )


def approvals_by_week(gold: Gold, since: date, until: date) -> DataFrame:
    """(week, family, approvals): COLAs approved per ISO week by product family."""
    return _approved(gold, since, until).groupBy("week", "family").agg(F.count("*").alias("approvals")).orderBy("week", "family")


ENTRANT_KINDS = {"is_first_company_cola": "first COLA of a permit", "is_first_brand_cola": "first COLA of a brand"}


def _entrants(gold: Gold, since: date, until: date) -> DataFrame:
    """One row per (COLA approved in the period, kind of first it is)."""
    approved = _approved(gold, since, until)
    kinds = [approved.where(F.col(flag)).withColumn("kind", F.lit(text)) for flag, text in ENTRANT_KINDS.items()]
    return kinds[0].unionByName(kinds[1])


def new_entrants_by_week(gold: Gold, since: date, until: date) -> DataFrame:
    """(week, kind, colas): approvals that were a permit's first COLA, or a permit's first with that brand."""
    return _entrants(gold, since, until).groupBy("week", "kind").agg(F.count("*").alias("colas")).orderBy("week", "kind")


def _current_names(gold: Gold) -> DataFrame:
    return gold.companies.where("is_current").select("company_key", "company_name", "state")


def latest_new_entrants(gold: Gold, since: date, until: date) -> DataFrame:
    """The latest ``TOP`` new entrants of the period: approval date, kind, TTB ID, permit, company, brand."""
    rows = _entrants(gold, since, until).join(_current_names(gold), "company_key", "left")
    return rows.select("approval_date", "kind", "ttb_id", "permit_number", "company_name", "brand_name").orderBy(
        F.col("approval_date").desc(), "ttb_id", "kind"
    ).limit(TOP)


def days_to_approval_by_week(gold: Gold, since: date, until: date) -> DataFrame:
    """(week, family, colas, median_days, p90_days): days from receipt to approval per ISO week of approval."""
    approved = _approved(gold, since, until).where(F.col("days_to_approval").isNotNull())
    return approved.groupBy("week", "family").agg(
        F.count("*").alias("colas"),
        F.percentile("days_to_approval", F.lit(0.5)).alias("median_days"),
        F.percentile("days_to_approval", F.lit(0.9)).alias("p90_days"),
    ).orderBy("week", "family")


def top_filers(gold: Gold, since: date, until: date) -> DataFrame:
    """(permit_number, company_name, state, approvals): the ``TOP`` permits with the most approvals in the period."""
    counts = _approved(gold, since, until).groupBy("company_key", "permit_number").agg(F.count("*").alias("approvals"))
    ranked = counts.join(_current_names(gold), "company_key", "left").select("permit_number", "company_name", "state", "approvals")
    return ranked.orderBy(F.col("approvals").desc(), "permit_number").limit(TOP)


def event_date() -> Column:
    """A status event's date: for a status change, the registry's date of it (its Completed Date, when a search
    had listed it); otherwise (a withdrawal, a removal, a reinstatement: the registry dates none) the UTC day
    the change was observed."""
    changed = (F.col("change_type") == "change") & F.col("completed_date").isNotNull()
    return F.when(changed, F.col("completed_date")).otherwise(F.to_date("observed_at"))


def _events(gold: Gold, since: date, until: date) -> DataFrame:
    """Status events of the period other than first sightings: changes, withdrawals, removals, reinstatements."""
    return (
        gold.status_changes.where(F.col("change_type") != "initial")
        .withColumn("event_date", event_date())
        .where(F.col("event_date").between(F.lit(since), F.lit(until)))
        .withColumn("week", week_of("event_date"))
    )


def status_events_by_week(gold: Gold, since: date, until: date) -> DataFrame:
    """(week, change_type, events): status changes, withdrawals, removals and reinstatements per ISO week."""
    return _events(gold, since, until).groupBy("week", "change_type").agg(F.count("*").alias("events")).orderBy("week", "change_type")


def latest_status_events(gold: Gold, since: date, until: date) -> DataFrame:
    """The period's latest ``LATEST_EVENTS`` status events, each with what it changed."""
    return _events(gold, since, until).select(
        "event_date", "change_type", "ttb_id", "previous_status", "status", "reason"
    ).orderBy(F.col("event_date").desc(), "ttb_id", "change_type").limit(LATEST_EVENTS)


def approvals_by_origin(gold: Gold, since: date, until: date) -> DataFrame:
    """(origin, domestic, approvals): the ``TOP`` origins (US states, countries) by approvals in the period."""
    places = gold.locations.select(
        F.col("location_key").alias("origin_location_key"),
        F.coalesce("state_name", "origin_description", "origin_code").alias("origin"),
        F.col("is_domestic").alias("domestic"),
    )
    approved = _approved(gold, since, until).join(F.broadcast(places), "origin_location_key", "left")
    counts = approved.withColumn("origin", F.coalesce("origin", F.col("origin_code"), F.lit("unknown")))
    return counts.groupBy("origin", "domestic").agg(F.count("*").alias("approvals")).orderBy(F.col("approvals").desc(), "origin").limit(TOP)


@dataclass(frozen=True)
class Figure:
    """One section of the report: the frame ``compute`` returns, shown as a table (and a chart, :mod:`.page`)."""

    name: str
    title: str
    compute: Callable[[Gold, date, date], DataFrame]


FIGURES = (
    Figure("approvals_by_week", "Approvals per week by product family", approvals_by_week),
    Figure("new_entrants_by_week", "New entrants per week", new_entrants_by_week),
    Figure("latest_new_entrants", "Latest new entrants", latest_new_entrants),
    Figure("days_to_approval_by_week", "Days to approval (median and 90th percentile) by family", days_to_approval_by_week),
    Figure("top_filers", "Top filers", top_filers),
    Figure("status_events_by_week", "Status changes, withdrawals, removals and reinstatements", status_events_by_week),
    Figure("latest_status_events", "Latest status events", latest_status_events),
    Figure("approvals_by_origin", "Approvals by origin", approvals_by_origin),
)
