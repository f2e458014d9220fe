"""The gold stage end to end on the 18 saved records: one lakehouse, four builds, many assertions.

1. every record but MHW's 2019 COLA (all days), read from silver tables on disk by ``gold.run``, over a
   dim_companies of the old shape (versions numbered per permit), which it replaces;
2. the earlier day arrives late and out of order: MHW's 2019 detail page only (no certificate
   yet), and a re-scrape shows MHW's 2025 COLA SURRENDERED;
3. the 2019 certificate arrives a day after its detail page;
4. a rerun of the later day (2025-04-10): must change nothing.
"""

from __future__ import annotations

import shutil
import statistics
from datetime import date, timedelta

import pytest

from conftest import make_settings
from gold_inputs import (
    ALL_IDS, FETCHED, certificate_row, certificates_df, detail_row, details_df, reference_values, write_bronze_pages, write_silver,
)  # fmt: skip
from ttb_spark import bronze, gold, lakehouse
from ttb_spark.gold import queries
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.dimensions import COMPANY_DAYS, COMPANY_STATS, DIM_COMPANIES
from ttb_spark.gold.facts import FACT_CERTIFICATES, FACT_PRODUCTS, FACT_STATUS_CHANGES, LABEL_DAYS
from ttb_spark.gold.quality import QUALITY_CHECKS
from ttb_spark.scope import ReceiptDates
from ttb_spark.settings import DATA_TYPES
from ttb_spark.registry.ttb_id import TTBId

MHW_2019, MHW_2025, MHW = "19337001000251", "25100001000686", "NY-I-1727"
EARLY_DAY, LATER_DAY = date(2019, 12, 3), date(2025, 4, 10)
ALL_DAYS = ReceiptDates(date(2019, 12, 1), date(2026, 12, 31), ("001",), DATA_TYPES)
SNAPSHOT_TABLES = [spec for spec in gold.TABLES if spec is not QUALITY_CHECKS]


def _scope(start: date, end: date) -> ReceiptDates:
    return ReceiptDates(start, end, ("001",), DATA_TYPES)


def _build(spark, settings, scope, details, certificates):
    """What a gold run over ``scope`` sees: the silver rows of its receipt dates."""
    def within(rows):
        return [r for r in rows if scope.start <= r["receipt_date"] <= scope.end]

    return gold.build(spark, settings, scope, details_df(spark, within(details)), certificates_df(spark, within(certificates)))


def _rows(spark, root, spec, where=None):
    df = lakehouse.read_table(spark, spec, root)
    if where is not None:
        df = df.where(where)
    return sorted(df.drop("row_hash").collect(), key=str)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("gold"))
    root = settings.pipeline.lakehouse_root
    seen: dict[str, object] = {}

    numbered = "company_key bigint, permit_number string, version int, company_name string, first_seen date"
    old_dim = spark.createDataFrame([(1, MHW, 1, "MHW, LTD.", date(2019, 1, 2))], numbered)
    spark.sql(f"CREATE TABLE {lakehouse.table_ref(DIM_COMPANIES, root)} USING delta AS SELECT * FROM {{rows}}", rows=old_dim)
    seen["numbered_dim"] = lakehouse.current_version(spark, DIM_COMPANIES, root)

    details = [detail_row(i) for i in ALL_IDS if i != MHW_2019]
    certificates = [certificate_row(i) for i in ALL_IDS if i != MHW_2019]
    write_silver(spark, root, details, certificates)  # the first build goes through the stage entry point
    seen["counts1"] = gold.run(spark, settings, ALL_DAYS)
    seen["company1"] = _rows(spark, root, DIM_COMPANIES, f"permit_number = '{MHW}'")
    seen["stats1"] = _rows(spark, root, COMPANY_STATS, f"permit_number = '{MHW}'")
    seen["flags1"] = _rows(spark, root, FACT_PRODUCTS, f"ttb_id = '{MHW_2025}'")

    surrendered_at = FETCHED + timedelta(days=2)
    details = [r for r in details if r["ttb_id"] != MHW_2025]
    details += [detail_row(MHW_2025, status="SURRENDERED", fetched_at=surrendered_at), detail_row(MHW_2019)]
    seen["counts2"] = _build(spark, settings, _scope(EARLY_DAY, LATER_DAY), details, certificates)
    seen["consolidated2"] = _rows(spark, root, CONSOLIDATED, f"ttb_id = '{MHW_2019}'")
    seen["certificates2"] = _rows(spark, root, FACT_CERTIFICATES, f"ttb_id = '{MHW_2019}'")

    certificates += [certificate_row(MHW_2019, fetched_at=FETCHED + timedelta(days=1))]
    seen["counts3"] = _build(spark, settings, _scope(EARLY_DAY, EARLY_DAY), details, certificates)
    seen["before_rerun"] = {spec.name: _rows(spark, root, spec) for spec in SNAPSHOT_TABLES}

    seen["counts4"] = _build(spark, settings, _scope(LATER_DAY, LATER_DAY), details, certificates)
    seen["after_rerun"] = {spec.name: _rows(spark, root, spec) for spec in SNAPSHOT_TABLES}
    seen["surrendered_at"] = surrendered_at
    return settings, seen


