"""Deployment files, checked against the platforms' own models: the Databricks bundle's jobs as
typed job settings (``databricks-bundles``, strict: unknown keys and enum values fail), its prod
root path, permissions and variables against the deployment guide's commands, the EMR JSON against
botocore's service models, every entry point and job script they name, and the arguments they pass
accepted by the job's command line."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from databricks.bundles.jobs import DataSecurityMode, Job, JobPermission, JobRunAs, PauseStatus
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ttb_spark import cli

from ttb_spark.ops import runner

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BUNDLE = DEPLOY / "databricks"
DEPLOYMENT_GUIDE = REPO / "docs" / "deployment.md"
# Values the bundle CLI takes from the workspace and the bundle itself.
WORKSPACE = {"workspace.current_user.userName": "someone@example.com", "bundle.name": "ttb_spark"}
# Values `databricks bundle deploy` gets on its command line (--var) or from the workspace.
GIVEN = {
    "var.instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/ttb",
    "var.service_principal": "6c5a6a5e-0000-4000-8000-000000000001",
    **WORKSPACE,
}
# The levels a bundle's top-level (or target-level) `permissions` may set, and what each becomes on a
# job, from Databricks' "Set permissions for resources in Databricks Asset Bundles".
BUNDLE_PERMISSION_LEVELS = {"CAN_VIEW": "CAN_VIEW", "CAN_MANAGE": "CAN_MANAGE", "CAN_RUN": "CAN_MANAGE_RUN"}
# Apache Spark of each runtime/release the deploy files pin, from the platforms' release notes:
# Databricks Runtime 17.3 LTS = Spark 4.0.0; Amazon EMR emr-spark-8.0.0 = Spark 4.0.2 with Delta 4.0.0.
RUNTIME_SPARK = {"17.3.x-scala2.13": (4, 0), "emr-spark-8.0.0": (4, 0)}
# The EMR release's Delta jars, with its DynamoDB log store (several writers on S3).
EMR_DELTA_JARS = ("/usr/share/aws/delta/lib/delta-spark.jar", "/usr/share/aws/delta/lib/delta-storage.jar",
                  "/usr/share/aws/delta/lib/delta-storage-s3-dynamodb.jar")
SERVERLESS_RUNS = sorted((DEPLOY / "emr-serverless").glob("start-job-run*.json"))
EMR_STEPS = sorted((DEPLOY / "emr").glob("*step.json"))


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _lowest_spark() -> tuple[int, int]:
    """The lowest Spark the package supports: the `spark40` extra CI tests on."""
    pin = next(p for p in _pyproject()["project"]["optional-dependencies"]["spark40"] if p.startswith("pyspark=="))
    major, minor = pin.removeprefix("pyspark==").split(".")[:2]
    return int(major), int(minor)


def _accepts(job: str, arguments: list[str]) -> None:
    """The job's parser accepts the arguments (argparse exits 2 on anything unknown)."""
    args = cli.build_parser().parse_args([job, *arguments])
    assert args.command == job


def test_every_console_script_resolves_to_a_job_entry_point():
    scripts = _pyproject()["project"]["scripts"]
    assert {f"ttb-{job}" for job in runner.JOBS} <= set(scripts)
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


# ---------------------------------------------------------------------------------------- Databricks


def _resolve(value: Any, names: dict[str, Any]) -> Any:
    """``${name}`` references replaced as the bundle CLI does (repeatedly: variables may name variables)."""
    if isinstance(value, dict):
        return {k: _resolve(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, names) for v in value]
    if isinstance(value, str):
        for _ in range(5):
            value = re.sub(r"\$\{([\w.]+)\}", lambda m: str(names[m.group(1)]), value)
        assert "${" not in value, value
    return value


def _bundle_files() -> list[dict[str, Any]]:
    """databricks.yml and every file it includes, as parsed YAML (comments are not configuration)."""
    root = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    return [root, *(yaml.safe_load(path.read_text()) for pattern in root["include"] for path in sorted(BUNDLE.glob(pattern)))]


