"""HTTP client for the registry: one polite, retrying ``requests`` session per scrape task.

* Politeness: every request (retries included) waits for its slot from a :class:`Pacer`; the
  scrape stage gives each of its concurrent tasks the interval ``concurrency / total rate`` so the
  tasks together never exceed ``TTB_MAX_REQUESTS_PER_SECOND``.
* Retries (tenacity): connection errors, timeouts, truncated transfers, 429 and 5xx, and pages
  the classifier calls transient (empty, truncated, session timeout, CAPTCHA); exponential backoff
  with full jitter, never shorter than the server's ``Retry-After``. A session-timeout page starts
  a fresh session (the registry's advice).
* TLS: verification is always on, against certifi's roots plus the registry's missing
  intermediate (shipped in the package; ``TTB_EXTRA_CA_BUNDLE`` replaces the extra file).
* Outcome of one page: ``found`` / ``not_found`` / ``unexpected`` (reason) / ``failed`` (reason,
  after retries), decided by :func:`ttb_spark.registry.parse.classify` for HTTP 200 answers.
* Label images (:meth:`RegistryClient.fetch_image`): the registry resolves an image from the last form its
  session was shown, so the client keeps which certificate that was and fetches it again first when it
  is another (or the session was renewed). ``found`` needs an ``image/*`` answer whose bytes end as its
  format ends (a cut-short transfer is retried); the error page, the session having just been shown the
  form, is ``missing``: the image is not there yet (TTB: 48 hours after approval).
* Search (:meth:`RegistryClient.search`): the form page (once per session, for the cookie), the
  POST, then the CSV export when the rows do not fit the first page (the results pages, paged
  with ``nextset``, are the fallback when the export is unusable). Each request is retried in
  place by the same policy, but for ``nextset``; the search starts over (as many times) only when
  its session is lost (a timeout page) or a results page after the first fails. Every answer is
  kept as served.
"""

from __future__ import annotations

import email.utils
import hashlib
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin, urlparse

import certifi
import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_base, retry_if_exception, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from ttb_spark.files import write_atomically
from ttb_spark.registry import search
from ttb_spark.registry.parse import classify
from ttb_spark.settings import PAGE_KINDS, ExtractionSettings
from ttb_spark.registry.ttb_id import TTBId

DEFAULT_EXTRA_CA = "data/certs/entrust-ov-tls-issuing-rsa-ca-2.pem"
ACTIONS: dict[str, str] = {"cola-detail": "publicDisplaySearchAdvanced", "certificate": "publicFormDisplay"}
# Classifier reasons worth another try: the next answer may well be the real page.
TRANSIENT_REASONS = frozenset({"empty", "truncated", "session_timeout", "captcha"})
RETRY_AFTER_CAP_SECONDS = 300.0
IMAGE_PATH = "publicViewAttachment.do"
# How each image format's bytes end when whole (JPEG: the EOI marker, with a little padding allowed after it;
# PNG: the IEND chunk; GIF: the trailer byte). Other image types are taken as served.
IMAGE_ENDINGS = {"image/jpeg": (b"\xff\xd9", 32), "image/png": (b"IEND\xaeB`\x82", 0), "image/gif": (b"\x3b", 0)}


class RegistryTLSError(RuntimeError):
    """TLS verification of the registry failed; the message names the fix (never verify=False)."""


def page_url(base_url: str, data_type: str, ttb_id: TTBId) -> str:
    """URL of a detail (``cola-detail``) or certificate page; only a validated TTBId gets in."""
    if not isinstance(ttb_id, TTBId):
        raise TypeError("registry URLs are built from validated TTBId values only")
    ttb_id = TTBId(ttb_id.value)
    if data_type not in ACTIONS:
        raise ValueError(f"unknown data type {data_type!r}")
    query = urlencode({"action": ACTIONS[data_type], "ttbid": str(ttb_id)})
    return f"{urljoin(base_url, 'viewColaDetails.do')}?{query}"


def image_url(base_url: str, file_name: str) -> str:
    """A label image's URL: the file name (free text) quoted whole, ``/`` and ``+`` included."""
    return f"{base_url}{IMAGE_PATH}?filename={quote(file_name, safe='')}&filetype=l"


def image_whole(body: bytes, content_type: str) -> bool:
    """Whether ``body`` ends as an image of ``content_type`` ends (:data:`IMAGE_ENDINGS`); other types: non-empty."""
    ending = IMAGE_ENDINGS.get(content_type.split(";")[0].strip().lower())
    if ending is None:
        return bool(body)
    marker, slack = ending
    return marker in body[-(len(marker) + slack):]


