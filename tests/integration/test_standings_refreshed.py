"""StandingsRefreshed (SPEC section 6b) through moto's EventBridge, in both standings modes:
RefreshViewsFunction, run as Lambda runs it against the real PostgreSQL, publishes one
event on the default bus after a refresh that changed rows, naming the views and the
competitions whose rows changed; none after a refresh that changed nothing; and an
EventBridge it cannot reach never fails the refresh.

The app's side is a rule on the default bus for `source` matchstats whose target is an SQS
queue, in the same moto server: what reaches the queue is what the app would receive."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest

from devstack.queue_specs import queue_arn
from devstack.sqs import LocalSqs
from matchstats.messages import RefreshReason, RefreshScope
from matchstats.models import StandingsMode
from refresh_views import app
from testkit.events import sqs_event
from testkit.oracle import (
    actual_competitor_stats,
    actual_standings,
    expected_competitor_stats,
    expected_standings,
)
from testkit.seed import correct_score
from tests.conftest import switch_standings_mode
from tests.integration.cli.steps import cli
from tests.integration.refresh_steps import (
    VIEWS,
    compute_points,
    context,
    play_season,
    request_body,
)
from tests.template_queues import TemplateQueues


class AppInbox:
    """What an app subscribed to matchstats' events on the default bus receives."""

    def __init__(self, local_sqs: LocalSqs) -> None:
        self.sqs = local_sqs.client()
        self.events = boto3.session.Session().client(
            "events",
            endpoint_url=local_sqs.endpoint_url,
            region_name=local_sqs.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        name = f"app-{uuid.uuid4().hex[:10]}"
        self.rule = name
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        self.events.put_rule(
            Name=name, EventBusName="default", EventPattern=json.dumps({"source": ["matchstats"]})
        )
        self.events.put_targets(
            Rule=name, Targets=[{"Id": "app", "Arn": queue_arn(self.sqs, self.url)}]
        )

    def received(self) -> list[dict[str, Any]]:
        """Every event delivered so far (taken off the queue)."""
        events = []
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in batch:
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return events

    def close(self) -> None:
        self.events.remove_targets(Rule=self.rule, Ids=["app"])
        self.events.delete_rule(Name=self.rule)
        self.sqs.delete_queue(QueueUrl=self.url)


@pytest.fixture
def inbox(local_sqs: LocalSqs) -> Iterator[AppInbox]:
    subscribed = AppInbox(local_sqs)
    yield subscribed
    subscribed.close()


def refresh(db: psycopg.Connection, reason: RefreshReason = RefreshReason.POINTS, **kw: Any) -> Any:
    """RefreshViewsFunction on one request, as Lambda invokes it."""
    return app.lambda_handler(sqs_event([request_body(db, reason, **kw)]), context())


def last_finished_at(db: psycopg.Connection) -> Any:
    row = db.execute("SELECT max(finished_at) FROM refresh_log").fetchone()
    assert row is not None
    return row[0]


def played_and_refreshed(db: psycopg.Connection, database_url: str, inbox: AppInbox) -> list[int]:
    """Three competitions played and shown; what the app heard of that is forgotten."""
    play_season(db, database_url, competitions=3, competitors_per_competition=4)
    assert refresh(db, RefreshReason.SCHEDULE) == {"batchItemFailures": []}
    assert len(inbox.received()) == 1
    return [row[0] for row in db.execute("SELECT id FROM competitions ORDER BY id")]


def completed_match_of(db: psycopg.Connection, competition_id: int) -> int:
    row = db.execute(
        "SELECT min(id) FROM matches WHERE competition_id = %s AND status = 'completed'",
        (competition_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_refresh_that_changed_rows_publishes_one_event_naming_what_changed(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str, inbox: AppInbox
) -> None:
    # Given three competitions on show, and the app subscribed to matchstats' events
    competitions = played_and_refreshed(db, database_url, inbox)
    # ...then results corrected in the first and the third only
    changed = [completed_match_of(db, competitions[0]), completed_match_of(db, competitions[2])]
    for match_id in changed:
        correct_score(db, match_id, 9, 0)
    compute_points(database_url, changed)

    # When the refresh that follows the points runs
    assert refresh(db) == {"batchItemFailures": []}

    # Then the app received exactly one event, naming both views and those two competitions
    [event] = inbox.received()
    assert (event["source"], event["detail-type"]) == ("matchstats", "StandingsRefreshed")
    detail = event["detail"]
    assert sorted(detail["views"]) == sorted(VIEWS)
    assert detail["competitionIds"] == [competitions[0], competitions[2]]
    # ...finished when the last of the refreshes committed, by the database clock
    finished = db.execute("SELECT %s::timestamptz", (detail["finishedAt"],)).fetchone()
    assert finished == (last_finished_at(db),)


def test_a_refresh_of_one_view_names_that_view(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str, inbox: AppInbox
) -> None:
    # Given a result corrected in the second competition after the last refresh
    competitions = played_and_refreshed(db, database_url, inbox)
    match_id = completed_match_of(db, competitions[1])
    correct_score(db, match_id, 0, 9)
    compute_points(database_url, [match_id])

    # When an operator's request refreshes competition_standings only, then competitor_stats
    assert refresh(db, RefreshReason.API, scope=RefreshScope.COMPETITION_STANDINGS) == {
        "batchItemFailures": []
    }
    first = inbox.received()
    assert refresh(db, RefreshReason.API, scope=RefreshScope.COMPETITOR_STATS) == {
        "batchItemFailures": []
    }
    second = inbox.received()

    # Then each refresh published one event naming its own view; competitor_stats is not
    # by competition, so it names none
    assert [(e["detail"]["views"], e["detail"]["competitionIds"]) for e in first] == [
        (["competition_standings"], [competitions[1]])
    ]
    assert [(e["detail"]["views"], e["detail"]["competitionIds"]) for e in second] == [
        (["competitor_stats"], [])
    ]


def test_a_refresh_that_changed_nothing_publishes_none(
    refresh_env: TemplateQueues, db: psycopg.Connection, database_url: str, inbox: AppInbox
) -> None:
    # Given standings on show, and the same points delivered again (nothing changes)
    competitions = played_and_refreshed(db, database_url, inbox)
    compute_points(database_url, [completed_match_of(db, c) for c in competitions])

    # When the schedule asks, and an operator forces a refresh of both views
    assert refresh(db, RefreshReason.SCHEDULE) == {"batchItemFailures": []}
    assert refresh(db, RefreshReason.MANUAL, force=True) == {"batchItemFailures": []}

    # Then the forced refresh ran, but no event was published
    ran = db.execute("SELECT count(*) FROM refresh_log WHERE forced").fetchone()
    assert ran == (2,)
    assert inbox.received() == []


def unreachable_endpoint() -> str:
    """A loopback port nobody listens on: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_eventbridge_never_fails_the_refresh(
    refresh_env: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    inbox: AppInbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given standings on show, and a correction committed
    competitions = played_and_refreshed(db, database_url, inbox)
    match_id = completed_match_of(db, competitions[0])
    correct_score(db, match_id, 5, 5)
    compute_points(database_url, [match_id])
    # ...and a function (cold) whose EventBridge endpoint refuses every connection
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", unreachable_endpoint())
    app.dependencies.cache_clear()

    # When the refresh that follows the points runs
    response = refresh(db)

    # Then the batch succeeded and the standings show the correction; no event arrived
    assert response == {"batchItemFailures": []}
    assert actual_standings(db) == expected_standings(db)
    assert actual_competitor_stats(db) == expected_competitor_stats(db)
    assert inbox.received() == []
    history = db.execute(
        "SELECT status, count(*) FROM job_history WHERE job_type = 'refresh' GROUP BY status"
    ).fetchall()
    assert dict(history) == {"completed": 2}


def test_a_mode_switch_tells_the_app_of_every_competition_it_rebuilt(
    refresh_env: TemplateQueues,
    standings_mode: StandingsMode,
    db: psycopg.Connection,
    database_url: str,
    inbox: AppInbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three competitions on show, and a correction whose points committed and wait
    # in the change log for the next refresh
    competitions = played_and_refreshed(db, database_url, inbox)
    match_id = completed_match_of(db, competitions[1])
    correct_score(db, match_id, 9, 0)
    compute_points(database_url, [match_id])

    # When the operator switches the standings to the other mode, which rebuilds them
    # from match_points and so takes in the waiting change
    other = next(mode for mode in StandingsMode if mode is not standings_mode)
    monkeypatch.setenv("DATABASE_URL", database_url)
    try:
        switched = cli(capsys, "migrate", "--standings", other.value)
        received = inbox.received()
        refreshed_after = refresh(db)
    finally:  # the module's later tests expect the mode standings_mode set
        switch_standings_mode(database_url, standings_mode)

    # Then the app heard of it: one event naming both views and every competition
    assert switched.code == 0, switched.err
    assert len(received) == 1, (switched.out, switched.err, received)
    [event] = received
    assert sorted(event["detail"]["views"]) == sorted(VIEWS)
    assert event["detail"]["competitionIds"] == competitions
    # ...and the next refresh found nothing waiting, so nothing was told twice
    assert refreshed_after == {"batchItemFailures": []}
    assert inbox.received() == []
    assert actual_standings(db) == expected_standings(db)
