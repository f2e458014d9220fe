"""The parse module on the 18 saved records (both pages), the registry's error page, and variants made
from real pages: every ``unexpected`` reason and layout drift. Expected records are hand-checked
JSON files (tests/fixtures/parse/records/) that are also checked against the independently
extracted reference-values.json shipped with the pages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ttb_spark
from ttb_spark.registry import parse
from ttb_spark.registry.parse import CERTIFICATE_FIELDS, DETAIL_FIELDS, ParseError

PAGES = Path(ttb_spark.__file__).parent / "data" / "pages"
FIXTURES = Path(__file__).parent / "fixtures" / "parse"
RECORD_IDS = sorted(p.name for p in PAGES.iterdir() if p.name.isdigit())
KINDS = ("detail", "certificate")
FIELDS = {"detail": DETAIL_FIELDS, "certificate": CERTIFICATE_FIELDS}


def page(ttb_id: str, kind: str) -> bytes:
    return (PAGES / ttb_id / f"{kind}.html").read_bytes()


def text(ttb_id: str, kind: str) -> str:
    return page(ttb_id, kind).decode("iso-8859-1")


def expected(ttb_id: str, kind: str) -> dict:
    return json.loads((FIXTURES / "records" / f"{ttb_id}.json").read_text())[kind]


def not_found_page() -> bytes:
    return (PAGES / "_error" / "not-found.html").read_bytes()


def swap(source: str, old: str, new: str, count: int = 1) -> str:
    """``source`` with ``old`` replaced; fails loudly when the real page no longer has ``old``."""
    assert source.count(old) >= count, f"variant base changed: {old!r} not found"
    return source.replace(old, new)


def detail_row(source: str, label: str) -> str:
    """The ``<tr>`` of a detail page holding ``<strong>label</strong>``."""
    found = re.search(r"<tr>\s*<td[^>]*>\s*<strong>" + re.escape(label) + r"</strong>.*?</tr>", source, re.S)
    assert found, f"no detail row {label!r}"
    return found.group(0)


def certificate_item(source: str, label_start: str) -> str:
    """A certificate item: its label div and the data div after it."""
    found = re.search(
        r'<div class="(?:bold)?label">\s*' + re.escape(label_start) + r'.*?</div>\s*<div class="data">.*?</div>',
        source,
        re.S,
    )
    assert found, f"no certificate item {label_start!r}"
    return found.group(0)


def reason_of(extract, body) -> str:
    """The reason of the ParseError ``extract(body)`` must raise."""
    with pytest.raises(ParseError) as caught:
        extract(body)
    return caught.value.reason


def assert_record(actual: dict, want: dict) -> None:
    """Field by field, so a failure names the field."""
    assert list(actual) == list(want)
    for field, value in want.items():
        assert actual[field] == value, f"{field}: {actual[field]!r} != {value!r}"


# --- the saved records ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ttb_id", RECORD_IDS)
def test_saved_record_matches_expected_field_by_field(ttb_id: str, kind: str) -> None:
    record = parse.parse_detail(page(ttb_id, kind)) if kind == "detail" else parse.parse_certificate(page(ttb_id, kind))
    assert tuple(record) == FIELDS[kind]
    assert_record(record, expected(ttb_id, kind))


@pytest.mark.parametrize("ttb_id", RECORD_IDS)
def test_expected_records_agree_with_independent_reference_values(ttb_id: str) -> None:
    """Beyond formatting: list for a multi-valued field, [] / None for empty, label count."""
    reference = json.loads((PAGES / ttb_id / "reference-values.json").read_text())
    for kind in KINDS:
        want = expected(ttb_id, kind)
        for field, value in reference[kind].items():
            if field == "label_images":
                assert len(want["labels"]) == value
            elif isinstance(want[field], list):
                assert want[field] == ([] if value is None else value if isinstance(value, list) else [value]), field
            else:
                assert want[field] == value, f"{kind}.{field}"


@pytest.mark.parametrize("ttb_id", RECORD_IDS)
def test_expected_detail_and_certificate_agree(ttb_id: str) -> None:
    """The two pages of a record show the same facts; item 16 is the TTB ID's receipt date."""
    detail, certificate = expected(ttb_id, "detail"), expected(ttb_id, "certificate")
    for field in ("ttb_id", "serial_number", "brand_name", "fanciful_name", "applicant_name", "applicant_street",
                  "applicant_city", "applicant_state", "applicant_zip", "formula", "qualifications", "status",
                  "class_type_description", "for_sale_in", "total_bottle_capacity", "receipt_date"):
        assert detail[field] == certificate[field], field
    assert detail["permit_number"] == certificate["permit_numbers"][0]
    assert detail["other_permits"] == certificate["permit_numbers"][1:]
    assert detail["approval_date"] == certificate["issued_date"]
    assert certificate["application_date"] == certificate["receipt_date"]
    assert detail["grape_varietals"] in ([], certificate["grape_varietals"])


