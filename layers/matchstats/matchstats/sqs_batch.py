"""The shape both SQS handlers share: the whole batch is worked set-based, then each
record's outcome is reported through Powertools' BatchProcessor.

Why set-based rather than the usual `record_handler` that does the work: a points batch
is one transaction, one statement and one network round trip for its 10 matches, and
one refresh request after the commit; a refresh batch is at most one refresh per view,
however many requests it holds. Worked record by record, the same batch would be 10
transactions and 10 refresh requests, or 10 refreshes. So the logic decides every
record's outcome first (a BatchResult), and the record handler given to the
BatchProcessor only replays it: it raises for a record to be retried, which Powertools
turns into that record's entry in `batchItemFailures` (ReportBatchItemFailures).

Each record is validated against the SQS record model once, here: one that does not fit
fails alone, and the others are worked as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from matchstats.errors import InvalidMessageError
from matchstats.messages import describe_validation_error
from matchstats.models import ReceivedMessage
from matchstats.observability import logger
from matchstats.outcomes import BatchResult

R = TypeVar("R", bound=BatchResult)
# Our own reason attributes on a redriven message are replaced on its next dead-lettering.
_OWN_ATTRIBUTE_PREFIX = "matchstats."


def process_batch(
    event: dict[str, Any],
    context: LambdaContext,
    work: Callable[[list[ReceivedMessage]], R],
) -> tuple[R, PartialItemFailureResponse]:
    """Runs `work` on the batch's valid records and reports each record's outcome.

    Returns the BatchResult and the partial-batch response for Lambda
    ({"batchItemFailures": [{"itemIdentifier": message id}, ...]}).
    """
    messages: list[ReceivedMessage] = []
    unreadable: dict[str, InvalidMessageError] = {}
    for raw in event.get("Records", []):
        try:
            messages.append(received(SqsRecordModel.model_validate(raw)))
        except ValidationError as exc:
            message_id = str(raw.get("messageId")) if isinstance(raw, dict) else "?"
            unreadable[message_id] = InvalidMessageError(
                f"not an SQS record: {describe_validation_error(exc)}"
            )
            logger.warning(
                "record does not fit the SQS record model; it alone fails",
                extra={"message_id": message_id, "error": str(unreadable[message_id])},
            )
    result = work(messages)

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in unreadable:
            raise unreadable[record.message_id]
        result.raise_if_retry(record.message_id)

    # A processor per invocation: it keeps per-batch state, and the local event source
    # mapping runs several invocations of a module at once. When every record fails, they
    # are reported one by one (each with its backoff), not raised as one error.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return result, response


def received(record: SqsRecordModel) -> ReceivedMessage:
    """A Lambda SQS record as the logic's ReceivedMessage."""
    return ReceivedMessage(
        message_id=record.messageId,
        receipt_handle=record.receiptHandle,
        body=str(record.body),
        receive_count=int(record.attributes.ApproximateReceiveCount),
        # String attributes are forwarded to the dead-letter queue beside the reason.
        attributes={
            name: attribute.stringValue
            for name, attribute in record.messageAttributes.items()
            if attribute.stringValue is not None and not name.startswith(_OWN_ATTRIBUTE_PREFIX)
        },
    )
