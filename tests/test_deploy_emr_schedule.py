"""EMR schedules and failure alerts as files (deploy/emr/schedule/): every file is the request of one AWS API
operation (what `aws <service> <command> --cli-input-json file://...` sends), checked against botocore's
model of that operation, with the patterns, enums and lengths the model declares. The schedules' targets are
EventBridge Scheduler universal targets whose input is the shipped EMR Serverless job run
(deploy/emr-serverless/start-job-run*.json) or the shipped EMR step (deploy/emr/step.json), request for
request; the roles grant exactly what those calls need; the failure rules match a failed run and nothing
else; the deployment guide names every file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from botocore.validate import ParamValidator

from ttb_spark import cli

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SCHEDULE = DEPLOY / "emr" / "schedule"

# The request each file is, as (botocore service, operation).
OPERATIONS = {
    "alerts-topic.json": ("sns", "CreateTopic"),
    "serverless-failed-rule.json": ("events", "PutRule"),
    "serverless-failed-targets.json": ("events", "PutTargets"),
    "step-failed-rule.json": ("events", "PutRule"),
    "step-failed-targets.json": ("events", "PutTargets"),
    "schedule-group.json": ("scheduler", "CreateScheduleGroup"),
    "scheduler-role.json": ("iam", "CreateRole"),
    "scheduler-policy-serverless.json": ("iam", "PutRolePolicy"),
    "scheduler-policy-steps.json": ("iam", "PutRolePolicy"),
    "serverless-daily-schedule.json": ("scheduler", "CreateSchedule"),
    "serverless-maintain-schedule.json": ("scheduler", "CreateSchedule"),
    "steps-daily-schedule.json": ("scheduler", "CreateSchedule"),
    "steps-maintain-schedule.json": ("scheduler", "CreateSchedule"),
    "schedule-dropped-alarm.json": ("cloudwatch", "PutMetricAlarm"),
}

# Placeholders, in the style of the other deploy files (example values the deployment guide's sed replaces).
ACCOUNT = "123456789012"
REGION = "us-east-1"
APPLICATION = "00abcdefghij0123"  # an EMR Serverless application id: 16 of [0-9a-z]
CLUSTER = "j-0123456789ABC"
JOB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ttb-spark-emr-serverless-job"  # the job run's --execution-role-arn

# EventBridge Scheduler universal targets, arn:aws:scheduler:::aws-sdk:<SDK service id>:<apiAction in camelCase>
# ("Using universal targets", EventBridge Scheduler User Guide); the SDK service ids are those of
# Step Functions' AWS SDK integrations for Amazon EMR Serverless and Amazon EMR.
START_JOB_RUN = "arn:aws:scheduler:::aws-sdk:emrserverless:startJobRun"
ADD_JOB_FLOW_STEPS = "arn:aws:scheduler:::aws-sdk:emr:addJobFlowSteps"
# What Scheduler puts in place of its context attributes ("Adding context attributes", with the guide's examples).
CONTEXT_ATTRIBUTES = {
    "<aws.scheduler.execution-id>": "d32c5kddcf5bb8c3",
    "<aws.scheduler.scheduled-time>": "2022-03-22T18:59:43Z",
    "<aws.scheduler.attempt-number>": "1",
    "<aws.scheduler.schedule-arn>": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/ttb-spark/ttb-spark-daily",
}

# The documented events the rules are written against: "Automating EMR Serverless with Amazon EventBridge"
# (EMR Serverless User Guide, job run state change) and "When to set up EMR events in CloudWatch" (EMR
# Management Guide, step status change); only state and ids are changed.
SERVERLESS_EVENT = {
    "version": "0", "id": "00df3ec6-5da1-36e6-ab71-20f0de68f8a0",
    "detail-type": "EMR Serverless Job Run State Change", "source": "aws.emr-serverless",
    "account": ACCOUNT, "time": "2022-05-31T21:07:42Z", "region": REGION, "resources": [],
    "detail": {
        "jobRunId": "00f1cbn5g4bb0c01", "applicationId": APPLICATION,
        "arn": f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{APPLICATION}/jobruns/00f1cbn5g4bb0c01",
        "releaseLabel": "emr-spark-8.0.0", "state": "FAILED", "previousState": "RUNNING",
        "createdBy": f"arn:aws:sts::{ACCOUNT}:assumed-role/ttb-spark-scheduler/d32c5kddcf5bb8c3",
        "updatedAt": "2022-05-31T21:07:42.299487Z", "createdAt": "2022-05-31T21:07:25.325900Z",
    },
}
STEP_EVENT = {
    "version": "0", "id": "999cccaa-eaaa-0000-1111-123456789012", "detail-type": "EMR Step Status Change",
    "source": "aws.emr", "account": ACCOUNT, "time": "2016-12-16T20:53:09Z", "region": REGION, "resources": [],
    "detail": {
        "severity": "ERROR", "actionOnFailure": "CONTINUE", "stepId": "s-ZYXWVUTSRQPON",
        "name": "ttb_spark daily (discover -> gold, since last run)", "clusterId": CLUSTER, "state": "FAILED",
        "message": f"Step s-ZYXWVUTSRQPON in Amazon EMR cluster {CLUSTER} (ttb_spark) failed at 2016-12-16 20:53 UTC.",
    },
}

SESSION = botocore.session.get_session()


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEDULE / name).read_text())


def _input_shape(service: str, operation: str) -> Shape:
    return SESSION.get_service_model(service).operation_model(operation).input_shape


def _constraints(value: Any, shape: Shape, path: str, errors: list[str]) -> None:
    """What botocore's ParamValidator leaves to the service: patterns, enums, maximum lengths and values."""
    meta = shape.metadata
    if shape.type_name == "structure":
        for key, item in value.items():
            _constraints(item, shape.members[key], f"{path}.{key}", errors)
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _constraints(item, shape.member, f"{path}[{i}]", errors)
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items, at most {meta['max']}")
    elif shape.type_name == "map":
        for key, item in value.items():
            _constraints(key, shape.key, f"{path} key {key!r}", errors)
            _constraints(item, shape.value, f"{path}[{key!r}]", errors)
    elif shape.type_name == "string":
        if "enum" in meta and value not in meta["enum"]:
            errors.append(f"{path}: {value!r} not one of {meta['enum']}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} characters, at most {meta['max']}")
        if "pattern" in meta:
            try:
                pattern = re.compile(meta["pattern"], re.DOTALL)
            except re.error:  # a Java-only construct: the service checks it
                return
            if not pattern.fullmatch(value):
                errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
    elif shape.type_name in ("integer", "long") and "max" in meta and value > meta["max"]:
        errors.append(f"{path}: {value} over {meta['max']}")