@pytest.mark.parametrize("ttb_id", RECORD_IDS)
def test_saved_pages_classify_and_parse_page_returns_records(ttb_id: str) -> None:
    for kind in KINDS:
        found = parse.classify(page(ttb_id, kind), expected_ttb_id=ttb_id, expected_kind=kind)
        assert found == parse.Classification(kind, None)
        result = parse.parse_page(page(ttb_id, kind), expected_ttb_id=ttb_id, expected_kind=kind)
        assert (result.kind, result.reason) == (kind, None)
        assert result.record == expected(ttb_id, kind)


def test_bytes_and_text_parse_alike_and_decode_follows_browsers() -> None:
    ttb_id = RECORD_IDS[0]
    assert parse.parse_detail(text(ttb_id, "detail")) == parse.parse_detail(page(ttb_id, "detail"))
    assert parse.decode("already text") == "already text"
    assert parse.decode(b"caf\xe9 \x92 \x81") == "caf\u00e9 \u2019 \x81"


def test_detail_contact_person_is_not_extracted() -> None:
    """The contact name and phone on detail pages are personal data: in no field."""
    record = parse.parse_detail(page("25100001000686", "detail"))
    values = json.dumps(record)
    source = text("25100001000686", "detail")
    assert "Margaret" in source and "(516) 869-9170" in source
    assert "Margaret" not in values and "Gonzalez" not in values and "869-9170" not in values


def test_entities_are_unescaped() -> None:
    detail = parse.parse_detail(page("19351001000469", "detail"))
    assert detail["applicant_street"] == "6 STANWIX ST #320"
    certificate = parse.parse_certificate(page("19363001000082", "certificate"))
    assert certificate["dba_names"] == ["MR. B'S MEAD LLC"]
    quals = parse.parse_detail(page("25100001000686", "detail"))["qualifications"]
    assert quals[0].startswith("Approved without the DBA/Trade name") and "error(s)" in quals[1]


def test_other_permits_and_multiple_certificate_permits() -> None:
    detail = parse.parse_detail(page("19344001000769", "detail"))
    assert (detail["permit_number"], detail["other_permits"]) == ("BR-VA-20094", ["BR-VA-20299"])
    assert parse.parse_certificate(page("19344001000769", "certificate"))["permit_numbers"] == ["BR-VA-20094", "BR-VA-20299"]


# --- the registry's error page ----------------------------------------------------------------

def test_error_page_is_not_found_and_never_a_record() -> None:
    assert parse.classify(not_found_page()) == parse.Classification("not_found", None)
    assert parse.classify(not_found_page(), expected_ttb_id=RECORD_IDS[0], expected_kind="detail").kind == "not_found"
    result = parse.parse_page(not_found_page(), expected_ttb_id=RECORD_IDS[0])
    assert (result.kind, result.reason, result.record) == ("not_found", None, None)
    for extract in (parse.parse_detail, parse.parse_certificate):
        assert reason_of(extract, not_found_page()) == "not_found"


# --- unexpected pages: one test per reason ----------------------------------------------------

def timeout_page() -> str:
    source = not_found_page().decode("iso-8859-1")
    return swap(source, "Unable to process request.  If you continue having problems using the system, contact customer support.",
                "A 20 minute timeout has occurred. Please start a new session.")


UNEXPECTED = {
    "empty": lambda: b"",
    "empty-whitespace": lambda: b"  \r\n\t ",
    "truncated-detail": lambda: page(RECORD_IDS[0], "detail")[:12000],
    "truncated-in-masthead": lambda: page(RECORD_IDS[0], "detail")[:3000],
    "truncated-certificate": lambda: page(RECORD_IDS[0], "certificate")[:9000],
    "truncated-before-close": lambda: page(RECORD_IDS[0], "detail").rstrip()[: -len("</html>")],
    "truncated-error-page": lambda: not_found_page()[:6000],
    "session_timeout": timeout_page,
    "session_timeout-bare": lambda: (FIXTURES / "variants" / "session-timeout.html").read_bytes(),
    "captcha": lambda: (FIXTURES / "variants" / "captcha.html").read_bytes(),
    "captcha-bot-wall": lambda: (FIXTURES / "variants" / "bot-wall.html").read_bytes(),
    "unknown_layout-search-page": lambda: (PAGES / "_search" / "search-old-potrero.html").read_bytes(),
    "unknown_layout-detail-without-ttb-id": lambda: swap(text(RECORD_IDS[0], "detail"), "<strong>TTB ID: </strong>", "<strong>ID: </strong>"),
    "not_html-image": lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01",
    "not_html-csv": lambda: (PAGES / "_search" / "export-sample.csv").read_bytes(),
    "not_html-json": lambda: b'{"error": "service unavailable"}',
}


