"""The operator's `matchstats` command against the real PostgreSQL and moto's SQS: status,
job history, dead letters shown and redriven (also when interrupted), recompute and
refresh, and bad input answered with one line and an exit status."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from calculate_points import app
from devstack.esm import EventSourceMapping, lambda_sqs_record
from devstack.lambda_context import LambdaContext
from devstack.postgres import create_database, drop_database, free_port
from devstack.sqs import LocalSqs
from matchstats.queues import pack_requests
from ops.aws import Aws
from ops.cli import main
from refresh_views import app as refresh_app
from testkit.events import points_bodies, sqs_event
from testkit.oracle import actual_match_points, expected_match_points
from testkit.seed import Season, complete_matches, create_season, void_match
from tests.conftest import truncate_all
from tests.template_queues import TemplateQueues, function_environment

REPO = Path(__file__).resolve().parents[2]
QUEUES = ("PointsQueue", "PointsDeadLetterQueue", "RefreshQueue", "RefreshDeadLetterQueue")
_LOCAL_CREDENTIALS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch,
    local_sqs: LocalSqs,
    database_url: str,
    db: psycopg.Connection,
) -> Iterator[TemplateQueues]:
    """Empty tables and fresh queues; the environment an operator would set for the local
    stack, which is also CalculatePointsFunction's (for processing what the CLI sends)."""
    truncate_all(db)
    db.execute("TRUNCATE refresh_log")
    db.execute(
        "UPDATE view_refresh_state"
        " SET last_started_at = NULL, last_finished_at = NULL, last_change_seq = NULL"
    )
    created = TemplateQueues.fresh_queues(local_sqs.client())
    env = {
        **local_sqs.environment(),
        **function_environment(created, database_url, "CalculatePointsFunction"),
        "POINTS_DEAD_LETTER_QUEUE_URL": created.urls["PointsDeadLetterQueue"],
        "REFRESH_DEAD_LETTER_QUEUE_URL": created.urls["RefreshDeadLetterQueue"],
    }
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app.dependencies.cache_clear()
    yield created
    app.dependencies.cache_clear()


def cli(capsys: pytest.CaptureFixture[str], *argv: str, aws: Aws | None = None) -> Run:
    capsys.readouterr()  # drop what earlier steps (handlers' logs) printed
    code = main(list(argv), aws=aws)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def season(db: psycopg.Connection, competitions: int = 1, teams: int = 8) -> Season:
    return create_season(db, competitions=competitions, competitors_per_competition=teams)


def invoke_points(bodies: list[str]) -> None:
    """CalculatePointsFunction invoked directly, 10 records an event, as Lambda would."""
    for start in range(0, len(bodies), 10):
        context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
        app.lambda_handler(sqs_event(bodies[start : start + 10]), context)


def consume_points(stack: TemplateQueues) -> None:
    """CalculatePointsFunction behind its event source mapping until PointsQueue is empty."""
    with EventSourceMapping(
        stack.sqs,
        stack.urls["PointsQueue"],
        stack.arns["PointsQueue"],
        app.lambda_handler,
        maximum_concurrency=2,
        function_name="CalculatePointsFunction",
        timeout_s=120,
    ) as mapping:
        mapping.drain(timeout_s=30)


def dead_letter_points(db: psycopg.Connection, match_ids: list[int]) -> None:
    """The app marks matches completed before their scores are in (bad data); the points
    function dead-letters each message with the reason attached."""
    db.execute(
        "UPDATE matches SET status = 'completed', score_version = score_version + 1"
        " WHERE id = ANY(%s)",
        (match_ids,),
    )
    invoke_points(points_bodies(*match_ids))


