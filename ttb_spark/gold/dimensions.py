"""Gold dimensions: dates, companies (SCD type 2), locations, product types.

Keys: see :mod:`ttb_spark.gold.keys` (deterministic 64-bit keys from natural keys; dates as
``yyyymmdd``). ``dim_companies`` keeps a durable ``company_key`` per permit number (what facts
reference) and one row per version of the company's name and address.
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
        "Permit holders, SCD type 2 on name and address: one row per version. company_key is durable per permit "
        "number (facts reference it); first_seen/last_seen come from every COLA of the permit and never move back."
    ),
    keys=("permit_number", "version"),
    schema=StructType([
        column("company_key", LongType(), "durable key of the permit holder (same on every version); facts reference it", False),
        column("company_version_key", LongType(), "key of this version (permit number, version)"),
        column("permit_number", StringType(), "plant registry / basic permit / brewer's number; natural key", False),
        column("version", IntegerType(), "1 for the first name/address seen, +1 at each change (by receipt date, then TTB ID)", False),
        column("company_name", StringType(), "applicant name in this version"),
        column("street", StringType(), "street in this version"),
        column("city", StringType(), "city in this version"),
        column("state", StringType(), "state (USPS code) in this version"),
        column("zip", StringType(), "ZIP code in this version"),
        column("dba_names", ArrayType(StringType()), "every DBA / trade name the permit used on labels (sorted)"),
        column("permit_type", StringType(), "from the permit format: DISTILLED SPIRITS PLANT, BONDED WINERY, BREWERY, IMPORTER ..."),
        column("permit_state", StringType(), "state code inside the permit number"),
        column("valid_from", DateType(), "receipt date of the first COLA showing this version"),
        column("valid_until", DateType(), "valid_from of the next version (exclusive); null for the current version"),
        column("is_current", BooleanType(), "the latest version"),
        column("version_cola_count", IntegerType(), "COLAs showing this version"),
        column("first_seen", DateType(), "receipt date of the permit's first COLA (never moves later)"),
        column("last_seen", DateType(), "receipt date of the permit's latest COLA (never moves earlier)"),
        column("cola_count", IntegerType(), "COLAs of the permit in the lakehouse"),
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


def dim_companies(history: DataFrame, existing: DataFrame) -> DataFrame:
    """Versions of every permit in ``history`` (all gold.ttb_consolidated rows of those permits).

    A new version starts where name or address differs from the previous COLA's (ordered by
    receipt date, then TTB ID), so the result depends only on the COLAs, not on the order days
    were processed in. ``existing`` (the stored rows of those permits) can only widen
    first_seen/last_seen, never narrow them.
    """
    obs = history.where(F.col("permit_number").isNotNull()).select(
        "permit_number",
        "receipt_date",
        "ttb_id",
        F.col("applicant_name").alias("company_name"),
        F.col("applicant_street").alias("street"),
        F.col("applicant_city").alias("city"),
        F.col("applicant_state").alias("state"),
        F.col("applicant_zip").alias("zip"),
        "dba_names",
    )
    order = Window.partitionBy("permit_number").orderBy("receipt_date", "ttb_id")
    attrs = F.to_json(F.struct(*_ADDRESS))
    obs = obs.withColumn("_attrs", attrs).withColumn("_prev", F.lag("_attrs").over(order))
    obs = obs.withColumn("_new", (F.col("_prev").isNull() | (F.col("_prev") != F.col("_attrs"))).cast("int"))
    obs = obs.withColumn("version", F.sum("_new").over(order.rowsBetween(Window.unboundedPreceding, 0)).cast("int"))
    per_permit = obs.groupBy("permit_number").agg(
        F.min("receipt_date").alias("_first"),
        F.max("receipt_date").alias("_last"),
        F.count("*").cast("int").alias("cola_count"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list(F.coalesce("dba_names", F.array().cast("array<string>")))))).alias("dba_names"),
    )
    stored = existing.groupBy("permit_number").agg(F.min("first_seen").alias("_old_first"), F.max("last_seen").alias("_old_last"))
    versions = obs.groupBy("permit_number", "version").agg(
        F.min("receipt_date").alias("valid_from"),
        F.count("*").cast("int").alias("version_cola_count"),
        *[F.min(c).alias(c) for c in _ADDRESS],
    )
    by_version = Window.partitionBy("permit_number").orderBy("version")
    versions = versions.withColumn("valid_until", F.lead("valid_from").over(by_version))
    out = versions.join(per_permit, "permit_number").join(stored, "permit_number", "left")
    permit = F.col("permit_number")
    return out.select(
        surrogate_key("company", permit).alias("company_key"),
        surrogate_key("company_version", permit, F.col("version")).alias("company_version_key"),
        permit,
        "version",
        *_ADDRESS,
        "dba_names",
        permit_type(permit).alias("permit_type"),
        permit_state(permit).alias("permit_state"),
        "valid_from",
        "valid_until",
        F.col("valid_until").isNull().alias("is_current"),
        "version_cola_count",
        F.least("_first", "_old_first").alias("first_seen"),
        F.greatest("_last", "_old_last").alias("last_seen"),
        "cola_count",
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
