"""The layout of the gold tables keyed by COLA: partitioned by receipt month.

``ttb_consolidated``, ``fact_products``, ``fact_certificates`` and ``fact_status_changes`` carry a
``receipt_month`` column (the first day of the receipt date's month, derived by
:func:`ttb_spark.lakehouse.conform`) and are partitioned by it: 12 partitions a year instead of
365, so a 30-year table has 360 partitions of a month's COLAs each, and a day's batch, whose
approvals reach back months, touches a handful of them (docs/architecture.md, "Gold layout for a 30-year table").
Writes and pruned lookups name both the months (partition pruning) and the receipt dates (file
skipping on the column statistics, while a month still holds one file per MERGE).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Iterable

from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType

from ttb_spark.lakehouse import column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

RECEIPT_MONTH = "receipt_month"
RECEIPT_MONTH_COLUMN = column(RECEIPT_MONTH, DateType(), "first day of the receipt date's month; partition column")
# the first columns of a fact with one row per COLA: its key, and the dates it is partitioned and pruned by
COLA_FACT_KEY = (
    column("ttb_id", StringType(), "14-digit TTB ID; the key", False),
    column("receipt_date", DateType(), "date TTB received the application"),
    RECEIPT_MONTH_COLUMN,
)
DERIVED = ((RECEIPT_MONTH, "trunc(receipt_date, 'MM')"),)


def months(dates: Iterable[date]) -> list[date]:
    """The first days of the months of ``dates``, sorted."""
    return sorted({d.replace(day=1) for d in dates})


def receipt_prune(dates: Iterable[date]) -> dict[str, list[date]]:
    """MERGE partition predicates (:func:`ttb_spark.lakehouse.merge_changes` ``prune``) covering the receipt ``dates``."""
    dates = sorted(set(dates))
    return {RECEIPT_MONTH: months(dates), "receipt_date": dates}


def in_receipt_dates(dates: Iterable[date]) -> Column:
    """Filter of a receipt-month partitioned table's rows received on ``dates`` (pruning to their months)."""
    from functools import reduce

    from pyspark.sql import functions as F

    return reduce(lambda a, b: a & b, (F.col(c).isin(values) for c, values in receipt_prune(dates).items()))


def in_receipt_range(start: date, end: date) -> Column:
    """Filter of a receipt-month partitioned table's rows received from ``start`` to ``end`` (pruning to their months)."""
    from pyspark.sql import functions as F

    return F.col(RECEIPT_MONTH).between(F.lit(start.replace(day=1)), F.lit(end)) & F.col("receipt_date").between(F.lit(start), F.lit(end))


def in_dates(df: DataFrame, dates: list[date]) -> DataFrame:
    """``df``'s rows received on ``dates``; a table partitioned by receipt month read from those months only."""
    return df.where(in_receipt_dates(dates) if RECEIPT_MONTH in df.columns else F.col("receipt_date").isin(dates))