def _validate(service: str, operation: str, params: dict[str, Any]) -> None:
    shape = _input_shape(service, operation)
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), f"{service} {operation}: {report.generate_report()}"
    errors: list[str] = []
    _constraints(params, shape, operation, errors)
    assert not errors, f"{service} {operation}: {errors}"


def _api_casing(value: Any, shape: Shape, path: str) -> Any:
    """A universal target's input, in the AWS SDK's PascalCase member names (as Step Functions' AWS SDK
    integrations: ``ApplicationId``, ``JobDriver.SparkSubmit.EntryPoint``; map keys such as tags as they are),
    mapped back to the API's own member names; a key that is no member in that casing fails."""
    if shape.type_name == "structure":
        members = {name[0].upper() + name[1:]: name for name in shape.members}
        out = {}
        for key, item in value.items():
            assert key in members, f"{path}.{key}: not a member of {shape.name} in PascalCase: {sorted(members)}"
            out[members[key]] = _api_casing(item, shape.members[members[key]], f"{path}.{key}")
        return out
    if shape.type_name == "list":
        return [_api_casing(item, shape.member, f"{path}[{i}]") for i, item in enumerate(value)]
    if shape.type_name == "map":
        return {key: _api_casing(item, shape.value, f"{path}[{key!r}]") for key, item in value.items()}
    return value


def _target_request(schedule: dict[str, Any], service: str, operation: str) -> dict[str, Any]:
    """The request the schedule's target sends, as Scheduler sends it (context attributes filled in),
    validated against the target operation's model; in the API's member names."""
    text = schedule["Target"]["Input"]
    for attribute, example in CONTEXT_ATTRIBUTES.items():
        text = text.replace(attribute, example)
    assert "<aws.scheduler." not in text, "an unknown context attribute"
    request = _api_casing(json.loads(text), _input_shape(service, operation), "Input")
    _validate(service, operation, request)
    return request


def _accepts(job: str, arguments: list[str]) -> None:
    """The job's parser accepts the arguments (argparse exits 2 on anything unknown)."""
    assert cli.build_parser().parse_args([job, *arguments]).command == job


