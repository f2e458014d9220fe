"""Code silver runs on the executors: each bronze page parsed where it is, in Arrow batches."""

from __future__ import annotations

import json
from typing import Any

from ttb_spark.settings import PAGE_KINDS
from ttb_spark.silver.tables import PARSE_RESULT, PARSED


def parse_one(html: str | None, ttb_id: str, data_type: str) -> tuple[str, str | None, str | None, str | None]:
    """(parse_status, reason, detail, record JSON) for one page; runs on executors, never raises.

    A parser crash is quarantined as status ``error`` / reason ``parser_exception`` so one odd page
    cannot stop a backfill; the page stays in bronze for a replay after the fix.
    """
    from ttb_spark.registry import parse

    try:
        served = (html or "").encode("latin-1")  # bronze's lossless decoding, undone: the parser decodes bytes itself
        result = parse.parse_page(served, expected_ttb_id=ttb_id, expected_kind=PAGE_KINDS[data_type])
    except Exception as exc:  # noqa: BLE001 - quarantined, see docstring
        return "error", "parser_exception", f"{type(exc).__name__}: {exc}"[:1000], None
    if result.record is None:
        return result.kind, result.reason, result.detail, None
    return PARSED, None, None, json.dumps(result.record, default=str)


def parse_batches(batches: Any) -> Any:
    """mapInArrow body: each batch's columns pass through as they are, ``html`` replaced by the parse result."""
    import pyarrow as pa

    for batch in batches:
        pages = zip(batch.column("html").to_pylist(), batch.column("ttb_id").to_pylist(), batch.column("data_type").to_pylist())
        results = list(zip(*(parse_one(*page) for page in pages))) or [()] * len(PARSE_RESULT.fields)
        kept = [name for name in batch.schema.names if name != "html"]
        yield pa.RecordBatch.from_arrays(
            [*(batch.column(name) for name in kept), *(pa.array(values, pa.string()) for values in results)],
            names=[*kept, *PARSE_RESULT.fieldNames()],
        )
