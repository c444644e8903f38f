"""The local SQS event source mapping keeps Lambda's delivery and failure semantics."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from devstack.esm import EventSourceMapping
from devstack.lambda_sqs import batch_item_failures
from devstack.queue_specs import queue_counts
from matchstats.queues import message_size, pack_requests
from tests.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from tests.integration.conftest import RedrivenQueue

MakeQueue = Callable[..., "RedrivenQueue"]
StartMapping = Callable[..., EventSourceMapping]

DRAIN_TIMEOUT_S = 20


@dataclass
class Deliveries:
    """What a toy handler saw, recorded from the worker threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=dict)

    def record(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.records.append(record)
            self.times.setdefault(record["body"], []).append(time.monotonic())

    def count_by_body(self) -> Counter[str]:
        with self.lock:
            return Counter(record["body"] for record in self.records)

    def receive_counts(self, body: str) -> list[str]:
        with self.lock:
            return [
                r["attributes"]["ApproximateReceiveCount"]
                for r in self.records
                if r["body"] == body
            ]


def send_bodies(client: SQSClient, queue: RedrivenQueue, bodies: list[str]) -> None:
    for request in pack_requests(bodies, message_size):
        client.send_message_batch(
            QueueUrl=queue.url,
            Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(request)],
        )


def dead_letter_bodies(client: SQSClient, queue: RedrivenQueue) -> list[str]:
    bodies: list[str] = []
    while True:
        response = client.receive_message(QueueUrl=queue.dead_letter_url, MaxNumberOfMessages=10)
        if not response.get("Messages"):
            return sorted(bodies)
        bodies.extend(message["Body"] for message in response["Messages"])


def test_partial_batch_failure_deletes_only_the_successes(
    sqs_client: SQSClient, make_queue: MakeQueue, start_mapping: StartMapping
) -> None:
    # Given five messages and a handler that reports "2" failed on its first delivery only
    queue = make_queue()
    send_bodies(sqs_client, queue, ["0", "1", "2", "3", "4"])
    deliveries = Deliveries()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            deliveries.record(record)
            if record["body"] == "2" and record["attributes"]["ApproximateReceiveCount"] == "1":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    # When the mapping runs until the queue is empty
    mapping = start_mapping(queue, handler)
    mapping.drain(DRAIN_TIMEOUT_S)

    # Then only "2" came back, after its visibility timeout, with its receive count raised
    assert deliveries.count_by_body() == {"0": 1, "1": 1, "2": 2, "3": 1, "4": 1}
    assert deliveries.receive_counts("2") == ["1", "2"]
    first, second = deliveries.times["2"]
    assert second - first >= 1.5  # the queue's visibility timeout is 2 s
    assert dead_letter_bodies(sqs_client, queue) == []
    stats = mapping.stats
    assert (stats.records_received, stats.records_failed, stats.records_deleted) == (6, 1, 5)


def test_a_message_that_always_fails_is_dead_lettered_after_three_receives(
    sqs_client: SQSClient, make_queue: MakeQueue, start_mapping: StartMapping
) -> None:
    # Given nine good messages, one poison message, and a handler that always fails the poison
    queue = make_queue()
    good = [f"good-{number}" for number in range(9)]
    send_bodies(sqs_client, queue, [*good, "poison"])
    deliveries = Deliveries()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        for record in event["Records"]:
            deliveries.record(record)
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in event["Records"]
                if r["body"] == "poison"
            ]
        }

    # When the mapping runs until the source queue is empty
    mapping = start_mapping(queue, handler)
    mapping.drain(DRAIN_TIMEOUT_S)

    # Then the poison was tried maxReceiveCount times and waits in the DLQ; the rest ran once
    seen = deliveries.count_by_body()
    assert seen["poison"] == queue.max_receive_count == 3
    assert all(seen[body] == 1 for body in good)
    assert deliveries.receive_counts("poison") == ["1", "2", "3"]
    assert dead_letter_bodies(sqs_client, queue) == ["poison"]
    assert mapping.stats.records_deleted == len(good)