@pytest.mark.parametrize("name", sorted(UNEXPECTED))
def test_unexpected_pages_have_a_reason_and_no_record(name: str) -> None:
    reason = name.split("-")[0]
    assert reason in parse.REASONS
    body = UNEXPECTED[name]()
    found = parse.classify(body)
    assert (found.kind, found.reason) == ("unexpected", reason)
    assert found.detail
    result = parse.parse_page(body)
    assert (result.kind, result.reason, result.record) == ("unexpected", reason, None)
    for extract in (parse.parse_detail, parse.parse_certificate):
        assert reason_of(extract, body) == reason


def test_wrong_ttb_id_is_unexpected() -> None:
    ttb_id, other = RECORD_IDS[0], RECORD_IDS[1]
    for kind in KINDS:
        found = parse.classify(page(ttb_id, kind), expected_ttb_id=other)
        assert (found.kind, found.reason) == ("unexpected", "wrong_ttb_id")
        assert ttb_id in found.detail
        result = parse.parse_page(page(ttb_id, kind), expected_ttb_id=other)
        assert (result.kind, result.reason, result.record) == ("unexpected", "wrong_ttb_id", None)


def test_wrong_page_kind_is_unexpected() -> None:
    ttb_id = RECORD_IDS[0]
    assert parse.classify(page(ttb_id, "detail"), expected_kind="certificate").reason == "wrong_page_kind"
    assert parse.parse_page(page(ttb_id, "certificate"), expected_kind="detail").reason == "wrong_page_kind"
    assert reason_of(parse.parse_certificate, page(ttb_id, "detail")) == "wrong_page_kind"


@pytest.mark.parametrize(
    "label, replacement",
    [
        ("<strong>Status: </strong>", "<strong>State: </strong>"),
        ("<strong>Brand Name: </strong>", "<strong>Label Name: </strong>"),
        ("<strong>Plant Registry/Basic Permit/Brewers No (Principal Place of Business): </strong>", "<strong>Holder: </strong>"),
    ],
)
def test_detail_missing_a_required_row_raises_unknown_layout(label: str, replacement: str) -> None:
    body = swap(text(RECORD_IDS[0], "detail"), label, replacement)
    assert reason_of(parse.parse_detail, body) == "unknown_layout"
    assert parse.parse_page(body).reason == "unknown_layout"


def test_detail_with_empty_status_or_bad_date_raises_unknown_layout() -> None:
    source = text("24011001000462", "detail")
    empty_status = swap(source, "&nbsp;\n                    APPROVED", "&nbsp;\n")
    bad_date = swap(source, "01/11/2024", "13/45/2024")
    for body in (empty_status, bad_date):
        assert reason_of(parse.parse_detail, body) == "unknown_layout"


def test_certificate_missing_required_item_raises_unknown_layout() -> None:
    body = swap(text(RECORD_IDS[0], "certificate"), '<div class="boldlabel">STATUS</div>', '<div class="boldlabel">REMARK</div>')
    assert reason_of(parse.parse_certificate, body) == "unknown_layout"


# --- checkboxes and placeholders --------------------------------------------------------------

def test_checkboxes_are_read_by_the_bare_checked_attribute() -> None:
    source = text("24011001000462", "certificate")
    flipped = swap(source, 'value="" alt="Source of Product: Domestic"', 'value="" checked alt="Source of Product: Domestic"')
    flipped = swap(flipped, 'value="" checked alt="Source of Product: Imported"', 'value="" alt="unchecked: Imported"')
    assert parse.parse_certificate(flipped)["source_of_product"] == "DOMESTIC"
    none_ticked = swap(source, 'value="" checked alt="Type of Product: Distilled Spirits"', 'value="" alt="unchecked"')
    assert parse.parse_certificate(none_ticked)["product_type"] is None


