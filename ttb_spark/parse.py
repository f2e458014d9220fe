"""Classify registry pages and extract COLA records from them (pure: no Spark, no network).

Two page layouts carry records: the COLA detail page and the printable certificate (TTB F 5100.31).
Everything else is the registry's error page (``not_found``) or ``unexpected`` with a stable reason.
Fields are found by their label text, never by position, so reordered, missing or extra rows parse.

Layers: :func:`classify` looks at the page text only (cheap string tests); the extractors walk an
lxml tree into raw label -> text items (``detail_items`` / ``certificate_items``); the record
builders turn raw items into the contract's typed record. Silver applies this to millions of pages,
so patterns are compiled once and the tree is parsed once per page.
"""

from __future__ import annotations

import codecs
import re
import sys
import threading
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Literal

from lxml import etree

from ttb_spark.ttb_id import InvalidTTBId, TTBId

if TYPE_CHECKING:
    import argparse

PageKind = Literal["detail", "certificate", "not_found", "unexpected"]
REASONS = (
    "empty",
    "truncated",
    "session_timeout",
    "captcha",
    "wrong_ttb_id",
    "wrong_page_kind",
    "unknown_layout",
    "not_html",
)

_DERIVED = ("receipt_date", "receipt_method", "sequence")
DETAIL_FIELDS: tuple[str, ...] = (
    "ttb_id", "status", "vendor_code", "serial_number", "class_type_description", "origin_description",
    "brand_name", "fanciful_name", "type_of_application", "for_sale_in", "total_bottle_capacity",
    "grape_varietals", "wine_vintage", "formula", "approval_date", "qualifications", "permit_number",
    "applicant_name", "applicant_street", "applicant_city", "applicant_state", "applicant_zip",
    "other_permits", "formula_sop_no", "lab_no", "lab_date",
) + _DERIVED
CERTIFICATE_FIELDS: tuple[str, ...] = (
    "ttb_id", "rep_id", "class_type_code", "origin_code", "permit_numbers", "source_of_product",
    "serial_number", "product_type", "brand_name", "fanciful_name", "applicant_name", "applicant_street",
    "applicant_city", "applicant_state", "applicant_zip", "dba_names", "mailing_address", "formula",
    "grape_varietals", "wine_appellation", "phone_number", "email", "application_types", "for_sale_in",
    "total_bottle_capacity", "resubmission_ttb_id", "embossed_text", "application_date", "issued_date",
    "qualifications", "status", "class_type_description", "expiration_date", "labels", "net_contents",
    "alcohol_content", "wine_vintage",
) + _DERIVED
LABEL_FIELDS: tuple[str, ...] = ("image_type", "width_inches", "height_inches", "image_url", "filename")


@dataclass(frozen=True)
class Classification:
    """What a page is; ``reason`` is one of :data:`REASONS` when ``kind`` is ``unexpected``."""

    kind: str
    reason: str | None
    detail: str | None = None


@dataclass(frozen=True)
class ParseResult:
    """A page's kind and, for detail/certificate pages, its record."""

    kind: str
    reason: str | None
    detail: str | None
    record: dict | None