def ca_bundle(extra: str | None = None) -> str:
    """Path of a CA bundle: certifi's roots plus ``extra`` (default: the shipped Entrust intermediate).

    Written once per content to the temp folder (atomically), so every executor can build it.
    """
    extra_pem = Path(extra).read_bytes() if extra else resources.files("ttb_spark").joinpath(DEFAULT_EXTRA_CA).read_bytes()
    combined = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + extra_pem
    target = Path(tempfile.gettempdir()) / f"ttb_spark-ca-{hashlib.sha256(combined).hexdigest()[:16]}.pem"
    if not target.is_file():
        write_atomically(target, combined)
    return str(target)


class Pacer:
    """Hands out request slots at least ``interval`` seconds apart (thread-safe)."""

    def __init__(self, interval: float) -> None:
        self.interval = max(0.0, interval)
        self._next = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        """Give out no slot before ``seconds`` from now (staggers concurrent tasks)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


RATE_HEADROOM = 0.95  # pace at 95% of the limit: arrival jitter at the server must not push it over


def task_interval(extraction: ExtractionSettings, concurrent_tasks: int) -> float:
    """Seconds between one task's requests so ``concurrent_tasks`` tasks stay under the total rate."""
    total_rate = extraction.max_requests_per_second * RATE_HEADROOM
    return max(extraction.request_delay_seconds, max(1, concurrent_tasks) / total_rate)


@dataclass(frozen=True)
class Fetch:
    """The one outcome of fetching one page."""

    outcome: str  # found | not_found | unexpected | failed
    reason: str | None
    http_status: int | None
    body: bytes | None  # the page as served; set for found pages only
    attempts: int
    fetched_at: datetime
    content_type: str | None = None  # a label image's, as served (found images only)


@dataclass(frozen=True)
class SearchAnswer:
    """One search as the registry answered it: the rows it listed and every answer as served."""

    criteria: search.Criteria
    total: int  # Total Matching Records (true total)
    returned: int  # rows the search returned (capped)
    rows: tuple[search.Listing, ...]
    source: str  # export | results (rows read from the results pages) | none (no results)
    answers: tuple[tuple[str, bytes], ...]  # (name, body): results-001.html, export.csv, ...
    attempts: int  # times the search was started (its requests are retried in place)
    searched_at: datetime

    @property
    def complete(self) -> bool:
        """Every matching record is listed: the search stayed under the registry's cap."""
        return self.total == len(self.rows)


class SearchFailed(RuntimeError):
    """A search that did not give a usable answer after retries (names the search)."""


