"""The 14-digit TTB ID (``YY JJJ RRR SSSSSS``) as a validated value type.

Every ID is validated here before it reaches a URL, an S3 key or a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

_FORMAT = re.compile(r"^\d{14}$")
RECEIPT_METHOD_CODES = ("000", "001", "002", "003")
_PIVOT = 90  # two-digit years >= 90 are 19xx; the registry holds records from the 1990s on


class InvalidTTBId(ValueError):
    """A string that is not a well-formed TTB ID."""


def _century_year(yy: int) -> int:
    return 1900 + yy if yy >= _PIVOT else 2000 + yy


@dataclass(frozen=True, order=True)
class TTBId:
    """A validated TTB ID; ``str(id)`` is the 14-digit form."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _FORMAT.match(self.value):
            raise InvalidTTBId(f"TTB ID must be exactly 14 digits, got {self.value!r}")
        year = _century_year(int(self.value[:2]))
        julian = int(self.value[2:5])
        days_in_year = (date(year + 1, 1, 1) - date(year, 1, 1)).days
        if not 1 <= julian <= days_in_year:
            raise InvalidTTBId(f"TTB ID {self.value} has Julian day {julian:03d}, not a day of {year}")
        if self.value[5:8] not in RECEIPT_METHOD_CODES:
            raise InvalidTTBId(f"TTB ID {self.value} has unknown receipt method {self.value[5:8]}")
        if int(self.value[8:]) == 0:
            raise InvalidTTBId(f"TTB ID {self.value} has sequence 000000")

    @classmethod
    def build(cls, receipt_date: date, receipt_method: str, sequence: int) -> TTBId:
        """The ID received on ``receipt_date`` by ``receipt_method`` with ``sequence``."""
        if not 1 <= sequence <= 999_999:
            raise InvalidTTBId(f"sequence must be 1..999999, got {sequence}")
        yday = receipt_date.timetuple().tm_yday
        return cls(f"{receipt_date.year % 100:02d}{yday:03d}{receipt_method}{sequence:06d}")

    @property
    def receipt_date(self) -> date:
        year = _century_year(int(self.value[:2]))
        return date(year, 1, 1) + timedelta(days=int(self.value[2:5]) - 1)

    @property
    def receipt_method(self) -> str:
        return self.value[5:8]

    @property
    def sequence(self) -> int:
        return int(self.value[8:])

    def __str__(self) -> str:
        return self.value


def receipt_date_column(ttb_id: str = "ttb_id") -> Column:
    """:attr:`TTBId.receipt_date` as a Spark column over a column of validated IDs (the same two-digit year
    pivot and Julian day), for code that derives the date on executors."""
    from pyspark.sql import functions as F

    century = F.when(F.substring(ttb_id, 1, 2) >= f"{_PIVOT:02d}", "19").otherwise("20")
    return F.to_date(F.concat(century, F.substring(ttb_id, 1, 5)), "yyyyDDD")


def is_valid_ttb_id(value: object) -> bool:
    """True when ``value`` is a well-formed TTB ID string."""
    try:
        TTBId(value)  # type: ignore[arg-type]
    except InvalidTTBId:
        return False
    return True
