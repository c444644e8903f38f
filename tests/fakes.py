"""In-memory stand-ins for external services, handed in through dependencies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from matchstats.queues import OutgoingMessage, Queues, RetryTicket

# SQS's real limits (Amazon SQS API Reference, SendMessageBatch, MessageAttributeValue),
# written out here rather than imported, so that the fake checks the code's own numbers.
ENTRIES_PER_REQUEST = 10
BYTES_PER_MESSAGE = 1_048_576
BYTES_PER_REQUEST = 1_048_576


class InMemorySqs:
    """The SQS calls matchstats.queues.Queues makes, in memory, held to SQS's real limits,
    which moto's SQS does not enforce (it counts bodies only, in characters): at most 10
    entries a batch request; at most 1 MiB a message and a SendMessageBatch request,
    counting the UTF-8 body and each attribute's name, data type and value. A request
    over a limit is refused whole with SQS's error code, and nothing of it is kept."""

    def __init__(self, *, reachable: bool = True) -> None:
        self.reachable = reachable
        self.sent: list[tuple[str, OutgoingMessage]] = []
        # Each SendMessageBatch request taken, as (queue URL, its messages).
        self.batch_requests: list[tuple[str, list[OutgoingMessage]]] = []
        self.retries: list[tuple[str, RetryTicket]] = []

    def send_message(
        self,
        *,
        QueueUrl: str,
        MessageBody: str,
        DelaySeconds: int = 0,
        MessageAttributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._check_reachable(QueueUrl)
        message = _outgoing("0", MessageBody, DelaySeconds, MessageAttributes)
        size = _sqs_size(MessageBody, MessageAttributes)
        if size > BYTES_PER_MESSAGE:
            raise _refused("InvalidParameterValue", f"message of {size} bytes", "SendMessage")
        return {"MessageId": self._keep(QueueUrl, message)}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self._check_batch(QueueUrl, Entries, "SendMessageBatch")
        total = sum(_sqs_size(e["MessageBody"], e.get("MessageAttributes")) for e in Entries)
        if total > BYTES_PER_REQUEST:
            raise _refused("BatchRequestTooLong", f"{total} bytes", "SendMessageBatch")
        request = [
            _outgoing(
                e["Id"], e["MessageBody"], e.get("DelaySeconds", 0), e.get("MessageAttributes")
            )
            for e in Entries
        ]
        self.batch_requests.append((QueueUrl, request))
        return {
            "Successful": [
                {"Id": message.entry_id, "MessageId": self._keep(QueueUrl, message)}
                for message in request
            ],
            "Failed": [],
        }

    def change_message_visibility_batch(
        self, *, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self._check_batch(QueueUrl, Entries, "ChangeMessageVisibilityBatch")
        self.retries.extend(
            (QueueUrl, RetryTicket(e["Id"], e["ReceiptHandle"], e["VisibilityTimeout"]))
            for e in Entries
        )
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def _check_reachable(self, queue_url: str) -> None:
        if not self.reachable:
            raise EndpointConnectionError(endpoint_url=queue_url)

    def _check_batch(self, queue_url: str, entries: list[Any], operation: str) -> None:
        self._check_reachable(queue_url)
        if len(entries) > ENTRIES_PER_REQUEST:
            raise _refused("TooManyEntriesInBatchRequest", f"{len(entries)} entries", operation)

    def _keep(self, queue_url: str, message: OutgoingMessage) -> str:
        self.sent.append((queue_url, message))
        return f"message-{len(self.sent)}"


class InMemoryQueues(Queues):
    """The real Queues over an InMemorySqs: keeps what is sent (`sent`, `batch_requests`)
    and the visibility changes (`retries`), or refuses it like an unreachable SQS."""

    def __init__(self, *, reachable: bool = True) -> None:
        self.sqs = InMemorySqs(reachable=reachable)
        super().__init__(self.sqs)  # type: ignore[arg-type]  # the calls Queues makes

    @property
    def sent(self) -> list[tuple[str, OutgoingMessage]]:
        return self.sqs.sent

    @property
    def batch_requests(self) -> list[tuple[str, list[OutgoingMessage]]]:
        return self.sqs.batch_requests

    @property
    def retries(self) -> list[tuple[str, RetryTicket]]:
        return self.sqs.retries


def _sqs_size(body: str, attributes: Mapping[str, Any] | None) -> int:
    size = len(body.encode())
    for name, attribute in (attributes or {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        value_bytes = value if isinstance(value, bytes) else str(value).encode()
        size += len(name.encode()) + len(attribute["DataType"].encode()) + len(value_bytes)
    return size


def _outgoing(
    entry_id: str, body: str, delay_seconds: int, attributes: Mapping[str, Any] | None
) -> OutgoingMessage:
    strings = {name: str(a["StringValue"]) for name, a in (attributes or {}).items()}
    return OutgoingMessage(entry_id, body, delay_seconds, strings or None)


def _refused(code: str, detail: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": f"AWS.SimpleQueueService.{code}", "Message": detail}}, operation
    )
