"""Gold dimensions: dates, companies (SCD type 2), locations, product types.

Keys: see :mod:`ttb_spark.gold.keys` (deterministic 64-bit keys from natural keys; dates as
``yyyymmdd``). ``dim_companies`` keeps a durable ``company_key`` per permit number (what facts
reference) and one row per version of the company's name and address, computed with
``company_stats`` from ``company_days`` (one row per permit and filing day).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructType,
)

from ttb_spark.gold.keys import date_key, surrogate_key
from ttb_spark.lakehouse import TableSpec, column
from ttb_spark.reference import class_type_hierarchy_columns

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

UNITED_STATES = "UNITED STATES"
ROW_HASH_COMMENT = "SHA-256 of the non-key columns; MERGE updates only changed rows"

DIM_DATES = TableSpec(
    name="gold.dim_dates",
    comment="Calendar of every date a fact or dimension refers to: ISO week, US federal fiscal year (October start), federal holidays (by rule, with observed days).",
    keys=("date_key",),
    schema=StructType([
        column("date_key", IntegerType(), "yyyymmdd; the key", False),
        column("date", DateType(), "the date"),
        column("year", IntegerType(), "calendar year"),
        column("quarter", IntegerType(), "calendar quarter 1-4"),
        column("month", IntegerType(), "month 1-12"),
        column("month_name", StringType(), "January ... December"),
        column("day_of_month", IntegerType(), "1-31"),
        column("day_of_year", IntegerType(), "1-366"),
        column("iso_year", IntegerType(), "ISO 8601 week-numbering year"),
        column("iso_week", IntegerType(), "ISO 8601 week 1-53"),
        column("day_of_week", IntegerType(), "ISO day of week: 1 Monday ... 7 Sunday"),
        column("day_name", StringType(), "Monday ... Sunday"),
        column("is_weekend", BooleanType(), "Saturday or Sunday"),
        column("fiscal_year", IntegerType(), "US federal fiscal year (starts 1 October: 2024-10-01 is FY2025)"),
        column("fiscal_quarter", IntegerType(), "US federal fiscal quarter 1-4 (Q1 = Oct-Dec)"),
        column("is_federal_holiday", BooleanType(), "a US federal holiday, or the weekday it is observed on"),
        column("holiday_name", StringType(), "name of the federal holiday (\"... (observed)\" on the observed day)"),
        column("is_business_day", BooleanType(), "not a weekend and not a federal holiday"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

DIM_COMPANIES = TableSpec(
    name="gold.dim_companies",
    comment=(
        "Permit holders, SCD type 2 on name and address at daily grain: one row per version, keyed by (permit_number, "
        "valid_from). A version is a run of filing days whose end-of-day name and address are the same; a late COLA "
        "splits or extends the versions around it and leaves the others' keys alone. company_key is durable per permit "
        "number (facts reference it); per-permit counts and first/last seen are in gold.company_stats."
    ),
    keys=("permit_number", "valid_from"),
    schema=StructType([
        column("company_key", LongType(), "durable key of the permit holder (same on every version); facts reference it", False),
        column("company_version_key", LongType(), "key of this version: a hash of (permit number, valid_from), never of its position in history"),
        column("permit_number", StringType(), "plant registry / basic permit / brewer's number; natural key", False),
        column("valid_from", DateType(), "first receipt date showing this version (the day's last COLA by TTB ID decides a day's version)", False),
        column("valid_until", DateType(), "valid_from of the next version (exclusive); null for the current version"),
        column("is_current", BooleanType(), "the latest version (valid_until is null); exactly one per permit"),
        column("company_name", StringType(), "applicant name in this version"),
        column("street", StringType(), "street in this version"),
        column("city", StringType(), "city in this version"),
        column("state", StringType(), "state (USPS code) in this version"),
        column("zip", StringType(), "ZIP code in this version"),
        column("attributes_hash", StringType(), "SHA-256 of (company_name, street, city, state, zip): adjacent versions differ in it"),
        column("permit_type", StringType(), "from the permit format: DISTILLED SPIRITS PLANT, BONDED WINERY, BREWERY, IMPORTER ..."),
        column("permit_state", StringType(), "state code inside the permit number"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

COMPANY_DAYS = TableSpec(
    name="gold.company_days",
    comment=(
        "One row per permit and receipt date with COLAs: the day's count, first TTB ID and end-of-day name and address. "
        "The state gold keeps per permit so a run reads a permit's filing days, not its COLAs; dim_companies and "
        "company_stats are computed from it. Written last in a gold run."
    ),
    keys=("permit_number", "receipt_date"),
    schema=StructType([
        column("permit_number", StringType(), "principal permit number", False),
        column("receipt_date", DateType(), "receipt date", False),
        column("cola_count", IntegerType(), "COLAs of the permit received that day"),
        column("first_ttb_id", StringType(), "lowest TTB ID of the day"),
        column("last_ttb_id", StringType(), "highest TTB ID of the day (its name and address are the day's)"),
        column("company_name", StringType(), "applicant name on the day's last COLA"),
        column("street", StringType(), "street on the day's last COLA"),
        column("city", StringType(), "city on the day's last COLA"),
        column("state", StringType(), "state on the day's last COLA"),
        column("zip", StringType(), "ZIP code on the day's last COLA"),
        column("attributes_hash", StringType(), "SHA-256 of (company_name, street, city, state, zip)"),
        column("dba_names", ArrayType(StringType()), "DBA / trade names on the day's COLAs (sorted)"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

COMPANY_STATS = TableSpec(
    name="gold.company_stats",
    comment=(
        "One row per permit: first and last COLA, COLA and filing-day counts, number of name/address versions and DBA "
        "names, over every COLA of the permit in the lakehouse (exact: a withdrawn first COLA moves first_seen later). "
        "Join to dim_companies on company_key or permit_number."
    ),
    keys=("permit_number",),
    schema=StructType([
        column("company_key", LongType(), "-> dim_companies.company_key", False),
        column("permit_number", StringType(), "permit number; natural key", False),
        column("first_seen", DateType(), "receipt date of the permit's first COLA"),
        column("first_ttb_id", StringType(), "the permit's first COLA (by receipt date, then TTB ID)"),
        column("last_seen", DateType(), "receipt date of the permit's latest COLA"),
        column("last_ttb_id", StringType(), "the permit's latest COLA (by receipt date, then TTB ID)"),
        column("cola_count", IntegerType(), "COLAs of the permit in the lakehouse"),
        column("filing_days", IntegerType(), "receipt dates with at least one COLA of the permit"),
        column("version_count", IntegerType(), "name/address versions in dim_companies"),
        column("dba_names", ArrayType(StringType()), "every DBA / trade name the permit used on labels (sorted)"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

DIM_LOCATIONS = TableSpec(
    name="gold.dim_locations",
    comment="Places: product origins (origin codes: US states/territories and countries) and applicant addresses (state, city, ZIP).",
    keys=("location_id",),
    schema=StructType([
        column("location_key", LongType(), "surrogate key", False),
        column("location_id", StringType(), "natural key: origin|<code> or address|<state>|<city>|<zip5>", False),
        column("location_type", StringType(), "ORIGIN | APPLICANT_ADDRESS"),
        column("origin_code", StringType(), "TTB origin code (ORIGIN rows)"),
        column("origin_description", StringType(), "TTB origin description (ORIGIN rows)"),
        column("country", StringType(), "UNITED STATES for US places, else the origin's country/region"),
        column("state_code", StringType(), "USPS state/territory code"),
        column("state_name", StringType(), "state/territory name"),
        column("city", StringType(), "city (APPLICANT_ADDRESS rows)"),
        column("zip", StringType(), "5-digit ZIP (APPLICANT_ADDRESS rows)"),
        column("is_domestic", BooleanType(), "a US place"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)

DIM_PRODUCT_TYPES = TableSpec(
    name="gold.dim_product_types",
    comment="Class/type codes with the category hierarchy: product type (wine / distilled spirits / malt beverage) > family > class/type.",
    keys=("class_type_code",),
    schema=StructType([
        column("product_type_key", LongType(), "surrogate key", False),
        column("class_type_code", StringType(), "TTB class/type code; natural key", False),
        column("class_type_description", StringType(), "TTB description"),
        column("product_type", StringType(), "WINE / DISTILLED SPIRITS / MALT BEVERAGE"),
        column("family", StringType(), "WHISKY, GIN, VODKA, RUM, BRANDY, TABLE WINE, SPARKLING WINE, ALE, BEER ..."),
        column("source", StringType(), "registry | observed | seed_list | seed_range (reference data) or data (seen only in COLAs)"),
        column("row_hash", StringType(), ROW_HASH_COMMENT),
    ]),
)


def dates_of(frames: Iterable[tuple[DataFrame, Iterable[str]]]) -> DataFrame:
    """Distinct non-null dates of the given (frame, date columns) pairs, as one ``date`` column."""
    parts = [df.select(F.col(c).cast("date").alias("date")) for df, cols in frames for c in cols]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.where(F.col("date").isNotNull()).distinct()


def federal_holidays(spark: SparkSession, years: Iterable[int]) -> DataFrame:
    """US federal holidays of ``years`` (computed by rule by the ``holidays`` package, observed days included)."""
    import holidays
    from pyspark.sql.types import StructField

    calendar = holidays.US(years=sorted(set(years)))
    rows = sorted(calendar.items())
    schema = StructType([StructField("date", DateType()), StructField("holiday_name", StringType())])
    return spark.createDataFrame(rows, schema)


def dim_dates(dates: DataFrame, holidays: DataFrame) -> DataFrame:
    """One calendar row per date in ``dates``; ``holidays`` from :func:`federal_holidays`."""
    d = F.col("date")
    iso_dow = (F.dayofweek(d) + 5) % 7 + 1
    month = F.month(d)
    names = holidays.groupBy("date").agg(F.concat_ws(" / ", F.sort_array(F.collect_list("holiday_name"))).alias("holiday_name"))
    out = dates.select("date").distinct().join(names, "date", "left")
    return out.select(
        date_key(d).alias("date_key"),
        d.alias("date"),
        F.year(d).alias("year"),
        F.quarter(d).alias("quarter"),
        month.alias("month"),
        F.date_format(d, "MMMM").alias("month_name"),
        F.dayofmonth(d).alias("day_of_month"),
        F.dayofyear(d).alias("day_of_year"),
        F.year(F.date_add(d, 4 - iso_dow)).alias("iso_year"),
        F.weekofyear(d).alias("iso_week"),
        iso_dow.alias("day_of_week"),
        F.date_format(d, "EEEE").alias("day_name"),
        (iso_dow >= 6).alias("is_weekend"),
        (F.year(d) + F.when(month >= 10, 1).otherwise(0)).alias("fiscal_year"),
        (F.floor(((month + 2) % 12) / 3) + 1).cast("int").alias("fiscal_quarter"),
        F.col("holiday_name").isNotNull().alias("is_federal_holiday"),
        F.col("holiday_name"),
        ((iso_dow < 6) & F.col("holiday_name").isNull()).alias("is_business_day"),
    )


def permit_type(permit: Column) -> Column:
    """Kind of permit from its format (``DSP-KY-20002``, ``BW-CA-5638``, ``BR-VA-20094``, ``NY-I-1727`` ...)."""
    return (
        F.when(permit.rlike(r"^DSP-"), "DISTILLED SPIRITS PLANT")
        .when(permit.rlike(r"^BWC-"), "BONDED WINE CELLAR")
        .when(permit.rlike(r"^BWN?-"), "BONDED WINERY")
        .when(permit.rlike(r"^BR-"), "BREWERY")
        .when(permit.rlike(r"^TW-"), "TAXPAID WINE BOTTLING HOUSE")
        .when(permit.rlike(r"^[A-Z]{2}-I-"), "IMPORTER")
        .when(permit.rlike(r"^[A-Z]{2}-W-"), "WHOLESALER")
        .when(permit.rlike(r"^[A-Z]{2}-[A-Z]-"), "OTHER BASIC PERMIT")
        .when(permit.isNotNull(), "UNKNOWN")
    )


def permit_state(permit: Column) -> Column:
    """The state code inside a permit number (``DSP-KY-...`` -> KY, ``NY-I-...`` -> NY)."""
    registry = F.regexp_extract(permit, r"^[A-Z]{2,3}-([A-Z]{2})-", 1)
    basic = F.regexp_extract(permit, r"^([A-Z]{2})-[A-Z]-", 1)
    return F.when(registry != "", registry).when(basic != "", basic)


_ADDRESS = ("company_name", "street", "city", "state", "zip")


def attributes_hash(*columns: str) -> Column:
    """SHA-256 of the columns' JSON form (nulls included): equal exactly when the values are."""
    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)