def peek(stack: TemplateQueues, queue: str) -> list[dict[str, Any]]:
    """Every message on `queue`, made visible again afterwards (for a dead-letter queue,
    whose receive counts do not matter)."""
    messages: list[dict[str, Any]] = []
    while batch := stack.sqs.receive_message(
        QueueUrl=stack.urls[queue],
        MaxNumberOfMessages=10,
        VisibilityTimeout=30,
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages.extend(batch)
    for request in pack_requests(messages):
        stack.sqs.change_message_visibility_batch(
            QueueUrl=stack.urls[queue],
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(request)
            ],
        )
    return messages


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [m["Body"] for m in messages]


# --- the installed console script -------------------------------------------------


def run_script(script: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(script), *argv], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_installed_console_script_documents_exit_codes_and_rejects_bad_usage() -> None:
    # Given the console script that `pip install -e .` installs
    script = REPO / ".venv" / "bin" / "matchstats"
    assert script.exists(), "run `.venv/bin/pip install -e . --no-deps` (the Makefile does)"

    # When it is asked for help, and given an unknown queue name
    helped = run_script(script, "--help")
    refused = run_script(script, "dlq", "show", "nowhere")

    # Then the help lists the commands and the exit statuses
    assert helped.returncode == 0
    for command in ("migrate", "status", "jobs", "dlq", "recompute", "refresh"):
        assert command in helped.stdout
    assert "exit status" in helped.stdout
    assert "130" in helped.stdout
    # ...and the unknown queue gets exit 2 and one line naming it
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "invalid choice: 'nowhere'" in refused.stderr


def test_redrive_help_explains_peeking_and_at_least_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When the operator reads the dead-letter commands' help
    show = cli(capsys, "dlq", "show", "--help")
    redrive = cli(capsys, "dlq", "redrive", "--help")

    # Then it says that SQS cannot peek and that redrive is at-least-once
    assert show.code == 0
    assert "SQS cannot peek" in show.out
    assert "receive count" in show.out
    assert redrive.code == 0
    for phrase in ("StartMessageMoveTask", "at-least-once", "idempotent", "coalesce"):
        assert phrase in " ".join(redrive.out.split())


# --- migrate, status, jobs ----------------------------------------------------------


def test_migrate_applies_every_migration_once(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_server_url: str,
) -> None:
    # Given an empty database
    name = f"test_cli_migrate_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server_url, name)
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        # When migrate runs twice
        first = cli(capsys, "migrate")
        second = cli(capsys, "migrate")
    finally:
        drop_database(postgres_server_url, name)

    # Then the first applies every migration and the second none
    assert first.code == 0
    assert "0001_input_tables" in first.out
    assert "0005" in first.out
    assert second.code == 0
    assert "up to date" in second.out


