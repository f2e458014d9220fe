"""The simulator's HTTP server: the registry's routes, sessions, the search, fault injection and the
record of every request; :func:`running` and :func:`serving` start one on loopback.

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
page. Label images (:mod:`.images`) are resolved from the session's last certificate viewed, as the
registry resolves them: an image of another form, or asked for in a session that viewed none, gets
HTTP 200 with the error page, as does one not there yet (48 hours after approval). Every request is
recorded (time, path, TTB ID, answer) so callers can check recall, rates and duplicate fetches.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from dataclasses import dataclass, fields
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlparse

from ttb_spark.registry import search
from ttb_spark.registry.simulator import images
from ttb_spark.registry.simulator.pages import (
    captcha_page, error_page, render_export, render_results, search_form_page, session_timeout_page,
)  # fmt: skip
from ttb_spark.registry.listing import CODE_ORDERS
from ttb_spark.registry.simulator.registry import SyntheticRegistry, matches
from ttb_spark.registry.ttb_id import is_valid_ttb_id

PREFIX = "/colasonline/"
DETAIL_ACTIONS = frozenset({"publicDisplaySearchAdvanced", "publicDisplaySearchBasic"})
CERTIFICATE_ACTION = "publicFormDisplay"
SEARCH_CAP = 500
SEARCH_SPAN_DAYS = 15 * 366


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
    data_types: tuple[str, ...] = ()  # faults strike only these requests ("cola-detail", "certificate", "search", "label-image"); (): all
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
    data_type: str | None  # cola-detail | certificate | search | label-image
    status: int | None  # None for a reset connection
    answer: str  # page | not_found | image | no_image | rate_limit | server_error | reset | truncate | session_timeout | captcha | bad_request
    session: str | None
    user_agent: str | None = None


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0] / 2**64

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
        code_order: str = "string",
        unlisted_codes: float = 0.0,
    ) -> None:
        if code_order not in CODE_ORDERS:
            raise ValueError(f"unknown code order {code_order!r}; one of {', '.join(CODE_ORDERS)}")
        self.registry = SyntheticRegistry(seed, scale, profile, unlisted_codes)
        self.code_order = code_order  # how the search compares class/type codes (registry.code_key)
        self.seed = seed
        self.faults = faults or Faults()
        self.today = today  # the simulated day; None: no clock, every record public as approved
        self.search_cap = search_cap
        self._hits: list[Hit] = []
        self._page_hits: dict[tuple[str, str], int] = {}
        self._expired: set[str] = set()
        self._sessions: set[str] = set()  # issued by this server
        self._searches: dict[str, _Search] = {}  # session -> its current search
        self._forms: dict[str, str] = {}  # session -> the TTB ID of the last certificate it was shown
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
        return [r for r in rows if matches(r, criteria, self.code_order)]

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

    def _viewed(self, session: str, ttb_id: str | None) -> None:
        with self._cond:
            if ttb_id is None:
                self._forms.pop(session, None)
            else:
                self._forms[session] = ttb_id

    def last_form(self, session: str) -> str | None:
        """The TTB ID of the last certificate ``session`` was shown (None: none, or an error page since)."""
        with self._cond:
            return self._forms.get(session)


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
            if route == images.ROUTE and form is None:
                ttb_id = sim.last_form(session)  # what the hit records (None for a session just issued)
                self._image(query, ttb_id, session, new_session, record, arrived)
                return
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
            answered, fault = self._struck(ttb_id, data_type, session, new_session, record, arrived)
            if answered:
                return
            rec = sim.registry.record(ttb_id)
            public = rec is not None and sim.registry.state(ttb_id, sim.today).public
            body = sim.registry.render(rec, data_type, sim.today) if public else error_page()
            if data_type == "certificate":
                sim._viewed(session, ttb_id if public else None)  # a truncated answer too: the server showed the form
            if fault == "truncate":
                record(200, "truncate", data_type)
                self._send(200, body[: len(body) // 3], new_session)
                return
            record(200, "page" if public else "not_found", data_type)
            self._send(200, body, new_session)

        def _image(self, query: dict[str, list[str]], ttb_id: str | None, session: str, new_session: str | None,
                   record: Callable[..., None], arrived: float) -> None:
            """A label image of the session's last certificate, by file name; the error page when there is none."""
            name = (query.get("filename") or [""])[0]
            key = f"{ttb_id}/{name}"
            answered, fault = self._struck(key, "label-image", session, new_session, record, arrived)
            if answered:
                return
            rec = sim.registry.record(ttb_id) if ttb_id else None
            label = None
            if rec is not None and (query.get("filetype") or [""])[0] == "l" and images.available(rec.approval_date, sim.today):
                shown = images.labels(sim.registry.render(rec, "certificate", sim.today))
                label = next((lab for lab in shown if lab.file_name == name), None)
            if label is None or not sim.registry.state(rec.ttb_id, sim.today).public:
                record(200, "no_image", "label-image")
                self._send(200, error_page(), new_session)
                return
            body = images.image_of(rec, label)
            answer = "image"
            if fault == "truncate":
                body, answer = body[: len(body) // 3], "truncate"
            record(200, answer, "label-image")
            self._send(200, body, new_session, content_type=label.content_type)

        def _struck(self, key: str, kind: str, session: str, new_session: str | None, record: Callable[..., None],
                    arrived: float) -> tuple[bool, str | None]:
            """The fault striking this request (a session the server expired keeps getting the timeout page), and
            whether it was answered (every fault but truncation, which the caller applies to its answer)."""
            fault = sim._fault(key, kind, sim._count_hit(key, kind))
            if new_session is None and sim.is_expired(session):
                fault = "session_timeout"
            return self._faulted(fault, key, kind, session, new_session, record, arrived), fault

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
            answered, fault = self._struck(key, "search", session, new_session, record, arrived)
            if answered:
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
    """The search's criteria from the POSTed form; None when the dates are missing, bad or too far apart, or the name is
    not a brand-name prefix."""
    from datetime import datetime

    try:
        first, last = (
            datetime.strptime(form.get(f"searchCriteria.dateCompleted{n}", ""), "%m/%d/%Y").date() for n in ("From", "To")
        )
    except ValueError:
        return None
    if last < first or (last - first).days > SEARCH_SPAN_DAYS:
        return None
    # names: only what this simulator models, a brand-name prefix (``<prefix>%`` with name type B)
    name, name_type = form.get("searchCriteria.productOrFancifulName", ""), form.get("searchCriteria.productNameSearchType", "E")
    if name and (name_type != "B" or not name.endswith("%") or "%" in name[:-1]):
        return None
    return search.Criteria(
        first, last, form.get("searchCriteria.classTypeFrom", "").strip(), form.get("searchCriteria.classTypeTo", "").strip(),
        form.get("searchCriteria.originCode", "").strip(), name[:-1],
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
