"""Table addressing (paths or a catalog's managed tables) and schema migrations, on real Delta tables."""

from __future__ import annotations

import re
import shutil
from datetime import date

import pytest
from pyspark.sql.types import DateType, IntegerType, StringType, StructType

from ttb_spark import lakehouse
from ttb_spark.lakehouse import column, ddl
from ttb_spark.settings import load_settings

NAME = "scratch.things"


def spec(*extra, comment: str = "Things, one per id.", id_comment: str = "The thing's id.") -> lakehouse.TableSpec:
    return lakehouse.TableSpec(
        name=NAME, comment=comment, keys=("id",), partition_by=("day",),
        schema=StructType([
            column("id", StringType(), id_comment, nullable=False),
            column("day", DateType(), "Day of the thing; partition column."),
            column("size", IntegerType(), "How big."),
            *extra,
            column("row_hash", StringType(), "SHA-256 of the row's content."),
        ]),
    )  # fmt: skip


@pytest.fixture(params=["path", "catalog"])
def root(request, tmp_path) -> str:
    """A path root, or a namespace of the session catalog (what TTB_CATALOG/TTB_SCHEMA_PREFIX give)."""
    if request.param == "path":
        return str(tmp_path / "lakehouse")
    prefix = re.sub(r"\W", "_", tmp_path.name) + "_"
    return load_settings("test", {"pipeline": {"catalog": "spark_catalog", "schema_prefix": prefix}}).pipeline.lakehouse_root


def _comments(spark, table: lakehouse.TableSpec, root: str) -> dict[str, str | None]:
    return {f.name: f.metadata.get("comment") for f in lakehouse.read_table(spark, table, root).schema}


def test_catalog_settings_make_the_tables_managed_tables_addressed_by_name():
    p = load_settings("test", {"pipeline": {"catalog": "main", "schema_prefix": "ttb_", "raw_root": "/Volumes/main/ttb/raw"}}).pipeline
    assert p.lakehouse_root == "catalog:main.ttb_" and p.raw_root == "/Volumes/main/ttb/raw"
    assert lakehouse.table_ref(spec(), p.lakehouse_root) == "`main`.`ttb_scratch`.`things`"
    assert lakehouse.location(spec(), p.lakehouse_root) == "main.ttb_scratch.things"
    assert lakehouse.table_ref(spec(), "/data/lake") == "delta.`/data/lake/scratch/things`"


def test_new_column_and_comments_are_migrated_onto_the_existing_table(spark, root):
    v1 = spec()
    before = spark.createDataFrame([("a", date(2024, 1, 2), 1)], "id string, day date, size int")
    lakehouse.merge_upsert(spark, before, v1, root)
    assert lakehouse.ensure_table(spark, v1, root) == []  # matches its spec: nothing to do

    v2 = spec(column("colour", StringType(), "Colour, upper-case."), comment="Things (v2).", id_comment="The id.")
    applied = lakehouse.ensure_table(spark, v2, root)
    ref = lakehouse.table_ref(v2, root)
    assert applied == [
        f"ALTER TABLE {ref} ADD COLUMNS (`colour` string COMMENT 'Colour, upper-case.')",
        f"ALTER TABLE {ref} ALTER COLUMN `id` COMMENT 'The id.'",
        f"COMMENT ON TABLE {ref} IS 'Things (v2).'",
    ]
    assert _comments(spark, v2, root) == {f.name: f.metadata["comment"] for f in v2.schema.fields}
    assert spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(v2, root)}").first()["description"] == "Things (v2)."
    assert lakehouse.migration(v2, lakehouse.read_table(spark, v2, root).schema, "Things (v2).") == []

    [row] = lakehouse.read_table(spark, v2, root).collect()  # the old row kept, the new column empty
    assert (row.id, row.size, row.colour) == ("a", 1, None)
    after = spark.createDataFrame([("a", date(2024, 1, 2), 1, "RED")], "id string, day date, size int, colour string")
    assert lakehouse.merge_upsert(spark, after, v2, root) == {"inserted": 0, "updated": 1, "deleted": 0}
    assert lakehouse.read_table(spark, v2, root).first().colour == "RED"


