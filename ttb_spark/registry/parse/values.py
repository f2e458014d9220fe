"""Value cleaning both record pages share: :func:`clean`, :func:`iso_date`, :func:`normalise_label`,
lists, the TTB ID and the fields derived from it, an address's city/state/zip; and :class:`ParseError`,
raised when a page cannot be read as a record."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Iterable

from ttb_spark.registry.ttb_id import InvalidTTBId, TTBId

_DERIVED = ("receipt_date", "receipt_method", "sequence")


class ParseError(Exception):
    """A page that cannot be read as the record asked for; ``reason`` is a snake_case code."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_PLACEHOLDERS = frozenset({"(required)", "(if any)", "(wine only)", "(if on label)"})
_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ITEM_NUMBER = re.compile(r"^\d+[a-z]?\.\s*")
_TRAILING_PAREN = re.compile(r"\s*\((?:if any|required|wine only|if on label|check applicable box\(es\))\)\s*$")


def clean(value: str | None) -> str | None:
    """Whitespace collapsed (``&nbsp;`` included), stripped; empty or a form placeholder -> None."""
    if not value:
        return None
    text = " ".join(value.split())
    if not text or (text[0] == "(" and text.lower() in _PLACEHOLDERS):
        return None
    return text


def iso_date(value: str | None) -> str | None:
    """``MM/DD/YYYY`` -> ``YYYY-MM-DD``; None when empty; ParseError when not a real date."""
    text = clean(value)
    if text is None:
        return None
    found = _DATE.fullmatch(text)
    if not found:
        raise ParseError("unknown_layout", f"not a MM/DD/YYYY date: {text!r}")
    try:
        return date(int(found.group(3)), int(found.group(1)), int(found.group(2))).isoformat()
    except ValueError:
        raise ParseError("unknown_layout", f"not a calendar date: {text!r}") from None


def normalise_label(text: str | None) -> str:
    """A field label as a lookup key: lower case, single spaces, no item number/colon/placeholder."""
    key = " ".join((text or "").split()).lower()
    key = _ITEM_NUMBER.sub("", key)
    key = _TRAILING_PAREN.sub("", key)
    return key.replace(" :", ":").rstrip(":").rstrip()


def _split_list(values: Iterable[str | None], separator: str | None = None) -> list[str]:
    out: list[str] = []
    for value in values:
        parts = value.split(separator) if (value and separator) else [value]
        for part in parts:
            text = clean(part)
            if text is not None:
                out.append(text)
    return out


def _ttb_id(value: str | None) -> TTBId:
    text = clean(value)
    if text is None:
        raise ParseError("unknown_layout", "no TTB ID on the page")
    try:
        return TTBId(text)
    except InvalidTTBId as exc:
        raise ParseError("unknown_layout", str(exc)) from None


def _derived(ttb: TTBId) -> dict[str, Any]:
    return {
        "receipt_date": ttb.receipt_date.isoformat(),
        "receipt_method": ttb.receipt_method,
        "sequence": ttb.sequence,
    }


_CITY_STATE_ZIP = re.compile(r"^(.*?)[\s,]+([A-Za-z]{2})\s+(\d{5}(?:-?\d{4})?)$")


def city_state_zip(raw: str) -> tuple[str | None, str | None, str | None] | None:
    """Split an address's last line: ``CITY,&nbsp;ST&nbsp;ZIP`` (detail page), ``CITY`` / ``ST`` /
    ``ZIP`` on three source lines (certificate), else ``CITY, ST 12345``; None when it is none."""
    if ",\xa0" in raw:
        head, _, tail = raw.rpartition(",")
        return (clean(head), *_state_zip(tail.split()))
    parts = [part for part in (clean(line) for line in raw.split("\n")) if part]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    found = _CITY_STATE_ZIP.match(clean(raw) or "")
    return (clean(found.group(1)), found.group(2), found.group(3)) if found else None


def _state_zip(tokens: list[str]) -> tuple[str | None, str | None]:
    if not tokens:
        return None, None
    if len(tokens) == 1:
        return (None, tokens[0]) if tokens[0][:1].isdigit() else (tokens[0], None)
    return tokens[0], " ".join(tokens[1:])
