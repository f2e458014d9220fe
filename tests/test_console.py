"""The console: progress lines through the ``ttb_spark`` logger (silenced by ``--quiet``) and the meter
that says how far a long loop is."""

from __future__ import annotations

import re
import threading

from ttb_spark import console


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


def test_meter_counts_every_item_added_from_many_threads():
    meter = console.Meter("fetched", 8000, "pages", every=1e9)
    threads = [threading.Thread(target=lambda: [meter.add() for _ in range(1000)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert meter.done == 8000 and meter.line().startswith("fetched: 8,000/8,000 pages (100%)")
