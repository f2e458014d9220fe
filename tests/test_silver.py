"""Silver: extracted -> cleaned -> structured / rejects on real pages, MERGE idempotency, reconciliation."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from conftest import make_settings
from raw_pages import END, SPIRIT, START, WINE, error_page, fill_real, real_page, reference_values, write_partition
from test_bronze import expected_pages
from ttb_spark import bronze, lakehouse, silver
from ttb_spark.raw import storage
from ttb_spark.scope import ReceiptDates

TYPES = ("cola-detail", "certificate")
ERROR_ID, WRONG_ID = "25094001000052", "25094001000053"


def truncated(content: bytes) -> bytes:
    return content[: len(content) // 2]


def bronze_frame(spark, pages: dict[tuple[str, str], bytes]):
    """bronze.pages-shaped rows for the given pages (built independently of bronze.pages())."""
    return expected_pages(spark, pages, "ingest-1").withColumn("row_hash", F.lit("x"))


@pytest.fixture(scope="module")
def extracted_real(spark):
    pages = {(t, d): real_page(t, d) for t in (WINE, SPIRIT) for d in TYPES}
    pages[(ERROR_ID, "cola-detail")] = error_page()
    pages[(WRONG_ID, "cola-detail")] = real_page(WINE, "cola-detail")
    pages[(SPIRIT, "certificate")] = truncated(real_page(SPIRIT, "certificate"))
    return silver.extracted(bronze_frame(spark, pages)).cache()


def test_extracted_gives_status_and_the_parse_contract_fields(spark, extracted_real):
    status = extracted_real.select("ttb_id", "data_type", "parse_status", "parse_reason")
    expected = spark.createDataFrame(
        [
            (WINE, "cola-detail", "parsed", None),
            (WINE, "certificate", "parsed", None),
            (SPIRIT, "cola-detail", "parsed", None),
            (SPIRIT, "certificate", "unexpected", "truncated"),
            (ERROR_ID, "cola-detail", "not_found", None),
            (WRONG_ID, "cola-detail", "unexpected", "wrong_ttb_id"),
        ],
        status.schema,
    )
    assert_df_equality(status, expected, ignore_row_order=True, ignore_nullable=True)

    # Core fields agree with the independently extracted reference values.
    detail_fields = ("status", "serial_number", "brand_name", "fanciful_name", "approval_date", "permit_number", "applicant_zip")
    cert_fields = ("class_type_code", "origin_code", "serial_number", "brand_name", "product_type", "source_of_product",
                   "application_date", "issued_date", "wine_appellation")
    for data_type, side, fields in (("cola-detail", "detail", detail_fields), ("certificate", "certificate", cert_fields)):
        got = extracted_real.where((F.col("ttb_id") == WINE) & (F.col("data_type") == data_type)).select("parsed_ttb_id", *fields)
        ref = reference_values(WINE)[side]
        want = spark.createDataFrame([(ref["ttb_id"], *[ref[f] for f in fields])], got.schema)
        assert_df_equality(got, want, ignore_nullable=True)
    assert extracted_real.where(F.col("ttb_id") == WINE).select("id_receipt_date").distinct().collect()[0][0] == "2025-04-04"


def _extracted_schema(spark):
    return silver.extracted(spark.createDataFrame([], bronze.PAGES.schema)).schema


def test_cleaned_normalises_and_records_every_rule(spark):
    schema = _extracted_schema(spark)
    page = dict.fromkeys(schema.fieldNames())
    base = page | {"receipt_method": "001", "source_key": "k", "fetched_at": dt.datetime(2026, 1, 1), "page_sha256": "h",
                   "parse_status": "parsed", "receipt_date": dt.date(2025, 4, 4), "id_receipt_date": "2025-04-04"}
    rows = [
        base | {"ttb_id": WINE, "parsed_ttb_id": WINE, "data_type": "cola-detail", "method_type": "001-cola-detail", "sequence": 51,
                "brand_name": "  la   Marca ", "fanciful_name": "N/A", "applicant_street": "NOT PROVIDED", "applicant_city": " napa",
                "applicant_state": "ca ", "applicant_zip": "9450", "approval_date": "2025-04-10",
                "grape_varietals": [" Pinot  Noir ", "n/a", ""], "qualifications": [], "vendor_code": " 00123 "},
        base | {"ttb_id": WRONG_ID, "parsed_ttb_id": WINE, "data_type": "cola-detail", "method_type": "001-cola-detail",
                "sequence": 53, "approval_date": "2025-04-10"},
        base | {"ttb_id": WINE, "parsed_ttb_id": WINE, "data_type": "certificate", "method_type": "001-certificate", "sequence": 51,
                "application_date": "2025-04-05", "issued_date": "2025-04-01", "class_type_code": "999x", "origin_code": "51",
                "email": " Someone@Example.COM ", "applicant_state": "NY", "applicant_zip": "11030-1234"},
        base | {"ttb_id": ERROR_ID, "data_type": "cola-detail", "method_type": "001-cola-detail", "sequence": 52,
                "parse_status": "not_found", "id_receipt_date": None},
    ]
    extracted = spark.createDataFrame([tuple(r[f] for f in schema.fieldNames()) for r in rows], schema)
    reference = spark.createDataFrame([("class_type", "84"), ("origin", "51")], "ref_type string, code string")
    cleaned = silver.cleaned(extracted, reference).cache()  # several checks below read it

    values = cleaned.where((F.col("ttb_id") == WINE) & (F.col("data_type") == "cola-detail")).select(
        "brand_name", "fanciful_name", "applicant_street", "applicant_city", "applicant_state", "applicant_zip",
        "approval_date", "grape_varietals", "qualifications", "vendor_code")
    want = spark.createDataFrame([("LA MARCA", None, None, "NAPA", "CA", "9450", dt.date(2025, 4, 10), ["Pinot Noir"], None, "00123")],
                                 values.schema)
    assert_df_equality(values, want, ignore_nullable=True)
    assert cleaned.where(F.col("data_type") == "certificate").select("email").first()[0] == "someone@example.com"

    rules = cleaned.select("ttb_id", "data_type", F.explode("violations").alias("v")).select("ttb_id", "data_type", "v.rule", "v.blocking")
    want_rules = spark.createDataFrame(
        [
            (WINE, "cola-detail", "applicant_zip_valid", False),
            (WRONG_ID, "cola-detail", "ttb_id_matches_page", True),
            (WINE, "certificate", "receipt_date_matches_id", True),
            (WINE, "certificate", "approval_not_before_receipt", True),
            (WINE, "certificate", "class_type_code_in_reference", False),
        ],
        rules.schema,
    )
    assert_df_equality(rules, want_rules, ignore_row_order=True, ignore_nullable=True)

    details = silver.structured(cleaned, "cola-detail").select("ttb_id", "brand_name", "quality_flags")
    assert_df_equality(details, spark.createDataFrame([(WINE, "LA MARCA", ["applicant_zip_valid"])], details.schema), ignore_nullable=True)
    assert silver.structured(cleaned, "certificate").count() == 0

    rejected = silver.rejects(cleaned).select("ttb_id", "data_type", "stage", "rule", "reason")
    want_rejects = spark.createDataFrame(
        [
            (WRONG_ID, "cola-detail", "cleaned", "ttb_id_matches_page", f"page shows TTB ID {WINE}, expected {WRONG_ID}"),
            (WINE, "certificate", "cleaned", "receipt_date_matches_id",
             "receipt date 2025-04-04, ID gives 2025-04-04, item 16 gives 2025-04-05"),
            (WINE, "certificate", "cleaned", "approval_not_before_receipt", "approved 2025-04-01 before receipt 2025-04-04"),
            (ERROR_ID, "cola-detail", "extracted", "parse", "not_found"),
        ],
        rejected.schema,
    )
    assert_df_equality(rejected, want_rejects, ignore_row_order=True, ignore_nullable=True)


def test_unbalanced_partition_fails_naming_it_and_its_counts(spark):
    d1, d2 = dt.date(2025, 4, 4), dt.date(2025, 4, 10)
    bronze_rows = spark.createDataFrame([(d1, "001-cola-detail")] * 3 + [(d2, "001-certificate")], "receipt_date date, method_type string")
    silver_rows = spark.createDataFrame([(d1, "001-cola-detail")], "receipt_date date, method_type string")
    rejected = spark.createDataFrame(
        [(d1, "001-cola-detail", ERROR_ID, "cola-detail"), (d1, "001-cola-detail", ERROR_ID, "cola-detail")],
        "receipt_date date, method_type string, ttb_id string, data_type string",
    )
    with pytest.raises(silver.ReconciliationError) as err:
        silver.check_reconciliation(silver.reconciliation(bronze_rows, silver_rows, rejected))
    message = str(err.value)
    assert "partition 2025-04-04|001-cola-detail: bronze 3 pages != silver 1 rows + 1 rejected pages" in message
    assert "partition 2025-04-10|001-certificate: bronze 1 pages != silver 0 rows + 0 rejected pages" in message
    assert silver.check_reconciliation(silver.reconciliation(bronze_rows, silver_rows, rejected), strict=False) == (2, 2)
    one_partition = bronze_rows.where(F.col("method_type") == "001-cola-detail").limit(2)
    assert silver.check_reconciliation(silver.reconciliation(one_partition, silver_rows, rejected)) == (1, 0)


def _rows(spark, spec, root):
    return sorted(lakehouse.read_table(spark, spec, root).collect(), key=lambda r: tuple(str(r[k]) for k in spec.keys))


def test_silver_job_quarantines_bad_pages_is_idempotent_and_follows_changes(spark, tmp_path):
    settings = make_settings(tmp_path)
    root = settings.pipeline.lakehouse_root
    store = storage.raw_store(settings)
    fill_real(store)
    write_partition(store, START, "cola-detail", {WINE: real_page(WINE, "cola-detail"), ERROR_ID: error_page(),
                                                  WRONG_ID: real_page(WINE, "cola-detail")})
    write_partition(store, END, "certificate", {SPIRIT: truncated(real_page(SPIRIT, "certificate"))})
    scope = ReceiptDates(START, END, ("001",), TYPES, run_id="run-1")
    bronze.run(spark, settings, scope)

    first = silver.run(spark, settings, scope)
    assert first["cola_details_inserted"] == 2 and first["cola_certificates_inserted"] == 1 and first["rejects_inserted"] == 3
    assert (first["partitions_reconciled"], first["partitions_unbalanced"]) == (4, 0)
    ids = lambda spec: sorted(r["ttb_id"] for r in _rows(spark, spec, root))  # noqa: E731
    assert (ids(silver.COLA_DETAILS), ids(silver.COLA_CERTIFICATES)) == ([WINE, SPIRIT], [WINE])
    rejects = lakehouse.read_table(spark, silver.REJECTS, root).select("ttb_id", "data_type", "method_type", "stage", "rule", "reason", "source_key")
    want = spark.createDataFrame(
        [
            (ERROR_ID, "cola-detail", "001-cola-detail", "extracted", "parse", "not_found",
             f"pages/method_type=001-cola-detail/receipt_date=2025-04-04/{ERROR_ID}.html"),
            (WRONG_ID, "cola-detail", "001-cola-detail", "extracted", "parse", "wrong_ttb_id",
             f"pages/method_type=001-cola-detail/receipt_date=2025-04-04/{WRONG_ID}.html"),
            (SPIRIT, "certificate", "001-certificate", "extracted", "parse", "truncated",
             f"pages/method_type=001-certificate/receipt_date=2025-04-10/{SPIRIT}.html"),
        ],
        rejects.schema,
    )
    assert_df_equality(rejects, want, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    for spec in (silver.COLA_DETAILS, silver.COLA_CERTIFICATES, silver.REJECTS):
        detail = spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(spec, root)}").first()
        assert detail["description"] == spec.comment
        assert all(f.metadata.get("comment") for f in lakehouse.read_table(spark, spec, root).schema)

    # Rerun: same rows, no duplicates, and the second commits change nothing.
    before = {spec.name: _rows(spark, spec, root) for spec in silver.TABLES.values()} | {"r": _rows(spark, silver.REJECTS, root)}
    second = silver.run(spark, settings, ReceiptDates(START, END, ("001",), TYPES, run_id="run-2"))
    assert {k: v for k, v in second.items() if not k.startswith(("partitions_", "pages_"))} == dict.fromkeys(
        [f"{t}_{m}" for t in ("cola_details", "cola_certificates", "rejects", "withdrawals") for m in ("inserted", "updated", "deleted")], 0)
    after = {spec.name: _rows(spark, spec, root) for spec in silver.TABLES.values()} | {"r": _rows(spark, silver.REJECTS, root)}
    assert after == before

    # The wine's detail page changes and the spirit's certificate is re-scraped whole:
    # exactly the wine's row is updated, the certificate leaves the rejects for silver.
    write_partition(store, START, "cola-detail", {WINE: real_page(WINE, "cola-detail").replace(b"GINGLINGER-FIX", b"GINGLINGER-FOX"),
                                                  ERROR_ID: error_page(), WRONG_ID: real_page(WINE, "cola-detail")}, run_id="scrape-2")
    write_partition(store, END, "certificate", {SPIRIT: real_page(SPIRIT, "certificate")}, run_id="scrape-2")
    bronze.run(spark, settings, ReceiptDates(START, END, ("001",), TYPES, run_id="run-3"))
    third = silver.run(spark, settings, ReceiptDates(START, END, ("001",), TYPES, run_id="run-3"))
    assert (third["cola_details_inserted"], third["cola_details_updated"], third["cola_details_deleted"]) == (0, 1, 0)
    assert (third["cola_certificates_inserted"], third["cola_certificates_updated"]) == (1, 0)
    assert (third["rejects_inserted"], third["rejects_deleted"]) == (0, 1)
    details = {r["ttb_id"]: r for r in _rows(spark, silver.COLA_DETAILS, root)}
    old = {r["ttb_id"]: r for r in before[silver.COLA_DETAILS.name]}
    assert details[SPIRIT] == old[SPIRIT] and details[WINE]["brand_name"] == "GINGLINGER-FOX"
    assert ids(silver.COLA_CERTIFICATES) == [WINE, SPIRIT]
    assert sorted(r["ttb_id"] for r in _rows(spark, silver.REJECTS, root)) == [ERROR_ID, WRONG_ID]


# ---------------------------------------------------------------- label images (#26)

def _label(file_name: str, width: float = 3.7, height: float = 4.5, brand: str = "GINGLINGER", fanciful: str | None = "FIX") -> bytes:
    """A label image as the simulator serves it (Pillow: the same renderer the registry stand-in uses)."""
    from ttb_spark.registry.simulator.images import Label, render

    return render(Label(file_name, width, height), brand, fanciful)


def _decode(body: bytes, content_type: str = "image/jpeg") -> tuple:
    import hashlib

    return silver.decode_image(body, len(body), hashlib.sha256(body).hexdigest(), content_type)


def _bits(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_decode_image_gives_format_pixels_and_hash_or_the_reason_it_cannot():
    """Each format the registry serves decodes to its pixel size (120 pixels an inch of the simulator's labels);
    damaged, foreign or missing bytes give a reason instead, never an exception."""
    import hashlib

    for name, kind, ctype, mode in (("front.jpg", "JPEG", "image/jpeg", "RGB"), ("back label.png", "PNG", "image/png", "RGB"),
                                    ("neck.gif", "GIF", "image/gif", "P")):
        status, reason, detail, fmt, width, height, got_mode, frames, hashed = _decode(_label(name, 3.7, 2.5), ctype)
        assert (status, reason, detail, fmt, width, height, got_mode, frames) == ("decoded", None, None, kind, 444, 300, mode, 1)
        assert len(hashed) == 16 and int(hashed, 16) >= 0
    jpeg = _label("front.jpg")
    half = jpeg[: len(jpeg) // 2]
    assert _decode(half)[:2] == ("rejected", "undecodable") and "truncated" in _decode(half)[2]
    assert _decode(b"<html><body>session expired</body></html>")[:2] == ("rejected", "not_an_image")
    assert _decode(_label("back label.png"), "image/jpeg")[:3] == ("rejected", "format_differs", "decoded PNG, served as image/jpeg")
    assert silver.decode_image(None, 10, "0" * 64, "image/jpeg")[:2] == ("rejected", "object_missing")
    assert silver.decode_image(jpeg, len(jpeg) + 1, hashlib.sha256(jpeg).hexdigest(), "image/jpeg")[:2] == ("rejected", "bytes_differ")
    assert silver.decode_image(jpeg, len(jpeg), "0" * 64, "image/jpeg")[:3] == ("rejected", "bytes_differ", "SHA-256 differs from bronze's")
    assert all(v is None for v in _decode(half)[3:])


def test_dhash_sets_a_bit_where_a_pixel_is_brighter_than_its_left_neighbour():
    """The hash's definition (docs: silver.label_images.dhash) on images whose answer is known: brighter to the right
    everywhere -> every bit set; darker to the right -> none; one row reversed -> exactly that row's byte."""
    from PIL import Image

    rising = Image.frombytes("L", (9, 8), bytes(range(0, 90, 10)) * 8)
    falling = rising.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert silver.dhash(rising) == "f" * 16 and silver.dhash(falling) == "0" * 16
    mixed = Image.frombytes("L", (9, 8), bytes(range(0, 90, 10)) * 2 + bytes(range(80, -10, -10)) + bytes(range(0, 90, 10)) * 5)
    assert silver.dhash(mixed) == "ffff00ffffffffff"
    assert silver.dhash(rising.resize((900, 800))) == silver.dhash(rising)  # resized: the same hash


def test_dhash_finds_the_same_artwork_re_encoded_and_tells_other_labels_apart():
    """Nearest by Hamming distance is the same artwork: every resized or re-compressed copy of a label is closer to
    it than any other label (another brand, fanciful name or label of the COLA)."""
    import io

    from PIL import Image

    label = _label("front.jpg")
    copies = []
    for size in ((222, 270), (888, 1080)):
        for kind, options in (("JPEG", {"quality": 30}), ("JPEG", {"quality": 90}), ("PNG", {})):
            out = io.BytesIO()
            Image.open(io.BytesIO(label)).resize(size).save(out, kind, **options)
            copies.append(_decode(out.getvalue(), f"image/{kind.lower()}")[-1])
    others = [_label("front.jpg", brand="OTHER BRAND"), _label("front.jpg", fanciful="RESERVE"), _label("back.jpg", 3.0, 2.0),
              _label("front.jpg", brand="CHATEAU MONTELENA", fanciful=None)]
    near = max(_bits(_decode(label)[-1], c) for c in copies)
    far = min(_bits(_decode(label)[-1], _decode(o)[-1]) for o in others)
    assert near < far, (near, far)


def test_label_images_rows_and_their_reconciliation(spark):
    """Decoded and rejected images each make one row; per receipt date, bronze images = silver rows or not balanced."""
    day, other = dt.date(2024, 2, 19), dt.date(2024, 2, 20)
    at = dt.datetime(2024, 2, 23, 10)
    decoded = spark.createDataFrame(
        [("24050001000101", day, 1, "front.jpg", "images/k1", "image/jpeg", 10, "a" * 64, at, "decoded", None, None, "JPEG", 444, 540, "RGB", 1, "c4e0cccc84e084c0"),
         ("24050001000101", day, 2, "back.jpg", "images/k2", "image/jpeg", 11, "b" * 64, at, "rejected", "undecodable", "OSError: truncated",
          None, None, None, None, None, None)],
        "ttb_id string, receipt_date date, position int, file_name string, image_key string, content_type string, bytes long, "
        "sha256 string, fetched_at timestamp, " + ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in silver.tables.DECODE_RESULT.fields),
    )
    rows = silver.label_images(decoded)
    assert rows.columns == silver.LABEL_IMAGES.schema.fieldNames()
    want = spark.createDataFrame(
        [("24050001000101", day, 1, "front.jpg", "decoded", None, None, "JPEG", 444, 540, "RGB", 1, "c4e0cccc84e084c0", 10, "a" * 64, "images/k1", at),
         ("24050001000101", day, 2, "back.jpg", "rejected", "undecodable", "OSError: truncated", None, None, None, None, None, None, 11, "b" * 64,
          "images/k2", at)],
        rows.drop("row_hash").schema,
    )
    assert_df_equality(rows.drop("row_hash"), want, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    bronze_rows = decoded.select("receipt_date").union(spark.createDataFrame([(other,)], "receipt_date date"))
    balance = {r["receipt_date"]: (r["bronze_images"], r["silver_images"], r["balanced"])
               for r in silver.image_reconciliation(bronze_rows, rows).collect()}
    assert balance == {day: (2, 2, True), other: (1, 0, False)}