def test_first_build_writes_one_row_per_cola_in_every_fact(lake):
    _, seen = lake
    counts = seen["counts1"]
    assert counts["consolidated_inserted"] == counts["fact_products_inserted"] == counts["fact_certificates_inserted"] == 17
    assert counts["status_changes_inserted"] == 17
    assert counts["checks_failed"] == 0 and counts["checks_passed"] > 20


def test_consolidated_rows_match_the_reference_values(spark, lake):
    settings, _ = lake
    rows = {r["ttb_id"]: r for r in _rows(spark, settings.pipeline.lakehouse_root, CONSOLIDATED)}
    assert sorted(rows) == sorted(ALL_IDS)
    for ttb_id, row in rows.items():
        ref = reference_values(ttb_id)
        c, d = ref["certificate"], ref["detail"]
        assert row["class_type_code"] == c["class_type_code"] and row["origin_code"] == c["origin_code"]
        assert row["class_type_description"] == d["class_type_description"]
        assert row["product_type"] == c["product_type"] and row["source_of_product"] == c["source_of_product"]
        assert row["approval_date"] == date.fromisoformat(d["approval_date"])
        assert row["permit_number"] == d["permit_number"] and row["label_count"] == c["label_images"]
        assert row["record_completeness"] == "complete"
        expected_status = "SURRENDERED" if ttb_id == MHW_2025 else d["status"]
        assert row["status"] == expected_status and row["status_source"] == "detail"


def test_a_dim_companies_of_the_old_shape_is_replaced_and_stays_readable_by_time_travel(spark, lake):
    settings, seen = lake
    root = settings.pipeline.lakehouse_root
    got = lakehouse.read_table(spark, DIM_COMPANIES, root)
    assert got.schema.fieldNames() == DIM_COMPANIES.schema.fieldNames() and got.where(f"permit_number = '{MHW}'").count() == 1
    old = spark.read.format("delta").option("versionAsOf", seen["numbered_dim"]).load(DIM_COMPANIES.path(root))
    assert [(r["version"], r["first_seen"]) for r in old.collect()] == [(1, date(2019, 1, 2))]


def test_detail_without_certificate_is_kept_flagged_and_its_codes_resolved(lake):
    _, seen = lake
    [row] = seen["consolidated2"]
    assert (row["record_completeness"], row["has_detail"], row["has_certificate"]) == ("detail_only", True, False)
    # codes from the detail's unambiguous descriptions: OTHER FOREIGN RUM -> 490, TRINIDAD/TOBAGO -> 7K
    assert (row["class_type_code"], row["origin_code"], row["product_type"]) == ("490", "7K", None)
    assert row["approval_date"] == date(2020, 2, 4) and row["label_count"] is None
    assert seen["certificates2"] == []


def test_late_certificate_completes_the_row(spark, lake):
    settings, seen = lake
    root = settings.pipeline.lakehouse_root
    assert seen["counts3"]["consolidated_updated"] == 1 and seen["counts3"]["fact_certificates_inserted"] == 1
    [row] = _rows(spark, root, CONSOLIDATED, f"ttb_id = '{MHW_2019}'")
    assert (row["record_completeness"], row["product_type"], row["label_count"]) == ("complete", "DISTILLED SPIRITS", 2)
    assert row["dba_names"] == ["LA MAISON & VELIER"]
    [cert] = _rows(spark, root, FACT_CERTIFICATES, f"ttb_id = '{MHW_2019}'")
    assert cert["issued_date"] == date(2020, 2, 4) and cert["label_image_count"] == 2 and cert["is_label_approval"]


