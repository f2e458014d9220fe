"""The entry points: :func:`parse_page` (classify, then extract a record page; never raises for a bad
page), :func:`parse_detail` and :func:`parse_certificate` (the record, or :class:`ParseError` with a
reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ttb_spark.registry.parse.certificate import certificate_items, certificate_record
from ttb_spark.registry.parse.classification import classify, decode
from ttb_spark.registry.parse.detail import detail_items, detail_record
from ttb_spark.registry.parse.tree import _tree
from ttb_spark.registry.parse.values import ParseError


@dataclass(frozen=True)
class ParseResult:
    """A page's kind and, for detail/certificate pages, its record."""

    kind: str
    reason: str | None
    detail: str | None
    record: dict | None


def _require(page: bytes | str, kind: Literal["detail", "certificate"]) -> str:
    text = decode(page)
    found = classify(text, expected_kind=kind)
    if found.kind != kind:
        raise ParseError(found.reason or found.kind, found.detail)
    return text


def _record(text: str, kind: str) -> dict:
    if kind == "detail":
        return detail_record(detail_items(_tree(text, kind)))
    return certificate_record(certificate_items(_tree(text, kind)))


def parse_detail(page: bytes | str) -> dict:
    """The COLA detail record (fields :data:`DETAIL_FIELDS`); ParseError with a reason otherwise."""
    return _record(_require(page, "detail"), "detail")


def parse_certificate(page: bytes | str) -> dict:
    """The certificate record (fields :data:`CERTIFICATE_FIELDS`); ParseError with a reason otherwise."""
    return _record(_require(page, "certificate"), "certificate")


def parse_page(
    page: bytes | str,
    expected_ttb_id: str | None = None,
    expected_kind: Literal["detail", "certificate"] | None = None,
) -> ParseResult:
    """Classify and, for record pages, extract; a page that cannot be read is ``unexpected`` with
    its reason, never a partial record. Never raises for a bad page."""
    text = decode(page)
    found = classify(text, expected_ttb_id, expected_kind)
    if found.kind not in ("detail", "certificate"):
        return ParseResult(found.kind, found.reason, found.detail, None)
    try:
        record = _record(text, found.kind)
    except ParseError as exc:
        return ParseResult("unexpected", exc.reason, exc.detail, None)
    if expected_ttb_id is not None and record["ttb_id"] != str(expected_ttb_id):
        return ParseResult("unexpected", "wrong_ttb_id", f"page shows {record['ttb_id']}", None)
    return ParseResult(found.kind, None, None, record)
