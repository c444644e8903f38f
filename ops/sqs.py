"""The SQS (and CloudWatch) calls of the `matchstats` command; the only ops code that
calls them. Every botocore error leaves here as a QueueUnavailableError naming the queue,
except that an endpoint without message move tasks raises MoveTaskUnsupportedError."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from matchstats.queues import SQS_BATCH_LIMIT, pack_requests
from ops.aws import describe, queue_error, queue_label

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
else:
    SQSClient = Any

# Error codes with which an endpoint says it cannot run a message move task for us: an
# emulator without the operation, or credentials without sqs:StartMessageMoveTask. Either
# way receive, send, delete still works. An HTTP 5xx (moto answers 500) counts too.
_MOVE_TASK_UNAVAILABLE = frozenset(
    {
        "InvalidAction",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "UnknownOperation",
        "UnknownOperationException",
        "NotImplemented",
        "AccessDenied",
        "AccessDeniedException",
    }
)


class MoveTaskUnsupportedError(Exception):
    """The endpoint does not run StartMessageMoveTask for us."""


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: datetime | None
    # As SQS returns them: name -> {"DataType": ..., "StringValue" | "BinaryValue": ...}
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def string_attribute(self, name: str) -> str | None:
        value = self.attributes.get(name, {}).get("StringValue")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class MoveTask:
    handle: str
    status: str  # RUNNING, COMPLETED, CANCELLING, CANCELLED, FAILED
    moved: int
    to_move: int | None
    destination_arn: str | None
    failure_reason: str | None


@dataclass(frozen=True)
class OutgoingCopy:
    entry_id: str
    body: str
    attributes: dict[str, dict[str, Any]]


class OpsQueues:
    def __init__(self, sqs: SQSClient, probe: SQSClient | None = None):
        self._sqs = sqs
        self._probe = probe if probe is not None else sqs

    def depth(self, queue_url: str) -> QueueDepth:
        attributes = self._attributes(
            queue_url,
            [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        return QueueDepth(
            visible=int(attributes["ApproximateNumberOfMessages"]),
            in_flight=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            delayed=int(attributes["ApproximateNumberOfMessagesDelayed"]),
        )

    def arn(self, queue_url: str) -> str:
        return str(self._attributes(queue_url, ["QueueArn"])["QueueArn"])

    def receive(
        self, queue_url: str, max_messages: int, *, visibility_timeout_s: int, wait_s: int
    ) -> list[QueueMessage]:
        try:
            response = self._sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=max(1, min(max_messages, SQS_BATCH_LIMIT)),
                VisibilityTimeout=visibility_timeout_s,
                WaitTimeSeconds=wait_s,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
        except (BotoCoreError, ClientError) as exc:
            raise queue_error("receive from", queue_url, exc) from exc
        return [_to_message(raw) for raw in response.get("Messages", [])]

    def send_batch(
        self, queue_url: str, messages: Sequence[OutgoingCopy]
    ) -> tuple[set[str], dict[str, str]]:
        """One SendMessageBatch request, as matchstats.queues.pack_requests packed it (10
        entries, 1 MiB). Returns the entry ids sent, and the entry ids refused with their
        reasons. Raises when the call itself failed: then nothing is known about the
        entries, which the caller must treat as possibly sent."""
        entries = []
        for message in messages:
            entry: dict[str, Any] = {"Id": message.entry_id, "MessageBody": message.body}
            if message.attributes:
                entry["MessageAttributes"] = message.attributes
            entries.append(entry)
        try:
            response = self._sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=entries,  # type: ignore[arg-type]  # built as plain dicts
            )
        except (BotoCoreError, ClientError) as exc:
            raise queue_error("send to", queue_url, exc) from exc
        sent = {ok["Id"] for ok in response.get("Successful", [])}
        failed = {bad["Id"]: bad.get("Message", bad["Code"]) for bad in response.get("Failed", [])}
        return sent, failed

    def delete_batch(self, queue_url: str, messages: Sequence[QueueMessage]) -> set[str]:
        """DeleteMessageBatch in chunks of 10; returns the message ids not deleted."""
        not_deleted: set[str] = set()
        for chunk in pack_requests(messages):
            by_entry = {str(index): message for index, message in enumerate(chunk)}
            try:
                response = self._sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": entry_id, "ReceiptHandle": message.receipt_handle}
                        for entry_id, message in by_entry.items()
                    ],
                )
            except (BotoCoreError, ClientError):
                not_deleted.update(message.message_id for message in chunk)
                continue
            not_deleted.update(by_entry[bad["Id"]].message_id for bad in response.get("Failed", []))
        return not_deleted

    def release(self, queue_url: str, messages: Sequence[QueueMessage]) -> int:
        """Makes received messages visible again at once (best effort: a message not
        released reappears when its visibility timeout ends). Returns how many were."""
        released = 0
        for chunk in pack_requests(messages):
            try:
                response = self._sqs.change_message_visibility_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {
                            "Id": str(index),
                            "ReceiptHandle": message.receipt_handle,
                            "VisibilityTimeout": 0,
                        }
                        for index, message in enumerate(chunk)
                    ],
                )
            except (BotoCoreError, ClientError):
                continue
            released += len(response.get("Successful", []))
        return released

    def list_move_tasks(self, source_arn: str) -> list[MoveTask]:
        try:
            response = self._probe.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)
        except ClientError as exc:
            _raise_if_unsupported("ListMessageMoveTasks", exc)
            raise queue_error("list the move tasks of", source_arn, exc) from exc
        except BotoCoreError as exc:
            raise queue_error("list the move tasks of", source_arn, exc) from exc
        return [
            MoveTask(
                handle=str(task.get("TaskHandle", "")),
                status=str(task.get("Status", "")),
                moved=int(task.get("ApproximateNumberOfMessagesMoved", 0)),
                to_move=(
                    int(task["ApproximateNumberOfMessagesToMove"])
                    if "ApproximateNumberOfMessagesToMove" in task
                    else None
                ),
                destination_arn=task.get("DestinationArn"),
                failure_reason=task.get("FailureReason"),
            )
            for task in response.get("Results", [])
        ]

    def start_move_task(self, source_arn: str, destination_arn: str) -> str:
        """Starts moving every message of the dead-letter queue to `destination_arn`; the
        destination is named because a message our consumers dead-lettered themselves
        (with SendMessage) has no source queue that SQS knows of."""
        try:
            response = self._probe.start_message_move_task(
                SourceArn=source_arn, DestinationArn=destination_arn
            )
        except ClientError as exc:
            _raise_if_unsupported("StartMessageMoveTask", exc)
            raise queue_error("start a move task on", source_arn, exc) from exc
        except BotoCoreError as exc:
            raise queue_error("start a move task on", source_arn, exc) from exc
        return response["TaskHandle"]

    def _attributes(self, queue_url: str, names: list[Any]) -> dict[str, str]:
        try:
            response = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        except (BotoCoreError, ClientError) as exc:
            raise queue_error("read", queue_url, exc) from exc
        return {str(key): value for key, value in response.get("Attributes", {}).items()}


def oldest_message_ages(cloudwatch: Any, queue_urls: Sequence[str]) -> dict[str, float | None]:
    """CloudWatch's ApproximateAgeOfOldestMessage (seconds, the latest of the last 10
    minutes) per queue URL; None where there is no datapoint (an idle queue, a local
    stack without metrics) or CloudWatch cannot be read. SQS itself cannot tell the age
    without receiving messages, which would spend their receive counts."""
    ages: dict[str, float | None] = dict.fromkeys(queue_urls)
    if not queue_urls:
        return ages
    now = datetime.now(UTC)
    queries = [
        {
            "Id": f"q{index}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": queue_label(url)}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        for index, url in enumerate(queue_urls)
    ]
    try:
        response = cloudwatch.get_metric_data(
            MetricDataQueries=queries,
            StartTime=now - timedelta(minutes=10),
            # Past now: a figure computed as it is asked for (the local SQS's) is
            # stamped after this request left, and must still fall inside the range.
            EndTime=now + timedelta(minutes=1),
            ScanBy="TimestampDescending",
        )
    except (BotoCoreError, ClientError):
        return ages
    for result in response.get("MetricDataResults", []):
        index = int(str(result.get("Id", "q-1"))[1:])
        values = result.get("Values") or []
        if 0 <= index < len(queue_urls) and values:
            ages[queue_urls[index]] = float(values[0])
    return ages


def _raise_if_unsupported(operation: str, exc: ClientError) -> None:
    code = exc.response.get("Error", {}).get("Code", "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _MOVE_TASK_UNAVAILABLE or status >= 500:
        raise MoveTaskUnsupportedError(f"{operation}: {describe(exc)}") from exc


def _to_message(raw: Any) -> QueueMessage:
    system = raw.get("Attributes", {})
    sent_ms = system.get("SentTimestamp")
    return QueueMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(system.get("ApproximateReceiveCount", 1)),
        sent_at=datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else None,
        attributes=dict(raw.get("MessageAttributes", {})),
    )
