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

Faults (each a probability per request, or for the first N hits of each page, deterministic by
seed): latency, 429 with ``Retry-After``, 500/503, connection resets, truncated bodies,
session-timeout pages (the session stays expired until the client starts a new one) and a CAPTCHA
page. Every request is recorded (time, path, TTB ID, answer) so callers can check recall, rates
and duplicate fetches.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Iterator
from urllib.parse import parse_qs, urlparse

from ttb_spark.ttb_id import TTBId, is_valid_ttb_id

PREFIX = "/colasonline/"
DETAIL_ACTIONS = frozenset({"publicDisplaySearchAdvanced", "publicDisplaySearchBasic"})
CERTIFICATE_ACTION = "publicFormDisplay"
LONG_GAP = (60, 150)  # non-public runs longer than the default threshold of 50 consecutive misses
_BRAND_WORDS = (
    ("OLD", "NORTH", "SILVER", "RED", "GOLDEN", "WILD", "STONE", "BLUE", "IRON", "COPPER", "HIGH", "LITTLE"),
    ("OAK", "RIVER", "RIDGE", "HARBOR", "MEADOW", "CANYON", "BARREL", "ORCHARD", "HOLLOW", "SUMMIT", "CREEK", "FIELD"),
)


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
}
_CERTIFICATE_FIELDS = {
    "serial": r"(SERIAL NUMBER(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "brand": r"(BRAND NAME(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "application": r"(DATE OF APPLICATION(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
    "approval": r"(DATE ISSUED(?:(?!</div>).)*</div>\s*<div class=\"data\">)([^<]*)(</div>)",
}


def _placeholders(text: str, ttb_id: str, patterns: dict[str, str]) -> str | None:
    """The page with its variable values replaced by ``\\x00name\\x00`` markers; None if a field is not found once."""
    for name, pattern in patterns.items():
        text, count = re.subn(pattern, lambda m, n=name: f"{m.group(1)}\x00{n}\x00{m.group(3)}", text, flags=re.S)
        if count != 1:
            return None
    return text.replace(ttb_id, "\x00ttb_id\x00")


@lru_cache(maxsize=1)
def _templates() -> tuple[tuple[str, str], ...]:
    """(detail, certificate) marker templates made from every saved real page pair."""
    root = resources.files("ttb_spark").joinpath("data/pages")
    pairs = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not is_valid_ttb_id(folder.name):
            continue
        detail = _placeholders(folder.joinpath("detail.html").read_bytes().decode("iso-8859-1"), folder.name, _DETAIL_FIELDS)
        cert = _placeholders(folder.joinpath("certificate.html").read_bytes().decode("iso-8859-1"), folder.name, _CERTIFICATE_FIELDS)
        if detail and cert:
            pairs.append((detail, cert))
    return tuple(pairs)


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


class SyntheticRegistry:
    """The deterministic set of public records: which sequence numbers are public, and their pages."""

    def __init__(self, seed: int = 0, scale: float = 1.0) -> None:
        self.seed, self.scale = seed, scale

    @lru_cache(maxsize=4096)
    def public_sequences(self, day: date, receipt_method: str) -> tuple[int, ...]:
        """Public sequence numbers of one receipt day and method, ascending."""
        rng = random.Random(f"{self.seed}|{day.isoformat()}|{receipt_method}")
        if receipt_method == "001":
            base = rng.randint(20, 60) if day.weekday() >= 5 else rng.randint(250, 450)
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

    def public_ids(self, day: date, receipt_method: str) -> list[str]:
        return [str(TTBId.build(day, receipt_method, s)) for s in self.public_sequences(day, receipt_method)]

    def record(self, ttb_id: str) -> Record | None:
        """The public record with this ID, or None when the ID is not public."""
        if not is_valid_ttb_id(ttb_id):
            return None
        tid = TTBId(ttb_id)
        if tid.sequence not in set(self.public_sequences(tid.receipt_date, tid.receipt_method)):
            return None
        rng = random.Random(f"{self.seed}|record|{ttb_id}")
        alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
        return Record(
            ttb_id=ttb_id,
            serial=f"{tid.receipt_date.year % 100:02d}" + "".join(rng.choice(alphabet) for _ in range(4)),
            brand=f"{rng.choice(_BRAND_WORDS[0])} {rng.choice(_BRAND_WORDS[1])}",
            receipt_date=tid.receipt_date,
            approval_date=tid.receipt_date + timedelta(days=rng.randint(0, 45)),
            template=rng.randrange(len(_templates())),
        )

    def render(self, record: Record, data_type: str) -> bytes:
        """The detail (``cola-detail``) or certificate page of a record, as the registry serves it."""
        detail, certificate = _templates()[record.template]
        text = detail if data_type == "cola-detail" else certificate
        values = {
            "ttb_id": record.ttb_id,
            "serial": record.serial,
            "brand": record.brand,
            "application": record.receipt_date.strftime("%m/%d/%Y"),
            "approval": record.approval_date.strftime("%m/%d/%Y"),
        }
        for name, value in values.items():
            text = text.replace(f"\x00{name}\x00", value)
        return text.encode("iso-8859-1")


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
    ) -> None:
        self.registry = SyntheticRegistry(seed, scale)
        self.seed = seed
        self.faults = faults or Faults()
        self._hits: list[Hit] = []
        self._page_hits: dict[tuple[str, str], int] = {}
        self._expired: set[str] = set()
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

    def public_ids(self, days: list[date], receipt_methods: list[str]) -> set[str]:
        return {i for d in days for m in receipt_methods for i in self.registry.public_ids(d, m)}

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
        if f.first_hits is not None and hit > f.first_hits:
            return None
        for kind in Faults.KINDS:
            probability = getattr(f, kind)
            if probability > 0 and _uniform(self.seed, kind, ttb_id, data_type, hit) < probability:
                return kind
        return None

    def expire(self, session: str) -> None:
        with self._cond:
            self._expired.add(session)

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

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            arrived = time.monotonic()
            url = urlparse(self.path)
            query = parse_qs(url.query)
            action = (query.get("action") or [None])[0]
            ttb_id = (query.get("ttbid") or [None])[0]
            session = _cookie(self.headers.get("Cookie"))
            new_session = None
            if session is None:
                session = new_session = uuid.uuid4().hex.upper()

            def record(status: int | None, answer: str, data_type: str | None = None) -> None:
                sim._record(Hit(arrived, self.path, action, ttb_id, data_type, status, answer, session, self.headers.get("User-Agent")))

            if url.path != PREFIX + "viewColaDetails.do" or action not in DETAIL_ACTIONS | {CERTIFICATE_ACTION}:
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
            if fault == "reset":
                record(None, "reset", data_type)
                self._reset()
                return
            if fault == "rate_limit":
                record(429, "rate_limit", data_type)
                self._send(429, b"<html><body>Too Many Requests</body></html>", new_session, {"Retry-After": str(sim.faults.retry_after)})
                return
            if fault == "server_error":
                status = 503 if _uniform(sim.seed, "status", ttb_id, arrived) < 0.5 else 500
                record(status, "server_error", data_type)
                self._send(status, b"<html><body>Service Unavailable</body></html>", new_session)
                return
            if fault == "session_timeout":
                sim.expire(session)
                record(200, "session_timeout", data_type)
                self._send(200, session_timeout_page(), new_session)
                return
            if fault == "captcha":
                record(200, "captcha", data_type)
                self._send(200, captcha_page(), new_session)
                return
            rec = sim.registry.record(ttb_id)
            body = sim.registry.render(rec, data_type) if rec else error_page()
            if fault == "truncate":
                record(200, "truncate", data_type)
                self._send(200, body[: len(body) // 3], new_session)
                return
            record(200, "page" if rec else "not_found", data_type)
            self._send(200, body, new_session)

        def _send(self, status: int, body: bytes, new_session: str | None, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html;charset=ISO-8859-1")
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
    parser.add_argument("--scale", type=float, default=1.0, help="e-filed (001) volume multiplier (1.0: 250-450 records a weekday)")
    parser.add_argument(
        "--fault", type=_fault_option, action="append", default=[], metavar="KIND[=P]",
        help=f"inject a fault with probability P per request (default 1); KIND one of {', '.join(Faults.KINDS)}",
    )
    parser.add_argument("--fault-first-hits", type=int, metavar="N", help="faults strike only the first N requests of each page")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--retry-after", type=int, default=1, help="seconds announced with a 429")
    parser.add_argument("--list-public", type=date.fromisoformat, metavar="YYYY-MM-DD", help="print that day's public TTB IDs and exit")


def run_command(args: argparse.Namespace) -> int:
    if args.scale <= 0:
        sys.stderr.write("ttb_spark simulate-registry: error: --scale must be > 0\n")
        return 2
    if args.list_public:
        registry = SyntheticRegistry(args.seed, args.scale)
        for method in ("000", "001", "002", "003"):
            for ttb_id in registry.public_ids(args.list_public, method):
                sys.stdout.write(ttb_id + "\n")
        return 0
    faults = Faults(
        latency=args.latency, first_hits=args.fault_first_hits, retry_after=args.retry_after, **dict(args.fault)
    )
    sim = RegistrySimulator(seed=args.seed, scale=args.scale, faults=faults, host=args.host, port=args.port)
    sys.stdout.write(f"registry simulator at {sim.base_url} (seed {args.seed}, scale {args.scale}); Ctrl-C stops\n")
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
