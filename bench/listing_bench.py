"""Listing completed days whole through the search, against registries that order and file class/type codes
unlike our lists (issue #22).

For each search cap and code ordering (``string``: codes compared as strings; ``numeric``: as zero-padded
numbers) the simulator (``registry`` profile: a real working day's volume and cardinalities; a share of
records filed under codes the seed lacks) serves the search, and :func:`ttb_spark.registry.listing.list_completed`
lists each completed day through the production client over loopback HTTP, faults off. Figures per
configuration: recall (listed / the simulator's truth, by TTB ID), searches and HTTP requests per listed
record, and the requests per stored page a search-driven backfill would then make (each listed record is two
pages, one request each without faults, plus its share of the search requests). Run:
``.venv/bin/python -m bench.listing_bench [--days 30 --scale 1.0 --caps 500,1000 --unlisted 0.02]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from typing import Any, Sequence

from bench.__main__ import publish
from ttb_spark.registry import listing, search, simulator
from ttb_spark.registry.listing import CODE_ORDERS
from ttb_spark.registry.client import Pacer, RegistryClient
from ttb_spark.settings import load_settings

def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.listing_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=date.fromisoformat, default=date(2024, 6, 3), help="first completed day listed")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--caps", default="500,1000", help="search caps, comma-separated")
    parser.add_argument("--orders", default=",".join(CODE_ORDERS), help="code orderings, comma-separated")
    parser.add_argument("--unlisted", type=float, default=0.02, help="share of records filed under codes the seed lacks")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, cap: int, order: str) -> dict[str, Any]:
    """One configuration: every day listed, against the truth."""
    last = args.first + timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory() as tmp, simulator.running(
        seed=args.seed, scale=args.scale, profile="registry", today=last + timedelta(days=1), search_cap=cap,
        code_order=order, unlisted_codes=args.unlisted,
    ) as sim:
        settings = load_settings("test", {"pipeline": {"raw_root": f"{tmp}/raw", "lakehouse_root": f"{tmp}/lakehouse"},
                                          "extraction": {"registry_base_url": sim.base_url, "use_simulator": False}})
        client = RegistryClient(settings.extraction, Pacer(0))
        listed, truth, searches, split_days, started = 0, 0, 0, 0, time.monotonic()
        missing = 0
        try:
            for offset in range(args.days):
                day = args.first + timedelta(days=offset)
                rows, answers = listing.list_completed(client.search, search.Criteria(day, day))
                expected = {r.ttb_id for r in sim.search(search.Criteria(day, day))}
                got = {r.ttb_id for r in rows}
                listed, truth, searches = listed + len(got & expected), truth + len(expected), searches + len(answers)
                missing += len(expected - got)
                split_days += len(answers) > 1
        finally:
            client.close()
        requests = len(sim.hits)
        seconds = time.monotonic() - started
    return {
        "recall": round(listed / truth, 6) if truth else 1.0, "records": truth, "missing": missing,
        "days_split": split_days, "searches": searches, "search_requests": requests,
        "searches_per_record": round(searches / max(truth, 1), 4), "requests_per_record": round(requests / max(truth, 1), 4),
        "backfill_requests_per_page": round((2 * truth + requests) / max(2 * truth, 1), 4), "seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    results = {f"cap {cap} {order}": measure(args, int(cap), order)
               for cap in args.caps.split(",") for order in args.orders.split(",")}
    return publish("listing_bench", args, results)


if __name__ == "__main__":
    main()
