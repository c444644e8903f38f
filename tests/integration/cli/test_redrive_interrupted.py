"""`matchstats dlq redrive` interrupted (Ctrl-C) before a delete or during a send: nothing is
lost, nothing but the uncertain chunk is sent twice, and a rerun finishes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import psycopg
import pytest

from ops.aws import Aws
from testkit.events import points_bodies
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import complete_matches
from tests.integration.cli.steps import bodies, cli, dead_letter_points, invoke_points, peek, season
from tests.template_queues import TemplateQueues


class InterruptingSqs:
    """The real SQS client, except that one call is interrupted (Ctrl-C) once."""

    def __init__(self, real: Any, *, operation: str, call: int, after_the_call: bool) -> None:
        self._real = real
        self._operation = operation
        self._call = call
        self._after = after_the_call
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if name != self._operation:
            return attribute

        def interrupted(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls != self._call:
                return attribute(**kwargs)
            if self._after:
                attribute(**kwargs)  # the call went through; its answer is lost
            raise KeyboardInterrupt

        return interrupted


def test_redrive_interrupted_before_a_delete_loses_and_duplicates_nothing(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given 25 dead-lettered points messages (three chunks of at most 10)
    matches = season(db).match_ids[:25]
    dead_letter_points(db, matches)
    expected = set(points_bodies(*matches))
    # ...and Ctrl-C after the second chunk was sent, before its delete
    sqs = InterruptingSqs(stack.sqs, operation="delete_message_batch", call=2, after_the_call=False)

    # When the redrive is interrupted there
    interrupted = cli(capsys, "dlq", "redrive", "points", "--method", "copy", aws=Aws(sqs=sqs))

    # Then it stops with 130 after settling the chunk in hand: 20 moved, 5 left, no copy twice
    assert interrupted.code == 130
    assert "interrupted: moved 20 of 25" in interrupted.err
    assert "sent twice" not in interrupted.err
    moved = bodies(stack.drain_all("PointsQueue"))
    left = bodies(peek(stack, "PointsDeadLetterQueue"))
    assert len(moved) == 20
    assert len(left) == 5
    assert set(moved) | set(left) == expected
    assert not set(moved) & set(left)

    # When the operator runs it again
    rerun = cli(capsys, "dlq", "redrive", "points")

    # Then the rest moves, and every message arrived exactly once
    assert rerun.code == 0
    assert "moved 5 of 5" in rerun.out
    moved += bodies(stack.drain_all("PointsQueue"))
    assert Counter(moved) == Counter(expected)
    assert stack.depth("PointsDeadLetterQueue")["visible"] == 0


def test_redrive_interrupted_during_a_send_loses_nothing_and_a_rerun_finishes(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given 25 dead-lettered points messages whose matches now have scores
    matches = season(db).match_ids[:25]
    dead_letter_points(db, matches)
    complete_matches(db, matches, random.Random(4))
    expected = set(points_bodies(*matches))
    # ...and Ctrl-C while the second chunk's send was under way: SQS took it, the
    # command never learnt so
    sqs = InterruptingSqs(stack.sqs, operation="send_message_batch", call=2, after_the_call=True)

    # When the redrive is interrupted there
    interrupted = cli(capsys, "dlq", "redrive", "points", "--method", "copy", aws=Aws(sqs=sqs))

    # Then nothing is lost: each message is on the source queue or still dead-lettered
    assert interrupted.code == 130
    assert "moved 10 of 25" in interrupted.err
    assert "10 may be sent twice" in interrupted.err
    first = bodies(stack.drain_all("PointsQueue"))
    left = bodies(peek(stack, "PointsDeadLetterQueue"))
    assert len(first) == 20
    assert len(left) == 15
    assert set(first) | set(left) == expected

    # When the operator runs it again
    rerun = cli(capsys, "dlq", "redrive", "points")

    # Then it finishes; the uncertain chunk arrived twice (at-least-once), nothing else did
    assert rerun.code == 0
    assert "moved 15 of 15" in rerun.out
    delivered = first + bodies(stack.drain_all("PointsQueue"))
    duplicates = {body: n for body, n in Counter(delivered).items() if n > 1}
    assert set(delivered) == expected
    assert len(duplicates) == 10
    assert set(duplicates.values()) == {2}
    assert stack.depth("PointsDeadLetterQueue")["visible"] == 0
    # ...and the points function, given every delivery duplicates included, is right
    invoke_points(delivered)
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 2 * 25
