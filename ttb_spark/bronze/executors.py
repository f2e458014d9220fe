"""Code bronze runs on the executors, in Arrow batches through ``mapInArrow``: each manifest read and
checked against its ``_COMPLETE`` summary, then the pages its lines name fetched by a thread pool; and
the driver-side functions that build those two frames (:func:`manifest_lines`, :func:`fetch_pages`)."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ttb_spark.raw import storage
from ttb_spark.bronze.tables import FETCHED, MANIFEST_LINE, MANIFEST_LINES
from ttb_spark.partitions import Partition, ReconciliationError
from ttb_spark.registry.ttb_id import TTBId

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from ttb_spark.settings import Settings

FETCH_THREADS = 16


def store_args(settings: Settings) -> tuple[str, str, str | None]:
    """Picklable arguments of storage.open_store, to rebuild the raw store on executors."""
    p = settings.pipeline
    return p.raw_root, p.aws_region, p.s3_endpoint_url


def _where(manifest_key: str) -> str:
    """A manifest's partition key (``2024-01-02|001-cola-detail``), or the key of a discovery manifest."""
    parts = dict(seg.split("=", 1) for seg in manifest_key.split("/") if "=" in seg)
    if "method_type" not in parts:
        return manifest_key
    return f"{parts['receipt_date']}|{parts['method_type']}"


def read_manifest(store: storage.RawStore, manifest_key: str) -> list[tuple[str, str]]:
    """(manifest_key, line) for each line, after checking the lines against the ``_COMPLETE`` summary."""
    summary = json.loads(store.get(storage.marker_of(manifest_key)))
    body = store.get(manifest_key)
    if summary.get("manifest_sha256") not in (None, hashlib.sha256(body).hexdigest()):
        raise ReconciliationError(f"{_where(manifest_key)}: its _COMPLETE describes another manifest (SHA-256 differs)")
    lines = [line for line in body.decode("utf-8").splitlines() if line.strip()]
    found = sum(1 for line in lines if json.loads(line).get("outcome") == "found")
    if summary.get("found") is not None and int(summary["found"]) != found:
        raise ReconciliationError(
            f"{_where(manifest_key)}: _COMPLETE says found={summary['found']} but manifest.jsonl has {found} found lines"
        )
    return [(manifest_key, line) for line in lines]


def _read_manifests(args: tuple[str, str, str | None], batches: Iterable[Any]) -> Iterator[Any]:
    """mapInArrow body: batches of manifest keys -> batches of (manifest_key, line)."""
    import pyarrow as pa

    store = storage.open_store(*args)
    schema = arrow_schema(MANIFEST_LINES)
    for batch in batches:
        for key in batch.column("manifest_key").to_pylist():
            lines = [line for _, line in read_manifest(store, key)]
            yield pa.RecordBatch.from_arrays([pa.array([key] * len(lines), pa.string()), pa.array(lines, pa.string())], schema=schema)


def checked_page_key(row: dict) -> str:
    """The manifest line's page key, after checking it is the key its validated TTB ID must have."""
    ttb_id = TTBId(row["ttb_id"])
    part = Partition(ttb_id.receipt_date, ttb_id.receipt_method, row["data_type"])
    expected = storage.page_key(part, ttb_id)
    if row["key"] != expected or row["method_type"] != part.method_type:
        raise ReconciliationError(
            f"manifest line for {ttb_id} ({row['method_type']}) names key {row['key']!r}, expected {expected!r}"
        )
    return expected


def _fetch_pages(args: tuple[str, str, str | None], batches: Iterable[Any]) -> Iterator[Any]:
    """mapInArrow body: batches of manifest lines -> the same plus the page bytes (``content``),
    fetched by a thread pool so object-store latency overlaps."""
    import pyarrow as pa

    store = storage.open_store(*args)
    schema = arrow_schema(FETCHED)
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        for batch in batches:
            keys = [checked_page_key(row) for row in batch.to_pylist()]
            content = pa.array(list(pool.map(store.get, keys)), pa.binary())
            yield pa.RecordBatch.from_arrays([*batch.columns, content], schema=schema)


def arrow_schema(schema: StructType) -> Any:
    """The Arrow schema Spark exchanges batches of ``schema`` in (mapInArrow's input and output)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema)


def manifest_lines(spark: SparkSession, args: tuple[str, str, str | None], manifest_keys: list[str]) -> DataFrame:
    """The lines of the given manifests, read on executors (one task per manifest)."""
    keys = spark.createDataFrame([(k,) for k in manifest_keys], "manifest_key string").repartition(max(1, len(manifest_keys)))
    return keys.mapInArrow(lambda batches: _read_manifests(args, batches), MANIFEST_LINES)


def fetch_pages(spark: SparkSession, args: tuple[str, str, str | None], parsed_lines: DataFrame) -> DataFrame:
    """Manifest lines with a stored page plus its bytes (``content``), fetched on executors."""
    stored = parsed_lines.where("key IS NOT NULL").select(*MANIFEST_LINE.fieldNames())
    return stored.mapInArrow(lambda batches: _fetch_pages(args, batches), FETCHED)