def _policy(document: str) -> list[dict[str, Any]]:
    policy = json.loads(document)
    assert policy["Version"] == "2012-10-17" and set(policy) == {"Version", "Statement"}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"]), "allows only"
    return policy["Statement"]


def _grants(document: str) -> set[tuple[str, str]]:
    """(action, resource) pairs a permission policy allows: each named, no wildcard action."""
    pairs = set()
    for statement in _policy(document):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert not any("*" in a for a in actions), actions
        pairs |= {(a, r) for a in actions for r in resources}
    return pairs


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching for exact-value patterns: every field of the pattern is in the event, a nested
    object matches the event's object, a list matches when the event's value (or one of its values) is in it."""
    for key, expected in pattern.items():
        if key not in event:
            return False
        value = event[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not _matches(expected, value):
                return False
            continue
        assert isinstance(expected, list) and all(isinstance(e, str) for e in expected), \
            f"{key}: only exact string values are matched here, not {expected!r}"
        if not any(v in expected for v in (value if isinstance(value, list) else [value])):
            return False
    return True


def _cron(expression: str) -> list[str]:
    """Scheduler's cron(minutes hours day-of-month month day-of-week year)."""
    fields = re.fullmatch(r"cron\((.+)\)", expression).group(1).split()
    assert len(fields) == 6, expression
    return fields


def _topic_arn() -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT}:{_load('alerts-topic.json')['Name']}"


def _rule_arn(rule: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{_load(rule)['Name']}"


def _role_arn() -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{_load('scheduler-role.json')['RoleName']}"


SCHEDULES = sorted(n for n, op in OPERATIONS.items() if op == ("scheduler", "CreateSchedule"))


def test_every_file_is_listed_with_its_operation():
    assert sorted(p.name for p in SCHEDULE.iterdir()) == sorted(OPERATIONS)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_file_is_a_valid_request_of_its_operation(name):
    _validate(*OPERATIONS[name], _load(name))


# ------------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_run_on_time_in_their_group_as_the_scheduler_role(name):
    schedule = _load(name)
    assert schedule["GroupName"] == _load("schedule-group.json")["Name"]
    assert schedule["State"] == "ENABLED" and schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}, "no flexible time window"
    target = schedule["Target"]
    assert target["RoleArn"] == _role_arn()
    assert target["Arn"] == (START_JOB_RUN if name.startswith("serverless-") else ADD_JOB_FLOW_STEPS)
    # Retries of a refused start within an hour; no dead-letter queue is shipped (the dropped-invocation
    # alarm reports a start that never happened).
    assert set(target["RetryPolicy"]) == {"MaximumEventAgeInSeconds", "MaximumRetryAttempts"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0 and "DeadLetterConfig" not in target
    minutes, hours, day_of_month, month, day_of_week, year = _cron(schedule["ScheduleExpression"])
    assert minutes.isdigit() and hours.isdigit() and month == "*" and year == "*"
    if "-daily-" in name:
        assert (day_of_month, day_of_week) == ("*", "?"), "every day"
    else:
        assert day_of_month == "?" and day_of_week in ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), "weekly"


@pytest.mark.parametrize("job", ["daily", "maintain"])
def test_serverless_schedule_starts_the_shipped_job_run(job):
    run_file = "start-job-run.json" if job == "daily" else f"start-job-run-{job}.json"
    shipped = json.loads((DEPLOY / "emr-serverless" / run_file).read_text())
    schedule = _load(f"serverless-{job}-schedule.json")
    request = _target_request(schedule, "emr-serverless", "StartJobRun")
    # The request `aws emr-serverless start-job-run --application-id --execution-role-arn
    # --cli-input-json file://deploy/emr-serverless/<run_file>` sends, a fresh idempotency token per invocation.
    assert request.pop("applicationId") == APPLICATION and request.pop("executionRoleArn") == JOB_ROLE
    assert json.loads(schedule["Target"]["Input"])["ClientToken"] == "<aws.scheduler.execution-id>"
    request.pop("clientToken")
    assert request == shipped
    driver = request["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"].endswith(f"/jobs/{job}.py") and (REPO / "jobs" / f"{job}.py").is_file()
    _accepts(job, driver["entryPointArguments"])
    if job == "daily":
        assert "--since-last-run" in driver["entryPointArguments"]