def test_status_shows_queues_views_and_waiting_changes(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given views that are current, then a points change and a dead-lettered message
    matches = season(db).match_ids
    assert cli(capsys, "refresh", "--wait", "--force").code == 0
    before = cli(capsys, "status")
    complete_matches(db, matches[:5], random.Random(1))
    invoke_points(points_bodies(*matches[:5]))
    dead_letter_points(db, matches[5:6])

    # When the operator asks for the status
    after = cli(capsys, "status")

    # Then it names the four queues, with the dead letter counted
    assert after.code == 0, after.err
    for queue in QUEUES:
        assert queue in after.out
    dlq_row = next(line for line in after.out.splitlines() if "PointsDeadLetterQueue" in line)
    assert dlq_row.split()[1] == "1"
    # ...both views, with changes waiting after the points change and none before
    for view in ("competition_standings", "competitor_stats"):
        row_before = next(line for line in before.out.splitlines() if line.strip().startswith(view))
        row_after = next(line for line in after.out.splitlines() if line.strip().startswith(view))
        assert row_before.endswith("no")
        assert row_after.endswith("yes")
    # ...and the failure behind the dead letter
    assert "Latest job failures" in after.out
    assert "completed without both scores" in after.out


def test_jobs_lists_history_with_filters(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given three completed points jobs, one failed one, and a manual refresh
    matches = season(db).match_ids
    complete_matches(db, matches[:3], random.Random(2))
    invoke_points(points_bodies(*matches[:3]))
    dead_letter_points(db, matches[3:4])
    assert cli(capsys, "refresh", "--wait").code == 0

    # When the operator lists all, the failed, the refresh jobs, and only the latest one
    everything = cli(capsys, "jobs")
    failed = cli(capsys, "jobs", "--failed")
    refreshes = cli(capsys, "jobs", "--type", "refresh")
    latest = cli(capsys, "jobs", "--limit", "1")

    # Then each shows what it asked for
    assert everything.code == failed.code == refreshes.code == latest.code == 0
    assert "5 run(s)" in everything.out
    assert "1 run(s)" in failed.out
    assert f"match {matches[3]}" in failed.out
    assert "completed without both scores" in failed.out
    assert "1 run(s)" in refreshes.out
    assert "refresh all (manual)" in refreshes.out
    assert "1 run(s)" in latest.out
    assert "refresh all (manual)" in latest.out


# --- dead letters -----------------------------------------------------------------


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


def test_dlq_redrive_moves_large_messages_in_requests_sqs_accepts(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues
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

    # When the operator redrives the points dead-letter queue by copying
    redriven = cli(capsys, "dlq", "redrive", "points", "--method", "copy")

    # Then all eight are back on PointsQueue, with their own attribute but not our reason
    assert redriven.code == 0, redriven.err
    assert "moved 8 of 8" in redriven.out
    back = stack.drain_all("PointsQueue")
    assert sorted(bodies(back)) == bodies_sent
    assert all(set(m["MessageAttributes"]) == {"traceparent"} for m in back)
    # ...and none is left in the dead-letter queue
    assert stack.depth("PointsDeadLetterQueue") == {"visible": 0, "in_flight": 0, "delayed": 0}


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


# --- recompute and refresh --------------------------------------------------------------


def test_recompute_enqueues_the_selected_matches_and_fixes_points(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given two competitions: in the first 10 matches completed with points, one since
    # voided (its points must go); in the second 4 completed without points yet
    first, second = season(db, competitions=2, teams=6).competition_ids
    by_competition = dict(
        db.execute(
            "SELECT competition_id, array_agg(id ORDER BY id) FROM matches GROUP BY 1"
        ).fetchall()
    )
    played = by_competition[first][:10]
    complete_matches(db, played, random.Random(5))
    invoke_points(points_bodies(*played))
    void_match(db, played[0])
    complete_matches(db, by_competition[second][:4], random.Random(6))

    # When the operator recomputes two matches, then the first competition, then all
    some = cli(capsys, "recompute", "--match", str(played[1]), str(played[2]))
    one = cli(capsys, "recompute", "--competition", str(first))
    everything = cli(capsys, "recompute", "--all")
    dry = cli(capsys, "recompute", "--all", "--dry-run")

    # Then each counts what it selected: the voided match too, unplayed ones not at all
    assert some.code == one.code == everything.code == dry.code == 0
    assert "enqueued 2 points message(s)" in some.out
    assert "enqueued 10 points message(s)" in one.out
    assert "enqueued 14 points message(s)" in everything.out
    assert "would enqueue 14" in dry.out
    assert "[##############################] 14/14" in everything.err
    assert stack.depth("PointsQueue")["visible"] == 2 + 10 + 14
    # ...and once consumed, match_points is right: the voided match lost its points
    consume_points(stack)
    assert actual_match_points(db) == expected_match_points(db)
    assert len(actual_match_points(db)) == 2 * (9 + 4)


def test_refresh_enqueues_or_runs_in_process(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given completed matches with points that no view shows yet
    matches = season(db).match_ids[:6]
    complete_matches(db, matches, random.Random(7))
    invoke_points(points_bodies(*matches))
    stack.drain_all("RefreshQueue")  # the function's own requests

    # When the operator requests a refresh, then runs one, then another, then forces one
    requested = cli(capsys, "refresh", "--scope", "competitor_stats", "--force")
    executed = cli(capsys, "refresh", "--wait")
    skipped = cli(capsys, "refresh", "--wait")
    forced = cli(capsys, "refresh", "--wait", "--scope", "competition_standings", "--force")

    # Then the request is on RefreshQueue as a manual, forced one for that view
    assert requested.code == 0
    assert "message id" in requested.out
    [message] = stack.drain_all("RefreshQueue")
    body = json.loads(message["Body"])
    assert (body["scope"], body["reason"], body["force"]) == ("competitor_stats", "manual", True)
    # ...the first in-process refresh ran both views and says how long it took
    assert executed.code == 0
    assert executed.out.count("executed") == 2
    assert "done in" in executed.out
    standings = db.execute("SELECT count(*) FROM competition_standings").fetchone()
    sides = db.execute("SELECT count(DISTINCT competitor_id) FROM match_points").fetchone()
    assert standings == sides
    assert standings is not None
    assert standings[0] > 0
    # ...the second had nothing to do, and --force refreshed anyway
    assert skipped.out.count("skipped: nothing changed") == 2
    assert forced.out.count("executed") == 1
    assert "competitor_stats" not in forced.out


# --- configuration from a CloudFormation stack --------------------------------------


def test_stack_outputs_and_its_database_secret_configure_the_command_and_env_wins(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    local_sqs: LocalSqs,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a dead-lettered points message
    dead_letter_points(db, season(db).match_ids[:1])
    # ...a deployed stack: the four queue URLs as outputs (the points dead-letter one
    # stale), and DbSecretArn naming a secret in the RDS shape for the database
    endpoint = local_sqs.endpoint_url
    session = boto3.session.Session(**_LOCAL_CREDENTIALS)
    secret = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"db-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps(
            {
                "host": db.info.host,
                "port": db.info.port,
                "username": db.info.user,
                "password": db.info.password or "trust-auth-ignores-it",
                "dbname": db.info.dbname,
            }
        ),
    )
    outputs = {f"{queue}Url": url for queue, url in stack.urls.items()}
    outputs["PointsDeadLetterQueueUrl"] = f"{endpoint}/000000000000/gone"
    name = f"matchstats-{uuid.uuid4().hex[:8]}"
    session.client("cloudformation", endpoint_url=endpoint).create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Parameters": {"DbSecretArn": {"Type": "String"}},
                "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()},
            }
        ),
        Parameters=[{"ParameterKey": "DbSecretArn", "ParameterValue": secret["ARN"]}],
    )
    # ...an operator environment without queue URLs or DATABASE_URL, except the points
    # dead-letter queue given explicitly
    for variable in ("DATABASE_URL", "POINTS_QUEUE_URL", "REFRESH_QUEUE_URL"):
        monkeypatch.delenv(variable)
    monkeypatch.delenv("REFRESH_DEAD_LETTER_QUEUE_URL")
    monkeypatch.setenv("DB_SSLMODE", "disable")

    # When the operator names the stack
    status = cli(capsys, "status", "--stack", name)
    shown = cli(capsys, "--stack", name, "dlq", "show", "points")
    missing = cli(capsys, "--stack", "no-such-stack", "status")

    # Then the queues come from its outputs and the database from its secret
    assert status.code == 0, status.err
    for queue in QUEUES:
        assert f"{queue} " in status.out
    assert "competition_standings" in status.out
    # ...the explicit variable won over the stale output
    assert shown.code == 0, shown.err
    assert "missing_scores" in shown.out
    # ...and an unknown stack is one line naming it
    assert missing.code == 1
    assert "cannot read stack no-such-stack" in missing.err
    assert missing.err.count("\n") == 1


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("dlq", "show", "nowhere"),
        ("recompute", "--match", "abc"),
        ("recompute", "--match", "0"),
        ("jobs", "--limit", "many"),
        ("recompute", "--all", "--match", "1"),
        ("explode",),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    # When the command line is wrong
    run = cli(capsys, *argv)

    # Then the error is one line naming the problem, and the exit status 2
    assert run.code == 2
    assert run.err.count("\n") == 1
    assert run.err.startswith("matchstats")
    assert "error:" in run.err
    assert run.out == ""


def test_unknown_ids_are_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given a season without match 999999 or competition 424242
    season(db)

    # When the operator names them
    match = cli(capsys, "recompute", "--match", "1", "999999")
    competition = cli(capsys, "recompute", "--competition", "424242")

    # Then each gets one line naming the unknown id, exit 1, and nothing is sent
    assert (match.code, match.err) == (1, "matchstats: error: no such match: 999999\n")
    assert competition.code == 1
    assert "no such competition: 424242" in competition.err
    assert stack.depth("PointsQueue")["visible"] == 0


def test_unreachable_database_endpoint_or_missing_configuration_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given nothing listening on two ports
    closed_db, closed_sqs = free_port(), free_port()

    # When the database is unreachable
    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@127.0.0.1:{closed_db}/matchstats")
    database = cli(capsys, "jobs")
    partial = cli(capsys, "status")
    # ...when the SQS endpoint is unreachable
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_sqs}")
    endpoint = cli(capsys, "dlq", "show", "points")
    # ...and when the database is not configured at all
    monkeypatch.delenv("DATABASE_URL")
    unset = cli(capsys, "migrate")

    # Then each is one line that names the problem, exit 1, never a traceback
    for run in (database, endpoint, unset):
        assert run.code == 1
        assert run.err.count("\n") == 1
        assert "Traceback" not in run.err
    assert "cannot connect to the database" in database.err
    assert str(closed_db) in database.err
    assert "cannot reach" in endpoint.err
    assert str(closed_sqs) in endpoint.err
    assert "no database: set DATABASE_URL or DB_SECRET_ARN" in unset.err
    # ...and status still shows the queues it could read
    assert partial.code == 1
    assert partial.err.count("\n") == 1
    assert "cannot connect to the database" in partial.err
    assert "PointsDeadLetterQueue" in partial.out
    assert "database unavailable" in partial.out


