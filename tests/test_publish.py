"""Write-audit-publish on real Delta: a gold run whose blocking check fails restores every gold table it
changed, leaves the watermark where it was and exits 1; once the cause is fixed, the rerun publishes."""

from __future__ import annotations

from conftest import make_settings
from gold_inputs import certificate_row, certificates_df, detail_row, details_df, write_bronze_pages
from ttb_spark import cli, gold, lakehouse
from ttb_spark.gold.consolidated import CONSOLIDATED
from ttb_spark.gold.quality import QUALITY_CHECKS
from ttb_spark.silver import COLA_CERTIFICATES, COLA_DETAILS

PUBLISHED = ("25100001000686", "23223001000234")  # MHW's 2025 COLA and an already SURRENDERED one
LATE = "19337001000251"  # MHW's 2019 COLA: reaches silver before its pages are in bronze


def _silver(spark, root, ids):
    lakehouse.merge_upsert(spark, details_df(spark, [detail_row(i) for i in ids]), COLA_DETAILS, root)
    lakehouse.merge_upsert(spark, certificates_df(spark, [certificate_row(i) for i in ids]), COLA_CERTIFICATES, root)


def _gold(capsys, root, raw):
    code = cli.main(["gold", "--env", "test", "--since-last-run", "--lakehouse-root", root, "--raw-root", raw])
    return code, capsys.readouterr().out


def _snapshot(spark, root):
    return {spec.name: sorted(map(str, lakehouse.read_table(spark, spec, root).collect())) for spec in gold.PUBLISHED}


def test_failed_check_restores_gold_keeps_the_watermark_and_the_rerun_publishes(spark, tmp_path, capsys):
    settings = make_settings(tmp_path)
    root, raw = settings.pipeline.lakehouse_root, settings.pipeline.raw_root
    _silver(spark, root, PUBLISHED)
    write_bronze_pages(spark, root, PUBLISHED)
    code, out = _gold(capsys, root, raw)
    assert code == 0, out
    published, marks = _snapshot(spark, root), lakehouse.read_watermarks(spark, root, "gold")

    _silver(spark, root, [LATE])  # gold would show a COLA that bronze never found
    code, out = _gold(capsys, root, raw)
    assert code == 1 and "QualityCheckError: blocking gold quality checks failed: found_vs_gold_per_day (nothing published:" in out
    assert _snapshot(spark, root) == published
    assert lakehouse.read_watermarks(spark, root, "gold") == marks
    history = spark.sql(f"DESCRIBE HISTORY {lakehouse.table_ref(CONSOLIDATED, root)}").select("operation").collect()
    assert [r[0] for r in history[:2]] == ["RESTORE", "MERGE"]  # the run wrote, then took it back
    failed = lakehouse.read_table(spark, QUALITY_CHECKS, root).where("blocking AND NOT passed").collect()
    assert [(r["check_name"], r["failing_rows"]) for r in failed] == [("found_vs_gold_per_day", 1)]
    assert "2019-12-03 0/1" in failed[0]["detail"]

    write_bronze_pages(spark, root, [LATE])  # the cause fixed: its pages reach bronze
    code, out = _gold(capsys, root, raw)
    assert code == 0, out
    ids = {r[0] for r in lakehouse.read_table(spark, CONSOLIDATED, root).select("ttb_id").collect()}
    assert ids == {*PUBLISHED, LATE}
    assert lakehouse.read_watermarks(spark, root, "gold")[COLA_DETAILS.name] > marks[COLA_DETAILS.name]
