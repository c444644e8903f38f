"""Every batched SQS call respects SQS's real limits, counted as SQS counts them: at most 10
entries a request, at most 1 MiB per message and per SendMessageBatch request, message
attributes included (name, data type and value). moto counts bodies only, so these run
against tests.fakes.InMemoryQueues, which enforces the real limits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from matchstats.errors import InvalidMessageError
from matchstats.failures import dead_letter
from matchstats.models import ReceivedMessage
from matchstats.queues import (
    ERROR_KIND_ATTRIBUTE,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    REASON_ATTRIBUTE,
    SOURCE_MESSAGE_ID_ATTRIBUTE,
    OutgoingMessage,
    message_size,
    pack_requests,
)
from tests.fakes import InMemoryQueues

DEAD_LETTER_QUEUE = "http://sqs.local/PointsDeadLetterQueue"
POINTS_QUEUE = "http://sqs.local/PointsQueue"


def received(body: str, **attributes: str) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=str(uuid.uuid4()),
        receipt_handle=f"local-{uuid.uuid4().hex}",
        body=body,
        receive_count=1,
        attributes=attributes,
    )


def dead_letters(queues: InMemoryQueues) -> list[OutgoingMessage]:
    return [message for url, message in queues.sent if url == DEAD_LETTER_QUEUE]


def test_a_message_counts_its_body_and_each_attributes_name_type_and_value_in_bytes() -> None:
    # Given a body and attributes with characters of more than one UTF-8 byte
    body = "é" * 10  # 20 bytes
    attributes: dict[str, dict[str, Any]] = {
        "naïve": {"DataType": "String", "StringValue": "ü"},  # 6 + 6 + 2
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},  # 4 + 6 + 3
    }

    # When its size is counted
    size = message_size(body, attributes)

    # Then it is what SQS counts against its 1 MiB: body + name + type + value, in bytes
    assert size == 20 + (6 + 6 + 2) + (4 + 6 + 3)


def test_a_request_holds_at_most_ten_entries_in_their_order() -> None:
    # When 25 entries without sizes (a DeleteMessageBatch, say) are packed
    requests = list(pack_requests(range(25)))

    # Then they make requests of 10, 10 and 5, in order
    assert requests == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


def test_entries_just_under_the_limit_fill_each_request_to_its_last_byte() -> None:
    # Given nine messages of exactly a quarter of the request limit, counted with their
    # attribute, and nine of one byte more
    attribute = {"source": "app"}
    overhead = OutgoingMessage("0", "", attributes=attribute).size
    quarter = [
        OutgoingMessage(str(i), "q" * (MAX_BATCH_BYTES // 4 - overhead), attributes=attribute)
        for i in range(9)
    ]
    over = [
        OutgoingMessage(str(i), "o" * (MAX_BATCH_BYTES // 4 - overhead + 1), attributes=attribute)
        for i in range(9)
    ]
    assert {message.size for message in quarter} == {MAX_BATCH_BYTES // 4}

    # When each set is sent as one batch to a queue that enforces SQS's limits
    queues = InMemoryQueues()
    quarter_ids = queues.send_batch(POINTS_QUEUE, quarter)
    quarter_requests = [len(request) for _, request in queues.batch_requests]
    queues.batch_requests.clear()
    over_ids = queues.send_batch(POINTS_QUEUE, over)
    over_requests = [len(request) for _, request in queues.batch_requests]

    # Then every message is sent: four to a request exactly at 1 MiB, three when a fourth
    # would pass it by four bytes
    assert len(quarter_ids) == len(over_ids) == 9
    assert quarter_requests == [4, 4, 1]
    assert over_requests == [3, 3, 3]
    assert len(queues.sent) == 18


def test_attributes_that_tip_a_batch_over_the_limit_split_it() -> None:
    # Given ten permanent failures whose bodies come to 1,047,000 bytes, under 1 MiB,
    # but over it with the reason and the other attributes of their dead-letter copies
    failures = [
        (received("x" * 104_700, traceparent=f"00-{i:032x}-{i:016x}-01"), _invalid(i))
        for i in range(10)
    ]
    assert sum(len(message.body) for message, _ in failures) < MAX_BATCH_BYTES
    queues = InMemoryQueues()

    # When they are dead-lettered
    result = dead_letter(queues, DEAD_LETTER_QUEUE, failures)

    # Then all ten are in the dead-letter queue, each with its reason and kind ...
    copies = dead_letters(queues)
    assert sorted(copy.attributes[REASON_ATTRIBUTE] for copy in copies if copy.attributes) == [
        str(error) for _, error in failures
    ]
    assert all(copy.attributes and copy.attributes[ERROR_KIND_ATTRIBUTE] for copy in copies)
    # ...sent in requests SQS takes
    assert len(queues.batch_requests) == 2
    for _, request in queues.batch_requests:
        assert sum(message.size for message in request) <= MAX_BATCH_BYTES
    assert (result.not_sent, result.left_to_redrive) == (set(), set())


def test_a_message_too_large_with_its_reason_is_dead_lettered_in_a_reduced_copy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a message whose body leaves about 300 bytes of SQS's 1 MiB, with an attribute
    # of its own, failed with a reason of 1,000 bytes
    message = received("x" * (MAX_MESSAGE_BYTES - 300), traceparent="00-" + "a" * 50)
    error = InvalidMessageError("matchId: " + "r" * 991)

    # When it is dead-lettered
    queues = InMemoryQueues()
    result = dead_letter(queues, DEAD_LETTER_QUEUE, [(message, error)])

    # Then its copy is in the dead-letter queue, the body untouched and within 1 MiB ...
    (copy,) = dead_letters(queues)
    assert copy.body == message.body
    assert copy.size <= MAX_MESSAGE_BYTES
    # ...with its kind, its source message id, and the reason shortened to fit
    assert copy.attributes is not None
    assert copy.attributes[ERROR_KIND_ATTRIBUTE] == "invalid_message"
    assert copy.attributes[SOURCE_MESSAGE_ID_ATTRIBUTE] == message.message_id
    reason = copy.attributes[REASON_ATTRIBUTE]
    assert reason.startswith("matchId: rrr")
    assert reason.endswith("…")
    assert 64 <= len(reason.encode()) < len(str(error))
    # ...but without the message's own attribute, dropped to make room
    assert "traceparent" not in copy.attributes
    assert (result.not_sent, result.left_to_redrive) == (set(), set())
    # ...and the log says a reduced copy went, naming the message and the full reason
    (line,) = [r for r in caplog.records if getattr(r, "message_id", None) == message.message_id]
    assert "reduced copy" in line.getMessage()
    assert getattr(line, "reason", None) == str(error)


def test_a_message_too_large_even_bare_is_left_to_redrive_and_the_others_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a message whose body alone is 50 bytes under SQS's 1 MiB, too little for our
    # attributes, and a small one, both failed for good
    too_large = received("x" * (MAX_MESSAGE_BYTES - 50))
    small = received("not json")
    queues = InMemoryQueues()

    # When both are dead-lettered
    result = dead_letter(
        queues, DEAD_LETTER_QUEUE, [(too_large, _invalid(1)), (small, _invalid(2))]
    )

    # Then the small one is in the dead-letter queue, the large one is not ...
    assert [copy.body for copy in dead_letters(queues)] == ["not json"]
    # ...and is left to SQS redrive, with a log line naming it and its reason
    assert result.left_to_redrive == {too_large.message_id}
    assert result.not_sent == set()
    (line,) = [r for r in caplog.records if getattr(r, "message_id", None) == too_large.message_id]
    assert "left to SQS redrive" in line.getMessage()
    assert getattr(line, "reason", None) == str(_invalid(1))


def _invalid(number: int) -> InvalidMessageError:
    return InvalidMessageError(f"body {number} is not valid JSON (expected value)")
