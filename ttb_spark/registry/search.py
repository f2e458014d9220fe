"""The registry's public search: criteria, and parsers for its answers (results page, CSV export).

SITE.md ("Search"): GET ``publicSearchColasBasic.do`` starts a session, POST
``publicSearchColasBasicProcess.do?action=search`` with ``searchCriteria.*`` fields answers the
first results page (20 rows, ``1 to 20 of N (Total Matching Records: T)``), where T is the true
total and N the rows the search returns (at most the registry's cap);
``publicPageBasicCola.do?action=page&pgfcn=nextset`` pages on in the same session, and
``publicSaveSearchResultsToFile.do?path=/publicSearchColasBasicProcess`` exports the current
search as CSV. The export's quirks: the TTB ID is wrapped in single quotes, the text is
windows-1252 and commas inside values are not quoted, so only the first four columns (ID,
permit, serial, completed date) are always unambiguous; the others are split where the codes
make the split unique and left null (with the raw line kept) where they do not.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from ttb_spark.registry.ttb_id import TTBId, is_valid_ttb_id

FORM_PATH = "publicSearchColasBasic.do"
SEARCH_PATH = "publicSearchColasBasicProcess.do?action=search"
NEXT_PATH = "publicPageBasicCola.do?action=page&pgfcn=nextset"
EXPORT_PATH = "publicSaveSearchResultsToFile.do?path=/publicSearchColasBasicProcess"
PAGE_ROWS = 20
CSV_HEADER = "TTB ID,Permit No.,Serial Number,Completed Date,Fanciful Name,Brand Name,Origin,Origin Desc,Class/Type,Class/Type Desc"
COLUMNS = ("ttb_id", "permit_number", "serial_number", "completed_date", "fanciful_name", "brand_name",
           "origin_code", "origin_description", "class_type_code", "class_type_description")
RESULTS_TITLE = "Public COLA Registry Basic Search Results"
NO_RESULTS = "No results were found that match the search criteria specified."
_PAGINATION = re.compile(r"(\d+) to (\d+) of (\d+) \(Total Matching Records: (\d+)\)")
_ROW = re.compile(r'<tr class="(?:lt|dk)">(.*?)</tr>', re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_LINK = re.compile(r"ttbid=(\d{14})\">")
_ORIGIN = re.compile(r"^[0-9A-Z]{2}$")
_CLASS_TYPE = re.compile(r"^[0-9]{1,3}[A-Z]?$")


class SearchPageError(ValueError):
    """An answer that is not the search page it should be (names what was wrong)."""


@dataclass(frozen=True)
class Criteria:
    """One search: a completed-date window, optionally narrowed by a class/type range, an origin and the
    first characters of the brand name (``productOrFancifulName`` ``<prefix>%``, name type ``B``)."""

    date_from: date
    date_to: date
    class_type_from: str = ""
    class_type_to: str = ""
    origin_code: str = ""
    brand_prefix: str = ""

    def form(self) -> dict[str, str]:
        """The POST fields, as the search form names them."""
        return {
            "searchCriteria.dateCompletedFrom": self.date_from.strftime("%m/%d/%Y"),
            "searchCriteria.dateCompletedTo": self.date_to.strftime("%m/%d/%Y"),
            "searchCriteria.productOrFancifulName": f"{self.brand_prefix}%" if self.brand_prefix else "",
            "searchCriteria.productNameSearchType": "B" if self.brand_prefix else "E",
            "searchCriteria.classTypeFrom": self.class_type_from,
            "searchCriteria.classTypeTo": self.class_type_to,
            "searchCriteria.originCode": self.origin_code,
        }

    @property
    def label(self) -> str:
        """A short, key-safe name: ``2024-01-02_2024-01-08_ct-100-199_or-01``."""
        text = f"{self.date_from.isoformat()}_{self.date_to.isoformat()}"
        if self.class_type_from or self.class_type_to:
            text += f"_ct-{self.class_type_from or 'min'}-{self.class_type_to or 'max'}"
        if self.origin_code:
            text += f"_or-{self.origin_code}"
        text = re.sub(r"[^0-9A-Za-z_.-]", "-", text)
        if self.brand_prefix:  # any character a brand can start with, kept apart: x<hex> for all but letters and digits
            text += "_bn-" + "".join(ch if ch.isascii() and ch.isalnum() else f"x{ord(ch):02X}" for ch in self.brand_prefix)
        return text


@dataclass(frozen=True)
class Listing:
    """One row the search listed."""

    ttb_id: str
    completed_date: date
    permit_number: str | None = None
    serial_number: str | None = None
    fanciful_name: str | None = None
    brand_name: str | None = None
    origin_code: str | None = None
    origin_description: str | None = None
    class_type_code: str | None = None
    class_type_description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResultsPage:
    """One results page: its rows and the pagination line's numbers."""

    rows: tuple[Listing, ...]
    first: int
    last: int
    returned: int  # rows the search returns (capped)
    total: int  # Total Matching Records (true total)
    has_next: bool


