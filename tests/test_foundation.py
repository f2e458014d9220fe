"""Foundation: settings validation, session factory reuse, a Delta MERGE round trip."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import LongType, StringType, StructType

from ttb_spark import lakehouse
from ttb_spark.settings import SettingsError, load_settings
from ttb_spark.spark import get_spark


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("TTB_PARTITION_END_DATE", "2023-12-31", "TTB_PARTITION_END_DATE"),
        ("TTB_RECEIPT_METHODS", "001,009", "TTB_RECEIPT_METHODS"),
        ("TTB_DATA_TYPES", "cola-detail,label-image", "TTB_DATA_TYPES"),
        ("TTB_REQUEST_DELAY_SECONDS", "-0.5", "TTB_REQUEST_DELAY_SECONDS"),
        ("TTB_LAKEHOUSE_ROOT", "s4://bucket with space", "TTB_LAKEHOUSE_ROOT"),
        ("TTB_REGISTRY_BASE_URL", "ftp://example", "TTB_REGISTRY_BASE_URL"),
        ("TTB_ENVIRONMENT", "staging", "TTB_ENVIRONMENT"),
        ("TTB_CATALOG", "main; DROP TABLE x", "TTB_CATALOG"),
        ("TTB_SCHEMA_PREFIX", "ttb-", "TTB_SCHEMA_PREFIX"),
        ("TTB_SPARK_REMOTE", "http://127.0.0.1:15002", "TTB_SPARK_REMOTE"),
        ("TTB_FRESHNESS_BLOCK_DAYS", "2", "TTB_FRESHNESS_BLOCK_DAYS"),  # below the warn threshold (4)
        ("TTB_DRIFT_RATIO", "0.5", "TTB_DRIFT_RATIO"),
        ("TTB_DRIVER_JAVA_OPTIONS", "-Xss4m;touch /tmp/x", "TTB_DRIVER_JAVA_OPTIONS"),
    ],
)
def test_invalid_setting_names_the_setting(monkeypatch, env, value, named):
    monkeypatch.setenv("TTB_PARTITION_START_DATE", "2024-01-02")
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_precedence_flag_over_env_over_profile(monkeypatch):
    assert load_settings("test").spark.master == "local[2]"  # from conf/test.toml
    monkeypatch.setenv("TTB_RECEIPT_METHODS", "001,002")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    s = load_settings("test")
    assert s.pipeline.receipt_methods == ["001", "002"] and s.pipeline.aws_region == "eu-west-1"
    s = load_settings("test", {"pipeline": {"receipt_methods": "003"}})
    assert s.pipeline.receipt_methods == ["003"]


def test_fingerprint_changes_with_a_setting():
    a = load_settings("test")
    b = load_settings("test", {"extraction": {"max_retries": 1}})
    assert a.fingerprint() == load_settings("test").fingerprint() != b.fingerprint()


def test_fingerprint_with_a_range_is_the_settings_with_that_range():
    """A run's fingerprint covers the range it resolved, as if the settings had asked for it."""
    asked = load_settings("test", {"pipeline": {"partition_start_date": date(2024, 3, 1)}})
    resolved = load_settings("test", {"pipeline": {"partition_start_date": date(2024, 2, 17), "partition_end_date": date(2024, 3, 1)}})
    assert asked.fingerprint(date(2024, 2, 17), date(2024, 3, 1)) == resolved.fingerprint() != asked.fingerprint()
    assert asked.fingerprint(date(2024, 2, 17), date(2024, 3, 1)) != asked.fingerprint(date(2024, 2, 18), date(2024, 3, 1))


def test_bad_cli_argument_exits_2_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ttb_spark", "bronze", "--start", "2024-01-05", "--end", "2024-01-01",
         "--lakehouse-root", str(tmp_path / "lh")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "TTB_PARTITION_END_DATE" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lh").exists()


def test_session_factory_returns_the_active_session(spark, settings):
    assert get_spark(settings) is spark


def test_a_sessions_jars_are_resolved_by_ivy_once_then_read_from_the_recorded_classpath(settings, tmp_path, monkeypatch):
    from ttb_spark import spark as sessions

    monkeypatch.setattr(sessions, "CLASSPATHS", tmp_path)
    coordinates = sessions.packages(settings)
    jars = sessions.resolve_jars(coordinates)  # Ivy, from the warm cache
    assert jars and all(j.endswith(".jar") for j in jars)
    (record,) = tmp_path.glob("*.txt")
    with monkeypatch.context() as mp:
        mp.setenv("JAVA_HOME", str(tmp_path / "no-java"))  # Ivy cannot run now
        assert sessions.resolve_jars(coordinates) == jars
        record.write_text("\n".join([*jars, str(tmp_path / "gone.jar")]))  # a jar the record names left the cache
        with pytest.raises(FileNotFoundError):
            sessions.resolve_jars(coordinates)  # resolved again, by Ivy
    assert sessions.resolve_jars(coordinates) == jars and record.read_text().splitlines() == jars


