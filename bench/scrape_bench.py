"""Scrape on a simulated receipt day: recall of public IDs, requests per found page, achieved vs
allowed request rate — with realistic volume and a sprinkle of every fault.

The scrape stage runs as in production (a Spark job, ``TTB_SCRAPE_CONCURRENCY`` tasks, paced to
``TTB_MAX_REQUESTS_PER_SECOND`` in total) against the loopback registry simulator; recall is the
share of the simulator's public IDs whose page landed in the raw store. Run:
``.venv/bin/python -m bench.scrape_bench [--scale 1 --rate 50 --days 1]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from ttb_spark.raw import scrape

from ttb_spark.registry import simulator
from ttb_spark.partitions import Partition
from ttb_spark.scope import ReceiptDates
from ttb_spark.settings import RECEIPT_METHODS, load_settings
from ttb_spark.raw.storage import open_store, partition_prefix

RESULTS = Path(__file__).parent / "results"
FAULTS = {
    "reset": 0.005, "server_error": 0.01, "rate_limit": 0.002, "truncate": 0.005,
    "session_timeout": 0.002, "captcha": 0.001, "latency": 0.002, "retry_after": 1,
}


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.scrape_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=date.fromisoformat, default=date(2024, 1, 2), help="first simulated receipt day")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="e-filed volume multiplier (1.0: 250-450 a weekday)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=50.0, help="allowed total requests/second")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threshold", type=int, default=50, help="consecutive not-found answers that end a walk")
    parser.add_argument("--no-faults", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    from ttb_spark.spark import get_spark

    end = args.date + timedelta(days=args.days - 1)
    faults = {} if args.no_faults else FAULTS
    with tempfile.TemporaryDirectory() as raw, simulator.running(seed=args.seed, scale=args.scale, faults=faults) as sim:
        settings = load_settings("development", {
            "pipeline": {"partition_start_date": args.date, "partition_end_date": end, "raw_root": raw,
                         "lakehouse_root": str(Path(raw) / "lakehouse")},
            "extraction": {"registry_base_url": sim.base_url, "use_simulator": False, "max_requests_per_second": args.rate,
                           "scrape_concurrency": args.concurrency, "request_delay_seconds": 0.0,
                           "consecutive_failure_threshold": args.threshold},
        })
        spark = get_spark(settings, app_name="ttb_spark-scrape-bench")
        started = time.monotonic()
        counts = scrape.run(spark, settings, ReceiptDates.from_settings(settings))
        elapsed = time.monotonic() - started
        hits = sim.hits
        store = open_store(raw)
        days = [args.date + timedelta(days=d) for d in range(args.days)]
        public = sim.public_ids(days, list(RECEIPT_METHODS))
        stored = {
            data_type: {Path(k).stem for d in days for m in RECEIPT_METHODS
                        for k in store.list(partition_prefix("pages", Partition(d, m, data_type)))}
            for data_type in ("cola-detail", "certificate")
        }
    span = hits[-1].at - hits[0].at if len(hits) > 1 else 0.0
    window = max(args.concurrency, int(2 * args.rate))  # ~2 s of requests at the allowed rate
    found_pages = len(stored["cola-detail"]) + len(stored["certificate"])
    result = {
        "days": args.days, "scale": args.scale, "seed": args.seed, "faults": faults,
        "public_ids": len(public),
        "recall_detail": round(len(stored["cola-detail"] & public) / len(public), 4) if public else None,
        "recall_certificate": round(len(stored["certificate"] & public) / len(public), 4) if public else None,
        "stored_not_public": len((stored["cola-detail"] | stored["certificate"]) - public),
        "requests": len(hits),
        "requests_per_found_page": round(len(hits) / found_pages, 3) if found_pages else None,
        "faults_served": sum(h.answer not in ("page", "not_found") for h in hits),
        "allowed_rate": args.rate,
        "achieved_rate": round(len(hits) / span, 2) if span else None,
        "max_rate_2s_windows": round(sim.max_rate(window), 2),
        "scrape_seconds": round(elapsed, 1),
        "counts": counts,
    }
    rows = [(k, v) for k, v in result.items() if k != "counts"] + [(f"counts.{k}", v) for k, v in counts.items()]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scrape_bench.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
