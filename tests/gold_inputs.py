"""Silver-shaped inputs for the gold tests, built from the saved pages' reference values.

Schemas are the silver tables' own (contracts.md section 3); values come from
``ttb_spark/data/pages/<id>/reference-values.json`` (extracted independently of our parser),
cleaned as silver cleans them (names upper case, "N/A" -> null), plus the few values read off
the pages by hand that the reference file does not carry (DBA names, type-of-application boxes).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from importlib import resources
from typing import Any

from ttb_spark import lakehouse
from ttb_spark.silver import COLA_CERTIFICATES, COLA_DETAILS
from ttb_spark.registry.ttb_id import TTBId

DETAIL_SCHEMA = COLA_DETAILS.schema
CERTIFICATE_SCHEMA = COLA_CERTIFICATES.schema

FETCHED = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
# Read off the certificate pages (item 8 DBA lines, item 14 ticked boxes).
DBA_NAMES = {"19337001000251": ["LA MAISON & VELIER"]}
EXEMPTION_BOX = 'CERTIFICATE OF EXEMPTION FROM LABEL APPROVAL "For sale in NY only" (Fill in State abbreviation.)'
APPLICATION_TYPES = {"25156001000225": [EXEMPTION_BOX]}
ALL_IDS = tuple(sorted(
    p.name for p in resources.files("ttb_spark").joinpath("data/pages").iterdir() if p.name.isdigit()
))  # fmt: skip


def reference_values(ttb_id: str) -> dict[str, Any]:
    text = resources.files("ttb_spark").joinpath(f"data/pages/{ttb_id}/reference-values.json").read_text()
    return json.loads(text)


def _clean(value: Any) -> Any:
    return None if value in ("", "N/A", "NOT PROVIDED") else value


def _upper(value: str | None) -> str | None:
    return value.upper() if value else value


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _head(ttb_id: str, data_type: str) -> dict[str, Any]:
    t = TTBId(ttb_id)
    return {
        "ttb_id": ttb_id, "receipt_date": t.receipt_date, "receipt_method": t.receipt_method,
        "method_type": f"{t.receipt_method}-{data_type}", "sequence": t.sequence,
        "page_sha256": f"{data_type}-{ttb_id}", "fetched_at": FETCHED, "row_hash": None,
    }  # fmt: skip


def detail_row(ttb_id: str, **changes: Any) -> dict[str, Any]:
    """A silver.cola_details row for a saved record; ``changes`` override columns."""
    d = reference_values(ttb_id)["detail"]
    varietals = _clean(d["grape_varietals"])
    row = {f.name: None for f in DETAIL_SCHEMA.fields} | _head(ttb_id, "cola-detail") | {
        "status": d["status"], "vendor_code": d["vendor_code"], "serial_number": d["serial_number"],
        "class_type_description": d["class_type_description"], "origin_description": d["origin_description"],
        "brand_name": _upper(d["brand_name"]), "fanciful_name": _upper(_clean(d["fanciful_name"])),
        "type_of_application": d["type_of_application"], "for_sale_in": _clean(d["for_sale_in"]),
        "total_bottle_capacity": _clean(d["total_bottle_capacity"]),
        "grape_varietals": [varietals] if varietals else None, "wine_vintage": _clean(d["wine_vintage"]),
        "formula": _clean(d["formula"]), "approval_date": _day(d["approval_date"]), "qualifications": d["qualifications"],
        "permit_number": d["permit_number"], "applicant_name": _upper(d["applicant_name"]),
        "applicant_street": _upper(_clean(d["applicant_street"])), "applicant_city": _upper(d["applicant_city"]),
        "applicant_state": d["applicant_state"], "applicant_zip": d["applicant_zip"], "other_permits": [],
    }  # fmt: skip
    return row | changes


def certificate_row(ttb_id: str, **changes: Any) -> dict[str, Any]:
    """A silver.cola_certificates row for a saved record; ``changes`` override columns."""
    values = reference_values(ttb_id)
    c, d = values["certificate"], values["detail"]
    labels = [("Brand (front) or keg collar" if i == 0 else "Back", 3.0, 4.0, None, f"label-{i}.jpg") for i in range(c["label_images"])]
    varietals = _clean(d["grape_varietals"])
    row = {f.name: None for f in CERTIFICATE_SCHEMA.fields} | _head(ttb_id, "certificate") | {
        "class_type_code": c["class_type_code"], "origin_code": c["origin_code"], "permit_numbers": c["permit_numbers"],
        "source_of_product": c["source_of_product"], "serial_number": c["serial_number"],
        "product_type": c["product_type"], "brand_name": _upper(c["brand_name"]),
        "fanciful_name": _upper(_clean(c["fanciful_name"])), "applicant_name": _upper(d["applicant_name"]),
        "applicant_street": _upper(_clean(d["applicant_street"])), "applicant_city": _upper(d["applicant_city"]),
        "applicant_state": d["applicant_state"], "applicant_zip": d["applicant_zip"],
        "dba_names": DBA_NAMES.get(ttb_id, []), "grape_varietals": [varietals] if varietals else None,
        "wine_appellation": c["wine_appellation"], "phone_number": c["phone_number"],
        "application_types": APPLICATION_TYPES.get(ttb_id, ["CERTIFICATE OF LABEL APPROVAL"]),
        "for_sale_in": _clean(d["for_sale_in"]), "application_date": _day(c["application_date"]),
        "issued_date": _day(c["issued_date"]), "qualifications": d["qualifications"], "status": c["status"],
        "class_type_description": d["class_type_description"], "labels": labels,
    }  # fmt: skip
    return row | changes


def details_df(spark: Any, rows: list[dict[str, Any]]) -> Any:
    return spark.createDataFrame([tuple(r[f.name] for f in DETAIL_SCHEMA.fields) for r in rows], DETAIL_SCHEMA)


def certificates_df(spark: Any, rows: list[dict[str, Any]]) -> Any:
    return spark.createDataFrame([tuple(r[f.name] for f in CERTIFICATE_SCHEMA.fields) for r in rows], CERTIFICATE_SCHEMA)


def write_silver(spark: Any, root: str, details: list[dict[str, Any]], certificates: list[dict[str, Any]]) -> None:
    """Replace the silver tables under ``root`` with these rows (what a silver run would leave;
    unpartitioned, to keep the test's writes few: gold reads them by name either way)."""
    for spec, df in ((COLA_DETAILS, details_df(spark, details)), (COLA_CERTIFICATES, certificates_df(spark, certificates))):
        spark.sql(f"CREATE OR REPLACE TABLE {lakehouse.table_ref(spec, root)} USING delta AS SELECT * FROM {{rows}}", rows=df.coalesce(1))


def write_bronze_pages(spark: Any, root: str, ids: list[str]) -> None:
    """Detail and certificate rows in bronze.pages for ``ids`` (the columns gold's checks read; no HTML)."""
    from ttb_spark import bronze

    def page(ttb_id: str, kind: str) -> tuple:
        t = TTBId(ttb_id)
        known = {"ttb_id": ttb_id, "data_type": kind, "receipt_method": t.receipt_method, "receipt_date": t.receipt_date,
                 "method_type": f"{t.receipt_method}-{kind}", "sequence": t.sequence}
        return tuple(known.get(f.name) for f in bronze.PAGES.schema.fields)

    pages = spark.createDataFrame([page(i, kind) for i in ids for kind in ("cola-detail", "certificate")], bronze.PAGES.schema)
    lakehouse.merge_upsert(spark, pages, bronze.PAGES, root)
