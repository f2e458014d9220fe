"""Code silver runs on the executors, in Arrow batches: each bronze page parsed where it is; each label image
read from the raw store and decoded (Pillow)."""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ttb_spark.settings import PAGE_KINDS
from ttb_spark.silver.tables import DECODE_RESULT, IMAGE_DECODED, PARSE_RESULT, PARSED

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from ttb_spark.raw.storage import RawStore

DHASH_SIZE = 8  # 8 x 8 comparisons: a 64-bit hash
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif"}
# the bronze.label_images columns decoding reads and passes on
IMAGE_COLUMNS = ("ttb_id", "receipt_date", "position", "file_name", "image_key", "content_type", "bytes", "sha256", "fetched_at")


def parse_one(html: str | None, ttb_id: str, data_type: str) -> tuple[str, str | None, str | None, str | None]:
    """(parse_status, reason, detail, record JSON) for one page; runs on executors, never raises.

    A parser crash is quarantined as status ``error`` / reason ``parser_exception`` so one odd page
    cannot stop a backfill; the page stays in bronze for a replay after the fix.
    """
    from ttb_spark.registry import parse

    try:
        served = (html or "").encode("latin-1")  # bronze's lossless decoding, undone: the parser decodes bytes itself
        result = parse.parse_page(served, expected_ttb_id=ttb_id, expected_kind=PAGE_KINDS[data_type])
    except Exception as exc:  # noqa: BLE001 - quarantined, see docstring
        return "error", "parser_exception", f"{type(exc).__name__}: {exc}"[:1000], None
    if result.record is None:
        return result.kind, result.reason, result.detail, None
    return PARSED, None, None, json.dumps(result.record, default=str)


def parse_batches(batches: Any) -> Any:
    """mapInArrow body: each batch's columns pass through as they are, ``html`` replaced by the parse result."""
    import pyarrow as pa

    for batch in batches:
        pages = zip(batch.column("html").to_pylist(), batch.column("ttb_id").to_pylist(), batch.column("data_type").to_pylist())
        results = list(zip(*(parse_one(*page) for page in pages))) or [()] * len(PARSE_RESULT.fields)
        kept = [name for name in batch.schema.names if name != "html"]
        yield pa.RecordBatch.from_arrays(
            [*(batch.column(name) for name in kept), *(pa.array(values, pa.string()) for values in results)],
            names=[*kept, *PARSE_RESULT.fieldNames()],
        )


def dhash(image: Any) -> str:
    """Difference hash of a Pillow image: grey, resized to 9 x 8, one bit per pixel brighter than its left
    neighbour (row by row, the first bit the most significant), as 16 hex digits."""
    from PIL import Image

    grey = image.convert("L").resize((DHASH_SIZE + 1, DHASH_SIZE), Image.Resampling.LANCZOS).tobytes()
    bits = 0
    for row in range(DHASH_SIZE):
        line = grey[row * (DHASH_SIZE + 1) : (row + 1) * (DHASH_SIZE + 1)]
        for left, right in zip(line, line[1:]):
            bits = bits << 1 | (right > left)
    return f"{bits:0{DHASH_SIZE * DHASH_SIZE // 4}x}"


def decode_image(body: bytes | None, size: int | None, sha256: str | None, content_type: str | None) -> tuple[Any, ...]:
    """The DECODE_RESULT of one stored image (``body`` None: no object at its key); never raises, so one odd
    image cannot stop a run: a rejected image is a row with its reason."""
    from PIL import Image, UnidentifiedImageError

    def rejected(reason: str, detail: str | None = None) -> tuple[Any, ...]:
        return ("rejected", reason, detail, None, None, None, None, None, None)

    if body is None:
        return rejected("object_missing")
    if len(body) != size:
        return rejected("bytes_differ", f"{len(body)} bytes stored, bronze recorded {size}")
    if hashlib.sha256(body).hexdigest() != sha256:
        return rejected("bytes_differ", "SHA-256 differs from bronze's")
    try:
        with Image.open(io.BytesIO(body)) as image:
            kind, (width, height), mode, frames = image.format, image.size, image.mode, getattr(image, "n_frames", 1)
            image.load()  # the whole first frame: a truncated file raises here
            hashed = dhash(image)
    except Image.DecompressionBombError as exc:
        return rejected("too_many_pixels", str(exc)[:1000])
    except UnidentifiedImageError:
        return rejected("not_an_image")
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise OSError, ValueError, SyntaxError ...
        return rejected("undecodable", f"{type(exc).__name__}: {exc}"[:1000])
    if FORMATS.get(kind) != content_type:
        return rejected("format_differs", f"decoded {kind}, served as {content_type}")
    return (IMAGE_DECODED, None, None, kind, width, height, mode, frames, hashed)


def _stored(store: RawStore, key: str) -> bytes | None:
    """The object's bytes, None when there is no object at ``key`` (one request; a second only after an error)."""
    try:
        return store.get(key)
    except Exception:
        if store.exists(key):
            raise
        return None


def _decode_batches(args: tuple[str, str, str | None], schema: Any, batches: Iterable[Any]) -> Iterator[Any]:
    """mapInArrow body: batches of bronze.label_images rows -> the same plus DECODE_RESULT, the bytes read by a
    thread pool so object-store latency overlaps."""
    import pyarrow as pa

    from ttb_spark.bronze.executors import FETCH_THREADS
    from ttb_spark.raw import storage

    store = storage.open_store(*args)
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        for batch in batches:
            rows = batch.to_pylist()
            bodies = pool.map(lambda row: _stored(store, row["image_key"]), rows)
            results = [decode_image(body, r["bytes"], r["sha256"], r["content_type"]) for body, r in zip(bodies, rows)]
            columns = list(zip(*results)) or [()] * len(DECODE_RESULT.fields)
            tail = [schema.field(i).type for i in range(batch.num_columns, len(schema))]
            yield pa.RecordBatch.from_arrays([*batch.columns, *(pa.array(v, t) for v, t in zip(columns, tail))], schema=schema)


def decoded_images(images: DataFrame, args: tuple[str, str, str | None]) -> DataFrame:
    """bronze.label_images rows (IMAGE_COLUMNS) plus what decoding each stored image gives, on the executors."""
    from pyspark.sql.types import StructType

    from ttb_spark.bronze.executors import arrow_schema

    source = images.select(*IMAGE_COLUMNS)
    schema: StructType = StructType([*source.schema.fields, *DECODE_RESULT.fields])
    arrow = arrow_schema(schema)
    return source.mapInArrow(lambda batches: _decode_batches(args, arrow, batches), schema)
