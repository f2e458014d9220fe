"""The one place a SparkSession is obtained.

On Databricks, EMR and under spark-submit a session already exists and is returned as is.
Otherwise a local session is built with Delta (jar through ``configure_spark_with_delta_pip``,
i.e. Ivy from Maven Central) and, for an ``s3a://`` lakehouse, the S3A connector.
"""

from __future__ import annotations

import os
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
    if settings.pipeline.lakehouse_root.startswith("s3a://"):
        conf |= s3a_conf(settings)
    return conf


def get_spark(settings: Settings, app_name: str = "ttb_spark") -> SparkSession:
    """Return the active session, or build a local Delta-enabled one from ``settings``."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Launched by spark-submit / EMR / Databricks: the JVM and its conf (master, packages) exist.
        return SparkSession.builder.appName(app_name).getOrCreate()
    from delta import configure_spark_with_delta_pip

    # RDD and UDF workers start PYSPARK_PYTHON (pyspark reads only the variable, not
    # spark.pyspark.python): default it to this interpreter so workers see the venv's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(settings.spark.master)
    for key, value in local_conf(settings).items():
        builder = builder.config(key, value)
    extra = [HADOOP_AWS_PACKAGE] if settings.pipeline.lakehouse_root.startswith("s3a://") else []
    spark = configure_spark_with_delta_pip(builder, extra_packages=extra).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
