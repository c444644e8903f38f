"""template.yaml's refresh triggers (SPEC sections 5 to 7): the schedule and its own retry
path, the API and its access log, the cron secret, and roles that may send to RefreshQueue,
read the cron secret and dead-letter a tick, nothing more."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from matchstats.config import ApiSettings, RefreshRequestSettings
from matchstats.messages import ScheduleEventShape, recognise_schedule_event
from testkit.events import load_event
from tests.unit.template_reading import iam_statements

ROOT = Path(__file__).resolve().parents[2]
TRIGGERS = ("ScheduledRefreshFunction", "RefreshApiFunction")
API_GATEWAY_TIMEOUT_S = 29
FOURTEEN_DAYS = 14 * 24 * 60 * 60
# What an operator reads in the API's access log, one JSON object per request.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "status": "$context.status",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "authorizerError": "$context.authorizer.error",
}
CONTEXT_VARIABLE = re.compile(r"\$context\.[A-Za-z.]+")


def _properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def _own_variables(template: dict[str, Any], function_id: str) -> dict[str, Any]:
    variables: dict[str, Any] = _properties(template, function_id)["Environment"]["Variables"]
    return variables


def _grants(template: dict[str, Any], function_id: str) -> dict[str, list[Any]]:
    """Action -> resources granted by the function's own role."""
    role_id = _properties(template, function_id)["Role"]["Fn::GetAtt"][0]
    grants: dict[str, list[Any]] = {}
    for _, statement in iam_statements(template["Resources"][role_id]["Properties"]["Policies"]):
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for action in actions:
            grants.setdefault(action, []).append(statement["Resource"])
    return grants


def test_the_schedule_runs_every_15_minutes_unless_told_otherwise(
    template: dict[str, Any],
) -> None:
    # Given ScheduledRefreshFunction
    function = _properties(template, "ScheduledRefreshFunction")

    # When reading its trigger and the parameter behind it
    [event] = function["Events"].values()
    parameter = template["Parameters"]["RefreshSchedule"]

    # Then EventBridge Scheduler calls it on the RefreshSchedule parameter, by default
    # every 15 minutes, under a name of CloudFormation's choosing
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "RefreshSchedule"}
    assert event["Properties"]["OmitName"] is True
    assert parameter["Default"] == "rate(15 minutes)"
    assert (function["CodeUri"], function["Handler"]) == (
        "functions/scheduled_refresh/",
        "app.lambda_handler",
    )


def test_the_schedule_input_is_what_the_handler_accepts(template: dict[str, Any]) -> None:
    # Given the schedule's Input, its context attributes filled in as Scheduler does
    [event] = _properties(template, "ScheduledRefreshFunction")["Events"].values()
    payload = (
        event["Properties"]["Input"]
        .replace("<aws.scheduler.scheduled-time>", "2026-11-28T12:15:00Z")
        .replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3")
    )

    # When the handler recognises it
    seen = recognise_schedule_event(json.loads(payload))

    # Then it is recognised as the schedule's own Input, its tick named for the log
    assert seen.event_shape is ScheduleEventShape.SCHEDULER_INPUT
    assert seen.execution_id == "d32c5kddcf5bb8c3"


def test_the_api_routes_every_method_on_the_path_to_the_function(
    template: dict[str, Any],
) -> None:
    # Given RefreshApiFunction
    function = _properties(template, "RefreshApiFunction")

    # When reading its API event
    [event] = function["Events"].values()

    # Then every method of /cron/update-stats on RefreshApi reaches it (it answers 405 to
    # all but POST), and it answers well inside API Gateway's timeout
    assert event["Type"] == "Api"
    assert event["Properties"] == {
        "RestApiId": {"Ref": "RefreshApi"},
        "Path": "/cron/update-stats",
        "Method": "ANY",
    }
    assert function["Timeout"] < API_GATEWAY_TIMEOUT_S
    assert (function["CodeUri"], function["Handler"]) == (
        "functions/refresh_api/",
        "app.lambda_handler",
    )


