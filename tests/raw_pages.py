"""Test setup for bronze/silver: raw stores filled with the real saved pages, laid out per contracts.md section 2.

This writes what the scraper writes (pages under their keys, manifest.jsonl, _COMPLETE) through
storage.LocalStore / S3Store; it is input construction, not a stand-in for our code.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import ttb_spark
from ttb_spark.raw import storage
from ttb_spark.partitions import Partition
from ttb_spark.registry.ttb_id import TTBId

PAGES = Path(ttb_spark.__file__).resolve().parent / "data" / "pages"
FILES = {"cola-detail": "detail.html", "certificate": "certificate.html"}
FETCHED_AT = "2026-11-27T10:00:00.123456+00:00"

# Two real e-filed records a few days apart (a wine and a spirit), in one small scope.
WINE, SPIRIT = "25094001000051", "25100001000686"
START, END = date(2025, 4, 4), date(2025, 4, 10)


def real_page(ttb_id: str, data_type: str) -> bytes:
    return (PAGES / ttb_id / FILES[data_type]).read_bytes()


def error_page() -> bytes:
    return (PAGES / "_error" / "not-found.html").read_bytes()


def reference_values(ttb_id: str) -> dict:
    return json.loads((PAGES / ttb_id / "reference-values.json").read_text())


def manifest_line(ttb_id: str, data_type: str, content: bytes | None, run_id: str, outcome: str = "found") -> dict:
    tid = TTBId(ttb_id)
    part = Partition(tid.receipt_date, tid.receipt_method, data_type)
    stored = content is not None
    return {
        "ttb_id": ttb_id,
        "method_type": part.method_type,
        "receipt_date": part.receipt_date.isoformat(),
        "data_type": data_type,
        "receipt_method": tid.receipt_method,
        "sequence": tid.sequence,
        "outcome": outcome,
        "reason": None,
        "http_status": 200,
        "bytes": len(content) if stored else None,
        "sha256": hashlib.sha256(content).hexdigest() if stored else None,
        "fetched_at": FETCHED_AT,
        "attempts": 1,
        "key": storage.page_key(part, tid) if stored else None,
        "run_id": run_id,
        "withdrawn_at": None,
    }


def write_partition(
    store: storage.RawStore,
    day: date,
    data_type: str,
    pages: dict[str, bytes],
    not_found: tuple[str, ...] = (),
    run_id: str = "scrape-1",
    complete: bool = True,
) -> Partition:
    """Store ``pages`` (TTB ID -> bytes, all listed as found) and the partition's manifest (+ _COMPLETE)."""
    part = Partition(day, "001", data_type)
    lines = []
    for ttb_id, content in pages.items():
        store.put(storage.page_key(part, TTBId(ttb_id)), content)
        lines.append(manifest_line(ttb_id, data_type, content, run_id))
    lines += [manifest_line(t, data_type, None, run_id, outcome="not_found") for t in not_found]
    store.put(storage.manifest_key(part), "".join(json.dumps(line) + "\n" for line in lines).encode())
    if complete:
        summary = {
            "partition": part.key,
            "attempted": len(lines),
            "found": len(pages),
            "not_found": len(not_found),
            "unexpected": 0,
            "failed": 0,
            "highest_sequence_found": max((TTBId(t).sequence for t in pages), default=0),
            "elapsed_seconds": 1.0,
            "achieved_request_rate": 1.0,
            "completed_at": FETCHED_AT,
            "run_id": run_id,
        }
        store.put(storage.complete_key(part), json.dumps(summary).encode())
    return part


def fill_real(store: storage.RawStore, run_id: str = "scrape-1") -> None:
    """Both pages of WINE and SPIRIT, each in its own complete partition, with a miss listed beside them."""
    for ttb_id in (WINE, SPIRIT):
        tid = TTBId(ttb_id)
        miss = str(TTBId.build(tid.receipt_date, "001", tid.sequence + 1))
        for data_type in FILES:
            write_partition(store, tid.receipt_date, data_type, {ttb_id: real_page(ttb_id, data_type)}, (miss,), run_id)
