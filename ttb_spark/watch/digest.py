"""One digest of pending watchlist hits, sent through Apprise (e-mail, Slack, Teams, webhooks ...).

The notification URLs carry tokens, so they are not a setting (settings are fingerprinted into the run
audit and read from files): they come from ``TTB_WATCH_NOTIFY_URLS`` in the job's environment (on
Databricks, a secret reference in the cluster's environment variables), are read when a digest is sent,
and never reach a log line, an error message or the audit row.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Sequence

from ttb_spark.registry.client import page_url
from ttb_spark.registry.ttb_id import TTBId

NOTIFY_URLS = "TTB_WATCH_NOTIFY_URLS"  # whitespace- or comma-separated Apprise URLs
SHOWN = 200  # hits listed in one digest's body; the rest counted


def notify_urls() -> list[str]:
    """The Apprise URLs of ``TTB_WATCH_NOTIFY_URLS`` (none: hits are recorded, nothing is sent)."""
    return [u for u in os.environ.get(NOTIFY_URLS, "").replace(",", " ").split() if u]


def digest_id(hits: Sequence[Any]) -> str:
    """A stable id of the hits a digest holds (the same pending hits sent again carry the same id)."""
    keys = sorted(f"{h['rule']}|{h['ttb_id']}|{h['observed_at'].isoformat()}|{h['change']}" for h in hits)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def message(hits: Sequence[Any], digest: str, registry_url: str) -> tuple[str, str]:
    """(title, body): one line per hit with the COLA's registry page."""
    lines = []
    for h in list(hits)[:SHOWN]:
        what = " / ".join(v for v in (h["brand_name"], h["fanciful_name"]) if v) or "(no name)"
        who = f"{h['company_name'] or 'unknown company'} ({h['permit_number'] or 'no permit'})"
        status = f" -> {h['status']}" if h["status"] else ""
        lines.append(f"[{h['rule']}] {h['change']}{status}: {what}, {who}\n  {page_url(registry_url, 'cola-detail', TTBId(h['ttb_id']))}")
    more = f"\n... and {len(hits) - SHOWN} more (gold.watch_hits, digest_id = '{digest}')" if len(hits) > SHOWN else ""
    return f"TTB COLA watchlist: {len(hits)} change(s)", f"digest {digest}\n\n" + "\n".join(lines) + more


def send(urls: Sequence[str], title: str, body: str) -> bool:
    """Whether every target accepted the digest. Apprise and urllib3 log a request's URL (its token) at
    their debug and info levels: while sending, only their errors get through, whatever the host's set-up."""
    import apprise

    loggers = [logging.getLogger(name) for name in ("apprise", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        targets = apprise.Apprise()
        if not all(targets.add(url) for url in urls):
            return False  # not a URL Apprise knows; never echoed (it may hold a token)
        return bool(targets.notify(body=body, title=title))
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
