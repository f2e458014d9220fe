"""The report: its figures on tiny gold frames (chispa; expected rows written out by hand), the page it
draws (escaping, one chart spec per charted figure over exactly the figure's rows), and the command's
refusals; and the check of a real lakehouse's report against SQL written independently over gold, which
tests/test_daily.py (its last scheduled run's report, also opened in a browser) and tests/test_e2e.py (the
demo's command, ``pipeline``) use."""

from __future__ import annotations

import json
import re
from datetime import date, datetime

import lxml.html
import pytest
from chispa import assert_df_equality

from test_e2e import _capture
from ttb_spark import cli, lakehouse
from ttb_spark.gold.dimensions import DIM_COMPANIES, DIM_LOCATIONS, DIM_PRODUCT_TYPES
from ttb_spark.gold.facts import FACT_PRODUCTS, FACT_STATUS_CHANGES
from ttb_spark.report import figures, page
from ttb_spark.report.figures import Gold

PRODUCTS = (
    "ttb_id string, approval_date date, days_to_approval int, product_type_key bigint, company_key bigint, permit_number string, "
    "brand_name string, origin_location_key bigint, origin_code string, is_first_company_cola boolean, is_first_brand_cola boolean"
)
SINCE, UNTIL = date(2024, 1, 8), date(2024, 1, 21)  # two ISO weeks: Mondays 2024-01-08 and 2024-01-15


@pytest.fixture(scope="module")
def gold(spark) -> Gold:
    """Five COLAs: three of a whisky permit (one its first, one a first of its brand), a cider of an unknown
    class/type, one approved before the period; status events inside and outside it."""
    products = spark.createDataFrame([
        ("24001001000001", date(2024, 1, 8), 10, 1, 100, "KY-I-1", "OLD OAK", 7, "KY", True, True),
        ("24001001000002", date(2024, 1, 14), 20, 1, 100, "KY-I-1", "OLD OAK", 7, "KY", False, False),
        ("24001001000003", date(2024, 1, 15), 30, 1, 100, "KY-I-1", "NEW OAK", 8, "IT", False, True),
        ("24001001000004", date(2024, 1, 21), None, 99, 200, "NY-I-2", "CIDERY", None, "ZZ", False, False),
        ("24001001000005", date(2024, 1, 7), 5, 1, 100, "KY-I-1", "OLD OAK", 7, "KY", False, False),
    ], PRODUCTS)  # fmt: skip
    types = spark.createDataFrame([(1, "WHISKY")], "product_type_key bigint, family string")
    companies = spark.createDataFrame([
        (100, "OAK DISTILLING", "KY", False), (100, "OAK SPIRITS", "KY", True), (200, "CIDERY INC", "NY", True),
    ], "company_key bigint, company_name string, state string, is_current boolean")  # fmt: skip
    locations = spark.createDataFrame([
        (7, "KENTUCKY", None, "KY", True), (8, None, "ITALY", "IT", False),
    ], "location_key bigint, state_name string, origin_description string, origin_code string, is_domestic boolean")  # fmt: skip
    changes = spark.createDataFrame([
        ("24001001000001", datetime(2024, 1, 9, 23, 59), "initial", None, "APPROVED", None, date(2024, 1, 8)),
        ("24001001000001", datetime(2024, 1, 16, 1, 0), "change", "APPROVED", "SURRENDERED", None, date(2024, 1, 14)),
        ("24001001000002", datetime(2024, 1, 21, 23, 0), "withdrawn", "APPROVED", None, "error page", None),
        ("24001001000003", datetime(2024, 1, 22, 0, 0), "change", "APPROVED", "REVOKED", None, date(2024, 1, 20)),
        ("24001001000004", datetime(2024, 1, 22, 0, 0), "change", "APPROVED", "EXPIRED", None, None),  # not listed yet
        ("24001001000005", datetime(2024, 1, 7, 12, 0), "change", "APPROVED", "EXPIRED", None, date(2024, 1, 6)),  # before it
    ], "ttb_id string, observed_at timestamp, change_type string, previous_status string, status string, reason string, completed_date date")  # fmt: skip
    return Gold(products, types, companies, locations, changes)


def test_approvals_per_iso_week_by_family_count_the_periods_approvals_only(spark, gold):
    expected = spark.createDataFrame([
        (date(2024, 1, 8), "WHISKY", 2), (date(2024, 1, 15), "UNCLASSIFIED", 1), (date(2024, 1, 15), "WHISKY", 1),
    ], "week date, family string, approvals bigint")  # fmt: skip
    assert_df_equality(figures.approvals_by_week(gold, SINCE, UNTIL), expected, ignore_nullable=True)