def test_status_change_updates_facts_and_appends_history(spark, lake):
    settings, seen = lake
    root = settings.pipeline.lakehouse_root
    history = _rows(spark, root, FACT_STATUS_CHANGES, f"ttb_id = '{MHW_2025}'")
    got = sorted((r["observed_at"], r["previous_status"], r["status"], r["change_type"]) for r in history)
    assert got == [
        (FETCHED.replace(tzinfo=None), None, "APPROVED", "initial"),
        (seen["surrendered_at"].replace(tzinfo=None), "APPROVED", "SURRENDERED", "change"),
    ]
    [product] = _rows(spark, root, FACT_PRODUCTS, f"ttb_id = '{MHW_2025}'")
    [cert] = _rows(spark, root, FACT_CERTIFICATES, f"ttb_id = '{MHW_2025}'")
    assert product["status"] == cert["status"] == "SURRENDERED"
    # the record that was already SURRENDERED when first seen has one initial row
    [real] = _rows(spark, root, FACT_STATUS_CHANGES, "ttb_id = '23223001000234'")
    assert (real["previous_status"], real["status"], real["change_type"]) == (None, "SURRENDERED", "initial")


def test_company_version_and_stats_move_back_for_an_earlier_day_and_survive_a_rerun_of_a_later_day(spark, lake):
    settings, seen = lake
    root = settings.pipeline.lakehouse_root
    [before] = seen["stats1"]
    assert (before["first_seen"], before["first_ttb_id"], before["last_seen"], before["cola_count"]) == (LATER_DAY, MHW_2025, LATER_DAY, 1)
    [stats] = _rows(spark, root, COMPANY_STATS, f"permit_number = '{MHW}'")
    assert (stats["first_seen"], stats["first_ttb_id"], stats["last_seen"], stats["cola_count"]) == (EARLY_DAY, MHW_2019, LATER_DAY, 2)
    assert (stats["filing_days"], stats["version_count"], stats["dba_names"]) == (2, 1, ["LA MAISON & VELIER"])
    [was], [version] = seen["company1"], _rows(spark, root, DIM_COMPANIES, f"permit_number = '{MHW}'")
    assert (was["valid_from"], version["valid_from"]) == (LATER_DAY, EARLY_DAY)  # the same address: the version starts earlier
    assert version["company_key"] == was["company_key"] == stats["company_key"] and version["is_current"] and version["valid_until"] is None
    assert (version["permit_type"], version["permit_state"], version["company_name"]) == ("IMPORTER", "NY", "MHW, LTD.")


def test_first_cola_flag_moves_to_the_earlier_cola_in_another_partition(spark, lake):
    settings, seen = lake
    [was] = seen["flags1"]
    assert was["is_first_company_cola"] and was["is_first_brand_cola"] and not was["is_brand_refiling"]
    rows = {r["ttb_id"]: r for r in _rows(spark, settings.pipeline.lakehouse_root, FACT_PRODUCTS, f"permit_number = '{MHW}'")}
    assert rows[MHW_2019]["is_first_company_cola"] and not rows[MHW_2025]["is_first_company_cola"]
    assert rows[MHW_2025]["is_first_brand_cola"]  # GIN BES is a new brand for MHW


def test_rerun_of_a_later_day_changes_nothing(lake):
    _, seen = lake
    assert seen["after_rerun"] == seen["before_rerun"]
    changed = {k: v for k, v in seen["counts4"].items() if k.endswith(("_inserted", "_updated", "_deleted")) and v}
    assert changed == {}
    assert seen["counts4"]["checks_failed"] == 0


def test_a_cola_whose_permit_changed_leaves_its_old_permit(spark, lake, tmp_path):
    """Issue #23 (7): a reprocess corrects a COLA's permit number (its permit's only COLA); over a copy of the
    lakehouse the build over its day moves the company rows, day rows and fact to the new permit, and the
    old permit is left with none."""
    moved, old, new = "20010001000197", "BW-CA-5638", "BW-CA-5639"
    shutil.copytree(lake[0].pipeline.lakehouse_root, tmp_path / "lakehouse")
    settings = make_settings(tmp_path)
    root, day = settings.pipeline.lakehouse_root, TTBId(moved).receipt_date
    assert _rows(spark, root, DIM_COMPANIES, f"permit_number = '{old}'")
    _build(spark, settings, _scope(day, day), [detail_row(moved, permit_number=new)], [certificate_row(moved, permit_numbers=[new])])
    for spec in (DIM_COMPANIES, COMPANY_STATS, COMPANY_DAYS, LABEL_DAYS):
        assert not _rows(spark, root, spec, f"permit_number = '{old}'"), spec.name
        assert _rows(spark, root, spec, f"permit_number = '{new}'"), spec.name
    [company] = _rows(spark, root, DIM_COMPANIES, f"permit_number = '{new}'")
    [fact] = _rows(spark, root, FACT_PRODUCTS, f"ttb_id = '{moved}'")
    assert (fact["permit_number"], fact["company_key"], fact["is_first_company_cola"]) == (new, company["company_key"], True)


