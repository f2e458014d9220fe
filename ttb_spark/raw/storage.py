"""The raw store: registry pages as served, plus per-partition manifests, on S3 or a local folder.

Key layout under the raw root (``s3://bucket/prefix`` or a folder)::

    pages/method_type=<001-cola-detail>/receipt_date=<2024-01-02>/<ttb_id>.html
    manifests/method_type=<001-cola-detail>/receipt_date=<2024-01-02>/manifest.jsonl
    manifests/method_type=<001-cola-detail>/receipt_date=<2024-01-02>/_COMPLETE
    images/receipt_date=<2024-01-02>/<ttb_id>/<position>-<file name digest>
    manifests/images/fetched_on=<2024-01-04>/run_id=<run>/part=<n>/manifest.jsonl (and _COMPLETE)

``manifest.jsonl`` has one JSON object per TTB ID tried; ``_COMPLETE`` (a JSON summary naming the
manifest and its SHA-256) is written last, so a partition without it is unfinished, and a re-walk
deletes it before it starts, so a marker only ever stands beside the manifest it describes.
Discovery writes per-run manifests (``manifests/discovery/...``) and the search answers it was
served (``search/completed_date=<date>/...``) the same way: manifest first, marker last. Every object write is atomic: a local file is
written beside its target and renamed into place; an S3 PUT is atomic by itself. Keys are only
ever built from a validated :class:`~ttb_spark.registry.ttb_id.TTBId` and a known partition.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Protocol
from urllib.parse import urlparse

from ttb_spark.files import TEMP_PREFIX, write_atomically
from ttb_spark.partitions import Partition
from ttb_spark.settings import Settings
from ttb_spark.registry.ttb_id import TTBId

MANIFEST = "manifest.jsonl"
COMPLETE = "_COMPLETE"
DISCOVERY_MANIFESTS = "manifests/discovery/"
IMAGE_MANIFESTS = "manifests/images/"
SEARCH_MANIFESTS = "search/manifests/"
_RUN_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def partition_prefix(kind: str, partition: Partition) -> str:
    """``<kind>/method_type=<mt>/receipt_date=<date>/`` for kind ``pages`` or ``manifests``."""
    if kind not in ("pages", "manifests"):
        raise ValueError(f"unknown raw store area {kind!r}")
    return f"{kind}/method_type={partition.method_type}/receipt_date={partition.receipt_date.isoformat()}/"


def page_key(partition: Partition, ttb_id: TTBId) -> str:
    """Where a page of ``ttb_id`` lives; the ID must belong to the partition's date and method."""
    if not isinstance(ttb_id, TTBId):
        raise TypeError("page keys are built from validated TTBId values only")
    if ttb_id.receipt_date != partition.receipt_date or ttb_id.receipt_method != partition.receipt_method:
        raise ValueError(f"TTB ID {ttb_id} does not belong to partition {partition.key}")
    return f"{partition_prefix('pages', partition)}{ttb_id}.html"


IMAGE_POSITIONS = range(1, 100)  # a certificate's labels, in page order
IMAGE_DIGEST_CHARS = 16


def image_key(ttb_id: TTBId, position: int, file_name: str) -> str:
    """Where the label image at ``position`` (1-based, page order) of ``ttb_id``'s certificate lives: named by a
    SHA-256 prefix of its file name, never by the name itself (free text: spaces, punctuation, ``../``). One
    key per (TTB ID, position, file name): the registry never changes an image, so a stored one is final."""
    if not isinstance(ttb_id, TTBId):
        raise TypeError("image keys are built from validated TTBId values only")
    if not isinstance(position, int) or position not in IMAGE_POSITIONS:
        raise ValueError(f"label position {position!r} is not in 1..{IMAGE_POSITIONS[-1]}")
    digest = hashlib.sha256(file_name.encode("utf-8")).hexdigest()[:IMAGE_DIGEST_CHARS]
    return f"images/receipt_date={ttb_id.receipt_date.isoformat()}/{ttb_id}/{position:02d}-{digest}"


def manifest_key(partition: Partition) -> str:
    return partition_prefix("manifests", partition) + MANIFEST


def complete_key(partition: Partition) -> str:
    return partition_prefix("manifests", partition) + COMPLETE


def _run_part(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} is not safe in a key")
    return f"run_id={run_id}"


def discovery_manifest_key(run_id: str, first: date, last: date, dates: str = "completed", part: int | None = None) -> str:
    """The manifest of one discovery run's fetches for ``first..last`` (completed dates, or
    ``dates="received"`` for a reconciliation sweep over receipt dates); ``part``: the n-th of the run's
    fetch manifests for that range (discovery writes one per part of its IDs)."""
    if dates not in ("completed", "received"):
        raise ValueError(f"unknown kind of dates {dates!r}")
    if part is not None and not 0 <= part < 100_000:
        raise ValueError(f"part must be 0..99999, got {part}")
    within = "" if part is None else f"part={part:05d}/"
    return f"{DISCOVERY_MANIFESTS}{_run_part(run_id)}/{dates}={first.isoformat()}_{last.isoformat()}/{within}{MANIFEST}"