def test_new_entrants_are_a_permits_first_cola_and_a_permits_first_cola_of_a_brand(spark, gold):
    expected = spark.createDataFrame([
        (date(2024, 1, 8), "first COLA of a brand", 1), (date(2024, 1, 8), "first COLA of a permit", 1),
        (date(2024, 1, 15), "first COLA of a brand", 1),
    ], "week date, kind string, colas bigint")  # fmt: skip
    assert_df_equality(figures.new_entrants_by_week(gold, SINCE, UNTIL), expected, ignore_nullable=True)
    latest = [tuple(r) for r in figures.latest_new_entrants(gold, SINCE, UNTIL).collect()]
    assert latest == [
        (date(2024, 1, 15), "first COLA of a brand", "24001001000003", "KY-I-1", "OAK SPIRITS", "NEW OAK"),
        (date(2024, 1, 8), "first COLA of a brand", "24001001000001", "KY-I-1", "OAK SPIRITS", "OLD OAK"),
        (date(2024, 1, 8), "first COLA of a permit", "24001001000001", "KY-I-1", "OAK SPIRITS", "OLD OAK"),
    ]  # the current name of the permit holder


def test_days_to_approval_median_and_90th_percentile_per_week_and_family(spark, gold):
    # week of 2024-01-08: 10 and 20 days -> median 15, 90th percentile 10 + 0.9 * 10 = 19 (linear, as SQL's percentile)
    expected = spark.createDataFrame([
        (date(2024, 1, 8), "WHISKY", 2, 15.0, 19.0), (date(2024, 1, 15), "WHISKY", 1, 30.0, 30.0),
    ], "week date, family string, colas bigint, median_days double, p90_days double")  # fmt: skip
    assert_df_equality(figures.days_to_approval_by_week(gold, SINCE, UNTIL), expected, ignore_nullable=True)


def test_top_filers_and_origins_rank_the_periods_approvals(spark, gold):
    assert [tuple(r) for r in figures.top_filers(gold, SINCE, UNTIL).collect()] == [("KY-I-1", "OAK SPIRITS", "KY", 3), ("NY-I-2", "CIDERY INC", "NY", 1)]
    origins = [tuple(r) for r in figures.approvals_by_origin(gold, SINCE, UNTIL).collect()]
    assert origins == [("KENTUCKY", True, 2), ("ITALY", False, 1), ("ZZ", None, 1)]  # an origin no location row knows: its code


def test_status_events_are_dated_by_the_registrys_date_of_a_change_else_the_utc_day_observed(spark, gold):
    expected = spark.createDataFrame([
        (date(2024, 1, 8), "change", 1), (date(2024, 1, 15), "change", 1), (date(2024, 1, 15), "withdrawn", 1),
    ], "week date, change_type string, events bigint")  # fmt: skip
    assert_df_equality(figures.status_events_by_week(gold, SINCE, UNTIL), expected, ignore_nullable=True)
    latest = [(r.event_date, r.change_type, r.ttb_id) for r in figures.latest_status_events(gold, SINCE, UNTIL).collect()]
    assert latest == [
        (date(2024, 1, 21), "withdrawn", "24001001000002"),  # observed late that day (UTC)
        (date(2024, 1, 20), "change", "24001001000003"),  # the registry's date, though observed after the period
        (date(2024, 1, 14), "change", "24001001000001"),
    ]  # a change the search has not dated yet, observed after the period: not in it


def test_narrowing_gold_to_the_period_changes_no_figure(gold):
    narrowed = figures.of_period(gold, SINCE, UNTIL)
    assert narrowed.products.count() == 4 and narrowed.status_changes.count() == 5  # those before the period: left out
    for figure in figures.FIGURES:
        assert figure.compute(narrowed, SINCE, UNTIL).collect() == figure.compute(gold, SINCE, UNTIL).collect(), figure.name


def test_the_default_period_is_whole_iso_weeks_ending_with_the_last_days_week():
    assert figures.first_week(date(2024, 3, 4), 8) == date(2024, 1, 15)  # a Monday: 8 weeks, the last one started that day
    assert figures.first_week(date(2024, 3, 10), 1) == date(2024, 3, 4)  # a Sunday: its own week


def _specs(text: str) -> dict[str, dict]:
    found = re.findall(r'<script type="application/json" class="spec" data-figure="([a-z_]+)">(.*?)</script>', text, re.S)
    return {name: json.loads(body) for name, body in found}


