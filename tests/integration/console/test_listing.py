"""Listing dead letters holds nothing: while the console is open and polling, a receive
and a redrive still get every dead letter."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from flask.testing import FlaskClient

from ops.cli import main as cli_main
from testkit.events import points_bodies
from testkit.seed import create_season
from tests.integration.console.steps import ORIGIN, invoke_points, signed_in
from tests.template_queues import TemplateQueues


class Poller:
    """A browser tab left open on the console, as fast as it can: the page and each
    fragment it loads, the dead-letter list and a confirmation's preview included."""

    PATHS = (
        "/",
        "/fragments/overview",
        "/fragments/dead-letters",
        "/fragments/confirm/points/discard",
        "/api/dead-letters",
    )

    def __init__(self, console: FlaskClient) -> None:
        self._client = console.application.test_client()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.requests = 0
        self.failures: list[str] = []

    def __enter__(self) -> Poller:
        signed_in(self._client)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.PATHS:
                response = self._client.get(path, base_url=ORIGIN)
                self.requests += 1
                if response.status_code != 200:
                    self.failures.append(f"{path}: {response.status_code}")


def test_while_the_console_is_open_a_receive_and_a_redrive_get_every_dead_letter(
    console: FlaskClient,
    stack: tuple[TemplateQueues, dict[str, str]],
    db: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given five dead letters
    queues, _ = stack
    create_season(db, competitions=1, competitors_per_competition=4)
    invoke_points(points_bodies(*range(999_991, 999_996)))
    assert queues.depth("PointsDeadLetterQueue")["visible"] == 5
    dead_letter_url = queues.urls["PointsDeadLetterQueue"]

    with Poller(console) as poller:
        # When another reader receives from the queue again and again while the console
        # lists it, releasing what it got each time
        received = []
        for _ in range(15):
            batch = queues.sqs.receive_message(
                QueueUrl=dead_letter_url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            received.append(len(batch))
            if batch:
                queues.sqs.change_message_visibility_batch(
                    QueueUrl=dead_letter_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(batch)
                    ],
                )
            time.sleep(0.1)
        # ...and the operator runs `matchstats dlq redrive points` meanwhile
        capsys.readouterr()
        code = cli_main(["dlq", "redrive", "points"])
        redrive_output = capsys.readouterr()
        polled = poller.requests

    # Then every receive got all five: the console hid none of them
    assert received == [5] * 15
    # ...the redrive moved all five back to PointsQueue, and none is left behind
    assert code == 0, redrive_output.err
    assert queues.depth("PointsDeadLetterQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert len(queues.drain_all("PointsQueue")) == 5
    # ...while the console answered throughout
    assert polled > 10
    assert poller.failures == []
