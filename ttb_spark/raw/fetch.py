"""The fetcher discovery and reconcile share: listed IDs' pages (detail, then certificate) through
``TTB_SCRAPE_CONCURRENCY`` polite clients into the walk's page keys, one manifest line per page, and, with
``TTB_LABEL_IMAGES``, each certificate found followed by its label images in the same session
(:mod:`ttb_spark.raw.images`)."""

from __future__ import annotations

import hashlib
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ttb_spark import console
from ttb_spark.partitions import Partition
from ttb_spark.raw import images, storage
from ttb_spark.raw.scrape import previously_withdrawn
from ttb_spark.registry.client import Pacer, RegistryClient, task_interval
from ttb_spark.registry.ttb_id import TTBId
from ttb_spark.settings import DATA_TYPES

if TYPE_CHECKING:
    from ttb_spark.settings import Settings


@dataclass
class Fetcher:
    """Fetches listed IDs' pages with ``concurrency`` polite clients into the raw store, as manifest lines; with
    ``TTB_LABEL_IMAGES``, each certificate found is followed by its label images (:mod:`ttb_spark.raw.images`),
    whose lines gather in :attr:`image_lines` until taken (``today``: what is due, and the day their manifests
    are filed under); :attr:`image_requests` counts the requests images took, certificates shown again included."""

    settings: Settings
    store: storage.RawStore
    run_id: str
    today: date = field(default_factory=lambda: datetime.now(timezone.utc).date())
    image_lines: list[dict[str, Any]] = field(default_factory=list)
    image_requests: int = 0

    def __post_init__(self) -> None:
        extraction = self.settings.extraction
        tasks = extraction.scrape_concurrency
        interval = task_interval(extraction, tasks)
        self.clients = [RegistryClient(extraction, Pacer(interval)) for _ in range(tasks)]
        for index, client in enumerate(self.clients):
            client.pacer.hold(index * interval / tasks)

    @property
    def requests_sent(self) -> int:
        return sum(c.requests_sent for c in self.clients)

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def fetch(self, ids: Iterable[TTBId], completed: dict[str, date], stage: str = "discover",
              data_types: tuple[str, ...] = DATA_TYPES) -> list[dict[str, Any]]:
        """Detail then certificate (``data_types``) of each ID; one manifest line per page. A progress line every
        ``console.EVERY_SECONDS`` says how many of the pages are fetched and how long the rest will take."""
        ids = list(ids)
        lines: list[dict[str, Any]] = []
        meter = console.Meter(f"{stage}: fetched", len(ids) * len(data_types), "pages")

        def one(client: RegistryClient, ttb_id: TTBId) -> tuple[list[dict[str, Any]], tuple[list[dict[str, Any]], int]]:
            got = [self._page(client, ttb_id, t, completed.get(str(ttb_id))) for t in data_types]
            certificate = next((body for line, body in got if line["data_type"] == "certificate" and line["outcome"] == "found"), None)
            labels = images.labels_of(certificate, ttb_id) if certificate and self.settings.extraction.label_images else []
            meter.add(len(got))
            return [line for line, _ in got], self._images(client, ttb_id, labels)

        for pages, shots in self._deal(ids, one):
            lines += pages
            self._gather(shots)
        return sorted(lines, key=lambda e: (e["ttb_id"], e["data_type"]))

    def revisit(self, owed: dict[TTBId, list[images.Label]]) -> None:
        """Fetch the label images earlier runs left pending (:func:`images.pending`): the certificate shown again
        in the client's session, then its images; their lines join :attr:`image_lines`."""
        for shots in self._deal(sorted(owed), lambda client, ttb_id: self._images(client, ttb_id, owed[ttb_id])):
            self._gather(shots)

    def _images(self, client: RegistryClient, ttb_id: TTBId, labels: list[images.Label]) -> tuple[list[dict[str, Any]], int]:
        """:func:`images.fetch_labels` in ``client``'s session, and the requests it took (one thread per client)."""
        before = client.requests_sent
        lines = images.fetch_labels(client, self.store, ttb_id, labels, self.run_id, self.today)
        return lines, client.requests_sent - before

    def _gather(self, shots: tuple[list[dict[str, Any]], int]) -> None:
        self.image_lines += shots[0]
        self.image_requests += shots[1]

    def take_images(self) -> list[dict[str, Any]]:
        """The image lines gathered since the last call, sorted; then none."""
        taken, self.image_lines = self.image_lines, []
        return sorted(taken, key=lambda e: (e["ttb_id"], e["position"]))

    def write_images(self, part: int) -> list[dict[str, Any]]:
        """The image lines gathered so far, as the run's ``part``-th image manifest (:func:`images.write_part`)."""
        lines = self.take_images()
        images.write_part(self.store, self.run_id, self.today, part, lines)
        return lines

    def _deal(self, ids: list[TTBId], one: Callable[[RegistryClient, TTBId], Any]) -> list[Any]:
        """``one(client, ttb_id)`` for each ID, the IDs dealt to the clients as each is free; the results."""
        work: queue.Queue[TTBId] = queue.Queue()
        for ttb_id in ids:
            work.put(ttb_id)
        results: list[Any] = []
        lock = threading.Lock()

        def drain(client: RegistryClient) -> None:
            while True:
                try:
                    ttb_id = work.get_nowait()
                except queue.Empty:
                    return
                got = one(client, ttb_id)
                with lock:
                    results.append(got)

        with ThreadPoolExecutor(max_workers=len(self.clients)) as pool:
            for future in [pool.submit(drain, c) for c in self.clients]:
                future.result()
        return results

    def _page(self, client: RegistryClient, ttb_id: TTBId, data_type: str, completed: date | None) -> tuple[dict[str, Any], bytes | None]:
        part = Partition(ttb_id.receipt_date, ttb_id.receipt_method, data_type)
        key = storage.page_key(part, ttb_id)
        got = client.fetch(data_type, ttb_id)
        body, outcome, withdrawn_at, stored_key, fetched_at = got.body, got.outcome, None, None, got.fetched_at
        if outcome == "found" and body is not None:
            self.store.put(key, body)
            stored_key = key
        elif outcome == "not_found" and self.store.exists(key):
            # the stored copy stays: the line names it, its fetch time, and when the error page was first seen
            first_seen = previously_withdrawn(self.store, part).get(str(ttb_id))
            body, outcome, stored_key = self.store.get(key), "withdrawn", key
            withdrawn_at, fetched_at = first_seen or got.fetched_at.isoformat(), self.store.modified(key)
        return {
            "ttb_id": str(ttb_id), "method_type": part.method_type, "receipt_date": part.receipt_date.isoformat(),
            "data_type": data_type, "receipt_method": part.receipt_method, "sequence": ttb_id.sequence,
            "outcome": outcome, "reason": got.reason if outcome in ("unexpected", "failed") else ("error_page" if withdrawn_at else None),
            "http_status": got.http_status, "bytes": len(body) if body is not None and stored_key else None,
            "sha256": hashlib.sha256(body).hexdigest() if body is not None and stored_key else None,
            "fetched_at": fetched_at.isoformat(), "attempts": got.attempts, "key": stored_key, "run_id": self.run_id,
            "withdrawn_at": withdrawn_at, "completed_date": completed.isoformat() if completed else None,
        }, body
