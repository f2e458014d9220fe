"""A backfill by search against the walk: requests per stored page and recall over a range of receipt days (issue #22).

For each search cap and code ordering the simulator (``registry`` profile: a real working day's volume and
cardinalities, a share of records filed under codes the seed lacks, faults off unless ``--faults SHARE``) serves a
registry whose clock stands ``--lag`` days after the range, and the backfill's discover stage runs as
``pipeline --start/--end`` runs it: completed dates from the range's first day to its last + ``--lag``, in the
runner's chunks, keeping the IDs received in the range (:func:`ttb_spark.ops.runner.plan`). Figures: recall
(detail pages stored / the simulator's truth: the IDs received in the range and listed by then), the requests
per stored page (searches, retries and fetches over the pages in the raw store), searches, and seconds. With
``--walk``, the walk of the same receipt days (the scrape stage's executor code) beside it. The production code
paths without Spark, over loopback HTTP. Run:
``.venv/bin/python -m bench.backfill_bench [--days 30 --scale 1.0 --caps 500,1000 --walk]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from bench.__main__ import publish
from bench.daily_bench import FAULTS
from bench.discovery_bench import _pages, _settings
from ttb_spark.ops import runner
from ttb_spark.partitions import Partition
from ttb_spark.raw import discover, scrape
from ttb_spark.registry import search, simulator
from ttb_spark.registry.listing import CODE_ORDERS
from ttb_spark.registry.ttb_id import TTBId
from ttb_spark.raw.storage import open_store
from ttb_spark.scope import Scope
from ttb_spark.settings import RECEIPT_METHODS

def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.backfill_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=date.fromisoformat, default=date(2024, 6, 3), help="first receipt day")
    parser.add_argument("--days", type=int, default=30, help="receipt days backfilled")
    parser.add_argument("--lag", type=int, default=180, help="TTB_BACKFILL_LAG_DAYS (the registry's clock stands this far after the range)")
    parser.add_argument("--chunk-days", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--caps", default="500,1000", help="search caps, comma-separated")
    parser.add_argument("--orders", default=",".join(CODE_ORDERS), help="code orderings, comma-separated")
    parser.add_argument("--unlisted", type=float, default=0.02, help="share of records filed under codes the seed lacks")
    parser.add_argument("--faults", type=float, default=0.0, metavar="SHARE",
                        help="share of requests answered with a fault, spread as the daily bench spreads its 10 %% (e.g. 0.2)")
    parser.add_argument("--walk", action="store_true", help="also walk the same receipt days")
    parser.add_argument("--rate", type=float, default=2000.0, help="allowed total requests/second")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, cap: int, order: str, walk: bool = False) -> dict[str, Any]:
    """One configuration: the backfill's chunks (or the walk), against the truth."""
    last = args.first + timedelta(days=args.days - 1)
    today = last + timedelta(days=args.lag)
    with tempfile.TemporaryDirectory() as raw, simulator.running(
        seed=args.seed, scale=args.scale, profile="registry", today=today, search_cap=cap, code_order=order,
        unlisted_codes=args.unlisted, faults={k: v * args.faults / sum(FAULTS.values()) for k, v in FAULTS.items()} if args.faults else None,
    ) as sim:
        # the truth first: it also builds the simulator's index of the days, which the first search would wait for
        truth = {r.ttb_id for r in sim.search(search.Criteria(args.first, today)) if args.first <= TTBId(r.ttb_id).receipt_date <= last}
        settings = _settings(raw, sim.base_url, args.rate)
        extraction = settings.extraction.model_copy(update={"backfill_lag_days": args.lag})
        settings = settings.model_copy(update={"extraction": extraction})
        started = time.monotonic()
        if walk:
            for data_type in ("cola-detail", "certificate"):
                work = [(Partition(args.first + timedelta(days=d), method, data_type), True) for d in range(args.days) for method in RECEIPT_METHODS]
                list(scrape.scrape_slice([(0, work)], settings, "walk", 1))
        else:
            scope = Scope(args.first, last, tuple(RECEIPT_METHODS), ("cola-detail", "certificate"))
            for start, end in runner.plan("pipeline", scope, args.chunk_days, runner.tail_end(settings, scope)):
                discover.discover(settings, f"backfill-{start:%Y%m%d}", start, end, history_start=args.first, sweep=False,
                                  received=(args.first, last))
        seconds = time.monotonic() - started
        stored = {Path(k).stem for k in open_store(raw).list("pages/") if "-cola-detail/" in k}
        pages, requests = _pages(raw), len(sim.hits)
        searches = sum(1 for h in sim.hits if h.data_type == "search")
    return {
        "recall": round(len(truth & stored) / len(truth), 6) if truth else 1.0, "records": len(truth),
        "stored_not_in_truth": len(stored - truth), "stored_pages": pages, "requests": requests, "search_requests": searches,
        "requests_per_stored_page": round(requests / pages, 4) if pages else None, "seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    results = {f"search, cap {cap} {order}": measure(args, int(cap), order)
               for cap in args.caps.split(",") for order in args.orders.split(",")}
    if args.walk:
        results["walk"] = measure(args, int(args.caps.split(",")[0]), args.orders.split(",")[0], walk=True)
    return publish("backfill_bench", args, results)


if __name__ == "__main__":
    main()
