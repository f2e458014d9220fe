"""Silver's tables and the parse contract they hold: every field with its comment and type, the
parser's record as JSON, and the TableSpecs of ``silver.cola_details``, ``silver.cola_certificates``,
``silver.rejects``, ``silver.withdrawals`` and ``silver.label_images`` with what decoding an image gives
(declared once here; ``ttb_spark.tables`` lists them)."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from ttb_spark import lakehouse
from ttb_spark.lakehouse import column
from ttb_spark.settings import DATA_TYPES

DETAIL, CERTIFICATE = DATA_TYPES
PARSED = "parsed"
NULL_VALUES = ("", "NOT PROVIDED", "N/A")
US_STATES = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP AA AE AP"
).split()
ZIP_PATTERN = r"^[0-9]{5}(-[0-9]{4})?$"

LABEL = StructType(
    [
        StructField("image_type", StringType()),
        StructField("width_inches", DoubleType()),
        StructField("height_inches", DoubleType()),
        StructField("image_url", StringType()),
        StructField("filename", StringType()),
    ]
)
STRINGS = ArrayType(StringType())

# Every field of the parse contract with its comment; type string unless listed in FIELD_TYPES.
FIELD_COMMENTS: dict[str, str] = {
    "status": "Registry status: APPROVED, EXPIRED, SURRENDERED or REVOKED.",
    "vendor_code": "Applicant's vendor code (a string).",
    "serial_number": "Applicant's serial number for the application (a string, e.g. 240003).",
    "class_type_description": "Product class/type description as shown (e.g. SINGLE MALT SCOTCH WHISKY).",
    "origin_description": "Origin description as shown (e.g. SCOTLAND, CALIFORNIA).",
    "brand_name": "Brand name, upper-case.",
    "fanciful_name": "Fanciful name, upper-case; null when none.",
    "type_of_application": "Type of application as shown (e.g. LABEL APPROVAL).",
    "for_sale_in": "State of an exemption from label approval ('For sale in XX only'); null otherwise.",
    "total_bottle_capacity": "Total bottle capacity of a distinctive bottle application, as shown.",
    "grape_varietals": "Grape varietals (wine only).",
    "wine_vintage": "Wine vintage, when given.",
    "formula": "Formula number, when given.",
    "approval_date": "Date the COLA was approved.",
    "qualifications": "Qualification texts TTB attached to the approval, one per entry.",
    "permit_number": "Plant registry / basic permit / brewer's number of the principal place of business.",
    "applicant_name": "Applicant (company) name, upper-case.",
    "applicant_street": "Applicant street address, upper-case; null when NOT PROVIDED.",
    "applicant_city": "Applicant city, upper-case.",
    "applicant_state": "Applicant state, 2-letter code (validated against US states and territories; a failure is a quality flag).",
    "applicant_zip": "Applicant ZIP code, 5 or 5+4 digits (validated; a failure is a quality flag).",
    "other_permits": "Further permit numbers listed under (Other).",
    "formula_sop_no": "Formula/SOP number (older layout).",
    "lab_no": "Lab number (older layout).",
    "lab_date": "Lab date (older layout).",
    "rep_id": "Item 1: representative ID number.",
    "class_type_code": "Class/type code (CT), a string such as 81, 80A, 5K.",
    "origin_code": "Origin code (OR), a string such as 01, 4A (leading zeros kept).",
    "permit_numbers": "Item 2: plant registry / basic permit / brewer's numbers.",
    "source_of_product": "Item 3: DOMESTIC or IMPORTED.",
    "product_type": "Item 5: WINE, DISTILLED SPIRITS or MALT BEVERAGE.",
    "dba_names": "Item 8: DBA names used on the label, upper-case.",
    "mailing_address": "Item 8a: mailing address if different, upper-case.",
    "wine_appellation": "Item 11: wine appellation.",
    "phone_number": "Item 12: phone number as shown.",
    "email": "Item 13: email address, lower-case.",
    "application_types": "Item 14: texts of the ticked type-of-application boxes.",
    "resubmission_ttb_id": "Item 14d: TTB ID of the rejected application this resubmits.",
    "embossed_text": "Item 15: embossed/blown text and translations.",
    "application_date": "Item 16: date of application (equals the receipt date in the TTB ID).",
    "issued_date": "Item 19: date issued.",
    "expiration_date": "Expiration date, if any.",
    "labels": "Label images: image type, actual width and height in inches, image URL and file name.",
    "net_contents": "Net contents (older forms).",
    "alcohol_content": "Alcohol content (older forms).",
}
FIELD_TYPES: dict[str, DataType] = {
    **{f: STRINGS for f in ("grape_varietals", "qualifications", "other_permits", "permit_numbers", "dba_names", "application_types")},
    **{f: DateType() for f in ("approval_date", "lab_date", "application_date", "issued_date", "expiration_date")},
    "labels": ArrayType(LABEL),
}
DETAIL_FIELDS = (
    "status", "vendor_code", "serial_number", "class_type_description", "origin_description", "brand_name",
    "fanciful_name", "type_of_application", "for_sale_in", "total_bottle_capacity", "grape_varietals",
    "wine_vintage", "formula", "approval_date", "qualifications", "permit_number", "applicant_name",
    "applicant_street", "applicant_city", "applicant_state", "applicant_zip", "other_permits",
    "formula_sop_no", "lab_no", "lab_date",
)  # fmt: skip
CERTIFICATE_FIELDS = (
    "rep_id", "class_type_code", "origin_code", "permit_numbers", "source_of_product", "serial_number",
    "product_type", "brand_name", "fanciful_name", "applicant_name", "applicant_street", "applicant_city",
    "applicant_state", "applicant_zip", "dba_names", "mailing_address", "formula", "grape_varietals",
    "wine_appellation", "phone_number", "email", "application_types", "for_sale_in", "total_bottle_capacity",
    "resubmission_ttb_id", "embossed_text", "application_date", "issued_date", "qualifications", "status",
    "class_type_description", "expiration_date", "labels", "net_contents", "alcohol_content", "wine_vintage",
)  # fmt: skip
RECORD_FIELDS = tuple(dict.fromkeys((*DETAIL_FIELDS, *CERTIFICATE_FIELDS)))
UPPER_FIELDS = ("brand_name", "fanciful_name", "applicant_name", "applicant_street", "applicant_city", "applicant_state",
                "dba_names", "mailing_address", "status", "source_of_product", "product_type", "class_type_code",
                "origin_code", "vendor_code", "rep_id")  # fmt: skip
KEEP_LINES = ("qualifications", "embossed_text", "mailing_address")  # trimmed only, inner whitespace kept


def _raw_type(name: str) -> DataType:
    """Type of a field as the parser returns it (dates still ISO strings)."""
    t = FIELD_TYPES.get(name, StringType())
    return StringType() if isinstance(t, DateType) else t


# The parser's record as JSON (contracts.md section 1); ttb_id / receipt_date as read from the page.
RECORD_JSON = StructType(
    [
        StructField("ttb_id", StringType()),
        StructField("receipt_date", StringType()),
        *[StructField(f, _raw_type(f)) for f in RECORD_FIELDS],
    ]
)
PARSE_RESULT = StructType(
    [
        StructField("parse_status", StringType()),
        StructField("parse_reason", StringType()),
        StructField("parse_detail", StringType()),
        StructField("record", StringType()),
    ]
)
PAGE_COLUMNS = ("ttb_id", "data_type", "receipt_date", "method_type", "receipt_method", "sequence", "source_key", "fetched_at")
VIOLATION = StructType(
    [StructField("rule", StringType()), StructField("reason", StringType()), StructField("blocking", BooleanType())]
)

_PAGE_COMMENTS = {
    "ttb_id": ("14-digit TTB ID (YYJJJRRRSSSSSS); the key.", StringType()),
    "receipt_date": ("Date the application was received (from the ID); partition column.", DateType()),
    "receipt_method": ("Receipt method code: 000 hand, 001 e-filed, 002 mail, 003 courier.", StringType()),
    "method_type": ("<receipt method>-<data type> of the source page; partition column.", StringType()),
    "sequence": ("Sequence number within the receipt date and method.", IntegerType()),
}
_TAIL = (
    column("quality_flags", STRINGS, "Names of non-blocking rules the record failed (reference codes, state, ZIP); null when none."),
    column("page_sha256", StringType(), "SHA-256 of the bronze page the row was parsed from."),
    column("fetched_at", TimestampType(), "When that page was fetched."),
    column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
)


def _columns(fields: tuple[str, ...]) -> list[StructField]:
    head = [column(n, t, c, nullable=n != "ttb_id") for n, (c, t) in _PAGE_COMMENTS.items()]
    return [*head, *[column(f, FIELD_TYPES.get(f, StringType()), FIELD_COMMENTS[f]) for f in fields], *_TAIL]


COLA_DETAILS = lakehouse.TableSpec(
    name="silver.cola_details",
    comment="COLA detail pages, parsed, cleaned and validated (the original ttb_structured_data, detail side). One row per TTB ID.",
    keys=("ttb_id",),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    properties=lakehouse.CHANGE_FEED,
    schema=StructType(_columns(DETAIL_FIELDS)),
)
COLA_CERTIFICATES = lakehouse.TableSpec(
    name="silver.cola_certificates",
    comment="COLA certificates (TTB F 5100.31), parsed, cleaned and validated (ttb_structured_data, certificate side). One row per TTB ID.",
    keys=("ttb_id",),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    properties=lakehouse.CHANGE_FEED,
    schema=StructType(_columns(CERTIFICATE_FIELDS)),
)
REJECTS = lakehouse.TableSpec(
    name="silver.rejects",
    comment=(
        "Quarantine: every bronze page that failed parsing or a blocking validation rule, one row per page and failed rule. "
        "Per partition, bronze pages = silver rows + distinct rejected pages."
    ),
    keys=("ttb_id", "data_type", "stage", "rule"),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    schema=StructType(
        [
            column("ttb_id", StringType(), "TTB ID of the page (from its raw store key).", nullable=False),
            column("data_type", StringType(), "Page type: cola-detail or certificate.", nullable=False),
            column("receipt_date", DateType(), "Receipt date of the page's partition; partition column."),
            column("method_type", StringType(), "method_type of the page's partition; partition column."),
            column("stage", StringType(), "Where the page was stopped: extracted (parsing) or cleaned (validation).", nullable=False),
            column(
                "rule",
                StringType(),
                "parse for parse failures; otherwise the blocking rule: ttb_id_matches_page, receipt_date_matches_id, approval_not_before_receipt.",
                nullable=False,
            ),
            column("reason", StringType(), "Why: the parse reason code (not_found, truncated, wrong_ttb_id, ...) or the failed check."),
            column("detail", StringType(), "Human-readable detail, when there is one."),
            column("source_key", StringType(), "Raw store key of the page."),
            column("page_sha256", StringType(), "SHA-256 of the rejected page."),
            column("fetched_at", TimestampType(), "When the page was fetched."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)
WITHDRAWALS = lakehouse.TableSpec(
    name="silver.withdrawals",
    comment=(
        "Pages withdrawn from public view (bronze.pages.withdrawn_at set): their rows leave the other silver tables "
        "and gold. Per partition, bronze pages = silver rows + distinct rejected pages + withdrawn pages."
    ),
    keys=("ttb_id", "data_type"),
    partition_by=("receipt_date", "method_type"),
    hash_exclude=("fetched_at",),
    schema=StructType(
        [
            column("ttb_id", StringType(), "TTB ID of the withdrawn page.", nullable=False),
            column("data_type", StringType(), "Page type: cola-detail or certificate.", nullable=False),
            column("receipt_date", DateType(), "Receipt date of the page's partition; partition column."),
            column("method_type", StringType(), "method_type of the page's partition; partition column."),
            column("withdrawn_at", TimestampType(), "When the registry was first seen answering its error page for the page."),
            column("source_key", StringType(), "Raw store key of the page's last public copy."),
            column("page_sha256", StringType(), "SHA-256 of that copy."),
            column("fetched_at", TimestampType(), "When that copy was fetched."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)
TABLES = {DETAIL: COLA_DETAILS, CERTIFICATE: COLA_CERTIFICATES}

IMAGE_DECODED = "decoded"
# What decoding gives per image, after the bronze.label_images columns it reads (executors.decode_image).
DECODE_RESULT = StructType(
    [
        *[StructField(n, StringType()) for n in ("decode_status", "reason", "detail", "format")],
        *[StructField(n, IntegerType()) for n in ("width_px", "height_px")],
        StructField("mode", StringType()),
        StructField("frames", IntegerType()),
        StructField("dhash", StringType()),
    ]
)
LABEL_IMAGES = lakehouse.TableSpec(
    name="silver.label_images",
    comment=(
        "Every label image of bronze.label_images, decoded on the executors from the raw store's bytes (Pillow): its "
        "format, size in pixels and 64-bit difference hash (dHash), one row per TTB ID, label position and file name. "
        "An image that cannot be decoded, or whose stored bytes differ from what bronze recorded, keeps its row with "
        "decode_status rejected and the reason: per receipt date, bronze.label_images rows = silver.label_images rows."
    ),
    keys=("ttb_id", "position", "file_name"),
    partition_by=("receipt_date",),
    hash_exclude=("fetched_at",),
    properties=lakehouse.CHANGE_FEED,  # gold adds the images decoded since its last run
    schema=StructType(
        [
            column("ttb_id", StringType(), "14-digit TTB ID whose certificate shows the label.", nullable=False),
            column("receipt_date", DateType(), "Receipt date from the ID's YYJJJ; partition column."),
            column("position", IntegerType(), "The label's place among the certificate's label images, 1 first (page order).", nullable=False),
            column("file_name", StringType(), "The image's file name as the certificate gives it (free text).", nullable=False),
            column("decode_status", StringType(), "decoded, or rejected: see reason.", nullable=False),
            column(
                "reason",
                StringType(),
                "Why a rejected image was: object_missing, bytes_differ (size or SHA-256 not bronze's), not_an_image, "
                "undecodable (e.g. truncated), too_many_pixels (over Pillow's decompression-bomb limit), format_differs "
                "(not the content type served); null when decoded.",
            ),
            column("detail", StringType(), "The decoder's message for a rejected image, when there is one."),
            column("format", StringType(), "Image format decoded: JPEG, PNG or GIF."),
            column("width_px", IntegerType(), "Width in pixels."),
            column("height_px", IntegerType(), "Height in pixels."),
            column("mode", StringType(), "Pillow's pixel mode (RGB, L, P, RGBA, CMYK ...)."),
            column("frames", IntegerType(), "Frames in the file (more than 1: an animated GIF; the hash is the first frame's)."),
            column(
                "dhash",
                StringType(),
                "Perceptual difference hash (dHash, 64 bits as 16 hex digits): the first frame in grey at 9 x 8 pixels, a bit "
                "per pixel brighter than its left neighbour, row by row. The same artwork re-encoded or resized gives the same "
                "or a near hash (compare by Hamming distance: bit_count of the XOR).",
            ),
            column("bytes", LongType(), "Size of the stored image in bytes."),
            column("sha256", StringType(), "SHA-256 (hex) of the stored image."),
            column("image_key", StringType(), "Raw store key of the image."),
            column("fetched_at", TimestampType(), "When the image was fetched (bronze.label_images.fetched_at)."),
            column("row_hash", StringType(), "SHA-256 of the row's content; MERGE updates a row only when it changes."),
        ]
    ),
)
