"""The console: progress lines on stderr through the ``ttb_spark`` logger (stdout stays for results), so
``--quiet`` or a host's own logging set-up can silence them, and a meter for loops long enough that a user
wants to know how far they are, how fast they go and how long they have left."""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import timedelta
from typing import Callable

LOGGER = logging.getLogger("ttb_spark")
EVERY_SECONDS = 10.0  # a long loop's progress line at most this often


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is written (tests and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


def configure(quiet: bool = False) -> None:
    """Progress lines as ``[ttb_spark HH:MM:SS] message`` on stderr; ``quiet``: warnings and errors only."""
    if not any(isinstance(h, _CurrentStderr) for h in LOGGER.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("[ttb_spark %(asctime)s] %(message)s", "%H:%M:%S"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False  # one line per message, whatever handlers the host's root logger has
    LOGGER.setLevel(logging.WARNING if quiet else logging.INFO)


def is_quiet() -> bool:
    return LOGGER.getEffectiveLevel() > logging.INFO


def progress(message: str) -> None:
    """One progress line (shown unless the run is quiet)."""
    if not LOGGER.handlers:
        configure()
    LOGGER.info(message)


class Meter:
    """Counts a long loop's items (from any thread) and says, at most every ``every`` seconds, how many of
    ``total`` are done, at what rate, and how long the rest takes at that rate."""

    def __init__(self, what: str, total: int, unit: str, every: float = EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic, detail: Callable[[], str] | None = None) -> None:
        self.what, self.total, self.unit, self.every, self.clock, self.detail = what, total, unit, every, clock, detail
        self.done = 0
        self.started = self.shown = clock()
        self._lock = threading.Lock()

    def add(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            due = self.clock() - self.shown >= self.every and self.done < self.total
            if due:
                self.shown = self.clock()
        if due:
            progress(self.line())

    def rate(self) -> float:
        """Items done per second so far."""
        return self.done / max(self.clock() - self.started, 1e-9)

    def seconds_left(self) -> float | None:
        """How long the items left take at the rate so far (None before the first is done)."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        """``<what>: 1,234/4,046 pages (30%), 12.5/s, about 0:03:45 left``, then ``detail()`` when given."""
        rate, seconds = self.rate(), self.seconds_left()
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        left = f", about {timedelta(seconds=round(seconds))} left" if seconds is not None else ""
        pace = f"{rate:.1f}/s" if rate >= 1 or rate == 0 else f"{rate * 60:.1f}/min"
        more = self.detail() if self.detail else ""
        return f"{self.what}: {self.done:,}/{self.total:,} {self.unit}{share}, {pace}{left}" + (f", {more}" if more else "")
