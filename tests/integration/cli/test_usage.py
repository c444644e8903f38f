"""The installed `matchstats` script, its help, and bad usage, unknown ids, an unreachable
database or endpoint and missing configuration, each answered with one line and an exit
status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from devstack.processes import free_port
from tests.integration.cli.steps import assert_printable, cli, season
from tests.template_queues import TemplateQueues

REPO = Path(__file__).resolve().parents[3]


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("jobs", "--limit", "0"), "argument --limit: must be 1 or more, got 0"),
        (("jobs", "--limit", "1001"), "argument --limit: at most 1000, got 1001"),
        (("dlq", "redrive", "points", "--limit", "0"), "argument --limit: must be 1 or more"),
        (("refresh", "--wait", "--timeout", "-5"), "argument --timeout: must be 1 or more"),
        (("recompute", "--match", "0"), "argument --match: must be a positive id, got 0"),
    ],
)
def test_a_number_out_of_range_is_named_for_what_it_bounds(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    # When a count, a duration or an id is out of its range
    run = cli(capsys, *argv)

    # Then the error says which range: a limit is not an id
    assert run.code == 2
    assert message in run.err


def test_a_usage_error_quotes_what_was_typed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    # When the operator types an escape sequence and undecodable bytes where none belong
    run = cli(capsys, "status", "\x1b]0;owned\x07", b"\xff".decode("utf-8", "surrogateescape"))

    # Then the one line names them, escaped
    assert run.code == 2
    assert "unrecognized arguments: \\x1b]0;owned\\x07 \\udcff" in run.err
    assert_printable(run)


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
