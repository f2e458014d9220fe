"""Partitions: one per (receipt date, method_type), keyed as the original pipeline did.

``method_type`` is ``<receipt method>-<data type>`` (``001-cola-detail``); the key is
``<YYYY-MM-DD>|<method_type>`` (``2024-01-02|001-cola-detail``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable, Iterator

from ttb_spark.settings import DATA_TYPES, RECEIPT_METHODS, SettingsError


class ReconciliationError(RuntimeError):
    """Counts of one partition's pages that must agree do not: a manifest and its _COMPLETE marker
    (bronze), bronze pages and silver's rows plus rejects (silver). Names the partition and the counts."""


@dataclass(frozen=True, order=True)
class Partition:
    """One receipt date x receipt method x data type."""

    receipt_date: date
    receipt_method: str
    data_type: str

    def __post_init__(self) -> None:
        if self.receipt_method not in RECEIPT_METHODS:
            raise SettingsError(f"invalid partition: unknown receipt method {self.receipt_method!r}")
        if self.data_type not in DATA_TYPES:
            raise SettingsError(f"invalid partition: unknown data type {self.data_type!r}")

    @property
    def method_type(self) -> str:
        return f"{self.receipt_method}-{self.data_type}"

    @property
    def key(self) -> str:
        return f"{self.receipt_date.isoformat()}|{self.method_type}"

    @classmethod
    def from_key(cls, key: str) -> Partition:
        """Parse ``2024-01-02|001-cola-detail``; raises SettingsError naming the problem."""
        try:
            day, method_type = key.split("|")
            method, data_type = method_type.split("-", 1)
            return cls(date.fromisoformat(day), method, data_type)
        except (ValueError, TypeError) as exc:
            raise SettingsError(
                f"invalid --partition {key!r}: expected YYYY-MM-DD|<method>-<data type>, "
                f"e.g. 2024-01-02|001-cola-detail ({exc})"
            ) from None


def date_range(start: date, end: date) -> Iterator[date]:
    """Every date from ``start`` to ``end`` inclusive."""
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def partitions_for(start: date, end: date, receipt_methods: Iterable[str], data_types: Iterable[str]) -> list[Partition]:
    """All partitions of a date range, sorted by date, method, data type."""
    methods, types = list(receipt_methods), list(data_types)
    return sorted(Partition(d, m, t) for d in date_range(start, end) for m in methods for t in types)


def chunks(start: date, end: date, days: int) -> Iterator[tuple[date, date]]:
    """Split a date range into consecutive chunks of at most ``days`` days (backfills)."""
    while start <= end:
        stop = min(end, start + timedelta(days=days - 1))
        yield start, stop
        start = stop + timedelta(days=1)