def test_a_change_no_migration_can_make_is_refused_and_the_table_left_alone(spark, root):
    lakehouse.merge_upsert(spark, spark.createDataFrame([("a", date(2024, 1, 2), 1)], "id string, day date, size int"), spec(), root)
    retyped = lakehouse.TableSpec(
        name=NAME, comment="Things, one per id.", keys=("id",), partition_by=("day",),
        schema=StructType([column("id", StringType(), "The thing's id.", nullable=False),
                           column("day", DateType(), "Day of the thing; partition column."),
                           column("size", StringType(), "How big, as text."),
                           column("row_hash", StringType(), "SHA-256 of the row's content.")]),
    )  # fmt: skip
    with pytest.raises(lakehouse.MigrationError, match=r"scratch.things: cannot migrate in place: size is int but the spec says string"):
        lakehouse.ensure_table(spark, retyped, root)
    assert lakehouse.read_table(spark, spec(), root).schema["size"].dataType == IntegerType()


def test_a_layout_change_is_refused_until_relayout_rewrites_the_table(spark, root):
    rows = spark.createDataFrame([("a", date(2024, 1, 2), 1), ("b", date(2024, 1, 3), 2)], "id string, day date, size int")
    lakehouse.merge_upsert(spark, rows, spec(), root)
    base = spec()
    clustered = lakehouse.TableSpec(name=NAME, comment=base.comment, keys=base.keys, cluster_by=("day",), schema=base.schema)
    with pytest.raises(lakehouse.MigrationError, match=r"stored partitioned by \['day'\] and clustered by \[\] but the spec says "
                                                       r"\[\] and \['day'\] \(rewrite it with `ttb_spark relayout scratch.things`\)"):
        lakehouse.ensure_table(spark, clustered, root)
    assert lakehouse.relayout(spark, clustered, root) == 2
    detail = spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(clustered, root)}").first()
    assert (detail["partitionColumns"], detail["clusteringColumns"], detail["minReaderVersion"]) == ([], ["day"], 1)
    assert lakehouse.ensure_table(spark, clustered, root) == [] and lakehouse.relayout(spark, clustered, root) is None
    assert _comments(spark, clustered, root) == {f.name: f.metadata["comment"] for f in clustered.schema.fields}
    stored = lakehouse.read_table(spark, clustered, root)
    assert sorted((r.id, r.day, r.size) for r in stored.collect()) == [("a", date(2024, 1, 2), 1), ("b", date(2024, 1, 3), 2)]
    assert not stored.schema["id"].nullable
    changed = spark.createDataFrame([("a", date(2024, 1, 2), 5)], "id string, day date, size int")
    assert lakehouse.merge_upsert(spark, changed, clustered, root, prune={"day": ["2024-01-02"]}) == {"inserted": 0, "updated": 1, "deleted": 0}


def test_relayout_onto_a_derived_partition_column_computes_it_and_keeps_every_row_hash(spark, root):
    """The move of the COLA-keyed gold tables to receipt-month partitions, in small: a new partition column
    derived from a stored one is computed for the old rows, whose hashes stay valid (a rerun updates nothing)."""
    rows = spark.createDataFrame([("a", date(2024, 1, 2), 1), ("b", date(2024, 2, 3), 2)], "id string, day date, size int")
    lakehouse.merge_upsert(spark, rows, spec(), root)
    hashes = {r.id: r.row_hash for r in lakehouse.read_table(spark, spec(), root).collect()}
    monthly = lakehouse.TableSpec(
        name=NAME, comment="Things, one per id.", keys=("id",), partition_by=("month",), derived=(("month", "trunc(day, 'MM')"),),
        schema=StructType([*spec().schema.fields[:2], column("month", DateType(), "Month of the day; partition column."),
                           *spec().schema.fields[2:]]),
    )  # fmt: skip
    with pytest.raises(lakehouse.MigrationError, match=r"month is not in|stored partitioned by \['day'\]"):
        lakehouse.ensure_table(spark, monthly, root)
    assert lakehouse.relayout(spark, monthly, root) == 2
    assert spark.sql(f"DESCRIBE DETAIL {lakehouse.table_ref(monthly, root)}").first()["partitionColumns"] == ["month"]
    stored = {r.id: r for r in lakehouse.read_table(spark, monthly, root).collect()}
    assert {i: (r.month, r.row_hash) for i, r in stored.items()} == {"a": (date(2024, 1, 1), hashes["a"]), "b": (date(2024, 2, 1), hashes["b"])}
    again = lakehouse.merge_changes(spark, rows, rows.limit(0).select("id"), monthly, root, prune={"month": [date(2024, 1, 1), date(2024, 2, 1)]})
    assert again == {"inserted": 0, "updated": 0, "deleted": 0}
    moved = spark.createDataFrame([("c", date(2024, 3, 9), 3)], "id string, day date, size int")
    assert lakehouse.merge_changes(spark, moved, moved.limit(0).select("id"), monthly, root, prune={"month": [date(2024, 3, 1)]})["inserted"] == 1
    assert lakehouse.read_table(spark, monthly, root).where("id = 'c'").first().month == date(2024, 3, 1)