def test_two_ticked_boxes_for_one_choice_raise() -> None:
    source = text("24011001000462", "certificate")
    body = swap(source, 'value="" alt="Type of Product: Wine"', 'value="" checked alt="Type of Product: Wine"')
    assert reason_of(parse.parse_certificate, body) == "unknown_layout"


def test_application_type_fill_ins_and_several_ticks() -> None:
    source = text("24011001000462", "certificate")
    body = swap(source, 'value="" alt="Distinctive Liquor Bottle Approval"', 'value="" checked alt="Distinctive Liquor Bottle Approval"')
    body = swap(body, "BOTTLE CAPACITY BEFORE CLOSURE ____\n                    \t\t\t\t<strong></strong>",
                "BOTTLE CAPACITY BEFORE CLOSURE ____\n                    \t\t\t\t<strong>1.75 L</strong>")
    body = swap(body, "TTB ID. NO. ___<strong></strong>", "TTB ID. NO. ___<strong>23001001000017</strong>")
    record = parse.parse_certificate(body)
    assert record["application_types"] == ["CERTIFICATE OF LABEL APPROVAL", "DISTINCTIVE LIQUOR BOTTLE APPROVAL"]
    assert (record["total_bottle_capacity"], record["resubmission_ttb_id"], record["for_sale_in"]) == ("1.75 L", "23001001000017", None)


def test_required_placeholders_are_never_values() -> None:
    cert = swap(text("24011001000462", "certificate"), '<div class="data">LAPHROAIG</div>', '<div class="data"><I>(Required)</I></div>')
    assert parse.parse_certificate(cert)["brand_name"] is None
    detail = swap(text("24011001000462", "detail"), "&nbsp;\n                    LAPHROAIG", "&nbsp;\n  (Required)")
    assert parse.parse_detail(detail)["brand_name"] is None
    applicant = swap(text("24011001000462", "certificate"), "JIM BEAM BRANDS CO.<br>", "(Required)<br>")
    assert parse.parse_certificate(applicant)["applicant_name"] is None


# --- layout drift -----------------------------------------------------------------------------

def test_detail_missing_optional_rows() -> None:
    source = text("25156001000225", "detail")
    body = swap(source, detail_row(source, "Grape Varietal(s): "), "")
    body = swap(body, detail_row(body, "For Sale In: "), "")
    want = expected("25156001000225", "detail") | {"grape_varietals": [], "for_sale_in": None}
    assert_record(parse.parse_detail(body), want)


def test_certificate_missing_optional_items() -> None:
    source = text("19351001000469", "certificate")
    body = swap(source, certificate_item(source, "11. WINE APPELLATION"), "")
    body = swap(body, certificate_item(body, "13. EMAIL ADDRESS"), "")
    want = expected("19351001000469", "certificate") | {"wine_appellation": None}
    assert_record(parse.parse_certificate(body), want)


def test_detail_reordered_rows() -> None:
    source = text("25156001000225", "detail")
    brand, vendor = detail_row(source, "Brand Name: "), detail_row(source, "Vendor Code: ")
    approval, serial = detail_row(source, "Approval Date:"), detail_row(source, "Serial #: ")
    body = source.replace(brand, "\0B").replace(vendor, brand).replace("\0B", vendor)
    body = body.replace(approval, "\0A").replace(serial, approval).replace("\0A", serial)
    assert body.index("Brand Name") < body.index("Vendor Code") and body.index("Approval Date") < body.index("Serial #")
    assert_record(parse.parse_detail(body), expected("25156001000225", "detail"))


def test_certificate_reordered_items() -> None:
    source = text("19351001000469", "certificate")
    brand, phone = certificate_item(source, "6. BRAND NAME"), certificate_item(source, "12. PHONE NUMBER")
    body = source.replace(brand, "\0B").replace(phone, brand).replace("\0B", phone)
    assert body.index("12. PHONE NUMBER") < body.index("6. BRAND NAME")
    assert_record(parse.parse_certificate(body), expected("19351001000469", "certificate"))


@pytest.mark.parametrize("kind", KINDS)
def test_extra_whitespace(kind: str) -> None:
    ttb_id = "25156001000225"
    body = text(ttb_id, kind).replace("\n", "\n \t \r\n  ").replace("&nbsp;", "&nbsp; &nbsp;").replace("<br>", " <br>  ")
    record = parse.parse_detail(body) if kind == "detail" else parse.parse_certificate(body)
    assert_record(record, expected(ttb_id, kind))