def test_the_api_is_throttled_and_its_url_is_an_output(template: dict[str, Any]) -> None:
    # Given the RefreshApi resource and the stack outputs
    api = _properties(template, "RefreshApi")
    outputs = template["Outputs"]

    # When reading its method settings and the published URL
    [settings] = api["MethodSettings"]
    url = outputs["RefreshApiUrl"]["Value"]["Fn::Sub"]

    # Then every method is throttled to 5 requests a second (bursts of 10), and the URL
    # names the API, its stage and the path
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (5, 10)
    assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
    assert url == (
        "https://${RefreshApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
        f"{api['StageName']}/cron/update-stats"
    )
    assert outputs["CronSecretArn"]["Value"] == {"Ref": "CronSecret"}


def test_the_cron_secret_is_generated_header_safe(template: dict[str, Any]) -> None:
    # Given the CronSecret resource
    secret = template["Resources"]["CronSecret"]

    # When reading how its value is generated
    generated = secret["Properties"]["GenerateSecretString"]

    # Then it is 48 letters and digits, and the API function gets its ARN, not its value
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert generated == {"PasswordLength": 48, "ExcludePunctuation": True}
    variables = _own_variables(template, "RefreshApiFunction")
    assert variables["CRON_SECRET_ARN"] == {"Ref": "CronSecret"}
    # ...declared empty only so that `sam local invoke --env-vars` may set it
    assert variables["CRON_SECRET"] == ""


@pytest.mark.parametrize(
    ("function_id", "settings"),
    [("ScheduledRefreshFunction", RefreshRequestSettings), ("RefreshApiFunction", ApiSettings)],
)
def test_the_deployed_environment_satisfies_the_settings(
    template: dict[str, Any], function_id: str, settings: type[RefreshRequestSettings]
) -> None:
    # Given the function's own variables, with references standing in for their values
    variables = {
        name: value if isinstance(value, str) else f"resolved-{name.lower()}"
        for name, value in _own_variables(template, function_id).items()
    }

    # When its settings are read from them, Then they validate and name RefreshQueue
    assert settings.from_env(variables)
    assert _own_variables(template, function_id)["REFRESH_QUEUE_URL"] == {"Ref": "RefreshQueue"}


def test_the_schedule_role_may_only_send_to_the_refresh_queue_and_its_dlq(
    template: dict[str, Any],
) -> None:
    # Given ScheduledRefreshFunction's role
    # When listing what it grants
    grants = _grants(template, "ScheduledRefreshFunction")

    # Then it is one action: requesting a refresh, and dead-letting a failed tick (Lambda
    # sends a failed asynchronous invocation with the function's role); no secret, no
    # database, no other queue
    assert grants == {
        "sqs:SendMessage": [
            {"Fn::GetAtt": ["RefreshQueue", "Arn"]},
            {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]},
        ]
    }


def test_a_tick_that_cannot_be_served_is_kept_in_the_schedules_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    # Given the schedule, its function and the schedule's dead-letter queue
    function = _properties(template, "ScheduledRefreshFunction")
    [event] = function["Events"].values()
    queue = _properties(template, "ScheduleDeadLetterQueue")
    dead_letter_arn = {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}

    # When reading where a failed tick goes
    schedule = event["Properties"]

    # Then Scheduler retries a tick it cannot deliver, then dead-letters it; Lambda
    # dead-letters a delivered tick whose invocation failed; the queue is encrypted and
    # keeps them 14 days
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert schedule["DeadLetterConfig"] == {"Arn": dead_letter_arn}
    assert function["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": dead_letter_arn}
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert template["Outputs"]["ScheduleDeadLetterQueueUrl"]["Value"] == {
        "Ref": "ScheduleDeadLetterQueue"
    }


