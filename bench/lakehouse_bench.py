"""Lakehouse cost: bronze -> silver -> gold wall time and peak memory over 1, 7 and 30 simulated
receipt days, and the cost of merging one more day into tables that hold 30 days vs 1 day.

The raw store is filled once by the real scrape stage from the loopback registry simulator
(every receipt method and data type, ``--scale`` times the simulator's e-filing volume). Each
build then runs the bronze, silver and gold stages over its days into a fresh lakehouse. Peak
memory is the highest resident set size of this process tree (driver, Spark JVM, Python
workers), sampled every 0.2 s. The incremental figure runs the same three stages for the day
after the 1-day and the 30-day builds: MERGEs prune to the batch's receipt dates, so it should
stay nearly flat. Run: ``.venv/bin/python -m bench.lakehouse_bench [--days 1,7,30] [--scale 0.2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from ttb_spark.ops import runner

from ttb_spark.registry import simulator
from ttb_spark.settings import load_settings

RESULTS = Path(__file__).parent / "results"
FIRST_DAY = date(2024, 1, 2)
STAGES = ("bronze", "silver", "gold")


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return pids


class PeakMemory:
    """Highest summed RSS (MB) of this process and its descendants while the block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            total = sum(_rss_kb(p) for p in _tree(os.getpid())) / 1024
            self.peak_mb = max(self.peak_mb, total)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def machine() -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.processor())
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1] if Path("/proc/meminfo").exists() else "0"
    import pyspark

    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(int(mem) / 1024**2, 1),
            "loadavg_1m_at_start": os.getloadavg()[0], "python": platform.python_version(), "pyspark": pyspark.__version__}


def _settings(work: Path, url: str, lakehouse: str) -> Any:
    return load_settings("development", {
        "pipeline": {"raw_root": str(work / "raw"), "lakehouse_root": str(work / lakehouse)},
        "extraction": {"registry_base_url": url, "use_simulator": False, "max_requests_per_second": 2000.0,
                       "request_delay_seconds": 0.0, "scrape_concurrency": 2},
    })


def _run_stages(spark: Any, settings: Any, scope: runner.Scope, stages: Sequence[str]) -> tuple[float, dict[str, dict[str, int]]]:
    started = time.monotonic()
    counts = {stage: runner.run_stage(stage, spark, settings, scope) for stage in stages}
    return time.monotonic() - started, counts


def sized_args(
    argv: Sequence[str] | None, module: str, doc: str, days: str, scale: float, scale_help: str
) -> tuple[argparse.Namespace, list[int], Path]:
    """A lakehouse benchmark's arguments (--days sizes, --scale, --keep): the parsed arguments, the sorted
    sizes in receipt days and the work folder (``--keep``'s, or a new temporary one)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{module}", description=doc.split("\n\n")[0])
    parser.add_argument("--days", default=days, help=f"comma list of lakehouse sizes in receipt days (default {days})")
    parser.add_argument("--scale", type=float, default=scale, help=scale_help)
    parser.add_argument("--keep", help="folder for the raw store and lakehouses (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    sizes = sorted({int(d) for d in args.days.split(",")})
    return args, sizes, Path(args.keep or tempfile.mkdtemp(prefix=f"ttb-{module}-"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, sizes, work = sized_args(argv, "lakehouse_bench", __doc__, "1,7,30", 0.2,
                                   "simulator e-filing volume multiplier (1.0: 250-450 records a weekday)")
    result: dict[str, Any] = {"machine": machine(), "scale": args.scale, "builds": [], "one_more_day": {}}
    from ttb_spark.spark import get_spark

    try:
        with simulator.serving(scale=args.scale) as url:
            base = _settings(work, url, "unused")
            spark = get_spark(base, app_name="ttb_spark-lakehouse-bench")
            span = runner.Scope.from_settings(base)
            span = replace(span, start=FIRST_DAY, end=FIRST_DAY + timedelta(days=max(sizes)))
            scrape_seconds, scraped = _run_stages(spark, base, span, ("scrape",))
            result["scrape"] = {"days": max(sizes) + 1, "seconds": round(scrape_seconds, 1), "found": scraped["scrape"]["found"]}
            for days in sizes:
                settings = _settings(work, url, f"lakehouse-{days}d")
                build = replace(span, start=FIRST_DAY, end=FIRST_DAY + timedelta(days=days - 1))
                with PeakMemory() as memory:
                    seconds, counts = _run_stages(spark, settings, build, STAGES)
                result["builds"].append({
                    "days": days, "pages": counts["bronze"].get("pages_read", 0), "seconds": round(seconds, 1),
                    "pages_per_second": round(counts["bronze"].get("pages_read", 0) / seconds, 1), "peak_rss_mb": round(memory.peak_mb),
                })
                if days in (1, max(sizes)):
                    extra = build.end + timedelta(days=1)
                    seconds, _ = _run_stages(spark, settings, replace(span, start=extra, end=extra), STAGES)
                    result["one_more_day"][f"into_{days}_day_tables_seconds"] = round(seconds, 1)
        small, large = (result["one_more_day"].get(f"into_{d}_day_tables_seconds") for d in (1, max(sizes)))
        if small and large and max(sizes) > 1:
            result["one_more_day"]["ratio"] = round(large / small, 2)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nmachine: {result['machine']}")
    print(f"scale {args.scale}; raw store scraped once: {result['scrape']}")
    print(f"{'days':>5} {'pages':>7} {'seconds':>8} {'pages/s':>8} {'peak MB':>8}")
    for b in result["builds"]:
        print(f"{b['days']:>5} {b['pages']:>7} {b['seconds']:>8} {b['pages_per_second']:>8} {b['peak_rss_mb']:>8}")
    print(f"one more day merged (bronze -> gold): {result['one_more_day']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lakehouse_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