def company_days(consolidated: DataFrame) -> DataFrame:
    """gold.company_days rows of consolidated rows: every COLA of each (permit, receipt date) in them.

    A day's name and address are those of its last COLA by TTB ID, so two changes on one day leave
    one version, the later one. Rows without a permit number are left out.
    """
    rows = consolidated.where(F.col("permit_number").isNotNull()).select(
        "permit_number",
        "receipt_date",
        "ttb_id",
        F.struct(
            F.col("applicant_name").alias("company_name"),
            F.col("applicant_street").alias("street"),
            F.col("applicant_city").alias("city"),
            F.col("applicant_state").alias("state"),
            F.col("applicant_zip").alias("zip"),
        ).alias("_attrs"),
        F.coalesce("dba_names", F.array().cast("array<string>")).alias("_dba"),
    )
    days = rows.groupBy("permit_number", "receipt_date").agg(
        F.count("*").cast("int").alias("cola_count"),
        F.min("ttb_id").alias("first_ttb_id"),
        F.max("ttb_id").alias("last_ttb_id"),
        F.max_by("_attrs", "ttb_id").alias("_attrs"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("_dba")))).alias("dba_names"),
    )
    return days.select(
        "permit_number", "receipt_date", "cola_count", "first_ttb_id", "last_ttb_id",
        *[F.col("_attrs")[c].alias(c) for c in _ADDRESS], "dba_names",
    ).withColumn("attributes_hash", attributes_hash(*_ADDRESS))  # fmt: skip


