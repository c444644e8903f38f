"""Lambda's SQS records as the consumers' ReceivedMessage."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

from matchstats.models import ReceivedMessage


def to_received(record: SqsRecordModel) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=record.messageId,
        receipt_handle=record.receiptHandle,
        body=str(record.body),
        receive_count=int(record.attributes.ApproximateReceiveCount),
        # Forwarded to the dead-letter queue; our own reason attributes from an earlier
        # dead-lettering (a redriven message) are replaced, not stacked.
        attributes={
            name: attribute.stringValue
            for name, attribute in record.messageAttributes.items()
            if attribute.stringValue is not None and not name.startswith("matchstats.")
        },
    )
