"""Shared fixtures: one Delta-enabled SparkSession for the whole run, a loopback S3 (moto server),
and settings for the test profile pointed at per-test folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from ttb_spark.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# Modules whose scenarios take minutes, slowest first (--durations of a fresh-clone run, docs/performance.md):
# `make test` deals modules to its workers in collection order (--no-loadscope-reorder), so these start
# first and no worker begins one while the other has only seconds of work left. pytest-xdist's default
# order (modules with most tests first) dealt these, which have few tests each, last.
SLOW_MODULES = ("test_emr_run.py", "test_daily.py", "test_e2e.py", "test_incremental.py", "test_concurrency.py", "test_packaging.py",
                "test_publish.py", "test_discover.py", "test_gold_build.py")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_MODULES)))  # stable: the rest keep their order


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Test-profile settings with raw store and lakehouse under ``tmp_path``; ``sections`` override."""
    pipeline = {"raw_root": str(tmp_path / "raw"), "lakehouse_root": str(tmp_path / "lakehouse")}
    overrides = {name: dict(values) for name, values in sections.items()}
    overrides["pipeline"] = pipeline | overrides.get("pipeline", {})
    return load_settings("test", overrides)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's one SparkSession: local[2], 1 shuffle partition, UI off, UTC, Delta; managed
    (catalog-mode) tables in a temporary warehouse."""
    from ttb_spark.spark import get_spark

    warehouse = str(tmp_path_factory.mktemp("warehouse"))
    # long-lived: its JVM keeps the C2 compiler, whatever the job processes below are given
    session = get_spark(load_settings("test", {"spark": {"warehouse_dir": warehouse, "driver_java_options": THROUGHPUT_GC}}),
                        app_name="ttb_spark-tests")
    yield session
    session.stop()


# The suite is CPU-bound on a 2-core machine. Its long-lived session collects garbage with the parallel
# collector instead of G1: three warm daily runs in one session (days 1-3 of bench.stage_bench's schedule, quiet
# machine) took 157 s of JVM CPU and 125 s wall instead of 181 s and 140 s (docs/performance.md).
THROUGHPUT_GC = "-XX:+UseParallelGC"
# The suite's job processes (``python -m ttb_spark ...``) each run a stage or two on a cold JVM and exit:
# compiling with C1 only, without flushing its code, spends ~27 % less CPU on such a run (settings.SparkSettings.
# driver_java_options). They keep G1: with the parallel collector, which frees the code of unloaded classes only
# in a full collection, one ran out of code cache (no flushing) in a silver stage. C1 alone reserves only 48 MB
# of code cache (240 MB with C2; -XX:+PrintFlagsFinal) and a daily run over 2,273 COLAs filled 71.6 MB of it
# (-XX:+PrintCodeCache): with 48 MB a concurrent pipeline process stopped compiling ("C1 initialization failed")
# and failed linking a method handle. So the size C2 would have.
JOB_PROCESS_JVM = "-XX:TieredStopAtLevel=1 -XX:-UseCodeCacheFlushing -XX:ReservedCodeCacheSize=240m"


@pytest.fixture(scope="session", autouse=True)
def _short_lived_job_processes(spark: Any) -> Iterator[None]:
    """TTB_DRIVER_JAVA_OPTIONS for the job processes tests start (after the suite's own session is up)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTB_DRIVER_JAVA_OPTIONS", os.environ.get("TTB_DRIVER_JAVA_OPTIONS", JOB_PROCESS_JVM))
        yield


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (random port); yields its endpoint URL.

    Credentials are dummies set in the environment, as boto3 and S3A would read real ones.
    """
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def s3_bucket(s3_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on the loopback S3 server; yields its name."""
    import boto3

    name = "ttb-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture()
def s3_executor_env(spark: Any, s3_server: str) -> Iterator[None]:
    """The moto credentials in the executors' environment too (Python workers inherit the JVM's
    environment, which predates the S3 fixture); on a cluster they come from the instance/IAM role."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    env = spark.sparkContext.environment
    saved = {name: env.get(name) for name in names}
    env.update({name: os.environ[name] for name in names})
    yield
    for name, value in saved.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