def test_merge_changes_with_nothing_to_delete_upserts_and_a_rerun_commits_nothing(spark, root):
    rows = spark.createDataFrame([("a", date(2024, 1, 2), 1), ("b", date(2024, 1, 3), 2)], "id string, day date, size int")
    assert lakehouse.merge_changes(spark, rows, None, spec(), root) == {"inserted": 2, "updated": 0, "deleted": 0}
    version = lakehouse.current_version(spark, spec(), root)
    assert lakehouse.merge_changes(spark, rows, None, spec(), root) == {"inserted": 0, "updated": 0, "deleted": 0}
    assert lakehouse.current_version(spark, spec(), root) == version
    changed = spark.createDataFrame([("a", date(2024, 1, 2), 5)], "id string, day date, size int")
    assert lakehouse.merge_changes(spark, changed, None, spec(), root, prune={"day": [date(2024, 1, 2)]}) == {"inserted": 0, "updated": 1, "deleted": 0}
    assert sorted((r.id, r.size) for r in lakehouse.read_table(spark, spec(), root).collect()) == [("a", 5), ("b", 2)]


def test_relayout_command_moves_an_old_consolidated_table_to_receipt_months_and_checks_every_name_first(spark, tmp_path, monkeypatch, capsys):
    """The upgrade of a lakehouse from before the receipt-month layout: the job refuses the old table, naming
    the command; the command with a bad name touches nothing; then it rewrites the table and the job accepts it."""
    from dataclasses import replace

    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType as Struct

    from ttb_spark import cli
    from ttb_spark.gold.consolidated import CONSOLIDATED

    root = str(tmp_path / "lakehouse")
    monkeypatch.setenv("TTB_LAKEHOUSE_ROOT", root)
    old = replace(CONSOLIDATED, partition_by=("receipt_date",), derived=(),
                  schema=Struct([f for f in CONSOLIDATED.schema.fields if f.name != "receipt_month"]))
    rows = spark.createDataFrame([("24001001000001", date(2024, 1, 2)), ("24040001000002", date(2024, 2, 9))], "ttb_id string, receipt_date date")
    rows = rows.select(*[F.col(f.name) if f.name in rows.columns else F.lit(None).cast(f.dataType).alias(f.name) for f in old.schema.fields])
    lakehouse.merge_upsert(spark, rows, old, root)
    with pytest.raises(lakehouse.MigrationError, match=r"receipt_date'\] .* `ttb_spark relayout gold.ttb_consolidated`"):
        lakehouse.ensure_table(spark, CONSOLIDATED, root)
    version = lakehouse.current_version(spark, CONSOLIDATED, root)

    assert cli.main(["relayout", "gold.ttb_consolidated", "gold.fact_products", "--env", "test"]) == 2
    assert "gold.fact_products does not exist at" in capsys.readouterr().err
    assert cli.main(["relayout", "gold.ttb_consolidated", "gold.nothing", "--env", "test"]) == 2
    assert "unknown table 'gold.nothing'" in capsys.readouterr().err
    assert lakehouse.current_version(spark, CONSOLIDATED, root) == version

    assert cli.main(["relayout", "gold.ttb_consolidated", "--env", "test"]) == 0
    assert capsys.readouterr().out == "gold.ttb_consolidated: rewritten, 2 rows\n"
    assert lakehouse.ensure_table(spark, CONSOLIDATED, root) == []
    months = {r.ttb_id: r.receipt_month for r in lakehouse.read_table(spark, CONSOLIDATED, root).collect()}
    assert months == {"24001001000001": date(2024, 1, 1), "24040001000002": date(2024, 2, 1)}


def test_a_delta_error_survives_the_conflict_check_without_deltas_python_exceptions(spark, tmp_path, monkeypatch):
    """EMR's delta-spark 4.0.0 has no ``delta.exceptions``: the conflict check must not need it, and a
    real Delta error (here: a MERGE into a path holding no table) must reach the caller as itself."""
    from pyspark.errors import AnalysisException

    for module in ("delta.exceptions", "delta.exceptions.base", "delta.exceptions.captured"):
        monkeypatch.setitem(__import__("sys").modules, module, None)  # any import of it now raises ImportError
    calls = []

    @lakehouse.retry_on_conflict
    def merge_into_nothing() -> None:
        calls.append(1)
        spark.sql(f"MERGE INTO delta.`{tmp_path / 'none'}` t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE")

    with pytest.raises(AnalysisException) as raised:
        merge_into_nothing()
    assert not lakehouse.is_conflict(raised.value) and calls == [1]  # not retried: not a conflict


