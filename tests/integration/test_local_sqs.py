"""The local SQS server and the bundle's queues created in it from template.yaml."""

from __future__ import annotations

import json
import socket
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.queue_specs import (
    QueueSpec,
    create_queues,
    queue_arn,
    queue_counts,
    queue_specs_from_template,
)
from devstack.sqs import LocalSqs
from devstack.template import TEMPLATE_PATH
from ops.sqs import oldest_message_ages

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BUNDLE_QUEUES = {
    "PointsQueue",
    "PointsDeadLetterQueue",
    "RefreshQueue",
    "RefreshDeadLetterQueue",
    "ScheduleDeadLetterQueue",
}


def redrive_policy(client: SQSClient, url: str) -> dict[str, object]:
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    policy: dict[str, object] = json.loads(attributes["Attributes"]["RedrivePolicy"])
    return policy


def test_template_queues_become_specs_named_by_logical_id() -> None:
    # Given the bundle's template.yaml
    # When its queues are read
    specs = {spec.name: spec for spec in queue_specs_from_template(TEMPLATE_PATH)}

    # Then there are the five queues, each source redriving to its own DLQ after 3 receives
    assert set(specs) == BUNDLE_QUEUES
    assert specs["PointsQueue"].dead_letter_queue == "PointsDeadLetterQueue"
    assert specs["RefreshQueue"].dead_letter_queue == "RefreshDeadLetterQueue"
    assert specs["PointsQueue"].max_receive_count == 3
    assert specs["RefreshQueue"].max_receive_count == 3
    assert specs["PointsDeadLetterQueue"].dead_letter_queue is None
    assert specs["PointsDeadLetterQueue"].message_retention == 14 * 24 * 3600
    assert specs["ScheduleDeadLetterQueue"].dead_letter_queue is None
    assert specs["ScheduleDeadLetterQueue"].message_retention == 14 * 24 * 3600


def test_template_values_resolve_parameter_defaults_and_long_forms(tmp_path: Path) -> None:
    # Given a template using a !Ref to a parameter, a long-form GetAtt and a quoted count
    template = tmp_path / "template.yaml"
    template.write_text(
        textwrap.dedent(
            """
            Parameters:
              Visibility:
                Type: Number
                Default: 42
            Resources:
              Jobs:
                Type: AWS::SQS::Queue
                Properties:
                  VisibilityTimeout: !Ref Visibility
                  DelaySeconds: 5
                  RedrivePolicy:
                    deadLetterTargetArn:
                      Fn::GetAtt: JobsDlq.Arn
                    maxReceiveCount: "4"
              JobsDlq:
                Type: AWS::SQS::Queue
              NotAQueue:
                Type: AWS::SNS::Topic
            """
        ),
        encoding="utf-8",
    )

    # When its queues are read
    specs = queue_specs_from_template(template)

    # Then the values are what CloudFormation would deploy with no parameter overrides
    assert specs == [
        QueueSpec(
            name="Jobs",
            visibility_timeout=42,
            delay_seconds=5,
            dead_letter_queue="JobsDlq",
            max_receive_count=4,
        ),
        QueueSpec(name="JobsDlq"),
    ]


def test_template_value_unknown_before_deployment_is_an_error(tmp_path: Path) -> None:
    # Given a queue whose visibility timeout is computed at deployment
    template = tmp_path / "template.yaml"
    template.write_text(
        textwrap.dedent(
            """
            Resources:
              Jobs:
                Type: AWS::SQS::Queue
                Properties:
                  VisibilityTimeout: !Sub "${Timeout}"
            """
        ),
        encoding="utf-8",
    )

    # When / Then reading it names the property instead of guessing
    with pytest.raises(ValueError, match=r"Jobs\.VisibilityTimeout"):
        queue_specs_from_template(template)


def test_create_queues_builds_the_bundle_queues_with_redrive(sqs_client: SQSClient) -> None:
    # Given the template's specs, which list each source queue before its DLQ
    specs = queue_specs_from_template(TEMPLATE_PATH)

    # When they are created
    urls = create_queues(sqs_client, specs)

    # Then all four exist, with the template's attributes and redrive policies
    assert set(urls) == BUNDLE_QUEUES
    points = sqs_client.get_queue_attributes(QueueUrl=urls["PointsQueue"], AttributeNames=["All"])
    assert points["Attributes"]["VisibilityTimeout"] == "720"
    assert points["Attributes"]["MessageRetentionPeriod"] == "345600"
    for source, dead_letter in [
        ("PointsQueue", "PointsDeadLetterQueue"),
        ("RefreshQueue", "RefreshDeadLetterQueue"),
    ]:
        assert redrive_policy(sqs_client, urls[source]) == {
            "deadLetterTargetArn": queue_arn(sqs_client, urls[dead_letter]),
            "maxReceiveCount": 3,
        }


def test_create_queues_is_idempotent_and_converges_to_the_spec(sqs_client: SQSClient) -> None:
    # Given queues that already exist
    name = f"again-{uuid.uuid4().hex[:8]}"
    specs = [
        QueueSpec(
            name=name, visibility_timeout=5, dead_letter_queue=f"{name}-dlq", max_receive_count=3
        ),
        QueueSpec(name=f"{name}-dlq"),
    ]
    first = create_queues(sqs_client, specs)

    # When the same specs are created again, then once more with another visibility timeout
    second = create_queues(sqs_client, specs)
    changed = [QueueSpec(name=name, visibility_timeout=9), specs[1]]
    third = create_queues(sqs_client, changed)

    # Then the URLs never change and the queue ends with the last spec's attributes
    assert first == second == third
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=third[name], AttributeNames=["VisibilityTimeout"]
    )
    assert attributes["Attributes"]["VisibilityTimeout"] == "9"