class ParseError(Exception):
    """A page that cannot be read as the record asked for; ``reason`` is a snake_case code."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- decoding ---------------------------------------------------------------------------------

def _c1_passthrough(err: UnicodeDecodeError) -> tuple[str, int]:
    """Bytes windows-1252 leaves undefined map to the same code point, as browsers do."""
    return chr(err.object[err.start]), err.start + 1


codecs.register_error("ttb_spark_c1", _c1_passthrough)


def decode(page: bytes | str) -> str:
    """Page text. Bytes are labelled iso-8859-1; decoded as browsers do (WHATWG: windows-1252,
    undefined bytes as their Latin-1 code points), which equals iso-8859-1 outside 0x80-0x9F."""
    if isinstance(page, str):
        return page
    return bytes(page).decode("cp1252", "ttb_spark_c1")


# --- classification ---------------------------------------------------------------------------

_DETAIL_MARK = ("<h1>COLA Detail</h1>", re.compile(r"<h1>\s*COLA\s+Detail\s*</h1>", re.I))
_CERT_MARK = (
    "CERTIFICATION/EXEMPTION OF LABEL/BOTTLE APPROVAL",
    re.compile(r"CERTIFICATION/EXEMPTION\s+OF\s+LABEL/BOTTLE\s+APPROVAL", re.I),
)
_ERROR_MARK = re.compile(r"<title>[^<]*Error Message[^<]*</title>|<h1>\s*Error\s*</h1>", re.I)
_NOT_FOUND_MARK = re.compile(r"Unable\s+to\s+process\s+request", re.I)
_TIMEOUT_MARK = re.compile(
    r"\d+\s*-?\s*minute\s+time-?out|session\s+(?:has\s+)?(?:timed\s*out|expired)|session\s+time-?out\s+has\s+occurred",
    re.I,
)
_CAPTCHA_MARK = re.compile(
    r"captcha|are\s+you\s+a\s+(?:robot|human)|verify\s+(?:that\s+)?you\s+are\s+(?:a\s+)?human|unusual\s+traffic"
    r"|bot\s+(?:detection|protection|wall)|cf-challenge|cf-browser-verification|attention\s+required!"
    r"|just\s+a\s+moment\.\.\.|requested\s+url\s+was\s+rejected|request\s+rejected|access\s+denied"
    r"|incapsula|perimeterx|too\s+many\s+requests",
    re.I,
)
_HTML_START = re.compile(r"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|title|meta)\b", re.I | re.S)
_DETAIL_ID = re.compile(r"TTB\s+ID:\s*</strong>(?:\s|&nbsp;|<(?!/td\b)[^>]*>)*([^<]*)", re.I)
_CERT_ID = re.compile(r">\s*TTB\s+ID\s*</div>\s*<div[^>]*>(?:\s|&nbsp;)*([^<]*)", re.I)
_HTML_END = re.compile(r"</html\s*>", re.I)
_TAIL = 512


def _find(text: str, mark: tuple[str, re.Pattern[str]], exact: bool) -> int:
    """Where a marker starts: its exact spelling by ``str.find`` (fast), or by the tolerant pattern."""
    if exact:
        return text.find(mark[0])
    found = mark[1].search(text)
    return found.start() if found else -1


def _page_kind(text: str) -> tuple[str | None, int]:
    """``detail``/``certificate`` and where its marker starts; exact spellings are tried first."""
    for exact in (True, False):
        at = _find(text, _DETAIL_MARK, exact)
        if at >= 0:
            return "detail", at
        at = _find(text, _CERT_MARK, exact)
        if at >= 0:
            return "certificate", at
    return None, -1


def _complete(text: str) -> bool:
    """True when the page ends with its closing ``</html>`` (the server's last tag)."""
    return _HTML_END.search(text, max(0, len(text) - _TAIL)) is not None


def _unexpected(reason: str, detail: str | None = None) -> Classification:
    return Classification("unexpected", reason, detail)


def classify(
    page: bytes | str,
    expected_ttb_id: str | None = None,
    expected_kind: Literal["detail", "certificate"] | None = None,
) -> Classification:
    """Say what a fetched page is, from its text alone (no tree).

    ``expected_ttb_id`` / ``expected_kind`` turn a well-formed record page for another ID or of the
    other layout into ``unexpected`` (``wrong_ttb_id`` / ``wrong_page_kind``).
    """
    text = decode(page)
    if not text.strip():
        return _unexpected("empty", "no content")
    kind, at = _page_kind(text)
    if kind is not None:
        id_mark = _DETAIL_ID if kind == "detail" else _CERT_ID
    elif _ERROR_MARK.search(text):
        if _TIMEOUT_MARK.search(text):
            return _unexpected("session_timeout", "registry session timeout page")
        if not _complete(text):
            return _unexpected("truncated", "error page without closing </html>")
        if _NOT_FOUND_MARK.search(text):
            return Classification("not_found", None)
        return _unexpected("unknown_layout", "error page without 'Unable to process request'")
    else:
        if _TIMEOUT_MARK.search(text):
            return _unexpected("session_timeout", "registry session timeout page")
        if _CAPTCHA_MARK.search(text):
            return _unexpected("captcha", "CAPTCHA or bot wall")
        if "\x00" in text or not _HTML_START.match(text):
            return _unexpected("not_html", f"starts with {text.lstrip()[:20]!r}")
        if not _complete(text):
            return _unexpected("truncated", "no closing </html>")
        return _unexpected("unknown_layout", "neither a COLA detail, certificate nor error page")
    if not _complete(text):
        return _unexpected("truncated", f"{kind} page without closing </html>")
    found = id_mark.search(text, at)
    page_id = " ".join(found.group(1).split()) if found else ""
    if not (len(page_id) == 14 and page_id.isdigit()):
        return _unexpected("unknown_layout", f"{kind} page without a TTB ID (reads {page_id[:40]!r})")
    if expected_ttb_id is not None and page_id != str(expected_ttb_id):
        return _unexpected("wrong_ttb_id", f"page shows {page_id}, expected {expected_ttb_id}")
    if expected_kind is not None and kind != expected_kind:
        return _unexpected("wrong_page_kind", f"{kind} page, expected {expected_kind}")
    return Classification(kind, None)


# --- shared text helpers ----------------------------------------------------------------------

_PLACEHOLDERS = frozenset({"(required)", "(if any)", "(wine only)", "(if on label)"})
_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ITEM_NUMBER = re.compile(r"^\d+[a-z]?\.\s*")
_TRAILING_PAREN = re.compile(r"\s*\((?:if any|required|wine only|if on label|check applicable box\(es\))\)\s*$")
_DIMENSIONS = re.compile(
    r"Actual\s+Dimensions:\s*([\d.]+)\s*inch(?:es)?\s*W\s*X\s*([\d.]+)\s*inch(?:es)?\s*H", re.I
)
_FILENAME = re.compile(r"[?&]filename=([^&]*)")
_STATUS_PREFIX = re.compile(r"^THE\s+STATUS\s+IS\s+", re.I)
_USED_ON_LABEL = re.compile(r"\(\s*Used\s+on\s+label\s*\)", re.I)


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


# --- detail page ------------------------------------------------------------------------------

_DETAIL_LABELS = {
    "ttb id": "ttb_id",
    "status": "status",
    "vendor code": "vendor_code",
    "serial #": "serial_number",
    "serial number": "serial_number",
    "class/type code": "class_type_description",
    "class/type": "class_type_description",
    "origin code": "origin_description",
    "origin": "origin_description",
    "brand name": "brand_name",
    "fanciful name": "fanciful_name",
    "type of application": "type_of_application",
    "for sale in": "for_sale_in",
    "total bottle capacity": "total_bottle_capacity",
    "grape varietal(s)": "grape_varietals",
    "grape varietals": "grape_varietals",
    "grape varietal": "grape_varietals",
    "wine vintage": "wine_vintage",
    "formula": "formula",
    "formula/sop no.": "formula_sop_no",
    "formula/sop no": "formula_sop_no",
    "lab no./lab date": "lab_no_date",
    "lab no/lab date": "lab_no_date",
    "lab no.": "lab_no",
    "lab no": "lab_no",
    "lab date": "lab_date",
    "approval date": "approval_date",
    "qualifications": "qualifications",
    "plant registry/basic permit/brewers no (principal place of business)": "principal",
    "plant registry/basic permit/brewers no (other)": "other",
    "contact information": "contact",
}


@lru_cache(maxsize=4096)
def detail_label_key(label_text: str | None) -> str | None:
    """The detail field a ``<strong>`` label's text names, or None (memoised)."""
    return _DETAIL_LABELS.get(normalise_label(label_text))


_DETAIL_REQUIRED = ("ttb_id", "status", "brand_name", "class_type_description", "approval_date", "principal")


@dataclass
class DetailItems:
    """Raw text of a detail page by field: ``fields`` label key -> text after the label;
    ``qualifications`` one text per row; ``principal``/``other`` the row texts under those permit
    labels (None when the label is absent)."""

    fields: dict[str, str]
    qualifications: list[str]
    principal: list[str] | None
    other: list[str]


def detail_record(items: DetailItems) -> dict[str, Any]:
    """The detail record from a page's raw items; ParseError when a required label is missing."""
    f = items.fields
    present = set(f) | ({"principal"} if items.principal is not None else set())
    missing = [key for key in _DETAIL_REQUIRED if key not in present]
    if missing:
        raise ParseError("unknown_layout", f"detail page without {', '.join(missing)}")
    ttb = _ttb_id(f["ttb_id"])
    status = clean(f["status"])
    if status is None:
        raise ParseError("unknown_layout", "detail page with an empty status")
    principal = permit_blocks(items.principal or [])
    if not principal:
        raise ParseError("unknown_layout", "detail page without a principal permit")
    lab_no, lab_date = clean(f.get("lab_no")), f.get("lab_date")
    if "lab_no_date" in f:
        lab_no, lab_date = _split_lab(f["lab_no_date"])
    block = principal[0]
    applicant = _detail_applicant(block)
    record = {
        "ttb_id": str(ttb),
        "status": status,
        "vendor_code": clean(f.get("vendor_code")),
        "serial_number": clean(f.get("serial_number")),
        "class_type_description": clean(f.get("class_type_description")),
        "origin_description": clean(f.get("origin_description")),
        "brand_name": clean(f.get("brand_name")),
        "fanciful_name": clean(f.get("fanciful_name")),
        "type_of_application": clean(f.get("type_of_application")),
        "for_sale_in": clean(f.get("for_sale_in")),
        "total_bottle_capacity": clean(f.get("total_bottle_capacity")),
        "grape_varietals": _split_list([f.get("grape_varietals")], ","),
        "wine_vintage": clean(f.get("wine_vintage")),
        "formula": clean(f.get("formula")),
        "approval_date": iso_date(f.get("approval_date")),
        "qualifications": _split_list(items.qualifications),
        "permit_number": clean(block[0]),
        **applicant,
        "other_permits": _split_list(b[0] for b in permit_blocks(items.other)),
        "formula_sop_no": clean(f.get("formula_sop_no")),
        "lab_no": lab_no,
        "lab_date": iso_date(lab_date),
        **_derived(ttb),
    }
    return record


def _split_lab(value: str | None) -> tuple[str | None, str | None]:
    """``Lab No./Lab Date`` holds both in one cell: the date is the MM/DD/YYYY part."""
    text = clean(value)
    if text is None:
        return None, None
    found = _DATE.search(text)
    if not found:
        return text, None
    rest = (text[: found.start()] + " " + text[found.end():]).strip(" /-,")
    return clean(rest), found.group(0)


def permit_blocks(rows: list[str]) -> list[list[str]]:
    """Detail-page rows under a permit label grouped into permits (permit, name, street row(s),
    city row): a block ends at a blank row or after its city/state/zip row."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for row in rows:
        if not row.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        current.append(row.strip())
        if len(current) > 2 and city_state_zip(row) is not None:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


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


def _detail_applicant(block: list[str]) -> dict[str, str | None]:
    """Principal permit block rows: permit, name, street row(s), ``CITY,&nbsp;ST&nbsp;ZIP``."""
    name = clean(block[1]) if len(block) > 1 else None
    rest = block[2:]
    city = state = zip_code = None
    place = city_state_zip(rest[-1]) if len(rest) > 1 or (rest and ",\xa0" in rest[-1]) else None
    if place is not None:
        city, state, zip_code = place
        rest = rest[:-1]
    return {"applicant_name": name, "applicant_street": clean(" ".join(rest)), "applicant_city": city,
            "applicant_state": state, "applicant_zip": zip_code}


def _state_zip(tokens: list[str]) -> tuple[str | None, str | None]:
    if not tokens:
        return None, None
    if len(tokens) == 1:
        return (None, tokens[0]) if tokens[0][:1].isdigit() else (tokens[0], None)
    return tokens[0], " ".join(tokens[1:])


# --- certificate page -------------------------------------------------------------------------

_CERT_LABELS = {
    "ttb id": "ttb_id",
    "rep. id. no.": "rep_id",
    "rep. id. no": "rep_id",
    "ct": "class_type_code",
    "or": "origin_code",
    "source of product": "source_of_product",
    "serial number": "serial_number",
    "type of product": "product_type",
    "brand name": "brand_name",
    "fanciful name": "fanciful_name",
    "formula": "formula",
    "formula/sop no.": "formula",
    "formula/sop no": "formula",
    "grape varietal(s)": "grape_varietals",
    "grape varietal": "grape_varietals",
    "wine appellation": "wine_appellation",
    "phone number": "phone_number",
    "email address": "email",
    "type of application": "application_types",
    "date of application": "application_date",
    "date issued": "issued_date",
    "qualifications": "qualifications",
    "status": "status",
    "class/type description": "class_type_description",
    "expiration date": "expiration_date",
    "net contents": "net_contents",
    "alcohol content": "alcohol_content",
    "wine vintage date": "wine_vintage",
    "wine vintage": "wine_vintage",
}
_CERT_PREFIXES = (
    ("plant registry/basic permit/brewer", "permit_numbers"),
    ("name and address of applicant", "applicant"),
    ("mailing address", "mailing_address"),
)
_CERT_REQUIRED = ("ttb_id", "serial_number", "brand_name", "status")


@lru_cache(maxsize=4096)
def certificate_label_key(label_text: str | None) -> str | None:
    """The certificate field a ``label``/``boldlabel`` div's own text names, or None (memoised:
    the same few label texts recur on every page)."""
    key = normalise_label(label_text)
    field = _CERT_LABELS.get(key)
    if field is None:
        for prefix, name in _CERT_PREFIXES:
            if key.startswith(prefix):
                return name
    return field


@dataclass(frozen=True)
class Checkbox:
    """One form checkbox: ticked (bare ``checked`` attribute), its text lines and filled-in value."""

    checked: bool
    lines: tuple[str, ...]
    fill: str | None


@dataclass
class CertificateItems:
    """Raw content of a certificate by field: ``fields`` key -> lines of its data cell (split at
    ``<br>``); ``boxes`` key -> checkboxes; ``embossed`` item 15's lines after its instruction;
    ``labels`` (text of the block, image src) per label image."""

    fields: dict[str, list[str]]
    boxes: dict[str, list[Checkbox]]
    embossed: list[str]
    labels: list[tuple[str, str | None]]


def _joined(lines: list[str] | None, sep: str = " ") -> str | None:
    """Non-empty cleaned lines joined by ``sep``; None when there are none."""
    texts = [text for text in map(clean, lines or ()) if text]
    return sep.join(texts) if texts else None


def _ticked(boxes: list[Checkbox], field: str) -> str | None:
    ticked = [box for box in boxes if box.checked]
    if len(ticked) > 1:
        raise ParseError("unknown_layout", f"{len(ticked)} boxes ticked for {field}")
    value = clean(ticked[0].lines[0]) if ticked and ticked[0].lines else None
    return value.upper() if value else None


_BOX_HEAD = re.compile(r"^[^.\"_]*")


def _box_heading(box: Checkbox) -> str | None:
    first = clean(box.lines[0]) if box.lines else None
    if first is None:
        return None
    return clean(_BOX_HEAD.match(first).group(0))  # type: ignore[union-attr]


def certificate_record(items: CertificateItems) -> dict[str, Any]:
    """The certificate record from a page's raw items; ParseError when a required label is missing."""
    f, boxes = items.fields, items.boxes
    missing = [key for key in _CERT_REQUIRED if key not in f and key not in boxes]
    if missing:
        raise ParseError("unknown_layout", f"certificate without {', '.join(missing)}")
    ttb = _ttb_id(_joined(f["ttb_id"]))
    status = _joined(f["status"])
    if status is not None:
        status = clean(_STATUS_PREFIX.sub("", status).rstrip(".")) or None
    app_boxes = boxes.get("application_types", [])
    fills: dict[str, str | None] = {"for_sale_in": None, "total_bottle_capacity": None, "resubmission_ttb_id": None}
    for box in app_boxes:
        heading = " ".join(box.lines).upper()
        if "EXEMPTION" in heading:
            fills["for_sale_in"] = clean(box.fill)
        elif "CAPACITY" in heading or "DISTINCTIVE" in heading:
            fills["total_bottle_capacity"] = clean(box.fill)
        elif "RESUBMISSION" in heading:
            fills["resubmission_ttb_id"] = clean(box.fill)
    record = {
        "ttb_id": str(ttb),
        "rep_id": _joined(f.get("rep_id")),
        "class_type_code": _joined(f.get("class_type_code")),
        "origin_code": _joined(f.get("origin_code")),
        "permit_numbers": _split_list(f.get("permit_numbers", [])),
        "source_of_product": _ticked(boxes.get("source_of_product", []), "source of product"),
        "serial_number": _joined(f.get("serial_number")),
        "product_type": _ticked(boxes.get("product_type", []), "type of product"),
        "brand_name": _joined(f.get("brand_name")),
        "fanciful_name": _joined(f.get("fanciful_name")),
        **_certificate_applicant(f.get("applicant", [])),
        "mailing_address": _joined(f.get("mailing_address"), "\n"),
        "formula": _joined(f.get("formula")),
        "grape_varietals": _split_list(f.get("grape_varietals", []), ","),
        "wine_appellation": _joined(f.get("wine_appellation")),
        "phone_number": _joined(f.get("phone_number")),
        "email": _joined(f.get("email")),
        "application_types": [h for h in (_box_heading(b) for b in app_boxes if b.checked) if h],
        **fills,
        "embossed_text": _joined(items.embossed, "\n"),
        "application_date": iso_date(_joined(f.get("application_date"))),
        "issued_date": iso_date(_joined(f.get("issued_date"))),
        "qualifications": _split_list(f.get("qualifications", [])),
        "status": status,
        "class_type_description": _joined(f.get("class_type_description")),
        "expiration_date": iso_date(_joined(f.get("expiration_date"))),
        "labels": [_label(*label) for label in items.labels],
        "net_contents": _joined(f.get("net_contents")),
        "alcohol_content": _joined(f.get("alcohol_content")),
        "wine_vintage": _joined(f.get("wine_vintage")),
        **_derived(ttb),
    }
    return record


