"""The one place a SparkSession is obtained, and the Spark settings a submission needs.

On Databricks, EMR and under spark-submit a session already exists and is returned as is.
Otherwise a local session is built with the Delta jar (and, for a lakehouse on S3, hadoop-aws)
resolved by Ivy from Maven Central, S3 mapped to S3A, and the packaged log4j2 configuration.
``spark-submit.sh`` takes the same jars and settings from :func:`submit_options`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ttb_spark.files import write_atomically
from ttb_spark.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
S3A_FILESYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"
# Open-source Delta's multi-writer log store for S3 (commits made atomic by a DynamoDB table).
DYNAMODB_LOG_STORE = "io.delta.storage.S3DynamoDBLogStore"
# Spark's own Ivy home since Spark 4 (where `--packages` caches), so both share one download.
IVY_HOME = Path.home() / ".ivy2.5.2"
# Where resolve_jars records each resolution's classpath, so that a later session skips Ivy (~2 s a start).
CLASSPATHS = IVY_HOME / "ttb_spark-classpaths"


def log4j2_config() -> Path:
    """The packaged log4j2 configuration: warnings on stderr without the known-harmless ones."""
    return Path(str(resources.files("ttb_spark") / "log4j2.properties"))


def console_java_options(log_level: str) -> str:
    """JVM options giving a locally launched driver the packaged logging configuration at ``log_level``
    (``TTB_LOG_LEVEL``): below warn, the harmless loggers follow that level and the warning filter lets all
    through (the configuration's ``${sys:ttb.log.*}`` lookups; their defaults are warn's)."""
    options = [f"-Dlog4j2.configurationFile={log4j2_config().as_uri()}"]
    if log_level != "warn":
        options += [f"-Dttb.log.level={log_level}", f"-Dttb.log.harmless={log_level}", "-Dttb.log.filtered=NEUTRAL"]
    return " ".join(options)


def delta_package() -> str:
    """Maven coordinates of the Delta jar matching the installed pyspark/delta-spark pair.

    Taken from delta-spark's own ``configure_spark_with_delta_pip`` (its artifact naming changed
    from ``delta-spark_2.13`` in Delta 4.0 to ``delta-spark_<spark>_2.13`` later).
    """
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    return configure_spark_with_delta_pip(SparkSession.Builder())._options["spark.jars.packages"]


def hadoop_aws_package() -> str:
    """hadoop-aws at the version of the Hadoop client bundled with the installed pyspark."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    client = next(jars.glob("hadoop-client-api-*.jar"))
    return f"org.apache.hadoop:hadoop-aws:{client.stem.removeprefix('hadoop-client-api-')}"


def lakehouse_on_s3(settings: Settings) -> bool:
    return settings.pipeline.lakehouse_root.startswith(("s3://", "s3a://"))


def multi_writer_s3(settings: Settings) -> bool:
    """Whether Delta commits to the S3 lakehouse go through the DynamoDB log store (several writers)."""
    return lakehouse_on_s3(settings) and settings.concurrency.delta_dynamodb_table is not None


def dynamodb_log_store_package() -> str:
    """io.delta:delta-storage-s3-dynamodb at the version of the Delta jar in use."""
    return f"io.delta:delta-storage-s3-dynamodb:{delta_package().rsplit(':', 1)[1]}"


def packages(settings: Settings) -> list[str]:
    """The Maven packages a session outside Databricks/EMR needs for these settings."""
    return [
        delta_package(),
        *([hadoop_aws_package()] if lakehouse_on_s3(settings) else []),
        *([dynamodb_log_store_package()] if multi_writer_s3(settings) else []),
    ]


