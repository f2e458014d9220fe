"""What a fetched page is, from its text alone (cheap string tests, no tree): :func:`decode` (page bytes
read as browsers do), :func:`classify` and its :class:`Classification`, the :data:`REASONS` a page is
``unexpected`` for, and the marks each page kind is known by."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal

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


@dataclass(frozen=True)
class Classification:
    """What a page is; ``reason`` is one of :data:`REASONS` when ``kind`` is ``unexpected``."""

    kind: str
    reason: str | None
    detail: str | None = None


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
