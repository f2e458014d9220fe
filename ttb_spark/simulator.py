"""A loopback stand-in for the TTB Public COLA Registry, for tests, benchmarks and the demo.

It speaks the registry's URL scheme (``/colasonline/viewColaDetails.do?action=
publicDisplaySearchAdvanced|publicDisplaySearchBasic|publicFormDisplay&ttbid=<id>``), hands out
a ``JSESSIONID`` cookie and answers HTTP 200 with the real error page for every TTB ID that is not
public, like the registry. Public records are a deterministic (seeded) synthetic set: per receipt
day, hundreds for e-filing (``001``, times ``scale``), none to a few for the paper codes, with
short gaps of non-public sequence numbers and, on e-filed days, at least one run longer than the
default consecutive-miss threshold. Pages are the 18 real saved pages used as templates, with the TTB ID,
serial number, brand name and dates swapped (application date = receipt date <= approval/issue
date).

The clock: with a simulated ``today`` (``RegistrySimulator(today=...)``, ``simulate-registry
--today``) every record has a timeline drawn from its ID: its completed (approval) date, mostly
days to weeks after receipt with a tail past 90 days; for a few per hundred a later status change
(SURRENDERED, REVOKED, EXPIRED) whose date becomes the record's completed date; for about one in a
hundred a withdrawal from public view (the error page from that day on). A record is public from
its approval to its withdrawal and its pages show its status as of today; :meth:`SyntheticRegistry.state`
and ``--list-public DAY --today T`` give the truth as of any day. Without a ``today`` every record is
public, as approved (the walk-based tests and benchmarks rely on that).

The search (SITE.md "Search"): the form page sets the session cookie; the POST lists the records
completed in a window (class/type range and origin narrow it) in the real results page's layout,
20 rows a page by TTB ID, paged with ``nextset`` in the same session, returning at most
``search_cap`` rows while "Total Matching Records" shows the true total; the real no-results page;
the CSV export of the session's search with the real quirks. A search request without a live
session gets the session-timeout page. Assumed where the saved pages say nothing: class/type
codes compare as strings, an empty bound is open, later pages carry a ``prevset`` link.

Faults (each a probability per request, or for the first N hits of each page, deterministic by
seed): latency, 429 with ``Retry-After``, 500/503, connection resets, truncated bodies,
session-timeout pages (the session stays expired until the client starts a new one) and a CAPTCHA
page. Every request is recorded (time, path, TTB ID, answer) so callers can check recall, rates
and duplicate fetches.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import html
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, fields
from datetime import date, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlparse

from ttb_spark import search
from ttb_spark.ttb_id import TTBId, is_valid_ttb_id

PREFIX = "/colasonline/"
DETAIL_ACTIONS = frozenset({"publicDisplaySearchAdvanced", "publicDisplaySearchBasic"})
CERTIFICATE_ACTION = "publicFormDisplay"
LONG_GAP = (60, 150)  # non-public runs longer than the default threshold of 50 consecutive misses
_BRAND_WORDS = (
    ("OLD", "NORTH", "SILVER", "RED", "GOLDEN", "WILD", "STONE", "BLUE", "IRON", "COPPER", "HIGH", "LITTLE"),
    ("OAK", "RIVER", "RIDGE", "HARBOR", "MEADOW", "CANYON", "BARREL", "ORCHARD", "HOLLOW", "SUMMIT", "CREEK", "FIELD"),
)
STATUS_CHANGES = ("SURRENDERED", "REVOKED", "EXPIRED")
APPROVAL_LAG = ((0.80, 1, 21), (0.95, 22, 89), (1.0, 90, 180))  # (cumulative share, min days, max days)
CHANGE_SHARE, CHANGE_LAG = 0.04, (14, 365)  # status changes: share of records, days after approval
WITHDRAW_SHARE, WITHDRAW_LAG = 0.01, (7, 180)  # withdrawals from public view
MAX_LAG = APPROVAL_LAG[-1][2] + CHANGE_LAG[1]  # receipt -> last possible completed date
SEARCH_CAP = 500
SEARCH_SPAN_DAYS = 15 * 366
PROFILES = ("templates", "registry")
EFILED = {"templates": ((250, 450), (20, 60)), "registry": ((600, 1300), (10, 60))}  # e-filed a day at scale 1: (weekday, weekend)
PERMITS_PER_TEMPLATE = 400  # registry profile: 18 templates x 400 = 7,200 permits, filings Zipf-distributed over them
PERMIT_ZIPF, BRAND_ZIPF = 1.1, 1.0  # exponents: a few very large filers, a long tail of small ones; brands per permit likewise
BRANDS_PER_PERMIT = 120
MAIN_CLASS_SHARE = 0.6  # registry profile: share of a permit's filings under its main class/type (the rest: any of its product type)
_NAME_WORDS = (
    ("OLD", "NORTH", "SILVER", "RED", "GOLDEN", "WILD", "STONE", "BLUE", "IRON", "COPPER", "HIGH", "LITTLE", "GREAT", "BLACK",
     "WHITE", "GREEN", "EAGLE", "FOX", "BEAR", "CEDAR", "PINE", "LAUREL", "CROWN", "STAR", "MOON", "SUN", "THREE", "TWIN",
     "LONE", "BIG", "SMOKY", "SALT", "SAINT", "CASTLE", "KING", "QUEEN", "FOUR", "HIDDEN", "BRIGHT", "DARK"),
    ("OAK", "RIVER", "RIDGE", "HARBOR", "MEADOW", "CANYON", "BARREL", "ORCHARD", "HOLLOW", "SUMMIT", "CREEK", "FIELD", "VALLEY",
     "HILL", "MILL", "STILL", "CELLAR", "VINE", "GROVE", "SPRING", "LAKE", "BAY", "ROCK", "TRAIL", "GATE", "BRIDGE", "FORGE",
     "FARM", "ESTATE", "HOUSE", "POINT", "PEAK", "FALLS", "GLEN", "MESA", "BLUFF", "COVE", "ISLAND", "PRAIRIE", "WOODS"),
    ("", "", "", "RESERVE", "SELECT", "NO. 7", "SMALL BATCH", "CLASSIC", "ORIGINAL", "SPECIAL", "PRIVATE", "HERITAGE",
     "FAMILY", "CUVEE", "SINGLE BARREL", "VINTAGE", "GOLD", "BLACK LABEL", "IPA", "LAGER"),
)
_COMPANY_KINDS = {"WINE": "WINERY LLC", "DISTILLED SPIRITS": "DISTILLING CO.", "MALT BEVERAGE": "BREWING COMPANY"}


@dataclass(frozen=True)
class Faults:
    """Fault injection: probabilities per request (0..1), optionally only for each page's first hits."""

    latency: float = 0.0  # seconds added to every answer
    rate_limit: float = 0.0  # HTTP 429 with Retry-After
    server_error: float = 0.0  # HTTP 500 or 503
    reset: float = 0.0  # connection reset without an answer
    truncate: float = 0.0  # the page cut short (HTTP 200, consistent Content-Length)
    session_timeout: float = 0.0  # the "20 minute timeout" page; the session stays expired
    captcha: float = 0.0  # a CAPTCHA challenge page
    first_hits: int | None = None  # faults strike only a page's first N requests (None: every request)
    retry_after: int = 1  # seconds announced with a 429
    data_types: tuple[str, ...] = ()  # faults strike only these requests ("cola-detail", "certificate", "search"); (): all
    broken: tuple[str, ...] = ()  # "<ttb_id>/<data_type>" pages served broken: HTTP 500 on every request, whatever the above

    KINDS = ("reset", "rate_limit", "server_error", "session_timeout", "captcha", "truncate")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class Hit:
    """One request as the simulator saw it."""

    at: float  # time.monotonic() on arrival
    path: str
    action: str | None
    ttb_id: str | None
    data_type: str | None  # cola-detail | certificate
    status: int | None  # None for a reset connection
    answer: str  # page | not_found | rate_limit | server_error | reset | truncate | session_timeout | captcha | bad_request
    session: str | None
    user_agent: str | None = None


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0] / 2**64