def _bundle(target: str, given: dict[str, str] = GIVEN) -> dict[str, Any]:
    """The bundle as deployed to ``target``: includes merged, the target's overrides applied, references
    resolved with the variables' defaults, the target's values and ``given`` (--var and the workspace)."""
    bundle, *included = _bundle_files()
    jobs: dict[str, Any] = {}
    for config in included:
        jobs |= config["resources"]["jobs"]
    spec = bundle["targets"][target]
    values = {name: v["default"] for name, v in bundle["variables"].items() if "default" in v}
    values |= spec.get("variables", {})
    names = {f"var.{k}": v for k, v in values.items()} | given | {"bundle.target": target}
    missing = [f"var.{n}" for n in bundle["variables"] if f"var.{n}" not in names]
    assert not missing, f"required variables not given: {missing}"
    return _resolve({"target": spec, "jobs": jobs, "variables": values, "artifacts": bundle["artifacts"]}, names)


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_bundle_jobs_are_valid_job_settings(target):
    bundle = _bundle(target)
    assert bundle["jobs"]
    for name, job in bundle["jobs"].items():
        Job.from_dict(job)  # raises on an unknown key, a wrong type or an unknown enum value
        assert job["max_concurrent_runs"] == 1, name
        assert job["timeout_seconds"] > 0 and job["email_notifications"]["on_failure"], name


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_bundle_tasks_name_existing_entry_points_with_valid_arguments(target):
    bundle = _bundle(target)
    assert (BUNDLE / bundle["artifacts"]["ttb_spark"]["path"] / "pyproject.toml").is_file()
    scripts = _pyproject()["project"]["scripts"]
    for job in bundle["jobs"].values():
        defaults = {p["name"]: p["default"] for p in job.get("parameters", [])}
        for task in job["tasks"]:
            wheel = task["python_wheel_task"]
            assert wheel["package_name"] == "ttb_spark" and wheel["entry_point"] in scripts, wheel
            params = [re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: defaults[m.group(1)], p) for p in wheel["parameters"]]
            _accepts(wheel["entry_point"].removeprefix("ttb-"), params)
            assert params[params.index("--env") + 1] == bundle["variables"]["environment"]
            assert all(lib["whl"].endswith(".whl") for lib in task["libraries"])


def _clusters(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["new_cluster"] for job in bundle["jobs"].values() for c in job["job_clusters"]]


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_bundle_clusters_run_a_supported_runtime_in_dedicated_mode_with_s3_access(target):
    for cluster in _clusters(_bundle(target)):
        version = cluster["spark_version"]
        assert version.endswith("-scala2.13"), "the Delta jars are built for Scala 2.13"
        assert RUNTIME_SPARK[version] >= _lowest_spark(), f"{version} runs a Spark older than the package needs"
        # scrape and the Delta helpers use RDDs / the SparkContext: standard access mode refuses them.
        assert DataSecurityMode(cluster["data_security_mode"]) in (
            DataSecurityMode.DATA_SECURITY_MODE_DEDICATED, DataSecurityMode.SINGLE_USER)
        assert cluster["single_user_name"]
        assert cluster["aws_attributes"]["instance_profile_arn"].startswith("arn:aws:iam::")