def resolve_jars(coordinates: Sequence[str]) -> list[str]:
    """Local paths of the jars of ``coordinates`` (group:artifact:version) and their dependencies.

    What ``--packages`` does — Ivy, Maven Central, Spark's Ivy cache, Spark and Scala excluded —
    but without printing Ivy's resolution report: its output is shown only when resolution fails.
    A resolution's classpath is recorded (:data:`CLASSPATHS`, one file per Ivy module: the coordinates and
    exclusions) and reused while every jar it names is still in the cache: released Maven versions do not change.
    """
    import pyspark

    dependencies = "".join(
        f'<dependency org="{group}" name="{artifact}" rev="{version}" conf="default->default"/>'
        for group, artifact, version in (c.split(":") for c in coordinates)
    )
    module = (
        '<ivy-module version="2.0"><info organisation="ttb_spark" module="session-jars"/>'
        '<configurations><conf name="default"/></configurations>'
        f'<dependencies>{dependencies}<exclude org="org.apache.spark"/>'
        '<exclude org="org.scala-lang" module="scala-library"/></dependencies></ivy-module>'
    )
    record = CLASSPATHS / f"{hashlib.sha256(module.encode()).hexdigest()[:16]}.txt"  # per module: coordinates and exclusions
    if record.is_file():
        recorded = record.read_text().splitlines()
        if recorded and all(Path(p).is_file() for p in recorded):
            return recorded
    ivy_jar = next((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"))
    java = str(Path(os.environ["JAVA_HOME"], "bin", "java")) if os.environ.get("JAVA_HOME") else "java"
    with tempfile.TemporaryDirectory(prefix="ttb-ivy-") as tmp:
        (Path(tmp) / "ivy.xml").write_text(module)
        classpath = Path(tmp) / "classpath"
        command = [java, "-cp", str(ivy_jar), "org.apache.ivy.Main", "-ivy", str(Path(tmp) / "ivy.xml"),
                   "-confs", "default", "-cache", str(IVY_HOME / "cache"), "-cachepath", str(classpath), "-warn"]
        # Ivy writes its resolution report to one file of the shared cache: one resolution at a time
        # on this machine, or two jobs starting together corrupt each other's report.
        IVY_HOME.mkdir(parents=True, exist_ok=True)
        with (IVY_HOME / "ttb_spark-resolve.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not classpath.is_file():
            raise RuntimeError(f"could not resolve {','.join(coordinates)} from Maven Central:\n{done.stdout}{done.stderr}")
        jars = [p for p in classpath.read_text().strip().split(os.pathsep) if p]
    CLASSPATHS.mkdir(parents=True, exist_ok=True)
    write_atomically(record, "\n".join(jars).encode())  # whole or absent, whichever session reads it
    return jars


def s3a_conf(settings: Settings) -> dict[str, str]:
    """S3A settings for an s3a:// lakehouse: endpoint, path-style access, credentials provider chain."""
    p = settings.pipeline
    conf = {
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
        "spark.hadoop.fs.s3a.endpoint.region": p.aws_region,
    }
    if p.s3_endpoint_url:
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": p.s3_endpoint_url,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(p.s3_endpoint_url.startswith("https")).lower(),
        }
    return conf


def storage_conf(settings: Settings) -> dict[str, str]:
    """Hadoop settings for a lakehouse on S3 outside EMR/Databricks (which serve s3:// themselves).

    ``s3://`` — the production profile's scheme — is served by S3A like ``s3a://``, with the
    endpoint and region settings; other roots need nothing.
    """
    if not lakehouse_on_s3(settings):
        return {}
    return {
        "spark.hadoop.fs.s3.impl": S3A_FILESYSTEM,
        "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
        **s3a_conf(settings),
        **log_store_conf(settings),
    }


def log_store_conf(settings: Settings) -> dict[str, str]:
    """Delta's DynamoDB log store for s3:// and s3a:// tables when ``concurrency.delta_dynamodb_table``
    is set (keys of io.delta.storage.S3DynamoDBLogStore); none otherwise."""
    if not multi_writer_s3(settings):
        return {}
    prefix = f"spark.{DYNAMODB_LOG_STORE}"
    return {
        "spark.delta.logStore.s3.impl": DYNAMODB_LOG_STORE,
        "spark.delta.logStore.s3a.impl": DYNAMODB_LOG_STORE,
        f"{prefix}.ddb.tableName": str(settings.concurrency.delta_dynamodb_table),
        f"{prefix}.ddb.region": settings.pipeline.aws_region,
    }


# A cluster's own Delta, as Amazon documents it for EMR 7.0 and later (delta-core.jar renamed delta-spark.jar)
CLUSTER_DELTA_JARS = ("delta-spark.jar", "delta-storage.jar")
CLUSTER_DELTA_DYNAMODB_JAR = "delta-storage-s3-dynamodb.jar"


def submit_options(settings: Settings, cluster_delta: Path | None = None, local_driver: bool = False) -> list[str]:
    """spark-submit options for a job with these settings: the jars, the S3 settings and whether Spark's console
    bar shows (``TTB_CONSOLE_PROGRESS``). With ``cluster_delta``
    (the folder of a cluster's own Delta jars) those jars and Delta's log store settings only: the cluster's
    Spark needs its own Delta, and serves ``s3://`` itself. ``local_driver`` (client mode: the driver runs on
    the submitting machine) adds its console's logging (:func:`console_java_options`)."""
    if cluster_delta is None:
        jars, conf = resolve_jars(packages(settings)), storage_conf(settings)
    else:
        names = [*CLUSTER_DELTA_JARS, *([CLUSTER_DELTA_DYNAMODB_JAR] if multi_writer_s3(settings) else [])]
        missing = [n for n in names if not (cluster_delta / n).is_file()]
        if missing:
            from ttb_spark.settings import SettingsError

            raise SettingsError(f"the cluster's Delta at {cluster_delta} has no {', '.join(missing)} (TTB_CLUSTER_DELTA_DIR)")
        jars, conf = [str(cluster_delta / n) for n in names], log_store_conf(settings)
    options = ["--jars", ",".join(jars)]
    for key, value in (conf | {"spark.ui.showConsoleProgress": str(settings.spark.console_progress).lower()}).items():
        options += ["--conf", f"{key}={value}"]
    if local_driver:
        options += ["--driver-java-options", console_java_options(settings.spark.log_level)]
    return options


# With the UI off nothing reads the driver's status store, yet Spark keeps 1,000 SQL executions (plan
# graphs, metrics) and 1,000 jobs and stages in it by default. Three gold runs (~1,000 queries) filled
# that and left 1.3 GB of a 2g driver's heap live after a full GC (0.7 GB with these limits); an hour
# of them ran the driver out of memory. Keep a little.
UI_OFF_RETENTION = {
    "spark.sql.ui.retainedExecutions": "50",
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "10000",
}


# Spark 4.1 keeps each sort's UnsafeExternalRowSorter in a ThreadLocal of SortExec (SPARK-52609)
# that nothing clears, and the sorter's iterator still references its last memory page: every pooled
# task thread keeps one page per stale sort. Pages default to execution memory/cores/16 (32 MB on a 2g
# local[2] driver): 11 daily runs kept ~1 GB of them live. With 1 MB pages the heap live after a full
# GC over test_publish's three gold runs fell from 0.7 to 0.4 GB.
LOCAL_PAGE_SIZE = "1m"


# Spark's own switches for evaluating without generated code (its test suites run both ways): no
# whole-stage code generation, and interpreted projections and predicates instead of Janino-compiled ones.
INTERPRETED = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}


def last_sql_execution(spark: SparkSession) -> int | None:
    """The ID of the newest SQL execution the driver has recorded (-1: none yet), from the session's SQL status
    store (execution IDs only grow, so two readings give the executions in between). None where there is no
    such store to read: a Spark Connect session, or a runtime that does not expose it."""
    try:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()  # the newest executions recorded
        store = spark._jsparkSession.sharedState().statusStore()
        count = int(store.executionsCount())
        return int(store.executionsList(count - 1, 1).head().executionId()) if count else -1
    except Exception:  # no JVM session behind this one (Spark Connect), or its internals differ
        return None


def local_conf(settings: Settings) -> dict[str, str]:
    """Configuration of a locally built session."""
    s = settings.spark
    conf = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.default.parallelism": str(s.shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": str(s.shuffle_partitions),
        # VACUUM lists a table's files in this many tasks (Spark's default, 10,000, is for clusters)
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(s.shuffle_partitions),
        "spark.ui.enabled": str(s.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": str(s.console_progress).lower(),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": s.driver_memory,
        "spark.driver.extraJavaOptions": f"{console_java_options(s.log_level)} {s.driver_java_options}".strip(),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.buffer.pageSize": LOCAL_PAGE_SIZE,
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.python.sql.dataFrameDebugging.enabled": str(s.dataframe_debugging).lower(),
    }
    if not s.ui_enabled:
        conf |= UI_OFF_RETENTION
    if not s.codegen:
        conf |= INTERPRETED
    if s.warehouse_dir:
        conf["spark.sql.warehouse.dir"] = s.warehouse_dir
    return conf | storage_conf(settings)


def get_spark(settings: Settings, app_name: str = "ttb_spark") -> SparkSession:
    """Return the active session, or build a local Delta-enabled one from ``settings``.

    With ``spark.remote`` set, a Spark Connect session instead: to ``sc://...`` as given, or to a
    Connect server started here for ``local[N]`` (with Delta, on a free loopback port).
    """
    from pyspark.sql import SparkSession

    if settings.spark.remote:
        return connect_session(settings, app_name)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Launched by spark-submit / EMR / Databricks: the JVM and its conf (master, packages) exist.
        return SparkSession.builder.appName(app_name).getOrCreate()
    spark = _local_session(settings, app_name)
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _local_session(settings: Settings, app_name: str, conf: dict[str, str] | None = None) -> SparkSession:
    """A classic local session with Delta, the packaged log4j2 configuration and ``conf`` on top."""
    from pyspark.sql import SparkSession

    # RDD and UDF workers start PYSPARK_PYTHON (pyspark reads only the variable, not
    # spark.pyspark.python): default it to this interpreter so workers see the venv's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(settings.spark.master)
    for key, value in (local_conf(settings) | {"spark.jars": ",".join(resolve_jars(packages(settings)))} | (conf or {})).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def connect_session(settings: Settings, app_name: str = "ttb_spark") -> SparkSession:
    """A Spark Connect session (DataFrame API only: no SparkContext, no RDDs).

    ``sc://...``: the server named (Databricks Connect, a Connect server on a cluster). ``local[N]``:
    a local server with this package's Delta configuration, started in this process (its classic
    session serves the Connect clients) on a free loopback port.
    """
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    remote = settings.spark.remote or ""
    active = ConnectSession.getActiveSession()
    if active is not None:
        return active
    if not remote.startswith("local"):
        return SparkSession.builder.remote(remote).getOrCreate()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _local_session(
        _with_master(settings, remote), app_name,
        {
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
        },
    )  # fmt: skip
    server.sparkContext.setLogLevel("WARN")
    # What pyspark's own builder.remote() sets: pyspark.sql.functions and Column build Connect
    # expressions, not JVM ones of the server's classic session living in this process.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    return ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()


def _with_master(settings: Settings, master: str) -> Settings:
    """``settings`` with ``spark.master`` set to ``master``."""
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"master": master})})