def test_unknown_extra_rows_are_ignored() -> None:
    ttb_id = "24011001000462"
    detail = text(ttb_id, "detail")
    brand = detail_row(detail, "Brand Name: ")
    extra = '<tr><td valign="top" colspan="2"><strong>Bottler Code: </strong>&nbsp; ZX-99</td></tr>'
    assert_record(parse.parse_detail(swap(detail, brand, extra + brand)), expected(ttb_id, "detail"))
    certificate = text(ttb_id, "certificate")
    brand_item = certificate_item(certificate, "6. BRAND NAME")
    extra_item = '<div class="label">6b. SECONDARY BRAND</div><div class="data">NOT A FIELD</div>'
    assert_record(parse.parse_certificate(swap(certificate, brand_item, brand_item + extra_item)), expected(ttb_id, "certificate"))


def older_form_detail() -> str:
    source = text("24011001000462", "detail")
    formula = detail_row(source, "Formula : ")
    older = (
        '<tr><td valign="top" colspan="2"><strong>Formula/SOP No.: </strong><a href="#"><img src="images/q.gif"></a>'
        "&nbsp; SOP&#x2f;1234</td></tr>"
        '<tr><td valign="top" colspan="2"><strong>Lab No./Lab Date: </strong><a href="#"><img src="images/q.gif"></a>'
        "&nbsp; L-5678 &#x2f; 03/14/2005</td></tr>"
        '<tr><td valign="top" colspan="2"><strong>Wine Vintage: </strong>&nbsp; 2004</td></tr>'
    )
    return swap(source, formula, older)


def test_older_form_detail_page() -> None:
    want = expected("24011001000462", "detail") | {
        "formula": None, "formula_sop_no": "SOP/1234", "lab_no": "L-5678", "lab_date": "2005-03-14", "wine_vintage": "2004",
    }
    assert_record(parse.parse_detail(older_form_detail()), want)


def older_form_certificate() -> str:
    """Items renumbered as on pre-2016 editions, with net contents, alcohol content and vintage."""
    source = text("19351001000469", "certificate")
    body = swap(source, "9. FORMULA</div>", "10. FORMULA/SOP NO.</div>")
    body = swap(body, "10. GRAPE VARIETAL(S)", "15. GRAPE VARIETAL(S)")
    body = swap(body, "11. WINE APPELLATION", "14. WINE APPELLATION")
    body = swap(body, "16. DATE OF APPLICATION", "18. DATE OF APPLICATION")
    body = swap(body, "19. DATE ISSUED", "21. DATE ISSUED")
    body = swap(body, '(212) 920-9336</div>', '(212) 920-9336</div></td></tr><tr><td>'
                '<div class="label">11. NET CONTENTS</div><div class="data">750 ML</div>'
                '<div class="label">12. ALCOHOL CONTENT</div><div class="data">12.5%</div>'
                '<div class="label">13. WINE VINTAGE DATE</div><div class="data">2018</div>')
    return swap(body, '<div class="data">\n                                  </div>', '<div class="data">SOP 77</div>')


def test_older_form_certificate_page() -> None:
    want = expected("19351001000469", "certificate") | {
        "formula": "SOP 77", "net_contents": "750 ML", "alcohol_content": "12.5%", "wine_vintage": "2018",
    }
    assert_record(parse.parse_certificate(older_form_certificate()), want)


# --- the command ------------------------------------------------------------------------------