def raise_an_error(event: dict[str, Any]) -> Any:
    raise RuntimeError("database unreachable")


def empty_identifier(event: dict[str, Any]) -> Any:
    return {"batchItemFailures": [{"itemIdentifier": ""}]}


def not_json(event: dict[str, Any]) -> Any:
    return {"batchItemFailures": [], "at": object()}


@pytest.mark.parametrize("outcome", [raise_an_error, empty_identifier, not_json])
def test_a_failed_invocation_deletes_no_message(
    sqs_client: SQSClient,
    make_queue: MakeQueue,
    start_mapping: StartMapping,
    outcome: Callable[[dict[str, Any]], Any],
) -> None:
    # Given three messages and a handler whose invocation fails as a whole (the other
    # invalid partial responses are covered by the response-reading test below)
    queue = make_queue(visibility_timeout=30)
    send_bodies(sqs_client, queue, ["a", "b", "c"])
    deliveries = Deliveries()

    def handler(event: dict[str, Any], context: Any) -> Any:
        for record in event["Records"]:
            deliveries.record(record)
        return outcome(event)

    # When the mapping has handed every message to the handler once, and stopped
    mapping = start_mapping(queue, handler, timeout_s=30)
    wait_for(lambda: len(deliveries.records) >= 3)
    mapping.stop()

    # Then all three are still on the queue, in flight until their visibility timeout
    assert sorted(deliveries.count_by_body()) == ["a", "b", "c"]
    counts = queue_counts(sqs_client, queue.url)
    assert (counts.visible, counts.not_visible) == (0, 3)
    stats = mapping.stats
    assert stats.records_deleted == 0
    assert stats.records_failed == 3
    assert stats.handler_errors >= 1