def _pins(path: Path) -> dict[str, str]:
    """A pip constraints file as {canonical name: pinned version}."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(name): version for name, _, version in (line.partition("==") for line in lines if line)}


def test_the_wheel_keeps_the_libraries_of_the_bundles_runtime():
    """Installing the wheel on a 17.3 job cluster replaces none of the runtime's own libraries: each
    requirement's range accepts the version the runtime ships (constraints/dbr-17.3.txt, the versions
    `make test-spark40` tests on), and every requirement the runtime ships is pinned there."""
    runtime = _pins(REPO / "constraints" / "dbr-17.3.txt")
    assert {c["spark_version"] for target in ("dev", "prod") for c in _clusters(_bundle(target))} == {"17.3.x-scala2.13"}
    requirements = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    shipped = [r for r in requirements if canonicalize_name(r.name) in runtime]
    assert {r.name for r in shipped} >= {"requests", "tenacity", "beautifulsoup4", "boto3", "pydantic", "pyarrow", "pandas"}
    for requirement in shipped:
        assert requirement.specifier.contains(runtime[canonicalize_name(requirement.name)]), (
            f"{requirement} would replace the runtime's {requirement.name} {runtime[canonicalize_name(requirement.name)]}")
    for requirement in requirements:
        assert "==" not in str(requirement.specifier), f"{requirement}: a pin; the wheel states ranges (constraints/ pin)"


def test_bundle_dev_target_is_paused_and_writes_development_roots():
    dev, prod = _bundle("dev"), _bundle("prod")
    assert dev["target"]["mode"] == "development" and dev["target"].get("default") is True
    schedules = [job["schedule"] for job in dev["jobs"].values() if "schedule" in job]
    assert schedules and all(PauseStatus(s["pause_status"]) is PauseStatus.PAUSED for s in schedules)
    for cluster in _clusters(dev):
        env = cluster["spark_env_vars"]
        assert env["TTB_ENVIRONMENT"] == "development"
        for root in ("TTB_RAW_ROOT", "TTB_LAKEHOUSE_ROOT"):
            assert env[root] not in {c["spark_env_vars"][root] for c in _clusters(prod)}, root
    assert dev["target"]["workspace"]["root_path"].startswith("/Workspace/Users/someone@example.com/")


def test_bundle_prod_target_is_deployable_and_scheduled():
    prod = _bundle("prod")
    assert prod["target"]["mode"] == "production"
    # Production mode needs an explicit root path (one copy) and a run-as identity (a service principal).
    assert prod["target"]["workspace"]["root_path"]
    run_as = JobRunAs.from_dict(prod["target"]["run_as"])
    assert run_as.service_principal_name == GIVEN["var.service_principal"]
    assert all(c["single_user_name"] == run_as.service_principal_name for c in _clusters(prod))
    schedules = [job["schedule"] for job in prod["jobs"].values() if "schedule" in job]
    assert schedules and all(PauseStatus(s["pause_status"]) is PauseStatus.UNPAUSED for s in schedules)
    assert all(c["spark_env_vars"]["TTB_ENVIRONMENT"] == "production" for c in _clusters(prod))


def test_bundle_prod_keeps_its_tables_in_unity_catalog_and_dev_on_paths(monkeypatch):
    """Issue #24 (3): prod's jobs run in Unity Catalog mode (managed tables of catalog ``ttb``, raw pages on a
    volume of it); dev's on path tables. What each job cluster's environment gives the settings."""
    from ttb_spark.settings import load_settings

    roots = {}
    for target in ("dev", "prod"):
        [env] = {tuple(sorted(c["spark_env_vars"].items())) for c in _clusters(_bundle(target))}
        with monkeypatch.context() as mp:
            for name, value in env:
                mp.setenv(name, value)
            pipeline = load_settings().pipeline
        roots[target] = (pipeline.lakehouse_root, pipeline.raw_root)
    assert roots["prod"] == ("catalog:ttb.", "/Volumes/ttb/raw/pages")
    assert roots["dev"][0] == "s3://ttb-cola-dev/lakehouse"


def test_bundle_prod_root_is_the_service_principals_own_folder():
    """Not /Workspace/Shared, where every workspace user can replace the wheel prod runs as the service
    principal: the run-as service principal's folder (its user name is its application ID), the path the
    CLI advises for production (/Workspace/Users/<deploying identity>/.bundle/...) when it deploys."""
    prod = _bundle("prod")
    root = prod["target"]["workspace"]["root_path"]
    sp = prod["target"]["run_as"]["service_principal_name"]
    assert not root.startswith(("/Workspace/Shared", "/Shared")), root
    assert root == f"/Workspace/Users/{sp}/.bundle/ttb_spark/prod"
    as_sp = {**GIVEN, "workspace.current_user.userName": sp}
    assert _bundle("prod", as_sp)["target"]["workspace"]["root_path"] == (
        f"/Workspace/Users/{as_sp['workspace.current_user.userName']}/.bundle/ttb_spark/prod")


def _principal(permission: dict[str, str]) -> tuple[str, str]:
    keys = {"user_name", "group_name", "service_principal_name"} & set(permission)
    assert len(keys) == 1 and set(permission) == keys | {"level"}, permission
    key = keys.pop()
    return key, permission[key]


def test_bundle_prod_permissions_give_the_groups_view_and_manage():
    bundle = _bundle_files()[0]
    assert "permissions" not in bundle, "prod's permissions belong to the prod target, not to dev"
    prod = _bundle("prod")
    permissions = prod["target"]["permissions"]
    assert all(p["level"] in BUNDLE_PERMISSION_LEVELS for p in permissions), permissions
    granted = {_principal(p): p["level"] for p in permissions}
    assert len(granted) == len(permissions), "a principal appears once"
    variables = prod["variables"]
    assert granted[("group_name", variables["viewers_group"])] == "CAN_VIEW"
    assert granted[("group_name", variables["managers_group"])] == "CAN_MANAGE"
    # The deploying identity, as the CLI recommends, so the SP keeps CAN_MANAGE on its folder and jobs.
    assert granted[("service_principal_name", prod["target"]["run_as"]["service_principal_name"])] == "CAN_MANAGE"
    raw = bundle["targets"]["prod"]["permissions"]
    assert {p.get("group_name") for p in raw} >= {"${var.viewers_group}", "${var.managers_group}"}
    for name in ("viewers_group", "managers_group"):
        assert bundle["variables"][name].get("default") and bundle["variables"][name].get("description"), name
        assert f"`{name}`" in DEPLOYMENT_GUIDE.read_text(), f"{name} is not documented"
    # As the CLI applies them to each job: valid job permissions.
    for job in prod["jobs"].values():
        Job.from_dict({**job, "permissions": [
            JobPermission.from_dict({**p, "level": BUNDLE_PERMISSION_LEVELS[p["level"]]}) for p in permissions]})


def _references(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*map(_references, value.values()), set())
    if isinstance(value, list):
        return set().union(*map(_references, value), set())
    return set(re.findall(r"\$\{var\.(\w+)\}", value)) if isinstance(value, str) else set()


def _guide_commands(prefix: str) -> list[str]:
    """The deployment guide's shell commands starting with ``prefix`` (continuation lines joined)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", DEPLOYMENT_GUIDE.read_text(), re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in lines]
    return [c for c in commands if c.startswith(prefix)]