# --- templates ---------------------------------------------------------------------------------

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
    from ttb_spark import parse

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


# --- the synthetic record set -------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    ttb_id: str
    serial: str
    brand: str
    receipt_date: date
    approval_date: date
    template: int
    change_status: str | None = None  # a later status (SURRENDERED, REVOKED, EXPIRED) ...
    change_date: date | None = None  # ... from this day on
    withdrawn_date: date | None = None  # answers the error page from this day on
    varied: tuple[tuple[str, str], ...] = ()  # registry profile: values in place of the template's (permit, names, codes)

    def value(self, name: str, default: str | None) -> str | None:
        """The record's own value of a varied field (``permit``, ``class_type_code`` ...), else ``default``."""
        return dict(self.varied).get(name, default)


@dataclass(frozen=True)
class State:
    """A record as of one day: public or not, its status and its completed date."""

    public: bool
    status: str | None
    completed_date: date | None


class SyntheticRegistry:
    """The deterministic set of records: which sequence numbers are ever public, their timelines and pages."""

    def __init__(self, seed: int = 0, scale: float = 1.0, profile: str = "templates") -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
        self.seed, self.scale, self.profile = seed, scale, profile
        self._lock = threading.Lock()
        self._indexed: set[date] = set()
        self._completions: dict[date, list[str]] = {}  # completed date (approval or change) -> IDs

    @lru_cache(maxsize=4096)
    def public_sequences(self, day: date, receipt_method: str) -> tuple[int, ...]:
        """Sequence numbers of one receipt day and method that are ever approved, ascending."""
        rng = random.Random(f"{self.seed}|{day.isoformat()}|{receipt_method}")
        if receipt_method == "001":
            weekday, weekend = EFILED[self.profile]
            base = rng.randint(*weekend) if day.weekday() >= 5 else rng.randint(*weekday)
            count = max(1, round(base * self.scale))
        else:
            count = rng.choice((0, 0, 0, 1, 1, 2, 3))
        long_gaps = receipt_method == "001" and count >= 10
        sequences, seq = [], 0
        for index in range(count):
            if long_gaps and (index == count // 2 or rng.random() < 1 / 150):
                gap = rng.randint(*LONG_GAP)
            elif rng.random() < 0.25:
                gap = rng.randint(1, 8)
            else:
                gap = 0
            seq += gap + 1
            sequences.append(seq)
        return tuple(sequences)

    def public_ids(self, day: date, receipt_method: str, as_of: date | None = None) -> list[str]:
        """IDs of a receipt day and method public as of ``as_of`` (every ever-approved one when None)."""
        ids = [str(TTBId.build(day, receipt_method, s)) for s in self.public_sequences(day, receipt_method)]
        return ids if as_of is None else [i for i in ids if self.state(i, as_of).public]

    @lru_cache(maxsize=200_000)
    def record(self, ttb_id: str) -> Record | None:
        """The record with this ID, or None when the ID is never public."""
        if not is_valid_ttb_id(ttb_id):
            return None
        tid = TTBId(ttb_id)
        if tid.sequence not in set(self.public_sequences(tid.receipt_date, tid.receipt_method)):
            return None
        rng = random.Random(f"{self.seed}|record|{ttb_id}")
        alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
        serial = f"{tid.receipt_date.year % 100:02d}" + "".join(rng.choice(alphabet) for _ in range(4))
        brand = f"{rng.choice(_BRAND_WORDS[0])} {rng.choice(_BRAND_WORDS[1])}"
        rng.randint(0, 45)  # the draw of the former flat approval lag, kept so templates stay as they were
        template = rng.randrange(len(_templates()))
        clock = random.Random(f"{self.seed}|clock|{ttb_id}")
        if clock.random() < 0.05:
            brand += ", LTD."  # a comma inside a value: the CSV export does not quote it
        share = clock.random()
        low, high = next((lo, hi) for cut, lo, hi in APPROVAL_LAG if share < cut)
        approval = tid.receipt_date + timedelta(days=clock.randint(low, high))
        change_status = change_date = withdrawn = None
        if clock.random() < CHANGE_SHARE:
            change_status = clock.choice(STATUS_CHANGES)
            change_date = approval + timedelta(days=clock.randint(*CHANGE_LAG))
        if clock.random() < WITHDRAW_SHARE:
            withdrawn = approval + timedelta(days=clock.randint(*WITHDRAW_LAG))
        varied: dict[str, str] = {}
        if self.profile == "registry":
            varied = _population_draw(random.Random(f"{self.seed}|population|{ttb_id}"), template)
            brand = varied.pop("brand") + (", LTD." if brand.endswith(", LTD.") else "")
        return Record(ttb_id, serial, brand, tid.receipt_date, approval, template, change_status, change_date, withdrawn,
                      tuple(sorted(varied.items())))

    def state(self, ttb_id: str, as_of: date | None) -> State:
        """The record as of ``as_of``; None means no clock: public as approved, status of its template."""
        rec = self.record(ttb_id)
        if rec is None:
            return State(False, None, None)
        if as_of is None:
            return State(True, _templates()[rec.template].status, rec.approval_date)
        public = rec.approval_date <= as_of and not (rec.withdrawn_date and rec.withdrawn_date <= as_of)
        if rec.change_date and rec.change_date <= as_of:
            return State(public, rec.change_status, rec.change_date)
        return State(public, "APPROVED", rec.approval_date) if rec.approval_date <= as_of else State(False, None, None)

    def _index(self, first: date, last: date) -> None:
        """Index the completions of every record received from ``first`` to ``last``."""
        with self._lock:
            day = first
            while day <= last:
                if day not in self._indexed:
                    for method in ("000", "001", "002", "003"):
                        for ttb_id in self.public_ids(day, method):
                            rec = self.record(ttb_id)
                            for when in (rec.approval_date, rec.change_date):
                                if when:
                                    self._completions.setdefault(when, []).append(ttb_id)
                    self._indexed.add(day)
                day += timedelta(days=1)

    def completed_between(self, first: date, last: date, as_of: date | None) -> list[search.Listing]:
        """Public records whose completed date (as of ``as_of``) falls in ``first..last``, by TTB ID."""
        last = min(last, as_of) if as_of else last
        if first > last:
            return []
        self._index(first - timedelta(days=MAX_LAG), last)
        rows = {}
        day = first
        while day <= last:
            for ttb_id in self._completions.get(day, ()):
                state = self.state(ttb_id, as_of)
                if state.public and state.completed_date == day:
                    rows[ttb_id] = self.listing(ttb_id, day)
            day += timedelta(days=1)
        return [rows[k] for k in sorted(rows)]

    def observable_history(self, ids: Iterable[str], since: date, run_days: list[date]) -> set[tuple[str, str, str | None, str | None]]:
        """(ttb_id, change_type, previous_status, status) a mirror updated on ``run_days`` (listing completions
        from ``since``) can observe: each record's status on the first run day after an event (approval or
        change on or after ``since``) while public, a change when it differs from the last seen; and
        ``withdrawn`` on the first run day after its withdrawal, once seen."""
        rows = set()
        for ttb_id in ids:
            seen: list[str] = []
            for run in run_days:
                state = self.state(ttb_id, run)
                if state.public and state.completed_date >= since and (not seen or seen[-1] != state.status):
                    rows.add((ttb_id, "change" if seen else "initial", seen[-1] if seen else None, state.status))
                    seen.append(state.status)
            withdrawn = self.record(ttb_id).withdrawn_date
            if seen and withdrawn and withdrawn <= run_days[-1]:
                rows.add((ttb_id, "withdrawn", seen[-1], None))
        return rows

    def listing(self, ttb_id: str, completed: date) -> search.Listing:
        """The search row of a record."""
        rec = self.record(ttb_id)
        tpl = _templates()[rec.template]
        return search.Listing(
            ttb_id, completed, rec.value("permit", tpl.permit_number), rec.serial, tpl.fanciful_name, rec.brand,
            rec.value("origin_code", tpl.origin_code), rec.value("origin_description", tpl.origin_description),
            rec.value("class_type_code", tpl.class_type_code), rec.value("class_type_description", tpl.class_type_description),
        )

    def render(self, record: Record, data_type: str, as_of: date | None = None) -> bytes:
        """The detail (``cola-detail``) or certificate page of a record as of ``as_of``, as the registry serves it."""
        tpl = _templates()[record.template]
        text = tpl.detail if data_type == "cola-detail" else tpl.certificate
        page = "detail" if data_type == "cola-detail" else "certificate"
        for key, saved in tpl.saved:
            where, name = key.split(".", 1)
            if where == page:
                value = record.value(name, None)
                text = text.replace(f"\x00{name}\x00", saved if value is None else html.escape(value, quote=False))
        values = {
            "ttb_id": record.ttb_id,
            "serial": record.serial,
            "brand": record.brand,
            "application": record.receipt_date.strftime("%m/%d/%Y"),
            "approval": record.approval_date.strftime("%m/%d/%Y"),
            "status": self.state(record.ttb_id, as_of).status or tpl.status,
        }
        for name, value in values.items():
            text = text.replace(f"\x00{name}\x00", value)
        return text.encode("iso-8859-1")


# --- the registry profile's population: permits, companies, brands, class/types and origins ----


@lru_cache(maxsize=4)
def _cumulative(n: int, exponent: float) -> tuple[float, ...]:
    """Cumulative Zipf weights of ranks 1..n."""
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += rank ** -exponent
        out.append(total)
    return tuple(out)


def _zipf(rng: random.Random, n: int, exponent: float) -> int:
    """A rank in 1..n drawn with probability proportional to rank ** -exponent."""
    weights = _cumulative(n, exponent)
    return min(bisect.bisect_left(weights, rng.random() * weights[-1]), n - 1) + 1


@lru_cache(maxsize=1)
def _codes() -> tuple[dict[str, tuple[tuple[str, str], ...]], dict[bool, tuple[tuple[str, str], ...]]]:
    """Reference class/type codes by product type and origin codes by domestic flag, as (code, description)."""
    from ttb_spark import reference

    classes: dict[str, list[tuple[str, str]]] = {}
    origins: dict[bool, list[tuple[str, str]]] = {}
    for row in reference.seed_rows():
        if not row.description or not row.description.isascii():
            continue
        if row.ref_type == "class_type" and row.product_type:
            classes.setdefault(row.product_type, []).append((row.code, row.description))
        elif row.ref_type == "origin" and row.is_domestic is not None:
            origins.setdefault(row.is_domestic, []).append((row.code, row.description))
    return {k: tuple(v) for k, v in classes.items()}, {k: tuple(v) for k, v in origins.items()}


def _pick(key: str, options: tuple) -> Any:
    return options[int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % len(options)]


def _population_draw(rng: random.Random, template: int) -> dict[str, str]:
    """A registry-profile record's permit (Zipf over the template's permits), its company, brand (Zipf over
    the permit's brands), class/type (mostly the permit's main one, any of its product type otherwise) and origin."""
    tpl = _templates()[template]
    rank = _zipf(rng, PERMITS_PER_TEMPLATE, PERMIT_ZIPF)
    number = 30_000 + template * 1_000 + rank
    permit = re.sub(r"\d+$", str(number), tpl.permit_number) if re.search(r"\d$", tpl.permit_number) else f"{tpl.permit_number}-{number}"
    out = {"permit": permit}
    out["applicant_name"] = " ".join((_pick(permit + "|a", _NAME_WORDS[0]), _pick(permit + "|b", _NAME_WORDS[1]),
                                      _COMPANY_KINDS.get(tpl.product_type or "", "IMPORTS LLC")))
    j = _zipf(rng, BRANDS_PER_PERMIT, BRAND_ZIPF)
    out["brand"] = " ".join(w for w in (_pick(f"{permit}|{j}|{i}", words) for i, words in enumerate(_NAME_WORDS)) if w)
    classes, origins = _codes()
    kinds = classes.get(tpl.product_type or "")
    if kinds:
        main = _pick(permit + "|class", kinds)
        out["class_type_code"], out["class_type_description"] = main if rng.random() < MAIN_CLASS_SHARE else rng.choice(kinds)
    domestic = tpl.origin_code.isdigit() and int(tpl.origin_code) <= 49
    out["origin_code"], out["origin_description"] = _pick(permit + "|origin", origins[domestic]) if rng.random() < 0.8 else rng.choice(origins[domestic])
    return out


def matches(row: search.Listing, criteria: search.Criteria) -> bool:
    """Whether a listed row meets the class/type range and origin of a search (codes compare as strings)."""
    code = row.class_type_code or ""
    if criteria.class_type_from and code < criteria.class_type_from:
        return False
    if criteria.class_type_to and code > criteria.class_type_to:
        return False
    return not criteria.origin_code or row.origin_code == criteria.origin_code



# --- the HTTP server ----------------------------------------------------------------------------


class RegistrySimulator:
    """The simulator server; a context manager that starts and stops it on a background thread."""

    def __init__(
        self,
        seed: int = 0,
        scale: float = 1.0,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
        today: date | None = None,
        search_cap: int = SEARCH_CAP,
        profile: str = "templates",
    ) -> None:
        self.registry = SyntheticRegistry(seed, scale, profile)
        self.seed = seed
        self.faults = faults or Faults()
        self.today = today  # the simulated day; None: no clock, every record public as approved
        self.search_cap = search_cap
        self._hits: list[Hit] = []
        self._page_hits: dict[tuple[str, str], int] = {}
        self._expired: set[str] = set()
        self._sessions: set[str] = set()  # issued by this server
        self._searches: dict[str, _Search] = {}  # session -> its current search
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # resets and aborted clients are expected
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        bound_host, bound_port = self._server.server_address[:2]
        self.base_url = f"{scheme}://{'localhost' if tls else bound_host}:{bound_port}{PREFIX}"
        self._thread: threading.Thread | None = None

    def start(self) -> RegistrySimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join()

    def __enter__(self) -> RegistrySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # observations

    @property
    def hits(self) -> list[Hit]:
        with self._cond:
            return list(self._hits)

    def wait_for_hits(self, count: int, timeout: float) -> bool:
        """Block until ``count`` requests have been served (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._hits) >= count, timeout)

    def public_ids(self, days: list[date], receipt_methods: list[str], as_of: date | None = None) -> set[str]:
        """IDs of the receipt days public as of ``as_of`` (default: the simulator's today)."""
        when = as_of or self.today
        return {i for d in days for m in receipt_methods for i in self.registry.public_ids(d, m, when)}

    def search(self, criteria: search.Criteria) -> list[search.Listing]:
        """Every row a search matches as of today (uncapped), by TTB ID."""
        rows = self.registry.completed_between(criteria.date_from, criteria.date_to, self.today)
        return [r for r in rows if matches(r, criteria)]

    def max_rate(self, window: int) -> float:
        """Highest request rate seen over any ``window + 1`` consecutive requests (requests/second)."""
        times = sorted(h.at for h in self.hits)
        spans = [times[i + window] - times[i] for i in range(len(times) - window)]
        return window / min(spans) if spans and min(spans) > 0 else (float("inf") if spans else 0.0)

    # request handling (called on server threads)

    def _record(self, hit: Hit) -> None:
        with self._cond:
            self._hits.append(hit)
            self._cond.notify_all()

    def _count_hit(self, ttb_id: str, data_type: str) -> int:
        with self._cond:
            key = (ttb_id, data_type)
            self._page_hits[key] = self._page_hits.get(key, 0) + 1
            return self._page_hits[key]

    def _fault(self, ttb_id: str, data_type: str, hit: int) -> str | None:
        f = self.faults
        if f"{ttb_id}/{data_type}" in f.broken:
            return "server_error"
        if (f.first_hits is not None and hit > f.first_hits) or (f.data_types and data_type not in f.data_types):
            return None
        for kind in Faults.KINDS:
            probability = getattr(f, kind)
            if probability > 0 and _uniform(self.seed, kind, ttb_id, data_type, hit) < probability:
                return kind
        return None

    def expire(self, session: str) -> None:
        with self._cond:
            self._expired.add(session)

    def _issue(self, session: str) -> None:
        with self._cond:
            self._sessions.add(session)

    def _live(self, session: str | None) -> bool:
        with self._cond:
            return session is not None and session in self._sessions and session not in self._expired

    def is_expired(self, session: str) -> bool:
        with self._cond:
            return session in self._expired


def _handler(sim: RegistrySimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes
        server_version = "Apache"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            return

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):
                super().finish()

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("iso-8859-1"), keep_blank_values=True).items()}
            self._answer(form)

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            self._answer(None)

        def _answer(self, form: dict[str, str] | None) -> None:
            arrived = time.monotonic()
            url = urlparse(self.path)
            query = parse_qs(url.query)
            action = (query.get("action") or [None])[0]
            ttb_id = (query.get("ttbid") or [None])[0]
            session = _cookie(self.headers.get("Cookie"))
            new_session = None
            if session is None:
                session = new_session = uuid.uuid4().hex.upper()
            if new_session:
                sim._issue(session)

            def record(status: int | None, answer: str, data_type: str | None = None) -> None:
                sim._record(Hit(arrived, self.path, action, ttb_id, data_type, status, answer, session, self.headers.get("User-Agent")))

            route = url.path.removeprefix(PREFIX)
            if route in _SEARCH_ROUTES and (form is not None) == (route == "publicSearchColasBasicProcess.do"):
                self._search(route, form or {}, session, new_session, record)
                return
            if form is not None or url.path != PREFIX + "viewColaDetails.do" or action not in DETAIL_ACTIONS | {CERTIFICATE_ACTION}:
                record(404, "bad_request")
                self._send(404, b"<html><body>Not Found</body></html>", new_session)
                return
            data_type = "certificate" if action == CERTIFICATE_ACTION else "cola-detail"
            if sim.faults.latency:
                time.sleep(sim.faults.latency)
            if not ttb_id or not is_valid_ttb_id(ttb_id):
                record(200, "bad_request", data_type)
                self._send(200, error_page(), new_session)
                return
            fault = sim._fault(ttb_id, data_type, sim._count_hit(ttb_id, data_type))
            if new_session is None and sim.is_expired(session):
                fault = "session_timeout"
            if self._faulted(fault, ttb_id, data_type, session, new_session, record, arrived):
                return
            rec = sim.registry.record(ttb_id)
            public = rec is not None and sim.registry.state(ttb_id, sim.today).public
            body = sim.registry.render(rec, data_type, sim.today) if public else error_page()
            if fault == "truncate":
                record(200, "truncate", data_type)
                self._send(200, body[: len(body) // 3], new_session)
                return
            record(200, "page" if public else "not_found", data_type)
            self._send(200, body, new_session)

        def _faulted(self, fault: str | None, key: str, data_type: str, session: str, new_session: str | None,
                     record: Callable[..., None], arrived: float) -> bool:
            """Answer a fault other than truncation; True when answered."""
            if fault == "reset":
                record(None, "reset", data_type)
                self._reset()
            elif fault == "rate_limit":
                record(429, "rate_limit", data_type)
                self._send(429, b"<html><body>Too Many Requests</body></html>", new_session, {"Retry-After": str(sim.faults.retry_after)})
            elif fault == "server_error":
                status = 503 if _uniform(sim.seed, "status", key, arrived) < 0.5 else 500
                record(status, "server_error", data_type)
                self._send(status, b"<html><body>Service Unavailable</body></html>", new_session)
            elif fault == "session_timeout":
                sim.expire(session)
                record(200, "session_timeout", data_type)
                self._send(200, session_timeout_page(), new_session)
            elif fault == "captcha":
                record(200, "captcha", data_type)
                self._send(200, captcha_page(), new_session)
            else:
                return False
            return True

        def _search(self, route: str, form: dict[str, str], session: str, new_session: str | None,
                    record: Callable[..., None]) -> None:
            """The search form, a search, the next page or the CSV export of the session's search."""
            arrived = time.monotonic()
            state = sim._searches.get(session)
            if route == "publicSearchColasBasic.do":
                key = "form"
            elif route == "publicSearchColasBasicProcess.do":
                key = "search|" + "|".join(f"{k}={form[k]}" for k in sorted(form))
            else:
                key = f"{route}|{state.criteria.label if state else ''}|{state.offset if state else ''}"
            fault = sim._fault(key, "search", sim._count_hit(key, "search"))
            if new_session is None and sim.is_expired(session):
                fault = "session_timeout"
            if self._faulted(fault, key, "search", session, new_session, record, arrived):
                return
            if route == "publicSearchColasBasic.do":
                record(200, "form", "search")
                self._send(200, search_form_page(), new_session)
                return
            if not sim._live(session) or new_session or (route != "publicSearchColasBasicProcess.do" and state is None):
                record(200, "stale_session", "search")  # what the site gives a request without a live session
                self._send(200, session_timeout_page(), new_session)
                return
            if route == "publicSearchColasBasicProcess.do":
                criteria = _criteria(form)
                if criteria is None:
                    record(200, "bad_request", "search")
                    self._send(200, error_page(), new_session)
                    return
                rows = sim.search(criteria)
                state = sim._searches[session] = _Search(criteria, rows[: sim.search_cap], len(rows), 0)
            elif route == "publicPageBasicCola.do":
                state.offset = min(state.offset + search.PAGE_ROWS, max(0, len(state.rows) - 1) // search.PAGE_ROWS * search.PAGE_ROWS)
            if route == "publicSaveSearchResultsToFile.do":
                body, answer, kind = render_export(state.rows), "export", "text/csv;charset=windows-1252"
            else:
                page = state.rows[state.offset : state.offset + search.PAGE_ROWS]
                body = render_results(page, state.offset, len(state.rows), state.total)
                answer, kind = ("results" if state.total else "no_results"), None
            if fault == "truncate":
                body, answer = body[: len(body) // 3], "truncate"
            record(200, answer, "search")
            self._send(200, body, new_session, content_type=kind)

        def _send(self, status: int, body: bytes, new_session: str | None, headers: dict[str, str] | None = None,
                  content_type: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type or "text/html;charset=ISO-8859-1")
            self.send_header("Content-Length", str(len(body)))
            if new_session:
                self.send_header("Set-Cookie", f"JSESSIONID={new_session}; Path=/colasonline; HttpOnly")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _reset(self) -> None:
            """Close the connection with a TCP RST and no answer."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

    return Handler


_SEARCH_ROUTES = frozenset(
    {"publicSearchColasBasic.do", "publicSearchColasBasicProcess.do", "publicPageBasicCola.do", "publicSaveSearchResultsToFile.do"}
)


@dataclass
class _Search:
    """A session's current search: its rows (capped), the true total and the page shown."""

    criteria: search.Criteria
    rows: list[search.Listing]
    total: int
    offset: int


def _criteria(form: dict[str, str]) -> search.Criteria | None:
    """The search's criteria from the POSTed form; None when the dates are missing, bad or too far apart."""
    from datetime import datetime

    try:
        first, last = (
            datetime.strptime(form.get(f"searchCriteria.dateCompleted{n}", ""), "%m/%d/%Y").date() for n in ("From", "To")
        )
    except ValueError:
        return None
    if last < first or (last - first).days > SEARCH_SPAN_DAYS:
        return None
    return search.Criteria(
        first, last, form.get("searchCriteria.classTypeFrom", "").strip(), form.get("searchCriteria.classTypeTo", "").strip(),
        form.get("searchCriteria.originCode", "").strip(),
    )


def _cookie(header: str | None) -> str | None:
    match = re.search(r"JSESSIONID=([0-9A-F]+)", header or "")
    return match.group(1) if match else None


@contextlib.contextmanager
def running(**options: object) -> Iterator[RegistrySimulator]:
    """A started :class:`RegistrySimulator` (options as its constructor; ``faults`` a Faults or dict)."""
    faults = options.pop("faults", None)
    if isinstance(faults, dict):
        faults = Faults(**faults)
    with RegistrySimulator(faults=faults, **options) as sim:  # type: ignore[arg-type]
        yield sim


@contextlib.contextmanager
def serving(**options: object) -> Iterator[str]:
    """A running loopback simulator's base URL (``http://127.0.0.1:<port>/colasonline/``)."""
    with running(**options) as sim:
        yield sim.base_url


# --- command line -------------------------------------------------------------------------------


def _fault_option(value: str) -> tuple[str, float]:
    name, _, probability = value.partition("=")
    name = name.strip().replace("-", "_")
    if name not in Faults.KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; one of {', '.join(Faults.KINDS)}")
    try:
        p = float(probability or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fault probability must be a number, got {probability!r}") from None
    if not 0 <= p <= 1:
        raise argparse.ArgumentTypeError(f"fault probability must be within 0..1, got {p}")
    return name, p


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8731, help="port (0 picks a free one; default 8731)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic record set and of fault draws")
    parser.add_argument("--scale", type=float, default=1.0, help="e-filed (001) volume multiplier (1.0: 250-450 records a weekday; 600-1,300 with --profile registry)")
    parser.add_argument("--profile", choices=PROFILES, default="templates",
                        help="templates: the 18 saved pages' permits and codes (what the tests pin); registry: a real working day's volume "
                             "and cardinalities (7,200 permits with Zipf-distributed filings, tens of thousands of brands, every class/type and origin)")
    parser.add_argument(
        "--fault", type=_fault_option, action="append", default=[], metavar="KIND[=P]",
        help=f"inject a fault with probability P per request (default 1); KIND one of {', '.join(Faults.KINDS)}",
    )
    parser.add_argument("--fault-first-hits", type=int, metavar="N", help="faults strike only the first N requests of each page")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--retry-after", type=int, default=1, help="seconds announced with a 429")
    parser.add_argument("--today", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="the simulated day: records are public from approval to withdrawal, pages show the status as of it (default: no clock, all public)")
    parser.add_argument("--search-cap", type=int, default=SEARCH_CAP, help=f"most rows a search returns (default {SEARCH_CAP})")
    parser.add_argument("--list-public", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="print the TTB IDs received that day and public as of --today, and exit")


def run_command(args: argparse.Namespace) -> int:
    if args.scale <= 0:
        sys.stderr.write("ttb_spark simulate-registry: error: --scale must be > 0\n")
        return 2
    if args.search_cap < 1:
        sys.stderr.write("ttb_spark simulate-registry: error: --search-cap must be >= 1\n")
        return 2
    if args.list_public:
        registry = SyntheticRegistry(args.seed, args.scale, args.profile)
        for method in ("000", "001", "002", "003"):
            for ttb_id in registry.public_ids(args.list_public, method, args.today):
                sys.stdout.write(ttb_id + "\n")
        return 0
    faults = Faults(
        latency=args.latency, first_hits=args.fault_first_hits, retry_after=args.retry_after, **dict(args.fault)
    )
    sim = RegistrySimulator(seed=args.seed, scale=args.scale, faults=faults, host=args.host, port=args.port,
                            today=args.today, search_cap=args.search_cap, profile=args.profile)
    clock = f", today {args.today}" if args.today else ""
    sys.stdout.write(f"registry simulator at {sim.base_url} (seed {args.seed}, scale {args.scale}{clock}); Ctrl-C stops\n")
    sys.stdout.flush()
    started = time.monotonic()
    try:
        sim._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim._server.server_close()
        hits = sim.hits
        elapsed = max(time.monotonic() - started, 1e-9)
        sys.stdout.write(f"served {len(hits)} requests in {elapsed:.1f}s ({len(hits) / elapsed:.2f}/s average)\n")
    return 0
