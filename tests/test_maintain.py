"""The maintain job on real Delta tables: compaction keeps contents, VACUUM honours its retention
setting and never removes a change a stage's watermark still needs, the run is audited."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql.types import DateType, IntegerType, StringType, StructType

from ttb_spark import cli, lakehouse, tables

from ttb_spark.ops import audit
from ttb_spark.lakehouse import CHANGE_FEED, column
from ttb_spark.settings import SettingsError, load_settings

DAYS = [date(2024, 1, 2) + timedelta(days=i) for i in range(3)]


def _spec(name: str, properties=()) -> lakehouse.TableSpec:
    return lakehouse.TableSpec(
        name=name, comment="Scratch rows.", keys=("id",), partition_by=("day",), properties=properties,
        schema=StructType([column("id", StringType(), "Row id.", nullable=False), column("day", DateType(), "Partition day."),
                           column("size", IntegerType(), "A value."), column("row_hash", StringType(), "Content hash.")]),
    )  # fmt: skip


def _merges(spark, spec, root: str, rounds: int) -> None:
    """``rounds`` MERGEs, each adding rows to every partition and updating one (small files, some rewritten)."""
    for r in range(rounds):
        rows = [(f"{d}-{r}-{i}", d, r) for d in DAYS for i in range(2)] + [(f"{DAYS[0]}-0-0", DAYS[0], r)]
        lakehouse.merge_upsert(spark, spark.createDataFrame(rows, "id string, day date, size int"), spec, root)


def _parquet_files(spec, root: str) -> int:
    return sum(1 for p in Path(spec.path(root)).rglob("*.parquet") if "_delta_log" not in p.parts)


def _rows(spark, spec, root: str):
    return sorted(tuple(r) for r in lakehouse.read_table(spark, spec, root).collect())


def test_retention_below_deltas_safety_check_is_refused_unless_allowed(tmp_path, capsys):
    with pytest.raises(SettingsError, match=r"TTB_VACUUM_RETENTION_HOURS: 24 is below Delta's 168-hour safety check"):
        load_settings("test", {"maintenance": {"vacuum_retention_hours": 24}})
    allowed = load_settings("test", {"maintenance": {"vacuum_retention_hours": 24, "vacuum_allow_short_retention": True}})
    assert allowed.maintenance.vacuum_retention_hours == 24
    assert load_settings("test").maintenance.vacuum_retention_hours == 168
    root = tmp_path / "lakehouse"
    code = cli.main(["maintain", "--env", "test", "--lakehouse-root", str(root), "--vacuum-retention-hours", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "TTB_VACUUM_RETENTION_HOURS: 1 is below" in err
    assert not root.exists()


def test_maintain_compacts_vacuums_and_keeps_pending_changes(spark, tmp_path, monkeypatch, capsys):
    root = str(tmp_path / "lakehouse")
    plain, fed = _spec("scratch.plain"), _spec("scratch.fed", CHANGE_FEED)
    monkeypatch.setattr(tables, "ALL", (*tables.ALL, plain, fed))  # maintenance covers the lakehouse's listed tables
    for spec in (plain, fed):
        _merges(spark, spec, root, rounds=3)
    # a stage has processed scratch.fed through version 2: its changes from version 3 on are pending
    lakehouse.write_watermarks(spark, root, "silver", {"scratch.fed": 2}, "r1")
    assert lakehouse.current_version(spark, fed, root) == 3
    pending_before = lakehouse.read_changes(spark, fed, root, 2, 3).count()
    before = {s.name: (_rows(spark, s, root), _parquet_files(s, root)) for s in (plain, fed)}

    monkeypatch.setenv("TTB_VACUUM_ALLOW_SHORT_RETENTION", "true")
    code = cli.main(["maintain", "--env", "test", "--lakehouse-root", root, "--vacuum-retention-hours", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]

    for spec in (plain, fed):
        rows, files = before[spec.name]
        assert _rows(spark, spec, root) == rows  # same contents
        live = spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(spec, root)}").first()["numFiles"]
        assert live == len(DAYS) < files, (spec.name, live, files)  # one file per partition now
    # nothing pending on scratch.plain: retention 0 removed every file the current version does not use
    assert _parquet_files(plain, root) == len(DAYS)
    # scratch.fed: the files of its pending versions stay, their change feed still reads
    assert _parquet_files(fed, root) > len(DAYS)
    assert lakehouse.read_changes(spark, fed, root, 2, 3).count() == pending_before
    assert "scratch.fed vacuumed keeping" in err and "its changes from version 3" in err

    (run,) = lakehouse.read_table(spark, audit.PIPELINE_RUNS, root).collect()
    assert run.job == "maintain" and run.status == "succeeded"
    counts = run.counts["maintain"]
    assert counts["tables"] >= 2 and counts["retention_widened"] == 1 and counts["files_after"] < counts["files_before"]
    assert "ttb_spark maintain: SUCCEEDED" in out
