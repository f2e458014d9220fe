"""What a job run covers (its scope): the small core every stage and the runner import, so no stage
imports the runner that orchestrates it.

A job run's :class:`Scope` is decided once, from the command line and the settings (``ops.runner``);
each stage takes the typed part of it that it means:

- :class:`ReceiptDates`: partitions, receipt date x receipt method x data type: scrape, bronze and
  reconcile, and silver and gold when they reprocess a range;
- :class:`CompletedDates`: the dates the registry completed (approved, withdrew) records on, as its
  search lists them: discover;
- :class:`ChangesSince`: what changed since each stage's watermarks, whatever the receipt dates: silver
  and gold of ``--since-last-run`` and of the daily job;
- :class:`Whole`: no range, the registry's lists or the lakehouse as a whole: reference and maintain.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import date
from typing import TYPE_CHECKING, Any, Self

from ttb_spark.partitions import Partition, date_range, partitions_for
from ttb_spark.settings import RECEIPT_METHODS

if TYPE_CHECKING:
    from ttb_spark.settings import Settings


def new_run_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class _Selection:
    """A range of dates x receipt methods x data types, and how to run it: ``force`` redoes complete partitions,
    the range's last ``rescan_days`` dates are redone too, ``only``: just that partition."""

    start: date
    end: date
    receipt_methods: tuple[str, ...]
    data_types: tuple[str, ...]
    run_id: str = field(default_factory=new_run_id)
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
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        """The range, receipt methods and data types the settings ask for."""
        p = settings.pipeline
        return cls(p.partition_start_date, p.end_date, tuple(p.receipt_methods), tuple(p.data_types), **kwargs)


@dataclass(frozen=True)
class ReceiptDates(_Selection):
    """Receipt dates x receipt methods x data types: the partitions a stage covers."""


@dataclass(frozen=True)
class CompletedDates:
    """Completed dates ``start..end`` to list by search; the withdrawal sweep re-lists days before ``start``,
    never before ``history_start`` (the first date the lakehouse holds), and only when ``sweep`` (a run's
    first chunk: its later chunks' days were listed by the chunks before them)."""

    start: date
    end: date
    history_start: date
    run_id: str = field(default_factory=new_run_id)
    sweep: bool = True
    received: tuple[date, date] | None = None  # a backfill by search keeps only the IDs received in these dates


@dataclass(frozen=True)
class ChangesSince:
    """What changed since each stage's watermarks, on any receipt date and by every receipt method; ``as_of``:
    the last date the run covers (gold's recency checks measure from it)."""

    as_of: date
    run_id: str = field(default_factory=new_run_id)
    receipt_methods: tuple[str, ...] = tuple(RECEIPT_METHODS)


@dataclass(frozen=True)
class Whole:
    """No range: the stage covers the registry's lists or the lakehouse as a whole."""

    run_id: str = field(default_factory=new_run_id)


@dataclass(frozen=True)
class Scope(_Selection):
    """What one job run covers, as its command line and settings ask: a range of dates (receipt dates, or
    completed dates for the discovery jobs) x receipt methods x data types, and how to run it. The runner
    splits it into chunks and hands each stage its typed part (:meth:`receipt_dates`, :meth:`completed_dates`,
    :meth:`changes`, :meth:`whole`)."""

    since_last_run: bool = False  # silver/gold: process what changed since their watermarks, not the range
    history_start: date | None = None  # the settings' partition start date before --since-last-run or chunks narrowed the range
    sweep: bool = True  # discovery re-lists the withdrawal sweep's days before the range: only a run's first chunk does
    received: tuple[date, date] | None = None  # a backfill by search: its chunks list completed dates, it keeps these receipt dates

    def receipt_dates(self) -> ReceiptDates:
        return ReceiptDates(**{f.name: getattr(self, f.name) for f in fields(_Selection)})

    def completed_dates(self) -> CompletedDates:
        history = self.history_start if self.history_start is not None else self.start
        return CompletedDates(self.start, self.end, history, self.run_id, self.sweep, self.received)

    def changes(self) -> ChangesSince:
        return ChangesSince(self.end, self.run_id)

    def whole(self) -> Whole:
        return Whole(self.run_id)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        return super().from_settings(settings, **{"history_start": settings.pipeline.partition_start_date, **kwargs})

