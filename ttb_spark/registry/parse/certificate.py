"""The printable certificate (TTB F 5100.31): its field labels, checkboxes, raw items
(:class:`CertificateItems`, walked from the tree by :func:`certificate_items`) and the record built from
them (:func:`certificate_record`, fields :data:`CERTIFICATE_FIELDS`; one :data:`LABEL_FIELDS` object per
label image)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lxml import etree

from ttb_spark.registry.parse.tree import _ancestor, _lines, _text
from ttb_spark.registry.parse.values import (
    _DERIVED, ParseError, _derived, _split_list, _ttb_id, city_state_zip, clean, iso_date, normalise_label,
)  # fmt: skip

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

_DIMENSIONS = re.compile(
    r"Actual\s+Dimensions:\s*([\d.]+)\s*inch(?:es)?\s*W\s*X\s*([\d.]+)\s*inch(?:es)?\s*H", re.I
)
_FILENAME = re.compile(r"[?&]filename=([^&]*)")
_STATUS_PREFIX = re.compile(r"^THE\s+STATUS\s+IS\s+", re.I)
_USED_ON_LABEL = re.compile(r"\(\s*Used\s+on\s+label\s*\)", re.I)

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