def test_conflicts_are_known_by_condition_or_by_delta_sparks_class_names():
    class ConcurrentAppendException(Exception):  # what delta-spark's Python API raises (no condition)
        pass

    class Captured(Exception):
        def __init__(self, condition: str | None) -> None:
            self.condition = condition

        def getCondition(self) -> str | None:
            return self.condition

    assert lakehouse.is_conflict(ConcurrentAppendException("a concurrent append"))
    assert lakehouse.is_conflict(Captured("DELTA_CONCURRENT_APPEND.WITHOUT_HINT"))
    assert not lakehouse.is_conflict(Captured("DELTA_MISSING_DELTA_TABLE"))
    assert not lakehouse.is_conflict(Captured(None))
    assert not lakehouse.is_conflict(ValueError("DELTA_CONCURRENT_APPEND"))


def _half_created(tmp_path) -> str:
    """A lakehouse whose table has the _delta_log folder of a CREATE TABLE that has not committed yet: Spark's
    catalog counts it as a table, reads find none (seen: two job processes starting together on a new
    lakehouse, the second's first audit row refused as `run_id` unresolved)."""
    (tmp_path / "lakehouse" / "scratch" / "things" / "_delta_log").mkdir(parents=True)
    return str(tmp_path / "lakehouse")


def test_a_table_another_writer_is_creating_is_waited_for_not_written_schemaless(spark, tmp_path, monkeypatch):
    root = _half_created(tmp_path)
    assert not lakehouse.table_exists(spark, spec(), root)
    checks = []

    def other_writer_commits_while_we_wait(spark_, spec_, root_):
        checks.append(root_)
        if len(checks) == 2:  # the first check of the wait: the other writer's version 0 lands
            shutil.rmtree(tmp_path / "lakehouse" / "scratch" / "things")
            spark.sql(f"CREATE TABLE {lakehouse.table_ref(spec(), root)} {ddl._definition(spec())}")
        return lakehouse.table_exists(spark_, spec_, root_)

    monkeypatch.setattr(ddl, "table_exists", other_writer_commits_while_we_wait)
    row = spark.createDataFrame([("a", date(2024, 1, 2), 3)], "id string, day date, size int")
    lakehouse.insert_new(spark, row, spec(), root)
    assert len(checks) >= 2
    assert [(r.id, r.size) for r in lakehouse.read_table(spark, spec(), root).collect()] == [("a", 3)]


def test_a_table_whose_creation_never_finished_is_named_and_left_alone(spark, tmp_path, monkeypatch):
    root = _half_created(tmp_path)
    monkeypatch.setattr(ddl, "CREATION_WAIT_SECONDS", 0.0)
    row = spark.createDataFrame([("a", date(2024, 1, 2), 3)], "id string, day date, size int")
    with pytest.raises(ddl.TableNotCreated, match=r"scratch.things: .*/scratch/things is not a Delta table and CREATE TABLE did not"):
        lakehouse.insert_new(spark, row, spec(), root)
    assert list((tmp_path / "lakehouse" / "scratch" / "things" / "_delta_log").iterdir()) == []


def test_a_table_another_process_creates_after_a_no_is_seen_by_the_next_question(spark, tmp_path):
    """Another process's CREATE TABLE caught half-way (its _delta_log folder made, version 0 not yet committed),
    then finished as that process would finish it (files appear, this process's Delta caches learn nothing): the
    next question must see the table (a second job creating ops.pipeline_runs at the same time waits for it by
    asking again)."""
    elsewhere, root = str(tmp_path / "elsewhere"), str(tmp_path / "lakehouse")
    lakehouse.ensure_table(spark, spec(), elsewhere)
    log = tmp_path / "lakehouse" / "scratch" / "things" / "_delta_log"
    log.mkdir(parents=True)
    assert not lakehouse.table_exists(spark, spec(), root)
    shutil.copytree(spec().path(elsewhere), spec().path(root), dirs_exist_ok=True)
    assert lakehouse.table_exists(spark, spec(), root)
