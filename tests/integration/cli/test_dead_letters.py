"""`matchstats dlq show`, `redrive` and `discard`: dead letters listed with their reasons and
left in place, moved back by copying or by SQS's move task, and poison deleted after asking."""

from __future__ import annotations

import io
import json
import random
import uuid
from typing import Any

import psycopg
import pytest

from ops.aws import Aws
from testkit.events import points_bodies
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches
from tests.integration.cli.steps import (
    assert_printable,
    bodies,
    cli,
    consume_points,
    dead_letter_points,
    invoke_points,
    peek,
    season,
)
from tests.template_queues import TemplateQueues


def test_dlq_show_lists_reasons_and_leaves_the_messages_there(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given three dead-lettered points messages
    matches = season(db).match_ids[:3]
    dead_letter_points(db, matches)

    # When the operator shows the points dead-letter queue
    shown = cli(capsys, "dlq", "show", "points")

    # Then each message is listed with its reason and kind
    assert shown.code == 0, shown.err
    for match_id in matches:
        assert json.dumps({"matchId": match_id}) in shown.out
        assert f"match {match_id} is completed without both scores" in shown.out
    assert shown.out.count("missing_scores") == 3
    assert "3 shown of about 3" in shown.out
    # ...and every message is still there, visible again at once
    assert stack.depth("PointsDeadLetterQueue") == {"visible": 3, "in_flight": 0, "delayed": 0}


def test_dlq_redrive_restores_dead_lettered_points(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given 12 points messages dead-lettered because their matches had no scores yet
    played = season(db)
    dead = played.match_ids[:12]
    dead_letter_points(db, dead)
    # ...and the app has since entered the scores
    complete_matches(db, dead, random.Random(3))

    # When the operator redrives the points dead-letter queue
    redriven = cli(capsys, "dlq", "redrive", "points")

    # Then moto's lack of move tasks was detected and the messages copied back
    assert redriven.code == 0, redriven.err
    assert "no message move task here" in redriven.err
    assert "moved 12 of 12" in redriven.out
    assert "(copy)" in redriven.out
    assert "PointsDeadLetterQueue -> PointsQueue [##############################] 12/12" in (
        redriven.err
    )
    assert stack.depth("PointsDeadLetterQueue")["visible"] == 0
    # ...without our reason attributes
    back = stack.sqs.receive_message(
        QueueUrl=stack.urls["PointsQueue"],
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
    )["Messages"]
    assert not any(
        name.startswith("matchstats.") for m in back for name in m.get("MessageAttributes", {})
    )
    # ...and once the points function consumed them, match_points is right
    consume_points(stack)
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 2 * 12


@pytest.mark.parametrize(
    "how",
    [("--method", "copy"), ("--kind", "invalid_message")],
    ids=["the whole queue", "by kind"],
)
def test_dlq_redrive_moves_large_messages_in_requests_sqs_accepts(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, how: tuple[str, str]
) -> None:
    # Given eight dead-lettered messages of 150,000 bytes each (1.2 MB together, over SQS's
    # 1 MiB a SendMessageBatch request), with our reason and an attribute of their own
    bodies_sent = [letter * 150_000 for letter in "ABCDEFGH"]
    for body in bodies_sent:
        stack.sqs.send_message(
            QueueUrl=stack.urls["PointsDeadLetterQueue"],
            MessageBody=body,
            MessageAttributes={
                "traceparent": {"DataType": "String", "StringValue": "00-abc-def-01"},
                "matchstats.errorKind": {"DataType": "String", "StringValue": "invalid_message"},
                "matchstats.reason": {"DataType": "String", "StringValue": "not valid JSON"},
            },
        )

    # When the operator redrives the points dead-letter queue by copying, or those of a kind
    redriven = cli(capsys, "dlq", "redrive", "points", *how)

    # Then all eight are back on PointsQueue, with their own attribute but not our reason
    assert redriven.code == 0, redriven.err
    assert "moved 8 of 8" in redriven.out
    back = stack.drain_all("PointsQueue")
    assert sorted(bodies(back)) == bodies_sent
    assert all(set(m["MessageAttributes"]) == {"traceparent"} for m in back)
    # ...and none is left in the dead-letter queue
    assert stack.depth("PointsDeadLetterQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}


class Terminal(io.StringIO):
    """Standard input at a terminal, answering the confirmation with `answer`."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer + "\n")

    def isatty(self) -> bool:
        return True


def test_dlq_discard_deletes_a_poison_message_by_kind_or_id_after_asking(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two messages dead-lettered for missing scores and one poison: an unknown match
    matches = season(db).match_ids[:2]
    dead_letter_points(db, matches)
    invoke_points(points_bodies(999_999))
    assert stack.depth("PointsDeadLetterQueue")["visible"] == 3

    # When the operator discards the unknown-match kind without a terminal to confirm at
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    refused = cli(capsys, "dlq", "discard", "points", "--kind", "match_not_found")
    # ...then with --yes
    by_kind = cli(capsys, "dlq", "discard", "points", "--kind", "match_not_found", "--yes")

    # Then the first refused and kept everything, the second deleted exactly the poison
    assert refused.code == 2
    assert "without confirmation" in refused.err
    assert "1 message(s) of kind match_not_found" in refused.out
    assert by_kind.code == 0, by_kind.err
    assert "discarded 1 of 1" in by_kind.out
    left = peek(stack, "PointsDeadLetterQueue")
    assert sorted(bodies(left)) == sorted(points_bodies(*matches))

    # When the operator discards one of the others by its job id, and says no, then yes
    job_id = left[0]["MessageAttributes"]["matchstats.sourceMessageId"]["StringValue"]
    monkeypatch.setattr("sys.stdin", Terminal("n"))
    declined = cli(capsys, "dlq", "discard", "points", "--id", job_id)
    monkeypatch.setattr("sys.stdin", Terminal("y"))
    confirmed = cli(capsys, "dlq", "discard", "points", "--id", job_id)

    # Then only the confirmed one went, and the last message stays
    assert declined.code == 0
    assert "nothing discarded" in declined.out
    assert confirmed.code == 0, confirmed.err
    assert "discarded 1 of 1" in confirmed.out
    assert bodies(peek(stack, "PointsDeadLetterQueue")) == [left[1]["Body"]]


def test_redrive_by_id_moves_only_the_repaired_message(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given two messages dead-lettered for missing scores, and one match since repaired
    repaired, still_bad = season(db).match_ids[:2]
    dead_letter_points(db, [repaired, still_bad])
    complete_matches(db, [repaired], random.Random(8))
    shown = cli(capsys, "dlq", "show", "points")
    row = next(line for line in shown.out.splitlines() if f'"matchId": {repaired}' in line)
    dead_letter_id = row.split()[0]

    # When the operator redrives that one message by its dead-letter message id
    redriven = cli(capsys, "dlq", "redrive", "points", "--id", dead_letter_id)

    # Then it alone went back to PointsQueue, and once consumed its points exist
    assert redriven.code == 0, redriven.err
    assert f"moved 1 of 1 message(s) with id {dead_letter_id}" in redriven.out
    assert bodies(peek(stack, "PointsDeadLetterQueue")) == points_bodies(still_bad)
    consume_points(stack)
    points = db.execute(
        "SELECT count(*) FROM match_points WHERE match_id = %s", (repaired,)
    ).fetchone()
    assert points == (2,)


class MoveTaskSqs:
    """The real SQS client plus message move tasks, which moto lacks: starting one moves
    every message at once, as a finished AWS task would have."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.tasks: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int = 1) -> dict[str, Any]:
        return {"Results": [t for t in self.tasks if t["SourceArn"] == SourceArn][:MaxResults]}

    def start_message_move_task(self, SourceArn: str, DestinationArn: str) -> dict[str, Any]:
        source = self._real.get_queue_url(QueueName=SourceArn.rsplit(":", 1)[-1])["QueueUrl"]
        target = self._real.get_queue_url(QueueName=DestinationArn.rsplit(":", 1)[-1])["QueueUrl"]
        moved = 0
        while batch := self._real.receive_message(QueueUrl=source, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in batch:
                self._real.send_message(QueueUrl=target, MessageBody=message["Body"])
                self._real.delete_message(QueueUrl=source, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
        handle = uuid.uuid4().hex
        self.tasks.insert(
            0,
            {
                "TaskHandle": handle,
                "Status": "COMPLETED",
                "SourceArn": SourceArn,
                "DestinationArn": DestinationArn,
                "ApproximateNumberOfMessagesMoved": moved,
                "ApproximateNumberOfMessagesToMove": moved,
            },
        )
        return {"TaskHandle": handle}


def test_redrive_uses_a_message_move_task_where_the_endpoint_runs_one(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given four dead-lettered points messages and an endpoint with message move tasks
    matches = season(db).match_ids[:4]
    dead_letter_points(db, matches)
    sqs = MoveTaskSqs(stack.sqs)

    # When the operator redrives them
    redriven = cli(capsys, "dlq", "redrive", "points", aws=Aws(sqs=sqs))

    # Then SQS's move task moved them to PointsQueue, and the command followed it
    assert redriven.code == 0, redriven.err
    assert "moved 4 of 4" in redriven.out
    assert "(move-task)" in redriven.out
    assert sqs.tasks[0]["DestinationArn"] == stack.arns["PointsQueue"]
    assert sorted(bodies(stack.drain_all("PointsQueue"))) == sorted(points_bodies(*matches))


def test_forged_error_kinds_and_typed_selections_are_shown_escaped(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a dead letter whose error kind a producer forged (SQS moves an oversized
    # message with the attributes its sender gave it): an 8-bit CSI that clears the
    # screen, and a right-to-left override
    stack.sqs.send_message(
        QueueUrl=stack.urls["PointsDeadLetterQueue"],
        MessageBody="{}",
        MessageAttributes={
            "matchstats.errorKind": {"DataType": "String", "StringValue": "kind\x9b2J\u202e"}
        },
    )

    # When the operator is asked to discard it (and declines), and selects by a kind or an
    # id that carry escape sequences
    monkeypatch.setattr("sys.stdin", Terminal("n"))
    asked = cli(capsys, "dlq", "discard", "points")
    by_kind = cli(capsys, "dlq", "discard", "points", "--kind", "\x1b[2J", "--yes")
    by_id = cli(capsys, "dlq", "redrive", "points", "--id", "\x1b]52;c;cm0gLXJm\x07")

    # Then each says what it selected, escaped, and nothing was taken
    assert asked.code == by_kind.code == by_id.code == 0, asked.err + by_kind.err + by_id.err
    assert "1 message(s) all in PointsDeadLetterQueue: 1 kind\\x9b2J\\u202e" in asked.out
    assert "no message of kind \\x1b[2J in PointsDeadLetterQueue" in by_kind.out
    assert "\\x1b]52;c;cm0gLXJm\\x07" in by_id.out
    assert_printable(asked, by_kind, by_id)
    assert stack.depth("PointsDeadLetterQueue")["visible"] == 1
