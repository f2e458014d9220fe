"""Runs jobs: turns arguments into settings and a scope, then runs each stage in order.

A stage is a module with ``run(spark, settings, scope) -> dict[str, int]`` (its counts).
Jobs are lists of stages; the runner owns the Spark session, the embedded simulator and
progress output, so stage code stays a thin read -> transform -> write.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterator

from ttb_spark.partitions import Partition, date_range, partitions_for
from ttb_spark.settings import Settings, SettingsError, load_settings

JOBS: dict[str, tuple[str, ...]] = {
    "pipeline": ("scrape", "bronze", "silver", "gold"),
    "raw": ("scrape", "bronze"),
    "analytics": ("silver", "gold"),
    "scrape": ("scrape",),
    "bronze": ("bronze",),
    "silver": ("silver",),
    "gold": ("gold",),
    "reference": ("reference",),
}


@dataclass(frozen=True)
class Scope:
    """What one job run covers: a receipt-date range x receipt methods x data types."""

    start: date
    end: date
    receipt_methods: tuple[str, ...]
    data_types: tuple[str, ...]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    force: bool = False
    rescan_days: int = 0
    only: tuple[Partition, ...] = ()

    @property
    def dates(self) -> list[date]:
        return list(date_range(self.start, self.end))

    @property
    def method_types(self) -> list[str]:
        return [f"{m}-{t}" for m in self.receipt_methods for t in self.data_types]

    def partitions(self) -> list[Partition]:
        """The partitions in scope (just the one given with ``--partition`` when set)."""
        if self.only:
            return list(self.only)
        return partitions_for(self.start, self.end, self.receipt_methods, self.data_types)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Scope:
        p = settings.pipeline
        return cls(p.partition_start_date, p.end_date, tuple(p.receipt_methods), tuple(p.data_types), **kwargs)


def settings_from_args(args: argparse.Namespace) -> tuple[Settings, Scope]:
    """Settings (profile + environment + flags) and the scope the flags ask for."""
    if getattr(args, "date", None) and (args.start or args.end):
        raise SettingsError("use either --date or --start/--end, not both")
    only: tuple[Partition, ...] = ()
    start, end = (args.date, args.date) if args.date else (args.start, args.end)
    methods, types = args.receipt_methods, args.data_types
    if args.partition:
        part = Partition.from_key(args.partition)
        only, start, end, methods, types = (part,), part.receipt_date, part.receipt_date, part.receipt_method, part.data_type
    if start and not end:
        end = start
    overrides = {
        "pipeline": {
            "partition_start_date": start,
            "partition_end_date": end,
            "receipt_methods": methods,
            "data_types": types,
            "raw_root": args.raw_root,
            "lakehouse_root": args.lakehouse_root,
            "backfill_chunk_days": getattr(args, "chunk_days", None),
        },
        "extraction": {"registry_base_url": args.registry_url, "use_simulator": args.simulator},
    }
    rescan = getattr(args, "rescan_days", 0) or 0
    if rescan < 0:
        raise SettingsError(f"--rescan-days must be >= 0, got {rescan}")
    settings = load_settings(args.env, overrides)
    scope = Scope.from_settings(settings, force=bool(getattr(args, "force", False)), rescan_days=rescan, only=only)
    return settings, scope


@contextlib.contextmanager
def registry(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at the registry to use: the embedded loopback simulator when asked for."""
    if not settings.extraction.use_simulator:
        yield settings
        return
    from ttb_spark import simulator

    with simulator.serving() as base_url:
        extraction = settings.extraction.model_copy(update={"registry_base_url": base_url})
        yield settings.model_copy(update={"extraction": extraction})


def progress(message: str) -> None:
    """One progress line on stderr (stdout stays for results)."""
    sys.stderr.write(f"[ttb_spark {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def run_stage(name: str, spark: Any, settings: Settings, scope: Scope) -> dict[str, int]:
    module = importlib.import_module(f"ttb_spark.{name}")
    started = time.monotonic()
    progress(f"{name}: start {scope.start}..{scope.end} ({len(scope.partitions())} partitions)")
    counts = module.run(spark, settings, scope)
    progress(f"{name}: done in {time.monotonic() - started:.1f}s {counts}")
    return counts


def run_job(job: str, spark: Any, settings: Settings, scope: Scope) -> dict[str, dict[str, int]]:
    """Run every stage of ``job`` in order; returns counts per stage."""
    results: dict[str, dict[str, int]] = {}
    with registry(settings) as live:
        for stage in JOBS[job]:
            results[stage] = run_stage(stage, spark, live, scope)
    return results


def run_from_args(args: argparse.Namespace) -> int:
    settings, scope = settings_from_args(args)
    from ttb_spark.spark import get_spark

    spark = get_spark(settings, app_name=f"ttb_spark-{args.command}")
    started = time.monotonic()
    results = run_job(args.command, spark, settings, scope)
    progress(f"{args.command}: finished in {time.monotonic() - started:.1f}s")
    for stage, counts in results.items():
        sys.stdout.write(f"{stage:<10} " + " ".join(f"{k}={v}" for k, v in counts.items()) + "\n")
    return 0
