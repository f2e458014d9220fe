"""What a job run covers (its scope) and its progress lines: the small core every stage and the runner
import, so no stage imports the runner that orchestrates it.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from ttb_spark.partitions import Partition, date_range, partitions_for

if TYPE_CHECKING:
    from ttb_spark.settings import Settings


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
    since_last_run: bool = False  # silver/gold: process what changed since their watermarks, not the range
    history_start: date | None = None  # the settings' partition start date before --since-last-run or chunks narrowed the range
    sweep: bool = True  # discovery re-lists the withdrawal sweep's days before the range: only a run's first chunk does

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
        return cls(p.partition_start_date, p.end_date, tuple(p.receipt_methods), tuple(p.data_types),
                   **{"history_start": p.partition_start_date, **kwargs})


def progress(message: str) -> None:
    """One progress line on stderr (stdout stays for results)."""
    sys.stderr.write(f"[ttb_spark {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()