def image_manifest_key(run_id: str, day: date, part: int) -> str:
    """The manifest of one run's label-image attempts (the ``part``-th), filed under the day it ran, so a later
    run reads the manifests of its revisit window's days only."""
    if not 0 <= part < 100_000:
        raise ValueError(f"part must be 0..99999, got {part}")
    return f"{IMAGE_MANIFESTS}fetched_on={day.isoformat()}/{_run_part(run_id)}/part={part:05d}/{MANIFEST}"


def search_manifest_key(run_id: str, first: date, last: date) -> str:
    """The manifest of one discovery run's searches for the completed dates ``first..last``."""
    return f"{SEARCH_MANIFESTS}{_run_part(run_id)}/completed={first.isoformat()}_{last.isoformat()}/{MANIFEST}"


def search_answer_key(run_id: str, date_from: date, label: str, name: str) -> str:
    """Where one search answer is kept as served: ``search/completed_date=<from>/run_id=<run>/<search>/<name>``."""
    if not re.match(r"^[0-9A-Za-z_.-]+$", label) or not re.match(r"^[0-9a-z-]+\.(?:html|csv)$", name):
        raise ValueError(f"unsafe search answer name {label!r}/{name!r}")
    return f"search/completed_date={date_from.isoformat()}/{_run_part(run_id)}/{label}/{name}"


def marker_of(manifest: str) -> str:
    """The ``_COMPLETE`` marker beside a manifest key."""
    return manifest.rsplit("/", 1)[0] + "/" + COMPLETE


def complete_manifests(store: RawStore, prefix: str) -> list[str]:
    """The manifest keys under ``prefix`` with their ``_COMPLETE`` marker beside them, sorted."""
    keys = set(store.list(prefix))
    return sorted(k for k in keys if k.endswith("/" + MANIFEST) and marker_of(k) in keys)


def manifest_body(entries: Iterable[dict[str, Any]]) -> bytes:
    """A manifest as stored: one JSON object per line."""
    return "".join(json.dumps(e) + "\n" for e in entries).encode()


def manifest_entries(store: RawStore, key: str) -> list[dict[str, Any]]:
    """The JSON objects of a stored manifest (walk, discovery or search), in order."""
    return [json.loads(line) for line in store.get(key).decode("utf-8").splitlines() if line.strip()]


def put_marker(store: RawStore, manifest: str, body: bytes, summary: dict[str, Any]) -> None:
    """The ``_COMPLETE`` beside ``manifest``: ``summary`` naming the manifest and its SHA-256 (written last)."""
    marker = summary | {"manifest": manifest, "manifest_sha256": hashlib.sha256(body).hexdigest()}
    store.put(marker_of(manifest), json.dumps(marker, indent=1).encode())


def write_manifest(store: RawStore, key: str, lines: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """The manifest (discovery's, reconcile's, a search's or a label-image one), then its ``_COMPLETE`` naming
    it: ``summary`` plus the found count, the time and the manifest's SHA-256."""
    body = manifest_body(lines)
    store.put(key, body)
    found = sum(1 for line in lines if line.get("outcome") == "found")
    put_marker(store, key, body, summary | {"found": found, "completed_at": datetime.now(timezone.utc).isoformat()})


class RawStore(Protocol):
    """Object-store operations the scraper and bronze need."""

    uri: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def modified(self, key: str) -> datetime: ...
    def delete(self, key: str) -> None: ...


class LocalStore:
    """A folder; atomic writes by write-then-rename in the same directory."""

    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://")).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} escapes the raw root")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object (nothing when it is absent)."""
        self._path(key).unlink(missing_ok=True)

    def modified(self, key: str) -> datetime:
        """When the object was last written (UTC)."""
        return datetime.fromtimestamp(self._path(key).stat().st_mtime, tz=timezone.utc)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith(TEMP_PREFIX))


class S3Store:
    """An ``s3://bucket/prefix`` through boto3 (any S3-compatible endpoint); credentials from the environment/IAM."""

    def __init__(self, uri: str, region: str, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        parsed = urlparse(uri)
        if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URI: {uri!r}")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"}, s3={"addressing_style": "path"} if endpoint_url else None),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove the object (nothing when it is absent)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def modified(self, key: str) -> datetime:
        """When the object was last written (UTC)."""
        return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["LastModified"].astimezone(timezone.utc)

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)


def open_store(uri: str, region: str = "us-east-1", endpoint_url: str | None = None) -> RawStore:
    """The store for ``uri``: S3 for ``s3://``/``s3a://``, a local folder otherwise."""
    if uri.startswith(("s3://", "s3a://")):
        return S3Store(uri, region, endpoint_url)
    return LocalStore(uri)


def raw_store(settings: Settings) -> RawStore:
    """The raw store the settings name (picklable arguments: call this on executors too)."""
    p = settings.pipeline
    return open_store(p.raw_root, p.aws_region, p.s3_endpoint_url)