def _guide_vars(command: str) -> dict[str, str]:
    """``--var="name=value"`` / ``--var name=value`` of a command."""
    return dict(re.findall(r"--var[= ]\"?(\w+)=([^\"\s]*)", command))


def test_bundle_variables_are_declared_and_the_guides_validate_needs_no_others():
    bundle = _bundle_files()[0]
    referenced = set().union(*map(_references, _bundle_files()))
    assert referenced <= set(bundle["variables"]), f"undeclared: {referenced - set(bundle['variables'])}"
    assert set(bundle["variables"]) <= referenced, f"unused: {set(bundle['variables']) - referenced}"
    validate = [c for c in _guide_commands("databricks bundle validate") if " -t " not in c]
    assert validate, "the deployment guide has no plain `databricks bundle validate`"
    for command in validate:
        given = _guide_vars(command)
        without_value = [n for n in referenced if "default" not in bundle["variables"][n] and n not in given]
        assert not without_value, f"`{command}` stops: no value for {without_value}"
        # what that command validates: the default target, with the workspace's values only
        dev = _bundle("dev", WORKSPACE | {f"var.{k}": v for k, v in given.items()})
        for job in dev["jobs"].values():
            Job.from_dict(job)


def test_bundle_guide_passes_what_prod_needs():
    """The guide's prod deploy gives every variable prod uses that is empty by default (the service
    principal; the instance profile the clusters' S3 access needs) and an e-mail address for the alerts
    (by default the deploying identity: for the service principal, an application ID, not an address)."""
    bundle = _bundle_files()[0]
    deploys = _guide_commands("databricks bundle deploy -t prod")
    assert deploys, "the deployment guide has no `databricks bundle deploy -t prod`"
    empty = {n for n, v in bundle["variables"].items() if v.get("default") == ""} - set(bundle["targets"]["prod"].get("variables", {}))
    assert {"service_principal", "instance_profile_arn"} <= empty
    for command in deploys:
        given = _guide_vars(command)
        assert empty <= set(given), f"`{command}` leaves {empty - set(given)} empty"
        prod = _bundle("prod", WORKSPACE | {f"var.{k}": v for k, v in given.items()})
        assert prod["target"]["run_as"]["service_principal_name"] == given["service_principal"]
        assert "@" in given.get("alert_email", ""), f"`{command}` mails the alerts to the service principal"


