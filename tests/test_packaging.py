"""What ships and how it is submitted: the wheel carries the profiles and the logging
configuration, `make package` builds the packed environment the EMR files name, spark-submit.sh
turns its arguments into a submission a cluster can run, and a local run's console is quiet. A real
spark-submit with the packed environment on a local-cluster master, as EMR runs a job, is
tests/test_emr_run.py (on EMR's Spark line)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from ttb_spark import packed_env
from ttb_spark.settings import load_settings
from ttb_spark.spark import S3A_FILESYSTEM, storage_conf

REPO = Path(__file__).resolve().parents[1]
# What a quiet console must not show: Ivy's resolution report and WARN dumps of query plans.
NOISE = (":: resolution report ::", ":: loading settings ::", "found io.delta#", "output in logical plan",
         "Truncated the string representation of a plan", "Using Spark's default log4j profile",
         "Could not validate number of records", "[Stage ", "Broadcasting large task binary", "Converting duplicated key")


# The OS's packaged Python, where Amazon Linux 2023's python3.11 package puts it: the interpreter a packed
# environment may link to (this machine's Debian 12 has it at the same path).
SYSTEM_PYTHON = Path("/usr/bin/python3.11")


def _make_package(out: Path, python: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "package", f"PACKAGE_PYTHON={python}", f"DIST={out / 'dist'}",
                           f"PKG={out / 'build'}"], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """`make package` into a temporary folder: the wheel, the environment, the packed archive."""
    assert SYSTEM_PYTHON.is_file(), f"{SYSTEM_PYTHON}: the packed environment needs the OS's packaged Python 3.11"
    out = tmp_path_factory.mktemp("package")
    done = _make_package(out, SYSTEM_PYTHON)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"dist": out / "dist", "build": out / "build", "stdout": done.stdout}


def test_wheel_carries_the_profiles_of_conf_and_the_logging_configuration(package):
    (wheel,) = Path(package["dist"]).glob("ttb_spark-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for profile in sorted((REPO / "conf").glob("*.toml")):
            assert zf.read(f"ttb_spark/conf/{profile.name}") == profile.read_bytes(), profile.name
        assert zf.read("ttb_spark/log4j2.properties") == (REPO / "ttb_spark" / "log4j2.properties").read_bytes()


def test_installed_wheel_loads_the_production_profile_and_conf_dir_still_overrides(package, tmp_path):
    python = Path(package["build"]) / "pyenv" / "bin" / "python"
    code = ("from ttb_spark.settings import load_settings; e = load_settings('production').extraction; "
            "print(e.max_requests_per_second, e.backoff_initial_seconds, e.backoff_max_seconds)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTB_")}
    out = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    production = tomllib.loads((REPO / "conf" / "production.toml").read_text())["extraction"]
    expected = (production["max_requests_per_second"], production["backoff_initial_seconds"], production["backoff_max_seconds"])
    assert out.stdout.split() == [str(v) for v in expected] == ["1.0", "2.0", "120.0"]
    (tmp_path / "production.toml").write_text("[extraction]\nmax_requests_per_second = 0.25\n")
    out = subprocess.run([python, "-c", code], cwd=tmp_path, env={**env, "TTB_CONF_DIR": str(tmp_path)},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "0.25"


def test_package_has_deltas_python_api_and_prints_the_uploads(package):
    site = next((Path(package["build"]) / "pyenv" / "lib").glob("python3.*/site-packages"))
    assert (site / "delta" / "tables.py").is_file(), "import delta needs Delta's Python files in the environment"
    assert not (site / "pyspark").exists(), "the cluster's own pyspark must not be shadowed"
    archive = Path(package["build"]) / "ttb_spark_env.tar.gz"
    assert archive.is_file()
    assert re.search(rf"packed environment: interpreter {SYSTEM_PYTHON}, [1-9]\d* native libraries need glibc <= 2\.34", package["stdout"])
    assert f"aws s3 cp {archive} s3://ttb-cola-lakehouse/code/ttb_spark_env.tar.gz" in package["stdout"]
    assert "aws s3 cp --recursive jobs/ s3://ttb-cola-lakehouse/code/jobs/" in package["stdout"]


def test_package_refuses_an_interpreter_only_this_machine_has(tmp_path):
    # An interpreter outside the OS's own folder (as pyenv, conda or a home folder put one): the venv links to it.
    private = tmp_path / "opt" / "bin" / SYSTEM_PYTHON.name
    private.parent.mkdir(parents=True)
    shutil.copy2(SYSTEM_PYTHON, private)
    done = _make_package(tmp_path, private)
    assert done.returncode != 0
    assert f"pyenv/bin/python resolves to {private}, which only this machine has" in done.stderr
    assert "PACKAGE_PYTHON=/usr/bin/python3.11" in done.stderr
    assert not (tmp_path / "build" / "ttb_spark_env.tar.gz").exists()


def test_a_native_library_needing_a_newer_glibc_than_the_clusters_is_named(tmp_path):
    library = tmp_path / "lib" / "python3.11" / "site-packages" / "native.so"
    library.parent.mkdir(parents=True)
    shutil.copy2(SYSTEM_PYTHON, library)  # any ELF file: this one needs some glibc
    (tmp_path / "notes.so.txt").write_text("not ELF")
    needed = packed_env.glibc_needed(library)
    assert needed is not None and packed_env.glibc_needed(tmp_path / "notes.so.txt") is None
    exact = ".".join(map(str, needed))
    older = ".".join(map(str, (needed[0], needed[1] - 1)))
    assert packed_env.library_problems(tmp_path, exact) == ([], 1)
    problems, checked = packed_env.library_problems(tmp_path, older)
    assert checked == 1 and problems == [f"lib/python3.11/site-packages/native.so needs glibc {exact}, newer than the "
                                         f"cluster's {older}: build the package on the cluster's OS (docs/deployment.md)"]


# ------------------------------------------------------------------------------------ spark-submit.sh


@pytest.fixture()
def recorder(tmp_path: Path) -> Path:
    """A stand-in for the spark-submit binary that writes the argv it was given, one per line."""
    script = tmp_path / "spark-submit"
    script.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {tmp_path / "argv"}\nprintf "%s" "${{SPARK_HOME:-}}" > {tmp_path / "spark_home"}\n')
    script.chmod(0o755)
    return script


def _submit(args: list[str], recorder: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TTB_")} | {"SPARK_SUBMIT": str(recorder)} | env
    done = subprocess.run([str(REPO / "spark-submit.sh"), *args], env=environ, capture_output=True, text=True, timeout=300)
    argv = recorder.parent / "argv"
    return done, argv.read_text().splitlines() if argv.exists() else []


def test_cluster_submission_ships_the_python_env_and_keeps_valueless_flags(recorder, tmp_path):
    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(b"")
    job_args = ["--env", "test", "--date", "2024-01-02", "--lakehouse-root", str(tmp_path / "lake")]
    done, argv = _submit(["--verbose", "--master", "yarn", "--supervise", "--deploy-mode", "cluster", "pipeline", *job_args],
                         recorder, TTB_PYTHON_ENV=str(archive), TTB_S3_ENDPOINT_URL="http://127.0.0.1:9000",
                         TTB_CONF_DIR=str(REPO / "conf"))
    assert done.returncode == 0, done.stderr
    app = argv.index(str(REPO / "jobs" / "pipeline.py"))
    assert argv[app + 1 :] == job_args
    assert "--verbose" in argv[:app] and "--supervise" in argv[:app]
    assert argv[argv.index("--master") + 1] == "yarn" and argv[argv.index("--deploy-mode") + 1] == "cluster"
    assert argv[argv.index("--archives") + 1] == f"{archive}#environment"
    assert "spark.pyspark.python=./environment/bin/python" in argv
    assert not [a for a in argv if a.startswith("spark.pyspark.") and str(REPO) in a], "a laptop path on the cluster"
    # The cluster-mode driver gets the settings variables and the profiles.
    assert "spark.yarn.appMasterEnv.TTB_S3_ENDPOINT_URL=http://127.0.0.1:9000" in argv
    assert sorted(argv[argv.index("--files") + 1].split(",")) == sorted(str(p) for p in (REPO / "conf").glob("*.toml"))
    assert "spark.yarn.appMasterEnv.TTB_CONF_DIR=." in argv
    assert any("delta-spark" in jar for jar in argv[argv.index("--jars") + 1].split(","))
    assert "spark.ui.showConsoleProgress=false" in argv  # the job's own progress lines, not Spark's bar (TTB_CONSOLE_PROGRESS)
    assert "--driver-java-options" not in argv  # no path of this machine's for the cluster's driver


def test_a_driver_run_here_gets_the_packaged_logging_at_the_configured_level(recorder, tmp_path):
    from ttb_spark.spark import console_java_options

    job = ["raw", "--env", "test", "--date", "2024-01-02", "--lakehouse-root", str(tmp_path / "lake")]
    for level in ("warn", "debug"):
        done, argv = _submit(job, recorder, TTB_LOG_LEVEL=level)
        assert done.returncode == 0, done.stderr
        assert argv[argv.index("--driver-java-options") + 1] == console_java_options(level)
    (tmp_path / "argv").unlink()
    done, argv = _submit(job, recorder, TTB_LOG_LEVEL="loud")
    assert done.returncode == 2 and "TTB_LOG_LEVEL" in done.stderr and not argv


def test_a_spark_submit_on_path_keeps_its_own_spark_and_pips_gets_the_venvs(recorder, tmp_path):
    """On a cluster node (spark-submit on PATH, SPARK_HOME unset) the node's Spark runs the job, not the
    venv's pip pyspark; pip's spark-submit beside the submitting Python is pointed at that Python's pyspark."""
    import pyspark

    job = ["raw", "--env", "test", "--date", "2024-01-02", "--lakehouse-root", str(tmp_path / "lake")]
    # empty is unset to the script (${VAR:-}): no SPARK_SUBMIT, so the spark-submit on PATH runs
    done, argv = _submit(job, recorder, SPARK_SUBMIT="", SPARK_HOME="", PATH=f"{recorder.parent}:{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    assert argv[-len(job):] == [str(REPO / "jobs" / "raw.py"), *job[1:]]
    assert (tmp_path / "spark_home").read_text() == ""  # the node's spark-submit finds its own Spark

    python = recorder.parent / "python"  # the submitting Python, beside pip's spark-submit as in a venv
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    done, _ = _submit(job, recorder, PYTHON=str(python), SPARK_HOME="")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "spark_home").read_text() == os.path.dirname(pyspark.__file__)


