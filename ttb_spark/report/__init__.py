"""``ttb_spark report``: one self-contained HTML page of charts over gold (:mod:`.figures` computes them,
:mod:`.page` draws them), written to the raw store's ``reports/`` (a bucket, a volume or a local folder)
or to ``--out``.

The period is whole ISO weeks: ``--since``/``--until``, by default the ``TTB_REPORT_WEEKS`` weeks up to
gold's newest approval. Jobs that end in gold write it too when ``TTB_REPORT_AFTER_RUN`` is on
(:func:`ttb_spark.ops.after_run.after_run_report` picks their period). It reads gold only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from ttb_spark.report.figures import FIGURES, Gold, first_week, of_period
from ttb_spark.report.page import json_value, render, vega_bundle

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ttb_spark.settings import Settings

REPORTS = "reports"  # the raw store's prefix for reports


@dataclass(frozen=True)
class Report:
    """A rendered report: its period and the page."""

    since: date
    until: date
    text: str

    @property
    def key(self) -> str:
        """Its raw-store key: one per period, so a rerun over the same period replaces it."""
        return f"{REPORTS}/ttb-report_{self.since.isoformat()}_{self.until.isoformat()}.html"


def read_gold(spark: SparkSession, lakehouse_root: str) -> Gold:
    from ttb_spark import lakehouse
    from ttb_spark.gold.dimensions import DIM_COMPANIES, DIM_LOCATIONS, DIM_PRODUCT_TYPES
    from ttb_spark.gold.facts import FACT_PRODUCTS, FACT_STATUS_CHANGES

    def read(spec: Any) -> Any:
        return lakehouse.read_table(spark, spec, lakehouse_root)

    return Gold(read(FACT_PRODUCTS), read(DIM_PRODUCT_TYPES), read(DIM_COMPANIES), read(DIM_LOCATIONS), read(FACT_STATUS_CHANGES))


def period(gold: Gold, weeks: int, since: date | None = None, until: date | None = None) -> tuple[date, date]:
    """``since``..``until``; ``until`` defaults to gold's newest approval (today, UTC, in an empty lakehouse)
    and ``since`` to the Monday ``weeks`` ISO weeks back from it."""
    if until is None:
        newest = gold.products.agg({"approval_date": "max"}).first()[0]
        until = newest or datetime.now(timezone.utc).date()
    return (since or first_week(until, weeks)), until


def build(spark: SparkSession, settings: Settings, since: date | None = None, until: date | None = None) -> Report:
    """The report of the period (:func:`period`) from the lakehouse of ``settings``."""
    gold = read_gold(spark, settings.pipeline.lakehouse_root)
    since, until = period(gold, settings.analytics.report_weeks, since, until)
    narrowed = of_period(gold, since, until)
    products, changes = narrowed.products.persist(), narrowed.status_changes.persist()  # read once for every figure
    try:
        gold = replace(narrowed, products=products, status_changes=changes)
        rows = {f.name: [{k: json_value(v) for k, v in r.asDict().items()} for r in f.compute(gold, since, until).collect()]
                for f in FIGURES}
    finally:
        products.unpersist()
        changes.unpersist()
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = f"{since.isoformat()} to {until.isoformat()} (ISO weeks, UTC), from the gold tables of {settings.pipeline.lakehouse_root}; made {made}"
    text = render("TTB COLA approvals", meta, [(f.name, f.title, rows[f.name]) for f in FIGURES], vega_bundle())
    return Report(since, until, text)


def write(settings: Settings, report: Report, out: str | None = None) -> str:
    """Write the page to ``out`` (a file path or an s3:// object URI), else under the raw store's ``reports/``;
    where it went."""
    from ttb_spark.raw import storage

    p = settings.pipeline
    if out is None:
        store, key = storage.raw_store(settings), report.key
    else:
        parent, _, key = out.rstrip("/").rpartition("/")
        store = storage.open_store(parent or ".", p.aws_region, p.s3_endpoint_url)
    store.put(key, report.text.encode())
    return f"{store.uri.rstrip('/')}/{key}"


def run(spark: SparkSession, settings: Settings, since: date | None = None, until: date | None = None, out: str | None = None) -> str:
    """Build and write the report; where it went."""
    return write(settings, build(spark, settings, since, until), out)


def run_command(args: argparse.Namespace) -> int:
    """``ttb_spark report``: settings and period checked before Spark starts; prints where the page went."""
    from ttb_spark import lakehouse
    from ttb_spark.gold.facts import FACT_PRODUCTS
    from ttb_spark.settings import SettingsError, load_settings
    from ttb_spark.spark import get_spark

    if args.since and args.until and args.since > args.until:
        raise SettingsError(f"--since {args.since} is after --until {args.until}")
    settings = load_settings(args.env, {"pipeline": {"raw_root": args.raw_root, "lakehouse_root": args.lakehouse_root}})
    spark = get_spark(settings, app_name="ttb_spark-report")
    root = settings.pipeline.lakehouse_root
    if not lakehouse.table_exists(spark, FACT_PRODUCTS, root):
        raise SettingsError(f"no gold tables at {root}: run the gold stage (or the daily or pipeline job) first")
    where = run(spark, settings, args.since, args.until, args.out)
    sys.stdout.write(where + "\n")
    return 0