def test_driver_java_options_follow_the_logging_configuration_and_the_suites_session_keeps_c2(spark):
    from ttb_spark.spark import local_conf

    given = load_settings("test", {"spark": {"driver_java_options": " -XX:TieredStopAtLevel=1   -XX:-UseCodeCacheFlushing "}})
    options = local_conf(given)["spark.driver.extraJavaOptions"].split(" ")
    assert options[0].startswith("-Dlog4j2.configurationFile=file:")
    assert options[1:] == ["-XX:TieredStopAtLevel=1", "-XX:-UseCodeCacheFlushing"]
    assert local_conf(load_settings("test", {"spark": {"driver_java_options": ""}}))["spark.driver.extraJavaOptions"] == options[0]
    # conftest gives the job processes C1 only; this long-lived session was built without it
    launched = list(spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert options[0] in launched and not any("TieredStopAtLevel" in a for a in launched)
    assert "-XX:+UseParallelGC" in launched  # conftest.THROUGHPUT_GC: less CPU than G1 for the suite's session


def test_the_test_profile_records_no_python_call_site_per_column_call(spark):
    from pyspark.errors.utils import is_debugging_enabled

    from ttb_spark.spark import local_conf

    key = "spark.python.sql.dataFrameDebugging.enabled"
    assert local_conf(load_settings("development"))[key] == "true" and local_conf(load_settings("test"))[key] == "false"
    assert spark.conf.get(key) == "false" and not is_debugging_enabled()


def test_a_long_local_session_keeps_little_in_the_driver_heap(spark):
    """Long local runs (a backfill, this suite) would otherwise keep 1,000 query plans in the driver's heap,
    and a 32 MB memory page per finished sort on each task thread (Spark 4.1's SortExec ThreadLocal)."""
    for n in range(120):
        spark.range(n + 1).count()
    jvm = spark.sparkContext._jsc.sc()
    jvm.listenerBus().waitUntilEmpty()
    assert spark._jsparkSession.sharedState().statusStore().executionsCount() <= 75
    assert jvm.env().memoryManager().pageSizeBytes() <= 2**20


def test_merge_round_trip_inserts_updates_and_is_idempotent(spark, settings):
    spec = lakehouse.TableSpec(
        name="test.merge_round_trip",
        schema=StructType([
            lakehouse.column("id", LongType(), "key"),
            lakehouse.column("name", StringType(), "a value"),
            lakehouse.column("row_hash", StringType(), "content hash"),
        ]),
        comment="round trip",
        keys=("id",),
    )
    root = settings.pipeline.lakehouse_root
    first = spark.createDataFrame([(1, "a"), (2, "b")], "id long, name string")
    lakehouse.merge_upsert(spark, first, spec, root)
    second = spark.createDataFrame([(2, "B"), (3, "c")], "id long, name string")
    counts = lakehouse.merge_upsert(spark, second, spec, root)
    assert counts == {"inserted": 1, "updated": 1, "deleted": 0}
    expected = spark.createDataFrame([(1, "a"), (2, "B"), (3, "c")], "id long, name string")
    actual = lakehouse.read_table(spark, spec, root).select("id", "name")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    again = lakehouse.merge_upsert(spark, second, spec, root)
    assert again == {"inserted": 0, "updated": 0, "deleted": 0}
    comments = {f.name: f.metadata.get("comment") for f in lakehouse.read_table(spark, spec, root).schema.fields}
    assert comments["name"] == "a value"


def test_variable_with_its_own_name_overrides_the_profile(monkeypatch):
    """TTB_SPARK_MASTER and AWS_REGION are not TTB_<field>: they still win over the profile and defaults."""
    monkeypatch.setenv("TTB_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    s = load_settings("test", {"pipeline": {"aws_region": None}})
    assert s.spark.master == "local[1]" and s.pipeline.aws_region == "eu-central-1"
    assert load_settings("test", {"pipeline": {"aws_region": "ap-south-1"}}).pipeline.aws_region == "ap-south-1"


def test_relative_local_roots_become_absolute(monkeypatch, tmp_path):
    """Delta refuses a relative table location, so `data/lakehouse` is resolved against the working folder."""
    monkeypatch.chdir(tmp_path)
    s = load_settings("development")
    assert s.pipeline.lakehouse_root == str(tmp_path / "data" / "lakehouse")
    assert s.pipeline.raw_root == str(tmp_path / "data" / "raw")
    assert load_settings("test", {"pipeline": {"lakehouse_root": "s3a://b/lh"}}).pipeline.lakehouse_root == "s3a://b/lh"
