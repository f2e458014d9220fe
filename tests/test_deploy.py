"""Deployment files: they parse, every entry point and job script they name exists, and the
arguments they pass are ones the job's command line accepts."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ttb_spark import cli, runner

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DELTA_JARS = ("/usr/share/aws/delta/lib/delta-spark.jar", "/usr/share/aws/delta/lib/delta-storage.jar")


def _scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def _accepts(job: str, arguments: list[str]) -> None:
    """The job's parser accepts the arguments (argparse exits 2 on anything unknown)."""
    args = cli.build_parser().parse_args([job, *arguments])
    assert args.command == job


def _bundle_tasks() -> list[tuple[dict, dict]]:
    bundle = yaml.safe_load((DEPLOY / "databricks" / "databricks.yml").read_text())
    tasks = []
    for pattern in bundle["include"]:
        for path in sorted((DEPLOY / "databricks").glob(pattern)):
            for job in yaml.safe_load(path.read_text())["resources"]["jobs"].values():
                tasks.extend((job, task) for task in job["tasks"])
    return tasks


def test_every_console_script_resolves_to_a_job_entry_point():
    scripts = _scripts()
    assert {f"ttb-{job}" for job in runner.JOBS} <= set(scripts)
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_databricks_bundle_tasks_name_existing_entry_points_with_valid_arguments():
    bundle = yaml.safe_load((DEPLOY / "databricks" / "databricks.yml").read_text())
    assert (DEPLOY / "databricks" / bundle["artifacts"]["ttb_spark"]["path"] / "pyproject.toml").is_file()
    tasks = _bundle_tasks()
    assert tasks
    scripts = _scripts()
    for job, task in tasks:
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == "ttb_spark"
        assert wheel["entry_point"] in scripts, wheel["entry_point"]
        defaults = {p["name"]: p["default"] for p in job.get("parameters", [])}
        params = [re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: defaults[m.group(1)], p) for p in wheel["parameters"]]
        _accepts(wheel["entry_point"].removeprefix("ttb-"), params)
        assert all(lib["whl"].endswith(".whl") for lib in task["libraries"])


def test_databricks_daily_job_is_scheduled_since_last_run():
    daily = yaml.safe_load((DEPLOY / "databricks" / "resources" / "ttb_jobs.yml").read_text())["resources"]["jobs"]["ttb_daily"]
    fields = daily["schedule"]["quartz_cron_expression"].split()
    assert len(fields) in (6, 7) and fields[3] == "*", "runs every day"
    assert all("--since-last-run" in t["python_wheel_task"]["parameters"] for t in daily["tasks"])


def _spark_submit_parts(argv: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    """spark-submit argv -> (options, application file, application arguments)."""
    options: dict[str, list[str]] = {}
    i = 0
    while argv[i].startswith("--"):
        options.setdefault(argv[i], []).append(argv[i + 1])
        i += 2
    return options, argv[i], argv[i + 1 :]


def _check_job_script(uri: str) -> str:
    job = Path(uri).stem
    assert (REPO / "jobs" / f"{job}.py").is_file(), uri
    assert job in runner.JOBS
    return job


def test_emr_serverless_job_run_names_a_job_script_with_bundled_delta():
    run = json.loads((DEPLOY / "emr-serverless" / "start-job-run.json").read_text())
    driver = run["jobDriver"]["sparkSubmit"]
    job = _check_job_script(driver["entryPoint"])
    _accepts(job, driver["entryPointArguments"])
    options, _, rest = _spark_submit_parts([*shlex.split(driver["sparkSubmitParameters"]), "app.py"])
    assert rest == []
    confs = dict(c.split("=", 1) for c in options["--conf"])
    assert confs["spark.jars"].split(",") == list(DELTA_JARS)
    assert confs["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_emr_step_spark_submits_a_job_script_with_bundled_delta():
    steps = json.loads((DEPLOY / "emr" / "step.json").read_text())
    assert steps
    for step in steps:
        assert step["Jar"] == "command-runner.jar" and step["Args"][0] == "spark-submit"
        options, app, arguments = _spark_submit_parts(step["Args"][1:])
        job = _check_job_script(app)
        _accepts(job, arguments)
        assert options["--jars"][0].split(",") == list(DELTA_JARS)
        assert "--packages" not in options


def test_shell_scripts_parse_and_spark_submit_lists_every_job():
    for script in (REPO / "spark-submit.sh", DEPLOY / "emr" / "bootstrap.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    listed = subprocess.run([str(REPO / "spark-submit.sh"), "--help"], capture_output=True, text=True, check=True).stdout
    for job in runner.JOBS:
        assert re.search(rf"^\s+{job}\s", listed, re.M), job
        assert (REPO / "jobs" / f"{job}.py").is_file()


@pytest.mark.parametrize("job", sorted(runner.JOBS))
def test_job_scripts_run_their_own_job(job):
    out = subprocess.run([sys.executable, str(REPO / "jobs" / f"{job}.py"), "--env", "nosuch"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith(f"ttb_spark {job}: error: argument --env"), out.stderr
