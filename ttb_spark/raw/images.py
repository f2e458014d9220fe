"""Label images: fetched in the registry session that just showed their certificate, stored as served.

A certificate's labels are ``<img src="publicViewAttachment.do?filename=<name>&filetype=l">`` (SITE.md); the
registry resolves the file from the session's last viewed form, so each label is fetched right after its
certificate by the client that fetched it (:meth:`~ttb_spark.registry.client.RegistryClient.fetch_image`), into
:func:`~ttb_spark.raw.storage.image_key` (TTB ID, position, a digest of the file name). A stored image is
final: it is never fetched again, only recorded ``held`` when its certificate is fetched again.

TTB serves images about 48 hours after approval (:data:`DELAY`) and none for records approved before
1999. A label not due yet is recorded ``deferred`` without a request, one the registry does not have yet
``missing``; those and the failed ones are revisited by later runs (the certificate shown again, then the
image) for ``TTB_IMAGE_REVISIT_DAYS`` after they were due (``pending_since``), then given up and counted.

Each run's attempts are lines of ``manifests/images/fetched_on=<day>/run_id=<run>/part=<n>/manifest.jsonl``
(then its ``_COMPLETE``), written after the part's images and before the part's page manifest: a run killed
earlier fetches the part's certificates again, and records what it finds stored as ``held``. A run reads
the manifests of its revisit window's days only, so what it reads does not grow with the years held.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from ttb_spark.raw import storage
from ttb_spark.registry import parse
from ttb_spark.registry.client import RegistryClient
from ttb_spark.registry.ttb_id import TTBId

DELAY = timedelta(days=2)  # "label images appear about 48 hours after approval" (TTB)
FIRST_YEAR = 1999  # records approved before it have data but no images
PENDING = ("deferred", "missing", "failed", "unexpected")  # outcomes a later run tries again
OUTCOMES = ("found", "held", *PENDING, "unavailable")
MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"))


@dataclass(frozen=True)
class Label:
    """One label image a certificate names: its position (1-based, page order), file name as served, the date
    its certificate was issued (None: not given), and, for one revisited, since when it has been pending."""

    position: int
    file_name: str
    issued: date | None
    pending_since: str | None = None

    @property
    def due(self) -> date | None:
        return self.issued + DELAY if self.issued else None


def labels_of(certificate: bytes, ttb_id: TTBId) -> list[Label]:
    """The label images ``certificate`` (a page classified as ``ttb_id``'s certificate) names, in page order."""
    record = parse.parse_page(certificate, str(ttb_id), "certificate").record or {}
    issued = date.fromisoformat(record["issued_date"]) if record.get("issued_date") else None
    return [Label(n, label["filename"], issued) for n, label in enumerate(record.get("labels") or [], 1) if label.get("filename")]


def fetch_labels(client: RegistryClient, store: storage.RawStore, ttb_id: TTBId, labels: Iterable[Label], run_id: str,
                 today: date) -> list[dict[str, Any]]:
    """Each label's one outcome as a manifest line: ``held`` (stored before: no request), ``unavailable``
    (approved before 1999), ``deferred`` (not due on ``today``), else what the registry answered, the image
    stored when ``found`` (a revisited label keeps its ``pending_since``)."""
    lines = []
    for label in labels:
        key = storage.image_key(ttb_id, label.position, label.file_name)
        line: dict[str, Any] = {
            "ttb_id": str(ttb_id), "receipt_date": ttb_id.receipt_date.isoformat(), "position": label.position,
            "file_name": label.file_name, "issued_date": label.issued.isoformat() if label.issued else None,
            "outcome": None, "reason": None, "http_status": None, "content_type": None, "bytes": None, "sha256": None,
            "key": None, "attempts": 0, "fetched_at": _now().isoformat(), "pending_since": None, "run_id": run_id,
        }
        if store.exists(key):
            body = store.get(key)
            line |= {"outcome": "held", "key": key, "content_type": content_type(body), "bytes": len(body),
                     "sha256": hashlib.sha256(body).hexdigest(), "fetched_at": store.modified(key).isoformat()}
        elif label.issued and label.issued.year < FIRST_YEAR:
            line |= {"outcome": "unavailable", "reason": f"approved_before_{FIRST_YEAR}"}
        elif label.due and label.due > today:
            line |= {"outcome": "deferred", "pending_since": label.due.isoformat()}
        else:
            got = client.fetch_image(ttb_id, label.file_name)
            line |= {"outcome": got.outcome, "reason": got.reason, "http_status": got.http_status, "attempts": got.attempts,
                     "fetched_at": got.fetched_at.isoformat()}
            if got.outcome == "found" and got.body is not None:
                store.put(key, got.body)
                line |= {"key": key, "content_type": got.content_type, "bytes": len(got.body), "sha256": hashlib.sha256(got.body).hexdigest()}
            else:
                line["pending_since"] = label.pending_since or today.isoformat()
        lines.append(line)
    return lines


def content_type(image: bytes) -> str | None:
    """The content type a stored image was served with, from its first bytes (only ``image/*`` answers are stored)."""
    return next((kind for magic, kind in MAGIC if image.startswith(magic)), None)


def write_part(store: storage.RawStore, run_id: str, day: date, part: int, lines: list[dict[str, Any]]) -> None:
    """The part's image manifest, then its ``_COMPLETE`` (nothing when the part tried no image)."""
    if lines:
        storage.write_manifest(store, storage.image_manifest_key(run_id, day, part), lines, {"run_id": run_id, "part": part})


def counts(lines: Iterable[dict[str, Any]]) -> dict[str, int]:
    """``images_<outcome>``: how many lines ended in each outcome (:data:`OUTCOMES`)."""
    counted = dict.fromkeys(OUTCOMES, 0)
    for line in lines:
        counted[line["outcome"]] += 1
    return {f"images_{k}": v for k, v in counted.items()}


def pending(store: storage.RawStore, today: date, revisit_days: int, run_id: str) -> tuple[dict[TTBId, list[Label]], int]:
    """The labels still owed, by TTB ID: in the manifests of the window's days, labels no line records stored
    (or unavailable) whose latest line, another run's, is pending and due by ``today``, pending since
    ``today - revisit_days`` at the earliest; and how many older ones were given up."""
    first = today - timedelta(days=revisit_days)
    latest: dict[tuple[str, int, str], dict[str, Any]] = {}
    settled: set[tuple[str, int, str]] = set()
    day = first - DELAY  # a label recorded deferred up to DELAY before it became pending
    while day <= today:
        for key in storage.complete_manifests(store, f"{storage.IMAGE_MANIFESTS}fetched_on={day.isoformat()}/"):
            for line in storage.manifest_entries(store, key):
                label = (line["ttb_id"], line["position"], line["file_name"])
                if line["outcome"] not in PENDING:
                    settled.add(label)
                elif label not in latest or line["fetched_at"] >= latest[label]["fetched_at"]:
                    latest[label] = line
        day += timedelta(days=1)
    due: dict[TTBId, list[Label]] = {}
    given_up = 0
    for (ttb_id, position, file_name), line in sorted(latest.items()):
        since = date.fromisoformat(line["pending_since"])
        if (ttb_id, position, file_name) in settled or line["run_id"] == run_id or since > today:
            continue
        if since < first:
            given_up += 1
            continue
        issued = date.fromisoformat(line["issued_date"]) if line["issued_date"] else None
        due.setdefault(TTBId(ttb_id), []).append(Label(position, file_name, issued, line["pending_since"]))
    return due, given_up


def _now() -> datetime:
    return datetime.now(timezone.utc)