def dim_companies(days: DataFrame) -> DataFrame:
    """Versions of every permit in ``days`` (all its gold.company_days rows): a new version starts on
    each filing day whose end-of-day name and address differ from the previous filing day's.

    The result depends only on the days, not on the order they were processed in, and a version is
    keyed by (permit number, valid_from): a late day changes the keys of the versions it splits or
    extends, never of the others.
    """
    order = Window.partitionBy("permit_number").orderBy("receipt_date")
    prev = F.lag("attributes_hash").over(order)
    starts = days.withColumn("_starts", prev.isNull() | (prev != F.col("attributes_hash"))).where("_starts")
    versions = starts.withColumn("valid_until", F.lead("receipt_date").over(order))
    permit = F.col("permit_number")
    return versions.select(
        surrogate_key("company", permit).alias("company_key"),
        surrogate_key("company_version", permit, F.col("receipt_date")).alias("company_version_key"),
        permit,
        F.col("receipt_date").alias("valid_from"),
        "valid_until",
        F.col("valid_until").isNull().alias("is_current"),
        *_ADDRESS,
        "attributes_hash",
        permit_type(permit).alias("permit_type"),
        permit_state(permit).alias("permit_state"),
    )


def company_stats(days: DataFrame, versions: DataFrame) -> DataFrame:
    """gold.company_stats rows of every permit in ``days`` (all its gold.company_days rows) and
    ``versions`` (its dim_companies rows)."""
    first = F.min(F.struct("receipt_date", "first_ttb_id"))
    last = F.max(F.struct("receipt_date", "last_ttb_id"))
    stats = days.groupBy("permit_number").agg(
        first.alias("_first"),
        last.alias("_last"),
        F.sum("cola_count").cast("int").alias("cola_count"),
        F.count("*").cast("int").alias("filing_days"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("dba_names")))).alias("dba_names"),
    )
    counted = versions.groupBy("permit_number").agg(F.count("*").cast("int").alias("version_count"))
    return stats.join(counted, "permit_number", "left").select(
        surrogate_key("company", F.col("permit_number")).alias("company_key"),
        "permit_number",
        F.col("_first.receipt_date").alias("first_seen"),
        F.col("_first.first_ttb_id").alias("first_ttb_id"),
        F.col("_last.receipt_date").alias("last_seen"),
        F.col("_last.last_ttb_id").alias("last_ttb_id"),
        "cola_count",
        "filing_days",
        "version_count",
        "dba_names",
    )


