"""``python -m ttb_spark parse FILE...``: one JSON object per saved page (debugging)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ttb_spark.registry.parse.extract import parse_page

if TYPE_CHECKING:
    import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="saved page files (detail, certificate or any other page)")
    parser.add_argument("--expect-ttb-id", help="classify pages for another TTB ID as wrong_ttb_id")


def run_command(args: argparse.Namespace) -> int:
    """Print one JSON object per file: ``file``, ``kind`` and the record's fields, or ``reason`` and
    ``detail`` for pages that are not records. Exit 1 when a file cannot be read."""
    import json

    status = 0
    for name in args.files:
        try:
            with open(name, "rb") as handle:
                page = handle.read()
        except OSError as exc:
            sys.stderr.write(f"ttb_spark parse: error: {name}: {exc.strerror}\n")
            status = 1
            continue
        result = parse_page(page, expected_ttb_id=getattr(args, "expect_ttb_id", None))
        out: dict[str, Any] = {"file": name, "kind": result.kind}
        if result.record is not None:
            out.update(result.record)
        else:
            out.update(reason=result.reason, detail=result.detail)
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    return status