def test_a_cluster_nodes_spark_submit_runs_on_the_clusters_own_delta(recorder, tmp_path):
    """Issue #24 (5): on an EMR node (its spark-submit on PATH, Delta's jars where Amazon documents them) the
    job gets the cluster's Delta jars, not ones resolved for this venv's Spark, and s3:// stays the cluster's
    (no S3A mapping); the DynamoDB log store's jar comes from there too. Pip's spark-submit ignores them."""
    delta = tmp_path / "delta-lib"
    delta.mkdir()
    for name in ("delta-spark.jar", "delta-storage.jar"):
        (delta / name).write_bytes(b"")
    job = ["raw", "--env", "production", "--date", "2024-01-02", "--lakehouse-root", "s3://ttb-cola-lakehouse/lake"]
    on_path = {"SPARK_SUBMIT": "", "SPARK_HOME": "", "PATH": f"{recorder.parent}:{os.environ['PATH']}", "AWS_REGION": "us-east-1"}
    done, argv = _submit(job, recorder, TTB_CLUSTER_DELTA_DIR=str(delta), **on_path)
    assert done.returncode == 0, done.stderr
    assert argv[argv.index("--jars") + 1] == f"{delta / 'delta-spark.jar'},{delta / 'delta-storage.jar'}"
    assert not [a for a in argv if a.startswith("spark.hadoop.fs.s3")], "s3:// is the cluster's, not S3A"

    (tmp_path / "argv").unlink()
    done, argv = _submit(job, recorder, TTB_CLUSTER_DELTA_DIR=str(delta), TTB_DELTA_DYNAMODB_TABLE="ttb_delta_log", **on_path)
    assert done.returncode == 2 and f"the cluster's Delta at {delta} has no delta-storage-s3-dynamodb.jar" in done.stderr and not argv
    (delta / "delta-storage-s3-dynamodb.jar").write_bytes(b"")
    done, argv = _submit(job, recorder, TTB_CLUSTER_DELTA_DIR=str(delta), TTB_DELTA_DYNAMODB_TABLE="ttb_delta_log", **on_path)
    assert done.returncode == 0, done.stderr
    assert argv[argv.index("--jars") + 1].split(",") == [str(delta / n) for n in ("delta-spark.jar", "delta-storage.jar", "delta-storage-s3-dynamodb.jar")]
    assert "spark.delta.logStore.s3.impl=io.delta.storage.S3DynamoDBLogStore" in argv

    python = recorder.parent / "python"  # pip's spark-submit, beside the submitting Python: the venv's Delta
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    done, argv = _submit(["raw", "--env", "test", "--date", "2024-01-02"], recorder, PYTHON=str(python), TTB_CLUSTER_DELTA_DIR=str(delta))
    assert done.returncode == 0, done.stderr
    assert str(delta) not in argv[argv.index("--jars") + 1] and "delta-spark" in argv[argv.index("--jars") + 1]


