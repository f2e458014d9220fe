"""The COLA detail page: its field labels, its raw items (:class:`DetailItems`, walked from the tree by
:func:`detail_items`) and the record built from them (:func:`detail_record`, fields :data:`DETAIL_FIELDS`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lxml import etree

from ttb_spark.registry.parse.tree import _ancestor, _text
from ttb_spark.registry.parse.values import (
    _DATE, _DERIVED, ParseError, _derived, _split_list, _ttb_id, city_state_zip, clean, iso_date, normalise_label,
)  # fmt: skip

DETAIL_FIELDS: tuple[str, ...] = (
    "ttb_id", "status", "vendor_code", "serial_number", "class_type_description", "origin_description",
    "brand_name", "fanciful_name", "type_of_application", "for_sale_in", "total_bottle_capacity",
    "grape_varietals", "wine_vintage", "formula", "approval_date", "qualifications", "permit_number",
    "applicant_name", "applicant_street", "applicant_city", "applicant_state", "applicant_zip",
    "other_permits", "formula_sop_no", "lab_no", "lab_date",
) + _DERIVED

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


# --- lxml tree walk (the hot path) ------------------------------------------------------------

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


def _rows_until_label(label_row: etree._Element) -> list[str]:
    """Texts of the rows after a label row, up to the next row holding a label."""
    rows: list[str] = []
    for row in label_row.itersiblings("tr"):
        if next(row.iter("strong"), None) is not None:
            break
        rows.append(_text(row))
    return rows