def encode_html(value: str) -> str:
    """A value as the registry writes it into HTML: letters, digits and `` ,.-_`` as is, the rest
    as entities (``&#x2f;`` for ``/``, ``&amp;`` for ``&``)."""
    named = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
    return "".join(
        c if c.isalnum() or c in " ,.-_" else named.get(c, f"&#x{ord(c):x};") for c in value
    )


def _date(text: str) -> date:
    return datetime.strptime(text.strip(), "%m/%d/%Y").date()


def _none(text: str) -> str | None:
    text = text.strip()
    return text or None


def parse_results_page(body: bytes) -> ResultsPage:
    """A results page (or the no-results page) -> its rows and counts; raises SearchPageError otherwise."""
    text = body.decode("iso-8859-1")
    if NO_RESULTS in text:
        return ResultsPage((), 0, 0, 0, 0, False)
    if RESULTS_TITLE not in text:
        raise SearchPageError("not a search results page (title missing)")
    counts = _PAGINATION.search(text)
    if not counts or "</html>" not in text:
        raise SearchPageError("results page without its pagination line or cut short")
    rows = []
    for block in _ROW.findall(text):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in _CELL.findall(block)]
        link = _LINK.search(block)
        if len(cells) != len(COLUMNS) or not link or link.group(1) != cells[0] or not is_valid_ttb_id(cells[0]):
            raise SearchPageError(f"results row not in the known layout: {cells[:2]}")
        values = dict(zip(COLUMNS, cells))
        rows.append(Listing(values.pop("ttb_id"), _date(values.pop("completed_date")),
                            **{k: _none(v) for k, v in values.items()}))
    first, last, returned, total = (int(g) for g in counts.groups())
    if len(rows) != last - first + 1:
        raise SearchPageError(f"results page says rows {first} to {last} but has {len(rows)}")
    return ResultsPage(tuple(rows), first, last, returned, total, "pgfcn=nextset" in text)


def parse_export_line(line: str) -> Listing:
    """One CSV export line -> a Listing; values the unquoted commas make ambiguous are None."""
    tokens = line.split(",")
    if len(tokens) < len(COLUMNS):
        raise SearchPageError(f"export line with {len(tokens)} fields: {line[:80]!r}")
    quoted = tokens[0].strip()
    ttb_id = quoted[1:-1] if len(quoted) == 16 and quoted[0] == quoted[-1] == "'" else ""
    if not is_valid_ttb_id(ttb_id):
        raise SearchPageError(f"export line without a quoted TTB ID: {line[:80]!r}")
    try:
        completed = _date(tokens[3])
    except ValueError:
        raise SearchPageError(f"export line without a completed date in column 4: {line[:80]!r}") from None
    head = {"permit_number": _none(tokens[1]), "serial_number": _none(tokens[2])}
    rest = tokens[4:]
    if len(rest) == 6:
        return Listing(ttb_id, completed, **head, **dict(zip(COLUMNS[4:], (_none(t) for t in rest))))
    # fanciful, brand, origin, origin desc, class/type, class/type desc with commas in some text:
    # the split is known only when exactly one (origin, class/type) code position fits
    fits = [
        (i, j) for i in range(2, len(rest) - 3) for j in range(i + 2, len(rest) - 1)
        if _ORIGIN.match(rest[i]) and _CLASS_TYPE.match(rest[j])
    ]
    if len(fits) != 1:
        return Listing(ttb_id, completed, **head)
    i, j = fits[0]
    names = {"fanciful_name": None, "brand_name": None}
    if i == 2:
        names = {"fanciful_name": _none(rest[0]), "brand_name": _none(rest[1])}
    return Listing(
        ttb_id, completed, **head, **names, origin_code=rest[i], origin_description=_none(",".join(rest[i + 1:j])),
        class_type_code=rest[j], class_type_description=_none(",".join(rest[j + 1:])),
    )


def parse_export(body: bytes) -> list[Listing]:
    """The CSV export (windows-1252) -> its rows; raises SearchPageError when it is not the export."""
    text = body.decode("cp1252", errors="replace")
    lines = text.splitlines()
    if not lines or lines[0].strip() != CSV_HEADER:
        raise SearchPageError("not the search export (header missing)")
    if text and not text.endswith("\n"):
        raise SearchPageError("export cut short (no final line end)")
    return [parse_export_line(line) for line in lines[1:] if line.strip()]


def export_line(row: Listing) -> str:
    """A Listing as the export writes it (no quoting; the ID in single quotes)."""
    values = row.as_dict()
    values["completed_date"] = row.completed_date.strftime("%m/%d/%Y")
    values["ttb_id"] = f"'{TTBId(row.ttb_id)}'"
    return ",".join(values[c] or "" for c in COLUMNS)