class _Retry(Exception):
    """An attempt that may succeed when repeated; carries the outcome to report if none does."""

    def __init__(self, outcome: str, reason: str, http_status: int | None = None, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.outcome, self.reason, self.http_status, self.retry_after = outcome, reason, http_status, retry_after


class _Restart(_Retry):
    """A search that must start over: its session was renewed, a ``nextset`` failed, or rows went missing."""


class _WaitRetryAfter:
    """tenacity wait: jittered exponential backoff, but never less than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.backoff = wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, retry_state) -> float:  # noqa: ANN001 (tenacity.RetryCallState)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return max(getattr(exc, "retry_after", 0.0), self.backoff(retry_state))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), capped; 0 if absent/bad."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(delta, 0.0), RETRY_AFTER_CAP_SECONDS)


class RegistryClient:
    """One task's client: a cookie-keeping session, a pacer and the retry policy."""

    def __init__(self, extraction: ExtractionSettings, pacer: Pacer) -> None:
        self.settings = extraction
        self.pacer = pacer
        self.base_url = extraction.registry_base_url
        self.verify = ca_bundle(extraction.extra_ca_bundle)
        self.requests_sent = 0
        self.sessions_started = 0
        self.form: str | None = None  # the TTB ID of the certificate this session was last shown
        self.session = self._new_session()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = self.settings.user_agent
        session.verify = self.verify
        session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=1))
        session.mount("http://", HTTPAdapter(max_retries=0, pool_maxsize=1))
        self.sessions_started += 1
        return session

    def renew_session(self) -> None:
        """Drop cookies and connections; the next request starts a fresh registry session."""
        self.session.close()
        self.session = self._new_session()
        self.form = None

    def close(self) -> None:
        self.session.close()

    def fetch(self, data_type: str, ttb_id: TTBId) -> Fetch:
        """Fetch one page; returns exactly one outcome. Raises RegistryTLSError when TLS verification fails."""
        url = page_url(self.base_url, data_type, ttb_id)
        attempts = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    outcome, reason, status, body = self._attempt(url, data_type, ttb_id)
        except _Retry as exc:
            outcome, reason, status, body = exc.outcome, exc.reason, exc.http_status, None
        if data_type == "certificate":
            self.form = str(ttb_id) if outcome == "found" else None
        return Fetch(outcome, reason, status, body, attempts, _now())

    def fetch_image(self, ttb_id: TTBId, file_name: str) -> Fetch:
        """One label image of ``ttb_id``'s certificate (``file_name`` as the certificate names it): ``found`` (its
        bytes and content type), ``missing`` (not there yet), or ``failed``/``unexpected`` with a reason, as
        for pages; ``certificate_<outcome>`` when the certificate it needs could not be shown first."""
        if not isinstance(ttb_id, TTBId):
            raise TypeError("label images are fetched for validated TTBId values only")
        url = image_url(self.base_url, file_name)
        attempts = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    if self.form != str(ttb_id):
                        shown = self.fetch("certificate", ttb_id)
                        if shown.outcome != "found":
                            outcome = "failed" if shown.outcome == "failed" else "unexpected"
                            return Fetch(outcome, f"certificate_{shown.reason or shown.outcome}", shown.http_status, None, attempts, _now())
                    attempts += 1
                    outcome, reason, status, body, kind = self._image_attempt(url, ttb_id)
        except _Retry as exc:
            return Fetch(exc.outcome, exc.reason, exc.http_status, None, attempts, _now())
        return Fetch(outcome, reason, status, body, attempts, _now(), kind)

    def _image_attempt(self, url: str, ttb_id: TTBId) -> tuple[str, str | None, int, bytes | None, str | None]:
        status, body, kind = self._http(url)
        if status != 200:
            return "unexpected", f"http_{status}", status, None, None
        if kind.lower().startswith("image/"):
            if not image_whole(body, kind):
                raise _Retry("failed", "truncated", status)
            return "found", None, status, body, kind
        verdict = classify(body, expected_ttb_id=str(ttb_id), expected_kind="certificate")
        if verdict.kind == "not_found":
            return "missing", None, status, None, None
        reason = verdict.reason or "unknown_layout"
        if reason in TRANSIENT_REASONS:
            raise self._transient(reason, status)
        return "unexpected", reason, status, None, None

    def _retrying(self, retry: retry_base | None = None) -> Retrying:
        """The policy: ``max_retries`` more attempts with backoff, for the _Retry answers ``retry`` accepts (all by default)."""
        s = self.settings
        return Retrying(
            stop=stop_after_attempt(s.max_retries + 1),
            wait=_WaitRetryAfter(s.backoff_initial_seconds, s.backoff_max_seconds),
            retry=retry or retry_if_exception_type(_Retry),
            reraise=True,
        )

    def _http(self, url: str, form: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        """One paced GET (or POST of ``form``): status, body and content type ("" when not given); raises _Retry
        for answers worth another try."""
        self.pacer.wait()
        self.requests_sent += 1
        try:
            # verify per request: a session-level value loses to $REQUESTS_CA_BUNDLE (requests#3829)
            timeout = self.settings.request_timeout_seconds
            if form is None:
                response = self.session.get(url, timeout=timeout, verify=self.verify)
            else:
                response = self.session.post(url, data=form, timeout=timeout, verify=self.verify)
            body = response.content
        except requests.exceptions.SSLError as exc:
            raise RegistryTLSError(tls_failure_message(url, exc)) from exc
        except requests.Timeout as exc:
            raise _Retry("failed", "timeout") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise _Retry("failed", "connection_error") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry("failed", f"http_{status}", status, retry_after_seconds(response.headers.get("Retry-After")))
        return status, body, response.headers.get("Content-Type", "")

    def _transient(self, reason: str, status: int | None) -> _Retry:
        """The retry for a transient page (a fresh session after a timeout page, a long pause after a CAPTCHA)."""
        if reason == "session_timeout":
            self.renew_session()
            return _Restart("unexpected", reason, status)
        pause = self.settings.backoff_max_seconds if reason == "captcha" else 0.0
        return _Retry("unexpected", reason, status, pause)

    def _attempt(self, url: str, data_type: str, ttb_id: TTBId) -> tuple[str, str | None, int, bytes | None]:
        status, body, _ = self._http(url)
        if status != 200:
            return "unexpected", f"http_{status}", status, None
        verdict = classify(body, expected_ttb_id=str(ttb_id), expected_kind=PAGE_KINDS[data_type])
        if verdict.kind == PAGE_KINDS[data_type]:
            return "found", None, status, body
        if verdict.kind == "not_found":
            return "not_found", None, status, None
        reason = verdict.reason or "unknown_layout"
        if reason in TRANSIENT_REASONS:
            raise self._transient(reason, status)
        return "unexpected", reason, status, None

    def search(self, criteria: search.Criteria) -> SearchAnswer:
        """Run one search; raises SearchFailed (naming it) when no usable answer comes after retries."""
        starts = 0
        try:
            for attempt in self._retrying(retry_if_exception_type(_Restart)):
                with attempt:
                    starts += 1
                    total, returned, rows, source, answers = self._search_once(criteria)
        except _Retry as exc:
            raise SearchFailed(f"search {criteria.label}: no usable answer after {starts} start(s) ({exc.reason})") from None
        return SearchAnswer(criteria, total, returned, tuple(rows), source, tuple(answers), starts, _now())

    def _search_answer(self, url: str, form: dict[str, str] | None = None) -> tuple[bytes, search.ResultsPage | None]:
        """One search request retried in place; a _Restart goes up to :meth:`search`. A ``nextset`` is not
        retried in place: the server moves its cursor whatever reaches us, so its failure starts the search over."""
        if url.endswith(search.NEXT_PATH):
            try:
                return self._search_answer_once(url, form)
            except _Retry as exc:
                raise _Restart(exc.outcome, exc.reason, exc.http_status, exc.retry_after) from None
        for attempt in self._retrying(retry_if_exception(lambda exc: isinstance(exc, _Retry) and not isinstance(exc, _Restart))):
            with attempt:
                answer = self._search_answer_once(url, form)
        return answer

    def _search_answer_once(self, url: str, form: dict[str, str] | None) -> tuple[bytes, search.ResultsPage | None]:
        """The search form or the export (its raw body), or a results page (parsed); transient pages raise _Retry."""
        status, body, _ = self._http(url, form)
        if status != 200:
            raise _Retry("unexpected", f"http_{status}", status)
        if url.endswith((search.EXPORT_PATH, search.FORM_PATH)):
            return body, None
        try:
            return body, search.parse_results_page(body)
        except search.SearchPageError as exc:
            reason = classify(body).reason or "unknown_layout"
            if reason in TRANSIENT_REASONS:
                raise self._transient(reason, status) from exc
            raise _Retry("unexpected", f"search_page_{reason}", status) from exc

    def _search_once(self, criteria: search.Criteria) -> tuple[int, int, list[search.Listing], str, list[tuple[str, bytes]]]:
        base = self.base_url
        if "JSESSIONID" not in self.session.cookies:
            self._search_answer(urljoin(base, search.FORM_PATH))
        body, page = self._search_answer(urljoin(base, search.SEARCH_PATH), criteria.form())
        answers = [("results-001.html", body)]
        if page.total == 0:
            return 0, 0, [], "none", answers
        if not page.has_next or page.total > page.returned:
            # everything is on this page, or the search is capped (the caller splits it: no export needed)
            return page.total, page.returned, list(page.rows), "results", answers
        export, _ = self._search_answer(urljoin(base, search.EXPORT_PATH))
        answers.append(("export.csv", export))
        try:
            rows = search.parse_export(export)
            if len(rows) == page.returned:
                return page.total, page.returned, rows, "export", answers
        except search.SearchPageError:
            pass
        rows = list(page.rows)  # the export is unusable: page through the results instead
        while page.has_next:
            body, page = self._search_answer(urljoin(base, search.NEXT_PATH))
            answers.append((f"results-{len(answers):03d}.html", body))
            rows.extend(page.rows)
        if len(rows) != page.returned:
            raise _Restart("unexpected", "search_rows_missing")
        return page.total, page.returned, rows, "results", answers


def tls_failure_message(url: str, exc: Exception) -> str:
    host = urlparse(url).hostname
    return (
        f"TLS verification of {host} failed ({exc}). The registry does not send its intermediate "
        f"certificate: put the issuing CA (named by the server certificate's AIA 'CA Issuers' URL; "
        f"the package ships {DEFAULT_EXTRA_CA}) in a PEM file and set TTB_EXTRA_CA_BUNDLE to it. "
        f"Verification is never turned off."
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)