def test_the_page_charts_each_figures_rows_and_escapes_registry_text():
    hostile = "</script><script>alert(1)</script> & <!--"
    rows = {"approvals_by_week": [{"week": "2024-01-08", "family": hostile, "approvals": 2}],
            "latest_new_entrants": [{"approval_date": "2024-01-08", "brand_name": hostile}],
            "top_filers": []}
    sections = [(name, f"title {name}", r) for name, r in rows.items()]
    text = page.render("t", "m", sections, vega_bundle="/* bundle */")
    assert hostile not in text and text.count("</script>") == 2 + 1  # the bundle, one spec, the embedding script
    specs = _specs(text)
    assert set(specs) == {"approvals_by_week"}  # a table-only figure and an empty one get no chart
    assert specs["approvals_by_week"]["data"]["values"] == rows["approvals_by_week"]
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;!--" in text  # the tables show it as text
    assert 'id="top_filers"' in text and "Nothing in this period." in text


def test_the_report_command_refuses_a_reversed_period_and_a_lakehouse_without_gold(spark, tmp_path):
    code, _, err = _capture(lambda: cli.main(["report", "--env", "test", "--since", "2024-05-01", "--until", "2024-04-01"]))
    assert code == 2 and err.strip() == "ttb_spark report: error: --since 2024-05-01 is after --until 2024-04-01"
    root = tmp_path / "lakehouse"
    code, out, err = _capture(lambda: cli.main(["report", "--env", "test", "--lakehouse-root", str(root), "--raw-root", str(tmp_path / "raw")]))
    assert code == 2 and f"no gold tables at {root}" in err and out == ""
    assert not (tmp_path / "raw").exists()


def test_a_job_ending_in_gold_writes_the_report_after_a_run_that_changed_gold_and_reports_a_failure(spark, tmp_path):
    from dataclasses import replace
    from types import SimpleNamespace

    from ttb_spark.ops.after_run import after_run_report
    from ttb_spark.scope import Scope
    from ttb_spark.settings import load_settings

    def settings(raw: str, after_run: bool = True):
        return load_settings("test", {"pipeline": {"raw_root": raw, "lakehouse_root": str(tmp_path / "lakehouse")},
                                      "analytics": {"report_after_run": after_run}})

    changed, unchanged = SimpleNamespace(counts={"gold": {"colas": 3}}), SimpleNamespace(counts={"gold": {"colas": 0}})
    raw = tmp_path / "raw"
    assert after_run_report("daily", spark, settings(str(raw), after_run=False), changed) == (None, False)
    assert after_run_report("raw", spark, settings(str(raw)), changed) == (None, False)  # no gold stage
    assert after_run_report("daily", spark, settings(str(raw)), unchanged) == ("not written: gold processed no COLA", False)
    assert not raw.exists()
    where, failed = after_run_report("daily", spark, settings(str(raw)), changed)
    assert not failed and where.startswith(f"{raw}/reports/ttb-report_") and "Nothing in this period." in open(where).read()
    # a run over receipt dates: from its first week on (its COLAs' approvals, however late); a daily run: up to its day
    backfill = replace(Scope.from_settings(settings(str(raw))), start=date(2024, 1, 3), end=date(2024, 1, 4))
    where, _ = after_run_report("pipeline", spark, settings(str(raw)), changed, backfill)
    assert where.startswith(f"{raw}/reports/ttb-report_2024-01-01_")
    daily = replace(Scope.from_settings(settings(str(raw))), start=date(2024, 2, 1), end=date(2024, 3, 6))
    assert after_run_report("daily", spark, settings(str(raw)), changed, daily)[0] == f"{raw}/reports/ttb-report_2024-01-15_2024-03-06.html"
    (tmp_path / "a-file").write_text("")
    where, failed = after_run_report("daily", spark, settings(str(tmp_path / "a-file" / "raw")), changed)
    assert failed and where.startswith("NOT WRITTEN: ")


def test_the_report_goes_to_the_raw_stores_bucket_or_to_an_s3_object_named_by_out(s3_server, s3_bucket):
    import boto3

    from ttb_spark import report
    from ttb_spark.settings import load_settings

    settings = load_settings("test", {"pipeline": {"raw_root": f"s3://{s3_bucket}/raw", "s3_endpoint_url": s3_server}})
    page = report.Report(SINCE, UNTIL, "<html>the page</html>")
    assert report.write(settings, page) == f"s3://{s3_bucket}/raw/reports/ttb-report_2024-01-08_2024-01-21.html"
    assert report.write(settings, page, f"s3://{s3_bucket}/shared/weekly.html") == f"s3://{s3_bucket}/shared/weekly.html"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for key in ("raw/reports/ttb-report_2024-01-08_2024-01-21.html", "shared/weekly.html"):
        assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"<html>the page</html>"


# ------------------------------------------------------------------------- a real lakehouse's report


def _week(column: str) -> str:
    """SQL: the Monday of the date's ISO week (dayofweek: 1 = Sunday ... 7 = Saturday)."""
    return f"date_sub({column}, (dayofweek({column}) + 5) % 7)"