def _certificate_applicant(lines: list[str]) -> dict[str, Any]:
    """Item 8: name, street line(s), city / state / zip (one per source line), DBA lines."""
    dba: list[str] = []
    rows: list[str] = []
    for line in lines:
        used = _USED_ON_LABEL.search(line)
        if used:
            name = clean(line[: used.start()])
            if name:
                dba.append(name)
        elif line.strip():
            rows.append(line)
    name = clean(rows[0]) if rows else None
    city = state = zip_code = None
    streets = rows[1:]
    if len(rows) >= 2:
        place = city_state_zip(rows[-1])
        if place is not None:
            city, state, zip_code = place
            streets = rows[1:-1]
        elif len(rows) >= 3:
            city, streets = clean(rows[-1]), rows[1:-1]
    return {
        "applicant_name": name,
        "applicant_street": clean(" ".join(streets)),
        "applicant_city": city,
        "applicant_state": state,
        "applicant_zip": zip_code,
        "dba_names": dba,
    }


def _inches(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _label(text: str, src: str | None) -> dict[str, Any]:
    """One label image from its block's text (``<type> Actual Dimensions: W inches W X H inches H``)
    and its attachment ``src``; ``filename`` is the query value as served (not URL-decoded)."""
    at = text.find("Actual Dimensions")
    type_text = text[:at] if at >= 0 else text.split("Note:")[0]
    found = _DIMENSIONS.search(text, max(at, 0))
    width, height = (_inches(found.group(1)), _inches(found.group(2))) if found else (None, None)
    src = src.strip() if src else None  # kept byte for byte: file names may hold double spaces
    name = _FILENAME.search(src) if src else None
    return {
        "image_type": clean(type_text),
        "width_inches": width,
        "height_inches": height,
        "image_url": src or None,
        "filename": (name.group(1) or None) if name else None,
    }


# --- lxml tree walk (the hot path) ------------------------------------------------------------

_PARSERS = threading.local()


def _html_parser() -> etree.HTMLParser:
    """This thread's lxml parser (a parser serves one thread at a time; workers may use threads)."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    return parser


_DETAIL_END = 'class="actionbox"'


def _tree(text: str, kind: str) -> etree._Element:
    """The page's lxml tree; a detail page is parsed from its ``<h1>`` to its action box only (the
    masthead, navigation and footer are half the page and hold no field)."""
    if kind == "detail":
        start = _find(text, _DETAIL_MARK, True)
        if start < 0:
            start = _find(text, _DETAIL_MARK, False)
        end = text.find(_DETAIL_END, start) if start >= 0 else -1
        if end > 0:
            text = text[start:end]
    root = etree.fromstring(text, _html_parser())
    if root is None:
        raise ParseError("unknown_layout", "no HTML tree")
    return root


def _text(el: etree._Element) -> str:
    """An element's text, a ``<br>`` read as a line break (never gluing two lines' words)."""
    if el.tag == "br":
        return "\n"
    if not len(el):
        return el.text or ""
    return "\n".join(_lines(el))


def _lines_into(el: etree._Element, lines: list[str]) -> None:
    """Append ``el``'s text split at ``<br>`` to ``lines`` (the last line stays open)."""
    if el.text:
        lines[-1] += el.text
    for child in el:
        if child.tag == "br":
            lines.append("")
        elif isinstance(child.tag, str):
            _lines_into(child, lines)
        if child.tail:
            lines[-1] += child.tail


