"""``gold.watch_hits`` and the pure transform that finds them: the changes gold recorded that a watchlist
rule matches."""

from __future__ import annotations

from functools import reduce
from itertools import chain
from typing import TYPE_CHECKING, Callable, Sequence

from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructType, TimestampType

from ttb_spark.gold.stage import CHANGE_KINDS
from ttb_spark.lakehouse import TableSpec, column
from ttb_spark.watch.rules import Rule

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

WATCH_HITS = TableSpec(
    name="gold.watch_hits",
    comment=(
        "Watchlist hits: each change gold recorded (a row of gold.fact_status_changes) that a rule of TTB_WATCHLIST_FILE "
        "matches, once per rule; sent_at is set when a digest holding it was accepted by every notification target."
    ),
    keys=("rule", "ttb_id", "observed_at", "change"),
    schema=StructType([
        column("rule", StringType(), "name of the watchlist rule", False),
        column("ttb_id", StringType(), "14-digit TTB ID", False),
        column("observed_at", TimestampType(), "gold.fact_status_changes.observed_at of the change", False),
        column("change", StringType(), "new | status_changed | withdrawn | removed | reinstated", False),
        column("receipt_date", DateType(), "date TTB received the application"),
        column("status", StringType(), "status seen (null for a removal)"),
        column("permit_number", StringType(), "principal permit number"),
        column("company_name", StringType(), "permit holder's current name"),
        column("brand_name", StringType(), "brand name"),
        column("fanciful_name", StringType(), "fanciful name"),
        column("run_id", StringType(), "run that found the hit"),
        column("digest_id", StringType(), "the digest that delivered it: a hash of the hits it held (null while pending)"),
        column("sent_at", TimestampType(), "when that digest was accepted (UTC); null: pending, sent by the next run"),
    ]),
)  # fmt: skip


def like_pattern(glob: str) -> str:
    """A ``*``/``?`` pattern as an upper-case SQL LIKE pattern (``%``, ``_`` and ``\\`` taken literally)."""
    escaped = glob.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _any(values: Sequence[str], test: Callable[[str], Column]) -> Column:
    return reduce(lambda a, b: a | b, (test(v) for v in values))


def predicate(rule: Rule) -> Column:
    """Whether a change row (with its COLA's attributes) matches ``rule``; false where an attribute is unknown."""
    upper = [v.upper() for v in rule.origins]
    tests = [
        (rule.permits, lambda: F.col("permit_number").isin(list(rule.permits))),
        (rule.companies, lambda: _any(rule.companies, lambda p: F.upper("company_name").like(like_pattern(p)))),
        (rule.brands, lambda: _any(rule.brands, lambda p: F.upper("brand_name").like(like_pattern(p)))),
        (rule.class_types, lambda: F.col("class_type_code").isin(list(rule.class_types))),
        (rule.families, lambda: F.upper("family").isin([v.upper() for v in rule.families])),
        (rule.origins, lambda: F.upper("origin_code").isin(upper) | F.upper("origin_description").isin(upper)),
        (rule.states, lambda: F.upper("state").isin([v.upper() for v in rule.states])),
        (rule.changes, lambda: F.col("change").isin(list(rule.changes))),
    ]
    return reduce(lambda a, b: a & b, (F.coalesce(make(), F.lit(False)) for given, make in tests if given), F.lit(True))


def matches(changes: DataFrame, colas: DataFrame, rules: Sequence[Rule], run_id: str) -> DataFrame:
    """Hits (``WATCH_HITS`` rows, pending) of ``rules`` among ``changes`` (fact_status_changes rows) whose
    COLAs' attributes are in ``colas`` (ttb_id, permit_number, company_name, brand_name, fanciful_name,
    class_type_code, family, origin_code, origin_description, state; a change without one matches only
    rules that ask for no attribute)."""
    kind = F.create_map(*chain.from_iterable((F.lit(k), F.lit(v)) for k, v in CHANGE_KINDS.items()))
    rows = changes.select("ttb_id", "observed_at", "receipt_date", "status", kind[F.col("change_type")].alias("change")).join(colas, "ttb_id", "left")
    found = [rows.where(predicate(r)).withColumn("rule", F.lit(r.name)) for r in rules]
    hits = reduce(lambda a, b: a.unionByName(b), found).dropDuplicates(list(WATCH_HITS.keys))  # rejected and removed: one kind
    return hits.select(
        *(F.col(f.name) for f in WATCH_HITS.schema.fields if f.name not in ("run_id", "digest_id", "sent_at")),
        F.lit(run_id).alias("run_id"), F.lit(None).cast("string").alias("digest_id"), F.lit(None).cast("timestamp").alias("sent_at"),
    )
