"""Command line: ``python -m ttb_spark <stage> ...`` and the ``ttb_spark`` console script.

Every bad argument or setting ends in one line naming it and exit status 2, before any Spark
session starts, request is sent or table is touched.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Callable, Sequence

from ttb_spark.settings import DATA_TYPES, ENVIRONMENTS, RECEIPT_METHODS, SettingsError

STAGES: dict[str, str] = {
    "pipeline": "backfill a receipt-date range by the registry's search: discover -> bronze -> silver -> gold per chunk of completed dates (--walk: walk sequence numbers, scrape -> bronze -> silver -> gold)",
    "walk": "the original pipeline for a receipt-date range (= pipeline --walk): walk sequence numbers, scrape -> bronze -> silver -> gold",
    "raw": "scrape -> bronze",
    "analytics": "silver -> gold",
    "scrape": "fetch registry pages for each partition into the raw store (S3 or a local folder)",
    "bronze": "raw store -> bronze.pages and bronze.scrape_manifest Delta tables",
    "silver": "bronze -> extracted -> cleaned -> silver.cola_details / cola_certificates / rejects; label images decoded",
    "gold": "silver -> consolidated COLAs, reference data, dimensions, facts, quality checks",
    "reference": "refresh the reference code tables (seed snapshot, or the registry's lookup pages)",
    "discover": "list what the registry's search says was completed in a date range (--since-last-run: since the watermark) and fetch what is new or changed",
    "daily": "discover -> bronze -> silver -> gold: the daily update by the registry's search; silver and gold process what changed since their last run",
    "reconcile": "per receipt day, compare the walk's found IDs with the search's listings, report and fetch the differences -> bronze",
    "images": "fetch the label images COLAs of the range already in the lakehouse lack, within TTB_IMAGE_REQUEST_BUDGET requests -> bronze (the next daily decodes them into silver and gold)",
    "maintain": "every table: OPTIMIZE (compaction), VACUUM (TTB_VACUUM_RETENTION_HOURS, never a change still pending), statistics",
}


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from None


class _Parser(argparse.ArgumentParser):
    """argparse that reports one line and exits 2 (its default), without the usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"ttb_spark {self.prog.split()[-1]}: error: {message}\n")