def _lines(el: etree._Element) -> list[str]:
    lines = [""]
    _lines_into(el, lines)
    return lines


def detail_items(root: etree._Element) -> DetailItems:
    """Raw items of a detail page tree: every ``<strong>Label:</strong>`` cell by its label."""
    fields: dict[str, str] = {}
    qualifications: list[str] = []
    principal: list[str] | None = None
    other: list[str] = []
    for strong in root.iter("strong"):
        key = detail_label_key(strong.text)
        if key is None or key in fields:
            continue
        if key == "qualifications":
            row = _ancestor(strong, "tr")
            following = row.getnext() if row is not None else None
            if following is not None:
                for table in following.iter("table"):
                    qualifications.extend(_text(td) for td in table.iter("td"))
            fields[key] = ""
        elif key in ("principal", "other"):
            row = _ancestor(strong, "tr")
            rows = _rows_until_label(row) if row is not None else []
            if key == "principal":
                principal = rows
            else:
                other = rows
        elif key != "contact":
            parts = [strong.tail or ""]
            for sibling in strong.itersiblings():
                if sibling.tag != "a":
                    parts.append(_text(sibling))
                parts.append(sibling.tail or "")
            fields[key] = "".join(parts)
    return DetailItems(fields, qualifications, principal, other)


def _ancestor(el: etree._Element, tag: str) -> etree._Element | None:
    for parent in el.iterancestors(tag):
        return parent
    return None


