"""What each stage of a daily run costs: seconds, Spark SQL executions and Delta commits per stage, and
the CPU seconds of the JVM and of this Python process per run.

The first runs of tests/test_daily.py's schedule (seed 4 from 2024-03-04, scale 0.01, faults on; the
simulated today given as ``TTB_PARTITION_END_DATE``), ``daily --env test --since-last-run`` in this
process through ``ttb_spark.cli.main``, then the last of them once more: a run with nothing new. The first
run pays the JVM's warm-up; the later ones are what a daily increment costs a warm session (the figures in
docs/performance.md). SQL executions are read from
the driver's SQL status store (the highest execution id, once Spark's listener bus has drained: internal
APIs of a classic session, used here for measurement only); commits are the tables' new ``_delta_log``
JSON files; CPU seconds come from ``/proc`` (Linux).

Run: ``.venv/bin/python -m bench.stage_bench [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

from bench.__main__ import table
from bench.daily_bench import FAULTS, daily, environment
from ttb_spark.ops import runner
from ttb_spark.registry import simulator

RESULTS = Path(__file__).parent / "results"
START = date(2024, 3, 4)
RUN_DAYS = (0, 1, 2, 9, 16, 17, 33, 59)  # tests/test_daily.py's schedule (offsets from START)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.stage_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, choices=range(1, len(RUN_DAYS) + 1), metavar="1..8")
    return parser.parse_args(argv)


def jvm_cpu_seconds(spark: Any) -> float:
    """User + system CPU seconds of the driver's JVM process so far."""
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commits(lake: Path) -> int:
    return sum(1 for _ in lake.glob("*/*/_delta_log/*.json"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import get_spark

    spark = get_spark(load_settings("test"), app_name="bench-stages")
    stages: list[dict[str, Any]] = []
    run_stage = runner.run_stage

    def measured(name: str, spark: Any, settings: Any, scope: Any, label: str = "", job: str = "") -> dict[str, int]:
        made = commits(lake)
        counts = run_stage(name, spark, settings, scope, label, job)  # with what the stage cost (runner.run_stage)
        stages.append({"stage": name, "seconds": round(counts["ms"] / 1000, 1), "sql_executions": counts["sql_executions"],
                       "commits": commits(lake) - made})
        return counts

    runs = []
    saved = dict(os.environ)
    runner.run_stage = measured
    try:
        with tempfile.TemporaryDirectory() as tmp, simulator.running(seed=4, scale=0.01, faults=FAULTS, today=START) as sim:
            raw, lake = Path(tmp) / "raw", Path(tmp) / "lakehouse"
            os.environ.update(environment(sim, raw, lake, START))
            for offset in [*RUN_DAYS[: args.runs], RUN_DAYS[args.runs - 1]]:  # the last day twice: a run with nothing new
                stages.clear()
                jvm, python = jvm_cpu_seconds(spark), time.process_time()
                seconds, _ = daily(sim, START + timedelta(days=offset))
                runs.append({"day": offset, "seconds": round(seconds, 1), "jvm_cpu_seconds": round(jvm_cpu_seconds(spark) - jvm, 1),
                             "python_cpu_seconds": round(time.process_time() - python, 1), "stages": list(stages)})
    finally:
        runner.run_stage = run_stage
        os.environ.clear()
        os.environ.update(saved)
    result = {"runs": runs, "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)}
    print(table({"stage_bench": result}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stage_bench.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
