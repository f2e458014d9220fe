"""Surrogate keys of the gold star schema.

A dimension member's key is Spark's ``xxhash64`` (a full 64-bit hash, not a truncated one) of the
dimension's name and the member's natural key, joined with a unit separator and with nulls
spelt out, so ``(null, 'a')`` and ``('a', null)`` differ. Keys therefore never change across
reruns, backfills or processing order, and facts compute their foreign keys without a lookup.
With n members the chance of any collision is about n^2 / 2^65 (3e-8 for a million); the
blocking quality check ``surrogate_keys_unique`` verifies there is none, per dimension.
Dates use the readable ``yyyymmdd`` integer instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

SEPARATOR = "\u001f"
NULL = "\u2400"


def surrogate_key(dimension: str, *natural_key: Column) -> Column:
    """The 64-bit key of the member of ``dimension`` with this natural key (null when all parts are null)."""
    from pyspark.sql import functions as F

    parts = [F.coalesce(c.cast("string"), F.lit(NULL)) for c in natural_key]
    all_null = F.lit(True)
    for c in natural_key:
        all_null = all_null & c.isNull()
    key = F.xxhash64(F.concat_ws(SEPARATOR, F.lit(dimension), *parts))
    return F.when(all_null, F.lit(None).cast("long")).otherwise(key)


def date_key(value: Column) -> Column:
    """``yyyymmdd`` as an int (null for a null date): the key of ``gold.dim_dates``."""
    from pyspark.sql import functions as F

    return F.date_format(value, "yyyyMMdd").cast("int")
