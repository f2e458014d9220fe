"""Discovery by search vs the walk over a simulated month with the registry's clock running.

Each simulated day (``sim.today`` advances; late approvals, status changes, withdrawals and a
sprinkle of every fault) both keep a mirror current, each in its own raw store:

* (a) **search-driven**: the discover stage for completed dates (watermark - overlap, today];
* (b) **walk**: the scrape of the last ``--rescan-days`` receipt days (re-walked, forced), as the
  daily ``--rescan-days 14`` run does.

Figures per approach: requests per stored page (every request, retries and searches included,
over the distinct pages in the raw store), recall (share of the records completed during the
month and public at its end whose detail page is stored), and status changes seen within one
day (a detail fetch on the change day or the next). Both run the production code paths without
Spark (the discover stage's driver code, the scrape stage's executor code), paced to the same
allowed rate; the highest rate over any 200 consecutive requests is reported. Run:
``.venv/bin/python -m bench.discovery_bench [--days 30 --scale 0.1 --rate 1000]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from bench.__main__ import table
from ttb_spark.raw import discover, scrape
from ttb_spark.registry import simulator
from ttb_spark.partitions import Partition
from ttb_spark.settings import load_settings
from ttb_spark.raw.storage import open_store

RESULTS = Path(__file__).parent / "results"
FAULTS = {
    "reset": 0.003, "server_error": 0.005, "rate_limit": 0.002, "truncate": 0.003,
    "session_timeout": 0.002, "captcha": 0.001, "retry_after": 0,  # time-compressed: 429s ask for no wait
}


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.discovery_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 3, 1), help="first simulated day")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=0.1, help="e-filed volume multiplier (1.0: 250-450 a weekday)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1000.0, help="allowed total requests/second")
    parser.add_argument("--rescan-days", type=int, default=14, help="receipt days the walk re-walks daily")
    parser.add_argument("--no-faults", action="store_true")
    return parser.parse_args(argv)


def _settings(raw: str, base_url: str, rate: float) -> Any:
    return load_settings("development", {
        "pipeline": {"raw_root": raw, "lakehouse_root": str(Path(raw) / "lakehouse"), "receipt_methods": ["001"]},
        "extraction": {"registry_base_url": base_url, "use_simulator": False, "max_requests_per_second": rate,
                       "scrape_concurrency": 1, "request_delay_seconds": 0.0, "backoff_initial_seconds": 0.02,
                       "backoff_max_seconds": 0.2},
    })


def _stored_details(raw: str) -> set[str]:
    return {Path(k).stem for k in open_store(raw).list("pages/method_type=001-cola-detail/")}


def _pages(raw: str) -> int:
    return len(open_store(raw).list("pages/"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    days = [args.start + timedelta(days=d) for d in range(args.days)]
    end = days[-1]
    faults = {} if args.no_faults else FAULTS
    fetched_on: dict[str, dict[str, set[date]]] = {"search": {}, "walk": {}}
    requests = {"search": 0, "walk": 0}
    elapsed = {"search": 0.0, "walk": 0.0}
    rates = {}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
            simulator.running(seed=args.seed, scale=args.scale, faults=faults, today=args.start) as sim:
        overlap = _settings(a, sim.base_url, args.rate).extraction.discovery_overlap_days
        for name, raw in (("search", a), ("walk", b)):
            settings = _settings(raw, sim.base_url, args.rate)
            served = len(sim.hits)
            started = time.monotonic()
            for day in days:
                sim.today = day
                before = len(sim.hits)
                if name == "search":
                    discover.discover(settings, f"day-{day:%Y%m%d}", day - timedelta(days=overlap), day,
                                      history_start=settings.pipeline.partition_start_date)
                else:
                    receipt = [day - timedelta(days=d) for d in range(args.rescan_days - 1, -1, -1)]
                    for data_type in ("cola-detail", "certificate"):
                        work = [(Partition(d, "001", data_type), True) for d in receipt]
                        list(scrape.scrape_slice([(0, work)], settings, f"walk-{day:%Y%m%d}", 1))
                for hit in sim.hits[before:]:
                    if hit.data_type == "cola-detail" and hit.answer == "page":
                        fetched_on[name].setdefault(hit.ttb_id, set()).add(day)
            elapsed[name] = time.monotonic() - started
            hits = sim.hits[served:]
            requests[name] = len(hits)
            window = max(2, min(int(2 * args.rate), 200))
            times = [h.at for h in hits]
            spans = [times[i + window] - times[i] for i in range(len(times) - window)]
            rates[name] = round(window / min(spans), 1) if spans and min(spans) > 0 else None
        registry = sim.registry
        receipt_days = [args.start - timedelta(days=simulator.MAX_LAG) + timedelta(days=d)
                        for d in range(simulator.MAX_LAG + args.days)]
        target, changes = set(), {}
        for receipt in receipt_days:
            for ttb_id in registry.public_ids(receipt, "001"):
                rec = registry.record(ttb_id)
                state = registry.state(ttb_id, end)
                if state.public and args.start <= state.completed_date <= end or (state.public and args.start <= rec.approval_date <= end):
                    target.add(ttb_id)
                if rec.change_date and args.start <= rec.change_date <= end and state.public:
                    changes[ttb_id] = rec.change_date
        stored = {"search": _stored_details(a), "walk": _stored_details(b)}
        pages = {"search": _pages(a), "walk": _pages(b)}

    result: dict[str, Any] = {"days": args.days, "scale": args.scale, "seed": args.seed, "faults": faults,
                              "allowed_rate": args.rate, "completed_in_month": len(target), "status_changes": len(changes)}
    for name in ("search", "walk"):
        seen = sum(1 for i, when in changes.items() if fetched_on[name].get(i, set()) & {when, when + timedelta(days=1)})
        result[name] = {
            "requests": requests[name],
            "stored_pages": pages[name],
            "requests_per_stored_page": round(requests[name] / pages[name], 3) if pages[name] else None,
            "recall": round(len(target & stored[name]) / len(target), 4) if target else None,
            "status_changes_seen_within_1_day": f"{seen}/{len(changes)}",
            "max_rate_200_requests": rates[name],
            "seconds": round(elapsed[name], 1),
        }
    print(table({"discovery_bench": result}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "discovery_bench.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
