"""The batch shape both SQS handlers share (matchstats.sqs_batch): the logic sees every
valid record once, and each record's outcome becomes the partial-batch response."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devstack.lambda_context import LambdaContext
from matchstats.errors import DatabaseUnavailableError, QueueUnavailableError
from matchstats.failures import retry_unfinished, schedule_backoff
from matchstats.models import ReceivedMessage
from matchstats.outcomes import BatchResult, Disposition, RecordResult
from matchstats.sqs_batch import process_batch
from testkit.events import points_bodies, sqs_event
from tests.fakes import InMemoryQueues

CONTEXT = LambdaContext.for_invocation("CalculatePointsFunction", 120)


def test_each_valid_record_reaches_the_logic_once_and_retries_are_reported() -> None:
    # Given a batch of three records, and logic that retries the second
    event = sqs_event(points_bodies(1, 2, 3), receive_count=2)
    seen: list[list[ReceivedMessage]] = []

    def work(messages: list[ReceivedMessage]) -> BatchResult:
        seen.append(messages)
        result = BatchResult()
        for index, message in enumerate(messages):
            outcome = RecordResult(Disposition.COMPLETED)
            if index == 1:
                outcome = RecordResult(Disposition.RETRY, DatabaseUnavailableError("down"))
            result.records[message.message_id] = outcome
        return result

    # When the batch is processed
    result, response = process_batch(event, CONTEXT, work)

    # Then the logic saw the three once, as one set, with their receive counts
    [messages] = seen
    assert [m.body for m in messages] == points_bodies(1, 2, 3)
    assert {m.receive_count for m in messages} == {2}
    # ...and only the retried one is a batch item failure
    retried = event["Records"][1]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": retried}]}
    assert result.count(Disposition.COMPLETED) == 2


def test_a_record_that_is_not_an_sqs_record_fails_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a batch whose second record lacks its attributes (a hand-written event)
    event = sqs_event(points_bodies(1, 2))
    broken: dict[str, Any] = copy.deepcopy(event["Records"][1])
    del broken["attributes"]
    event["Records"][1] = broken

    def complete_all(messages: list[ReceivedMessage]) -> BatchResult:
        result = BatchResult()
        for message in messages:
            result.records[message.message_id] = RecordResult(Disposition.COMPLETED)
        return result

    # When the batch is processed
    _, response = process_batch(event, CONTEXT, complete_all)

    # Then only that record failed, and the log names it
    assert response == {"batchItemFailures": [{"itemIdentifier": broken["messageId"]}]}
    [warning] = [r for r in caplog.records if "does not fit the SQS record model" in r.message]
    assert warning.message_id == broken["messageId"]  # type: ignore[attr-defined]


def test_our_own_reason_attributes_are_not_forwarded_again() -> None:
    # Given a redriven message carrying our reason and an attribute of the producer's
    event = sqs_event(points_bodies(1))
    event["Records"][0]["messageAttributes"] = {
        "matchstats.reason": {"stringValue": "old", "dataType": "String"},
        "traceparent": {"stringValue": "00-abc", "dataType": "String"},
    }
    seen: list[ReceivedMessage] = []

    def work(messages: list[ReceivedMessage]) -> BatchResult:
        seen.extend(messages)
        return BatchResult({m.message_id: RecordResult(Disposition.COMPLETED) for m in messages})

    # When processed, Then only the producer's attribute travels on
    process_batch(event, CONTEXT, work)
    assert seen[0].attributes == {"traceparent": "00-abc"}


class BrokenQueues(InMemoryQueues):
    def retry_later(self, queue_url: str, tickets: Any) -> list[str]:
        raise QueueUnavailableError("SQS is down too")


def test_retrying_after_an_unexpected_error_survives_sqs_being_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an unexpected error, and SQS refusing the backoff as well
    messages = [ReceivedMessage(message_id="m", receipt_handle="r", body="{}", receive_count=1)]
    result = BatchResult()

    # When the batch's unsettled messages are retried, Then nothing raises, the message is
    # retried (it waits out the visibility timeout), and the log says so
    retry_unfinished(
        result, messages, KeyError("x"), queues=BrokenQueues(), queue_url="q", max_receive_count=3
    )
    assert result.records["m"].disposition is Disposition.RETRY
    assert "backoff not set after an unexpected error" in caplog.text


class RefusingVisibility(InMemoryQueues):
    def retry_later(self, queue_url: str, tickets: Any) -> list[str]:
        return [ticket.entry_id for ticket in tickets]


def test_a_backoff_sqs_refuses_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    message = ReceivedMessage(message_id="m", receipt_handle="r", body="{}", receive_count=1)
    schedule_backoff(RefusingVisibility(), "q", [message], 3)
    assert "visibility not set" in caplog.text
