"""A daily run as EMR runs it, on EMR's Spark line: ``make test-spark40`` (pyspark 4.0.0 + delta-spark 4.0.0,
the pair of emr-spark-8.0.0 and Databricks Runtime 17.3 LTS).

spark-submit.sh with that pyspark's spark-submit on a local-cluster master (separate executor JVMs), the
archive `make package` builds as the Python of the driver (unpacked, as EMR Serverless and a cluster-mode
driver unpack it) and of the executors' workers (shipped with --archives), never a development venv:
``daily --since-last-run`` over the embedded registry simulator, discovery -> bronze -> silver -> gold,
with the archive's Delta 4.0.0 Python package (no ``delta.exceptions``). Bronze's and silver's
mapInArrow refuse to run without pandas in that environment. On the main leg's pyspark it is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pyspark
import pytest

from test_packaging import NOISE, REPO, package  # noqa: F401  (package: the fixture running `make package`)

pytestmark = pytest.mark.skipif(not pyspark.__version__.startswith("4.0."), reason="EMR's Spark line: runs in make test-spark40")
PYSPARK_WORK = Path(pyspark.__file__).parent / "work"  # where local-cluster workers make their application folders


@pytest.fixture()
def new_worker_dirs() -> Iterator[set[Path]]:
    """Application folders that local-cluster workers create under pyspark's own work/ (removed after)."""
    before = set(PYSPARK_WORK.glob("app-*"))
    yield before
    for path in set(PYSPARK_WORK.glob("app-*")) - before:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def test_a_daily_run_on_emrs_spark_line_with_the_packed_environment_as_every_python(package, spark, tmp_path, new_worker_dirs):
    unpacked = tmp_path / "driver-env"
    unpacked.mkdir()
    archive = Path(package["build"]) / "ttb_spark_env.tar.gz"
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(unpacked)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTB_")}
    # this leg's pyspark submits (its Spark and its Delta jar, resolved by this interpreter's delta-spark)
    env |= {"PYTHON": sys.executable, "SPARK_SUBMIT": str(Path(sys.executable).parent / "spark-submit"),
            "TTB_SIMULATOR_SCALE": "0.01", "TTB_PYTHON_ENV": str(archive),
            "TTB_PARTITION_START_DATE": "2024-03-04", "TTB_PARTITION_END_DATE": "2024-03-04"}
    small = [f"--conf=spark.{k}=2" for k in ("sql.shuffle.partitions", "default.parallelism", "databricks.delta.snapshotPartitions")]
    small.append("--conf=spark.executor.extraJavaOptions=-XX:TieredStopAtLevel=1")  # a short-lived JVM: C1 is cheaper
    driver = f"--conf=spark.pyspark.driver.python={unpacked / 'bin' / 'python'}"
    lake = tmp_path / "lake"
    argv = [str(REPO / "spark-submit.sh"), "--master", "local-cluster[1,2,1024]", *small, driver, "daily", "--env", "test",
            "--since-last-run", "--simulator-today", "2024-03-04", "--raw-root", str(tmp_path / "raw"), "--lakehouse-root", str(lake)]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2400)
    console = done.stdout + done.stderr  # spark-submit's PythonRunner merges the job's stderr into its stdout
    assert done.returncode == 0, console[-4000:]
    assert "daily: Spark 4.0.0, classic session" in console and "ttb_spark daily: SUCCEEDED" in done.stdout
    for stage in ("discover", "bronze", "silver", "gold"):
        assert re.search(rf"\] {stage}( \[[^\]]*\])?: done in ", console), stage
    for noise in NOISE:
        assert noise not in console, noise

    pages = spark.read.format("delta").load(str(lake / "bronze" / "pages"))
    details = spark.read.format("delta").load(str(lake / "silver" / "cola_details"))
    gold = spark.read.format("delta").load(str(lake / "gold" / "ttb_consolidated"))
    assert pages.count() == len(list((tmp_path / "raw" / "pages").rglob("*.html"))) > 0
    assert gold.count() == details.count() > 0
    # The executors ran in their own folders, each with the packed environment unpacked.
    unpacked_by_workers = [p for p in PYSPARK_WORK.glob("app-*/*/environment/bin/python") if p.parents[3] not in new_worker_dirs]
    assert unpacked_by_workers
