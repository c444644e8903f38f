"""SQS operations of the consumers and producers; the only code that calls SQS."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from matchstats.errors import QueueUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient as SQSClient
else:
    SQSClient = Any

# SQS limits (API Reference, SendMessageBatch and MessageAttributeValue): at most 10
# entries per batch call (SendMessageBatch, DeleteMessageBatch,
# ChangeMessageVisibilityBatch); 1 MiB per message and 1 MiB per SendMessageBatch request,
# the sum of its messages' sizes; at most 10 message attributes per message.
SQS_BATCH_LIMIT = 10
MAX_MESSAGE_BYTES = 1_048_576
MAX_BATCH_BYTES = 1_048_576
MAX_MESSAGE_ATTRIBUTES = 10
# SQS caps a message's visibility timeout at 12 hours.
_MAX_VISIBILITY_S = 43_200
# Our attributes on a dead-letter copy; the rest of the 10 are the message's own, forwarded.
REASON_ATTRIBUTE = "matchstats.reason"
ERROR_KIND_ATTRIBUTE = "matchstats.errorKind"
SOURCE_MESSAGE_ID_ATTRIBUTE = "matchstats.sourceMessageId"
SOURCE_RECEIVE_COUNT_ATTRIBUTE = "matchstats.receiveCount"
_REASON_MAX_CHARS = 1024
# A reduced dead-letter copy shortens its reason to what fits, but not below this: a
# shorter one no longer says what was wrong (the full one is in job_history and the log).
_REDUCED_REASON_MIN_BYTES = 64
_TRUNCATED = "…"

T = TypeVar("T")


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


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """The bytes SQS counts toward its 1 MiB limits: the UTF-8 body plus, for each message
    attribute, its name, its DataType and its value (StringValue as UTF-8, BinaryValue as
    raw bytes). Attributes are in SQS's shape: name -> {"DataType", "StringValue" |
    "BinaryValue"}.

    Source: Amazon SQS API Reference, MessageAttributeValue: "All parts of the message
    attribute, including Name, Type, and Value, are part of the message size restriction
    (1 MiB or 1,048,576 bytes)"; SendMessageBatch: the total payload is "the sum of the
    individual lengths of all of the batched messages".
    """
    size = len(body.encode())
    for name, attribute in (attributes or {}).items():
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        size += len(value) if isinstance(value, bytes | bytearray) else len(str(value).encode())
    return size


def pack_requests(
    entries: Iterable[T],
    size_of: Callable[[T], int] | None = None,
    *,
    max_entries: int = SQS_BATCH_LIMIT,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[list[T]]:
    """Packs entries, in their order, into batch requests of at most `max_entries` entries
    and, when `size_of` gives each entry's bytes (message_size), at most `max_bytes` in
    total: the one place the SQS batch limits are applied. An entry larger than
    `max_bytes` on its own goes in a request of its own, for SQS to refuse it alone.
    """
    request: list[T] = []
    request_bytes = 0
    for entry in entries:
        size = size_of(entry) if size_of is not None else 0
        if request and (len(request) == max_entries or request_bytes + size > max_bytes):
            yield request
            request, request_bytes = [], 0
        request.append(entry)
        request_bytes += size
    if request:
        yield request


@dataclass(frozen=True)
class OutgoingMessage:
    entry_id: str  # unique within one call; reported back for entries that failed
    body: str
    delay_seconds: int = 0
    attributes: dict[str, str] | None = None

    @property
    def size(self) -> int:
        """Bytes SQS counts toward its limits (message_size)."""
        return message_size(self.body, _string_attributes(self.attributes or {}))


@dataclass(frozen=True)
class RetryTicket:
    entry_id: str
    receipt_handle: str
    visibility_timeout_s: int


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
        """SendMessageBatch, as many requests as SQS's limits take (pack_requests: 10
        entries and 1 MiB a request, attributes counted). Returns entry id -> message id
        for the entries sent; raises PartialSendError naming the entries that were not."""
        sent: dict[str, str] = {}
        failed: dict[str, str] = {}
        for request in pack_requests(messages, lambda message: message.size):
            try:
                accepted, refused = self._send_request(queue_url, request)
            except QueueUnavailableError as exc:
                failed.update({message.entry_id: str(exc) for message in request})
                continue
            sent.update(accepted)
            failed.update(refused)
        if failed:
            raise PartialSendError(queue_url, sent=sent, failed=failed)
        return sent

    def _send_request(
        self, queue_url: str, request: Sequence[OutgoingMessage]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """One SendMessageBatch call: (entry id -> message id of the entries sent, entry id
        -> reason of those refused). Raises QueueUnavailableError when the call failed."""
        entries = []
        for message in request:
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
            raise QueueUnavailableError(f"cannot send to {queue_url}: {exc}") from exc
        sent = {ok["Id"]: ok["MessageId"] for ok in response.get("Successful", [])}
        failed = {bad["Id"]: bad.get("Message", bad["Code"]) for bad in response.get("Failed", [])}
        return sent, failed

    def retry_later(self, queue_url: str, tickets: Sequence[RetryTicket]) -> list[str]:
        """Sets each message's visibility timeout to its backoff. Returns the entry ids it
        could not change: those simply wait out the queue's own visibility timeout."""
        not_changed: list[str] = []
        for chunk in pack_requests(tickets):
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


