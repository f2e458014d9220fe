"""Local file writes that a reader never sees half done: the raw store's objects, the CA bundle, a session's
recorded classpath."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"  # a write in progress: a hidden sibling of its target, which listings skip


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: to a temporary sibling, then renamed over it (atomic on
    one file system); the sibling is removed when the write fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