def test_scheduler_may_only_invoke_the_function_and_dead_letter_its_ticks(
    template: dict[str, Any],
) -> None:
    # Given the role the schedule delivers its ticks with
    [event] = _properties(template, "ScheduledRefreshFunction")["Events"].values()
    role_id = event["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = _properties(template, role_id)

    # When listing who may assume it and what it grants
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    grants: dict[str, list[Any]] = {}
    for _, statement in iam_statements(role["Policies"]):
        assert statement["Effect"] == "Allow"
        grants.setdefault(statement["Action"], []).append(statement["Resource"])

    # Then only Scheduler, acting for this account, may assume it, to invoke the one
    # function and send to the schedule's dead-letter queue
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert grants == {
        "lambda:InvokeFunction": [{"Fn::GetAtt": ["ScheduledRefreshFunction", "Arn"]}],
        "sqs:SendMessage": [{"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}],
    }


def test_the_api_writes_a_json_access_log_to_a_group_of_its_own(
    template: dict[str, Any],
) -> None:
    # Given the API's access log setting
    setting = _properties(template, "RefreshApi")["AccessLogSetting"]
    group_id = setting["DestinationArn"]["Fn::GetAtt"][0]

    # When API Gateway fills in its variables (messageString arrives already quoted)
    def sample(match: re.Match[str]) -> str:
        return '"sample"' if match.group(0).endswith("messageString") else "sample"

    line = json.loads(CONTEXT_VARIABLE.sub(sample, setting["Format"]))

    # Then each request is one JSON object carrying who called, the outcome and the
    # latencies, in a log group kept LogRetentionDays
    assert setting["DestinationArn"] == {"Fn::GetAtt": [group_id, "Arn"]}
    assert _properties(template, group_id)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert "\n" not in setting["Format"]
    fields = json.loads(setting["Format"].replace("$context.error.messageString", '""'))
    for field, variable in ACCESS_LOG_FIELDS.items():
        assert fields[field] == variable, field
    assert set(line) >= set(ACCESS_LOG_FIELDS)


def test_the_api_function_has_a_small_reserved_concurrency(template: dict[str, Any]) -> None:
    # Given RefreshApiFunction and the parameter behind its concurrency
    function = _properties(template, "RefreshApiFunction")
    parameter = template["Parameters"]["RefreshApiReservedConcurrency"]

    # When reading its reservation
    reserved = function["ReservedConcurrentExecutions"]

    # Then a small, bounded number of executions is reserved for it, which also caps it
    assert reserved == {"Ref": "RefreshApiReservedConcurrency"}
    assert parameter["Type"] == "Number"
    assert 1 <= parameter["MinValue"] <= parameter["Default"] <= 5
    assert parameter["MaxValue"] <= 20


def test_the_api_role_may_only_send_to_the_refresh_queue_and_read_the_cron_secret(
    template: dict[str, Any],
) -> None:
    # Given RefreshApiFunction's role
    # When listing what it grants
    grants = _grants(template, "RefreshApiFunction")

    # Then it sends to RefreshQueue and reads the cron secret, never the database secret
    assert grants == {
        "sqs:SendMessage": [{"Fn::GetAtt": ["RefreshQueue", "Arn"]}],
        "secretsmanager:GetSecretValue": [{"Ref": "CronSecret"}],
    }


@pytest.mark.parametrize("function_id", TRIGGERS)
def test_the_triggers_stay_out_of_the_vpc(template: dict[str, Any], function_id: str) -> None:
    # Given a trigger function, which needs SQS (and Secrets Manager) but no database
    # When reading its network configuration
    function = _properties(template, function_id)

    # Then it has none: no VPC, so no NAT or endpoints needed to reach AWS
    assert "VpcConfig" not in function


def test_env_json_and_the_sample_api_event_share_the_local_secret() -> None:
    # Given env.json and events/refresh-api.json
    env = json.loads((ROOT / "env.json").read_text(encoding="utf-8"))
    event = load_event("refresh-api.json")

    # When reading the local secret from each
    local_secret = env["RefreshApiFunction"]["CRON_SECRET"]

    # Then a local invoke of the sample event is authorised, and both triggers are set up
    assert event["headers"]["Authorization"] == f"Bearer {local_secret}"
    assert event["multiValueHeaders"]["Authorization"] == [f"Bearer {local_secret}"]
    assert "REFRESH_QUEUE_URL" in env["ScheduledRefreshFunction"]