def origin_location_id(code: Column) -> Column:
    return F.when(code.isNotNull(), F.concat(F.lit("origin|"), code))


def address_location_id(state: Column, city: Column, zip_code: Column) -> Column:
    """Natural key of an applicant address (null when state, city and ZIP are all unknown)."""
    zip5 = F.substring(zip_code, 1, 5)
    known = state.isNotNull() | city.isNotNull() | zip_code.isNotNull()
    parts = [F.coalesce(p, F.lit("")) for p in (state, F.upper(city), zip5)]
    return F.when(known, F.concat_ws("|", F.lit("address"), *parts))


def dim_locations(consolidated: DataFrame, reference: DataFrame) -> DataFrame:
    """Every origin code (reference data, plus codes only seen in COLAs) and every applicant address in ``consolidated``."""
    origins_ref = reference.where(F.col("ref_type") == "origin").select(
        F.col("code").alias("origin_code"), F.col("description").alias("origin_description"), "is_domestic", "state_code"
    )
    states = reference.where(F.col("ref_type") == "us_state").select(
        F.col("code").alias("state_code"), F.col("description").alias("state_name")
    )
    seen = (
        consolidated.where(F.col("origin_code").isNotNull())
        .groupBy("origin_code")
        .agg(F.min("origin_description").alias("origin_description"), F.min("source_of_product").alias("_source"))
        .join(origins_ref.select("origin_code"), "origin_code", "left_anti")
        .select(
            "origin_code",
            "origin_description",
            (F.col("_source") == "DOMESTIC").alias("is_domestic"),
            F.lit(None).cast("string").alias("state_code"),
        )
    )
    origins = origins_ref.unionByName(seen).join(states, "state_code", "left").select(
        origin_location_id(F.col("origin_code")).alias("location_id"),
        F.lit("ORIGIN").alias("location_type"),
        "origin_code",
        "origin_description",
        F.when(F.col("is_domestic"), F.lit(UNITED_STATES)).otherwise(F.col("origin_description")).alias("country"),
        "state_code",
        "state_name",
        F.lit(None).cast("string").alias("city"),
        F.lit(None).cast("string").alias("zip"),
        "is_domestic",
    )
    addr = consolidated.select(
        F.col("applicant_state").alias("state_code"),
        F.upper("applicant_city").alias("city"),
        F.substring("applicant_zip", 1, 5).alias("zip"),
    ).distinct()
    addresses = addr.join(states, "state_code", "left").select(
        address_location_id(F.col("state_code"), F.col("city"), F.col("zip")).alias("location_id"),
        F.lit("APPLICANT_ADDRESS").alias("location_type"),
        F.lit(None).cast("string").alias("origin_code"),
        F.lit(None).cast("string").alias("origin_description"),
        F.when(F.col("state_name").isNotNull(), F.lit(UNITED_STATES)).alias("country"),
        "state_code",
        "state_name",
        "city",
        "zip",
        F.col("state_name").isNotNull().alias("is_domestic"),
    )
    out = origins.unionByName(addresses).where(F.col("location_id").isNotNull()).dropDuplicates(["location_id"])
    return out.withColumn("location_key", surrogate_key("location", F.col("location_id")))


def dim_product_types(consolidated: DataFrame, reference: DataFrame) -> DataFrame:
    """Every class/type code of the reference data, plus codes only seen in COLAs (described as the COLA does)."""
    ref = reference.where(F.col("ref_type") == "class_type").select(
        F.col("code").alias("class_type_code"),
        F.col("description").alias("class_type_description"),
        "product_type",
        "family",
        "source",
    )
    seen = (
        consolidated.where(F.col("class_type_code").isNotNull())
        .groupBy("class_type_code")
        .agg(F.min("class_type_description").alias("class_type_description"), F.min("product_type").alias("_observed_type"))
        .join(ref.select("class_type_code"), "class_type_code", "left_anti")
    )
    rule_type, rule_family = class_type_hierarchy_columns(F.col("class_type_code"), F.col("class_type_description"))
    seen = seen.select(
        "class_type_code",
        "class_type_description",
        F.coalesce(rule_type, F.col("_observed_type")).alias("product_type"),
        rule_family.alias("family"),
        F.lit("data").alias("source"),
    )
    out = ref.unionByName(seen)
    return out.withColumn("product_type_key", surrogate_key("product_type", F.col("class_type_code")))