def _rows_until_label(label_row: etree._Element) -> list[str]:
    """Texts of the rows after a label row, up to the next row holding a label."""
    rows: list[str] = []
    for row in label_row.itersiblings("tr"):
        if next(row.iter("strong"), None) is not None:
            break
        rows.append(_text(row))
    return rows


def certificate_items(root: etree._Element) -> CertificateItems:
    """Raw items of a certificate tree: each ``label``/``boldlabel`` div and the ``data`` divs (or
    checkbox table) after it; the form renders some items as an empty ``data`` div then the value."""
    fields: dict[str, list[str]] = {}
    boxes: dict[str, list[Checkbox]] = {}
    embossed: list[str] = []
    for div in root.iter("div"):
        cls = div.get("class")
        if cls == "data":
            if not embossed and "EMBOSSED" in (div.text or ""):
                embossed = _lines(div)[1:] or [""]
            continue
        if cls not in ("label", "boldlabel"):
            continue
        key = certificate_label_key(div.text)
        if key is None or key in fields or key in boxes:
            continue
        lines: list[str] = []
        for value in div.itersiblings():
            if value.tag == "br":
                continue
            if len(value):
                inputs = [el for el in value.iter("input") if el.get("type") == "checkbox"]
                if inputs:
                    boxes[key] = [_checkbox(el) for el in inputs]
                    break
            if value.tag != "div" or value.get("class") != "data":
                break
            lines.extend(_lines(value) if len(value) else (value.text or "",))
        if key not in boxes:
            fields[key] = lines
    return CertificateItems(fields, boxes, [e for e in embossed if e.strip()], _label_items(root))


