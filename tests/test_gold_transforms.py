"""Each gold table's transform on small inputs taken from the saved pages (no Delta writes).

Expected values are written out by hand from the pages' reference values, the calendar and
the permit formats, never produced by the code under test.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from gold_inputs import FETCHED, certificate_row, certificates_df, detail_row, details_df, reference_values
from ttb_spark import reference
from ttb_spark.gold import quality
from ttb_spark.gold.consolidated import consolidate
from ttb_spark.gold.dimensions import (
    company_days, company_stats, dim_companies, dim_dates, dim_locations, dim_product_types, federal_holidays, permit_state, permit_type,
)  # fmt: skip
from ttb_spark.gold.facts import (
    fact_certificates, fact_products, first_colas, label_days, reinstatements, status_changes, with_completed_dates, with_flags,
)  # fmt: skip
from ttb_spark.gold.keys import surrogate_key

LAPHROAIG, MHW_2019, CREMANT, MHW_2025, CIDER = "24011001000462", "19337001000251", "25094001000051", "25100001000686", "25156001000225"


@pytest.fixture(scope="module")
def ref(spark):
    return reference.to_frame(spark, reference.seed_rows()).cache()


@pytest.fixture(scope="module")
def consolidated(spark, ref):
    """Laphroaig complete (detail says EXPIRED), MHW 2019 detail only, the cremant certificate
    only, MHW 2025 and the NY cider complete."""
    details = [detail_row(LAPHROAIG, status="EXPIRED"), detail_row(MHW_2019), detail_row(MHW_2025), detail_row(CIDER)]
    certs = [certificate_row(LAPHROAIG), certificate_row(CREMANT), certificate_row(MHW_2025), certificate_row(CIDER)]
    return consolidate(details_df(spark, details), certificates_df(spark, certs), ref).cache()


def test_consolidate(spark, consolidated):
    cols = ["ttb_id", "record_completeness", "status", "status_source", "class_type_code", "origin_code",
            "product_type", "approval_date", "permit_number", "label_count"]  # fmt: skip
    expected = spark.createDataFrame(
        [
            (MHW_2019, "detail_only", "APPROVED", "detail", "490", "7K", None, date(2020, 2, 4), "NY-I-1727", None),
            (LAPHROAIG, "complete", "EXPIRED", "detail", "153", "5K", "DISTILLED SPIRITS", date(2024, 1, 11), "IL-I-198", 2),
            (CREMANT, "certificate_only", "APPROVED", "certificate", "84", "51", "WINE", date(2025, 4, 10), "CA-I-23336", 2),
            (MHW_2025, "complete", "APPROVED", "detail", "268", "50", "DISTILLED SPIRITS", date(2025, 4, 17), "NY-I-1727", 2),
            (CIDER, "complete", "APPROVED", "detail", "82C", "02", "WINE", date(2025, 6, 25), "BWN-NY-21135", 1),
        ],
        "ttb_id string, record_completeness string, status string, status_source string, class_type_code string, "
        "origin_code string, product_type string, approval_date date, permit_number string, label_count int",
    )
    assert_df_equality(consolidated.select(*cols), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_consolidate_keeps_both_pages_permits_principal_first(spark, ref):
    beer = "19344001000769"  # certificate lists BR-VA-20094 and BR-VA-20299; the detail shows the first as principal
    got = consolidate(details_df(spark, [detail_row(beer)]), certificates_df(spark, [certificate_row(beer)]), ref)
    [row] = got.select("permit_number", "permit_numbers", "applicant_name").collect()
    assert (row["permit_number"], row["permit_numbers"]) == ("BR-VA-20094", ["BR-VA-20094", "BR-VA-20299"])
    assert row["applicant_name"] == "ASLIN BEER COMPANY, ASLIN BEER COMPANY"


def test_dim_dates(spark):
    days = [date(2021, 1, 1), date(2021, 12, 24), date(2024, 1, 6), date(2024, 10, 1), date(2024, 11, 28)]
    dates = spark.createDataFrame([(d,) for d in days], "date date")
    got = dim_dates(dates, federal_holidays(spark, [2021, 2024])).select(
        "date_key", "iso_year", "iso_week", "day_of_week", "is_weekend", "fiscal_year", "fiscal_quarter",
        "quarter", "holiday_name", "is_business_day",
    )  # fmt: skip
    expected = spark.createDataFrame(
        [
            (20210101, 2020, 53, 5, False, 2021, 2, 1, "New Year's Day", False),
            (20211224, 2021, 51, 5, False, 2022, 1, 4, "Christmas Day (observed)", False),
            (20240106, 2024, 1, 6, True, 2024, 2, 1, None, False),
            (20241001, 2024, 40, 2, False, 2025, 1, 4, None, True),
            (20241128, 2024, 48, 4, False, 2025, 1, 4, "Thanksgiving Day", False),
        ],
        "date_key int, iso_year int, iso_week int, day_of_week int, is_weekend boolean, fiscal_year int, "
        "fiscal_quarter int, quarter int, holiday_name string, is_business_day boolean",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    for d in days:  # ISO calendar cross-check with the standard library
        [row] = got.where(F.col("date_key") == int(d.strftime("%Y%m%d"))).collect()
        assert (row["iso_year"], row["iso_week"], row["day_of_week"]) == tuple(d.isocalendar())


def test_federal_holidays_follow_the_rules(spark):
    got = {r["date"]: r["holiday_name"] for r in federal_holidays(spark, [2024]).collect()}
    assert got[date(2024, 1, 15)] == "Martin Luther King Jr. Day"  # third Monday of January
    assert got[date(2024, 5, 27)] == "Memorial Day"  # last Monday of May
    assert got[date(2024, 6, 19)].startswith("Juneteenth")
    assert len(got) == 11


def _history(spark, rows):
    return spark.createDataFrame(
        rows,
        "permit_number string, receipt_date date, ttb_id string, applicant_name string, applicant_street string, "
        "applicant_city string, applicant_state string, applicant_zip string, dba_names array<string>",
    )


HOME = ("MHW, LTD.", "1129 NORTHERN BLVD STE 312", "MANHASSET", "NY", "11030")
MOVED = ("MHW, LTD.", "55 WATER ST", "NEW YORK", "NY", "10041")
PARK = ("MHW, LTD.", "1 PARK AVE", "NEW YORK", "NY", "10016")
MHW_COLAS = [  # (receipt date, TTB ID, address, DBA names); out of order on purpose
    (date(2025, 4, 10), "25100001000686", HOME, []),  # back home: a flip-flop
    (date(2019, 12, 3), "19337001000251", HOME, ["LA MAISON & VELIER"]),
    (date(2022, 3, 1), "22060001000010", MOVED, []),
    (date(2023, 5, 2), "23122001000002", PARK, []),  # same day as the next: the higher TTB ID's address is the day's
    (date(2023, 5, 2), "23122001000001", MOVED, []),
    (date(2021, 6, 1), "21152001000020", HOME, []),
]


def _mhw(spark, colas):
    rows = [("NY-I-1727", d, t, *a, dba) for d, t, a, dba in colas]
    rows += [("BW-CA-5638", date(2024, 1, 2), "24002001000001", "CA WINERY", None, "NAPA", "CA", "94558", None)]
    rows += [(None, date(2024, 1, 2), "24002001000002", "NO PERMIT", None, None, None, None, None)]
    return company_days(_history(spark, rows))


def _versions(df):
    return {r["valid_from"]: r for r in df.where(F.col("permit_number") == "NY-I-1727").collect()}


def test_dim_companies_versions_at_daily_grain(spark):
    days = _mhw(spark, MHW_COLAS)
    got = dim_companies(days)
    expected = spark.createDataFrame(
        [
            ("NY-I-1727", date(2019, 12, 3), date(2022, 3, 1), False, "MANHASSET", "11030"),
            ("NY-I-1727", date(2022, 3, 1), date(2023, 5, 2), False, "NEW YORK", "10041"),
            ("NY-I-1727", date(2023, 5, 2), date(2025, 4, 10), False, "NEW YORK", "10016"),
            ("NY-I-1727", date(2025, 4, 10), None, True, "MANHASSET", "11030"),
            ("BW-CA-5638", date(2024, 1, 2), None, True, "NAPA", "94558"),
        ],
        "permit_number string, valid_from date, valid_until date, is_current boolean, city string, zip string",
    )
    assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    rows = got.collect()
    assert len({r["company_key"] for r in rows if r["permit_number"] == "NY-I-1727"}) == 1
    assert len({r["company_version_key"] for r in rows}) == 5 and {r["permit_type"] for r in rows} == {"IMPORTER", "BONDED WINERY"}
    v = _versions(got)
    assert v[date(2019, 12, 3)]["attributes_hash"] == v[date(2025, 4, 10)]["attributes_hash"] != v[date(2022, 3, 1)]["attributes_hash"]

    stats = {r["permit_number"]: r for r in company_stats(days, got).collect()}
    mhw = stats["NY-I-1727"]
    assert (mhw["first_seen"], mhw["first_ttb_id"], mhw["last_seen"], mhw["last_ttb_id"]) == (
        date(2019, 12, 3), "19337001000251", date(2025, 4, 10), "25100001000686")
    assert (mhw["cola_count"], mhw["filing_days"], mhw["version_count"], mhw["dba_names"]) == (6, 5, 4, ["LA MAISON & VELIER"])
    assert mhw["company_key"] == v[date(2019, 12, 3)]["company_key"] and set(stats) == {"NY-I-1727", "BW-CA-5638"}


def test_a_late_earlier_cola_splits_and_extends_versions_without_rekeying_the_others(spark):
    before = _versions(dim_companies(_mhw(spark, MHW_COLAS)))
    late = [(date(2022, 9, 1), "22244001000005", HOME, []), (date(2018, 1, 2), "18002001000009", HOME, [])]
    after = _versions(dim_companies(_mhw(spark, MHW_COLAS + late)))
    got = {d: (r["valid_until"], r["city"], r["is_current"]) for d, r in after.items()}
    assert got == {
        date(2018, 1, 2): (date(2022, 3, 1), "MANHASSET", False),  # the first version starts earlier
        date(2022, 3, 1): (date(2022, 9, 1), "NEW YORK", False),  # split by the late COLA ...
        date(2022, 9, 1): (date(2023, 5, 2), "MANHASSET", False),  # ... which opens a version of its own
        date(2023, 5, 2): (date(2025, 4, 10), "NEW YORK", False),
        date(2025, 4, 10): (None, "MANHASSET", True),
    }
    for start in (date(2022, 3, 1), date(2023, 5, 2), date(2025, 4, 10)):  # same key, same meaning
        assert after[start]["company_version_key"] == before[start]["company_version_key"]
        assert after[start]["attributes_hash"] == before[start]["attributes_hash"]
    assert after[date(2018, 1, 2)]["company_version_key"] not in {r["company_version_key"] for r in before.values()}


def test_permit_type_and_state_from_the_permit_format(spark):
    permits = ["BW-CA-5638", "BWN-WA-21464", "BR-VA-20094", "DSP-KY-20002", "NY-I-1727", "PR-S-15077", "FL-W-12345"]
    df = spark.createDataFrame([(p,) for p in permits], "p string")
    got = [(r[0], r[1]) for r in df.select(permit_type(F.col("p")), permit_state(F.col("p"))).collect()]
    assert got == [
        ("BONDED WINERY", "CA"), ("BONDED WINERY", "WA"), ("BREWERY", "VA"), ("DISTILLED SPIRITS PLANT", "KY"),
        ("IMPORTER", "NY"), ("OTHER BASIC PERMIT", "PR"), ("WHOLESALER", "FL"),
    ]  # fmt: skip


def test_dim_locations(spark, consolidated, ref):
    extra = consolidated.limit(1).select(
        *[F.lit(v).alias(c) for c, v in {"origin_code": "QQ", "origin_description": "ATLANTIS", "source_of_product": "IMPORTED"}.items()],
        *[F.lit(None).cast("string").alias(c) for c in ("applicant_state", "applicant_city", "applicant_zip")],
    )
    source = consolidated.select(*extra.columns).unionByName(extra)
    got = dim_locations(source, ref).where(
        F.col("location_id").isin("origin|5K", "origin|08", "origin|6E", "origin|4A", "origin|QQ", "address|IL|CHICAGO|60654", "address|NY|NEWBURGH|12550")
    )
    expected = spark.createDataFrame(
        [
            ("origin|5K", "ORIGIN", "SCOTLAND", None, None, None, False),
            ("origin|08", "ORIGIN", "UNITED STATES", "GA", "GEORGIA", None, True),
            ("origin|6E", "ORIGIN", "GEORGIA", None, None, None, False),
            ("origin|4A", "ORIGIN", "UNITED STATES", "PR", "PUERTO RICO", None, True),
            ("origin|QQ", "ORIGIN", "ATLANTIS", None, None, None, False),
            ("address|IL|CHICAGO|60654", "APPLICANT_ADDRESS", "UNITED STATES", "IL", "ILLINOIS", "CHICAGO", True),
            ("address|NY|NEWBURGH|12550", "APPLICANT_ADDRESS", "UNITED STATES", "NY", "NEW YORK", "NEWBURGH", True),
        ],
        "location_id string, location_type string, country string, state_code string, state_name string, city string, is_domestic boolean",
    )
    assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_dim_product_types(spark, consolidated, ref):
    unseen = consolidated.where(F.col("ttb_id") == LAPHROAIG).select(
        F.lit("944").alias("class_type_code"), F.lit("TEQUILA FB").alias("class_type_description"), F.col("product_type")
    )
    source = consolidated.select("class_type_code", "class_type_description", "product_type").unionByName(unseen)
    got = dim_product_types(source, ref).where(F.col("class_type_code").isin("153", "268", "82M", "84", "902", "944"))
    expected = spark.createDataFrame(
        [
            ("153", "SINGLE MALT SCOTCH WHISKY", "DISTILLED SPIRITS", "WHISKY", "observed"),
            ("268", "OTHER GIN FB", "DISTILLED SPIRITS", "GIN", "observed"),
            ("82M", "HONEY BASED TABLE WINE", "WINE", "MEAD", "observed"),
            ("84", "SPARKLING WINE/CHAMPAGNE", "WINE", "SPARKLING WINE", "observed"),
            ("902", "ALE", "MALT BEVERAGE", "ALE", "observed"),
            ("944", "TEQUILA FB", "DISTILLED SPIRITS", "AGAVE SPIRITS", "data"),
        ],
        "class_type_code string, class_type_description string, product_type string, family string, source string",
    )
    assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def _flagged(rows, days_from=None):
    """``rows`` with their flags, the day rows built from ``days_from`` (default: ``rows``)."""
    source = rows if days_from is None else days_from
    return with_flags(rows, first_colas(company_days(source), label_days(source)))


def test_fact_products_flags_and_days_to_approval(spark, consolidated):
    refiled = consolidated.where(F.col("ttb_id") == MHW_2019).withColumn("ttb_id", F.lit("20050001000100")).withColumn(
        "receipt_date", F.lit(date(2020, 2, 19))
    )  # the same brand and fanciful name filed again by MHW two months later
    got = fact_products(_flagged(consolidated.unionByName(refiled)))
    expected = spark.createDataFrame(
        [
            (MHW_2019, 63, True, True, False),
            ("20050001000100", -15, False, False, True),  # approval (2020-02-04) is the copied one
            (MHW_2025, 7, False, True, False),
            (LAPHROAIG, 0, True, True, False),
            (CREMANT, 6, True, True, False),
            (CIDER, 20, True, True, False),
        ],
        "ttb_id string, days_to_approval int, is_first_company_cola boolean, is_first_brand_cola boolean, is_brand_refiling boolean",
    )
    assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    [row] = got.where(F.col("ttb_id") == MHW_2025).collect()
    assert row["receipt_date_key"] == 20250410 and row["approval_date_key"] == 20250417 and row["label_image_count"] == 2


def test_fact_certificates_application_types(spark, consolidated):
    got = fact_certificates(consolidated)
    expected = spark.createDataFrame(
        [
            (LAPHROAIG, True, False, None, False, False, 2, ["Brand (front) or keg collar", "Back"]),
            (CREMANT, True, False, None, False, False, 2, ["Brand (front) or keg collar", "Back"]),
            (MHW_2025, True, False, None, False, False, 2, ["Brand (front) or keg collar", "Back"]),
            (CIDER, False, True, "NY", False, False, 1, ["Brand (front) or keg collar"]),
        ],
        "ttb_id string, is_label_approval boolean, is_exemption boolean, exemption_state string, is_distinctive_bottle boolean, "
        "is_resubmission boolean, label_image_count int, label_image_types array<string>",
    )
    assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    [cider] = got.where(F.col("ttb_id") == CIDER).collect()
    assert cider["qualifications_count"] == len(reference_values(CIDER)["detail"]["qualifications"])


def test_status_changes(spark, consolidated):
    later = datetime(2026, 12, 1, 8, 30)
    current = consolidated.withColumn(
        "status", F.when(F.col("ttb_id") == MHW_2025, "SURRENDERED").otherwise(F.col("status"))
    ).withColumn("detail_fetched_at", F.when(F.col("ttb_id") == MHW_2025, F.lit(later)).otherwise(F.col("detail_fetched_at")))
    previous = spark.createDataFrame([(MHW_2025, "APPROVED"), (LAPHROAIG, "EXPIRED"), (CIDER, "APPROVED")], "ttb_id string, status string")
    got = status_changes(previous, current).select("ttb_id", "observed_at", "previous_status", "status", "change_type", "status_source")
    fetched = FETCHED.replace(tzinfo=None)
    expected = spark.createDataFrame(
        [
            (MHW_2025, later, "APPROVED", "SURRENDERED", "change", "detail"),
            (MHW_2019, fetched, None, "APPROVED", "initial", "detail"),
            (CREMANT, fetched, None, "APPROVED", "initial", "certificate"),
        ],
        "ttb_id string, observed_at timestamp, previous_status string, status string, change_type string, status_source string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_completed_dates_are_the_latest_listed_before_each_observation(spark):
    """A COLA approved, then surrendered: each status row gets the completed date the search had listed by
    its fetch (not a later one); a removal and a COLA never listed keep null."""
    t = [datetime(2024, 3, d, 9, 0) for d in (5, 6, 20, 21, 25)]
    events = spark.createDataFrame(
        [
            (MHW_2025, t[1], None, "APPROVED", "initial"),
            (MHW_2025, t[3], "APPROVED", "SURRENDERED", "change"),
            (MHW_2025, t[4], "SURRENDERED", None, "withdrawn"),
            (CIDER, t[1], None, "APPROVED", "initial"),
            (LAPHROAIG, t[0], None, "EXPIRED", "initial"),
            (CREMANT, t[3], "APPROVED", "REVOKED", "change"),  # fetched before the search listed its new date
        ],
        "ttb_id string, observed_at timestamp, previous_status string, status string, change_type string",
    ).withColumn("completed_date", F.lit(None).cast("date")).withColumn("approval_date", F.lit(date(2024, 3, 4)))
    listings = spark.createDataFrame(
        [
            (MHW_2025, date(2024, 3, 4), t[0]),
            (MHW_2025, date(2024, 3, 19), t[2]),
            (LAPHROAIG, date(2024, 3, 5), t[1]),  # listed only after the page was fetched
            (CREMANT, date(2024, 3, 4), t[0]),
        ],
        "ttb_id string, completed_date date, searched_at timestamp",
    )
    expected = spark.createDataFrame(
        [
            (MHW_2025, t[1], None, "APPROVED", "initial", date(2024, 3, 4)),
            (MHW_2025, t[3], "APPROVED", "SURRENDERED", "change", date(2024, 3, 19)),
            (MHW_2025, t[4], "SURRENDERED", None, "withdrawn", None),
            (CIDER, t[1], None, "APPROVED", "initial", None),
            (LAPHROAIG, t[0], None, "EXPIRED", "initial", None),
            (CREMANT, t[3], "APPROVED", "REVOKED", "change", None),
        ],
        "ttb_id string, observed_at timestamp, previous_status string, status string, change_type string, completed_date date",
    ).withColumn("approval_date", F.lit(date(2024, 3, 4)))
    assert_df_equality(with_completed_dates(events, listings).select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_a_cola_public_again_after_its_removal_is_reinstated_not_initial(spark):
    t = [datetime(2024, 3, d, 9, 0) for d in (5, 10, 20, 30)]
    schema = "ttb_id string, observed_at timestamp, previous_status string, status string, change_type string, reason string"
    events = spark.createDataFrame(
        [(MHW_2025, t[3], None, "APPROVED", "initial", None), (CIDER, t[3], None, "APPROVED", "initial", None),
         (LAPHROAIG, t[3], None, "APPROVED", "initial", None), (CREMANT, t[3], "APPROVED", "REVOKED", "change", None)],
        schema,
    )
    history = spark.createDataFrame(
        [
            (MHW_2025, "initial", t[0]), (MHW_2025, "withdrawn", t[1]),  # withdrawn, now public again ...
            (MHW_2025, "reinstated", t[3]),  # ... (already recorded by a build killed before it finished: no matter)
            (CIDER, "initial", t[0]), (CIDER, "rejected", t[1]),  # rejected, now valid again
            (LAPHROAIG, "withdrawn", t[0]), (LAPHROAIG, "reinstated", t[1]), (LAPHROAIG, "change", t[2]),  # not removed last
            (CREMANT, "initial", t[0]),
        ],
        "ttb_id string, change_type string, observed_at timestamp",
    )
    expected = spark.createDataFrame(
        [(MHW_2025, t[3], None, "APPROVED", "reinstated", "public again after: withdrawn"),
         (CIDER, t[3], None, "APPROVED", "reinstated", "public again after: rejected"),
         (LAPHROAIG, t[3], None, "APPROVED", "initial", None), (CREMANT, t[3], "APPROVED", "REVOKED", "change", None)],
        schema,
    )
    assert_df_equality(reinstatements(events, history), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_surrogate_keys_are_stable_and_tell_nulls_apart(spark):
    df = spark.createDataFrame([("a", None), (None, "a"), ("a", None), (None, None)], "x string, y string")
    keys = [r[0] for r in df.select(surrogate_key("dim", F.col("x"), F.col("y"))).collect()]
    assert keys[0] == keys[2] and keys[0] != keys[1] and keys[3] is None
    other = [r[0] for r in df.select(surrogate_key("other_dim", F.col("x"), F.col("y"))).collect()]
    assert other[0] != keys[0]


def test_quality_checks_catch_duplicates_orphans_dates_and_collisions(spark):
    facts = spark.createDataFrame(
        [("1", 10, date(2024, 1, 2), date(2024, 1, 5)), ("1", 11, date(2024, 1, 2), date(2024, 1, 1)), ("2", None, date(1980, 1, 1), None)],
        "ttb_id string, company_key long, receipt_date date, approval_date date",
    )
    dim = spark.createDataFrame([(10, "P1")], "company_key long, permit_number string")
    [(results, rows), (clean, clean_rows)] = quality.tables_checks([
        quality.TableCheck(
            "facts", facts, [quality.ForeignKey("company_key", "dim", dim, "company_key")],
            date_columns=("receipt_date", "approval_date"), date_range=(date(1990, 1, 1), date(2026, 12, 31)), approval_after_receipt=True,
        ),
        quality.TableCheck("known", facts.where("ttb_id = '2'"), [quality.ForeignKey("company_key", "dim", dim, "company_key")]),
    ])  # fmt: skip
    failing = {r.name: (r.failing_rows, r.blocking) for r in results}
    assert rows == 3
    assert failing == {
        "unique_ttb_id:facts": (1, True),
        "fk:facts.company_key": (1, True),  # 11 is unknown; the null key is allowed
        "dates_in_range:facts": (1, False),
        "approval_after_receipt:facts": (1, False),
    }
    assert "e.g. 1" in next(r.detail for r in results if r.name == "fk:facts.company_key")
    assert clean_rows == 1 and [(r.name, r.failing_rows) for r in clean] == [("unique_ttb_id:known", 0), ("fk:known.company_key", 0)]
    collided = spark.createDataFrame([(7, "P1"), (7, "P2"), (8, "P3")], "k long, permit_number string")
    [surrogate] = quality.dimension_checks("d", collided, surrogates=[("k", ["permit_number"])])
    assert surrogate.name == "surrogate_keys_unique:d.k" and surrogate.failing_rows == 1
    assert all(r.passed for r in quality.dimension_checks("d", dim, ["permit_number"], [("company_key", ["permit_number"])]))
    assert not quality.counts_reconcile(3, 2, 3, 3, 1).passed and quality.counts_reconcile(3, 2, 3, 3, 2).passed
    assert [r.name for r in quality.failures(results)] == ["unique_ttb_id:facts", "fk:facts.company_key"]


def test_refiling_window_is_by_receipt_date_then_ttb_id(spark, consolidated):
    """Two COLAs of one permit on the same day: the lower TTB ID is the first."""
    a = consolidated.where(F.col("ttb_id") == MHW_2025)
    b = a.withColumn("ttb_id", F.lit("25100001000999"))
    got = {r["ttb_id"]: r["is_first_company_cola"] for r in fact_products(_flagged(b.unionByName(a))).collect()}
    assert got == {MHW_2025: True, "25100001000999": False}


def test_flags_of_a_stored_first_move_to_a_late_earlier_cola(spark, consolidated):
    """Day rows as a run sees them (stored days + the late day): the stored first loses its flags."""
    later = consolidated.where(F.col("ttb_id") == MHW_2025)
    earlier = later.withColumn("ttb_id", F.lit("24011001000999")).withColumn("receipt_date", F.lit(date(2024, 1, 11)))
    before = {r["ttb_id"]: r for r in _flagged(later).collect()}
    after = {r["ttb_id"]: r for r in _flagged(later.unionByName(earlier)).collect()}
    flags = ("is_first_company_cola", "is_first_brand_cola", "is_brand_refiling")
    assert tuple(before[MHW_2025][f] for f in flags) == (True, True, False)
    assert tuple(after[MHW_2025][f] for f in flags) == (False, False, True)
    assert tuple(after["24011001000999"][f] for f in flags) == (True, True, False)


def test_flags_are_null_without_permit_or_brand(spark, consolidated):
    rows = consolidated.where(F.col("ttb_id") == CIDER)
    nameless = rows.withColumn("ttb_id", F.lit("25156001000999")).withColumn("brand_name", F.lit(None).cast("string"))
    orphan = rows.withColumn("ttb_id", F.lit("25156001000998")).withColumn("permit_number", F.lit(None).cast("string"))
    got = {r["ttb_id"]: (r["is_first_company_cola"], r["is_first_brand_cola"], r["is_brand_refiling"])
           for r in _flagged(rows.unionByName(nameless).unionByName(orphan)).collect()}  # fmt: skip
    assert got == {CIDER: (True, True, False), "25156001000999": (False, None, None), "25156001000998": (None, None, None)}


def test_scd2_checks_fail_on_broken_versions(spark):
    d1, d2, d3 = date(2020, 1, 1), date(2021, 1, 1), date(2021, 6, 1)
    rows = [
        ("OK", d1, d2, False), ("OK", d2, None, True),
        ("TWO_CURRENT", d1, None, True), ("TWO_CURRENT", d2, None, True),
        ("NONE_CURRENT", d1, d2, False),
        ("OVERLAP", d1, d3, False), ("OVERLAP", d2, None, True),
        ("GAP", d1, date(2020, 6, 1), False), ("GAP", d2, None, True),
        ("SAME_KEY", d1, d2, False), ("SAME_KEY", d2, None, True), ("SAME_KEY", d2, None, True),
    ]  # fmt: skip
    dim = spark.createDataFrame(rows, "permit_number string, valid_from date, valid_until date, is_current boolean")
    def checks(df):
        return quality.dimension_checks("d", df, ["permit_number", "valid_from"], scd2_entity="permit_number")

    current, tiled, keys = checks(dim)
    assert (current.name, tiled.name, keys.name) == ("scd2_one_current:d", "scd2_non_overlapping:d", "natural_keys_unique:d")
    assert (current.failing_rows, tiled.failing_rows, keys.failing_rows) == (3, 5, 1)
    assert all(p in current.detail for p in ("TWO_CURRENT", "NONE_CURRENT", "SAME_KEY")) and "OK" not in current.detail.split("(e.g.")[1]
    assert all(p in tiled.detail for p in ("TWO_CURRENT", "NONE_CURRENT", "OVERLAP", "GAP", "SAME_KEY"))
    assert all(r.passed for r in checks(dim.where("permit_number = 'OK'"))) and all(r.blocking for r in (current, tiled, keys))
