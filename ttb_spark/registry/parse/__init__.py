"""Classify registry pages and extract COLA records from them (pure: no Spark, no network).

Two page layouts carry records: the COLA detail page and the printable certificate (TTB F 5100.31).
Everything else is the registry's error page (``not_found``) or ``unexpected`` with a stable reason.
Fields are found by their label text, never by position, so reordered, missing or extra rows parse.

Layers: :func:`classify` looks at the page text only (cheap string tests); the extractors walk an
lxml tree into raw label -> text items (``detail_items`` / ``certificate_items``); the record
builders turn raw items into the contract's typed record. Silver applies this to millions of pages,
so patterns are compiled once and the tree is parsed once per page.

One concern a module: :mod:`.classification` (decoding and classifying a page from its text),
:mod:`.values` (the value cleaning both record pages share, and :class:`ParseError`), :mod:`.tree` (the
lxml tree: the per-thread parser, element text), :mod:`.detail` and :mod:`.certificate` (each record
page's labels, raw items, tree walk and record), :mod:`.extract` (the entry points :func:`parse_page`,
:func:`parse_detail`, :func:`parse_certificate`) and :mod:`.command` (``python -m ttb_spark parse``).
The names other code uses are imported here.
"""

from ttb_spark.registry.parse.certificate import (
    CERTIFICATE_FIELDS, LABEL_FIELDS, CertificateItems, Checkbox, certificate_items, certificate_label_key,
    certificate_record,
)  # fmt: skip
from ttb_spark.registry.parse.classification import REASONS, Classification, classify, decode
from ttb_spark.registry.parse.command import configure_parser, run_command
from ttb_spark.registry.parse.detail import DETAIL_FIELDS, DetailItems, detail_items, detail_label_key, detail_record
from ttb_spark.registry.parse.extract import ParseResult, parse_certificate, parse_detail, parse_page
from ttb_spark.registry.parse.values import ParseError

__all__ = [
    "CERTIFICATE_FIELDS", "DETAIL_FIELDS", "LABEL_FIELDS", "REASONS", "CertificateItems", "Checkbox",
    "Classification", "DetailItems", "ParseError", "ParseResult", "certificate_items", "certificate_label_key",
    "certificate_record", "classify", "configure_parser", "decode", "detail_items", "detail_label_key",
    "detail_record", "parse_certificate", "parse_detail", "parse_page", "run_command",
]  # fmt: skip