class CopyForm(StrEnum):
    """How a message that failed for good reaches its dead-letter queue."""

    FULL = "full"  # body, reason, our attributes and the message's own
    REDUCED = "reduced"  # body and our attributes only, the reason shortened to fit
    REDRIVE = "redrive"  # no copy fits even bare: SQS redrive moves it, without a reason


def dead_letter_copy(
    entry_id: str,
    body: str,
    *,
    kind: str,
    reason: str,
    own: Mapping[str, str],
    forwarded: Mapping[str, str],
) -> tuple[CopyForm, OutgoingMessage | None]:
    """The dead-letter copy of a message: its body untouched, the reason in message
    attributes (ERROR_KIND_ATTRIBUTE, REASON_ATTRIBUTE, and `own`, e.g. the source
    message id), so the body stays what the producer sent.

    FULL keeps as many of the message's `forwarded` attributes as SQS's 10 a message
    leave room for, and the reason up to 1024 characters. When that exceeds
    MAX_MESSAGE_BYTES (counted as SQS does, message_size), REDUCED drops the forwarded
    attributes and shortens the reason (UTF-8 bytes, ending in "…") to what fits, down
    to 64 bytes. When even that does not fit, (REDRIVE, None): the caller leaves the
    message to SQS redrive.
    """
    ours = {**own, ERROR_KIND_ATTRIBUTE: kind}
    reason = reason[:_REASON_MAX_CHARS]
    room = MAX_MESSAGE_ATTRIBUTES - len(ours) - 1
    kept = dict(list(forwarded.items())[: max(room, 0)])
    full = OutgoingMessage(entry_id, body, attributes={**kept, **ours, REASON_ATTRIBUTE: reason})
    if full.size <= MAX_MESSAGE_BYTES:
        return CopyForm.FULL, full
    bare = OutgoingMessage(entry_id, body, attributes=ours)
    reason_overhead = message_size("", _string_attributes({REASON_ATTRIBUTE: ""}))
    shortened = _shorten(reason, MAX_MESSAGE_BYTES - bare.size - reason_overhead)
    if shortened is None:
        return CopyForm.REDRIVE, None
    return CopyForm.REDUCED, replace(bare, attributes={**ours, REASON_ATTRIBUTE: shortened})


def _shorten(text: str, room_bytes: int) -> str | None:
    encoded = text.encode()
    if len(encoded) <= room_bytes:
        return text
    if room_bytes < _REDUCED_REASON_MIN_BYTES:
        return None
    cut = encoded[: room_bytes - len(_TRUNCATED.encode())]
    return cut.decode(errors="ignore") + _TRUNCATED


def _string_attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
    }
