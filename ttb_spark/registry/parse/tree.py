"""The lxml tree (the hot path): this thread's parser (one per-thread cache for the process), a page's tree
(parsed once per page) and an element's text, a ``<br>`` read as a line break."""

from __future__ import annotations

import threading

from lxml import etree

from ttb_spark.registry.parse.classification import _DETAIL_MARK, _find
from ttb_spark.registry.parse.values import ParseError

_PARSERS = threading.local()


def _html_parser() -> etree.HTMLParser:
    """This thread's lxml parser (a parser serves one thread at a time; workers may use threads)."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    return parser


_DETAIL_END = 'class="actionbox"'


def _tree(text: str, kind: str) -> etree._Element:
    """The page's lxml tree; a detail page is parsed from its ``<h1>`` to its action box only (the
    masthead, navigation and footer are half the page and hold no field)."""
    if kind == "detail":
        start = _find(text, _DETAIL_MARK, True)
        if start < 0:
            start = _find(text, _DETAIL_MARK, False)
        end = text.find(_DETAIL_END, start) if start >= 0 else -1
        if end > 0:
            text = text[start:end]
    root = etree.fromstring(text, _html_parser())
    if root is None:
        raise ParseError("unknown_layout", "no HTML tree")
    return root


def _text(el: etree._Element) -> str:
    """An element's text, a ``<br>`` read as a line break (never gluing two lines' words)."""
    if el.tag == "br":
        return "\n"
    if not len(el):
        return el.text or ""
    return "\n".join(_lines(el))


def _lines_into(el: etree._Element, lines: list[str]) -> None:
    """Append ``el``'s text split at ``<br>`` to ``lines`` (the last line stays open)."""
    if el.text:
        lines[-1] += el.text
    for child in el:
        if child.tag == "br":
            lines.append("")
        elif isinstance(child.tag, str):
            _lines_into(child, lines)
        if child.tail:
            lines[-1] += child.tail


def _lines(el: etree._Element) -> list[str]:
    lines = [""]
    _lines_into(el, lines)
    return lines


def _ancestor(el: etree._Element, tag: str) -> etree._Element | None:
    for parent in el.iterancestors(tag):
        return parent
    return None