@pytest.mark.parametrize("job", ["daily", "maintain"])
def test_step_schedule_adds_the_shipped_step(job):
    steps = json.loads((DEPLOY / "emr" / "step.json").read_text())
    step = next(s for s in steps if any(a.endswith(f"/jobs/{job}.py") for a in s["Args"]))
    request = _target_request(_load(f"steps-{job}-schedule.json"), "emr", "AddJobFlowSteps")
    # The request `aws emr add-steps --cluster-id --steps file://deploy/emr/step.json` sends for that step.
    assert request == {"JobFlowId": CLUSTER, "Steps": [{
        "Name": step["Name"], "ActionOnFailure": step["ActionOnFailure"],
        "HadoopJarStep": {"Jar": step["Jar"], "Args": step["Args"]}}]}
    args = step["Args"]
    script = next(i for i, a in enumerate(args) if a.endswith(".py"))
    _accepts(job, args[script + 1:])
    if job == "daily":
        assert "--since-last-run" in args[script + 1:]


# ---------------------------------------------------------------------------------------- roles


def test_scheduler_role_is_assumed_only_by_the_scheduler_for_this_group():
    role = _load("scheduler-role.json")
    [statement] = _policy(role["AssumeRolePolicyDocument"])
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"} and statement["Action"] == "sts:AssumeRole"
    group = _load("schedule-group.json")["Name"]
    assert statement["Condition"] == {"StringEquals": {
        "aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{group}"}}


