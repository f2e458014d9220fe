"""The one place a SparkSession is obtained.

On Databricks, EMR and under spark-submit a session already exists and is returned as is.
Otherwise a local session is built with Delta (jar through ``configure_spark_with_delta_pip``,
i.e. Ivy from Maven Central) and, for an ``s3a://`` lakehouse, the S3A connector.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

from ttb_spark.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Must match the Hadoop client bundled with pyspark (hadoop-client-api-3.4.2).
HADOOP_AWS_PACKAGE = "org.apache.hadoop:hadoop-aws:3.4.2"


def delta_package() -> str:
    """The Delta jar matching the installed pyspark/delta-spark pair."""
    import pyspark
    from importlib.metadata import version

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


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


def local_conf(settings: Settings) -> dict[str, str]:
    """Configuration of a locally built session."""
    s = settings.spark
    conf = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.default.parallelism": str(s.shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": str(s.shuffle_partitions),
        "spark.ui.enabled": str(s.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": s.driver_memory,
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
    }
    if s.warehouse_dir:
        conf["spark.sql.warehouse.dir"] = s.warehouse_dir
    if settings.pipeline.lakehouse_root.startswith("s3a://"):
        conf |= s3a_conf(settings)
    return conf


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
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    # RDD and UDF workers start PYSPARK_PYTHON (pyspark reads only the variable, not
    # spark.pyspark.python): default it to this interpreter so workers see the venv's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(settings.spark.master)
    for key, value in (local_conf(settings) | (conf or {})).items():
        builder = builder.config(key, value)
    extra = [HADOOP_AWS_PACKAGE] if settings.pipeline.lakehouse_root.startswith("s3a://") else []
    return configure_spark_with_delta_pip(builder, extra_packages=extra).getOrCreate()


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