def test_bundle_daily_job_runs_the_daily_flow_since_last_run_every_day():
    daily = _bundle("prod")["jobs"]["ttb_daily"]
    fields = daily["schedule"]["quartz_cron_expression"].split()
    assert len(fields) in (6, 7) and fields[3] == "*", "runs every day"
    assert [t["python_wheel_task"]["entry_point"] for t in daily["tasks"]] == ["ttb-daily"]
    assert all("--since-last-run" in t["python_wheel_task"]["parameters"] for t in daily["tasks"])


def test_emr_daily_runs_call_the_daily_job_since_last_run():
    args = json.loads((DEPLOY / "emr" / "step.json").read_text())[0]["Args"]
    script = next(i for i, a in enumerate(args) if a.endswith(".py"))
    run = json.loads((DEPLOY / "emr-serverless" / "start-job-run.json").read_text())["jobDriver"]["sparkSubmit"]
    for entry, arguments in ((args[script], args[script + 1:]), (run["entryPoint"], run["entryPointArguments"])):
        assert entry.endswith("/jobs/daily.py") and (REPO / "jobs" / "daily.py").is_file()
        assert "--since-last-run" in arguments
        _accepts("daily", arguments)


def test_every_backfill_job_backfills_by_search_over_a_receipt_date_range():
    """Issue #22 (3): the bundle's, EMR Serverless's and EMR on EC2's backfill run ``pipeline --start --end``, the
    backfill by search (``--walk`` would walk)."""
    task = _bundle("prod")["jobs"]["ttb_backfill"]["tasks"][0]["python_wheel_task"]
    step = json.loads((DEPLOY / "emr" / "backfill-step.json").read_text())[0]["Args"]
    script = next(i for i, a in enumerate(step) if a.endswith(".py"))
    run = json.loads((DEPLOY / "emr-serverless" / "start-job-run-backfill.json").read_text())["jobDriver"]["sparkSubmit"]
    for job, arguments in ((task["entry_point"].removeprefix("ttb-"), task["parameters"]),
                           (Path(step[script]).stem, step[script + 1:]), (Path(run["entryPoint"]).stem, run["entryPointArguments"])):
        assert job == "pipeline" and {"--start", "--end"} <= set(arguments) and "--walk" not in arguments
    _accepts("pipeline", step[script + 1:])
    _accepts("pipeline", run["entryPointArguments"])  # the bundle's: test_bundle_tasks_name_existing_entry_points_with_valid_arguments


# ---------------------------------------------------------------------------------------------- EMR


