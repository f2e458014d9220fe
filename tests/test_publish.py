"""Write-audit-publish on real Delta: a gold run whose blocking check fails restores every gold table it
changed, leaves the watermark where it was and exits 1; once the cause is fixed, the rerun publishes."""

from __future__ import annotations

from conftest import make_settings
from gold_inputs import certificate_row, certificates_df, detail_row, details_df
from ttb_spark import audit, bronze, cli, gold, lakehouse
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.quality import QUALITY_CHECKS
from ttb_spark.silver import COLA_CERTIFICATES, COLA_DETAILS
from ttb_spark.ttb_id import TTBId

PUBLISHED = ("25100001000686", "23223001000234")  # MHW's 2025 COLA and an already SURRENDERED one
LATE = "19337001000251"  # MHW's 2019 COLA: reaches silver before its pages are in bronze


def _silver(spark, root, ids):
    lakehouse.merge_upsert(spark, details_df(spark, [detail_row(i) for i in ids]), COLA_DETAILS, root)
    lakehouse.merge_upsert(spark, certificates_df(spark, [certificate_row(i) for i in ids]), COLA_CERTIFICATES, root)


def _bronze(spark, root, ids):
    """Their detail and certificate pages in bronze.pages (the columns gold's checks read; no HTML)."""
    def page(ttb_id, kind):
        t = TTBId(ttb_id)
        known = {"ttb_id": ttb_id, "data_type": kind, "receipt_method": t.receipt_method, "receipt_date": t.receipt_date,
                 "method_type": f"{t.receipt_method}-{kind}", "sequence": t.sequence}
        return tuple(known.get(f.name) for f in bronze.PAGES.schema.fields)

    pages = spark.createDataFrame([page(i, kind) for i in ids for kind in ("cola-detail", "certificate")], bronze.PAGES.schema)
    lakehouse.merge_upsert(spark, pages, bronze.PAGES, root)


def _gold(capsys, root, raw):
    code = cli.main(["gold", "--env", "test", "--since-last-run", "--lakehouse-root", root, "--raw-root", raw])
    return code, capsys.readouterr().out


def _snapshot(spark, root):
    return {spec.name: sorted(map(str, lakehouse.read_table(spark, spec, root).collect())) for spec in gold.PUBLISHED}


def test_failed_check_restores_gold_keeps_the_watermark_and_the_rerun_publishes(spark, tmp_path, capsys):
    settings = make_settings(tmp_path)
    root, raw = settings.pipeline.lakehouse_root, settings.pipeline.raw_root
    _silver(spark, root, PUBLISHED)
    _bronze(spark, root, PUBLISHED)
    code, out = _gold(capsys, root, raw)
    assert code == 0, out
    published, marks = _snapshot(spark, root), audit.read_watermarks(spark, root, "gold")

    _silver(spark, root, [LATE])  # gold would show a COLA that bronze never found
    code, out = _gold(capsys, root, raw)
    assert code == 1 and "QualityCheckError: blocking gold quality checks failed: found_vs_gold_per_day (nothing published:" in out
    assert _snapshot(spark, root) == published
    assert audit.read_watermarks(spark, root, "gold") == marks
    history = spark.sql(f"DESCRIBE HISTORY {lakehouse.table_ref(CONSOLIDATED, root)}").select("operation").collect()
    assert [r[0] for r in history[:2]] == ["RESTORE", "MERGE"]  # the run wrote, then took it back
    failed = lakehouse.read_table(spark, QUALITY_CHECKS, root).where("blocking AND NOT passed").collect()
    assert [(r["check_name"], r["failing_rows"]) for r in failed] == [("found_vs_gold_per_day", 1)]
    assert "2019-12-03 0/1" in failed[0]["detail"]

    _bronze(spark, root, [LATE])  # the cause fixed: its pages reach bronze
    code, out = _gold(capsys, root, raw)
    assert code == 0, out
    ids = {r[0] for r in lakehouse.read_table(spark, CONSOLIDATED, root).select("ttb_id").collect()}
    assert ids == {*PUBLISHED, LATE}
    assert audit.read_watermarks(spark, root, "gold")[COLA_DETAILS.name] > marks[COLA_DETAILS.name]
