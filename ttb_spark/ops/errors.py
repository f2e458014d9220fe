"""How an exception is told: one line for the console and the summary, a bounded text for the audit row."""

from __future__ import annotations

import traceback
from typing import Callable

ERROR_CHARS = 4000


def one_line(exc: BaseException) -> str:
    """Exception type and the first line of its message; for an error raised in the JVM (whose first line only
    names the call, "An error occurred while calling o4876.collectToPython."), the Java exception's too."""
    line = _first_line(_text(lambda: str(exc)) or _text(lambda: getattr(exc, "errmsg", "")))
    if getattr(exc, "java_exception", None) is not None:
        line = f"{line} {_first_line(_text(lambda: str(exc.java_exception.toString())))}".rstrip()
    return f"{type(exc).__name__}: {line}"


def _text(produce: Callable[[], str]) -> str:
    """``produce()`` stripped; empty when it cannot be had (a JVM that no longer answers)."""
    try:
        return produce().strip()
    except Exception:
        return ""


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def error_text(exc: BaseException) -> str:
    """One line naming the exception (``one_line``), then its message and the innermost frames, bounded in size."""
    text = "".join(traceback.format_exception(exc, limit=-3))
    rest = "\n".join(_text(lambda: str(exc)).splitlines()[1:])
    head = one_line(exc) + (f"\n{rest}" if rest else "")
    return (head if len(head) < ERROR_CHARS // 2 else head[: ERROR_CHARS // 2] + " ...") + "\n" + text[-ERROR_CHARS // 2 :]