def test_dead_letter_queues_that_form_a_cycle_are_refused(sqs_client: SQSClient) -> None:
    # Given two queues that name each other as dead-letter queue
    specs = [
        QueueSpec(name="ping", dead_letter_queue="pong", max_receive_count=1),
        QueueSpec(name="pong", dead_letter_queue="ping", max_receive_count=1),
    ]

    # When / Then creating them fails before anything is created
    with pytest.raises(ValueError, match="cycle"):
        create_queues(sqs_client, specs)


def test_message_received_three_times_moves_to_dlq_on_next_receive(
    sqs_client: SQSClient,
) -> None:
    # Given a queue that dead-letters after 3 receives, holding one message
    name = f"redrive-{uuid.uuid4().hex[:8]}"
    urls = create_queues(
        sqs_client,
        [
            QueueSpec(name=name, dead_letter_queue=f"{name}-dlq", max_receive_count=3),
            QueueSpec(name=f"{name}-dlq"),
        ],
    )
    sqs_client.send_message(QueueUrl=urls[name], MessageBody='{"matchId": 42}')

    # When it is received three times and never deleted (visibility 0: visible again at once)
    receive_counts = []
    for _ in range(3):
        received = sqs_client.receive_message(
            QueueUrl=urls[name], VisibilityTimeout=0, MessageSystemAttributeNames=["All"]
        )["Messages"]
        receive_counts.append(received[0]["Attributes"]["ApproximateReceiveCount"])
    fourth = sqs_client.receive_message(QueueUrl=urls[name], VisibilityTimeout=0)

    # Then the fourth receive finds nothing, and the message waits in the dead-letter queue
    assert receive_counts == ["1", "2", "3"]
    assert "Messages" not in fourth
    assert queue_counts(sqs_client, urls[name]).total == 0
    dead = sqs_client.receive_message(QueueUrl=urls[f"{name}-dlq"], WaitTimeSeconds=1)
    assert [message["Body"] for message in dead["Messages"]] == ['{"matchId": 42}']


def test_each_local_sqs_is_a_loopback_server_with_its_own_queues(
    local_sqs: LocalSqs, sqs_client: SQSClient
) -> None:
    # Given the module's server, which holds queues by now
    create_queues(sqs_client, [QueueSpec(name="mine")])

    # When a second server runs alongside it, then stops
    with LocalSqs() as other:
        other_queues = other.client().list_queues().get("QueueUrls", [])
        other_endpoint = urlsplit(other.endpoint_url)
        environment = other.environment()

    # Then both listen on 127.0.0.1 only, the second saw none of the first's queues,
    # pointed child processes at itself, and no longer accepts connections
    assert urlsplit(local_sqs.endpoint_url).hostname == "127.0.0.1"
    assert other_endpoint.hostname == "127.0.0.1"
    assert other_queues == []
    assert environment["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{other_endpoint.port}"
    assert environment["AWS_ACCESS_KEY_ID"] == "testing"
    assert sqs_client.get_queue_url(QueueName="mine")["QueueUrl"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", other_endpoint.port or 0), timeout=1).close()


def test_message_move_tasks_are_refused_as_sqs_refuses_an_unsupported_operation(
    local_sqs: LocalSqs, sqs_client: SQSClient, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given a dead-letter queue on the local SQS, which has no message move tasks
    [url] = create_queues(sqs_client, [QueueSpec(name=f"moves-{uuid.uuid4().hex[:8]}")]).values()
    arn = queue_arn(sqs_client, url)
    capfd.readouterr()

    # When a client lists, starts and cancels move tasks
    errors = []
    for call in (
        lambda: sqs_client.list_message_move_tasks(SourceArn=arn),
        lambda: sqs_client.start_message_move_task(SourceArn=arn),
        lambda: sqs_client.cancel_message_move_task(TaskHandle="nothing"),
    ):
        with pytest.raises(ClientError) as raised:
            call()
        errors.append(raised.value.response)

    # Then each is SQS's answer to an unsupported operation: HTTP 400, not retried
    for response in errors:
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert response["Error"]["Code"] == "AWS.SimpleQueueService.UnsupportedOperation"
        assert response["ResponseMetadata"]["RetryAttempts"] == 0
    # ...and the server printed nothing: no traceback in the terminal that runs it
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
    assert "not been implemented" not in printed.err + printed.out


def test_the_oldest_message_age_is_reported_as_cloudwatch_would_without_a_receive(
    local_sqs: LocalSqs, sqs_client: SQSClient
) -> None:
    # Given a queue holding a message sent two seconds ago, one in flight, and an empty queue
    specs = [
        QueueSpec(name=f"aged-{uuid.uuid4().hex[:8]}"),
        QueueSpec(name=f"idle-{uuid.uuid4().hex[:8]}"),
    ]
    aged, idle = create_queues(sqs_client, specs).values()
    sqs_client.send_message(QueueUrl=aged, MessageBody="oldest")
    time.sleep(2)
    sqs_client.send_message(QueueUrl=aged, MessageBody="newer")
    cloudwatch = boto3.session.Session().client(
        "cloudwatch",
        endpoint_url=local_sqs.endpoint_url,
        region_name=local_sqs.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    # When the operator's status asks CloudWatch for ApproximateAgeOfOldestMessage
    ages = oldest_message_ages(cloudwatch, [aged, idle])

    # Then the busy queue's age is that of its oldest message, the idle one has none
    assert ages[idle] is None
    assert ages[aged] is not None
    assert 2 <= ages[aged] < 10
    # ...and no message was received to tell it
    received = sqs_client.receive_message(
        QueueUrl=aged, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert sorted(m["Attributes"]["ApproximateReceiveCount"] for m in received) == ["1", "1"]
