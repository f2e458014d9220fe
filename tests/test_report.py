"""The report: its figures on tiny gold frames (chispa; expected rows written out by hand), the page it
draws (escaping, one chart spec per charted figure over exactly the figure's rows), and the command's
refusals. The report of a real lakehouse, checked against SQL over gold and opened in a browser, is in
tests/test_daily.py (its last scheduled run writes it)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime

import pytest
from chispa import assert_df_equality

from test_e2e import _capture
from ttb_spark import cli
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

    from ttb_spark.ops.runner import after_run_report
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
