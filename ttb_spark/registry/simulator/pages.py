"""The simulator's pages: the 18 real saved page pairs as templates (the TTB ID, serial number, brand name,
dates and status swapped per record; with the ``registry`` profile its permit, company, codes and their
descriptions too), the search's results page and CSV export rendered from the real saved ones, the real
no-results and error pages, the session-timeout page and a CAPTCHA page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib import resources

from ttb_spark.registry import search
from ttb_spark.registry.ttb_id import is_valid_ttb_id

_DETAIL_FIELDS = {
    "serial": r"(<strong>Serial #: </strong>.*?</a>\s*(?:&nbsp;\s*)?)([^<]*?)(\s*</td>)",
    "brand": r"(<strong>Brand Name: </strong>.*?</a>\s*(?:&nbsp;\s*)?)([^<]*?)(\s*</td>)",
    "approval": r"(<strong>Approval Date:</strong>\s*(?:&nbsp;\s*)?)(\d\d/\d\d/\d{4})()",
    "status": r"(<strong>Status: </strong>.*?</a>\s*(?:&nbsp;\s*)?)([A-Z]+)(\s*</td>)",
}
_CERTIFICATE_FIELDS = {
    "serial": r"(SERIAL NUMBER(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "brand": r"(BRAND NAME(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "application": r"(DATE OF APPLICATION(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "approval": r"(DATE ISSUED(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "status": r"(THE STATUS IS\s*)([A-Z]+)(\.)",
}


_VARIABLE_DETAIL = {  # varied by the "registry" profile; left as saved where a page does not show one exactly once
    "class_type_description": r"(<strong>Class/Type Code: </strong>.*?</a>\s*)([^<]*?)(\s*</td>)",
    "origin_description": r"(<strong>Origin Code: </strong>.*?</a>\s*(?:&nbsp;\s*)?)([^<]*?)(\s*</td>)",
}
_VARIABLE_CERTIFICATE = {
    "class_type_code": r"(<div class=\"label\">CT</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "origin_code": r"(<div class=\"label\">OR</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "class_type_description": r"(CLASS/TYPE DESCRIPTION</div>\s*<div class=\"data\">\s*)([^<]*?)(<br>)",
}


def _variables(text: str, patterns: dict[str, str], literals: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The page with each variable value found exactly once (by pattern, or a literal string) replaced
    by its ``\\x00name\\x00`` marker, and the values as saved (to render the page unchanged)."""
    saved: dict[str, str] = {}
    for name, pattern in patterns.items():
        found = [m.group(2) for m in re.finditer(pattern, text, flags=re.S)]
        if len(found) == 1:
            text = re.sub(pattern, lambda m, n=name: f"{m.group(1)}\x00{n}\x00{m.group(3)}", text, flags=re.S)
            saved[name] = found[0]
    for name, value in literals.items():
        if value and text.count(value) == 1:
            text = text.replace(value, f"\x00{name}\x00")
            saved[name] = value
    return text, saved


def _placeholders(text: str, ttb_id: str, patterns: dict[str, str]) -> str | None:
    """The page with its variable values replaced by ``\\x00name\\x00`` markers; None if a field is not found once."""
    for name, pattern in patterns.items():
        text, count = re.subn(pattern, lambda m, n=name: f"{m.group(1)}\x00{n}\x00{m.group(3)}", text, flags=re.S)
        if count != 1:
            return None
    return text.replace(ttb_id, "\x00ttb_id\x00")


@dataclass(frozen=True)
class Template:
    """One saved real page pair as marker templates, with the values the search lists for it."""

    detail: str
    certificate: str
    status: str  # the status the real pages show (served when the simulator has no clock)
    permit_number: str
    fanciful_name: str | None
    origin_code: str
    origin_description: str
    class_type_code: str
    class_type_description: str
    product_type: str | None = None  # certificate item 5
    applicant_name: str | None = None
    saved: tuple[tuple[str, str], ...] = ()  # variable markers' values as saved (detail and certificate share names)


@lru_cache(maxsize=1)
def _templates() -> tuple[Template, ...]:
    """Marker templates made from every saved real page pair."""
    from ttb_spark.registry import parse

    root = resources.files("ttb_spark").joinpath("data/pages")
    out = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not is_valid_ttb_id(folder.name):
            continue
        detail_page, cert_page = (folder.joinpath(f"{n}.html").read_bytes() for n in ("detail", "certificate"))
        detail = _placeholders(detail_page.decode("iso-8859-1"), folder.name, _DETAIL_FIELDS)
        cert = _placeholders(cert_page.decode("iso-8859-1"), folder.name, _CERTIFICATE_FIELDS)
        if not (detail and cert):
            continue
        d = parse.parse_page(detail_page, folder.name, "detail").record
        c = parse.parse_page(cert_page, folder.name, "certificate").record
        literals = {"permit": d["permit_number"], "applicant_name": d["applicant_name"]}
        detail, on_detail = _variables(detail, _VARIABLE_DETAIL, literals)
        cert, on_cert = _variables(cert, _VARIABLE_CERTIFICATE, literals)
        saved = {f"detail.{k}": v for k, v in on_detail.items()} | {f"certificate.{k}": v for k, v in on_cert.items()}
        out.append(Template(detail, cert, d["status"], d["permit_number"], d["fanciful_name"], c["origin_code"],
                            d["origin_description"], c["class_type_code"], d["class_type_description"],
                            c.get("product_type"), d["applicant_name"], tuple(sorted(saved.items()))))
    return tuple(out)


