"""The console: progress lines through the ``ttb_spark`` logger (silenced by ``--quiet``), the meter
that says how far a long loop is, and the driver JVM's packaged logging configuration at each level."""

from __future__ import annotations

import re
import shlex
import sys
import subprocess
import threading
from pathlib import Path

import pyspark
import pytest

from ttb_spark import console
from ttb_spark.ops import summary
from ttb_spark.spark import console_java_options


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_are_stamped_on_stderr_and_quiet_keeps_only_warnings(capsys):
    try:
        console.configure(quiet=False)
        console.progress("bronze: start")
        console.configure(quiet=True)
        console.progress("bronze: done")
        console.LOGGER.getChild("raw.discover").warning("discover: 2 page(s) are no longer retried")
    finally:
        console.configure(quiet=False)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert [re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", line) for line in lines] == [
        "[ttb_spark HH:MM:SS] bronze: start", "[ttb_spark HH:MM:SS] discover: 2 page(s) are no longer retried"]


def test_meter_says_done_of_total_rate_and_time_left_at_most_every_interval(capsys):
    clock = Clock()
    meter = console.Meter("discover: fetched", 4046, "pages", every=10, clock=clock)
    clock.now += 4
    meter.add(50)  # 4 s in: not due yet
    clock.now += 6
    meter.add(50)  # 10 s in: 100 pages at 10/s, 3,946 left: 395 s
    clock.now += 1
    meter.add(2)  # 1 s after the last line: not due
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith("] discover: fetched: 100/4,046 pages (2%), 10.0/s, about 0:06:35 left")
    assert meter.line() == "discover: fetched: 102/4,046 pages (2%), 9.3/s, about 0:07:05 left"  # 3,944 / (102 / 11 s)


def test_a_slow_meter_says_its_rate_per_minute():
    clock = Clock()
    meter = console.Meter("scrape task 1/2", 28, "partitions", clock=clock)
    clock.now += 120
    meter.add(3)
    assert meter.line() == "scrape task 1/2: 3/28 partitions (10%), 1.5/min, about 0:16:40 left"  # 25 / (3 / 120 s)


def test_a_chunked_run_says_after_each_chunk_where_it_is_and_what_its_fetches_cost():
    """Issue #22 (4): a long backfill's line after each chunk: chunks done of total, time left at its pace,
    pages stored and requests per page so far (the walk's counts, or discovery's)."""
    clock, counts = Clock(), {"scrape": {"found": 400, "requests": 440}}
    meter = console.Meter("pipeline", 12, "chunks", every=0, clock=clock, detail=lambda: summary.fetch_cost(counts))
    clock.now += 300
    meter.add()
    assert meter.line() == "pipeline: 1/12 chunks (8%), 0.2/min, about 0:55:00 left, 400 pages stored, 1.10 requests per page"
    assert meter.seconds_left() == 3300  # what the run's audit row turns into its expected end (audit.RunRecord.expecting_end)
    assert console.Meter("pipeline", 12, "chunks", clock=clock).seconds_left() is None  # no chunk done yet: no pace
    counts = {"discover": {"pages_found": 1000, "requests": 1025}, "bronze": {"pages_read": 1000}}
    assert meter.line().endswith(", 1,000 pages stored, 1.02 requests per page")
    assert summary.fetch_cost({"discover": {"pages_found": 0, "requests": 9}}) == "no page stored, 9 requests"
    assert summary.fetch_cost({"bronze": {"pages_read": 3}}) == ""
    # label images apart: their requests (certificates shown again included) are not the pages'
    images = {"pages_found": 1000, "requests": 2325, "images_found": 1200, "image_requests": 1300}
    assert summary.fetch_cost({"discover": images}) == (
        "1,000 pages stored, 1.02 requests per page; 1,200 label images stored, 1.08 requests per image")
    assert summary.fetch_cost({"discover": images | {"images_found": 0, "image_requests": 4, "requests": 1029}}).endswith(
        "; no label image stored, 4 requests")