def _add_env(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", choices=list(ENVIRONMENTS), help="settings profile (default $TTB_ENVIRONMENT or development)")


def _add_stage_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    _add_env(p)
    p.add_argument("--date", type=_iso_date, help="a single receipt date (YYYY-MM-DD)")
    p.add_argument("--start", type=_iso_date, help="first receipt date (TTB_PARTITION_START_DATE)")
    p.add_argument("--end", type=_iso_date, help="last receipt date, inclusive (TTB_PARTITION_END_DATE)")
    p.add_argument("--receipt-methods", help=f"comma list of {','.join(RECEIPT_METHODS)} (TTB_RECEIPT_METHODS)")
    p.add_argument("--data-types", help=f"comma list of {','.join(DATA_TYPES)} (TTB_DATA_TYPES)")
    p.add_argument("--partition", help="one partition key, e.g. '2024-01-02|001-cola-detail'")
    p.add_argument("--raw-root", help="raw HTML store: s3://bucket/prefix or a local folder (TTB_RAW_ROOT)")
    p.add_argument("--lakehouse-root", help="Delta lakehouse root: s3a://..., s3://..., dbfs:/... or a local folder (TTB_LAKEHOUSE_ROOT)")
    p.add_argument("--registry-url", help="registry base URL (TTB_REGISTRY_BASE_URL)")
    p.add_argument("--simulator", action="store_true", default=None, help="serve the registry from the embedded loopback simulator (TTB_USE_SIMULATOR)")
    p.add_argument("--quiet", action="store_true", help="no progress lines: warnings, errors and the summary only")
    p.add_argument("--json", action="store_true", help="the summary as one JSON object on stdout (progress stays on stderr)")
    if stage in ("discover", "daily", "reconcile", "pipeline", "images"):
        p.add_argument("--simulator-today", type=_iso_date, help="the embedded simulator's simulated day (TTB_SIMULATOR_TODAY)")
    if stage == "reconcile":
        p.add_argument("--walk-share", type=float, metavar="SHARE",
                       help="also walk this share of each day's sequence numbers no search listed nor walk found, 1 for all (TTB_RECONCILE_WALK_SHARE)")
    if stage == "images":
        p.add_argument("--budget", type=int, metavar="N", help="send at most N requests, retries aside (TTB_IMAGE_REQUEST_BUDGET)")
    if stage == "pipeline":
        p.add_argument("--walk", action="store_true", help="walk sequence numbers per receipt day (the original ttb_raw_pipeline) instead of the search")
    if stage in ("pipeline", "walk", "raw", "scrape"):
        p.add_argument("--force", action="store_true", help="re-scrape partitions already marked complete")
        p.add_argument("--rescan-days", type=int, default=0, metavar="N", help="also re-walk the most recent N receipt days (late approvals, status changes)")
    if stage == "maintain":
        p.add_argument("--vacuum-retention-hours", type=int, metavar="H", help="VACUUM keeps files of the last H hours (TTB_VACUUM_RETENTION_HOURS, >= 168)")
    if stage not in ("reference", "maintain"):
        p.add_argument("--since-last-run", action="store_true", help="start at the first date since TTB_PARTITION_START_DATE that no run of this job finished (discover/daily: with an overlap)")
        p.add_argument("--chunk-days", type=int, help="backfill chunk size in days (TTB_BACKFILL_CHUNK_DAYS)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ttb_spark",
        description="TTB Public COLA Registry -> Delta lakehouse (bronze, silver, gold).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stages:\n" + "\n".join(f"  {name:<10} {text}" for name, text in STAGES.items()),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, text in STAGES.items():
        _add_stage_arguments(sub.add_parser(name, help=text, description=text), name)

    from ttb_spark.registry import parse, simulator

    parse.configure_parser(sub.add_parser("parse", help="print one JSON object per saved page (debugging)"))
    simulator.configure_parser(sub.add_parser("simulate-registry", help="serve a synthetic registry on loopback"))
    sub.add_parser("tables", help="print the data dictionary (docs/tables.md) generated from the table schemas")
    sub.add_parser("settings", help="print the settings reference (docs/settings.md) generated from the settings model")
    relayout = sub.add_parser("relayout", help="rewrite tables into their declared partitioning or clustering (jobs stopped)")
    relayout.add_argument("tables", nargs="+", metavar="table", help="layer.table, e.g. gold.ttb_consolidated")
    _add_env(relayout)
    adopt = sub.add_parser("adopt-catalog", help="copy a lakehouse of path tables into the catalog of the settings (TTB_CATALOG), jobs stopped")
    adopt.add_argument("--from", dest="source", required=True, metavar="ROOT", help="the path lakehouse root, e.g. s3://bucket/lakehouse")
    _add_env(adopt)
    report = sub.add_parser("report", help="one self-contained HTML page of charts over gold: approvals, new entrants, days to approval, filers, status events, origins")
    _add_env(report)
    report.add_argument("--since", type=_iso_date, help="first day (default: the Monday TTB_REPORT_WEEKS ISO weeks back from --until)")
    report.add_argument("--until", type=_iso_date, help="last day, inclusive (default: gold's newest approval date)")
    report.add_argument("--out", help="a file path or s3:// object URI (default: <raw root>/reports/ttb-report_<since>_<until>.html)")
    report.add_argument("--raw-root", help="raw store, where reports go by default (TTB_RAW_ROOT)")
    report.add_argument("--lakehouse-root", help="Delta lakehouse root (TTB_LAKEHOUSE_ROOT)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "parse":
            from ttb_spark.registry import parse

            return parse.run_command(args)
        if args.command == "simulate-registry":
            from ttb_spark.registry import simulator

            return simulator.run_command(args)
        if args.command == "tables":
            from ttb_spark import docs

            sys.stdout.write(docs.data_dictionary())
            return 0
        if args.command == "settings":
            from ttb_spark import docs

            sys.stdout.write(docs.settings_markdown())
            return 0
        if args.command == "relayout":
            return _relayout(args)
        if args.command == "adopt-catalog":
            from ttb_spark.ops import adopt

            return adopt.run_command(args.source, args.env)
        if args.command == "report":
            from ttb_spark import report

            return report.run_command(args)
        from ttb_spark import console
        from ttb_spark.ops import runner

        console.configure(quiet=args.quiet)
        return runner.run_from_args(args)
    except SettingsError as exc:
        sys.stderr.write(f"ttb_spark {args.command}: error: {exc}\n")
        return 2


def _relayout(args: argparse.Namespace) -> int:
    """``ttb_spark relayout TABLE...``: :func:`ttb_spark.lakehouse.relayout` on each table named, all of
    them checked (declared, existing) before the first is rewritten."""
    from ttb_spark import lakehouse, tables
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    specs = tables.BY_NAME
    unknown = [t for t in args.tables if t not in specs]
    if unknown:
        raise SettingsError(f"unknown table {', '.join(map(repr, unknown))}; one of {', '.join(specs)}")
    settings = load_settings(args.env)
    root = settings.pipeline.lakehouse_root
    spark = get_spark(settings, app_name="ttb_spark-relayout")
    missing = [t for t in args.tables if not lakehouse.table_exists(spark, specs[t], root)]
    if missing:
        raise SettingsError("no table to rewrite: " + ", ".join(f"{t} does not exist at {lakehouse.location(specs[t], root)}" for t in missing))
    for table in dict.fromkeys(args.tables):
        rows = lakehouse.relayout(spark, specs[table], root)
        sys.stdout.write(f"{table}: " + ("layout already matches its spec" if rows is None else f"rewritten, {rows} rows") + "\n")
    return 0


def _job_entry(job: str) -> Callable[[], None]:
    """A console-script entry point running ``job`` with ``sys.argv[1:]`` (Databricks python_wheel_task)."""

    def entry() -> None:
        sys.exit(main([job, *sys.argv[1:]]))

    entry.__name__ = entry.__qualname__ = f"{job}_job"
    entry.__doc__ = f"Entry point of the `{job}` job: {STAGES[job]}."
    return entry


pipeline_job = _job_entry("pipeline")
walk_job = _job_entry("walk")
raw_job = _job_entry("raw")
analytics_job = _job_entry("analytics")
scrape_job = _job_entry("scrape")
bronze_job = _job_entry("bronze")
silver_job = _job_entry("silver")
gold_job = _job_entry("gold")
reference_job = _job_entry("reference")
discover_job = _job_entry("discover")
daily_job = _job_entry("daily")
reconcile_job = _job_entry("reconcile")
images_job = _job_entry("images")
maintain_job = _job_entry("maintain")


if __name__ == "__main__":
    sys.exit(main())