def test_parse_command_prints_one_json_object_per_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.html"
    empty.write_bytes(b"")
    files = [PAGES / "24011001000462" / "detail.html", PAGES / "24011001000462" / "certificate.html",
             PAGES / "_error" / "not-found.html", empty]
    done = subprocess.run([sys.executable, "-m", "ttb_spark", "parse", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    assert [line["kind"] for line in lines] == ["detail", "certificate", "not_found", "unexpected"]
    for line, kind in zip(lines, KINDS):
        assert {k: v for k, v in line.items() if k not in ("file", "kind")} == expected("24011001000462", kind)
    assert (lines[2]["reason"], lines[3]["reason"]) == (None, "empty")


def test_parse_command_reports_unreadable_file_and_wrong_id(tmp_path: Path) -> None:
    detail = PAGES / "24011001000462" / "detail.html"
    done = subprocess.run(
        [sys.executable, "-m", "ttb_spark", "parse", "--expect-ttb-id", "24011001000463", str(detail), str(tmp_path / "missing.html")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "missing.html" in done.stderr
    (line,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert (line["kind"], line["reason"]) == ("unexpected", "wrong_ttb_id")


# --- addresses, permits, label blocks ---------------------------------------------------------

def test_detail_city_row_with_plain_spaces_and_several_other_permits() -> None:
    source = text("19344001000769", "detail")
    body = swap(source, "Herndon,&nbsp;VA&nbsp;20170", "Herndon, VA 20170")
    second = detail_row(body, "Plant Registry/Basic Permit/Brewers No (Other): ")
    block = "".join(f'<tr><td colspan="2">{row}</td></tr>' for row in
                    ("BR-VA-20777", "Aslin Annex", "1 MAIN ST", "Alexandria,&nbsp;VA&nbsp;22314"))
    body = swap(body, "Alexandria,&nbsp;VA&nbsp;22304</td>\n        </tr>", "Alexandria,&nbsp;VA&nbsp;22304</td>\n        </tr>" + block)
    assert second in body
    record = parse.parse_detail(body)
    assert record["other_permits"] == ["BR-VA-20299", "BR-VA-20777"]
    assert_record(record, expected("19344001000769", "detail") | {"other_permits": ["BR-VA-20299", "BR-VA-20777"]})


def test_detail_without_principal_permit_rows_raises() -> None:
    source = text("24011001000462", "detail")
    for row in ("IL-I-198", "JIM BEAM BRANDS CO.", "222 MERCHANDISE MART PLZ", "CHICAGO,&nbsp;IL&nbsp;60654"):
        source = swap(source, f'<td colspan="2">{row}</td>', '<td colspan="2"></td>')
    assert reason_of(parse.parse_detail, source) == "unknown_layout"


def test_empty_ttb_id_cell_is_unknown_layout_not_another_id() -> None:
    body = swap(text("24011001000462", "detail"), "\n                    24011001000462\n", "\n")
    found = parse.classify(body, expected_ttb_id="24011001000462")
    assert (found.kind, found.reason) == ("unexpected", "unknown_layout")
    cert = swap(text("24011001000462", "certificate"), '<div class="data">24011001000462</div>', '<div class="data"></div>')
    assert parse.classify(cert, expected_ttb_id="24011001000462").reason == "unknown_layout"


def test_certificate_address_on_one_line_and_mailing_address() -> None:
    source = text("24011001000462", "certificate")
    body = swap(source, "CHICAGO\n              \t\t\t\tIL \n              \t\t\t\t60654", "CHICAGO, IL 60654-1234")
    body = swap(body, '8a. MAILING ADDRESS, IF DIFFERENT</div>\n            \t\t<div class="data"></div>',
                '8a. MAILING ADDRESS, IF DIFFERENT</div>\n<div class="data">PO BOX 7<br>CHICAGO IL 60690</div>')
    record = parse.parse_certificate(body)
    assert (record["applicant_city"], record["applicant_state"], record["applicant_zip"]) == ("CHICAGO", "IL", "60654-1234")
    assert record["applicant_street"] == "222 MERCHANDISE MART PLZ"
    assert record["mailing_address"] == "PO BOX 7\nCHICAGO IL 60690"


def test_label_without_dimensions_keeps_type_and_image() -> None:
    source = text("24011001000462", "certificate")
    body = swap(source, "Actual Dimensions: 3.44 inches W X 12.3 inches H<br>", "<br>")
    back = parse.parse_certificate(body)["labels"][1]
    assert tuple(back) == parse.LABEL_FIELDS
    assert back == {"image_type": "Back", "width_inches": None, "height_inches": None,
                    "image_url": "/colasonline/publicViewAttachment.do?filename=BTL 44 B00078.jpeg&filetype=l",
                    "filename": "BTL 44 B00078.jpeg"}


def test_line_breaks_inside_values_separate_words() -> None:
    source = text("24011001000462", "detail")
    body = swap(source, "&nbsp;\n                    LAPHROAIG", "&nbsp;\n                    LAPHROAIG<br>ISLAY")
    body = swap(body, "contrasting background.  The responsible", "contrasting background.<br>The responsible")
    record = parse.parse_detail(body)
    assert record["brand_name"] == "LAPHROAIG ISLAY"
    assert record["qualifications"] == expected("24011001000462", "detail")["qualifications"]


def test_parsing_from_several_threads_gives_the_same_records() -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(ttb_id, kind) for ttb_id in RECORD_IDS for kind in KINDS] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: parse.parse_page(page(*job)).record, jobs))
    assert results == [expected(*job) for job in jobs]