def test_records_have_the_shape_lambda_sends(
    sqs_client: SQSClient, make_queue: MakeQueue, start_mapping: StartMapping
) -> None:
    # Given a plain message and one with string, number and binary message attributes
    queue = make_queue()
    sqs_client.send_message(QueueUrl=queue.url, MessageBody='{"matchId": 1}')
    sqs_client.send_message(
        QueueUrl=queue.url,
        MessageBody='{"matchId": 2}',
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "points"},
            "version": {"DataType": "Number", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    events: list[dict[str, Any]] = []
    contexts: list[Any] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        events.append(event)
        contexts.append((context, context.get_remaining_time_in_millis()))

    # When the mapping delivers them
    mapping = start_mapping(queue, handler, function_name="CalculatePointsFunction")
    mapping.drain(DRAIN_TIMEOUT_S)

    # Then each record carries exactly Lambda's keys, with Lambda's attribute shapes
    records = {r["body"]: r for event in events for r in event["Records"]}
    assert all(set(event) == {"Records"} for event in events)
    lambda_keys = {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    plain, attributed = records['{"matchId": 1}'], records['{"matchId": 2}']
    assert set(plain) == lambda_keys
    assert set(attributed) == lambda_keys | {"md5OfMessageAttributes"}
    for record in (plain, attributed):
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queue.arn
        assert record["awsRegion"] == "us-east-1"
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324
        assert {
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        } <= set(record["attributes"])
        assert all(isinstance(value, str) for value in record["attributes"].values())
    assert plain["messageAttributes"] == {}
    assert attributed["messageAttributes"] == {
        "kind": {
            "stringValue": "points",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "version": {
            "stringValue": "3",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\x01").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    # ...which Powertools' own SQS model, used by the handlers, accepts
    for event in events:
        SqsModel.model_validate(event)
    # ...and the context is a fresh Lambda context with the function's budget
    context, remaining_ms = contexts[0]
    assert context.function_name == "CalculatePointsFunction"
    assert context.invoked_function_arn.endswith(":function:CalculatePointsFunction")
    assert 0 < remaining_ms <= 2000
    assert len({c.aws_request_id for c, _ in contexts}) == len(contexts)


def test_maximum_concurrency_is_reached_and_never_exceeded(
    sqs_client: SQSClient, make_queue: MakeQueue, start_mapping: StartMapping
) -> None:
    # Given fifteen messages and a slow handler that tracks how many copies of it run at once
    queue = make_queue()
    send_bodies(sqs_client, queue, [str(number) for number in range(15)])
    lock = threading.Lock()
    running = 0
    peak = 0
    deliveries = Deliveries()

    def handler(event: dict[str, Any], context: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.4)
        for record in event["Records"]:
            deliveries.record(record)
        with lock:
            running -= 1

    # When a mapping of one record per batch and a maximum concurrency of 5 works through them
    mapping = start_mapping(queue, handler, batch_size=1, maximum_concurrency=5)
    mapping.drain(DRAIN_TIMEOUT_S)

    # Then five invocations ran side by side, never six, and each message ran once
    assert peak == 5
    assert deliveries.count_by_body() == {str(number): 1 for number in range(15)}


def test_handler_shortened_visibility_brings_a_failure_back_sooner(
    sqs_client: SQSClient, make_queue: MakeQueue, start_mapping: StartMapping
) -> None:
    # Given a queue whose visibility timeout (20 s) would hold a failure back for long,
    # and a handler that on failure makes the message visible again after 1 s
    queue = make_queue(visibility_timeout=20)
    send_bodies(sqs_client, queue, ["retry-me"])
    deliveries = Deliveries()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            deliveries.record(record)
            if record["attributes"]["ApproximateReceiveCount"] == "1":
                sqs_client.change_message_visibility(
                    QueueUrl=queue.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=1
                )
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    # When the mapping runs until the queue is empty
    mapping = start_mapping(queue, handler)
    mapping.drain(DRAIN_TIMEOUT_S)

    # Then the message came back about one second later, not twenty
    assert deliveries.receive_counts("retry-me") == ["1", "2"]
    first, second = deliveries.times["retry-me"]
    assert 0.9 <= second - first < 5


def test_drain_names_what_is_left_when_the_queue_does_not_empty(
    sqs_client: SQSClient, make_queue: MakeQueue, start_mapping: StartMapping
) -> None:
    # Given a mapping whose handler fails everything, on a queue with a long visibility timeout
    queue = make_queue(visibility_timeout=30)
    send_bodies(sqs_client, queue, ["stuck"])
    invoked = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> None:
        invoked.set()
        raise RuntimeError("always")

    mapping = start_mapping(queue, handler, timeout_s=30)
    assert invoked.wait(10)

    # When / Then draining gives up and says what remains
    with pytest.raises(TimeoutError, match="1 not visible"):
        mapping.drain(timeout_s=0.5)


def test_a_queue_visibility_shorter_than_the_function_timeout_is_refused(
    sqs_client: SQSClient, make_queue: MakeQueue
) -> None:
    # Given a queue whose visibility timeout is below the function timeout
    queue = make_queue(visibility_timeout=2)
    mapping = EventSourceMapping(sqs_client, queue.url, queue.arn, lambda e, c: None, timeout_s=120)

    # When / Then the mapping refuses to start, as the Lambda API refuses to create it
    with pytest.raises(ValueError, match="less than Function timeout"):
        mapping.start()


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, frozenset()),
        ({}, frozenset()),
        ({"batchItemFailures": None}, frozenset()),
        ({"batchItemFailures": []}, frozenset()),
        ({"statusCode": 200}, frozenset()),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, frozenset({"m1"})),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}, None),
        ({"batchItemFailures": [{"messageId": "m1"}]}, None),
        ({"batchItemFailures": "m1"}, None),
        (["m1"], None),
    ],
)
def test_partial_batch_responses_read_as_lambda_reads_them(
    response: Any, expected: frozenset[str] | None
) -> None:
    # Given a batch of two messages and a handler response
    # When Lambda's rules are applied
    # Then the retried records (None: the whole batch) are as documented
    assert batch_item_failures(response, ["m1", "m2"]) == expected
