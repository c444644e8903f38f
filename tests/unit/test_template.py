"""template.yaml keeps the contract of SPEC sections 1, 5 and 6: runtimes and the layer,
the queues and their dead-letter queues, alarms and logs, CalculatePointsFunction's trigger,
environment and role, the VPC, the outputs, env.json and the sample event. SAM CLI's and
cfn-lint's verdicts on it: test_template_linters.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.template import resources_of_type
from tests.unit.template_reading import (
    as_list,
    deployed_environment,
    effective,
    function_resources,
    iam_statements,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

RUNTIME = "python3.13"
QUEUES_AND_DEAD_LETTER_QUEUES = [
    ("PointsQueue", "PointsDeadLetterQueue"),
    ("RefreshQueue", "RefreshDeadLetterQueue"),
]
# EventBridge Scheduler's dead-letter queue: it has no source queue, the schedule and the
# function's asynchronous invocations dead-letter into it.
SCHEDULE_DEAD_LETTER_QUEUE = "ScheduleDeadLetterQueue"
DEAD_LETTER_QUEUES = [dlq for _, dlq in QUEUES_AND_DEAD_LETTER_QUEUES] + [
    SCHEDULE_DEAD_LETTER_QUEUE
]
FOURTEEN_DAYS = 14 * 24 * 60 * 60
# Variables only a local run sets: in AWS the database comes from DB_SECRET_ARN and
# boto3 talks to the real endpoints.
LOCAL_ONLY_VARIABLES = {"DATABASE_URL", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"}


def _sqs_events(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    events = template["Resources"][function_id]["Properties"].get("Events", {})
    return [event["Properties"] for event in events.values() if event["Type"] == "SQS"]


def _role_statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role = effective(template, function_id, "Role")
    assert role is not None, f"{function_id} has no explicit Role"
    role_id = role["Fn::GetAtt"][0]
    return [statement for _, statement in iam_statements(template["Resources"][role_id])]


def _granted(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [
        resource
        for statement in statements
        if statement["Effect"] == "Allow" and action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]


def test_every_function_and_the_layer_target_python_3_13(template: dict[str, Any]) -> None:
    # Given the template
    functions = function_resources(template)
    layer = template["Resources"]["MatchstatsLayer"]

    # When reading each function's runtime as deployed, and the layer's build settings
    runtimes = {
        function_id: effective(template, function_id, "Runtime") for function_id in functions
    }

    # Then everything runs and builds on the one Python version
    assert functions, "the template defines no functions"
    assert set(runtimes.values()) == {RUNTIME}, runtimes
    assert layer["Metadata"]["BuildMethod"] == RUNTIME
    assert RUNTIME in layer["Properties"]["CompatibleRuntimes"]


def test_layer_ships_the_shared_package_to_every_function(template: dict[str, Any]) -> None:
    # Given the layer resource
    layer = template["Resources"]["MatchstatsLayer"]

    # When reading where it is built from and which functions load it
    layers_by_function = {
        function_id: effective(template, function_id, "Layers")
        for function_id in function_resources(template)
    }

    # Then it is built from layers/matchstats/ and every function loads it
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/matchstats/"
    for function_id, layers in layers_by_function.items():
        assert {"Ref": "MatchstatsLayer"} in (layers or []), function_id


def test_the_five_queues_exist_encrypted(template: dict[str, Any]) -> None:
    # Given the template
    # When listing its queues
    queues = resources_of_type(template, "AWS::SQS::Queue")

    # Then they are the contract's four and the schedule's dead-letter queue, each with
    # SQS-managed encryption
    expected = {queue for pair in QUEUES_AND_DEAD_LETTER_QUEUES for queue in pair}
    assert set(queues) == expected | {SCHEDULE_DEAD_LETTER_QUEUE}
    for queue_id, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, queue_id


@pytest.mark.parametrize(("queue_id", "dead_letter_queue_id"), QUEUES_AND_DEAD_LETTER_QUEUES)
def test_a_queue_dead_letters_to_its_own_dlq_after_three_receives(
    template: dict[str, Any], queue_id: str, dead_letter_queue_id: str
) -> None:
    # Given a source queue
    queue = template["Resources"][queue_id]["Properties"]

    # When reading its redrive policy
    redrive = queue["RedrivePolicy"]

    # Then the third failed receive moves the message to the matching dead-letter queue
    assert redrive["maxReceiveCount"] == 3
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dead_letter_queue_id, "Arn"]}


@pytest.mark.parametrize("dead_letter_queue_id", [dlq for _, dlq in QUEUES_AND_DEAD_LETTER_QUEUES])
def test_dead_letter_queues_keep_messages_14_days(
    template: dict[str, Any], dead_letter_queue_id: str
) -> None:
    # Given a dead-letter queue and its source queue
    dead_letter_queue = template["Resources"][dead_letter_queue_id]["Properties"]
    source_id = dict((dlq, queue) for queue, dlq in QUEUES_AND_DEAD_LETTER_QUEUES)[
        dead_letter_queue_id
    ]
    source = template["Resources"][source_id]["Properties"]

    # When comparing their retention periods
    retention = dead_letter_queue["MessageRetentionPeriod"]

    # Then the DLQ keeps messages 14 days, longer than the source (a dead-lettered
    # message keeps its original enqueue time)
    assert retention == FOURTEEN_DAYS
    assert source["MessageRetentionPeriod"] < retention


@pytest.mark.parametrize("dead_letter_queue_id", DEAD_LETTER_QUEUES)
def test_every_dead_letter_queue_raises_an_alarm_when_it_holds_anything(
    template: dict[str, Any], dead_letter_queue_id: str
) -> None:
    # Given the template's alarms
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")

    # When finding the ones that watch the dead-letter queue
    watching = [
        alarm["Properties"]
        for alarm in alarms.values()
        if {"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_letter_queue_id, "QueueName"]}}
        in alarm["Properties"].get("Dimensions", [])
    ]

    # Then one alarm fires within a minute of a single visible message
    assert len(watching) == 1, watching
    [alarm] = watching
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (60, 1)


def test_every_function_logs_to_a_declared_group_kept_30_days_by_default(
    template: dict[str, Any],
) -> None:
    # Given every function and the log groups the template declares
    log_groups = resources_of_type(template, "AWS::Logs::LogGroup")
    parameter = template["Parameters"]["LogRetentionDays"]

    # When following each function's LoggingConfig to its group
    targets = {
        function_id: function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        for function_id, function in function_resources(template).items()
    }

    # Then each function has a group of its own, named after it under /aws/lambda/, and
    # every group in the template keeps its logs LogRetentionDays, 30 unless told otherwise
    assert len(set(map(str, targets.values()))) == len(targets), targets
    for function_id, target in targets.items():
        assert isinstance(target, dict), function_id
        assert set(target) == {"Ref"}, function_id
        group = log_groups[target["Ref"]]["Properties"]
        assert group["LogGroupName"] == {
            "Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{function_id}"
        }
    for group_id, group in log_groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group_id
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 30
    assert 30 in parameter["AllowedValues"]


def test_visibility_timeout_is_at_least_six_function_timeouts(template: dict[str, Any]) -> None:
    # Given every SQS-triggered function and the queue it consumes
    consumers = [
        (function_id, event["Queue"]["Fn::GetAtt"][0])
        for function_id in function_resources(template)
        for event in _sqs_events(template, function_id)
    ]

    # When comparing each queue's visibility timeout to its consumer's timeout
    too_short = {}
    for function_id, queue_id in consumers:
        # Lambda's default timeout is 3 s; SQS's default visibility timeout is 30 s.
        timeout = effective(template, function_id, "Timeout") or 3
        visibility = template["Resources"][queue_id]["Properties"].get("VisibilityTimeout", 30)
        if visibility < 6 * timeout:
            too_short[queue_id] = {"visibility": visibility, "function timeout": timeout}

    # Then no message reappears while an invocation may still hold it
    assert ("CalculatePointsFunction", "PointsQueue") in consumers
    assert too_short == {}


def test_calculate_points_consumes_points_in_batches_of_ten(template: dict[str, Any]) -> None:
    # Given CalculatePointsFunction
    # When reading its SQS trigger and timeout
    [event] = _sqs_events(template, "CalculatePointsFunction")
    timeout = effective(template, "CalculatePointsFunction", "Timeout")

    # Then it reads PointsQueue 10 at a time, fails single records, at most 5 at once
    assert event["Queue"] == {"Fn::GetAtt": ["PointsQueue", "Arn"]}
    assert event["BatchSize"] == 10
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["ScalingConfig"]["MaximumConcurrency"] == 5
    assert timeout == 120
    assert effective(template, "CalculatePointsFunction", "Handler") == "app.lambda_handler"
    assert (
        template["Resources"]["CalculatePointsFunction"]["Properties"]["CodeUri"]
        == "functions/calculate_points/"
    )


def test_calculate_points_environment_points_at_its_queues(template: dict[str, Any]) -> None:
    # Given CalculatePointsFunction
    # When reading its environment as deployed
    environment = deployed_environment(template, "CalculatePointsFunction")

    # Then it finds its queues and the secret, and never a database URL with credentials
    assert environment["POINTS_QUEUE_URL"] == {"Ref": "PointsQueue"}
    assert environment["REFRESH_QUEUE_URL"] == {"Ref": "RefreshQueue"}
    assert environment["DEAD_LETTER_QUEUE_URL"] == {"Ref": "PointsDeadLetterQueue"}
    assert environment["DB_SECRET_ARN"] == {"Ref": "DbSecretArn"}
    assert environment["REFRESH_DELAY_SECONDS"] == {"Ref": "RefreshDelaySeconds"}
    assert environment["POWERTOOLS_SERVICE_NAME"] == "matchstats"
    assert "DATABASE_URL" not in environment


def test_refresh_delay_is_bounded_by_the_sqs_maximum(template: dict[str, Any]) -> None:
    # Given the RefreshDelaySeconds parameter
    # When reading its bounds
    parameter = template["Parameters"]["RefreshDelaySeconds"]

    # Then it defaults to 1 s and stays within SQS DelaySeconds (0 to 900)
    assert parameter["Type"] == "Number"
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (1, 0, 900)
    assert "Default" not in template["Parameters"]["DbSecretArn"]


def test_no_iam_statement_grants_a_wildcard_action(template: dict[str, Any]) -> None:
    # Given every IAM statement in the template
    statements = [statement for _, statement in iam_statements(template["Resources"])]

    # When collecting actions granted by pattern rather than by name
    wildcards = [
        action
        for statement in statements
        for action in as_list(statement.get("Action", []))
        if isinstance(action, str) and "*" in action
    ]
    not_actions = [statement for statement in statements if "NotAction" in statement]

    # Then there are none: every permission is named
    assert statements, "no IAM statements found; the explicit roles are missing"
    assert wildcards == []
    assert not_actions == []


def test_calculate_points_may_touch_only_its_own_queues_and_secret(
    template: dict[str, Any],
) -> None:
    # Given the statements of CalculatePointsFunction's role
    statements = _role_statements(template, "CalculatePointsFunction")

    # When reading which resources each action reaches
    def arn(queue_id: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [queue_id, "Arn"]}

    # Then it consumes PointsQueue, sends to its DLQ and RefreshQueue, reads one secret
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert _granted(statements, action) == [arn("PointsQueue")], action
    sent_to = _granted(statements, "sqs:SendMessage")
    assert sorted(sent_to, key=str) == sorted(
        [arn("PointsDeadLetterQueue"), arn("RefreshQueue")], key=str
    )
    assert _granted(statements, "secretsmanager:GetSecretValue") == [{"Ref": "DbSecretArn"}]


def test_vpc_is_applied_only_when_subnets_and_security_groups_are_given(
    template: dict[str, Any],
) -> None:
    # Given the VPC parameters and CalculatePointsFunction
    parameters = template["Parameters"]

    # When reading its VpcConfig
    vpc_config = template["Resources"]["CalculatePointsFunction"]["Properties"]["VpcConfig"]

    # Then it is optional: empty by default, present only under HasVpc
    assert parameters["SubnetIds"]["Default"] == ""
    assert parameters["SecurityGroupIds"]["Default"] == ""
    condition, when_vpc, otherwise = vpc_config["Fn::If"]
    assert condition == "HasVpc"
    assert when_vpc == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert "HasVpc" in template["Conditions"]


def test_outputs_publish_the_queues_function_and_layer(template: dict[str, Any]) -> None:
    # Given the template
    # When reading its outputs
    outputs = template["Outputs"]

    # Then operators and the application find every queue, the function and the layer
    assert outputs["PointsQueueUrl"]["Value"] == {"Ref": "PointsQueue"}
    assert outputs["PointsQueueArn"]["Value"] == {"Fn::GetAtt": ["PointsQueue", "Arn"]}
    assert outputs["RefreshQueueUrl"]["Value"] == {"Ref": "RefreshQueue"}
    assert outputs["PointsDeadLetterQueueUrl"]["Value"] == {"Ref": "PointsDeadLetterQueue"}
    assert outputs["RefreshDeadLetterQueueUrl"]["Value"] == {"Ref": "RefreshDeadLetterQueue"}
    assert outputs["CalculatePointsFunctionArn"]["Value"] == {
        "Fn::GetAtt": ["CalculatePointsFunction", "Arn"]
    }
    assert outputs["MatchstatsLayerArn"]["Value"] == {"Ref": "MatchstatsLayer"}


def test_env_json_configures_only_template_functions(template: dict[str, Any]) -> None:
    # Given env.json, the `sam local invoke --env-vars` file
    env_file = json.loads((REPO_ROOT / "env.json").read_text(encoding="utf-8"))

    # When comparing each entry with the function's deployed environment
    for function_id, variables in env_file.items():
        deployed = deployed_environment(template, function_id)

        # Then it names a real function, sets every queue it uses, and adds only local ones
        assert function_id in function_resources(template)
        queue_variables = {name for name in deployed if name.endswith("_QUEUE_URL")}
        assert queue_variables <= set(variables), function_id
        assert set(variables) - set(deployed) <= LOCAL_ONLY_VARIABLES, function_id


def test_calculate_points_event_is_a_consistent_sqs_event() -> None:
    # Given the sample event in events/
    event = json.loads((REPO_ROOT / "events" / "calculate-points.json").read_text("utf-8"))

    # When checking each record as SQS would have produced it
    records = event["Records"]

    # Then each body's MD5 matches and every record comes from PointsQueue
    assert [json.loads(record["body"]) for record in records] == [
        {"matchId": 1, "scoreVersion": 1},
        {"matchId": 2},
    ]
    for record in records:
        assert (
            record["md5OfBody"]
            == hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
        )
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"].endswith(":PointsQueue")
