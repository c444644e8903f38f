"""Lambda's SQS event shapes, as the Lambda service builds and reads them: the record it
makes of each received message (binary attributes as base64 text), and the message ids
a partial batch response asks it to retry.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def lambda_sqs_record(
    message: MessageTypeDef, event_source_arn: str, region: str
) -> dict[str, Any]:
    """One ReceiveMessage result as a record of Lambda's SQS event."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": event_source_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # boto3 hands binary values over decoded; Lambda's event carries them as base64 text.
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [_base64(item) for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _base64(value["BinaryValue"])
    return attribute


def _base64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def batch_item_failures(response: Any, message_ids: Collection[str]) -> frozenset[str] | None:
    """The message ids a partial batch response asks Lambda to retry.

    None means Lambda would fail the whole batch: per the Lambda documentation an
    empty, null or unknown itemIdentifier (or a wrongly named key) does that, while a
    null or empty response or batchItemFailures list is a complete success. A
    response that is not a JSON object is treated as invalid, which errs towards
    retrying rather than losing messages.
    """
    if response is None:
        return frozenset()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return frozenset()
    if not isinstance(failures, list):
        return None
    known = set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in known:
            return None
        failed.add(identifier)
    return frozenset(failed)