def _checkbox(box: etree._Element) -> Checkbox:
    cell = _ancestor(box, "td")
    text_cell = cell.getnext() if cell is not None else None
    if text_cell is None:
        return Checkbox("checked" in box.attrib, (box.get("alt") or "",), None)
    fill = next(text_cell.iter("strong"), None)
    lines = tuple(line for line in _lines(text_cell) if line.strip())
    return Checkbox("checked" in box.attrib, lines, _text(fill) if fill is not None else None)


def _label_items(root: etree._Element) -> list[tuple[str, str | None]]:
    """Per ``<p>Image Type:</p>`` block: its text up to the image, and the image's src."""
    out: list[tuple[str, str | None]] = []
    for p in root.iter("p"):
        if not (p.text or "").lstrip().startswith("Image Type"):
            continue
        type_text = p.text.split(":", 1)[1] if ":" in p.text else ""
        texts = [p.tail or ""]
        src = None
        for sibling in p.itersiblings():
            if sibling.tag == "p" and (sibling.text or "").lstrip().startswith("Image Type"):
                break
            if src is None:
                if sibling.tag == "img" and "publicViewAttachment" in (sibling.get("src") or ""):
                    src = sibling.get("src")
                else:
                    texts.append(sibling.tail or "")
        out.append((type_text + "".join(texts), src))
    return out


# --- public entry points ----------------------------------------------------------------------

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


# --- command line -----------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="saved page files (detail, certificate or any other page)")
    parser.add_argument("--expect-ttb-id", help="classify pages for another TTB ID as wrong_ttb_id")


def run_command(args: argparse.Namespace) -> int:
    """Print one JSON object per file: ``file``, ``kind`` and the record's fields, or ``reason`` and
    ``detail`` for pages that are not records. Exit 1 when a file cannot be read."""
    import json

    status = 0
    for name in args.files:
        try:
            with open(name, "rb") as handle:
                page = handle.read()
        except OSError as exc:
            sys.stderr.write(f"ttb_spark parse: error: {name}: {exc.strerror}\n")
            status = 1
            continue
        result = parse_page(page, expected_ttb_id=getattr(args, "expect_ttb_id", None))
        out: dict[str, Any] = {"file": name, "kind": result.kind}
        if result.record is not None:
            out.update(result.record)
        else:
            out.update(reason=result.reason, detail=result.detail)
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    return status
