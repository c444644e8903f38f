"""`matchstats migrate`, `status` and `jobs`: what the operator reads about the queues, the
views and the job history, a job's detail, each refresh's outcome and a retry's next
attempt."""

from __future__ import annotations

import json
import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from calculate_points import app
from devstack.lambda_context import LambdaContext
from devstack.lambda_sqs import lambda_sqs_record
from devstack.postgres import create_database, drop_database
from refresh_views import app as refresh_app
from testkit.events import points_bodies, sqs_event
from testkit.seed import complete_matches
from tests.integration.cli.steps import (
    QUEUES,
    assert_printable,
    cli,
    dead_letter_points,
    invoke_points,
    peek,
    season,
)
from tests.template_queues import TemplateQueues


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


def test_message_text_reaches_the_terminal_escaped_never_as_control_sequences(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given a poison message whose body carries terminal control sequences (clear the
    # screen, write the clipboard by OSC 52) and a right-to-left override
    sequence = "\x1b[2J\x1b]52;c;cm0gLXJm\x07\u202e"
    body = '{"matchId": 1, "' + sequence + '": 2}'
    invoke_points([body])
    [job_id] = db.execute(
        "SELECT job_id FROM job_history WHERE job_type = 'points' AND body = %s", (body,)
    ).fetchone()

    # When the operator lists the failed jobs, shows the job and lists the dead letters
    listed, shown, dead_letters = (
        cli(capsys, "jobs", "--failed"),
        cli(capsys, "jobs", "show", job_id),
        cli(capsys, "dlq", "show", "points"),
    )

    # Then no output holds a control character or a bidirectional override...
    for run in (listed, shown, dead_letters):
        assert run.code == 0, run.err
    assert_printable(listed, shown, dead_letters)
    # ...and where the body is shown, its sequences are there in escaped form
    escaped = "\\x1b[2J\\x1b]52;c;cm0gLXJm\\x07\\u202e"
    assert escaped in shown.out
    assert escaped[:20] in dead_letters.out


def test_a_job_that_failed_once_then_succeeded_reads_the_same_by_any_of_its_ids(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    db: psycopg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a refresh request whose first run timed out waiting for competition_standings'
    # lock (another refresher held it), and whose retry, after the backoff, succeeded
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", stack.urls["RefreshDeadLetterQueue"])
    refresh_app.dependencies.cache_clear()
    season(db)
    stack.send("RefreshQueue", [refresh_request("api", datetime.now(UTC).isoformat())])
    with psycopg.connect(database_url) as holder:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('matchstats.refresh:' || %s, 0))",
            ("competition_standings",),
        )
        first = receive_as_event(stack, "RefreshQueue")
        # 7 s of invocation: 5 s kept in reserve leave a 2 s lock wait
        context = LambdaContext.for_invocation("RefreshViewsFunction", 7)
        assert refresh_app.lambda_handler(first, context)["batchItemFailures"]
    [record] = first["Records"]
    stack.sqs.change_message_visibility(  # the backoff, cut short
        QueueUrl=stack.urls["RefreshQueue"],
        ReceiptHandle=record["receiptHandle"],
        VisibilityTimeout=0,
    )
    context = LambdaContext.for_invocation("RefreshViewsFunction", 120)
    retry = receive_as_event(stack, "RefreshQueue")
    assert retry["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert refresh_app.lambda_handler(retry, context) == {"batchItemFailures": []}
    refresh_app.dependencies.cache_clear()
    job_id = record["messageId"]
    runs = db.execute(
        "SELECT id, status FROM job_history WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    assert [run_status for _, run_status in runs] == ["failed", "completed"]
    failed_run = str(runs[0][0])

    # When the operator shows the job by its message id and by its failed run's history
    # id, and lists the failed jobs and the status
    by_job_id = cli(capsys, "jobs", "show", job_id)
    by_row = cli(capsys, "jobs", "show", failed_run)
    failed = cli(capsys, "jobs", "--failed")
    status = cli(capsys, "status")

    # Then both show the two runs and the state of the last one
    assert by_job_id.code == by_row.code == 0, by_row.err
    assert by_row.out == by_job_id.out
    assert "state      retry" not in by_row.out
    assert (
        sum(
            line.strip().startswith(str(run_id))
            for run_id, _ in runs
            for line in by_row.out.splitlines()
        )
        == 2
    )
    # ...and the failed run is listed as retried, not as waiting for a retry
    failed_row = next(line for line in failed.out.splitlines() if line.startswith(failed_run))
    assert "retried" in failed_row
    assert "retry 2 of 3" not in failed.out
    assert status.code == 0, status.err
    failures = status.out.split("Latest job failures", 1)[1]
    assert "retried" in failures
    assert "retry 2 of 3" not in failures


def test_typed_ids_and_subjects_are_echoed_escaped_and_undecodable_ones_match_nothing(
    capsys: pytest.CaptureFixture[str], stack: TemplateQueues, db: psycopg.Connection
) -> None:
    # Given an operator who types an escape sequence (clear the screen), and bytes that are
    # not UTF-8, which Python's argv holds as lone surrogates (surrogateescape)
    undecodable = b"\xff\xfe".decode("utf-8", "surrogateescape")
    season(db)

    # When they look a job up by them, and filter the history on them
    escape = cli(capsys, "jobs", "show", "\x1b[2J")
    shown = cli(capsys, "jobs", "show", undecodable)
    listed = cli(capsys, "jobs", "--subject", undecodable[0])

    # Then no job matches, said in escaped form
    assert escape.code == shown.code == 1
    assert "no job run with id \\x1b[2J " in escape.err
    assert "no job run with id \\udcff\\udcfe " in shown.err
    assert listed.code == 0, listed.err
    assert listed.out == "no job runs match\n"
    assert_printable(escape, shown, listed)