def test_a_failed_first_build_of_the_day_tables_is_redone_by_the_next(spark, lake, tmp_path):
    """Issue #23 (6): over a copy of the lakehouse without the day tables (as from before them), the build
    that first fills them from the whole of ttb_consolidated fails a blocking check, and the restore
    leaves the tables it created empty; the next build, the cause fixed, fills them again: they equal
    the fixture's, built from every COLA."""
    kept, bogus = "20010001000197", "20010001099999"  # a saved record, and a page bronze found that silver lacks
    seeded = shutil.ignore_patterns(*(spec.name.split(".")[1] for spec in (COMPANY_DAYS, LABEL_DAYS)))
    shutil.copytree(lake[0].pipeline.lakehouse_root, tmp_path / "lakehouse", ignore=seeded)
    settings = make_settings(tmp_path)
    root, day = settings.pipeline.lakehouse_root, TTBId(kept).receipt_date
    write_bronze_pages(spark, root, [kept, bogus])
    with pytest.raises(gold.QualityCheckError, match="found_vs_gold_per_day"):
        _build(spark, settings, _scope(day, day), [detail_row(kept)], [certificate_row(kept)])
    spark.sql(f"DELETE FROM {lakehouse.table_ref(bronze.PAGES, root)} WHERE ttb_id = '{bogus}'")
    _build(spark, settings, _scope(day, day), [detail_row(kept)], [certificate_row(kept)])
    for spec in (COMPANY_DAYS, LABEL_DAYS):
        assert _rows(spark, root, spec) == _rows(spark, lake[0].pipeline.lakehouse_root, spec), spec.name


def test_cola_keyed_tables_are_partitioned_by_receipt_month(spark, lake):
    """The 30-year layout (docs/architecture.md, "Gold layout for a 30-year table"): one partition per receipt month, the month derived on write."""
    root = lake[0].pipeline.lakehouse_root
    for spec in (CONSOLIDATED, FACT_PRODUCTS, FACT_CERTIFICATES, FACT_STATUS_CHANGES):
        assert spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(spec, root)}").first()["partitionColumns"] == ["receipt_month"]
        table = lakehouse.read_table(spark, spec, root)
        pairs = table.select("receipt_date", "receipt_month").distinct().collect()
        assert pairs and all(r.receipt_month == r.receipt_date.replace(day=1) for r in pairs), spec.name
        folders = {f.split("/receipt_month=")[1].split("/")[0] for f in table.inputFiles()}
        assert folders == {str(r.receipt_month) for r in pairs}, spec.name


def test_every_build_recorded_passing_checks(spark, lake):
    settings, _ = lake
    checks = lakehouse.read_table(spark, QUALITY_CHECKS, settings.pipeline.lakehouse_root).collect()
    assert len({r["run_id"] for r in checks}) == 4
    assert all(r["passed"] for r in checks), [r["detail"] for r in checks if not r["passed"]]
    names = {r["check_name"] for r in checks}
    assert {"unique_ttb_id:gold.fact_products", "fk:gold.fact_products.company_key", "counts_reconcile_with_silver",
            "approval_after_receipt:gold.fact_products", "surrogate_keys_unique:gold.dim_locations.location_key",
            "scd2_one_current:gold.dim_companies", "scd2_non_overlapping:gold.dim_companies", "natural_keys_unique:gold.dim_companies"} <= names


def test_example_queries(spark, lake):
    settings, _ = lake
    results = queries.run_examples(spark, settings.pipeline.lakehouse_root)

    per_month = {(r["year"], r["month"], r["product_type"], r["family"]): r["approvals"] for r in results["approvals_per_month_by_category"]}
    assert sum(per_month.values()) == 18
    # approved in January 2020 (reference values): two table white wines, a mead, an ale
    assert per_month[(2020, 1, "WINE", "TABLE WINE")] == 2
    assert per_month[(2020, 1, "WINE", "MEAD")] == per_month[(2020, 1, "MALT BEVERAGE", "ALE")] == 1

    # latest receipt date is 2026-03-23; only PARK STREET IMPORTS first filed in the week before
    assert [(r["permit_number"], r["first_seen"]) for r in results["new_companies_last_week"]] == [("FL-I-15704", date(2026, 3, 23))]

    days: dict[str, list[int]] = {}
    for ttb_id in ALL_IDS:
        ref = reference_values(ttb_id)
        waited = (date.fromisoformat(ref["detail"]["approval_date"]) - TTBId(ttb_id).receipt_date).days
        days.setdefault(ref["certificate"]["product_type"], []).append(waited)
    medians = {r["product_type"]: (r["colas"], r["median_days_to_approval"]) for r in results["median_days_to_approval_by_product_type"]}
    assert medians == {k: (len(v), statistics.median(v)) for k, v in days.items()}