def test_scheduler_role_policies_grant_exactly_what_the_targets_call():
    role = _load("scheduler-role.json")["RoleName"]
    serverless, steps = _load("scheduler-policy-serverless.json"), _load("scheduler-policy-steps.json")
    assert serverless["RoleName"] == steps["RoleName"] == role
    application = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{APPLICATION}"
    # StartJobRun authorizes emr-serverless:StartJobRun on the application, emr-serverless:TagResource for the
    # request's tags (on the new job run) and iam:PassRole of the job role to EMR Serverless (Service
    # Authorization Reference, Amazon EMR Serverless, "API operations").
    assert _grants(serverless["PolicyDocument"]) == {
        ("emr-serverless:StartJobRun", application),
        ("emr-serverless:TagResource", f"{application}/jobruns/*"),
        ("iam:PassRole", JOB_ROLE),
    }
    [pass_role] = [s for s in _policy(serverless["PolicyDocument"]) if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}}
    assert _grants(steps["PolicyDocument"]) == {
        ("elasticmapreduce:AddJobFlowSteps", f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{CLUSTER}")}
    for name in SCHEDULES:  # what the targets name is what the policies grant
        request = json.loads(_load(name)["Target"]["Input"])
        if name.startswith("serverless-"):
            assert (request["ApplicationId"], request["ExecutionRoleArn"]) == (APPLICATION, JOB_ROLE)
        else:
            assert request["JobFlowId"] == CLUSTER


# ---------------------------------------------------------------------------------------- alerts


def test_serverless_rule_matches_failed_runs_of_the_application_only():
    rule = _load("serverless-failed-rule.json")
    pattern = json.loads(rule["EventPattern"])
    assert rule["State"] == "ENABLED"
    assert pattern["source"] == ["aws.emr-serverless"]
    assert pattern["detail-type"] == ["EMR Serverless Job Run State Change"]
    assert set(pattern["detail"]) <= set(SERVERLESS_EVENT["detail"]), "fields the documented event carries"

    def event(**detail: str) -> dict[str, Any]:
        return SERVERLESS_EVENT | {"detail": SERVERLESS_EVENT["detail"] | detail}

    assert _matches(pattern, event(state="FAILED"))
    assert _matches(pattern, event(state="CANCELLED")), "a run over executionTimeoutMinutes is cancelled"
    assert not _matches(pattern, event(state="SUCCESS"))
    assert not _matches(pattern, event(state="RUNNING", previousState="SCHEDULED"))
    assert not _matches(pattern, event(state="FAILED", applicationId="00otherapplicat1"))
    assert not _matches(pattern, SERVERLESS_EVENT | {"detail-type": "EMR Serverless Job Run Retry"})


def test_step_rule_matches_failed_steps_of_the_cluster_only():
    rule = _load("step-failed-rule.json")
    pattern = json.loads(rule["EventPattern"])
    assert rule["State"] == "ENABLED"
    assert pattern["source"] == ["aws.emr"] and pattern["detail-type"] == ["EMR Step Status Change"]
    assert set(pattern["detail"]) <= set(STEP_EVENT["detail"]), "fields the documented event carries"

    def event(**detail: str) -> dict[str, Any]:
        return STEP_EVENT | {"detail": STEP_EVENT["detail"] | detail}

    assert _matches(pattern, event(state="FAILED"))
    assert not _matches(pattern, event(state="COMPLETED", severity="INFO"))
    assert not _matches(pattern, event(state="RUNNING", severity="INFO"))
    assert not _matches(pattern, event(state="FAILED", clusterId="j-OTHERCLUSTER1"))


@pytest.mark.parametrize("rule", ["serverless-failed", "step-failed"])
def test_rules_notify_the_alert_topic(rule):
    targets = _load(f"{rule}-targets.json")
    assert targets["Rule"] == _load(f"{rule}-rule.json")["Name"]
    [target] = targets["Targets"]
    # SNS takes EventBridge's deliveries by its resource policy: no RoleArn on the target (EventBridge User Guide,
    # "Using resource-based policies for Amazon EventBridge").
    assert target["Arn"] == _topic_arn() and set(target) == {"Id", "Arn"}


def test_topic_policy_lets_exactly_the_rules_and_the_alarm_publish():
    topic = _load("alerts-topic.json")
    statements = _policy(topic["Attributes"]["Policy"])
    by_service = {s["Principal"]["Service"]: s for s in statements}
    assert len(by_service) == len(statements) == 2
    for statement in statements:
        assert statement["Action"] == "sns:Publish" and statement["Resource"] == _topic_arn()
    events = by_service["events.amazonaws.com"]["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sorted(events) == sorted(_rule_arn(f"{r}-rule.json") for r in ("serverless-failed", "step-failed"))
    alarm = _load("schedule-dropped-alarm.json")["AlarmName"]
    assert by_service["cloudwatch.amazonaws.com"]["Condition"] == {
        "ArnEquals": {"aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}"}}


def test_dropped_schedule_alarm_notifies_the_topic():
    alarm = _load("schedule-dropped-alarm.json")
    # AWS/Scheduler InvocationDroppedCount: Scheduler stopped trying after the retry policy (EventBridge
    # Scheduler User Guide, "Monitoring ... with Amazon CloudWatch"), per schedule group.
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Scheduler", "InvocationDroppedCount")
    assert alarm["Dimensions"] == [{"Name": "ScheduleGroup", "Value": _load("schedule-group.json")["Name"]}]
    assert alarm["Statistic"] == "Sum" and alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching", "no invocation between two runs is not an alarm"
    assert alarm["ActionsEnabled"] is True and alarm["AlarmActions"] == [_topic_arn()]


# --------------------------------------------------------------------------------- placeholders, guide


def test_placeholders_are_the_ones_the_guide_replaces():
    text = "\n".join((SCHEDULE / name).read_text() for name in OPERATIONS)
    assert set(re.findall(r"(?<![\d])\d{12}(?![\d])", text)) == {ACCOUNT}
    assert set(re.findall(r"\b[a-z]{2}-(?:[a-z]+-)+\d\b", text)) == {REGION}
    assert set(re.findall(r"\bj-[0-9A-Z]{8,}\b", text)) == {CLUSTER}
    assert set(re.findall(r"/applications/(\w+)", text)) | {
        json.loads(_load(n)["Target"]["Input"])["ApplicationId"] for n in SCHEDULES if n.startswith("serverless-")
    } == {APPLICATION}
    # Regions are replaced in ARNs only (":us-east-1:"): the one other us-east-1 is the DynamoDB log store's
    # region inside the job run's Spark settings, which are the shipped start-job-run*.json's.
    outside_arns = text.replace(f":{REGION}:", "").count(REGION)
    assert outside_arns == text.count(f"ddb.region={REGION}")
    guide = (REPO / "docs" / "deployment.md").read_text()
    for placeholder in (ACCOUNT, f":{REGION}:", APPLICATION, CLUSTER, JOB_ROLE):
        assert placeholder in guide, placeholder


def test_deployment_guide_creates_every_file():
    guide = (REPO / "docs" / "deployment.md").read_text()
    for name, (service, _) in OPERATIONS.items():
        assert re.search(rf"aws {service} [a-z-]+ [^\n]*--cli-input-json file://\$S/{re.escape(name)}", guide), name