def test_meter_counts_every_item_added_from_many_threads():
    meter = console.Meter("fetched", 8000, "pages", every=1e9)
    threads = [threading.Thread(target=lambda: [meter.add() for _ in range(1000)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert meter.done == 8000 and meter.line().startswith("fetched: 8,000/8,000 pages (100%)")


# Logs what a run's driver logs, through log4j2 as Spark's jars carry it: known-harmless warnings the packaged
# configuration filters (loggers held at error, messages denied by a filter), other warnings of the loggers
# that filter, and an info and a debug line.
EMIT = """
import org.apache.logging.log4j.LogManager;
public class Emit {
  public static void main(String[] args) {
    LogManager.getLogger("org.apache.spark.util.Utils").warn("Your hostname resolves to a loopback address");
    LogManager.getLogger("org.apache.spark.sql.delta.commands.UpdateCommand").warn("Could not validate number of records due to missing statistics.");
    LogManager.getLogger("org.apache.spark.sql.delta.commands.UpdateCommand").warn("a warning of a Delta command");
    LogManager.getLogger("org.apache.spark.sql.util.CaseInsensitiveStringMap").warn("Converting duplicated key startingVersion into CaseInsensitiveStringMap.");
    LogManager.getLogger("org.apache.spark.scheduler.DAGScheduler").warn("Broadcasting large task binary with size 2.2 MiB");
    LogManager.getLogger("org.apache.spark.scheduler.DAGScheduler").warn("a warning of the scheduler");
    LogManager.getLogger("org.apache.spark.SparkContext").warn("a warning of Spark's");
    LogManager.getLogger("org.apache.spark.SparkContext").info("an info line");
    LogManager.getLogger("org.apache.spark.SparkContext").debug("a debug line");
  }
}
"""
HARMLESS = ["Your hostname resolves", "Could not validate number of records", "Converting duplicated key", "Broadcasting large task binary"]
WARNINGS = ["a warning of a Delta command", "a warning of the scheduler", "a warning of Spark's"]


@pytest.mark.parametrize("level, shown", [
    ("warn", WARNINGS),
    ("info", [*HARMLESS, *WARNINGS, "an info line"]),
    ("debug", [*HARMLESS, *WARNINGS, "an info line", "a debug line"]),
])
def test_the_driver_console_filters_harmless_warnings_at_warn_and_shows_them_at_info_or_debug(tmp_path, level, shown):
    (tmp_path / "Emit.java").write_text(EMIT)
    jars = Path(pyspark.__file__).parent / "jars"
    argv = ["java", "-cp", f"{jars}/*", *shlex.split(console_java_options(level)), "Emit.java"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stderr.splitlines() if line.strip()]
    everything = [*HARMLESS, *WARNINGS, "an info line", "a debug line"]
    assert [m for m in everything if any(m in line for line in printed)] == shown, done.stderr
    assert len(printed) == len(shown), done.stderr  # one line each, nothing about the configuration itself


def test_a_pyspark_driver_at_info_logs_every_loggers_info_lines(tmp_path):
    """PySpark's gateway holds the console at its own logger's level unless the configuration sets it: at
    ``TTB_LOG_LEVEL=info`` Spark's info lines (its context, executor, Delta) show, not only the configured ones'."""
    script = (
        "import sys\n"
        "from pyspark.sql import SparkSession\n"
        "from ttb_spark.spark import console_java_options\n"
        "spark = (SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false')\n"
        "         .config('spark.driver.extraJavaOptions', console_java_options(sys.argv[1])).getOrCreate())\n"
        "spark.range(3).count()\n"
        "spark.stop()\n")
    done = subprocess.run([sys.executable, "-c", script, "info"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = {line.split()[3] for line in done.stderr.splitlines() if " INFO " in line}
    assert {"SparkContext:", "Executor:"} <= info, done.stderr[-3000:]
    assert "Setting default log level" not in done.stderr