def test_cluster_submission_without_a_packed_env_is_refused(recorder, tmp_path):
    done, argv = _submit(["--master", "yarn", "pipeline", "--env", "test"], recorder,
                         TTB_PYTHON_ENV=str(tmp_path / "missing.tar.gz"))
    assert done.returncode == 2 and "make package" in done.stderr and not argv


def test_bad_job_arguments_stop_before_anything_is_submitted(recorder, tmp_path):
    done, argv = _submit(["pipeline", "--env", "test", "--lakehouse-root", "s3n://bucket/lake"], recorder)
    assert done.returncode == 2 and not argv
    assert done.stderr.strip().splitlines() == [
        "ttb_spark pipeline: error: invalid setting TTB_LAKEHOUSE_ROOT: s3n:// has no Hadoop filesystem here: "
        "use s3a:// (or s3://, served by S3A)"]
    done, argv = _submit(["pipeline", "--nosuch"], recorder)
    assert done.returncode == 2 and not argv


def test_s3_lakehouse_is_served_by_s3a_with_the_endpoint_settings(monkeypatch):
    monkeypatch.setenv("TTB_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    conf = storage_conf(load_settings("production"))  # lakehouse_root = s3://...
    assert conf["spark.hadoop.fs.s3.impl"] == S3A_FILESYSTEM
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert storage_conf(load_settings("test")) == {}


def test_settings_ignore_the_master_variable_spark_submit_exports(monkeypatch):
    monkeypatch.setenv("MASTER", "local-cluster[2,1,1024]")
    assert load_settings("test").spark.master == "local[2]"


# ---------------------------------------------------------------------------------------- the console


def test_local_run_console_is_quiet(tmp_path):
    """A locally built session: stage lines and summary, no Ivy report, no plan dumps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTB_")}
    argv = [sys.executable, "-m", "ttb_spark", "reference", "--env", "test", "--lakehouse-root", str(tmp_path / "lake")]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ttb_spark reference: SUCCEEDED" in done.stdout and "[ttb_spark " in done.stderr
    for noise in NOISE:
        assert noise not in done.stderr, noise


@pytest.mark.s3a
def test_spark_submit_serves_an_s3_lakehouse_by_s3a_at_the_configured_endpoint(tmp_path, s3_server, s3_bucket):
    """Opt-in (fetches hadoop-aws and the AWS SDK bundle): s3:// roots under spark-submit, moto as S3."""
    import boto3

    env = {k: v for k, v in os.environ.items() if not k.startswith("TTB_")}
    env |= {"TTB_SIMULATOR_SCALE": "0.02", "TTB_S3_ENDPOINT_URL": s3_server}
    argv = [str(REPO / "spark-submit.sh"), "--master", "local[2]", "raw", "--env", "test", "--date", "2024-01-02",
            "--receipt-methods", "001", "--raw-root", f"s3://{s3_bucket}/raw", "--lakehouse-root", f"s3://{s3_bucket}/lake"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-4000:]
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix="lake/bronze/pages/_delta_log/").get("Contents", [])]
    assert keys