@lru_cache(maxsize=1)
def _search_parts() -> tuple[str, str, str]:
    """(head, row, tail) of the real results page, pagination and row values as markers."""
    text = search_page("search-old-potrero.html").decode("iso-8859-1")
    start = text.index('            <tr class="lt">')
    end = text.index("          </table>", start)
    body = text[start:end]
    row = body[: body.index('            <tr class="dk">')]
    for name, pattern in (
        ("ttb_id", r"\d{14}"),
        *[(c, r"[^<]*") for c in search.COLUMNS[1:]],
    ):
        if name == "ttb_id":
            row = re.sub(pattern, "\x00ttb_id\x00", row)
        else:
            row = re.sub(r'(<td width="\d+">)(?!\x00)(' + pattern + r")(</td>)", lambda m, n=name: f"{m.group(1)}\x00{n}\x00{m.group(3)}", row, count=1)
    row = row.replace('<tr class="lt">', '<tr class="\x00shade\x00">')
    head, tail = text[:start], text[end:]
    pagination = re.compile(r"\d+ to \d+ of \d+ \(Total Matching Records: \d+\)(?: \| <a href='[^']*'>Next &gt;</a>)?")
    return pagination.sub("\x00pagination\x00", head), row, pagination.sub("\x00pagination\x00", tail)


def search_page(name: str) -> bytes:
    """A saved real search answer (``search-old-potrero.html``, ``search-no-results.html``, ``export-sample.csv``)."""
    return resources.files("ttb_spark").joinpath(f"data/pages/_search/{name}").read_bytes()


def render_results(rows: list[search.Listing], offset: int, returned: int, total: int) -> bytes:
    """One results page: ``rows`` (at most 20) starting at row ``offset`` of ``returned`` (of ``total``)."""
    if not total:
        return search_page("search-no-results.html")
    head, row, tail = _search_parts()
    first, last = offset + 1, offset + len(rows)
    pagination = f"{first} to {last} of {returned} (Total Matching Records: {total})"
    if offset:
        pagination = f"<a href='publicPageBasicCola.do?action=page&pgfcn=prevset'>&lt; Prev</a> | {pagination}"
    if last < returned:
        pagination += f" | <a href='{search.NEXT_PATH}'>Next &gt;</a>"
    body = []
    for index, listing in enumerate(rows):
        values = listing.as_dict() | {"completed_date": listing.completed_date.strftime("%m/%d/%Y"), "shade": "dk" if index % 2 else "lt"}
        text = row
        for name, value in values.items():
            text = text.replace(f"\x00{name}\x00", value if name in ("ttb_id", "shade") else search.encode_html(value or ""))
        body.append(text)
    page = head + "".join(body) + tail
    return page.replace("\x00pagination\x00", pagination).encode("iso-8859-1")


def render_export(rows: list[search.Listing]) -> bytes:
    """The CSV export of a search's rows, with the real file's quirks (windows-1252, nothing quoted)."""
    lines = [search.CSV_HEADER, *(search.export_line(r) for r in rows)]
    return ("\n".join(lines) + "\n").encode("cp1252", errors="replace")


def search_form_page() -> bytes:
    """The search form (no saved copy: a minimal page with the form's field names)."""
    fields = "".join(f'<input type="text" name="{name}">' for name in search.Criteria(date.min, date.min).form())
    return (
        "<html><head><title>TTB Online - COLAs Online - Public COLA Registry Basic Search</title></head><body>"
        f'<h1>Search Public COLA Registry</h1><form method="post" action="{search.SEARCH_PATH}">{fields}</form>'
        "</body></html>"
    ).encode("iso-8859-1")



@lru_cache(maxsize=1)
def error_page() -> bytes:
    """The registry's real answer for a TTB ID that is not public."""
    return resources.files("ttb_spark").joinpath("data/pages/_error/not-found.html").read_bytes()


def session_timeout_page() -> bytes:
    """The error page carrying the registry's session-timeout message."""
    return error_page().replace(
        b"Unable to process request.  If you continue having problems using the system, contact customer support.",
        b"A 20 minute timeout has occurred. Your session has expired; please start a new search.",
    )


def captcha_page() -> bytes:
    return (
        b"<html><head><title>Request Rejected - CAPTCHA</title></head><body>"
        b"<h1>Please verify you are a human</h1><form action=\"/captcha\" method=\"post\">"
        b"<div class=\"g-recaptcha\" data-sitekey=\"simulated\"></div>"
        b"<p>Complete the CAPTCHA to continue.</p></form></body></html>"
    )