def _validate(service: str, operation: str, params: Any, member: str | None = None) -> None:
    """``params`` against botocore's input shape of ``operation`` (or of one of its members)."""
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape.members[member] if member else shape)
    assert not report.has_errors(), report.generate_report()


def _spark_submit_parts(argv: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    """spark-submit argv -> (options, application file, application arguments)."""
    options: dict[str, list[str]] = {}
    i = 0
    while argv[i].startswith("--"):
        options.setdefault(argv[i], []).append(argv[i + 1])
        i += 2
    return options, argv[i], argv[i + 1 :]


def _check_job_script(uri: str, arguments: list[str]) -> None:
    job = Path(uri).stem
    assert (REPO / "jobs" / f"{job}.py").is_file() and job in runner.JOBS, uri
    _accepts(job, arguments)


def _make_variable(name: str) -> str:
    return re.search(rf"^{name}\s*\?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M).group(1)


def _check_python_env(archive: str, python: str) -> None:
    """The packed environment `make package` builds and says to upload, unpacked as ./environment."""
    uri, _, alias = archive.partition("#")
    assert uri == f"{_make_variable('CODE_URI')}/ttb_spark_env.tar.gz"
    assert alias == "environment" and python == "./environment/bin/python"


def _check_log_store(confs: dict[str, str], table: str) -> None:
    """The run commits through the DynamoDB log store its settings name: the keys ``spark.log_store_conf``
    gives a session for that table, for s3:// (EMRFS serves s3:// on EMR, S3A is not used)."""
    from ttb_spark.settings import load_settings
    from ttb_spark.spark import log_store_conf

    settings = load_settings("production", {"concurrency": {"delta_dynamodb_table": table}})
    expected = {k: v for k, v in log_store_conf(settings).items() if ".s3a." not in k}
    assert expected and {k: confs.get(k) for k in expected} == expected


def test_emr_runs_maintenance_with_the_other_jobs():
    steps = json.loads((DEPLOY / "emr" / "step.json").read_text())
    scripts = [Path(_spark_submit_parts(s["Args"][1:])[1]).stem for s in steps]
    runs = [Path(json.loads(p.read_text())["jobDriver"]["sparkSubmit"]["entryPoint"]).stem for p in SERVERLESS_RUNS]
    assert "maintain" in scripts and "maintain" in runs


def test_bundle_maintenance_job_runs_weekly():
    maintain = _bundle("prod")["jobs"]["ttb_maintain"]
    fields = maintain["schedule"]["quartz_cron_expression"].split()
    assert fields[3] == "?" and fields[5] in ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), "one day a week"
    assert [t["python_wheel_task"]["entry_point"] for t in maintain["tasks"]] == ["ttb-maintain"]


def _release_label(text: str) -> str:
    return re.search(r"\bemr-spark-[\d.]+", text).group(0)


def test_emr_serverless_application_pins_a_release_with_a_supported_spark():
    app = json.loads((DEPLOY / "emr-serverless" / "create-application.json").read_text())
    _validate("emr-serverless", "CreateApplication", {**app, "clientToken": "token"})
    assert app["type"] == "SPARK" and RUNTIME_SPARK[app["releaseLabel"]] >= _lowest_spark()
    # The packed environment has native wheels (lxml, pydantic-core): built for x86_64.
    assert app["architecture"] == "X86_64"
    # The scrape stage calls the registry: the application needs a VPC with a route out.
    assert app["networkConfiguration"]["subnetIds"]


@pytest.mark.parametrize("path", SERVERLESS_RUNS, ids=lambda p: p.name)
def test_emr_serverless_job_run_is_valid_and_ships_python_env_and_delta(path):
    run = json.loads(path.read_text())
    _validate("emr-serverless", "StartJobRun", {**run, "applicationId": "00abcdefghij0123", "clientToken": "token",
                                                "executionRoleArn": "arn:aws:iam::123456789012:role/ttb"})
    driver = run["jobDriver"]["sparkSubmit"]
    _check_job_script(driver["entryPoint"], driver["entryPointArguments"])
    options, _, rest = _spark_submit_parts([*shlex.split(driver["sparkSubmitParameters"]), "app.py"])
    assert rest == [] and set(options) == {"--conf"}
    confs = dict(c.split("=", 1) for c in options["--conf"])
    assert confs["spark.jars"].split(",") == list(EMR_DELTA_JARS)
    assert confs["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    python = confs["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"]
    _check_python_env(confs["spark.archives"], python)
    _check_log_store(confs, confs["spark.emr-serverless.driverEnv.TTB_DELTA_DYNAMODB_TABLE"])
    assert confs["spark.executorEnv.PYSPARK_PYTHON"] == confs["spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON"] == python


def test_emr_cluster_pins_the_same_release_and_enables_delta():
    script = (DEPLOY / "emr" / "create-cluster.sh").read_text()
    subprocess.run(["bash", "-n", str(DEPLOY / "emr" / "create-cluster.sh")], check=True)
    app = json.loads((DEPLOY / "emr-serverless" / "create-application.json").read_text())
    assert _release_label(script) == app["releaseLabel"]
    configurations = json.loads((DEPLOY / "emr" / "configurations.json").read_text())
    _validate("emr", "RunJobFlow", configurations, member="Configurations")
    assert {"Classification": "delta-defaults", "Properties": {"delta.enabled": "true"}} in configurations


@pytest.mark.parametrize("path", EMR_STEPS, ids=lambda p: p.name)
def test_emr_steps_are_valid_and_ship_python_env_and_delta(path):
    steps = json.loads(path.read_text())
    assert steps
    # `aws emr add-steps --steps file://step.json` turns each CUSTOM_JAR step into this request shape.
    request = [{"Name": s["Name"], "ActionOnFailure": s["ActionOnFailure"],
                "HadoopJarStep": {"Jar": s["Jar"], "Args": s["Args"]}} for s in steps]
    assert all(set(s) == {"Name", "ActionOnFailure", "Type", "Jar", "Args"} and s["Type"] == "CUSTOM_JAR" for s in steps)
    _validate("emr", "AddJobFlowSteps", {"JobFlowId": "j-0123456789ABC", "Steps": request})
    for step in steps:
        assert step["Jar"] == "command-runner.jar" and step["Args"][0] == "spark-submit"
        options, app, arguments = _spark_submit_parts(step["Args"][1:])
        _check_job_script(app, arguments)
        assert options["--jars"] == [",".join(EMR_DELTA_JARS)] and "--packages" not in options
        confs = dict(c.split("=", 1) for c in options["--conf"])
        _check_python_env(options["--archives"][0], confs["spark.pyspark.python"])
        _check_log_store(confs, confs["spark.yarn.appMasterEnv.TTB_DELTA_DYNAMODB_TABLE"])
        assert confs["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == confs["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
        assert "--py-files" not in options, "the package is in the packed environment"


# ------------------------------------------------------------------------------------ scripts, jobs


def test_shell_scripts_parse_and_spark_submit_lists_every_job():
    subprocess.run(["bash", "-n", str(REPO / "spark-submit.sh")], check=True)
    listed = subprocess.run([str(REPO / "spark-submit.sh"), "--help"], capture_output=True, text=True, check=True).stdout
    for job in runner.JOBS:
        assert re.search(rf"^\s+{job}\s", listed, re.M), job
        assert (REPO / "jobs" / f"{job}.py").is_file()


@pytest.mark.parametrize("job", sorted(runner.JOBS))
def test_job_scripts_run_their_own_job(job):
    out = subprocess.run([sys.executable, str(REPO / "jobs" / f"{job}.py"), "--env", "nosuch"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith(f"ttb_spark {job}: error: argument --env"), out.stderr
