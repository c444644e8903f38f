"""SQS operations of the consumers and producers; the only code that calls SQS."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from matchstats.errors import QueueUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient as SQSClient
else:
    SQSClient = Any

SQS_BATCH_LIMIT = 10
# SQS caps a message's visibility timeout at 12 hours.
_MAX_VISIBILITY_S = 43_200
# Message attributes: SQS allows 10 per message; two are ours, the rest forwarded.
REASON_ATTRIBUTE = "matchstats.reason"
ERROR_KIND_ATTRIBUTE = "matchstats.errorKind"
_FORWARDED_ATTRIBUTES = 8


def default_sqs_client() -> SQSClient:
    import boto3

    # A session of its own: the default session is not safe to build clients from in
    # several threads at once (the local event source mapping runs workers in threads).
    # boto3 honours AWS_ENDPOINT_URL, which points at the local SQS in development.
    client: SQSClient = boto3.session.Session().client("sqs")
    return client


def backoff_seconds(receive_count: int, max_receive_count: int = 3, base_s: int = 5) -> int:
    """Exponential backoff by delivery: 5 s after the first receive, 10 s after the second.

    After the last allowed receive the message becomes visible at once, so that SQS
    moves it to the dead-letter queue now rather than after one more backoff.
    """
    if receive_count >= max_receive_count:
        return 0
    return int(min(base_s * 2 ** max(receive_count - 1, 0), _MAX_VISIBILITY_S))


@dataclass(frozen=True)
class OutgoingMessage:
    entry_id: str  # unique within one call; reported back for entries that failed
    body: str
    delay_seconds: int = 0
    attributes: dict[str, str] | None = None


@dataclass(frozen=True)
class RetryTicket:
    entry_id: str
    receipt_handle: str
    visibility_timeout_s: int


def _chunks(items: Sequence[Any], size: int = SQS_BATCH_LIMIT) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Queues:
    def __init__(self, client: SQSClient | None = None):
        self._client = client if client is not None else default_sqs_client()

    @property
    def client(self) -> SQSClient:
        return self._client

    def send(self, queue_url: str, message: OutgoingMessage) -> str:
        """Sends one message and returns its SQS message id."""
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MessageBody": message.body,
            "DelaySeconds": message.delay_seconds,
        }
        if message.attributes:
            kwargs["MessageAttributes"] = _string_attributes(message.attributes)
        try:
            response = self._client.send_message(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailableError(f"cannot send to {queue_url}: {exc}") from exc
        return response["MessageId"]

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """SendMessageBatch in chunks of 10. Returns entry id -> message id for the
        entries sent; raises QueueUnavailableError naming the entries that were not."""
        sent: dict[str, str] = {}
        failed: dict[str, str] = {}
        for chunk in _chunks(messages):
            entries = []
            for message in chunk:
                entry: dict[str, Any] = {
                    "Id": message.entry_id,
                    "MessageBody": message.body,
                    "DelaySeconds": message.delay_seconds,
                }
                if message.attributes:
                    entry["MessageAttributes"] = _string_attributes(message.attributes)
                entries.append(entry)
            try:
                response = self._client.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=entries,  # type: ignore[arg-type]  # built as plain dicts
                )
            except (BotoCoreError, ClientError) as exc:
                failed.update({message.entry_id: str(exc) for message in chunk})
                continue
            sent.update({ok["Id"]: ok["MessageId"] for ok in response.get("Successful", [])})
            failed.update(
                {bad["Id"]: bad.get("Message", bad["Code"]) for bad in response.get("Failed", [])}
            )
        if failed:
            raise PartialSendError(queue_url, sent=sent, failed=failed)
        return sent

    def retry_later(self, queue_url: str, tickets: Sequence[RetryTicket]) -> list[str]:
        """Sets each message's visibility timeout to its backoff. Returns the entry ids it
        could not change: those simply wait out the queue's own visibility timeout."""
        not_changed: list[str] = []
        for chunk in _chunks(tickets):
            try:
                response = self._client.change_message_visibility_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {
                            "Id": ticket.entry_id,
                            "ReceiptHandle": ticket.receipt_handle,
                            "VisibilityTimeout": ticket.visibility_timeout_s,
                        }
                        for ticket in chunk
                    ],
                )
            except (BotoCoreError, ClientError):
                not_changed.extend(ticket.entry_id for ticket in chunk)
                continue
            not_changed.extend(bad["Id"] for bad in response.get("Failed", []))
        return not_changed


class PartialSendError(QueueUnavailableError):
    def __init__(self, queue_url: str, *, sent: dict[str, str], failed: dict[str, str]):
        self.sent = sent
        self.failed = failed
        detail = "; ".join(f"{entry}: {reason}" for entry, reason in sorted(failed.items()))
        super().__init__(f"{len(failed)} message(s) not sent to {queue_url}: {detail}")


def dead_letter_attributes(kind: str, reason: str, forwarded: dict[str, str]) -> dict[str, str]:
    """The reason travels as message attributes, so the body stays what the producer sent."""
    attributes = dict(list(forwarded.items())[:_FORWARDED_ATTRIBUTES])
    attributes[ERROR_KIND_ATTRIBUTE] = kind
    attributes[REASON_ATTRIBUTE] = reason[:1024]
    return attributes


def _string_attributes(attributes: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
    }