def assert_report_holds_golds_numbers(spark, root: str, path: str, text: str) -> None:
    """Every chart and table of the report at ``path`` (period from its name) holds what SQL written here
    independently over gold's tables at ``root`` answers; a chart for every figure with numbers, none without."""
    for spec in (FACT_PRODUCTS, DIM_PRODUCT_TYPES, DIM_COMPANIES, DIM_LOCATIONS, FACT_STATUS_CHANGES):
        lakehouse.read_table(spark, spec, root).createOrReplaceTempView(spec.name.split(".")[1])
    since, until = map(date.fromisoformat, re.fullmatch(r".*/ttb-report_(\S+)_(\S+)\.html", path).groups())
    approved = f"""SELECT f.*, coalesce(t.family, 'UNCLASSIFIED') AS family, {_week('f.approval_date')} AS week
        FROM fact_products f LEFT JOIN dim_product_types t ON t.product_type_key = f.product_type_key
        WHERE f.approval_date BETWEEN DATE'{since}' AND DATE'{until}'"""
    day = "CASE WHEN change_type = 'change' AND completed_date IS NOT NULL THEN completed_date ELSE to_date(observed_at) END"
    events = f"""SELECT * FROM (SELECT *, {day} AS d, {_week(day)} AS week FROM fact_status_changes WHERE change_type <> 'initial')
        WHERE d BETWEEN DATE'{since}' AND DATE'{until}'"""
    current = "LEFT JOIN dim_companies c ON c.company_key = a.company_key AND c.is_current"
    sql = {
        "approvals_by_week": "SELECT week, family, count(*) FROM a GROUP BY week, family",
        "new_entrants_by_week": "SELECT week, 'first COLA of a permit', count(*) FROM a WHERE is_first_company_cola GROUP BY week "
                                "UNION ALL SELECT week, 'first COLA of a brand', count(*) FROM a WHERE is_first_brand_cola GROUP BY week",
        "days_to_approval_by_week": "SELECT week, family, count(*), percentile(days_to_approval, 0.5), percentile(days_to_approval, 0.9) "
                                    "FROM a WHERE days_to_approval IS NOT NULL GROUP BY week, family",
        "top_filers": f"SELECT a.permit_number, c.company_name, c.state, count(*) AS n FROM a {current} "
                      "GROUP BY a.permit_number, c.company_name, c.state ORDER BY n DESC, a.permit_number LIMIT 15",
        "status_events_by_week": "SELECT week, change_type, count(*) FROM e GROUP BY week, change_type",
        "approvals_by_origin": "SELECT coalesce(l.state_name, l.origin_description, l.origin_code, a.origin_code, 'unknown') AS o, "
                               "l.is_domestic, count(*) AS n FROM a LEFT JOIN dim_locations l ON l.location_key = a.origin_location_key "
                               "GROUP BY o, l.is_domestic ORDER BY n DESC, o LIMIT 15",
        "latest_new_entrants": f"SELECT * FROM (SELECT approval_date, 'first COLA of a permit' AS k, ttb_id, a.permit_number, c.company_name, "
                               f"brand_name FROM a {current} WHERE is_first_company_cola UNION ALL SELECT approval_date, 'first COLA of a brand', "
                               f"ttb_id, a.permit_number, c.company_name, brand_name FROM a {current} WHERE is_first_brand_cola) "
                               "ORDER BY approval_date DESC, ttb_id, k LIMIT 15",
        "latest_status_events": "SELECT d, change_type, ttb_id, previous_status, status, reason FROM e "
                                "ORDER BY d DESC, ttb_id, change_type LIMIT 50",
    }

    def answer(query: str) -> list[tuple]:
        rows = spark.sql(f"WITH a AS ({approved}), e AS ({events}) {query}").collect()
        return [tuple(v.isoformat() if isinstance(v, date) else v for v in r) for r in rows]

    specs = _specs(text)
    with_numbers = {name for name in sql if name not in ("latest_new_entrants", "latest_status_events") and answer(sql[name])}
    assert set(specs) == with_numbers  # a chart for every figure with numbers, none for one without
    assert with_numbers >= {"approvals_by_week", "new_entrants_by_week", "days_to_approval_by_week", "top_filers", "approvals_by_origin"}
    for name, spec in specs.items():
        charted = [tuple(row.values()) for row in spec["data"]["values"]]
        expected = answer(sql[name])
        assert charted == expected if "ORDER BY" in sql[name] else sorted(charted) == sorted(expected), name
    document = lxml.html.fromstring(text)
    for name in sql:  # every figure's table too, cell by cell
        cells = [tuple(td.text_content() for td in tr.findall("td")) for tr in document.xpath(f"//section[@id='{name}']//tbody/tr")]
        expected = [tuple("" if v is None else str(v) for v in row) for row in answer(sql[name])]
        assert cells == expected if "ORDER BY" in sql[name] else sorted(cells) == sorted(expected), name