# --- discard, job detail, refresh outcomes, retries (issue 13) ----------------------------


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


def test_jobs_show_gives_body_kind_reason_and_the_dead_letter_copy(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given a points message dead-lettered because its match has no scores
    [match] = season(db).match_ids[:1]
    dead_letter_points(db, [match])
    [copy] = peek(stack, "PointsDeadLetterQueue")
    job_id = copy["MessageAttributes"]["matchstats.sourceMessageId"]["StringValue"]
    shown = cli(capsys, "dlq", "show", "points")
    history_id = db.execute("SELECT id FROM job_history WHERE job_id = %s", (job_id,)).fetchone()
    assert history_id is not None

    # When the operator looks the job up by the id `dlq show` names, and by its history id
    by_job_id = cli(capsys, "jobs", "show", job_id)
    by_row = cli(capsys, "jobs", "show", str(history_id[0]))
    unknown = cli(capsys, "jobs", "show", "no-such-job")

    # Then the dead-letter listing names the job, whose copy has an id of its own
    assert copy["MessageId"] != job_id
    assert job_id in shown.out
    # ...and the job's detail has its body, error kind and reason, and the copy's id
    assert by_job_id.code == by_row.code == 0, by_job_id.err
    assert by_job_id.out == by_row.out
    assert json.dumps({"matchId": match}) in by_job_id.out
    assert "error kind missing_scores" in by_job_id.out
    assert f"match {match} is completed without both scores" in by_job_id.out
    assert "dead-lettered" in by_job_id.out
    assert f"dead-letter copy: message {copy['MessageId']}" in by_job_id.out
    assert unknown.code == 1
    assert "no job run with id no-such-job" in unknown.err


def refresh_request(reason: str, requested_at: str) -> str:
    return json.dumps({"scope": "all", "reason": reason, "requestedAt": requested_at})


def test_refresh_jobs_say_whether_their_refresh_ran_was_covered_or_unchanged(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given RefreshViewsFunction, and points that changed after a database clock reading
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", stack.urls["RefreshDeadLetterQueue"])
    refresh_app.dependencies.cache_clear()
    matches = season(db).match_ids[:4]
    complete_matches(db, matches, random.Random(9))
    invoke_points(points_bodies(*matches))
    clock = db.execute("SELECT clock_timestamp()").fetchone()
    assert clock is not None
    changed_by = clock[0].isoformat()

    # When a points request refreshes the views, the same request comes again (a refresh
    # has started since it was made), and the schedule asks with nothing changed since
    for body in (
        refresh_request("points", changed_by),
        refresh_request("points", changed_by),
        refresh_request("schedule", changed_by),
    ):
        context = LambdaContext.for_invocation("RefreshViewsFunction", 120)
        refresh_app.lambda_handler(sqs_event([body], template="refresh-views.json"), context)
    refresh_app.dependencies.cache_clear()
    listed = cli(capsys, "jobs", "--type", "refresh")
    latest = db.execute(
        "SELECT job_id FROM job_history WHERE job_type = 'refresh' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert latest is not None
    detail = cli(capsys, "jobs", "show", latest[0])

    # Then the history tells the three apart, newest first
    assert listed.code == 0, listed.err
    outcomes = [
        word
        for line in listed.out.splitlines()
        if "refresh all" in line
        for word in line.split()
        if word in {"executed", "covered", "unchanged"}
    ]
    assert outcomes == ["unchanged", "covered", "executed"]
    # ...and a job's detail names each view's decision
    assert detail.code == 0, detail.err
    assert "state      unchanged" in detail.out
    assert re.search(r"competition_standings\s+unchanged", detail.out)
    assert re.search(r"competitor_stats\s+unchanged", detail.out)


def receive_as_event(stack: TemplateQueues, queue: str) -> dict[str, Any]:
    """What the event source mapping would hand the function: the queue's messages, received."""
    messages = stack.sqs.receive_message(
        QueueUrl=stack.urls[queue],
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    return {"Records": [lambda_sqs_record(m, stack.arns[queue], "us-east-1") for m in messages]}


def test_a_retry_waiting_its_backoff_shows_its_next_attempt(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a points message whose batch committed but could not ask for a refresh (the
    # refresh queue is gone): a transient failure, retried after a 5 s backoff
    [match] = season(db).match_ids[:1]
    complete_matches(db, [match], random.Random(10))
    stack.send("PointsQueue", points_bodies(match))
    monkeypatch.setenv("REFRESH_QUEUE_URL", f"{stack.urls['RefreshQueue']}-gone")
    app.dependencies.cache_clear()
    context = LambdaContext.for_invocation("CalculatePointsFunction", 120)
    app.lambda_handler(receive_as_event(stack, "PointsQueue"), context)
    monkeypatch.setenv("REFRESH_QUEUE_URL", stack.urls["RefreshQueue"])
    app.dependencies.cache_clear()

    # When the operator asks for the status and the failed jobs
    status = cli(capsys, "status")
    failed = cli(capsys, "jobs", "--failed")

    # Then PointsQueue counts the message in flight, and says it waits to retry, and when
    assert status.code == 0, status.err
    row = next(line for line in status.out.splitlines() if line.strip().startswith("PointsQueue"))
    assert row.split()[1:3] == ["0", "1"]
    assert re.search(rf"1 waiting to retry; next attempt in [1-5] s .*match {match}", row)
    # ...and the job lists its next attempt and its error kind
    assert re.search(r"retry 2 of 3 at \d\d:\d\d:\d\d \(in [1-5] s\)", failed.out)
    assert "queue_unavailable" in failed.out
