"""The 60-day scenario of tests/test_daily.py with the daily job run on every one of the 60 days.

The simulator's clock (seed 4 from 2024-03-04, scale 0.01: a few records a day; late approvals,
status changes, a withdrawal; faults on every kind of request) advances a day at a time and
``daily --env test --since-last-run`` runs in-process through ``ttb_spark.cli.main`` after each
step, the simulated today given as ``TTB_PARTITION_END_DATE``. Then one more run on the last day.
Prints per-run wall times, whether gold equals the registry's public truth as of the last day,
whether ``fact_status_changes`` holds exactly the observable changes, and the tables whose data
the extra run changed (none expected). Run: ``.venv/bin/python -m bench.daily_bench [--days 60]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from bench.__main__ import table
from ttb_spark import cli, lakehouse, search, simulator
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.facts import FACT_STATUS_CHANGES

RESULTS = Path(__file__).parent / "results"
FAULTS = {"reset": 0.02, "server_error": 0.03, "rate_limit": 0.02, "truncate": 0.02, "session_timeout": 0.01, "retry_after": 0}
BOOKKEEPING = {"ops.pipeline_runs", "ops.ingested_manifests"}


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.daily_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 3, 4), help="first simulated day")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.01)
    return parser.parse_args(argv)


def _daily(sim: simulator.RegistrySimulator, day: date) -> float:
    sim.today = day
    os.environ["TTB_PARTITION_END_DATE"] = day.isoformat()
    started = time.monotonic()
    with redirect_stdout(io.StringIO()) as out:
        code = cli.main(["daily", "--env", "test", "--since-last-run"])
    if code != 0:
        raise RuntimeError(f"daily {day} exited {code}:\n{out.getvalue()}")
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    days = [args.start + timedelta(days=d) for d in range(args.days)]
    last = days[-1]
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    spark = get_spark(load_settings("test"), app_name="bench-daily")
    saved = {k: os.environ.get(k) for k in ("TTB_USE_SIMULATOR", "TTB_REGISTRY_BASE_URL", "TTB_RAW_ROOT", "TTB_LAKEHOUSE_ROOT",
                                            "TTB_PARTITION_START_DATE", "TTB_PARTITION_END_DATE")}
    try:
        with tempfile.TemporaryDirectory() as tmp, simulator.running(seed=args.seed, scale=args.scale, faults=FAULTS, today=args.start) as sim:
            root = str(Path(tmp) / "lakehouse")
            os.environ.update(TTB_USE_SIMULATOR="false", TTB_REGISTRY_BASE_URL=sim.base_url, TTB_RAW_ROOT=str(Path(tmp) / "raw"),
                              TTB_LAKEHOUSE_ROOT=root, TTB_PARTITION_START_DATE=args.start.isoformat())
            started = time.monotonic()
            seconds = [_daily(sim, day) for day in days]
            total = time.monotonic() - started
            truth = {r.ttb_id: sim.registry.state(r.ttb_id, last).status for r in sim.search(search.Criteria(args.start, last))}
            versions = {n: lakehouse.current_version(spark, s, root) for n, s in lakehouse.REGISTRY.items()}
            again = _daily(sim, last)
            changed = {n: c for n, s in lakehouse.REGISTRY.items() if n not in BOOKKEEPING
                       and (c := lakehouse.data_commits(spark, s, root, versions.get(n)))}
            gold = {r.ttb_id: r.status for r in lakehouse.read_table(spark, CONSOLIDATED, root).select("ttb_id", "status").collect()}
            history = {(r.ttb_id, r.change_type, r.previous_status, r.status) for r in lakehouse.read_table(spark, FACT_STATUS_CHANGES, root).collect()}
            expected = sim.registry.observable_history({h[0] for h in history} | set(truth), args.start, days)
            requests = len(sim.hits)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result: dict[str, Any] = {
        "days": args.days, "seed": args.seed, "scale": args.scale, "runs": len(days) + 1,
        "public_colas": len(truth), "gold_equals_truth": gold == truth,
        "history_rows": len(history), "history_equals_observable": history == expected,
        "status_changes": sum(1 for h in history if h[1] == "change"), "withdrawn": sum(1 for h in history if h[1] == "withdrawn"),
        "extra_run_tables_changed": sorted(changed), "registry_requests": requests,
        "seconds_total": round(total, 1), "seconds_per_run_median": round(statistics.median(seconds), 1),
        "seconds_first_run": round(seconds[0], 1), "seconds_slowest_run": round(max(seconds), 1), "seconds_extra_run": round(again, 1),
        "cpus": os.cpu_count(),
    }
    print(table({"daily_bench": result}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "daily_bench.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
